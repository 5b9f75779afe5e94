//! `search_path`: which schema an unqualified table name means.
//!
//! DataFusion resolves an unqualified name in one default schema (`public`).
//! PostgreSQL walks the session's `search_path` and takes the first schema
//! that has the table, after `pg_catalog`, which is searched first unless
//! the path names it. BI tools set the path (Grafana, DBeaver's "active
//! schema") and then write names bare, so before planning each unqualified
//! table name is qualified with the schema the path finds it in. Names the
//! path does not find are left as written: DataFusion then looks in `public`
//! and reports a missing table as before.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, ObjectNamePart, Query, Statement, Visit, Visitor, visit_relations_mut,
};

/// The schemas of a `search_path` setting, in order, as identifiers:
/// `weir, "My Schema", $user` gives `weir`, `My Schema` and the user's name.
pub fn schemas(setting: &str, user: Option<&str>) -> Vec<String> {
    setting
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            if s == "$user" || s == "\"$user\"" {
                user.map(str::to_string)
            } else if let Some(quoted) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(quoted.replace("\"\"", "\""))
            } else {
                Some(s.to_lowercase())
            }
        })
        .collect()
}

/// True for a path that finds tables where weir's default (`pg_catalog`,
/// then `public`) finds them, so statements need no rewriting.
pub fn is_default(path: &[String]) -> bool {
    path.iter().all(|s| s == "public" || s == "pg_catalog")
}

/// Qualifies every unqualified table name in `stmt` with the first schema of
/// `path` where `exists(schema, table)`; `pg_catalog` comes first unless the
/// path places it. Names of common table expressions are left alone.
pub fn qualify(stmt: &mut DFStatement, path: &[String], exists: &dyn Fn(&str, &str) -> bool) {
    let mut order: Vec<&str> = Vec::with_capacity(path.len() + 1);
    if !path.iter().any(|s| s == "pg_catalog") {
        order.push("pg_catalog");
    }
    order.extend(path.iter().map(String::as_str));
    match stmt {
        DFStatement::Statement(statement) => qualify_statement(statement, &order, exists),
        DFStatement::Explain(explain) => qualify(&mut explain.statement, path, exists),
        DFStatement::CopyTo(copy) => match &mut copy.source {
            CopyToSource::Query(query) => {
                let mut statement = Statement::Query(query.clone());
                qualify_statement(&mut statement, &order, exists);
                if let Statement::Query(qualified) = statement {
                    *query = qualified;
                }
            }
            CopyToSource::Relation(name) => {
                let _ = qualify_name(name, &order, &HashSet::new(), exists);
            }
        },
        _ => {}
    }
}

fn qualify_statement(statement: &mut Statement, order: &[&str], exists: &dyn Fn(&str, &str) -> bool) {
    let mut ctes = CteNames::default();
    let _ = statement.visit(&mut ctes);
    let _ = visit_relations_mut(statement, |name| qualify_name(name, order, &ctes.0, exists));
}

fn qualify_name(
    name: &mut ObjectName,
    order: &[&str],
    ctes: &HashSet<String>,
    exists: &dyn Fn(&str, &str) -> bool,
) -> ControlFlow<()> {
    let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else {
        return ControlFlow::Continue(());
    };
    let table = normalized(ident);
    if ctes.contains(&table) {
        return ControlFlow::Continue(());
    }
    if let Some(schema) = order.iter().find(|schema| exists(schema, &table)) {
        let schema = Ident::with_quote('"', *schema);
        name.0.insert(0, ObjectNamePart::Identifier(schema));
    }
    ControlFlow::Continue(())
}

/// An identifier as DataFusion looks it up: unquoted names fold to lower case.
fn normalized(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// The names every `WITH` in a statement defines, at any depth.
#[derive(Default)]
struct CteNames(HashSet<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.0.extend(with.cte_tables.iter().map(|cte| normalized(&cte.alias.name)));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qualified(sql: &str, path: &[&str]) -> String {
        let path: Vec<String> = path.iter().map(|s| s.to_string()).collect();
        let exists = |schema: &str, table: &str| {
            matches!((schema, table), ("weir", "query_progress") | ("public", "events") | ("pg_catalog", "pg_class"))
        };
        let mut statements = datafusion::sql::parser::DFParser::parse_sql(sql).unwrap();
        let mut stmt = statements.pop_front().unwrap();
        qualify(&mut stmt, &path, &exists);
        stmt.to_string()
    }

    #[test]
    fn the_first_schema_on_the_path_that_has_the_table_wins() {
        let sql = qualified("SELECT * FROM query_progress JOIN events ON true", &["weir", "public"]);
        assert_eq!(sql, r#"SELECT * FROM "weir".query_progress JOIN "public".events ON true"#);
    }

    #[test]
    fn names_found_nowhere_and_qualified_names_are_left_alone() {
        let sql = qualified("SELECT * FROM missing, public.query_progress", &["weir"]);
        assert_eq!(sql, "SELECT * FROM missing, public.query_progress");
    }

    #[test]
    fn pg_catalog_comes_first_unless_the_path_places_it() {
        assert_eq!(qualified("SELECT * FROM pg_class", &["weir"]), r#"SELECT * FROM "pg_catalog".pg_class"#);
    }

    #[test]
    fn common_table_expressions_are_not_tables() {
        let sql = qualified(
            "WITH query_progress AS (SELECT 1 AS x) SELECT * FROM query_progress, (SELECT * FROM events) AS e",
            &["weir", "public"],
        );
        assert_eq!(
            sql,
            r#"WITH query_progress AS (SELECT 1 AS x) SELECT * FROM query_progress, (SELECT * FROM "public".events) AS e"#
        );
    }

    #[test]
    fn explain_insert_and_copy_are_qualified_too() {
        assert_eq!(
            qualified("EXPLAIN SELECT * FROM query_progress", &["weir"]),
            r#"EXPLAIN SELECT * FROM "weir".query_progress"#
        );
        let insert = qualified("INSERT INTO events SELECT * FROM query_progress", &["weir", "public"]);
        assert_eq!(insert, r#"INSERT INTO "public".events SELECT * FROM "weir".query_progress"#);
        let copy = qualified("COPY (SELECT * FROM query_progress) TO '/tmp/x' STORED AS PARQUET", &["weir"]);
        assert!(copy.contains(r#""weir".query_progress"#), "{copy}");
    }

    #[test]
    fn settings_parse_like_postgres() {
        assert_eq!(schemas(r#"weir, "My Schema", $user, PUBLIC"#, Some("ann")), ["weir", "My Schema", "ann", "public"]);
        assert_eq!(schemas("\"$user\", public", None), ["public"]);
        assert!(is_default(&schemas("public", None)));
        assert!(is_default(&schemas("\"$user\", public", None)));
        assert!(is_default(&schemas("public, pg_catalog", None)));
        assert!(is_default(&schemas("pg_catalog, public", None)));
        assert!(!is_default(&schemas("weir, public", None)));
    }
}
