//! The three Nexmark tables as Arrow: their columns (RisingWave's names and
//! order), the schema of a stream that declares none, one event's fields by
//! column index, and the builders a batch's columns are filled into.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringBuilder, StringViewBuilder, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use nexmark::event::{Event, EventType};

/// Which of the three Nexmark event kinds a stream reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Person,
    Auction,
    Bid,
}

/// What a column holds before any cast to the declared type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Int,
    Text,
    /// Milliseconds from the generator, microseconds in Arrow.
    Time,
}

impl Table {
    pub(super) fn parse(name: &str) -> Option<Table> {
        match name.trim().to_ascii_lowercase().as_str() {
            "person" => Some(Table::Person),
            "auction" => Some(Table::Auction),
            "bid" => Some(Table::Bid),
            _ => None,
        }
    }

    pub(super) fn event_type(self) -> EventType {
        match self {
            Table::Person => EventType::Person,
            Table::Auction => EventType::Auction,
            Table::Bid => EventType::Bid,
        }
    }

    /// The table's columns, in Nexmark's order (RisingWave's column names).
    pub(super) fn columns(self) -> &'static [(&'static str, Kind)] {
        use Kind::*;
        match self {
            Table::Person => &[
                ("id", Int),
                ("name", Text),
                ("email_address", Text),
                ("credit_card", Text),
                ("city", Text),
                ("state", Text),
                ("date_time", Time),
                ("extra", Text),
            ],
            Table::Auction => &[
                ("id", Int),
                ("item_name", Text),
                ("description", Text),
                ("initial_bid", Int),
                ("reserve", Int),
                ("date_time", Time),
                ("expires", Time),
                ("seller", Int),
                ("category", Int),
                ("extra", Text),
            ],
            Table::Bid => &[
                ("auction", Int),
                ("bidder", Int),
                ("price", Int),
                ("channel", Text),
                ("url", Text),
                ("date_time", Time),
                ("extra", Text),
            ],
        }
    }

    pub(super) fn column_names(self) -> String {
        self.columns().iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
    }
}

pub(super) fn read_table(stream: &str, options: &std::collections::BTreeMap<String, String>) -> Result<Table, String> {
    let name = options
        .get("table")
        .ok_or_else(|| format!("stream '{stream}': a nexmark stream needs table = 'bid' | 'auction' | 'person'"))?;
    Table::parse(name)
        .ok_or_else(|| format!("stream '{stream}': unknown nexmark table '{name}'; expected one of: auction, bid, person"))
}

/// The full schema of a stream that declares no columns: every column of
/// its `table`, as BIGINT, TEXT and TIMESTAMP.
pub fn schema_for(stream: &str, options: &std::collections::BTreeMap<String, String>) -> Result<SchemaRef, String> {
    let table = read_table(stream, options)?;
    let fields: Vec<Field> = table
        .columns()
        .iter()
        .map(|(name, kind)| {
            let data_type = match kind {
                Kind::Int => DataType::Int64,
                Kind::Text => DataType::Utf8,
                Kind::Time => DataType::Timestamp(TimeUnit::Microsecond, None),
            };
            Field::new(*name, data_type, true)
        })
        .collect();
    Ok(Arc::new(Schema::new(fields)))
}

pub(super) fn table_name(table: Table) -> &'static str {
    match table {
        Table::Person => "person",
        Table::Auction => "auction",
        Table::Bid => "bid",
    }
}

/// One field of an event, by its index in [`Table::columns`].
pub(super) enum Value<'a> {
    Int(usize),
    Text(&'a str),
    Time(u64),
}

pub(super) fn value(event: &Event, field: usize) -> Value<'_> {
    match event {
        Event::Person(p) => match field {
            0 => Value::Int(p.id),
            1 => Value::Text(&p.name),
            2 => Value::Text(&p.email_address),
            3 => Value::Text(&p.credit_card),
            4 => Value::Text(&p.city),
            5 => Value::Text(&p.state),
            6 => Value::Time(p.date_time),
            _ => Value::Text(&p.extra),
        },
        Event::Auction(a) => match field {
            0 => Value::Int(a.id),
            1 => Value::Text(&a.item_name),
            2 => Value::Text(&a.description),
            3 => Value::Int(a.initial_bid),
            4 => Value::Int(a.reserve),
            5 => Value::Time(a.date_time),
            6 => Value::Time(a.expires),
            7 => Value::Int(a.seller),
            8 => Value::Int(a.category),
            _ => Value::Text(&a.extra),
        },
        Event::Bid(b) => match field {
            0 => Value::Int(b.auction),
            1 => Value::Int(b.bidder),
            2 => Value::Int(b.price),
            3 => Value::Text(&b.channel),
            4 => Value::Text(&b.url),
            5 => Value::Time(b.date_time),
            _ => Value::Text(&b.extra),
        },
    }
}

pub(super) enum Builder {
    Int(Vec<i64>),
    /// Microseconds.
    Time(Vec<i64>),
    Text(StringBuilder),
    View(StringViewBuilder),
}

impl Builder {
    /// A value of another kind than the column's cannot happen (the field
    /// index fixes the kind); it would be skipped and fail the batch's length
    /// check rather than panic.
    pub(super) fn push(&mut self, value: Value<'_>) {
        match (self, value) {
            (Builder::Int(v), Value::Int(n)) => v.push(i64::try_from(n).unwrap_or(i64::MAX)),
            (Builder::Time(v), Value::Time(ms)) => v.push(i64::try_from(ms).unwrap_or(i64::MAX / 1000).saturating_mul(1000)),
            (Builder::Text(b), Value::Text(s)) => b.append_value(s),
            (Builder::View(b), Value::Text(s)) => b.append_value(s),
            _ => {}
        }
    }

    pub(super) fn finish(self) -> ArrayRef {
        match self {
            Builder::Int(v) => Arc::new(Int64Array::from(v)),
            Builder::Time(v) => Arc::new(TimestampMicrosecondArray::from(v)),
            Builder::Text(mut b) => Arc::new(b.finish()),
            Builder::View(mut b) => Arc::new(b.finish()),
        }
    }
}
