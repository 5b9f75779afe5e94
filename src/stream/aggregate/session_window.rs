//! Session windows in the kept aggregation state. SESSION gives each row the
//! window `[ts, ts + gap)`; after every merge of a chunk, a key's windows
//! that overlap are joined into one session `[first event, last event + gap)`
//! here, and the aggregation reduces the joined rows' partial states into
//! one. A late row can so bridge two sessions, and nothing is recomputed
//! from history.
//!
//! Two windows join when the second starts *before* the first ends: events
//! exactly `gap` apart are two sessions (Spark's and Flink's "less than the
//! gap" rule). That strictness is also what makes append mode sound: a
//! session is emitted once the watermark reaches its end, and the runner only
//! drops rows older than the watermark, so a row at exactly the end would
//! otherwise join a session already written.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, RecordBatch, TimestampMicrosecondArray};
use datafusion::arrow::compute::{SortColumn, cast, lexsort_to_indices, take};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::row::{RowConverter, SortField};

/// Where a session aggregation's columns are in the partial state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionColumns {
    /// The group columns other than the window bounds: one session
    /// sequence per distinct key.
    pub keys: Vec<usize>,
    pub start: usize,
    pub end: usize,
}

/// A session being built while walking the rows in (key, start) order.
struct Run {
    /// The sorted position of its first row.
    from: usize,
    /// That row's index in the batch, to compare keys with.
    first_row: usize,
    start: i64,
    end: i64,
}

impl Run {
    /// Gives every row of the run, up to sorted position `upto`, its bounds.
    fn write(&self, upto: usize, starts: &mut Vec<Option<i64>>, ends: &mut Vec<Option<i64>>) {
        for _ in self.from..upto {
            starts.push(Some(self.start));
            ends.push(Some(self.end));
        }
    }
}

fn micros(column: &ArrayRef) -> Result<TimestampMicrosecondArray, ArrowError> {
    let cast = cast(column, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
    cast.as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .cloned()
        .ok_or_else(|| ArrowError::CastError("session bound is not a timestamp".into()))
}

/// The state rows with every window replaced by the session it belongs to,
/// sorted by key and start; `None` when no window changed (nothing to
/// reduce). Rows with equal key and bounds afterwards are one session.
pub fn merge_bounds(batch: &RecordBatch, columns: &SessionColumns) -> Result<Option<RecordBatch>, ArrowError> {
    let n = batch.num_rows();
    if n < 2 {
        return Ok(None);
    }
    // The row format turns a key of any types into bytes that compare
    // equal exactly when the keys do, so one binary column stands for it.
    let keys: Option<BinaryArray> = if columns.keys.is_empty() {
        None
    } else {
        let fields = columns.keys.iter().map(|&i| SortField::new(batch.column(i).data_type().clone())).collect();
        let key_columns: Vec<ArrayRef> = columns.keys.iter().map(|&i| batch.column(i).clone()).collect();
        Some(RowConverter::new(fields)?.convert_columns(&key_columns)?.try_into_binary()?)
    };
    let starts = micros(batch.column(columns.start))?;
    let ends = micros(batch.column(columns.end))?;
    let mut sort = Vec::with_capacity(2);
    if let Some(keys) = &keys {
        sort.push(SortColumn { values: Arc::new(keys.clone()), options: None });
    }
    sort.push(SortColumn { values: Arc::new(starts.clone()), options: None });
    let order = lexsort_to_indices(&sort, None)?;

    let same_key = |a: usize, b: usize| keys.as_ref().is_none_or(|k| k.value(a) == k.value(b));
    // New bounds in sorted order: each run of rows that join is written
    // when the next row does not join it.
    let mut new_starts: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut new_ends: Vec<Option<i64>> = Vec::with_capacity(n);
    let mut open: Option<Run> = None;
    for (position, row) in order.values().iter().map(|&i| i as usize).enumerate() {
        let bounds = (starts.is_valid(row) && ends.is_valid(row)).then(|| (starts.value(row), ends.value(row)));
        match (&mut open, bounds) {
            (Some(run), Some((start, end))) if same_key(run.first_row, row) && start < run.end => {
                run.end = run.end.max(end);
            }
            (_, Some((start, end))) => {
                if let Some(run) = open.take() {
                    run.write(position, &mut new_starts, &mut new_ends);
                }
                open = Some(Run { from: position, first_row: row, start, end });
            }
            // A window without bounds cannot come from SESSION; keep it as
            // it is, a session of its own.
            (_, None) => {
                if let Some(run) = open.take() {
                    run.write(position, &mut new_starts, &mut new_ends);
                }
                new_starts.push(starts.is_valid(row).then(|| starts.value(row)));
                new_ends.push(ends.is_valid(row).then(|| ends.value(row)));
            }
        }
    }
    if let Some(run) = open {
        run.write(n, &mut new_starts, &mut new_ends);
    }

    let sorted_starts = take(&starts, &order, None)?;
    let sorted_ends = take(&ends, &order, None)?;
    let new_starts = TimestampMicrosecondArray::from(new_starts);
    let new_ends = TimestampMicrosecondArray::from(new_ends);
    if sorted_starts.as_ref() == &new_starts as &dyn Array && sorted_ends.as_ref() == &new_ends as &dyn Array {
        return Ok(None);
    }
    let mut out: Vec<ArrayRef> = batch.columns().iter().map(|c| take(c.as_ref(), &order, None)).collect::<Result<_, _>>()?;
    out[columns.start] = cast(&new_starts, batch.column(columns.start).data_type())?;
    out[columns.end] = cast(&new_ends, batch.column(columns.end).data_type())?;
    Ok(Some(RecordBatch::try_new(batch.schema(), out)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    fn columns() -> SessionColumns {
        SessionColumns { keys: vec![0], start: 1, end: 2 }
    }

    /// State rows (user, start, end, count).
    fn state(rows: &[(Option<&str>, i64, i64, i64)]) -> RecordBatch {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
        let schema = Schema::new(vec![
            Field::new("user", DataType::Utf8, true),
            Field::new("window_start", ts.clone(), false),
            Field::new("window_end", ts, false),
            Field::new("n", DataType::Int64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(TimestampMicrosecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>())),
                Arc::new(TimestampMicrosecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())),
                Arc::new(Int64Array::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    /// What a PartialReduce would make of merged rows (sum of counts per
    /// key and bounds), sorted, so tests read as whole sessions.
    fn sessions(batch: &RecordBatch) -> Vec<(Option<String>, i64, i64, i64)> {
        let user = batch.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let start = batch.column(1).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        let end = batch.column(2).as_any().downcast_ref::<TimestampMicrosecondArray>().unwrap();
        let n = batch.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        let mut out: Vec<(Option<String>, i64, i64, i64)> = Vec::new();
        for i in 0..batch.num_rows() {
            let key = (user.is_valid(i).then(|| user.value(i).to_string()), start.value(i), end.value(i));
            match out.iter_mut().find(|s| (s.0.clone(), s.1, s.2) == key) {
                Some(s) => s.3 += n.value(i),
                None => out.push((key.0, key.1, key.2, n.value(i))),
            }
        }
        out.sort();
        out
    }

    /// Merges like the aggregation does after each chunk: the kept
    /// sessions plus the chunk's one-event windows.
    fn absorb(
        kept: &[(Option<&str>, i64, i64, i64)],
        chunk: &[(Option<&str>, i64)],
        gap: i64,
    ) -> Vec<(Option<String>, i64, i64, i64)> {
        let mut rows = kept.to_vec();
        rows.extend(chunk.iter().map(|(u, t)| (*u, *t, t + gap, 1)));
        let batch = state(&rows);
        let merged = merge_bounds(&batch, &columns()).unwrap().unwrap_or(batch);
        sessions(&merged)
    }

    fn owned(rows: &[(Option<String>, i64, i64, i64)]) -> Vec<(Option<&str>, i64, i64, i64)> {
        rows.iter().map(|r| (r.0.as_deref(), r.1, r.2, r.3)).collect()
    }

    #[test]
    fn keys_keep_their_own_sessions() {
        let chunk = [(Some("a"), 0), (Some("b"), 5), (Some("a"), 20), (None, 1), (None, 2), (Some("a"), 100)];
        let got = absorb(&[], &chunk, 30);
        assert_eq!(
            got,
            vec![
                (None, 1, 32, 2),
                (Some("a".into()), 0, 50, 2),
                (Some("a".into()), 100, 130, 1),
                (Some("b".into()), 5, 35, 1),
            ]
        );
    }

    #[test]
    fn events_a_gap_apart_are_two_sessions() {
        let got = absorb(&[], &[(Some("a"), 0), (Some("a"), 30)], 30);
        assert_eq!(got, vec![(Some("a".into()), 0, 30, 1), (Some("a".into()), 30, 60, 1)]);
    }

    #[test]
    fn out_of_order_chunks_and_a_bridging_event() {
        // Chunk 1: a's events at 50 and 0, out of order: two sessions.
        let first = absorb(&[], &[(Some("a"), 50), (Some("a"), 0), (Some("b"), 10)], 30);
        assert_eq!(first, vec![(Some("a".into()), 0, 30, 1), (Some("a".into()), 50, 80, 1), (Some("b".into()), 10, 40, 1)]);
        // Chunk 2: an older event (25) reaches both: one session of three.
        let second = absorb(&owned(&first), &[(Some("a"), 25), (Some("b"), 100)], 30);
        assert_eq!(
            second,
            vec![(Some("a".into()), 0, 80, 3), (Some("b".into()), 10, 40, 1), (Some("b".into()), 100, 130, 1)]
        );
        // Nothing to merge: no rewrite, no second reduce.
        let batch = state(&owned(&second));
        assert!(merge_bounds(&batch, &columns()).unwrap().is_none());
    }

    #[test]
    fn a_session_without_keys() {
        let batch = state(&[(None, 40, 70, 1), (None, 0, 30, 1), (None, 20, 50, 1)]);
        let columns = SessionColumns { keys: vec![], start: 1, end: 2 };
        let merged = merge_bounds(&batch, &columns).unwrap().unwrap();
        assert_eq!(sessions(&merged), vec![(None, 0, 70, 3)]);
    }
}
