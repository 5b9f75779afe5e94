//! Names result columns the way PostgreSQL does, where DataFusion would use
//! the expression's text: `select 1` gives `?column?`, `count(*)` gives
//! `count`, `a::text` gives `a`. Clients show these names (psql headers,
//! DataFrame columns), so they should match what users know.

use std::collections::HashSet;

use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, Select, SelectItem, SetExpr, Statement, TableFactor};

pub fn name_like_postgres(stmt: &mut Statement) {
    if let Statement::Query(query) = stmt {
        name_query(query);
    }
}

/// Names the columns of `query`'s result and of every query whose result
/// becomes rows of it: CTEs, subqueries in FROM, each branch of a UNION
/// (the first one's names head the result, as in PostgreSQL).
fn name_query(query: &mut Query) {
    if let Some(with) = query.with.as_mut() {
        for cte in &mut with.cte_tables {
            name_query(&mut cte.query);
        }
    }
    name_body(query.body.as_mut());
}

fn name_body(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            for table in &mut select.from {
                name_derived(&mut table.relation);
                for join in &mut table.joins {
                    name_derived(&mut join.relation);
                }
            }
            name_select(select);
        }
        SetExpr::Query(query) => name_query(query),
        SetExpr::SetOperation { left, right, .. } => {
            name_body(left);
            name_body(right);
        }
        _ => {}
    }
}

fn name_derived(relation: &mut TableFactor) {
    match relation {
        TableFactor::Derived { subquery, .. } => name_query(subquery),
        TableFactor::NestedJoin { table_with_joins, .. } => {
            name_derived(&mut table_with_joins.relation);
            for join in &mut table_with_joins.joins {
                name_derived(&mut join.relation);
            }
        }
        _ => {}
    }
}

fn name_select(select: &mut Select) {
    // DataFusion rejects duplicate output names, which PostgreSQL allows
    // (`select 1, 2`); a name already taken is left to DataFusion.
    let mut taken: HashSet<String> = select.projection.iter().filter_map(explicit_name).collect();
    for item in select.projection.iter_mut() {
        let SelectItem::UnnamedExpr(expr) = item else { continue };
        let Some(name) = postgres_name(expr) else { continue };
        if !taken.insert(name.clone()) {
            continue;
        }
        *item = SelectItem::ExprWithAlias { expr: expr.clone(), alias: Ident::with_quote('"', name) };
    }
}

/// The name an item has already: its alias, or the column it selects.
fn explicit_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::ExprWithAlias { alias, .. } => Some(normalize(alias)),
        SelectItem::UnnamedExpr(Expr::Identifier(id)) => Some(normalize(id)),
        SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => ids.last().map(normalize),
        _ => None,
    }
}

/// PostgreSQL's name for an unaliased expression, or `None` where DataFusion
/// already agrees (plain column references).
fn postgres_name(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
        Expr::Function(f) => f.name.0.last().and_then(|p| p.as_ident()).map(normalize),
        Expr::Cast { expr: inner, data_type, .. } => match inner.as_ref() {
            Expr::Identifier(id) => Some(normalize(id)),
            Expr::CompoundIdentifier(ids) => ids.last().map(normalize),
            other => postgres_name(other).filter(|n| n != "?column?").or_else(|| Some(data_type.to_string().to_lowercase())),
        },
        Expr::Nested(inner) => postgres_name(inner),
        Expr::Case { .. } => Some("case".to_string()),
        Expr::Exists { .. } => Some("exists".to_string()),
        Expr::Array(_) => Some("array".to_string()),
        _ => Some("?column?".to_string()),
    }
}

fn normalize(id: &Ident) -> String {
    if id.quote_style.is_some() { id.value.clone() } else { id.value.to_lowercase() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        name_like_postgres(&mut stmt);
        stmt.to_string()
    }

    #[test]
    fn names_follow_postgres() {
        assert_eq!(rewritten("SELECT 1"), r#"SELECT 1 AS "?column?""#);
        assert_eq!(rewritten("SELECT count(*), a, t.b FROM t"), r#"SELECT count(*) AS "count", a, t.b FROM t"#);
        assert_eq!(rewritten("SELECT a::TEXT FROM t"), r#"SELECT a::TEXT AS "a" FROM t"#);
        assert_eq!(rewritten("SELECT 1, 2"), r#"SELECT 1 AS "?column?", 2"#);
        assert_eq!(rewritten("SELECT sum(x) AS s, max(x) FROM t"), r#"SELECT sum(x) AS s, max(x) AS "max" FROM t"#);
    }

    #[test]
    fn subqueries_ctes_and_unions_are_named_too() {
        assert_eq!(
            rewritten("SELECT * FROM (SELECT count(DISTINCT t.id) FROM t) s"),
            r#"SELECT * FROM (SELECT count(DISTINCT t.id) AS "count" FROM t) s"#
        );
        assert_eq!(
            rewritten("SELECT count(DISTINCT t.id) FROM t UNION ALL SELECT 1"),
            r#"SELECT count(DISTINCT t.id) AS "count" FROM t UNION ALL SELECT 1 AS "?column?""#
        );
        assert_eq!(
            rewritten("WITH c AS (SELECT max(x) FROM t) SELECT * FROM c"),
            r#"WITH c AS (SELECT max(x) AS "max" FROM t) SELECT * FROM c"#
        );
    }
}
