//! PostgreSQL runs a correlated scalar subquery that is not aggregated and
//! fails only if it returns more than one row; DataFusion refuses to plan
//! it. Client catalog queries (SQLAlchemy's column reflection) rely on the
//! PostgreSQL behaviour, so a statement DataFusion refuses for this reason is
//! planned again with each such subquery's value wrapped in `first_value`.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, ObjectName,
    SelectItem, SetExpr, visit_expressions_mut,
};

/// The planning error DataFusion raises for these subqueries.
pub fn is_unaggregated_subquery_error(message: &str) -> bool {
    message.contains("Correlated scalar subquery must be aggregated")
}

/// Whether the statement has any scalar subquery (the only statements the
/// extra analysis pass is spent on).
pub fn has_scalar_subquery(stmt: &DFStatement) -> bool {
    let DFStatement::Statement(stmt) = stmt else { return false };
    let mut found = false;
    let _ = datafusion::sql::sqlparser::ast::visit_expressions(stmt.as_ref(), |expr| {
        if matches!(expr, Expr::Subquery(_)) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

/// Wraps the single output of every unaggregated scalar subquery in
/// `first_value(...)`. Returns false when nothing changed.
pub fn aggregate_scalar_subqueries(stmt: &mut DFStatement) -> bool {
    let DFStatement::Statement(stmt) = stmt else { return false };
    let mut changed = false;
    let _ = visit_expressions_mut(stmt.as_mut(), |expr| {
        if let Expr::Subquery(query) = expr
            && let SetExpr::Select(select) = query.body.as_mut()
            && matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty())
            && select.projection.len() == 1
        {
            let item = &mut select.projection[0];
            let (inner, alias) = match item {
                SelectItem::UnnamedExpr(e) => (e.clone(), None),
                SelectItem::ExprWithAlias { expr, alias } => (expr.clone(), Some(alias.clone())),
                _ => return ControlFlow::<()>::Continue(()),
            };
            let wrapped = first_value(inner);
            *item = match alias {
                Some(alias) => SelectItem::ExprWithAlias { expr: wrapped, alias },
                None => SelectItem::UnnamedExpr(wrapped),
            };
            changed = true;
        }
        ControlFlow::Continue(())
    });
    changed
}

fn first_value(arg: Expr) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new("first_value")]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    #[test]
    fn wraps_only_scalar_subquery_outputs() {
        let sql = "SELECT a, (SELECT b FROM u WHERE u.k = t.k) AS x FROM t";
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap().remove(0);
        let mut stmt = DFStatement::Statement(Box::new(stmt));
        assert!(aggregate_scalar_subqueries(&mut stmt));
        assert_eq!(stmt.to_string(), "SELECT a, (SELECT first_value(b) FROM u WHERE u.k = t.k) AS x FROM t");
    }
}
