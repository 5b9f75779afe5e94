//! Stream and continuous-query definitions: `CREATE STREAM` / `CREATE SINK`
//! / `CREATE MATERIALIZED VIEW` checked and turned into typed values, with
//! every option validated up front (an unknown option is an error that lists
//! the valid ones, never silently ignored).

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{ColumnDef, Expr};

use crate::error::QueryError;
use crate::sink::parquet::micros;
use crate::source::{Format, SourceSpec, decode};
use crate::sql::streaming::check_options;
use crate::sql::{CreateContinuousQuery, CreateStream, Options};

/// Options every stream takes, whatever its connector.
const COMMON_STREAM_OPTIONS: &[&str] = &["connector", "format", "on_error", "header", "delimiter", "idle_timeout"];
/// How long a partition without data may hold the watermark back, unless
/// the stream says otherwise: long enough for a slow producer, short enough
/// that a topic with an unused partition still closes its windows.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Options of `CREATE SINK` / `CREATE MATERIALIZED VIEW`.
pub const QUERY_OPTIONS: &[&str] = &[
    "trigger",
    "target_file_size",
    "target_file_rows",
    "flush_interval",
    "output_mode",
    "late_rows",
    "max_records_per_trigger",
    "fail_on_data_loss",
    "format",
    "compact_every",
];

/// How a materialized view keeps its own table (`format = 'parquet' | 'delta'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewFormat {
    /// A directory of Parquet files (versioned directories when rewritten).
    #[default]
    Parquet,
    /// A Delta Lake table: one log commit per epoch, an overwrite when rewritten.
    Delta,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connector {
    Kafka,
    File,
    Socket,
    Generator,
    Nexmark,
}

impl Connector {
    fn parse(name: &str) -> Result<Connector, QueryError> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "kafka" => Connector::Kafka,
            "file" | "filesystem" => Connector::File,
            "socket" => Connector::Socket,
            "generator" | "rate" => Connector::Generator,
            "nexmark" => Connector::Nexmark,
            other => {
                return Err(QueryError::InvalidOptionValue {
                    option: "connector".into(),
                    reason: format!("unknown connector '{other}'; expected one of: file, generator, kafka, nexmark, socket"),
                });
            }
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            Connector::Kafka => "kafka",
            Connector::File => "file",
            Connector::Socket => "socket",
            Connector::Generator => "generator",
            Connector::Nexmark => "nexmark",
        }
    }

    fn options(&self) -> &'static [&'static str] {
        match self {
            Connector::Kafka => crate::source::kafka::OPTIONS,
            Connector::File => crate::source::file::OPTIONS,
            Connector::Socket => crate::source::socket::OPTIONS,
            Connector::Generator => crate::source::generator::OPTIONS,
            Connector::Nexmark => crate::source::nexmark::OPTIONS,
        }
    }
}

/// What to do with a record that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Drop it and count it in `weir.query_progress.error_rows`.
    Skip,
    /// Fail the query, naming the record's position.
    Fail,
    /// Keep it in `<stream>_errors`, committed with the epoch.
    DeadLetter,
}

/// A declared stream, ready to open sources from.
#[derive(Debug, Clone)]
pub struct StreamDef {
    pub name: String,
    pub connector: Connector,
    pub spec: SourceSpec,
    pub on_error: OnError,
    /// `WATERMARK FOR col AS expr` (used by stateful queries).
    pub watermark: Option<(String, Expr)>,
    /// A partition with no data for this long no longer holds the
    /// watermark back (`idle_timeout`; 'none' waits forever).
    pub idle_timeout: Option<Duration>,
    pub definition: String,
}

impl StreamDef {
    /// Checks a `CREATE STREAM` and resolves its schema.
    pub async fn from_ddl(ctx: &SessionContext, name: &str, ddl: &CreateStream) -> Result<StreamDef, QueryError> {
        let connector_name = ddl.options.get("connector").ok_or_else(|| QueryError::InvalidOptionValue {
            option: "connector".into(),
            reason: "CREATE STREAM needs connector = 'kafka' | 'file' | 'socket' | 'generator' | 'nexmark'".into(),
        })?;
        let connector = Connector::parse(connector_name)?;
        let mut valid: Vec<&str> = COMMON_STREAM_OPTIONS.to_vec();
        valid.extend_from_slice(connector.options());
        check_options(&ddl.options, &valid, &format!("a {} stream", connector.name()))?;

        let default_format = match connector {
            Connector::Socket => "text",
            Connector::Generator => "generator",
            Connector::Nexmark => "nexmark",
            _ => "json",
        };
        let mut options = ddl.options.clone();
        let format_name = options.entry("format".into()).or_insert_with(|| default_format.into()).clone();
        let format = if connector == Connector::Generator {
            Format::Bytes
        } else if connector == Connector::Nexmark {
            // Events are built as Arrow arrays: there is no record format.
            if !format_name.eq_ignore_ascii_case("nexmark") {
                return Err(QueryError::InvalidOptionValue {
                    option: "format".into(),
                    reason: format!("a nexmark stream has no record format; remove format = '{format_name}'"),
                });
            }
            if let Some(key) = decode::FORMAT_OPTIONS.iter().find(|k| options.contains_key(**k)) {
                return Err(QueryError::InvalidOptionValue {
                    option: (*key).into(),
                    reason: format!("option '{key}' only applies to format 'csv', not to a nexmark stream"),
                });
            }
            Format::Bytes
        } else {
            Format::parse(&format_name, &options)
                .map_err(|reason| QueryError::InvalidOptionValue { option: "format".into(), reason })?
        };
        if format == Format::Parquet && connector != Connector::File {
            return Err(QueryError::InvalidOptionValue {
                option: "format".into(),
                reason: "format 'parquet' is for the file connector".into(),
            });
        }
        let on_error = match options.get("on_error").map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("skip") => OnError::Skip,
            Some("fail") => OnError::Fail,
            Some("dead_letter") => OnError::DeadLetter,
            Some(other) => {
                return Err(QueryError::InvalidOptionValue {
                    option: "on_error".into(),
                    reason: format!("'{other}'; expected one of: dead_letter, fail, skip"),
                });
            }
        };

        let value_schema = match connector {
            // Spark's rate source: fixed columns, which may be declared
            // (as written out by SHOW CREATE, or to be explicit) or left out;
            // a WATERMARK FOR "timestamp" needs no columns beside it.
            Connector::Generator => {
                let fixed = crate::source::generator::schema();
                if !ddl.columns.is_empty() {
                    let declared = declared_schema(ctx, &ddl.columns).await?;
                    let same = declared.fields().len() == fixed.fields().len()
                        && declared
                            .fields()
                            .iter()
                            .zip(fixed.fields())
                            .all(|(d, f)| d.name() == f.name() && d.data_type() == f.data_type());
                    if !same {
                        return Err(QueryError::InvalidOptionValue {
                            option: "connector".into(),
                            reason: "a generator stream has the fixed columns (\"timestamp\" TIMESTAMP, value BIGINT): declare those or none \
                                     (an event time needs no columns: CREATE STREAM s (WATERMARK FOR \"timestamp\" AS \"timestamp\" - INTERVAL '1 second') WITH (connector = 'generator'))"
                                .into(),
                        });
                    }
                }
                fixed
            }
            // Declared columns pick Nexmark fields by name (checked when the
            // source is built); none declared means all of the table's.
            Connector::Nexmark if ddl.columns.is_empty() => crate::source::nexmark::schema_for(name, &options)
                .map_err(|reason| QueryError::InvalidOptionValue { option: "table".into(), reason })?,
            Connector::Nexmark => declared_schema(ctx, &ddl.columns).await?,
            _ => match decode::value_schema_for(&format) {
                Some(fixed) => {
                    let declared_ok =
                        ddl.columns.is_empty() || (ddl.columns.len() == 1 && ddl.columns[0].name.value == "value");
                    if !declared_ok {
                        return Err(QueryError::InvalidOptionValue {
                            option: "format".into(),
                            reason: format!("format '{format_name}' has one column, value; declare (value) or no columns"),
                        });
                    }
                    fixed
                }
                None => {
                    if ddl.columns.is_empty() {
                        return Err(QueryError::Syntax(format!(
                            "stream '{name}' needs its columns declared for format '{format_name}'"
                        )));
                    }
                    declared_schema(ctx, &ddl.columns).await?
                }
            },
        };
        if !matches!(connector, Connector::Generator | Connector::Nexmark) {
            crate::source::RecordDecoder::new(value_schema.clone(), format.clone())
                .check()
                .map_err(|e| QueryError::InvalidOptionValue { option: "format".into(), reason: e.to_string() })?;
        }
        let mut fields: Vec<Field> = value_schema.fields().iter().map(|f| f.as_ref().clone()).collect();
        if connector == Connector::Kafka {
            fields.extend(crate::source::kafka::metadata_fields());
        }
        let schema = Arc::new(Schema::new(fields));
        let watermark = match &ddl.watermark {
            Some((col, expr)) => {
                if schema.field_with_name(&col.value).is_err() {
                    return Err(QueryError::Syntax(format!("WATERMARK FOR {}: no such column", col.value)));
                }
                Some((col.value.clone(), expr.clone()))
            }
            None => None,
        };
        let idle_timeout = match options.get("idle_timeout").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
            None => Some(DEFAULT_IDLE_TIMEOUT),
            Some("none") => None,
            Some(text) => Some(parse_interval(text).map_err(|reason| QueryError::InvalidOptionValue {
                option: "idle_timeout".into(),
                reason: format!("{reason} (or 'none' to wait for every partition forever)"),
            })?),
        };
        Ok(StreamDef {
            name: name.to_string(),
            connector,
            idle_timeout,
            spec: SourceSpec { stream: name.to_string(), value_schema, schema, format, options },
            on_error,
            watermark,
            definition: ddl.text.clone(),
        })
    }
}

/// Column definitions → Arrow, with DataFusion's own type mapping (planned
/// as casts, so every type DataFusion's SQL knows works). Timestamps become
/// microseconds: that is what lands in Parquet, and what Spark reads.
async fn declared_schema(ctx: &SessionContext, columns: &[ColumnDef]) -> Result<SchemaRef, QueryError> {
    let casts: Vec<String> = columns.iter().map(|c| format!("CAST(NULL AS {}) AS {}", c.data_type, c.name)).collect();
    let plan = ctx.state().create_logical_plan(&format!("SELECT {}", casts.join(", "))).await?;
    let fields: Vec<Field> = plan
        .schema()
        .fields()
        .iter()
        .zip(columns)
        .map(|(f, c)| Field::new(c.name.value.clone(), micros(f.data_type()), true))
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

/// When a continuous query starts an epoch and when it commits one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// As fast as possible: commit `flush_interval` after an epoch's first
    /// record (bounds latency and keeps files from being tiny).
    Continuous,
    /// One epoch per interval, like Spark's `ProcessingTime`.
    Interval(Duration),
    /// Everything available now, in one epoch, then `finished`.
    Once,
    /// Everything available now, in as many epochs as the source's limits
    /// ask for (e.g. `max_files_per_trigger`), then `finished`.
    AvailableNow,
}

/// A checked `CREATE SINK` / `CREATE MATERIALIZED VIEW`.
#[derive(Debug, Clone)]
pub struct QueryOptions {
    pub trigger: Trigger,
    /// Files roll over at this size or row count.
    pub roll: crate::sink::Roll,
    /// With the default trigger: how long records may wait before a commit.
    pub flush_interval: Duration,
    /// As written; checked against the query's shape when it is planned.
    pub output_mode: Option<super::aggregate::OutputMode>,
    /// `late_rows = 'table'`: rows older than the watermark land in
    /// `<query>_late` instead of only being counted.
    pub late_rows_table: bool,
    /// An epoch ends once it has read this many records (Spark's
    /// maxOffsetsPerTrigger); not with trigger 'once'.
    pub max_records_per_trigger: Option<usize>,
    /// `fail_on_data_loss` (default true): whether input found gone before
    /// it was read fails the query or is skipped and recorded.
    pub on_data_loss: crate::source::OnDataLoss,
    /// A materialized view's table format, when the query names one (the
    /// default depends on the warehouse: see `StreamManager::plan_query`).
    pub view_format: Option<ViewFormat>,
    /// Delta targets: compact the table's small files (`OPTIMIZE`) after
    /// every this many epochs.
    pub compact_every: Option<u64>,
}

impl QueryOptions {
    pub fn parse(cq: &CreateContinuousQuery) -> Result<QueryOptions, QueryError> {
        let kind = match cq.target {
            crate::sql::SinkTarget::Table(_) | crate::sql::SinkTarget::Kafka(_) => "CREATE SINK",
            crate::sql::SinkTarget::OwnTable => "CREATE MATERIALIZED VIEW",
        };
        let options = parse_query_options(&cq.options, kind)?;
        if cq.options.contains_key("format") && !matches!(cq.target, crate::sql::SinkTarget::OwnTable) {
            return Err(QueryError::InvalidOptionValue {
                option: "format".into(),
                reason: "a sink writes in its target's format (a Delta table's, a Parquet table's); format is for CREATE MATERIALIZED VIEW".into(),
            });
        }
        Ok(options)
    }
}

fn parse_query_options(options: &Options, kind: &str) -> Result<QueryOptions, QueryError> {
    check_options(options, QUERY_OPTIONS, kind)?;
    let bad = |option: &str, reason: String| QueryError::InvalidOptionValue { option: option.into(), reason };
    let trigger = match options.get("trigger").map(|t| t.trim().to_ascii_lowercase()) {
        None => Trigger::Continuous,
        Some(t) if t == "once" => Trigger::Once,
        Some(t) if t == "available_now" || t == "availablenow" => Trigger::AvailableNow,
        Some(t) if t == "continuous" || t == "default" => Trigger::Continuous,
        Some(t) => Trigger::Interval(parse_interval(&t).map_err(|r| bad("trigger", r))?),
    };
    let target_file_size = match options.get("target_file_size") {
        None => 128 * 1024 * 1024,
        Some(s) => parse_size(s).map_err(|r| bad("target_file_size", r))?,
    };
    let flush_interval = match options.get("flush_interval") {
        None => Duration::from_secs(1),
        Some(s) => parse_interval(s).map_err(|r| bad("flush_interval", r))?,
    };
    let output_mode = match options.get("output_mode") {
        None => None,
        Some(mode) => Some(
            super::aggregate::OutputMode::parse(mode)
                .ok_or_else(|| bad("output_mode", format!("'{mode}'; expected one of: append, complete, update")))?,
        ),
    };
    let target_file_rows = match options.get("target_file_rows") {
        None => u64::MAX,
        Some(s) => match s.trim().parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("target_file_rows", format!("'{s}' is not a positive number of rows"))),
        },
    };
    let roll = crate::sink::Roll { bytes: target_file_size, rows: target_file_rows };
    let late_rows_table = match options.get("late_rows").map(|s| s.to_ascii_lowercase()).as_deref() {
        None | Some("drop") => false,
        Some("table") => true,
        Some(other) => return Err(bad("late_rows", format!("'{other}'; expected one of: drop, table"))),
    };
    let max_records_per_trigger = match options.get("max_records_per_trigger") {
        None => None,
        Some(s) => match s.trim().parse::<usize>() {
            Ok(n) if n > 0 && trigger != Trigger::Once => Some(n),
            Ok(n) if n > 0 => {
                return Err(bad(
                    "max_records_per_trigger",
                    "trigger 'once' reads everything in one epoch; use 'available_now' for several".into(),
                ));
            }
            _ => return Err(bad("max_records_per_trigger", format!("'{s}' is not a positive number of records"))),
        },
    };
    let on_data_loss = match options.get("fail_on_data_loss") {
        None => crate::source::OnDataLoss::Fail,
        Some(v) => {
            match crate::source::decode::parse_bool("fail_on_data_loss", v).map_err(|r| bad("fail_on_data_loss", r))? {
                true => crate::source::OnDataLoss::Fail,
                false => crate::source::OnDataLoss::Continue,
            }
        }
    };
    let view_format = match options.get("format").map(|s| s.trim().to_ascii_lowercase()).as_deref() {
        None => None,
        Some("parquet") => Some(ViewFormat::Parquet),
        Some("delta") => Some(ViewFormat::Delta),
        Some(other) => return Err(bad("format", format!("'{other}'; expected one of: parquet, delta"))),
    };
    let compact_every = match options.get("compact_every") {
        None => None,
        Some(s) => match s.trim().trim_end_matches("epochs").trim().parse::<u64>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(bad("compact_every", format!("'{s}' is not a positive number of epochs"))),
        },
    };
    Ok(QueryOptions {
        trigger,
        roll,
        flush_interval,
        output_mode,
        late_rows_table,
        max_records_per_trigger,
        on_data_loss,
        view_format,
        compact_every,
    })
}

/// `'10 seconds'`, `'500 ms'`, `'1 minute'`, `'2h'`.
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let text = text.trim().to_ascii_lowercase();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.parse().map_err(|_| format!("'{text}' is not an interval like '10 seconds'"))?;
    let seconds = match unit.trim() {
        "ms" | "millisecond" | "milliseconds" => n / 1000.0,
        "" | "s" | "sec" | "secs" | "second" | "seconds" => n,
        "m" | "min" | "mins" | "minute" | "minutes" => n * 60.0,
        "h" | "hour" | "hours" => n * 3600.0,
        other => return Err(format!("unknown interval unit '{other}' (use ms, seconds, minutes or hours)")),
    };
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(format!("'{text}' must be a positive interval"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("'{text}' is too long an interval"))
}

/// `'128MB'`, `'64 MiB'`, `'1048576'`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim().to_ascii_lowercase();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| format!("'{text}' is not a size like '128MB'"))?;
    let factor = match unit.trim() {
        "" | "b" => 1,
        "kb" | "kib" | "k" => 1024,
        "mb" | "mib" | "m" => 1024 * 1024,
        "gb" | "gib" | "g" => 1024 * 1024 * 1024,
        other => return Err(format!("unknown size unit '{other}' (use KB, MB or GB)")),
    };
    match n.checked_mul(factor) {
        Some(0) | None => Err(format!("'{text}' must be a positive size")),
        Some(bytes) => Ok(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_sizes() {
        assert_eq!(parse_interval("10 seconds").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_interval("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_interval("1 minute").unwrap(), Duration::from_secs(60));
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("0 seconds").is_err());
        assert_eq!(parse_size("128MB").unwrap(), 128 << 20);
        assert_eq!(parse_size("1024").unwrap(), 1024);
        assert!(parse_size("1 parsec").is_err());
    }

    #[test]
    fn unknown_query_option_lists_valid_ones() {
        let mut options = Options::new();
        options.insert("trigerr".into(), "once".into());
        let err = parse_query_options(&options, "CREATE SINK").unwrap_err();
        assert_eq!(err.sqlstate(), "22023");
        assert!(err.to_string().contains("compact_every, fail_on_data_loss, flush_interval, format, late_rows, max_records_per_trigger, output_mode, target_file_rows, target_file_size, trigger"), "{err}");
    }
}
