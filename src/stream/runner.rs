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
use std::time::{Duration, Instant, SystemTime};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::SessionContext;
use futures::StreamExt;
use tokio::sync::watch;

use super::definition::{Connector, OnError, QueryOptions, StreamDef, Trigger};
use super::aggregate::OutputMode;
use super::inputs::{Inputs, Polled};
use super::ready_query::{Planned, plan};
use super::progress::{CLOCKS_KEY, Progress, SharedState, Status, format_timestamp};
pub use super::rejects::dead_letter_schema;
use super::rejects::{handle_bad_records, split_late};
use crate::catalog::{AsyncStore, EpochCommit, QueryStatusRow, StagedFile};
use crate::error::QueryError;
use crate::sink::{EpochWriter, ParquetSink, publish};
use crate::source::{Backoff, Bound, Chunk, Source, SourceError};

/// Records per poll: large enough to amortise planning and decoding per
/// chunk, small enough to keep a chunk's memory in the tens of megabytes.
const MAX_RECORDS_PER_POLL: usize = 32 * 1024;
/// How long an idle poll waits before the loop checks its clocks again.
const IDLE_WAIT: Duration = Duration::from_millis(200);
/// `available_now` for queries that keep input rows (stream-stream joins,
/// window-aligned queries), unless `max_records_per_trigger` says otherwise:
/// an epoch ends after this many records, so rows leave the state as the
/// watermark moves instead of a whole backlog being held until one final
/// commit (Spark's availableNow honours maxOffsetsPerTrigger the same way).
const KEPT_ROWS_EPOCH_RECORDS: usize = 1_000_000;
/// Epochs of history kept for sources whose checkpoint is cumulative.
const EPOCHS_KEPT: i64 = 1000;

/// Everything a runner needs, owned: it outlives the statement that started it.
#[derive(Clone)]
pub struct QuerySpec {
    pub name: String,
    pub query: Box<datafusion::sql::sqlparser::ast::Query>,
    pub output_mode: super::aggregate::OutputMode,
    /// The query aggregates: partial state is kept across epochs.
    pub aggregates: bool,
    /// TUMBLE/HOP size in microseconds, when the query reads a window.
    pub window_size: Option<i64>,
    /// For update/complete views: the directory of the version readers
    /// see, shared with the view's table provider. Each epoch writes a new
    /// version directory and moves this pointer after its commit.
    pub versions: Option<Arc<std::sync::RwLock<Option<PathBuf>>>>,
    /// `INTO KAFKA (...)` options: rows go to a topic instead of files.
    pub kafka: Option<crate::sql::Options>,
    /// The streams read: one, or the left and right of a stream-stream join.
    pub streams: Vec<Arc<StreamDef>>,
    /// The stream-stream join, when there is one.
    pub join: Option<super::join::JoinShape>,
    /// Evaluated window by window (see aligned.rs), when it combines windows.
    pub aligned: Option<super::aligned::AlignedShape>,
    pub options: QueryOptions,
    /// The table directory the output lands in.
    pub target_dir: PathBuf,
    /// The target table's schema (for a materialized view, the query's).
    pub target_schema: SchemaRef,
    /// Each stream's `<stream>_errors` directory (used when it dead-letters).
    pub dead_letter_dirs: Vec<Option<PathBuf>>,
    /// `<query>_late` directory with `late_rows = 'table'`.
    pub late_dir: Option<PathBuf>,
}

impl QuerySpec {
    /// The stream read (the left one of a join).
    pub fn stream(&self) -> &Arc<StreamDef> {
        &self.streams[0]
    }
}

/// The storage a runner shares with the rest of the server.
#[derive(Clone)]
pub struct Files {
    /// Epochs are published under it, so a listing sees all of an epoch's
    /// files or none.
    pub gate: crate::storage::PublishGate,
    /// The only way old view versions are deleted.
    pub warehouse: crate::storage::Warehouse,
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

fn io_error(what: &str) -> impl Fn(std::io::Error) -> RunError + '_ {
    move |e| RunError::Transient(format!("{what}: {e}"))
}

/// Runs `spec` until it finishes, fails, or `stop` turns true.
pub async fn run(
    spec: QuerySpec,
    shared: SessionContext,
    store: AsyncStore,
    files: Files,
    state: SharedState,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    loop {
        let outcome = attempt(&spec, &shared, &store, &files, &state, &mut stop).await;
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
        if let Err(e) = store.set_status(row).await {
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
        Connector::Nexmark => Box::new(crate::source::nexmark::NexmarkSource::new(spec)?),
    })
}

async fn attempt(
    spec: &QuerySpec,
    shared: &SessionContext,
    store: &AsyncStore,
    files: &Files,
    state: &SharedState,
    stop: &mut watch::Receiver<bool>,
) -> Result<Ended, RunError> {
    let planned = Arc::new(plan(spec, shared).await?);
    let shared_spec = Arc::new(spec.clone());
    let sink = ParquetSink::new(&spec.target_dir, &spec.name, &spec.target_schema, spec.options.roll);
    // Per input: its stream's dead-letter table, when it has one.
    let dead_letters: Vec<Option<ParquetSink>> = spec
        .streams
        .iter()
        .zip(&spec.dead_letter_dirs)
        .map(|(stream, dir)| match (dir, stream.on_error) {
            (Some(dir), OnError::DeadLetter) => {
                Some(ParquetSink::new(dir, &spec.name, &dead_letter_schema(), spec.options.roll))
            }
            _ => None,
        })
        .collect();
    let late = spec.late_dir.as_ref().map(|dir| ParquetSink::new(dir, &spec.name, &spec.stream().spec.schema, spec.options.roll));
    let mut sources = Vec::new();
    for stream in &spec.streams {
        // 'once' is one epoch of everything, whatever the per-epoch file limit.
        sources.push(if spec.options.trigger == Trigger::Once {
            let mut stream = stream.as_ref().clone();
            stream.spec.options.remove("max_files_per_trigger");
            open_source(&stream)?
        } else {
            open_source(stream)?
        });
    }
    let mut source = Inputs::new(sources);

    // Recovery: the commit log is the truth.
    let storage = |e: crate::error::CatalogError| RunError::Transient(e.to_string());
    let history = store.epochs(&spec.name, source.checkpoint_is_cumulative()).await.map_err(storage)?;
    let last_files: Vec<StagedFile> = history.last().map(|e| e.files.clone()).unwrap_or_default();
    {
        // Publishing the last commit's files is publishing an epoch.
        let _publishing = files.gate.publishing().await;
        sink.recover(&last_files).map_err(io_error("recovering the table directory"))?;
        for dl in dead_letters.iter().flatten() {
            dl.recover(&last_files).map_err(io_error("recovering the dead-letter table"))?;
        }
        if let Some(late) = &late {
            late.recover(&last_files).map_err(io_error("recovering the late-rows table"))?;
        }
    }
    if let Some(last) = history.last() {
        planned.restore_state(&last.state).await.map_err(|e| RunError::Fatal(format!("restoring state: {e}")))?;
        planned.restore_clocks(last.progress.get(CLOCKS_KEY)).await;
    }
    if let Some(versions) = &spec.versions {
        let current = history.last().and_then(|e| e.progress.get("version")).and_then(|v| v.as_str()).map(PathBuf::from);
        super::versioned::remove_versions_except(&files.warehouse, &spec.target_dir, current.as_deref(), None)
            .map_err(io_error("cleaning view versions"))?;
        if let Ok(mut pointer) = versions.write() {
            *pointer = current;
        }
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
    for (i, input) in planned.inputs.iter().enumerate() {
        if let Some(tracker) = &input.tracker {
            tracker.lock().await.expect_partitions(source.partitions(i));
        }
    }
    set(state, Status::Running, None);

    let mut previous_start: Option<Instant> = None;
    loop {
        let mut epoch = Epoch::new(&sink, &dead_letters, batch_id);
        epoch.late_writer = late.as_ref().map(|l| l.begin(batch_id));
        let (epoch, ended) = match run_epoch(&shared_spec, &planned, &mut source, epoch, stop).await {
            Ok(done) => done,
            Err(e) => return Err(e),
        };
        let Some(epoch) = epoch else { return Ok(Ended::Stopped) };
        // An epoch without input still commits when the watermark moves
        // (a partition went idle): windows close without waiting for data.
        if epoch.input_records > 0 || planned.watermark_would_move().await {
            let started = epoch.started_at_wall;
            let since_previous = previous_start.map(|p| epoch.started.duration_since(p));
            previous_start = Some(epoch.started);
            commit(spec, &planned, store, files, &mut source, epoch, batch_id, started, since_previous).await?;
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
    /// Per input, when its stream dead-letters.
    dead_letters: Vec<Option<EpochWriter>>,
    /// Rows older than the watermark, with `late_rows = 'table'`.
    late_writer: Option<EpochWriter>,
    started: Instant,
    started_at_wall: SystemTime,
    first_record: Option<Instant>,
    input_records: u64,
    output_rows: u64,
    error_rows: u64,
    /// Rows dropped for being older than the watermark.
    late_rows: u64,
}

impl Epoch {
    fn new(sink: &ParquetSink, dead_letters: &[Option<ParquetSink>], batch_id: i64) -> Epoch {
        Epoch {
            writer: sink.begin(batch_id),
            dead_letters: dead_letters.iter().map(|d| d.as_ref().map(|d| d.begin(batch_id))).collect(),
            late_writer: None,
            started: Instant::now(),
            started_at_wall: SystemTime::now(),
            first_record: None,
            input_records: 0,
            output_rows: 0,
            error_rows: 0,
            late_rows: 0,
        }
    }

    fn abort(self) {
        self.writer.abort();
        for d in self.dead_letters.into_iter().flatten() {
            d.abort();
        }
        if let Some(l) = self.late_writer {
            l.abort();
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
    source: &mut Inputs,
    epoch: Epoch,
    stop: &mut watch::Receiver<bool>,
) -> Result<(Option<Epoch>, bool), RunError> {
    let trigger = spec.options.trigger;
    let started = epoch.started;
    let mut epoch = Some(epoch);
    let mut in_flight: Option<InFlight> = None;
    let mut first_record: Option<Instant> = None;
    let mut input_records = 0usize;
    let keeps_rows = planned.join.is_some() || planned.aligned.is_some();
    let max_records = match (trigger, spec.options.max_records_per_trigger) {
        (Trigger::Once, _) => None,
        (_, Some(n)) => Some(n),
        (Trigger::AvailableNow, None) if keeps_rows => Some(KEPT_ROWS_EPOCH_RECORDS),
        _ => None,
    };
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
            polled = source.poll(max_records.map_or(MAX_RECORDS_PER_POLL, |m| m.saturating_sub(input_records).clamp(1, MAX_RECORDS_PER_POLL)), wait) => polled,
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
            Polled::Data(input, chunk) => {
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
                    let result = process(&spec, &planned, &mut current, input, chunk).await;
                    (current, result)
                }));
            }
            // A bounded source is idle only when the epoch's quota (e.g.
            // max_files_per_trigger) is used up: time to commit.
            Polled::Idle => {
                commit_now = match trigger {
                    Trigger::AvailableNow => input_records > 0,
                    // Nothing read yet: commit only to move the watermark.
                    Trigger::Continuous => first_record.is_none() && planned.watermark_would_move().await,
                    _ => false,
                };
            }
            Polled::End => ended = true,
        }
        let now = Instant::now();
        commit_now |= ended
            || match trigger {
                Trigger::Interval(every) => now >= started + every,
                Trigger::Continuous => first_record.is_some_and(|f| now >= f + spec.options.flush_interval),
                Trigger::Once | Trigger::AvailableNow => false,
            }
            || max_records.is_some_and(|m| input_records >= m);
        if commit_now {
            if let Err(e) = settle(&mut epoch, &mut in_flight).await {
                fail!(e);
            }
            return Ok((epoch, ended));
        }
    }
}

/// Runs the plan over one chunk of input `input` and writes the output.
async fn process(spec: &QuerySpec, planned: &Planned, epoch: &mut Epoch, input: usize, chunk: Chunk) -> Result<(), RunError> {
    if chunk.input_records == 0 {
        return Ok(());
    }
    epoch.first_record.get_or_insert_with(Instant::now);
    epoch.input_records += chunk.input_records as u64;
    epoch.error_rows += chunk.bad_records.len() as u64;
    let dead_letters = epoch.dead_letters.get_mut(input).and_then(Option::as_mut);
    handle_bad_records(&spec.streams[input], &spec.name, dead_letters, &chunk.bad_records)?;
    if chunk.batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    let result = run_chunk(planned, epoch, input, chunk.batches).await;
    planned.clear();
    result
}

async fn run_chunk(planned: &Planned, epoch: &mut Epoch, input: usize, batches: Vec<RecordBatch>) -> Result<(), RunError> {
    let fatal = |e: datafusion::error::DataFusionError| RunError::Fatal(QueryError::from(e).message());
    if planned.aggregation.is_none() && planned.join.is_none() && planned.aligned.is_none() {
        planned.fill(input, batches)?;
        return execute(planned, &planned.plan, epoch).await;
    }
    let this = &planned.inputs[input];
    // A window-aligned query's windows close by the lower watermark of its
    // streams: a row is late only when older than that.
    let watermark = match &planned.aligned {
        Some(_) => planned.watermark().await,
        None => this.watermark().await,
    };
    let (batches, late) = split_late(this.event_time, watermark, batches, &mut epoch.late_rows)?;
    if let Some(writer) = epoch.late_writer.as_mut() {
        for batch in &late {
            writer.write(batch).map_err(io_error("writing late rows"))?;
        }
    }
    planned.fill(input, batches.clone())?;
    if let Some(tracker) = &this.tracker {
        tracker.lock().await.observe(&planned.ctx).await.map_err(fatal)?;
    }
    // A window-aligned query only keeps rows here; windows are evaluated
    // at the commit that closes them.
    if let Some(aligned) = &planned.aligned {
        return aligned.lock().await.add(input, batches).map_err(fatal);
    }
    // A join runs the new rows against everything buffered for the other
    // side, then buffers them: each pair meets once, when its later row comes.
    let mut join = match &planned.join {
        Some(join) => {
            let join = join.lock().await;
            planned.fill(1 - input, join.buffer(1 - input))?;
            Some(join)
        }
        None => None,
    };
    match &planned.aggregation {
        Some(agg) => agg.lock().await.absorb().await.map_err(fatal)?,
        None => execute(planned, &planned.plan, epoch).await?,
    }
    if let Some(join) = join.as_mut() {
        join.add(input, batches);
    }
    Ok(())
}

/// Runs `plan` over what the slots hold and writes its rows.
async fn execute(planned: &Planned, plan: &LogicalPlan, epoch: &mut Epoch) -> Result<(), RunError> {
    let fatal = |e: datafusion::error::DataFusionError| RunError::Fatal(QueryError::from(e).message());
    let physical = planned.ctx.state().create_physical_plan(plan).await.map_err(fatal)?;
    let mut output = execute_stream(physical, planned.ctx.task_ctx()).map_err(fatal)?;
    while let Some(batch) = output.next().await {
        let batch = batch.map_err(fatal)?;
        epoch.output_rows += batch.num_rows() as u64;
        match &planned.kafka {
            Some(kafka) => kafka.send(&batch).await.map_err(RunError::Transient)?,
            None => epoch.writer.write(&batch).map_err(io_error("writing Parquet"))?,
        }
    }
    Ok(())
}

/// The commit protocol's middle and last steps: one catalog transaction,
/// then publish.
#[allow(clippy::too_many_arguments)]
async fn commit(
    spec: &QuerySpec,
    planned: &Planned,
    store: &AsyncStore,
    storage: &Files,
    source: &mut Inputs,
    mut epoch: Epoch,
    batch_id: i64,
    started_at: SystemTime,
    since_previous: Option<Duration>,
) -> Result<(), RunError> {
    let fatal = |e: datafusion::error::DataFusionError| RunError::Fatal(QueryError::from(e).message());
    // Watermarks move now, for the next epoch's rows (see watermark.rs).
    let now = Instant::now();
    for input in &planned.inputs {
        if let Some(tracker) = &input.tracker {
            tracker.lock().await.advance(now);
        }
    }
    let mut join_snapshot = None;
    let mut join_size = (0, 0);
    if let Some(join) = &planned.join {
        let mut join = join.lock().await;
        let watermarks = [planned.inputs[0].watermark().await, planned.inputs[1].watermark().await];
        let gone = join.evict_left(watermarks[1]).map_err(fatal)?;
        if let (Some(plan), false) = (&planned.unmatched_plan, gone.is_empty()) {
            // Left rows no right row can meet any more: those that never
            // met one are written now, with NULLs (LEFT JOIN).
            planned.fill(0, gone)?;
            planned.fill(1, join.buffer(1))?;
            let result = execute(planned, plan, &mut epoch).await;
            planned.clear();
            result?;
        }
        join.evict_right(watermarks[0]).map_err(fatal)?;
        join_snapshot = Some(join.snapshot(watermarks).map_err(fatal)?);
        join_size = join.size();
    }
    let mut aligned_snapshot = None;
    if let Some(aligned) = &planned.aligned {
        let mut aligned = aligned.lock().await;
        if let Some(windows) = aligned.closing(planned.watermark().await) {
            // The windows the watermark has closed: the plan runs once over
            // the kept rows, every TUMBLE/HOP producing only those windows.
            if aligned.closes_any(windows) {
                for (i, input) in planned.inputs.iter().enumerate() {
                    planned.fill(i, aligned.rows(i))?;
                    input.table.set_closing(Some(windows));
                }
                let result = execute(planned, &planned.plan, &mut epoch).await;
                planned.clear();
                result?;
            }
            aligned.advance(windows.1).map_err(fatal)?;
        }
        let mut watermarks = Vec::new();
        for input in &planned.inputs {
            watermarks.push(input.watermark().await);
        }
        aligned_snapshot = Some((aligned.snapshot(&watermarks).map_err(fatal)?, aligned.size()));
    }
    let Epoch { mut writer, dead_letters, late_writer, started, input_records, mut output_rows, error_rows, late_rows, .. } =
        epoch;
    // Aggregations write at the end of the epoch: closed windows (append),
    // or the whole result as a new version of the view (update, complete).
    let mut state = Vec::new();
    let mut version = None;
    let mut state_size = None;
    let mut current_watermark = planned.watermark().await;
    if let Some(agg) = &planned.aggregation {
        let mut agg = agg.lock().await;
        if let Some(w) = current_watermark {
            agg.watermark = Some(agg.watermark.map_or(w, |old| old.max(w)));
        }
        let rows = agg.emit().await.map_err(fatal)?;
        output_rows = rows.iter().map(|b| b.num_rows() as u64).sum();
        if let Some(kafka) = &planned.kafka {
            for batch in &rows {
                kafka.send(batch).await.map_err(RunError::Transient)?;
            }
        } else if spec.output_mode == OutputMode::Append {
            for batch in &rows {
                writer.write(batch).map_err(io_error("writing Parquet"))?;
            }
        } else {
            writer.abort();
            let dir = spec.target_dir.join(format!("v{batch_id:06}"));
            let sink = ParquetSink::new(&dir, &spec.name, &spec.target_schema, spec.options.roll);
            writer = sink.begin(batch_id);
            std::fs::create_dir_all(&dir).map_err(io_error("creating a view version"))?;
            for batch in &rows {
                writer.write(batch).map_err(io_error("writing Parquet"))?;
            }
            version = Some(dir);
        }
        state = agg.snapshot().map_err(fatal)?;
        state_size = Some(agg.size());
        current_watermark = agg.watermark;
    }
    if let Some((bytes, size)) = aligned_snapshot {
        state = bytes;
        state_size = Some(size);
    }
    if let Some([left, right]) = join_snapshot {
        state = super::snapshot::pack(&[&state, &left, &right]);
        let (rows, bytes) = state_size.unwrap_or((0, 0));
        state_size = Some((rows + join_size.0, bytes + join_size.1));
    }
    let (mut files, mut bytes) = writer.finish().map_err(io_error("closing Parquet files"))?;
    for extra in dead_letters.into_iter().chain([late_writer]).flatten() {
        let (more, more_bytes) = extra.finish().map_err(io_error("closing dead-letter or late-row files"))?;
        files.extend(more);
        bytes += more_bytes;
    }
    // At least once: the broker has every record before the offsets commit.
    if let Some(kafka) = &planned.kafka {
        kafka.flush().await.map_err(RunError::Transient)?;
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
        watermark: current_watermark.map(super::progress::format_micros),
        late_rows: late_rows as i64,
        state_rows: state_size.map(|(rows, _)| rows as i64),
        state_bytes: state_size.map(|(_, bytes)| bytes as i64),
        version: version.as_ref().map(|v| v.display().to_string()),
    };
    let progress = super::progress::commit_record(&progress, planned.clocks().await).map_err(RunError::Fatal)?;
    let commit = EpochCommit {
        query: spec.name.clone(),
        batch_id,
        checkpoint,
        files: files.clone(),
        progress,
        state,
    };
    store.commit_epoch(commit).await.map_err(|e| match e {
        crate::error::CatalogError::EpochConflict { .. } | crate::error::CatalogError::Internal(_) => RunError::Fatal(e.to_string()),
        other => RunError::Transient(other.to_string()),
    })?;
    {
        let _publishing = storage.gate.publishing().await;
        publish(&files).map_err(io_error("publishing committed files"))?;
    }
    if let (Some(versions), Some(version)) = (&spec.versions, version) {
        let previous = versions.write().ok().and_then(|mut pointer| pointer.replace(version.clone()));
        if let Err(e) = super::versioned::remove_versions_except(&storage.warehouse, &spec.target_dir, Some(&version), previous.as_deref()) {
            tracing::warn!(query = %spec.name, "old view versions not removed: {e}");
        }
    }
    if source.checkpoint_is_cumulative()
        && let Err(e) = store.prune_epochs(&spec.name, EPOCHS_KEPT).await
    {
        tracing::warn!(query = %spec.name, "old epochs not pruned: {e}");
    }
    Ok(())
}
