//! Where a table's files are: a local directory or a prefix in a bucket.
//! One type for both, so that code which only carries a location (the
//! warehouse, a sink's target, the Delta log) need not care which.

use std::path::{Path, PathBuf};

use super::s3::S3Dir;
use crate::error::QueryError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableDir {
    Local(PathBuf),
    S3(S3Dir),
}

impl TableDir {
    /// A table's location as the catalog records it (an absolute path, or
    /// an `s3://` URL).
    pub fn from_location(location: &str) -> Result<TableDir, QueryError> {
        if super::s3::is_s3(location) {
            return Ok(TableDir::S3(S3Dir::parse(location)?));
        }
        Ok(TableDir::Local(PathBuf::from(location.trim_end_matches('/'))))
    }

    /// The location as the catalog records it: a directory ends in `/`.
    pub fn location(&self) -> String {
        match self {
            TableDir::Local(dir) => format!("{}/", dir.display()),
            TableDir::S3(dir) => dir.url(),
        }
    }

    /// The location as a URL (`file:///...` or `s3://...`).
    pub fn url(&self) -> Result<url::Url, String> {
        match self {
            TableDir::Local(dir) => {
                url::Url::from_directory_path(dir).map_err(|()| "not an absolute directory path".to_string())
            }
            TableDir::S3(dir) => url::Url::parse(&dir.url()).map_err(|e| e.to_string()),
        }
    }
}

impl std::fmt::Display for TableDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableDir::Local(dir) => write!(f, "{}", dir.display()),
            TableDir::S3(dir) => write!(f, "{dir}"),
        }
    }
}

impl From<&Path> for TableDir {
    fn from(dir: &Path) -> TableDir {
        TableDir::Local(dir.to_path_buf())
    }
}
