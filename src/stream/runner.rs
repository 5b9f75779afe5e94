//! The epoch loop of one continuous query.
//!
//! An *attempt* recovers (publish what the last commit recorded, delete
//! staged leftovers, position the source after the committed checkpoints)
//! and then runs epochs: poll chunks, run the plan on each, write the output
//! to staged files, and commit files + checkpoint + progress in one catalog
//! transaction before publishing. Any transient error ends the attempt; the
//! next attempt starts again from the last commit, which is what makes a
//! retry (or a SIGKILL) lose and duplicate nothing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tokio::sync::watch;

use super::definition::{Connector, OnError, QueryOptions, StreamDef, Trigger};
use super::plan::{ChunkTable, plan_query, query_context};
use super::progress::{Progress, SharedState, Status, format_timestamp};
use crate::catalog::{CatalogStore, EpochCommit, QueryStatusRow, StagedFile};
use crate::error::QueryError;
use crate::sink::{EpochWriter, ParquetSink, publish};
use crate::source::{BadRecord, Backoff, Bound, Chunk, Poll, Source, SourceError};

/// Records per poll: large enough to amortise planning and decoding per
/// chunk, small enough to keep a chunk's memory in the tens of megabytes.
const MAX_RECORDS_PER_POLL: usize = 32 * 1024;
/// How long an idle poll waits before the loop checks its clocks again.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// Epochs of history kept for sources whose checkpoint is cumulative.
const EPOCHS_KEPT: i64 = 1000;

/// Everything a runner needs, owned: it outlives the statement that started it.
#[derive(Clone)]
pub struct QuerySpec {
    pub name: String,
    pub query: Box<datafusion::sql::sqlparser::ast::Query>,
    pub stream: Arc<StreamDef>,
    pub options: QueryOptions,
    /// The table directory the output lands in.
    pub target_dir: PathBuf,
    /// The target table's schema (for a materialized view, the query's).
    pub target_schema: SchemaRef,
    /// `<stream>_errors` directory when the stream dead-letters.
    pub dead_letter_dir: Option<PathBuf>,
}

/// How an attempt ended without error.
enum Ended {
    Stopped,
    Finished,
}

#[derive(Debug)]
enum RunError {
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

fn io_error(what: &str) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |e| RunError::Transient(format!("{what}: {e}"))
}

/// Runs `spec` until it finishes, fails, or `stop` turns true.
pub async fn run(
    spec: QuerySpec,
    shared: SessionContext,
    store: Arc<dyn CatalogStore>,
    state: SharedState,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let outcome = attempt(&spec, &shared, store.as_ref(), &state, &mut stop).await;
        let (status, error) = match outcome {
            Ok(Ended::Stopped) => {
                set(&state, Status::Stopped, None);
                return;
            }
            Ok(Ended::Finished) => (Status::Finished, None),
            Err(RunError::Fatal(msg)) => (Status::Failed, Some(msg)),
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
        if let Err(e) = store.set_status(&row) {
            tracing::warn!(query = %spec.name, "status not saved: {e}");
        }
        return;
    }
}

fn set(state: &SharedState, status: Status, error: Option<String>) {
    if let Ok(mut s) = state.lock() {
        s.status = status;
        s.error = error;
    }
}

/// Opens the connector a stream declares.
pub fn open_source(stream: &StreamDef) -> Result<Box<dyn Source>, SourceError> {
    let spec = stream.spec.clone();
    Ok(match stream.connector {
        Connector::Kafka => Box::new(crate::source::kafka::KafkaSource::new(spec)?),
        Connector::File => Box::new(crate::source::file::FileSource::new(spec)?),
        Connector::Socket => Box::new(crate::source::socket::SocketSource::new(spec)?),
        Connector::Generator => Box::new(crate::source::generator::GeneratorSource::new(spec)?),
    })
}

/// Dead-letter rows: enough to find and replay the record.
pub fn dead_letter_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("query", DataType::Utf8, true),
        Field::new("position", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("raw", DataType::Utf8, true),
        Field::new("received_at", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]))
}

struct Planned {
    ctx: SessionContext,
    plan: LogicalPlan,
    slot: Arc<Mutex<Vec<RecordBatch>>>,
}

async fn plan(spec: &QuerySpec, shared: &SessionContext) -> Result<Planned, RunError> {
    let (table, slot) = ChunkTable::new(spec.stream.spec.schema.clone());
    let mut streams: HashMap<String, Arc<dyn TableProvider>> = HashMap::new();
    streams.insert(spec.stream.name.clone(), table);
    let fatal = |e: QueryError| RunError::Fatal(e.message());
    let ctx = query_context(shared, streams).map_err(fatal)?;
    let plan = plan_query(&ctx, &spec.query).await.map_err(fatal)?;
    let plan = ctx.state().optimize(&plan).map_err(|e| fatal(e.into()))?;
    Ok(Planned { ctx, plan, slot })
}

async fn attempt(
    spec: &QuerySpec,
    shared: &SessionContext,
    store: &dyn CatalogStore,
    state: &SharedState,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, RunError> {
    let planned = Arc::new(plan(spec, shared).await?);
    let shared_spec = Arc::new(spec.clone());
    let sink = ParquetSink::new(&spec.target_dir, &spec.name, &spec.target_schema, spec.options.roll);
    let dead_letters = match (&spec.dead_letter_dir, spec.stream.on_error) {
        (Some(dir), OnError::DeadLetter) => {
            Some(ParquetSink::new(dir, &spec.name, &dead_letter_schema(), spec.options.roll))
        }
        _ => None,
    };
    // 'once' is one epoch of everything, whatever the per-epoch file limit.
    let mut source = if spec.options.trigger == Trigger::Once {
        let mut stream = spec.stream.as_ref().clone();
        stream.spec.options.remove("max_files_per_trigger");
        open_source(&stream)?
    } else {
        open_source(&spec.stream)?
    };

    // Recovery: the commit log is the truth.
    let storage = |e: crate::error::CatalogError| RunError::Transient(e.to_string());
    let history = store.epochs(&spec.name, source.checkpoint_is_cumulative()).map_err(storage)?;
    let last_files: Vec<StagedFile> = history.last().map(|e| e.files.clone()).unwrap_or_default();
    sink.recover(&last_files).map_err(io_error("recovering the table directory"))?;
    if let Some(dl) = &dead_letters {
        dl.recover(&last_files).map_err(io_error("recovering the dead-letter table"))?;
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
    set(state, Status::Running, None);

    let mut previous_start: Option<Instant> = None;
    loop {
        let epoch = Epoch::new(&sink, dead_letters.as_ref(), batch_id);
        let (epoch, ended) = match run_epoch(&shared_spec, &planned, source.as_mut(), epoch, stop).await {
            Ok(done) => done,
            Err(e) => return Err(e),
        };
        let Some(epoch) = epoch else { return Ok(Ended::Stopped) };
        if epoch.input_records > 0 {
            let started = epoch.started_at_wall;
            let since_previous = previous_start.map(|p| epoch.started.duration_since(p));
            previous_start = Some(epoch.started);
            commit(spec, store, source.as_mut(), epoch, batch_id, started, since_previous).await?;
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

/// One epoch in the making.
struct Epoch {
    writer: EpochWriter,
    dead_letters: Option<EpochWriter>,
    started: Instant,
    started_at_wall: SystemTime,
    first_record: Option<Instant>,
    input_records: u64,
    output_rows: u64,
    error_rows: u64,
}

impl Epoch {
    fn new(sink: &ParquetSink, dead_letters: Option<&ParquetSink>, batch_id: i64) -> Epoch {
        Epoch {
            writer: sink.begin(batch_id),
            dead_letters: dead_letters.map(|d| d.begin(batch_id)),
            started: Instant::now(),
            started_at_wall: SystemTime::now(),
            first_record: None,
            input_records: 0,
            output_rows: 0,
            error_rows: 0,
        }
    }

    fn abort(self) {
        self.writer.abort();
        if let Some(d) = self.dead_letters {
            d.abort();
        }
    }
}

/// A chunk being processed on another worker thread, with the epoch it
/// writes into (moved there and back).
type InFlight = tokio::task::JoinHandle<(Epoch, Result<(), RunError>)>;

/// Waits for the chunk in flight, if any, and takes its epoch back.
async fn settle(epoch: &mut Option<Epoch>, in_flight: &mut Option<InFlight>) -> Result<(), RunError> {
    let Some(task) = in_flight.take() else { return Ok(()) };
    match task.await {
        Ok((returned, result)) => {
            *epoch = Some(returned);
            result
        }
        // The epoch's writer went down with the task; its staged files are
        // removed by the next attempt's recovery.
        Err(e) => Err(RunError::Fatal(format!("processing a chunk failed: {e}"))),
    }
}

/// Reads and processes until the trigger says commit. Returns the epoch
/// (`None` when stopped; staged files are then deleted) and whether the
/// source has ended.
///
/// Reading is pipelined with processing: while chunk n runs through the
/// plan and the Parquet writer on one worker thread, chunk n+1 is read and
/// decoded on another, so decoding and writing use both cores.
async fn run_epoch(
    spec: &Arc<QuerySpec>,
    planned: &Arc<Planned>,
    source: &mut dyn Source,
    epoch: Epoch,
    stop: &mut watch::Receiver<bool>,
) -> Result<(Option<Epoch>, bool), RunError> {
    let trigger = spec.options.trigger;
    let started = epoch.started;
    let mut epoch = Some(epoch);
    let mut in_flight: Option<InFlight> = None;
    let mut first_record: Option<Instant> = None;
    let mut input_records = 0usize;
    // Ends the epoch: the chunk in flight is finished first.
    macro_rules! fail {
        ($err:expr) => {{
            let _ = settle(&mut epoch, &mut in_flight).await;
            if let Some(e) = epoch.take() {
                e.abort();
            }
            return Err($err);
        }};
    }
    loop {
        let now = Instant::now();
        let wait = match trigger {
            Trigger::Interval(every) => (started + every).saturating_duration_since(now),
            Trigger::Continuous => match first_record {
                Some(first) => (first + spec.options.flush_interval).saturating_duration_since(now),
                None => IDLE_WAIT,
            },
            Trigger::Once | Trigger::AvailableNow => IDLE_WAIT,
        }
        .min(IDLE_WAIT);
        let polled = tokio::select! {
            polled = source.poll(MAX_RECORDS_PER_POLL, wait) => polled,
            _ = stop.changed() => {
                let _ = settle(&mut epoch, &mut in_flight).await;
                if let Some(e) = epoch.take() {
                    e.abort();
                }
                return Ok((None, false));
            }
        };
        let polled = match polled {
            Ok(p) => p,
            Err(e) => fail!(e.into()),
        };
        let mut commit_now = false;
        let mut ended = false;
        match polled {
            Poll::Data(chunk) => {
                if chunk.input_records > 0 {
                    first_record.get_or_insert_with(Instant::now);
                    input_records += chunk.input_records;
                }
                if let Err(e) = settle(&mut epoch, &mut in_flight).await {
                    fail!(e);
                }
                let Some(mut current) = epoch.take() else { fail!(RunError::Fatal("epoch lost".into())) };
                let (spec, planned) = (spec.clone(), planned.clone());
                in_flight = Some(tokio::spawn(async move {
                    let result = process(&spec, &planned, &mut current, chunk).await;
                    (current, result)
                }));
            }
            // A bounded source is idle only when the epoch's quota (e.g.
            // max_files_per_trigger) is used up: time to commit.
            Poll::Idle => commit_now = trigger == Trigger::AvailableNow && input_records > 0,
            Poll::End => ended = true,
        }
        let now = Instant::now();
        commit_now |= ended
            || match trigger {
                Trigger::Interval(every) => now >= started + every,
                Trigger::Continuous => first_record.is_some_and(|f| now >= f + spec.options.flush_interval),
                Trigger::Once | Trigger::AvailableNow => false,
            };
        if commit_now {
            if let Err(e) = settle(&mut epoch, &mut in_flight).await {
                fail!(e);
            }
            return Ok((epoch, ended));
        }
    }
}

/// Runs the plan over one chunk and writes the output.
async fn process(spec: &QuerySpec, planned: &Planned, epoch: &mut Epoch, chunk: Chunk) -> Result<(), RunError> {
    if chunk.input_records == 0 {
        return Ok(());
    }
    epoch.first_record.get_or_insert_with(Instant::now);
    epoch.input_records += chunk.input_records as u64;
    handle_bad_records(spec, epoch, &chunk.bad_records)?;
    if chunk.batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    {
        let mut slot = planned.slot.lock().map_err(|_| RunError::Fatal("chunk slot poisoned".into()))?;
        *slot = chunk.batches;
    }
    let result = execute(planned, epoch).await;
    if let Ok(mut slot) = planned.slot.lock() {
        slot.clear();
    }
    result
}

async fn execute(planned: &Planned, epoch: &mut Epoch) -> Result<(), RunError> {
    let fatal = |e: datafusion::error::DataFusionError| RunError::Fatal(QueryError::from(e).message());
    let physical = planned.ctx.state().create_physical_plan(&planned.plan).await.map_err(fatal)?;
    let mut output = execute_stream(physical, planned.ctx.task_ctx()).map_err(fatal)?;
    while let Some(batch) = output.next().await {
        let batch = batch.map_err(fatal)?;
        epoch.output_rows += batch.num_rows() as u64;
        epoch.writer.write(&batch).map_err(io_error("writing Parquet"))?;
    }
    Ok(())
}

fn handle_bad_records(spec: &QuerySpec, epoch: &mut Epoch, bad: &[BadRecord]) -> Result<(), RunError> {
    if bad.is_empty() {
        return Ok(());
    }
    epoch.error_rows += bad.len() as u64;
    match spec.stream.on_error {
        OnError::Skip => Ok(()),
        OnError::Fail => {
            let first = &bad[0];
            Err(RunError::Fatal(format!(
                "malformed record in stream '{}' at {}: {} (on_error = 'fail'; use 'skip' or 'dead_letter' to keep going)",
                spec.stream.name, first.position, first.error
            )))
        }
        OnError::DeadLetter => {
            let Some(writer) = epoch.dead_letters.as_mut() else { return Ok(()) };
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_micros() as i64)
                .unwrap_or(0);
            let columns: Vec<ArrayRef> = vec![
                Arc::new(StringArray::from(vec![spec.name.as_str(); bad.len()])),
                Arc::new(bad.iter().map(|b| Some(b.position.as_str())).collect::<StringArray>()),
                Arc::new(bad.iter().map(|b| Some(b.error.as_str())).collect::<StringArray>()),
                Arc::new(bad.iter().map(|b| Some(String::from_utf8_lossy(&b.raw).into_owned())).collect::<StringArray>()),
                Arc::new(TimestampMicrosecondArray::from(vec![now; bad.len()])),
            ];
            let batch = RecordBatch::try_new(dead_letter_schema(), columns)
                .map_err(|e| RunError::Fatal(format!("dead-letter batch: {e}")))?;
            writer.write(&batch).map_err(io_error("writing dead letters"))
        }
    }
}

/// The commit protocol's middle and last steps: one catalog transaction,
/// then publish.
async fn commit(
    spec: &QuerySpec,
    store: &dyn CatalogStore,
    source: &mut dyn Source,
    epoch: Epoch,
    batch_id: i64,
    started_at: SystemTime,
    since_previous: Option<Duration>,
) -> Result<(), RunError> {
    let Epoch { writer, dead_letters, started, input_records, output_rows, error_rows, .. } = epoch;
    let (mut files, mut bytes) = writer.finish().map_err(io_error("closing Parquet files"))?;
    if let Some(dl) = dead_letters {
        let (more, more_bytes) = dl.finish().map_err(io_error("closing dead-letter files"))?;
        files.extend(more);
        bytes += more_bytes;
    }
    let checkpoint = source.checkpoint();
    let duration = started.elapsed();
    let per_sec = |d: Duration| if d.as_secs_f64() > 0.0 { input_records as f64 / d.as_secs_f64() } else { 0.0 };
    let progress = Progress {
        query: spec.name.clone(),
        batch_id,
        started_at: format_timestamp(started_at),
        duration_ms: duration.as_millis() as i64,
        input_rows: input_records as i64,
        output_rows: output_rows as i64,
        input_rows_per_sec: per_sec(since_previous.unwrap_or(duration)),
        processed_rows_per_sec: per_sec(duration),
        bytes_written: bytes as i64,
        files_written: files.len() as i64,
        error_rows: error_rows as i64,
        source_offsets: checkpoint.to_string(),
        lag: source.lag(),
    };
    let commit = EpochCommit {
        query: spec.name.clone(),
        batch_id,
        checkpoint,
        files: files.clone(),
        progress: serde_json::to_value(&progress).unwrap_or_default(),
        state: Vec::new(),
    };
    store.commit_epoch(&commit).map_err(|e| match e {
        crate::error::CatalogError::EpochConflict { .. } => RunError::Fatal(e.to_string()),
        other => RunError::Transient(other.to_string()),
    })?;
    publish(&files).map_err(io_error("publishing committed files"))?;
    if source.checkpoint_is_cumulative() {
        if let Err(e) = store.prune_epochs(&spec.name, EPOCHS_KEPT) {
            tracing::warn!(query = %spec.name, "old epochs not pruned: {e}");
        }
    }
    Ok(())
}
