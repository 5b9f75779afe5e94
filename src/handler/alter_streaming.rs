//! `ALTER SINK | MATERIALIZED VIEW name PAUSE | RESUME | SET (...)`: checks
//! the name and kind, reads the stored definition, and leaves the rest to
//! the stream manager (`stream::operate`).

use datafusion::sql::sqlparser::ast::ObjectName;

use super::{Notice, Output};
use crate::engine::Engine;
use crate::error::QueryError;
use crate::sql::{AlterAction, StreamingKind};
use crate::stream::operate::Altered;

pub async fn handle(
    engine: &Engine,
    kind: StreamingKind,
    name: &ObjectName,
    action: AlterAction,
) -> Result<Output, QueryError> {
    let def = super::continuous_query_def(engine, kind, name)?;
    let key = def.name.clone();
    let cq = match engine.parser.parse(&def.definition)?.pop() {
        Some(crate::sql::Statement::CreateContinuousQuery(cq)) => cq,
        _ => return Err(QueryError::Internal(format!("the stored definition of '{key}' is not a continuous query"))),
    };
    let tag = format!("ALTER {}", kind.sql_name());
    let altered = match action {
        AlterAction::Pause => engine.streams.pause(&def, &cq).await?,
        AlterAction::Resume => engine.streams.resume(&def, &cq).await?,
        AlterAction::Set(changes) => {
            engine.streams.set_options(&def, &cq, &changes).await?;
            Altered::Done
        }
    };
    let notices = match altered {
        Altered::Done => Vec::new(),
        Altered::Already(status) => vec![Notice {
            code: "00000",
            message: format!("{} \"{key}\" is already {}, skipping", kind.sql_name().to_lowercase(), status.as_str()),
        }],
    };
    Ok(Output::Command { tag, rows: None, notices })
}
