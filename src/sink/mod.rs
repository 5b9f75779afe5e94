//! Sinks: where a continuous query's results land. Parquet tables, with
//! the file half of the exactly-once commit protocol, and Kafka topics.

pub mod kafka;
pub mod parquet;

pub use parquet::{EpochWriter, ParquetSink, Roll, publish};
