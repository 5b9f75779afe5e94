//! The epoch loop of one continuous query.
//!
//! An *attempt* recovers (publish what the last commit recorded, delete
//! staged leftovers, position the source after the committed checkpoints)
//! and then runs epochs: poll chunks, run the plan on each, write the output
//! to staged files, and commit files + checkpoint + progress in one catalog
//! transaction before publishing. Any transient error ends the attempt; the
//! next attempt starts again from the last commit, which is what makes a
//! retry (or a SIGKILL) lose and duplicate nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::commit::Committer;
use super::definition::{Connector, OnError, StreamDef, Trigger};
use super::epoch::{Sinks, run_epoch};
use super::inputs::Inputs;
use super::operator::sink_failure;
use super::progress::{CLOCKS_KEY, SharedState, Status};
use super::ready_query::Instance;
pub use super::rejects::dead_letter_schema;
pub use super::spec::QuerySpec;
use crate::catalog::{AsyncStore, QueryStatusRow};
use crate::error::QueryError;
use crate::sink::{Opening, PreCommit};
use crate::source::{Backoff, Bound, OnDataLoss, Source, SourceError};

/// The storage a runner shares with the rest of the server.
#[derive(Clone)]
pub struct Files {
    /// Epochs are published under it, so a listing sees all of an epoch's
    /// files or none.
    pub gate: crate::storage::PublishGate,
}

/// How an attempt ended without error.
enum Ended {
    Stopped,
    Finished,
}

#[derive(Debug)]
pub(super) enum RunError {
    Transient(String),
    Fatal(String),
}

impl From<SourceError> for RunError {
    fn from(e: SourceError) -> Self {
        match e {
            SourceError::Transient(m) => RunError::Transient(m),
            SourceError::Fatal(m) => RunError::Fatal(m),
        }
    }
}

/// A DataFusion error while running: the query's own fault, not retried.
pub(super) fn fatal(e: datafusion::error::DataFusionError) -> RunError {
    RunError::Fatal(QueryError::from(e).message())
}

/// How many attempts in a row may fail with the same error, without an
/// epoch committed in between, before the query is marked failed: with the
/// backoff below that is about two and a half minutes of retrying, enough
/// to ride out a broker restart, and a fault that stays (a full disk, a
/// dropped topic) ends in `failed` with its reason instead of `retrying`
/// forever.
pub const MAX_SAME_FAILURES: u32 = 10;

/// Runs `spec` until it finishes, fails, or `stop` turns true.
pub async fn run(spec: QuerySpec, store: AsyncStore, files: Files, state: SharedState, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut same_failures = 0;
    let mut last_failure: Option<String> = None;
    loop {
        let committed_before = last_batch_id(&state);
        let outcome = attempt(&spec, &store, &files, &state, &mut stop).await;
        if last_batch_id(&state) != committed_before {
            // Progress since the last failure: this is a new run of bad luck.
            backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
            same_failures = 0;
            last_failure = None;
        }
        let (status, error) = match outcome {
            Ok(Ended::Stopped) => {
                set(&state, Status::Stopped, None);
                return;
            }
            Ok(Ended::Finished) => (Status::Finished, None),
            Err(RunError::Fatal(msg)) => (Status::Failed, Some(msg)),
            Err(RunError::Transient(msg)) if gives_up(&mut same_failures, &mut last_failure, &msg) => {
                (Status::Failed, Some(format!("gave up after {MAX_SAME_FAILURES} attempts in a row failed with: {msg}")))
            }
            Err(RunError::Transient(msg)) => {
                tracing::warn!(query = %spec.name, "retrying: {msg}");
                set(&state, Status::Retrying, Some(msg));
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = stop.changed() => {
                        set(&state, Status::Stopped, None);
                        return;
                    }
                }
            }
        };
        if let Some(msg) = &error {
            tracing::error!(query = %spec.name, "failed: {msg}");
        }
        set(&state, status, error.clone());
        let row = QueryStatusRow { query: spec.name.clone(), status: status.as_str().into(), error };
        if let Err(e) = store.set_status(row).await {
            tracing::warn!(query = %spec.name, "status not saved: {e}");
        }
        return;
    }
}

/// Counts a transient failure; true once [`MAX_SAME_FAILURES`] in a row
/// have had the same message.
fn gives_up(same_failures: &mut u32, last_failure: &mut Option<String>, msg: &str) -> bool {
    if last_failure.as_deref() == Some(msg) {
        *same_failures += 1;
    } else {
        *same_failures = 1;
        *last_failure = Some(msg.to_string());
    }
    *same_failures >= MAX_SAME_FAILURES
}

fn last_batch_id(state: &SharedState) -> Option<i64> {
    state.lock().ok().and_then(|s| s.last_batch_id)
}

fn set(state: &SharedState, status: Status, error: Option<String>) {
    if let Ok(mut s) = state.lock() {
        s.status = status;
        s.error = error;
    }
}

/// Opens the connector a stream declares; `on_loss` is the query's
/// `fail_on_data_loss`.
pub fn open_source(stream: &StreamDef, on_loss: OnDataLoss) -> Result<Box<dyn Source>, SourceError> {
    let spec = stream.spec.clone();
    Ok(match stream.connector {
        Connector::Kafka => Box::new(crate::source::kafka::KafkaSource::new(spec, on_loss)?),
        Connector::File => Box::new(crate::source::file::FileSource::new(spec, on_loss)?),
        Connector::Socket => Box::new(crate::source::socket::SocketSource::new(spec)?),
        Connector::Generator => Box::new(crate::source::generator::GeneratorSource::new(spec)?),
        Connector::Nexmark => Box::new(crate::source::nexmark::NexmarkSource::new(spec)?),
    })
}

async fn attempt(
    spec: &QuerySpec,
    store: &AsyncStore,
    files: &Files,
    state: &SharedState,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, RunError> {
    let instance = Arc::new(Instance::new(&spec.plan).await.map_err(|e| RunError::Fatal(e.message()))?);
    let shared_spec = Arc::new(spec.clone());
    let sinks = open_sinks(spec, &instance.key_columns)?;
    let mut sources = Vec::new();
    for stream in &spec.streams {
        // 'once' is one epoch of everything, whatever the per-epoch file limit.
        sources.push(if spec.options.trigger == Trigger::Once {
            let mut stream = stream.as_ref().clone();
            stream.spec.options.remove("max_files_per_trigger");
            open_source(&stream, spec.options.on_data_loss)?
        } else {
            open_source(stream, spec.options.on_data_loss)?
        });
    }
    let mut source = Inputs::new(sources);

    // Recovery: the commit log is the truth.
    let storage = |e: crate::error::CatalogError| RunError::Transient(e.to_string());
    let history = store.epochs(&spec.name, source.checkpoint_is_cumulative()).await.map_err(storage)?;
    let last = PreCommit {
        files: history.last().map(|e| e.files.clone()).unwrap_or_default(),
        bytes: 0,
        version: history.last().and_then(|e| e.progress.get("version")).and_then(|v| v.as_str()).map(PathBuf::from),
        batch_id: history.last().map(|e| e.batch_id),
    };
    // Publishing the last commit's files is publishing an epoch.
    sinks.recover(&last, &files.gate).await?;
    if let Some(last) = history.last() {
        instance.restore_state(&last.state).await.map_err(|e| RunError::Fatal(format!("restoring state: {e}")))?;
        instance.restore_clocks(last.progress.get(CLOCKS_KEY)).await;
    }
    let mut batch_id = history.last().map(|e| e.batch_id + 1).unwrap_or(0);
    if let Ok(mut s) = state.lock() {
        s.last_batch_id = history.last().map(|e| e.batch_id);
    }
    let checkpoints: Vec<serde_json::Value> = history.into_iter().map(|e| e.checkpoint).collect();
    let bound = match spec.options.trigger {
        Trigger::Once | Trigger::AvailableNow => Bound::AvailableNow,
        _ => Bound::Unbounded,
    };
    source.restore(&checkpoints, bound).await?;
    for (i, input) in instance.inputs.iter().enumerate() {
        if let Some(tracker) = &input.tracker {
            tracker.lock().await.expect_partitions(source.partitions(i));
        }
    }
    set(state, Status::Running, None);

    let committer = Committer { spec, query: &instance, store, files, sinks: &sinks };
    let mut previous_start: Option<Instant> = None;
    loop {
        let epoch = sinks.begin(batch_id);
        let (epoch, ended) = run_epoch(&shared_spec, &instance, &mut source, epoch, stop).await?;
        let Some(epoch) = epoch else { return Ok(Ended::Stopped) };
        // An epoch without input still commits when the watermark moves
        // (a partition went idle): windows close without waiting for data.
        if epoch.input_records > 0 || instance.watermark_would_move().await {
            let since_previous = previous_start.map(|p| epoch.started.duration_since(p));
            previous_start = Some(epoch.started);
            committer.commit(&mut source, epoch, since_previous).await?;
            if let Ok(mut s) = state.lock() {
                s.last_batch_id = Some(batch_id);
                s.status = Status::Running;
                s.error = None;
            }
            batch_id += 1;
        } else {
            epoch.abort();
        }
        if ended {
            return Ok(Ended::Finished);
        }
    }
}

/// The query's target, and per input its stream's dead-letter table and
/// the `<query>_late` table, when they exist: all behind the sink trait.
fn open_sinks(spec: &QuerySpec, key_columns: &[usize]) -> Result<Sinks, RunError> {
    let opening = Opening {
        query: &spec.name,
        schema: &spec.target_schema,
        roll: spec.options.roll,
        key_columns,
        compact_every: spec.options.compact_every,
    };
    let output = spec.target.open(&opening).map_err(sink_failure("opening the target"))?;
    let parquet = |dir, schema: &datafusion::arrow::datatypes::SchemaRef| {
        crate::sink::parquet_files(dir, &spec.name, schema, spec.options.roll).map_err(sink_failure("opening a table"))
    };
    let dead_letter_schema = dead_letter_schema();
    let dead_letters = spec
        .streams
        .iter()
        .zip(&spec.dead_letter_dirs)
        .map(|(stream, dir)| match (dir, stream.on_error) {
            (Some(dir), OnError::DeadLetter) => parquet(dir, &dead_letter_schema).map(Some),
            _ => Ok(None),
        })
        .collect::<Result<_, _>>()?;
    let late = spec.late_dir.as_ref().map(|dir| parquet(dir, &spec.stream().spec.schema)).transpose()?;
    Ok(Sinks { output, dead_letters, late })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same transient error gives up after the bound; a different one
    /// in between starts the count again.
    #[test]
    fn retries_are_bounded_per_repeated_error() {
        let (mut count, mut last) = (0, None);
        for _ in 1..MAX_SAME_FAILURES {
            assert!(!gives_up(&mut count, &mut last, "disk full"));
        }
        assert!(!gives_up(&mut count, &mut last, "broker down"));
        for _ in 1..MAX_SAME_FAILURES {
            assert!(!gives_up(&mut count, &mut last, "disk full"));
        }
        assert!(gives_up(&mut count, &mut last, "disk full"));
    }
}
