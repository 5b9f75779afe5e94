//! The one listing rule: which names in a table's (or a file stream's)
//! directory are finished, committed files that readers may see.
//!
//! Every reader of a directory asks [`is_visible`]: ad-hoc queries (through
//! [`super::store::CommittedStore`]), materialized views, the file source,
//! and the search for an unreadable Parquet file. A writer that wants a file
//! unseen until it is whole gives it a name this rule hides, then renames it.

/// Suffixes of files still being written by some tool (weir's staged epoch
/// files end in `.pending`; downloads and editors use the others).
pub const UNFINISHED_SUFFIXES: &[&str] = &[".pending", ".tmp", ".partial", ".crdownload"];

/// Whether a file or directory named `name` is visible to readers.
///
/// Hidden: names starting with `.` or `_` (Hive and Spark's convention:
/// `_SUCCESS`, `_temporary/`, and weir's `.weir.*.pending` staged files),
/// names containing `#` (object_store, and so DataFusion's `COPY ... TO`,
/// stages a file as `name#<n>` before renaming it into place), and names
/// ending in one of [`UNFINISHED_SUFFIXES`] (case-insensitively).
pub fn is_visible(name: &str) -> bool {
    if name.is_empty() || name.starts_with('.') || name.starts_with('_') || name.contains('#') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    !UNFINISHED_SUFFIXES.iter().any(|s| lower.ends_with(s))
}

/// Whether every segment of `relative` (a `/`-separated path below a listed
/// directory) is visible: a file inside `_temporary/` is as hidden as a file
/// named `_x`. The listed directory itself is not judged; the user named it.
pub fn is_visible_below<S: AsRef<str>>(segments: impl IntoIterator<Item = S>) -> bool {
    segments.into_iter().all(|s| is_visible(s.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_temporary_and_staged_names_are_not_visible() {
        for name in [
            ".hidden.parquet",
            "_SUCCESS",
            "_temporary",
            "x.parquet.tmp",
            "x.PARQUET.TMP",
            ".weir.71.000001.000.0.pending",
            "q-000001.parquet.pending",
            "part-0.parquet#1",
            "a.json.crdownload",
            "b.partial",
            "",
        ] {
            assert!(!is_visible(name), "{name:?} must be hidden");
        }
        for name in ["part-0.parquet", "day=2026-01-01", "v000003", "q-000001-000-ab12cd34.parquet", "tmp.parquet"] {
            assert!(is_visible(name), "{name:?} must be visible");
        }
    }

    #[test]
    fn a_hidden_directory_hides_what_is_below_it() {
        assert!(is_visible_below("day=1/part-0.parquet".split('/')));
        assert!(!is_visible_below("_temporary/0/part-0.parquet".split('/')));
        assert!(!is_visible_below("day=1/.x/part-0.parquet".split('/')));
    }
}
