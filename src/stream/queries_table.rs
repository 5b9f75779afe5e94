//! `weir.queries`: every continuous query with its status, as a table, so
//! status can be filtered and joined (`SHOW SINKS` is the same data for
//! people).

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use datafusion::error::DataFusionError;

use super::{Registry, infos};
use crate::catalog::RelationKind;

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("target", DataType::Utf8, false),
        Field::new("trigger", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("last_batch_id", DataType::Int64, true),
        Field::new("last_error", DataType::Utf8, true),
    ]))
}

/// `weir.queries`, read from the live registry at scan time.
pub(crate) fn queries_table(registry: Arc<Mutex<Registry>>) -> super::system_table::SystemTable {
    super::system_table::SystemTable::new(schema(), move || {
        let rows = {
            let registry = registry.lock().map_err(|_| DataFusionError::Internal("registry poisoned".into()))?;
            infos(&registry)
        };
        let text = |f: &dyn Fn(&super::QueryInfo) -> String| -> ArrayRef {
            Arc::new(rows.iter().map(|r| Some(f(r))).collect::<StringArray>())
        };
        let columns: Vec<ArrayRef> = vec![
            text(&|r| r.name.clone()),
            text(&|r| if r.kind == RelationKind::Sink { "sink".into() } else { "materialized view".into() }),
            text(&|r| r.stream.clone()),
            text(&|r| r.target.clone()),
            text(&|r| r.trigger.clone()),
            text(&|r| r.state.status.as_str().into()),
            Arc::new(rows.iter().map(|r| r.state.last_batch_id).collect::<Int64Array>()),
            Arc::new(rows.iter().map(|r| r.state.error.clone()).collect::<StringArray>()),
        ];
        Ok(RecordBatch::try_new(schema(), columns)?)
    })
}
