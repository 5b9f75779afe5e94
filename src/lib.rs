//! Weir: a SQL-first streaming query server behind one PostgreSQL endpoint.
//!
//! The layout, from the wire inwards:
//!
//! * `server`: listeners, connection limits, TLS, graceful shutdown.
//! * `flight`: the Arrow Flight SQL endpoint over the same engine.
//! * `pgwire`: the PostgreSQL protocol: each connection's loop (frame
//!   checks before decoding, timeouts, hang-up cancels), start-up and auth,
//!   simple and extended query handlers, Arrow ↔ PostgreSQL encoding,
//!   errors → SQLSTATE.
//! * `sql`: parsing; recognises weir's own statements, passes the rest on;
//!   `sql::search_path` qualifies table names along the session's path;
//!   `sql::limits` refuses statements too deep to plan safely (54001).
//! * `handler`: one file per statement kind behind one dispatch match; each
//!   checks its arguments and makes one call below (DDL of streams and
//!   continuous queries goes to `stream::StreamManager`).
//! * `session`: a connection's variables: start-up parameters, `SET`
//!   values and their defaults, and what the engine reads from them
//!   (search_path, `datafusion.*` overrides, the idle-session timeout).
//! * `engine`: the shared DataFusion context, parser and configuration.
//! * `stream`: continuous queries: their one owner (`StreamManager`:
//!   create, persist, start, drop, restore at start-up; pause, resume,
//!   alter options and replace the query without losing progress), stream
//!   definitions, a query planned once and run behind one operator trait
//!   (stateless, incremental aggregation, stream-stream join,
//!   window-aligned), the epoch loop, the commit protocol, windows,
//!   watermarks (per partition), status and progress.
//! * `source`: connectors (Kafka, files, sockets, a generator, Nexmark's
//!   benchmark events) decoding records straight to Arrow.
//! * `sink`: where results land, typed by `sink::Target`: a two-phase sink
//!   trait (write, prepare, commit after the catalog transaction, abort)
//!   implemented by Parquet tables (Hive-partitioned ones too, and ones in
//!   a bucket, published by copy), Delta tables, rewritten views and Kafka
//!   topics.
//! * `catalog`: the metastore (SQLite today, behind a sync trait that async
//!   code calls off the workers) and DataFusion's `public` schema built
//!   from it: one call creates or drops a relation in both.
//! * `storage`: files and where they may be: the one listing rule every
//!   reader shares (committed files only), the sandbox of allowed
//!   directories and hosts, the warehouse (the only code that builds paths
//!   from object names and deletes directories), the object store the
//!   engine reads and writes through, and `s3://` buckets (one configured
//!   client per bucket, shared with the Delta crate).
//! * `delta`: Delta Lake tables (the `deltalake` crate): reading a
//!   snapshot per query, creating, and committing an epoch to the log with
//!   the query's transaction id, which recovery reads back.
//! * `views`: logical views (`CREATE VIEW`): kept in the catalog, planned
//!   where used, expanded into continuous queries; what reads what.
//! * `functions`: PostgreSQL functions clients expect (version(), descriptions).
//! * `types`: the one Arrow → PostgreSQL type table the wire, `DESCRIBE`
//!   and `pg_catalog` share.
//! * `pg_catalog_compat`: PostgreSQL 15's columns for the catalog tables BI
//!   tools read whole, and the `information_schema` tables they join;
//!   weir's relations as psql describes them (a stream is a foreign table,
//!   sizes, definitions) and the session's role.
//! * `produce`: `weir produce`, stdin lines to a Kafka topic (demos, tests).
//! * `config`: the typed configuration, built by `main` and passed down.
//! * `random`: salts, secrets and unique names from the OS random source.
//! * `error`: one error enum per layer, each mapped to a SQLSTATE.

pub mod catalog;
pub mod config;
pub mod delta;
pub mod engine;
pub mod error;
pub mod flight;
pub mod functions;
pub mod handler;
pub mod pg_catalog_compat;
pub mod pgwire;
pub mod produce;
pub mod random;
pub mod server;
pub mod session;
pub mod sink;
pub mod source;
pub mod sql;
pub mod storage;
pub mod stream;
pub mod types;
pub mod views;
