//! Parsing: SQL text in, weir statements out. Our own DDL is recognised
//! here; everything else is DataFusion's and passes through untouched.

mod classify;
mod client_compat;
mod column_names;
pub mod limits;
mod parser;
pub mod scalar_subqueries;
pub mod search_path;
pub mod streaming;

pub use classify::{Statement, TransactionKind};
pub use parser::Parser;
pub use streaming::{CreateContinuousQuery, CreateStream, Options, SinkTarget, StreamingKind};
