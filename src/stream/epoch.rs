//! One epoch of a continuous query: reading and processing chunks until
//! the trigger says commit, pipelined so that decoding and writing use both
//! cores. The epoch's writes go to its sinks, staged (see `sink`); the
//! commit protocol (`commit`) or an abort ends it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use super::definition::Trigger;
use super::inputs::{Inputs, Polled};
use super::operator::{Output, sink_failure};
use super::ready_query::Instance;
use super::rejects::handle_bad_records;
use super::runner::{QuerySpec, RunError};
use crate::sink::{EpochSink, PreCommit, Sink};
use crate::source::Chunk;
use crate::storage::PublishGate;

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

/// Everything a query writes to: its target, and per input its stream's
/// dead-letter table, and `<query>_late`, when they exist.
pub(super) struct Sinks {
    pub(super) output: Box<dyn Sink>,
    pub(super) dead_letters: Vec<Option<Box<dyn Sink>>>,
    pub(super) late: Option<Box<dyn Sink>>,
}

/// What each of an epoch's sinks prepared, in the order of [`Sinks`].
pub(super) struct PreCommits {
    output: PreCommit,
    dead_letters: Vec<Option<PreCommit>>,
    late: Option<PreCommit>,
}

impl PreCommits {
    /// Everything the catalog commit records: every sink's files, the view version.
    pub(super) fn all(&self) -> PreCommit {
        let mut all = self.output.clone();
        for other in self.dead_letters.iter().flatten().chain(&self.late) {
            all.absorb(other.clone());
        }
        all
    }
}

impl Sinks {
    fn all(&self) -> impl Iterator<Item = &Box<dyn Sink>> {
        std::iter::once(&self.output).chain(self.dead_letters.iter().flatten()).chain(&self.late)
    }

    /// Recovery: every sink publishes its part of the last commit and
    /// deletes what was staged after it (local ones under `gate`, all
    /// together: publishing is publishing an epoch).
    pub(super) async fn recover(&self, last: &PreCommit, gate: &PublishGate) -> Result<(), RunError> {
        for gated in [false, true] {
            let _publishing = if gated { Some(gate.publishing().await) } else { None };
            for sink in self.all().filter(|s| s.publishes_under_gate() == gated) {
                sink.recover(last).await.map_err(sink_failure("recovering the target"))?;
            }
        }
        Ok(())
    }

    pub(super) fn begin(&self, batch_id: i64) -> Epoch {
        Epoch {
            batch_id,
            output: Output {
                sink: self.output.begin(batch_id),
                late: self.late.as_ref().map(|l| l.begin(batch_id)),
                rows: 0,
                late_rows: 0,
            },
            dead_letters: self.dead_letters.iter().map(|d| d.as_ref().map(|d| d.begin(batch_id))).collect(),
            started: Instant::now(),
            started_at_wall: SystemTime::now(),
            first_record: None,
            input_records: 0,
            error_rows: 0,
        }
    }

    /// After the catalog commit: each sink publishes what it prepared;
    /// local ones together under `gate`, so a listing sees all of the
    /// epoch's files or none.
    pub(super) async fn commit(&self, prepared: &PreCommits, gate: &PublishGate) -> Result<(), RunError> {
        let publish = sink_failure("publishing committed files");
        let mut pairs: Vec<(&dyn Sink, &PreCommit)> = vec![(self.output.as_ref(), &prepared.output)];
        for (sink, pre_commit) in self.dead_letters.iter().zip(&prepared.dead_letters) {
            if let (Some(sink), Some(pre_commit)) = (sink, pre_commit) {
                pairs.push((sink.as_ref(), pre_commit));
            }
        }
        if let (Some(sink), Some(pre_commit)) = (&self.late, &prepared.late) {
            pairs.push((sink.as_ref(), pre_commit));
        }
        for gated in [false, true] {
            let _publishing = if gated { Some(gate.publishing().await) } else { None };
            for (sink, pre_commit) in pairs.iter().filter(|(s, _)| s.publishes_under_gate() == gated) {
                sink.commit(pre_commit).await.map_err(&publish)?;
            }
        }
        Ok(())
    }
}

/// One epoch in the making.
pub(super) struct Epoch {
    pub(super) batch_id: i64,
    pub(super) output: Output,
    /// Per input, when its stream dead-letters.
    dead_letters: Vec<Option<Box<dyn EpochSink>>>,
    pub(super) started: Instant,
    pub(super) started_at_wall: SystemTime,
    first_record: Option<Instant>,
    pub(super) input_records: u64,
    pub(super) error_rows: u64,
}

impl Epoch {
    /// Makes every write durable, not yet visible.
    pub(super) async fn prepare(self) -> Result<PreCommits, RunError> {
        let failed = sink_failure("closing the epoch's files");
        let output = self.output.sink.prepare().await.map_err(&failed)?;
        let mut dead_letters = Vec::new();
        for sink in self.dead_letters {
            dead_letters.push(match sink {
                Some(sink) => Some(sink.prepare().await.map_err(&failed)?),
                None => None,
            });
        }
        let late = match self.output.late {
            Some(sink) => Some(sink.prepare().await.map_err(&failed)?),
            None => None,
        };
        Ok(PreCommits { output, dead_letters, late })
    }

    pub(super) fn abort(self) {
        self.output.sink.abort();
        for d in self.dead_letters.into_iter().flatten() {
            d.abort();
        }
        if let Some(l) = self.output.late {
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
pub(super) async fn run_epoch(
    spec: &Arc<QuerySpec>,
    query: &Arc<Instance>,
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
    let keeps_rows = query.keeps_rows;
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
                let (spec, query) = (spec.clone(), query.clone());
                in_flight = Some(tokio::spawn(async move {
                    let result = process(&spec, &query, &mut current, input, chunk).await;
                    (current, result)
                }));
            }
            // A bounded source is idle only when the epoch's quota (e.g.
            // max_files_per_trigger) is used up: time to commit.
            Polled::Idle => {
                commit_now = match trigger {
                    Trigger::AvailableNow => input_records > 0,
                    // Nothing read yet: commit only to move the watermark.
                    Trigger::Continuous => first_record.is_none() && query.watermark_would_move().await,
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

/// Runs the operator over one chunk of input `input`.
async fn process(spec: &QuerySpec, query: &Instance, epoch: &mut Epoch, input: usize, chunk: Chunk) -> Result<(), RunError> {
    if chunk.input_records == 0 {
        return Ok(());
    }
    epoch.first_record.get_or_insert_with(Instant::now);
    epoch.input_records += chunk.input_records as u64;
    epoch.error_rows += chunk.bad_records.len() as u64;
    let dead_letters = epoch.dead_letters.get_mut(input).and_then(Option::as_mut);
    handle_bad_records(&spec.streams[input], &spec.name, dead_letters, &chunk.bad_records).await?;
    if chunk.batches.iter().all(|b| b.num_rows() == 0) {
        return Ok(());
    }
    let result = query.operator.lock().await.process(query, input, chunk.batches, &mut epoch.output).await;
    query.clear();
    result
}
