//! Socket connector: lines of text from a TCP server, one record each, like
//! Spark's socket source (for demos: `nc -lk 9999`). Not replayable: after a
//! restart it continues with whatever the server sends next.
//!
//! Lines are decoded with the stream's format (text by default; json and csv
//! work too). Empty lines are skipped. A refused or dropped connection is a
//! transient error: the runner retries with backoff and a fresh source
//! reconnects.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpStream;

use super::{BadRecord, Bound, Chunk, Format, Poll, RecordDecoder, Source, SourceError, SourceSpec};

/// Options of `connector = 'socket'` besides the common ones.
pub const OPTIONS: &[&str] = &["host", "port"];

/// A host that never answers must not hold a poll (and a stop) for minutes.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_BUFFER: usize = 64 * 1024;

pub struct SocketSource {
    stream: String,
    /// `host:port`, as given.
    address: String,
    decoder: RecordDecoder,
    format: Format,
    connection: Option<BufReader<TcpStream>>,
    /// Bytes of a line not yet ended by '\n'. Owned here rather than by a
    /// poll so that a poll dropped mid-read (a stop) loses nothing.
    partial: Vec<u8>,
    /// Lines read in total (since the query first started), for positions
    /// and the informational checkpoint.
    lines: u64,
    /// With `Bound::AvailableNow`, a poll that sees no data within its wait
    /// ends the stream: a socket has no "everything available now".
    bounded: bool,
    /// The server closed the connection (seen while a chunk was pending).
    closed: bool,
}

impl SocketSource {
    pub fn new(spec: SourceSpec) -> Result<SocketSource, SourceError> {
        let stream = spec.stream;
        let fatal = |m: String| SourceError::Fatal(format!("stream '{stream}': {m}"));
        let host = spec.options.get("host").ok_or_else(|| fatal("connector 'socket' needs option 'host'".into()))?;
        let port = spec.options.get("port").ok_or_else(|| fatal("connector 'socket' needs option 'port'".into()))?;
        let port: u16 = match port.trim().parse() {
            Ok(p) if p > 0 => p,
            _ => return Err(fatal(format!("option 'port' must be a TCP port (1-65535), got '{port}'"))),
        };
        if spec.schema.fields() != spec.value_schema.fields() {
            return Err(fatal("connector 'socket' has no metadata columns".into()));
        }
        if spec.format == Format::Parquet {
            return Err(fatal("format 'parquet' is for the file connector; a socket sends lines".into()));
        }
        // IPv6 literals need brackets in `host:port`.
        let address =
            if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        Ok(SocketSource {
            decoder: RecordDecoder::new(spec.schema.clone(), spec.format.clone()),
            format: spec.format,
            address,
            connection: None,
            partial: Vec::new(),
            lines: 0,
            bounded: false,
            closed: false,
            stream,
        })
    }

    fn transient(&self, what: impl std::fmt::Display) -> SourceError {
        SourceError::Transient(format!("stream '{}': socket {}: {what}", self.stream, self.address))
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        let connecting = TcpStream::connect(&self.address);
        let socket = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(Ok(socket)) => socket,
            Ok(Err(e)) => return Err(self.transient(format_args!("cannot connect: {e}"))),
            Err(_) => return Err(self.transient(format_args!("no answer within {CONNECT_TIMEOUT:?}"))),
        };
        self.connection = Some(BufReader::with_capacity(READ_BUFFER, socket));
        Ok(())
    }

    /// Decodes the lines of `buf` at `spans` (start, end, line number).
    fn decode(&mut self, buf: &[u8], spans: &[(usize, usize, u64)]) -> Result<Chunk, SourceError> {
        let records: Vec<&[u8]> = spans.iter().map(|&(s, e, _)| &buf[s..e]).collect();
        let (batch, bad) = self
            .decoder
            .decode(&records)
            .map_err(|e| SourceError::Fatal(format!("stream '{}': cannot decode socket lines: {e}", self.stream)))?;
        Ok(Chunk {
            batches: if batch.num_rows() > 0 { vec![batch] } else { Vec::new() },
            input_records: records.len(),
            bad_records: bad
                .into_iter()
                .map(|(i, error)| BadRecord { raw: records[i].to_vec(), error, position: format!("line {}", spans[i].2) })
                .collect(),
        })
    }

    /// Takes the completed line in `partial` (if it is one) into `buf`.
    fn take_line(&mut self, buf: &mut Vec<u8>, spans: &mut Vec<(usize, usize, u64)>) {
        let mut line = self.partial.as_slice();
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        self.lines += 1;
        let blank = if self.format == Format::Json { line.trim_ascii().is_empty() } else { line.is_empty() };
        if !blank {
            let start = buf.len();
            buf.extend_from_slice(line);
            spans.push((start, buf.len(), self.lines));
        }
        self.partial.clear();
    }
}

#[async_trait::async_trait]
impl Source for SocketSource {
    async fn restore(&mut self, committed: &[serde_json::Value], bound: Bound) -> Result<(), SourceError> {
        // Nothing to replay; keep numbering lines where the last epoch left off.
        self.lines = committed.last().and_then(|c| c.get("lines")).and_then(serde_json::Value::as_u64).unwrap_or(0);
        self.bounded = bound == Bound::AvailableNow;
        Ok(())
    }

    async fn poll(&mut self, max_records: usize, wait: Duration) -> Result<Poll, SourceError> {
        if self.closed {
            return if self.bounded { Ok(Poll::End) } else { Err(self.transient("the server closed the connection")) };
        }
        if self.connection.is_none() {
            self.connect().await?;
        }
        let deadline = Instant::now() + wait;
        let mut buf = Vec::new();
        let mut spans = Vec::new();
        while spans.len() < max_records.max(1) {
            // Once some lines are in hand, return them rather than wait for more.
            let budget = if spans.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
            let Some(connection) = self.connection.as_mut() else { break };
            let read = tokio::time::timeout(budget, connection.read_until(b'\n', &mut self.partial)).await;
            match read {
                Err(_elapsed) => break,
                Ok(Ok(0)) => {
                    // End of stream: an unterminated last line still counts.
                    if !self.partial.is_empty() {
                        self.take_line(&mut buf, &mut spans);
                    }
                    self.connection = None;
                    self.closed = true;
                    break;
                }
                Ok(Ok(_)) if self.partial.ends_with(b"\n") => self.take_line(&mut buf, &mut spans),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    self.connection = None;
                    if spans.is_empty() {
                        return Err(self.transient(format_args!("read failed: {e}")));
                    }
                    // Deliver what was read; the next poll reconnects.
                    break;
                }
            }
        }
        if !spans.is_empty() {
            return Ok(Poll::Data(self.decode(&buf, &spans)?));
        }
        if self.closed {
            return if self.bounded { Ok(Poll::End) } else { Err(self.transient("the server closed the connection")) };
        }
        Ok(if self.bounded { Poll::End } else { Poll::Idle })
    }

    fn checkpoint(&mut self) -> serde_json::Value {
        serde_json::json!({ "lines": self.lines })
    }

    fn replayable(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    const WAIT: Duration = Duration::from_millis(200);

    fn source(port: u16, format: Format, schema: SchemaRef) -> SocketSource {
        let options =
            BTreeMap::from([("host".to_string(), "127.0.0.1".to_string()), ("port".to_string(), port.to_string())]);
        let spec = SourceSpec { stream: "s".into(), value_schema: schema.clone(), schema, format, options };
        SocketSource::new(spec).unwrap_or_else(|e| panic!("{e}"))
    }

    fn text_schema() -> SchemaRef {
        super::super::decode::value_schema_for(&Format::Text).unwrap_or_else(|| panic!("text schema"))
    }

    /// A server on a free port that sends `body` to its first client, then
    /// keeps the connection open for `hold` before closing it.
    async fn serve(body: &'static [u8], hold: Duration) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        tokio::spawn(async move {
            if let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(body).await;
                tokio::time::sleep(hold).await;
            }
        });
        port
    }

    /// Polls until the source errors or ends, collecting chunks.
    async fn drain(src: &mut SocketSource) -> (Vec<Chunk>, Option<SourceError>) {
        let mut chunks = Vec::new();
        for _ in 0..50 {
            match src.poll(1000, WAIT).await {
                Ok(Poll::Data(chunk)) => chunks.push(chunk),
                Ok(Poll::Idle) => {}
                Ok(Poll::End) => return (chunks, None),
                Err(e) => return (chunks, Some(e)),
            }
        }
        panic!("socket source neither ended nor failed");
    }

    #[tokio::test]
    async fn reads_lines_until_the_server_closes() {
        let port = serve(b"hello\nworld\r\n\nlast", Duration::ZERO).await;
        let mut src = source(port, Format::Text, text_schema());
        src.restore(&[serde_json::json!({"lines": 10})], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        assert!(!src.replayable());
        let (chunks, error) = drain(&mut src).await;
        assert!(matches!(error, Some(SourceError::Transient(ref m)) if m.contains("closed")), "{error:?}");
        let values: Vec<String> = chunks
            .iter()
            .flat_map(|c| &c.batches)
            .flat_map(|b| b.column(0).as_string::<i32>().iter().flatten().map(str::to_string).collect::<Vec<_>>())
            .collect();
        assert_eq!(values, vec!["hello", "world", "last"]);
        assert_eq!(src.checkpoint(), serde_json::json!({"lines": 14}));
    }

    #[tokio::test]
    async fn json_lines_with_a_bad_one() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let port = serve(b"{\"id\":1}\n{\"id\":\n{\"id\":3}\n", Duration::ZERO).await;
        let mut src = source(port, Format::Json, schema);
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        let (chunks, _) = drain(&mut src).await;
        let ids: Vec<i64> = chunks
            .iter()
            .flat_map(|c| &c.batches)
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(ids, vec![1, 3]);
        let bad: Vec<&BadRecord> = chunks.iter().flat_map(|c| &c.bad_records).collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].position, "line 2");
        assert_eq!(chunks.iter().map(|c| c.input_records).sum::<usize>(), 3);
    }

    #[tokio::test]
    async fn available_now_ends_when_the_socket_goes_quiet() {
        let port = serve(b"a\nb\n", Duration::from_secs(5)).await;
        let mut src = source(port, Format::Text, text_schema());
        src.restore(&[], Bound::AvailableNow).await.unwrap_or_else(|e| panic!("{e}"));
        let (chunks, error) = drain(&mut src).await;
        assert!(error.is_none(), "{error:?}");
        assert_eq!(chunks.iter().map(|c| c.input_records).sum::<usize>(), 2);
    }

    #[tokio::test]
    async fn refused_connection_is_transient() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().unwrap_or_else(|e| panic!("{e}")).port();
        drop(listener);
        let mut src = source(port, Format::Text, text_schema());
        src.restore(&[], Bound::Unbounded).await.unwrap_or_else(|e| panic!("{e}"));
        let error = src.poll(10, WAIT).await.err();
        assert!(matches!(error, Some(SourceError::Transient(ref m)) if m.contains("cannot connect")), "{error:?}");
    }

    #[test]
    fn options_are_checked() {
        let spec = |port: &str| SourceSpec {
            stream: "s".into(),
            value_schema: text_schema(),
            schema: text_schema(),
            format: Format::Text,
            options: BTreeMap::from([("host".to_string(), "::1".to_string()), ("port".to_string(), port.to_string())]),
        };
        assert!(matches!(SocketSource::new(spec("0")), Err(SourceError::Fatal(_))));
        assert!(matches!(SocketSource::new(spec("http")), Err(SourceError::Fatal(_))));
        let src = SocketSource::new(spec("9999")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(src.address, "[::1]:9999");
    }
}
