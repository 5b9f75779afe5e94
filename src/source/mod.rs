//! Sources: where a stream's records come from, decoded straight to Arrow,
//! and how far a continuous query has read them (its checkpoint).
//!
//! Every connector implements [`Source`]. A continuous query owns one source
//! instance; after a restart (or a retry) it opens a fresh one and hands it
//! the checkpoints of every committed epoch, so reading resumes exactly after
//! what was committed.

pub mod decode;
pub mod file;
pub mod generator;
pub mod kafka;
pub mod nexmark;
pub mod socket;

use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

pub use decode::{Format, RecordDecoder};

/// Records read by one `poll`, already decoded.
#[derive(Debug, Default)]
pub struct Chunk {
    /// Rows in the stream's full schema (declared columns, then the
    /// connector's metadata columns).
    pub batches: Vec<RecordBatch>,
    /// Records read, good and bad: the progress table's `input_rows`.
    pub input_records: usize,
    /// Records that could not be decoded, in read order.
    pub bad_records: Vec<BadRecord>,
}

/// A record that did not decode: kept whole for the dead-letter table.
#[derive(Debug, Clone)]
pub struct BadRecord {
    pub raw: Vec<u8>,
    pub error: String,
    /// Where it came from, e.g. `partition 2 offset 41` or `file a.json line 7`.
    pub position: String,
}

/// What a `poll` found.
#[derive(Debug)]
pub enum Poll {
    Data(Chunk),
    /// Nothing available within the wait.
    Idle,
    /// A bounded source (trigger `once` / `available_now`) has delivered
    /// everything that was there when it was opened.
    End,
}

/// Why reading failed. Transient errors (broker down, socket refused, a
/// file that vanished) make the query retry with backoff; fatal ones fail it.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Fatal(String),
}

/// What a source does when input it has not read yet is gone: Kafka
/// records deleted by retention, or replaced when the topic was recreated
/// (committed offsets past the partition's end); files removed before they
/// were read. As Spark's `failOnDataLoss`, the query's option
/// `fail_on_data_loss` (default true).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDataLoss {
    /// Fail the query, naming what was lost.
    #[default]
    Fail,
    /// Go on with what is still there, and report the gap
    /// ([`Source::take_data_loss`]) for `weir.query_progress`.
    Continue,
}

/// How to fix a query that failed on lost input, for the error message.
pub const DATA_LOSS_HINT: &str = "the query stops rather than skip input; to go on from what is still there and \
     record the gap in weir.query_progress, ALTER the sink or materialized view SET (fail_on_data_loss = false)";

/// How a source should behave for the query's trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bound {
    /// Read forever (default and interval triggers).
    Unbounded,
    /// Read what is available when the source is restored, then report
    /// [`Poll::End`] (triggers `once` and `available_now`).
    AvailableNow,
}

#[async_trait::async_trait]
pub trait Source: Send {
    /// Positions the source after everything in `committed`: the checkpoint
    /// of every committed epoch, oldest first. Empty means a first start,
    /// positioned by the stream's options (e.g. `startup_mode`). Called once,
    /// before the first `poll`; a bounded source fixes its end here.
    async fn restore(&mut self, committed: &[serde_json::Value], bound: Bound) -> Result<(), SourceError>;

    /// Reads up to about `max_records` records, waiting at most `wait` when
    /// nothing is available yet.
    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<Poll, SourceError>;

    /// What the epoch being committed has read, recorded with it and handed
    /// back to `restore` after a restart. Starts a new epoch: the next call
    /// covers only what was polled after this one.
    fn checkpoint(&mut self) -> serde_json::Value;

    /// Records known to be waiting (e.g. Kafka's high watermark minus the
    /// position), when the connector can tell.
    fn lag(&self) -> Option<i64> {
        None
    }

    /// Whether each checkpoint contains everything needed to resume (Kafka
    /// offsets, a generator's counter): then only the newest is kept and
    /// handed to `restore`. False when checkpoints are deltas (the files
    /// one epoch consumed) and `restore` needs all of them.
    fn checkpoint_is_cumulative(&self) -> bool {
        true
    }

    /// Whether re-reading from a checkpoint yields the same records (false
    /// for sockets: after a restart they continue with what arrives next).
    fn replayable(&self) -> bool {
        true
    }

    /// The partitions the source reads (Kafka's), once restored: each one's
    /// event time holds the watermark back until it has data or goes idle.
    /// Empty for unpartitioned sources.
    fn partitions(&self) -> Vec<i32> {
        Vec::new()
    }

    /// Input found lost since the last call and skipped (with
    /// [`OnDataLoss::Continue`]): what the next epoch records.
    fn take_data_loss(&mut self) -> Option<String> {
        None
    }
}

/// The stream's schema and options, as every connector receives them.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// The stream's name (for messages and dead-letter rows).
    pub stream: String,
    /// The declared columns only (what the decoder produces).
    pub value_schema: SchemaRef,
    /// Declared columns then the connector's metadata columns: the schema
    /// every chunk's batches have.
    pub schema: SchemaRef,
    pub format: Format,
    /// Connector options, lower-cased keys, already checked against the
    /// connector's list of valid options.
    pub options: std::collections::BTreeMap<String, String>,
}

/// A wait that grows from `initial` to `max`, for retry loops.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { next: initial, max }
    }

    /// The wait before the next attempt; doubles up to the maximum.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}
