//! `pg_roles` as each session sees it: one role, the connected user, a
//! superuser that can log in. Weir has no other roles and no grants: whoever
//! connects (with the password, when one is set) may do everything, as the
//! owner of a PostgreSQL database may. psql's `\du` lists it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

/// The user a session logged in as, kept in its planning state's config
/// (set by `Engine::session_state`) for tables that answer per session.
#[derive(Debug)]
pub struct SessionUser(pub String);

/// The OID of the one role (PostgreSQL's bootstrap superuser's).
pub const ROLE_OID: i32 = 10;

#[derive(Debug)]
pub struct Roles {
    /// datafusion-pg-catalog's `pg_roles` columns and types.
    pub schema: SchemaRef,
    /// For a state with no session (the server's own statements).
    pub server_user: String,
}

#[async_trait]
impl TableProvider for Roles {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let user = state.config().get_extension::<SessionUser>().map(|u| u.0.clone());
        let row = role_row(&self.schema, user.as_deref().unwrap_or(&self.server_user))?;
        Ok(MemorySourceConfig::try_new_exec(&[vec![row]], self.schema.clone(), projection.cloned())?)
    }
}

/// The role's row, each column cast to the type the table declares.
fn role_row(schema: &SchemaRef, user: &str) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let value = match field.name().as_str() {
                "rolname" => ScalarValue::Utf8(Some(user.to_string())),
                "oid" => ScalarValue::Int32(Some(ROLE_OID)),
                "rolsuper" | "rolinherit" | "rolcanlogin" => ScalarValue::Boolean(Some(true)),
                "rolcreaterole" | "rolcreatedb" | "rolreplication" | "rolbypassrls" => ScalarValue::Boolean(Some(false)),
                "rolconnlimit" => ScalarValue::Int32(Some(-1)),
                "rolpassword" => ScalarValue::Utf8(Some("********".into())),
                _ => ScalarValue::try_from(field.data_type())?,
            };
            let array = value.to_array_of_size(1)?;
            Ok(datafusion::arrow::compute::cast(&array, field.data_type())?)
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
