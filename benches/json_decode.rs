//! Throughput of the JSON decoder that sources use (`source::decode`): one
//! million ~150-byte events into five typed columns, then the same with one
//! record in a thousand bad (half type mismatches, found by bisection; half
//! truncated). Prints rows per second; checks only that the good records
//! all decode.
//!
//! Run: `cargo bench --locked --bench json_decode` (a release build).

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use weir::source::{Format, RecordDecoder};

const RECORDS: usize = 1_000_000;
/// Records per `decode` call, about what a source hands over per poll.
const CHUNK: usize = 10_000;

fn main() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("user", DataType::Utf8, true),
        Field::new("event", DataType::Utf8, true),
        Field::new("price", DataType::Float64, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
    ]));
    let mut records: Vec<String> = (0..RECORDS)
        .map(|i| {
            format!(
                r#"{{"id":{i},"user":"user_{:05}","event":"page_view","session":"s{:06}","page":"/products/{}","price":{}.25,"ts":"2026-11-23T10:00:{:02}Z","ref":"x"}}"#,
                i % 50_000,
                i % 100_000,
                i % 7919,
                i % 1000,
                i % 60
            )
        })
        .collect();
    let avg = records.iter().map(String::len).sum::<usize>() / records.len();
    let mut decoder = RecordDecoder::new(schema, Format::Json);

    let (rows, bad, secs) = decode_all(&mut decoder, &records);
    assert_eq!((rows, bad), (RECORDS, 0), "every record decodes");
    println!("json: {rows} rows of ~{avg} bytes in {secs:.2}s = {:.0} rows/s", rows as f64 / secs);

    for i in (0..records.len()).step_by(1000) {
        records[i] = if i % 2000 == 0 { records[i].replace("\"price\":", "\"price\":\"x\",\"p\":") } else { "{".into() };
    }
    let (rows, bad, secs) = decode_all(&mut decoder, &records);
    println!("json, 0.1% bad: {rows} rows + {bad} bad in {secs:.2}s = {:.0} records/s", (rows + bad) as f64 / secs);
}

/// Decodes `records` chunk by chunk: (rows, bad records, seconds).
fn decode_all(decoder: &mut RecordDecoder, records: &[String]) -> (usize, usize, f64) {
    let refs: Vec<&[u8]> = records.iter().map(|r| r.as_bytes()).collect();
    let start = Instant::now();
    let (mut rows, mut bad) = (0, 0);
    for chunk in refs.chunks(CHUNK) {
        match decoder.decode(chunk) {
            Ok((batch, errors)) => {
                rows += batch.num_rows();
                bad += errors.len();
            }
            Err(e) => panic!("a chunk failed to decode: {e}"),
        }
    }
    (rows, bad, start.elapsed().as_secs_f64())
}
