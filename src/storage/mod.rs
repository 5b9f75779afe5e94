//! Files and where they may be: the one listing rule readers share
//! (`listing`), a table's place, local or in a bucket (`table_dir`), the
//! allow-lists for client-given locations and hosts
//! (`sandbox`), the warehouse of weir-owned tables (`warehouse`), the
//! object store the engine reads and writes through (`store`), its
//! streaming writes staged under hidden names (`upload`), and buckets on
//! S3-compatible object storage (`s3`).

pub mod listing;
pub mod s3;
pub mod sandbox;
pub mod store;
pub mod table_dir;
pub mod upload;
pub mod warehouse;

pub use listing::is_visible;
pub use sandbox::Sandbox;
pub use store::{CommittedStore, PublishGate};
pub use table_dir::TableDir;
pub use warehouse::Warehouse;
