//! How complex a statement may be. Parsing a flat chain such as
//! `1+1+...+1` is iterative, but it yields a tree as deep as the chain is
//! long, and everything after the parser (planning, type coercion,
//! optimising, evaluating, even dropping the tree) walks it recursively;
//! DataFusion's type coercion also re-derives a subtree's type at every
//! level, so its cost grows with the square of the depth. PostgreSQL answers
//! such statements with `stack depth limit exceeded` (54001); weir does the
//! same, in two steps:
//!
//! 1. [`check_tokens`], before parsing: at most [`MAX_OPERATORS`] operators
//!    in all, at most [`MAX_EXPRESSION_DEPTH`] of them in one unbroken run
//!    (`1 + 1 + ...` at one level of parentheses, with no AND, OR, comma or
//!    keyword between), and at most [`MAX_SET_OPERATIONS`] UNION, INTERSECT
//!    and EXCEPT. So no tree the parser builds is deeper than what the walks
//!    after it (the parser's own rewrites among them) can take.
//! 2. [`shape`], after parsing, one walk that balances every long chain of
//!    ANDs or ORs (the shape generated filters take: both are associative in
//!    SQL's three-valued logic, so a balanced tree means the same and is only
//!    log n deep) and refuses a tree that still nests more than
//!    [`MAX_EXPRESSION_DEPTH`] expressions or [`MAX_QUERY_DEPTH`] queries.
//!    `+`, `*` and the like keep their order: they are not associative once
//!    overflow and floating-point rounding count.
//!
//! The limits sit well inside what the server's stacks hold (see
//! [`STACK_BYTES`]), even in a debug build: a statement under
//! them runs, one over them is refused, and none takes the process down.

use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{BinaryOperator, Expr, Query, SetExpr, Value, VisitMut, VisitorMut};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::Statement;
use crate::error::QueryError;

/// The stack of every thread that parses, plans or runs a statement (the
/// runtime's workers and its blocking pool). Statement trees are walked
/// recursively all the way down; the limits here bound their depth and this
/// holds the deepest tree they admit with room to spare; the server builds
/// its runtime and threads with it. Only the pages a thread touches are
/// ever resident.
pub const STACK_BYTES: usize = 256 * 1024 * 1024;

/// The deepest nesting of expressions a statement may have, after long
/// AND/OR chains are balanced; also the longest unbroken operator run.
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;
/// The most UNION, INTERSECT and EXCEPT operations in one statement.
pub const MAX_SET_OPERATIONS: usize = 1_000;
/// The deepest nesting of subqueries.
pub const MAX_QUERY_DEPTH: usize = 200;
/// The most operators one statement may hold.
pub const MAX_OPERATORS: usize = 200_000;

/// An AND or OR chain longer than this is balanced; shorter ones are left as
/// written, so that ordinary plans (and their EXPLAIN) do not change.
const BALANCE_OVER: usize = 64;

/// Step 1: refuses, from its tokens alone, a statement whose tree would be
/// too deep to build and walk safely.
pub fn check_tokens(tokens: &[TokenWithSpan]) -> Result<(), QueryError> {
    let (mut operators, mut set_operations, mut longest_run) = (0usize, 0usize, 0usize);
    // The current run of operators at each open parenthesis level.
    let mut runs: Vec<usize> = vec![0];
    for token in tokens.iter().map(|t| &t.token) {
        match token {
            Token::LParen | Token::LBracket => runs.push(0),
            // The outermost level is never popped, whatever the balance.
            Token::RParen | Token::RBracket if runs.len() > 1 => {
                runs.pop();
            }
            Token::Comma | Token::SemiColon => reset(&mut runs),
            Token::Word(w) if matches!(w.keyword, Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT) => {
                set_operations += 1;
                operators += 1;
                reset(&mut runs);
            }
            Token::Word(w) if matches!(w.keyword, Keyword::NOT) => {
                operators += 1;
                longest_run = longest_run.max(extend(&mut runs));
            }
            Token::Word(w) if w.keyword != Keyword::NoKeyword && w.quote_style.is_none() => {
                if matches!(w.keyword, Keyword::AND | Keyword::OR) {
                    operators += 1;
                }
                reset(&mut runs);
            }
            other if is_operator(other) => {
                operators += 1;
                longest_run = longest_run.max(extend(&mut runs));
            }
            _ => {}
        }
    }
    if operators > MAX_OPERATORS {
        return Err(too_complex(format!("it has {operators} operators, more than the limit of {MAX_OPERATORS}")));
    }
    if set_operations > MAX_SET_OPERATIONS {
        return Err(too_complex(format!(
            "it has {set_operations} UNION/INTERSECT/EXCEPT operations, more than the limit of {MAX_SET_OPERATIONS}; load the rows into a table, or split the statement"
        )));
    }
    if longest_run > MAX_EXPRESSION_DEPTH {
        return Err(too_complex(format!(
            "it chains {longest_run} operators in a row, more than the limit of {MAX_EXPRESSION_DEPTH} (each nests one level deeper)"
        )));
    }
    Ok(())
}

fn reset(runs: &mut [usize]) {
    if let Some(run) = runs.last_mut() {
        *run = 0;
    }
}

fn extend(runs: &mut [usize]) -> usize {
    match runs.last_mut() {
        Some(run) => {
            *run += 1;
            *run
        }
        None => 0,
    }
}

/// Binary and unary operators that nest their operands one level deeper.
fn is_operator(token: &Token) -> bool {
    matches!(
        token,
        Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::DuckIntDiv
            | Token::Mod
            | Token::StringConcat
            | Token::Eq
            | Token::DoubleEq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Spaceship
            | Token::Ampersand
            | Token::Pipe
            | Token::Caret
            | Token::Tilde
            | Token::ExclamationMark
            | Token::DoubleColon
            | Token::Arrow
            | Token::LongArrow
            | Token::HashArrow
            | Token::HashLongArrow
            | Token::AtArrow
            | Token::ArrowAt
            | Token::Question
            | Token::ShiftLeft
            | Token::ShiftRight
    )
}

/// Step 2: balances long AND/OR chains and refuses a tree that is still
/// too deep, in one walk that never goes deeper than the limits.
pub fn shape(statement: &mut Statement) -> Result<(), QueryError> {
    let mut walk = Shape::default();
    let flow = match statement {
        Statement::Query(query) => visit_df(query, &mut walk),
        Statement::CreateContinuousQuery(cq) => VisitMut::visit(&mut cq.query, &mut walk),
        _ => ControlFlow::Continue(()),
    };
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(e) => Err(e),
    }
}

fn visit_df(statement: &mut DFStatement, walk: &mut Shape) -> ControlFlow<QueryError> {
    match statement {
        DFStatement::Statement(s) => VisitMut::visit(s.as_mut(), walk),
        DFStatement::CopyTo(copy) => match &mut copy.source {
            CopyToSource::Query(q) => VisitMut::visit(q.as_mut(), walk),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        DFStatement::Explain(explain) => visit_df(&mut explain.statement, walk),
        _ => ControlFlow::Continue(()),
    }
}

/// The current nesting while sqlparser's (recursive) walk goes down.
#[derive(Default)]
struct Shape {
    expressions: usize,
    queries: usize,
}

impl VisitorMut for Shape {
    type Break = QueryError;

    /// Top-down: a chain is balanced at its top, before the walk goes into
    /// it, so the walk only ever descends the balanced tree.
    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<QueryError> {
        if let Expr::BinaryOp { op: op @ (BinaryOperator::And | BinaryOperator::Or), .. } = expr {
            let op = op.clone();
            if chain_length(expr, &op) > BALANCE_OVER {
                let taken = std::mem::replace(expr, Expr::value(Value::Null));
                *expr = balanced(operands(taken, &op), &op);
            }
        }
        self.expressions += 1;
        if self.expressions > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(too_complex(format!(
                "its expressions nest more than {MAX_EXPRESSION_DEPTH} levels deep"
            )));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &mut Expr) -> ControlFlow<QueryError> {
        self.expressions -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<QueryError> {
        self.queries += 1;
        if self.queries > MAX_QUERY_DEPTH {
            return ControlFlow::Break(too_complex(format!("its subqueries nest more than {MAX_QUERY_DEPTH} levels deep")));
        }
        let operations = set_operations(&query.body);
        if operations > MAX_SET_OPERATIONS {
            return ControlFlow::Break(too_complex(format!(
                "it chains {operations} UNION/INTERSECT/EXCEPT operations, more than the limit of {MAX_SET_OPERATIONS}"
            )));
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &mut Query) -> ControlFlow<QueryError> {
        self.queries -= 1;
        ControlFlow::Continue(())
    }
}

/// How many operands a chain of `op` has down its left spine (where the
/// parser puts left-associative chains), counted without recursion.
fn chain_length(mut expr: &Expr, op: &BinaryOperator) -> usize {
    let mut length = 1;
    while let Expr::BinaryOp { left, op: o, .. } = expr
        && o == op
    {
        length += 1;
        expr = left;
    }
    length
}

/// The operands of a chain of `op`, left to right, without recursion.
fn operands(expr: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut out = Vec::new();
    let mut pending = vec![expr];
    while let Some(next) = pending.pop() {
        match next {
            Expr::BinaryOp { left, op: o, right } if &o == op => {
                pending.push(*right);
                pending.push(*left);
            }
            other => out.push(other),
        }
    }
    out
}

/// The operands joined by `op` as a balanced tree, in their order.
fn balanced(mut operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if operands.len() <= 1 {
        return operands.pop().unwrap_or_else(|| Expr::value(Value::Null));
    }
    let right = operands.split_off(operands.len() / 2);
    Expr::BinaryOp { left: Box::new(balanced(operands, op)), op: op.clone(), right: Box::new(balanced(right, op)) }
}

/// Set operations in one query body, counted without recursion.
fn set_operations(body: &SetExpr) -> usize {
    let mut pending = vec![body];
    let mut count = 0;
    while let Some(node) = pending.pop() {
        if let SetExpr::SetOperation { left, right, .. } = node {
            count += 1;
            pending.push(left);
            pending.push(right);
        }
    }
    count
}

fn too_complex(reason: String) -> QueryError {
    QueryError::TooComplex(format!("statement is too complex: {reason}"))
}

#[cfg(test)]
mod tests {
    use crate::sql::Parser;

    /// Parses on a stack as large as the server's threads have: the trees
    /// these tests build are deeper than a test thread's default stack.
    fn sqlstate(sql: &str) -> Option<&'static str> {
        let sql = sql.to_string();
        std::thread::Builder::new()
            .stack_size(super::STACK_BYTES)
            .spawn(move || Parser::new().parse(&sql).err().map(|e| e.sqlstate()))
            .expect("spawn a parsing thread")
            .join()
            .expect("parsing thread")
    }

    fn chain(op: &str, n: usize) -> String {
        format!("SELECT {}", vec!["1"; n].join(op))
    }

    #[test]
    fn chains_under_the_limit_parse() {
        assert_eq!(sqlstate(&chain("+", super::MAX_EXPRESSION_DEPTH - 10)), None);
    }

    #[test]
    fn long_and_or_chains_are_balanced_not_refused() {
        assert_eq!(sqlstate(&chain(" OR ", 19_000)), None);
        assert_eq!(sqlstate(&format!("SELECT * FROM t WHERE {}", vec!["x = 1"; 19_000].join(" AND "))), None);
        let sql = format!("SELECT * FROM t WHERE {}", vec!["x = 1"; 100].join(" OR "));
        let statements = std::thread::Builder::new()
            .stack_size(super::STACK_BYTES)
            .spawn(move || Parser::new().parse(&sql).expect("parses"))
            .unwrap()
            .join()
            .unwrap();
        let text = format!("{:?}", statements[0]);
        assert!(text.matches("Nested").count() == 0, "balancing adds no parentheses");
    }

    #[test]
    fn chains_over_the_limit_are_too_complex() {
        assert_eq!(sqlstate(&chain("+", super::MAX_EXPRESSION_DEPTH + 1)), Some("54001"));
        assert_eq!(sqlstate(&chain("+", 18_000)), Some("54001"));
        let union = vec!["SELECT 1"; 5_700].join(" UNION ALL ");
        assert_eq!(sqlstate(&union), Some("54001"));
        let copy = format!("COPY ({}) TO 'x.parquet'", chain("||", 19_000));
        assert_eq!(sqlstate(&copy), Some("54001"));
        // Refused from the tokens alone, before any tree is built.
        assert_eq!(sqlstate(&chain("+", super::MAX_OPERATORS + 1)), Some("54001"));
    }
}
