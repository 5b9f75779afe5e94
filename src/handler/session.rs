//! `SET`, `RESET` and `SHOW`: the statements over the session's variables, which
//! `crate::session` keeps.

use datafusion::arrow::datatypes::SchemaRef;

use super::{Output, text_batch, text_schema};
use crate::error::QueryError;
use crate::session::{self, SessionVars};

pub fn set(vars: &mut SessionVars, name: &str, value: Option<String>, tag: &str) -> Result<Output, QueryError> {
    session::set(vars, name, value)?;
    Ok(Output::command(tag))
}

pub fn reset_all(vars: &mut SessionVars) -> Result<Output, QueryError> {
    session::reset_all(vars);
    Ok(Output::command("RESET"))
}

/// Column name of `SHOW name`'s single column, as PostgreSQL names it.
pub fn show_schema(name: &str) -> SchemaRef {
    if name.eq_ignore_ascii_case("all") {
        return text_schema(&["name", "setting", "description"]);
    }
    text_schema(&[session::display_name(name).as_str()])
}

pub fn show(vars: &SessionVars, name: &str) -> Result<Output, QueryError> {
    if name.eq_ignore_ascii_case("all") {
        let rows = session::all(vars).map(|(n, v, d)| vec![n.to_string(), v, d.to_string()]).collect();
        return Ok(Output::batch(text_batch(show_schema(name), rows)?));
    }
    let value = session::setting(vars, name).ok_or_else(|| QueryError::UnknownParameter(name.to_string()))?;
    Ok(Output::batch(text_batch(show_schema(name), vec![vec![value]])?))
}
