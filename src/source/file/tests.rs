//! The file connector against real directories: order, exactly-once across
//! restarts, limits per epoch, bad records, Parquet files.

use super::*;
use datafusion::arrow::array::{AsArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

const WAIT: Duration = Duration::from_millis(50);

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true), Field::new("name", DataType::Utf8, true)]))
}

fn source(dir: &std::path::Path, format: Format, options: &[(&str, &str)]) -> FileSource {
    let mut map = BTreeMap::from([("path".to_string(), dir.display().to_string())]);
    map.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let spec = SourceSpec { stream: "s".into(), value_schema: schema(), schema: schema(), format, options: map };
    FileSource::new(spec, OnDataLoss::Continue).unwrap_or_else(|e| panic!("{e}"))
}

/// Writes a file with the given modification time (seconds after the epoch).
fn write(dir: &std::path::Path, name: &str, body: &str, mtime: u64) {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap_or_else(|e| panic!("{e}"));
    let file = std::fs::File::options().write(true).open(&path).unwrap_or_else(|e| panic!("{e}"));
    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime)).unwrap_or_else(|e| panic!("{e}"));
}

fn json_lines(ids: std::ops::Range<i64>) -> String {
    ids.map(|i| format!("{{\"id\":{i}}}\n")).collect()
}

async fn poll(src: &mut FileSource, max: usize) -> Poll {
    src.poll(max, WAIT).await.unwrap_or_else(|e| panic!("{e}"))
}

async fn ids(src: &mut FileSource, max: usize) -> Vec<i64> {
    match poll(src, max).await {
        Poll::Data(chunk) => {
            chunk.batches.iter().flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec()).collect()
        }
        other => panic!("expected data, got {other:?}"),
    }
}

#[tokio::test]
async fn reads_files_oldest_first_skips_hidden_and_picks_up_new_ones() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "b.json", &json_lines(0..2), 100);
    write(dir.path(), "a.json", &json_lines(2..4), 200);
    write(dir.path(), "c.json", &json_lines(4..5), 200);
    for hidden in [".a.json", "_SUCCESS", "d.json.tmp", "e.json.crdownload", "f.PARTIAL", "g.json#1"] {
        write(dir.path(), hidden, &json_lines(90..91), 1);
    }
    std::fs::create_dir(dir.path().join("sub")).unwrap_or_else(|e| panic!("{e}"));
    write(&dir.path().join("sub"), "x.json", &json_lines(99..100), 1);

    let mut src = source(dir.path(), Format::Json, &[]);
    src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&mut src, 1000).await, vec![0, 1, 2, 3, 4]);
    assert!(matches!(poll(&mut src, 1000).await, Poll::Idle));
    write(dir.path(), "z.json", &json_lines(5..7), 50);
    assert_eq!(ids(&mut src, 1000).await, vec![5, 6]);
    let checkpoint = src.checkpoint();
    assert_eq!(checkpoint, serde_json::json!({"files": ["b.json", "a.json", "c.json", "z.json"]}));
}

#[tokio::test]
async fn restore_skips_committed_files_and_resumes_mid_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "a.json", &json_lines(0..3), 100);
    write(dir.path(), "b.json", &json_lines(3..10), 200);
    let mut src = source(dir.path(), Format::Json, &[]);
    src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&mut src, 5).await, vec![0, 1, 2, 3, 4]);
    let first = src.checkpoint();
    assert_eq!(first["files"], serde_json::json!(["a.json"]));
    assert_eq!(first["current"]["file"], "b.json");
    assert_eq!(ids(&mut src, 2).await, vec![5, 6]);
    let second = src.checkpoint();
    // Not committed: the restarted source reads it again.
    let _lost = ids(&mut src, 100).await;

    let mut again = source(dir.path(), Format::Json, &[]);
    again.restore(&[first, second], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&mut again, 100).await, vec![7, 8, 9]);
    assert!(matches!(poll(&mut again, 100).await, Poll::Idle));
    assert_eq!(again.checkpoint(), serde_json::json!({"files": ["b.json"]}));
}

#[tokio::test]
async fn max_files_per_trigger_limits_each_epoch_and_latest_first_reverses() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (i, name) in ["a.json", "b.json", "c.json"].iter().enumerate() {
        write(dir.path(), name, &json_lines(i as i64..i as i64 + 1), 100 + i as u64);
    }
    let options = [("max_files_per_trigger", "2"), ("latest_first", "true")];
    let mut src = source(dir.path(), Format::Json, &options);
    src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&mut src, 1000).await, vec![2, 1]);
    assert!(matches!(poll(&mut src, 1000).await, Poll::Idle));
    src.checkpoint();
    assert_eq!(ids(&mut src, 1000).await, vec![0]);
}

#[tokio::test]
async fn empty_files_do_not_use_up_the_file_limit() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "a.json", "", 100);
    write(dir.path(), "b.json", "\n\n", 200);
    write(dir.path(), "c.json", &json_lines(0..1), 300);
    write(dir.path(), "d.json", &json_lines(1..2), 400);
    let mut src = source(dir.path(), Format::Json, &[("max_files_per_trigger", "1")]);
    src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&mut src, 1000).await, vec![0]);
    assert!(matches!(poll(&mut src, 1000).await, Poll::Idle));
    assert_eq!(src.checkpoint(), serde_json::json!({"files": ["a.json", "b.json", "c.json"]}));
    assert_eq!(ids(&mut src, 1000).await, vec![1]);
}

#[tokio::test]
async fn available_now_reads_what_was_there_then_ends() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "a.json", &json_lines(0..2), 100);
    write(dir.path(), "b.json", &json_lines(2..3), 200);
    let mut src = source(dir.path(), Format::Json, &[("max_files_per_trigger", "1")]);
    src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "c.json", &json_lines(3..4), 300);
    assert_eq!(ids(&mut src, 1000).await, vec![0, 1]);
    assert!(matches!(poll(&mut src, 1000).await, Poll::Idle));
    src.checkpoint();
    assert_eq!(ids(&mut src, 1000).await, vec![2]);
    assert!(matches!(poll(&mut src, 1000).await, Poll::End));
}

#[tokio::test]
async fn bad_lines_csv_header_and_large_files_in_batches() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "a.json", "{\"id\":1}\r\n\n{\"id\":\"x\"}\n{\"id\":3", 100);
    let mut src = source(dir.path(), Format::Json, &[]);
    src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    let Poll::Data(chunk) = poll(&mut src, 100).await else { panic!("expected data") };
    assert_eq!(chunk.input_records, 3);
    let positions: Vec<&str> = chunk.bad_records.iter().map(|b| b.position.as_str()).collect();
    assert_eq!(positions, vec!["file a.json line 3", "file a.json line 4"]);
    assert_eq!(chunk.bad_records[1].raw, b"{\"id\":3");

    let csv = Format::Csv { header: true, delimiter: b',' };
    let body: String =
        std::iter::once("id,name\n".to_string()).chain((0..70_000).map(|i| format!("{i},n{i}\r\n"))).collect();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "b.csv", &body, 100);
    let mut src = source(dir.path(), csv, &[]);
    src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
    let Poll::Data(chunk) = poll(&mut src, 1_000_000).await else { panic!("expected data") };
    assert!(chunk.bad_records.is_empty(), "{:?}", chunk.bad_records);
    let rows: Vec<usize> = chunk.batches.iter().map(RecordBatch::num_rows).collect();
    assert!(rows.iter().all(|&n| n <= MAX_BATCH_RECORDS), "{rows:?}");
    assert_eq!(rows.iter().sum::<usize>(), 70_000);
    assert_eq!(chunk.batches[1].column(1).as_string::<i32>().value(0), "n65536");
    assert!(matches!(poll(&mut src, 100).await, Poll::End));
}

#[tokio::test]
async fn parquet_files_by_column_name_with_casts_and_bad_files() {
    use datafusion::parquet::arrow::ArrowWriter;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file_schema =
        Arc::new(Schema::new(vec![Field::new("extra", DataType::Utf8, true), Field::new("ID", DataType::Int32, false)]));
    let batch = RecordBatch::try_new(
        file_schema.clone(),
        vec![Arc::new(StringArray::from(vec!["a", "b", "c"])), Arc::new(Int32Array::from(vec![1, 2, 3]))],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = std::fs::File::create(dir.path().join("a.parquet")).unwrap_or_else(|e| panic!("{e}"));
    let mut writer = ArrowWriter::try_new(file, file_schema, None).unwrap_or_else(|e| panic!("{e}"));
    writer.write(&batch).unwrap_or_else(|e| panic!("{e}"));
    writer.close().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "b.parquet", "not parquet at all", 4_000_000_000); // after a.parquet's "now"

    let mut src = source(dir.path(), Format::Parquet, &[]);
    src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&mut src, 2).await, vec![1, 2]);
    let checkpoint = src.checkpoint();
    assert_eq!(checkpoint["current"]["offset"], 2);
    let mut src = source(dir.path(), Format::Parquet, &[]);
    src.restore(&[checkpoint], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
    let Poll::Data(chunk) = poll(&mut src, 100).await else { panic!("expected data") };
    assert_eq!(chunk.batches[0].column(0).as_primitive::<Int64Type>().values().as_ref(), &[3]);
    assert_eq!(chunk.batches[0].column(1).null_count(), 1);
    assert_eq!(chunk.bad_records.len(), 1);
    assert_eq!(chunk.bad_records[0].position, "file b.parquet");
    assert!(matches!(poll(&mut src, 100).await, Poll::End));
}

#[tokio::test]
async fn unreadable_parquet_files_are_bad_records_within_max_records() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    for (i, name) in ["a.parquet", "b.parquet", "c.parquet"].iter().enumerate() {
        write(dir.path(), name, "PAR1 but not really", 100 + i as u64);
    }
    let mut src = source(dir.path(), Format::Parquet, &[]);
    src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
    for name in ["a.parquet", "b.parquet", "c.parquet"] {
        let Poll::Data(chunk) = poll(&mut src, 1).await else { panic!("expected data") };
        assert_eq!(chunk.input_records, 1);
        assert_eq!(chunk.bad_records[0].position, format!("file {name}"));
    }
    assert!(matches!(poll(&mut src, 1).await, Poll::End));
}

#[test]
fn bad_options_are_fatal() {
    let dir = std::path::Path::new("/nonexistent");
    for options in [[("latest_first", "maybe")], [("max_files_per_trigger", "0")]] {
        let mut map = BTreeMap::from([("path".to_string(), dir.display().to_string())]);
        map.extend(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let spec =
            SourceSpec { stream: "s".into(), value_schema: schema(), schema: schema(), format: Format::Json, options: map };
        assert!(matches!(FileSource::new(spec, OnDataLoss::Fail), Err(SourceError::Fatal(_))));
    }
}

/// A file a committed epoch left part-way is gone at the restart: by
/// default the query fails, naming the file and how far it was read; with
/// `fail_on_data_loss = false` it is skipped and reported once.
#[tokio::test]
async fn a_file_gone_before_it_was_read_whole_fails_unless_told_to_go_on() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "a.json", &json_lines(0..3), 100);
    write(dir.path(), "b.json", &json_lines(3..10), 200);
    let mut src = source(dir.path(), Format::Json, &[]);
    src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ids(&mut src, 5).await, vec![0, 1, 2, 3, 4]);
    let committed = src.checkpoint();
    assert_eq!(committed["current"]["file"], "b.json");
    std::fs::remove_file(dir.path().join("b.json")).unwrap_or_else(|e| panic!("{e}"));

    let spec = |dir: &std::path::Path| SourceSpec {
        stream: "s".into(),
        value_schema: schema(),
        schema: schema(),
        format: Format::Json,
        options: BTreeMap::from([("path".to_string(), dir.display().to_string())]),
    };
    let mut failing = FileSource::new(spec(dir.path()), OnDataLoss::Fail).unwrap_or_else(|e| panic!("{e}"));
    failing.restore(std::slice::from_ref(&committed), Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    match failing.poll(100, WAIT).await {
        Err(SourceError::Fatal(message)) => {
            assert!(message.contains("file 'b.json' vanished after 2 of its records were read"), "{message}");
            assert!(message.contains("fail_on_data_loss = false"), "{message}");
        }
        other => panic!("expected a fatal error, got {other:?}"),
    }

    let mut going_on = FileSource::new(spec(dir.path()), OnDataLoss::Continue).unwrap_or_else(|e| panic!("{e}"));
    going_on.restore(&[committed], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
    write(dir.path(), "c.json", &json_lines(10..11), 300);
    assert_eq!(ids(&mut going_on, 100).await, vec![10]);
    let loss = going_on.take_data_loss().unwrap_or_default();
    assert!(loss.contains("file 'b.json' vanished after 2 of its records were read"), "{loss}");
    assert_eq!(going_on.take_data_loss(), None, "reported once");
    assert_eq!(going_on.checkpoint()["files"], serde_json::json!(["b.json", "c.json"]));
}
