//! Arrow types as Flight SQL clients read them.
//!
//! DataFusion reads Parquet strings and binaries as views (`Utf8View`,
//! `BinaryView`). Flight SQL clients that predate view types cannot decode
//! them (the Arrow Flight SQL JDBC driver gained them only in late 2025),
//! and for the short strings typical of keys and codes a view costs 16 bytes
//! per value where offsets and data cost 4 plus the string. So results
//! leave as plain `Utf8` / `Binary`, inside lists, structs and maps too, and
//! the schemas Flight SQL announces (GetFlightInfo, prepared statements)
//! say so.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray, StringViewArray};
use datafusion::arrow::buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;

/// `t` with every view type replaced by its offset-based form.
pub fn wire_type(t: &DataType) -> DataType {
    match t {
        DataType::Utf8View => DataType::Utf8,
        DataType::BinaryView => DataType::Binary,
        DataType::List(f) => DataType::List(wire_field(f)),
        DataType::LargeList(f) => DataType::LargeList(wire_field(f)),
        DataType::FixedSizeList(f, n) => DataType::FixedSizeList(wire_field(f), *n),
        DataType::Struct(fields) => DataType::Struct(fields.iter().map(wire_field).collect()),
        DataType::Map(f, sorted) => DataType::Map(wire_field(f), *sorted),
        other => other.clone(),
    }
}

fn wire_field(f: &FieldRef) -> FieldRef {
    Arc::new(Field::clone(f).with_data_type(wire_type(f.data_type())))
}

/// `schema` as it goes over the wire.
pub fn wire_schema(schema: &Schema) -> SchemaRef {
    let fields: Vec<FieldRef> = schema.fields().iter().map(wire_field).collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` converted to `wire` (from `wire_schema` of its schema); columns
/// without view types pass through untouched.
pub fn to_wire(batch: RecordBatch, wire: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == wire.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(wire.fields())
        .map(|(column, field)| match (column.data_type(), field.data_type()) {
            (from, to) if from == to => Ok(column.clone()),
            (DataType::Utf8View, DataType::Utf8) => plain_strings(column),
            (_, to) => cast(column, to),
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(wire.clone(), columns)
}

/// Top-level string views, the common case (every Parquet string column),
/// as plain strings. Arrow's cast does the same through a builder that also
/// rebuilds the null bitmap value by value; here the bitmap is shared and
/// the buffers are sized once and short strings are copied whole from
/// their views.
fn plain_strings(column: &ArrayRef) -> Result<ArrayRef, ArrowError> {
    let views = column
        .as_any()
        .downcast_ref::<StringViewArray>()
        .ok_or_else(|| ArrowError::CastError("expected a string view array".into()))?;
    let total: usize = (0..views.len()).filter(|&i| views.is_valid(i)).map(|i| views.views()[i] as u32 as usize).sum();
    let too_long = || ArrowError::CastError(format!("{total} bytes of strings in one batch do not fit 32-bit offsets"));
    i32::try_from(total).map_err(|_| too_long())?;
    let mut offsets = Vec::with_capacity(views.len() + 1);
    // 12 bytes of slack: a short string is copied as a whole inline view.
    let mut values = Vec::with_capacity(total + 12);
    offsets.push(0i32);
    for (i, view) in views.views().iter().enumerate() {
        if views.is_valid(i) {
            let len = *view as u32 as usize;
            if len <= 12 {
                // Inline: the string is bytes 4..4+len of the view. A fixed
                // 12-byte copy, then the excess dropped, beats a
                // variable-length memcpy call per value.
                let at = values.len();
                values.extend_from_slice(&view.to_le_bytes()[4..16]);
                values.truncate(at + len);
            } else {
                values.extend_from_slice(views.value(i).as_bytes());
            }
        }
        // Cannot overflow: `values` holds at most `total` bytes.
        offsets.push(values.len() as i32);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    Ok(Arc::new(StringArray::try_new(offsets, Buffer::from_vec(values), views.nulls().cloned())?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{BinaryViewArray, Int64Array, ListArray, StructArray};
    use datafusion::arrow::datatypes::Int32Type;

    #[test]
    fn views_become_offsets_and_data_with_the_same_values() {
        let strings: ArrayRef =
            Arc::new(StringViewArray::from(vec![Some("n1"), None, Some("a string longer than twelve bytes")]));
        let bytes: ArrayRef = Arc::new(BinaryViewArray::from(vec![Some(b"\x01\x02".as_ref()), Some(b"".as_ref()), None]));
        let ids: ArrayRef = Arc::new(Int64Array::from(vec![1, 2, 3]));
        let inner = Arc::new(Field::new("s", DataType::Utf8View, true));
        let nested: ArrayRef = Arc::new(StructArray::from(vec![(inner, strings.clone())]));
        let schema = Arc::new(Schema::new(vec![
            Field::new("s", DataType::Utf8View, true),
            Field::new("b", DataType::BinaryView, true),
            Field::new("id", DataType::Int64, false),
            Field::new("st", nested.data_type().clone(), true),
        ]));
        let batch = RecordBatch::try_new(schema.clone(), vec![strings, bytes, ids.clone(), nested]).unwrap();

        let wire = wire_schema(&schema);
        let out = to_wire(batch, &wire).unwrap();
        let types: Vec<_> = out.schema().fields().iter().map(|f| f.data_type().clone()).collect();
        assert_eq!(types[0], DataType::Utf8);
        assert_eq!(types[1], DataType::Binary);
        assert_eq!(types[2], DataType::Int64);
        assert_eq!(types[3], DataType::Struct(vec![Field::new("s", DataType::Utf8, true)].into()));
        let s = out.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![Some("n1"), None, Some("a string longer than twelve bytes")]);
        assert!(Arc::ptr_eq(out.column(2), &ids), "columns without views pass through");
    }

    #[test]
    fn a_sliced_view_array_converts_its_slice_only() {
        let all = StringViewArray::from(vec![Some("skipped"), None, Some("kept, and longer than twelve"), Some("x")]);
        let sliced: ArrayRef = Arc::new(all.slice(1, 3));
        let out = plain_strings(&sliced).unwrap();
        let out = out.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(out.iter().collect::<Vec<_>>(), vec![None, Some("kept, and longer than twelve"), Some("x")]);
    }

    #[test]
    fn lists_of_views_become_lists_of_strings() {
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
        assert_eq!(wire_type(list.data_type()), list.data_type().clone(), "no views, no change");
        let t = DataType::List(Arc::new(Field::new("item", DataType::Utf8View, true)));
        assert_eq!(wire_type(&t), DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))));
    }

    #[test]
    fn a_batch_without_views_is_returned_as_is() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(Int64Array::from(vec![7]))]).unwrap();
        let out = to_wire(batch.clone(), &wire_schema(&schema)).unwrap();
        assert_eq!(out, batch);
        assert_eq!(out.num_rows(), 1);
        assert!(!out.column(0).is_empty());
    }
}
