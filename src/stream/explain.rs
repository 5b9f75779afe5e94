//! `EXPLAIN CREATE SINK | MATERIALIZED VIEW ...` and `EXPLAIN SINK |
//! MATERIALIZED VIEW name`: how weir runs a continuous query. That is the
//! stream operator and the state it keeps, each stream's watermark, the
//! trigger and output mode, where rows land, and the DataFusion plan that
//! runs over each chunk. EXPLAIN CREATE plans without creating anything.

use super::join::JoinKind;
use super::{QuerySpec, StreamManager, trigger_name};
use crate::error::QueryError;
use crate::sink::Target;
use crate::sql::CreateContinuousQuery;

impl StreamManager {
    /// The plan `cq` would run under `name`, checked as CREATE checks it;
    /// nothing is recorded or started.
    pub async fn explain(&self, name: &str, cq: &CreateContinuousQuery) -> Result<Vec<String>, QueryError> {
        let planned = self.plan_query(name, cq, None).await?;
        Ok(describe(&planned.spec))
    }

    /// The plan the query `name` runs now.
    pub fn explain_running(&self, name: &str) -> Result<Vec<String>, QueryError> {
        let registry = self.registry()?;
        let entry =
            registry.queries.get(name).ok_or_else(|| QueryError::Internal(format!("query '{name}' is not registered")))?;
        let status = entry.state.lock().map(|s| s.status.as_str()).unwrap_or("unknown");
        let mut lines = describe(&entry.spec);
        lines.insert(1, format!("  status: {status}"));
        Ok(lines)
    }
}

/// The plan as lines of text, PostgreSQL's EXPLAIN style: a heading, then
/// indented details.
fn describe(spec: &QuerySpec) -> Vec<String> {
    let plan = &spec.plan;
    let mut lines = vec![format!("Continuous query {}", spec.name)];
    let operator = if let Some(aligned) = &plan.aligned {
        format!(
            "window-aligned: rows kept per open window ({} s windows every {} s), the plan runs once per window when the watermark closes it",
            seconds(aligned.size),
            seconds(aligned.slide)
        )
    } else if let Some(join) = &plan.join {
        let kind = match join.kind {
            JoinKind::Inner => "inner",
            JoinKind::LeftOuter => "left outer",
        };
        format!(
            "stream-stream {kind} join of {} and {}: rows of each side buffered while {}.ts - {}.ts lies in [{} s, {} s], dropped once both watermarks pass{}",
            join.streams[0],
            join.streams[1],
            join.streams[1],
            join.streams[0],
            seconds(join.lower),
            seconds(join.upper),
            if plan.aggregates { "; then an incremental aggregation of the joined rows" } else { "" }
        )
    } else if plan.aggregates {
        let windows = match plan.window_size {
            Some(size) => {
                format!(", per {} s window; a window's groups are dropped once the watermark passes its end", seconds(size))
            }
            None => String::new(),
        };
        format!("incremental aggregation: partial aggregates kept per group across epochs{windows}")
    } else {
        "stateless: each chunk's rows are filtered and projected, nothing is kept".to_string()
    };
    lines.push(format!("  operator: {operator}"));
    lines.push(format!(
        "  trigger: {}; output mode: {}; flush interval: {} ms",
        trigger_name(spec.options.trigger),
        plan.output_mode.name(),
        spec.options.flush_interval.as_millis()
    ));
    let target = match &spec.target {
        Target::Table { dir, partition_columns, .. } if !partition_columns.is_empty() => format!(
            "appends Parquet files to the table in {}, in its partitions' directories ({}=.../)",
            dir.display(),
            partition_columns.join("=.../")
        ),
        Target::Table { dir, .. } => format!("appends Parquet files to the table in {}", dir.display()),
        Target::ObjectTable { dir, .. } => format!("appends Parquet files to the table in {dir} (published by copy)"),
        Target::Delta { dir, .. } => format!("appends to the Delta table in {dir}, one log commit per epoch"),
        Target::DeltaView { dir, overwrite: false } => {
            format!("appends to the view's Delta table in {dir}, one log commit per epoch")
        }
        Target::DeltaView { dir, overwrite: true } => {
            format!("rewrites the view's Delta table in {dir} each epoch (one overwrite commit)")
        }
        Target::View { dir, versions: None } => format!("appends Parquet files to the view's table in {dir}"),
        Target::View { dir, versions: Some(_) } => {
            format!("writes a new version of the view's table each epoch, in {dir}")
        }
        Target::Kafka(options) => {
            format!("produces records to Kafka topic '{}'", options.get("topic").map(String::as_str).unwrap_or_default())
        }
    };
    lines.push(format!("  output: {target}"));
    for stream in &spec.streams {
        let watermark = match &stream.watermark {
            Some((column, expr)) => format!("watermark on {column}: {expr}"),
            None => "no watermark (no event time)".to_string(),
        };
        lines.push(format!("  stream {} ({}): {watermark}", stream.name, stream.connector.name()));
    }
    lines.push("  plan per chunk (DataFusion):".to_string());
    lines.extend(plan.plan.display_indent().to_string().lines().map(|l| format!("    {l}")));
    if let Some(unmatched) = &plan.unmatched_plan {
        lines.push("  plan for left rows that met no right row:".to_string());
        lines.extend(unmatched.display_indent().to_string().lines().map(|l| format!("    {l}")));
    }
    lines
}

/// Microseconds as seconds, without trailing zeros.
fn seconds(micros: i64) -> String {
    let s = micros as f64 / 1e6;
    if s.fract() == 0.0 { format!("{}", s as i64) } else { format!("{s}") }
}
