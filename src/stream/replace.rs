//! `CREATE OR REPLACE SINK | MATERIALIZED VIEW name ... AS SELECT ...`: a
//! new query under an existing name, keeping what it can of the old one's
//! progress. The committed source offsets carry over when the new query
//! reads the same streams (nothing is read twice or skipped); the kept state
//! (open windows, groups, join buffers) carries over when its shape is the
//! same, else the replacement is refused with the reason, unless
//! `WITH (reset_state = true)` starts the state empty. Where a query's
//! output goes (the sink's table, or the view's own table and its columns)
//! cannot change: that is a new query, made by DROP and CREATE.

use super::ready_query::Instance;
use super::{Status, StreamManager, snapshot};
use crate::catalog::RelationDef;
use crate::error::QueryError;
use crate::sql::{CreateContinuousQuery, Options};

/// The option that allows a replacement to drop the kept state. Said once,
/// at the replacement: never recorded in the definition.
pub const RESET_STATE: &str = "reset_state";

impl StreamManager {
    /// Replaces the query `def` with `cq` (see the module's comment).
    pub async fn replace_query(&self, def: &RelationDef, cq: &CreateContinuousQuery) -> Result<(), QueryError> {
        let name = def.name.as_str();
        let (reset_state, options) = split_reset_state(&cq.options)?;
        let mut new = cq.clone();
        new.options = options;
        new.or_replace = false;
        new.text = new.render(&new.options);
        let planned = self.plan_query(name, &new, Some(def)).await?;
        // A query whose stored definition could not be restored at start-up
        // is not registered: nothing runs and nothing was planned, so the
        // replacement is its repair, checked against its committed state only.
        let old = {
            let registry = self.registry()?;
            registry
                .queries
                .get(name)
                .map(|entry| (entry.spec.clone(), entry.state.lock().map(|s| s.status).unwrap_or(Status::Failed)))
        };
        let status = old.as_ref().map_or(Status::Failed, |(_, status)| *status);
        if let Some((old_spec, _)) = &old {
            check_same_input_and_output(name, old_spec, &planned.spec)?;
        }
        if !reset_state {
            self.check_state_carries_over(name, &planned.spec).await?;
        }

        self.stop(name).await?;
        self.catalog.redefine(name, &new.text, reset_state).await?;
        let mut redefined = def.clone();
        redefined.definition = new.text.clone();
        // A paused query stays paused; any other runs the new query (a
        // finished `available_now` one reads what arrived since).
        let dormant = match status {
            Status::Paused => Some(self.dormant(name, status).await?),
            _ => {
                self.save_status(name, Status::Running).await?;
                None
            }
        };
        self.start_query(name, &new, Some(&redefined), dormant).await
    }

    /// Refuses the replacement when the state the old query committed does
    /// not have the shape the new query keeps.
    async fn check_state_carries_over(&self, name: &str, new: &super::QuerySpec) -> Result<(), QueryError> {
        let Some(last) = self.store.epochs(name, true).await?.pop() else { return Ok(()) };
        let kept = snapshot::shape(&last.state).map_err(|e| QueryError::Internal(format!("reading the kept state: {e}")))?;
        if kept.is_empty() {
            return Ok(());
        }
        let instance = Instance::new(&new.plan).await?;
        let empty = instance
            .operator
            .lock()
            .await
            .snapshot(&vec![None; instance.inputs.len()])
            .map_err(|e| QueryError::Internal(format!("the new query's state: {e}")))?;
        let wanted =
            snapshot::shape(&empty.bytes).map_err(|e| QueryError::Internal(format!("the new query's state: {e}")))?;
        if kept == wanted {
            return Ok(());
        }
        Err(QueryError::UnsupportedWithHint {
            what: format!(
                "replacing '{name}' with a query that keeps other state (kept: {}; the new query keeps: {})",
                describe_shape(&kept),
                describe_shape(&wanted)
            ),
            hint: "add WITH (reset_state = true) to start the new query's state empty (its committed offsets are kept), or DROP and CREATE it".into(),
        })
    }
}

/// Refuses a replacement that reads other streams or writes elsewhere or
/// otherwise: that is a new query, not this one changed.
fn check_same_input_and_output(name: &str, old: &super::QuerySpec, new: &super::QuerySpec) -> Result<(), QueryError> {
    let refuse = |what: String| QueryError::UnsupportedWithHint {
        what,
        hint: format!("DROP '{name}' and CREATE it to start a new query"),
    };
    let streams = |spec: &super::QuerySpec| spec.streams.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    if streams(old) != streams(new) {
        return Err(refuse(format!(
            "replacing '{name}', which reads {}, with a query that reads {} (its committed offsets are positions in what it read)",
            streams(old).join(" and "),
            streams(new).join(" and ")
        )));
    }
    if std::mem::discriminant(&old.target) != std::mem::discriminant(&new.target) {
        return Err(refuse(format!("replacing '{name}' with a query that keeps its table in another format")));
    }
    if place(&old.target) != place(&new.target) {
        return Err(refuse(format!("replacing '{name}' with a query that writes elsewhere")));
    }
    let rewrites = |spec: &super::QuerySpec| {
        matches!(
            spec.target,
            crate::sink::Target::View { versions: Some(_), .. } | crate::sink::Target::DeltaView { overwrite: true, .. }
        )
    };
    if rewrites(old) != rewrites(new) {
        return Err(refuse(format!(
            "replacing '{name}' with a query that {} its view (output mode {}): the view's files are kept differently",
            if rewrites(new) { "rewrites, rather than appends to," } else { "appends to, rather than rewrites," },
            new.plan.output_mode.name()
        )));
    }
    if matches!(old.target, crate::sink::Target::View { .. } | crate::sink::Target::DeltaView { .. })
        && old.target_schema.fields() != new.target_schema.fields()
    {
        return Err(refuse(format!(
            "replacing the materialized view '{name}' with a query of other columns (its table has {})",
            columns(&old.target_schema)
        )));
    }
    Ok(())
}

/// Where a target's rows land, to tell whether a replacement moves them.
fn place(target: &crate::sink::Target) -> String {
    match target {
        crate::sink::Target::ObjectTable { dir, .. } => dir.to_string(),
        crate::sink::Target::Delta { dir, .. }
        | crate::sink::Target::DeltaView { dir, .. }
        | crate::sink::Target::View { dir, .. } => dir.to_string(),
        crate::sink::Target::Table { dir, .. } => dir.display().to_string(),
        crate::sink::Target::Kafka(options) => format!(
            "kafka://{}/{}",
            options.get("bootstrap_servers").map(String::as_str).unwrap_or_default(),
            options.get("topic").map(String::as_str).unwrap_or_default()
        ),
    }
}

/// `reset_state` taken out of a replacement's options.
pub fn split_reset_state(options: &Options) -> Result<(bool, Options), QueryError> {
    let mut rest = options.clone();
    let reset = match rest.remove(RESET_STATE) {
        None => false,
        Some(v) => crate::source::decode::parse_bool(RESET_STATE, &v)
            .map_err(|reason| QueryError::InvalidOptionValue { option: RESET_STATE.into(), reason })?,
    };
    Ok((reset, rest))
}

fn columns(schema: &datafusion::arrow::datatypes::Schema) -> String {
    schema.fields().iter().map(|f| format!("{} {}", f.name(), f.data_type())).collect::<Vec<_>>().join(", ")
}

/// `(window_start Timestamp, n Int64)`, one group per kept section.
fn describe_shape(shape: &[Vec<(String, datafusion::arrow::datatypes::DataType)>]) -> String {
    if shape.iter().all(Vec::is_empty) {
        return "nothing".into();
    }
    shape
        .iter()
        .map(|section| {
            let cols: Vec<String> = section.iter().map(|(name, ty)| format!("{name} {ty}")).collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(" and ")
}
