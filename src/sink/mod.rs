//! Sinks: where a continuous query's results land. Parquet tables today,
//! with the file half of the exactly-once commit protocol.

pub mod parquet;

pub use parquet::{EpochWriter, ParquetSink, Roll, publish};
