//! Splits SQL text into statements and parses each with the parser that
//! knows it: DataFusion's for its extensions (CREATE EXTERNAL TABLE, COPY
//! TO), the PostgreSQL-compatibility parser (with its rewrites for catalog
//! queries that psql, JDBC and BI tools send) for everything else.

use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use super::classify::{Statement, classify};
use super::client_compat::ClientCompat;
use crate::error::QueryError;

/// Stateless apart from the compatibility parser's pre-tokenised rewrite
/// tables, which are built once per server.
#[derive(Default)]
pub struct Parser {
    compat: PostgresCompatibilityParser,
    client_compat: ClientCompat,
}

impl std::fmt::Debug for Parser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Parser")
    }
}

impl Parser {
    pub fn new() -> Parser {
        Parser::default()
    }

    /// Parses every statement of `sql`. Empty statements (`;;`) are skipped.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, QueryError> {
        let dialect = PostgreSqlDialect {};
        let tokens =
            Tokenizer::new(&dialect, sql).tokenize_with_location().map_err(|e| QueryError::Syntax(e.to_string()))?;
        let lines = LineIndex::new(sql);
        let mut statements = Vec::new();
        for group in split_statements(tokens) {
            let text = lines.slice(&group);
            super::limits::check_tokens(&group)?;
            for mut statement in self.parse_one(group, text)? {
                super::limits::shape(&mut statement)?;
                statements.push(statement);
            }
        }
        Ok(statements)
    }

    /// `text` is the statement exactly as the client wrote it.
    fn parse_one(&self, tokens: Vec<TokenWithSpan>, text: &str) -> Result<Vec<Statement>, QueryError> {
        let words = leading_words(&tokens, 5);
        let words: Vec<&str> = words.iter().map(String::as_str).collect();
        if let Some(streaming) = super::streaming::parse(&words, &tokens, text) {
            return streaming.map(|s| vec![s]);
        }
        if let Some(maintenance) = super::maintenance::parse(&words, &tokens) {
            return maintenance.map(|s| vec![s]);
        }
        let datafusion_extension = matches!(
            words.as_slice(),
            ["CREATE", "EXTERNAL", ..]
                | ["CREATE", "UNBOUNDED", "EXTERNAL", ..]
                | ["CREATE", "OR", "REPLACE", "EXTERNAL", ..]
                | ["COPY", ..]
                | ["EXPLAIN", "COPY", ..]
        );
        if words.first() == Some(&"COPY")
            && tokens.iter().any(|t| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && (w.value.eq_ignore_ascii_case("stdout") || w.value.eq_ignore_ascii_case("stdin"))))
        {
            return Err(QueryError::Unsupported("COPY ... TO STDOUT / FROM STDIN (use COPY (query) TO 'path' STORED AS PARQUET)".into()));
        }
        if datafusion_extension {
            let dialect = PostgreSqlDialect {};
            let mut parser = DFParserBuilder::new(tokens).with_dialect(&dialect).build().map_err(syntax)?;
            let parsed = parser.parse_statements().map_err(syntax)?;
            return parsed.into_iter().map(|s| classify_df(s, self)).collect();
        }
        let rewritten = self.client_compat.rewrite(&tokens);
        let text = rewritten.as_deref().unwrap_or(text);
        let named = mentions_current_user(&tokens).then(|| named_before_rewrites(text)).flatten();
        let text = named.as_deref().unwrap_or(text);
        let parsed = self.compat.parse(text).map_err(|e| QueryError::Syntax(strip_parser_prefix(e.to_string())))?;
        parsed.into_iter().map(classify).collect()
    }
}

/// Whether the statement says `current_user`, which datafusion-pg-catalog's
/// rewrites turn into `session_user` before weir names the columns.
fn mentions_current_user(tokens: &[TokenWithSpan]) -> bool {
    tokens.iter().any(
        |t| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("current_user")),
    )
}

/// The statement with its result columns named as PostgreSQL names them,
/// fixed before the rewrites can rename what they are named after
/// (`SELECT current_user` is headed `current_user`); `None` if it does not
/// parse here (the usual path then reports the error).
fn named_before_rewrites(text: &str) -> Option<String> {
    let mut statements = datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, text).ok()?;
    for statement in &mut statements {
        super::column_names::name_like_postgres(statement);
    }
    Some(statements.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))
}

fn classify_df(stmt: DFStatement, parser: &Parser) -> Result<Statement, QueryError> {
    match stmt {
        DFStatement::Statement(s) => classify(parser.compat.rewrite(*s)),
        DFStatement::CreateExternalTable(c) => Ok(Statement::CreateExternalTable(c)),
        other => Ok(Statement::Query(other)),
    }
}

fn syntax(e: datafusion::error::DataFusionError) -> QueryError {
    match e {
        datafusion::error::DataFusionError::SQL(err, _) => QueryError::Syntax(strip_parser_prefix(err.to_string())),
        other => QueryError::Syntax(strip_parser_prefix(other.to_string())),
    }
}

fn strip_parser_prefix(msg: String) -> String {
    msg.trim_start_matches("SQL error: ")
        .trim_start_matches("ParserError(")
        .trim_start_matches("sql parser error: ")
        .trim_end_matches(')')
        .to_string()
}

/// Maps the tokenizer's (line, column) locations back to byte offsets, so
/// each statement can be handed on as the exact text the client sent
/// (re-printing tokens would lose escapes such as `'it''s'`).
struct LineIndex<'a> {
    sql: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    fn new(sql: &'a str) -> LineIndex<'a> {
        let mut line_starts = vec![0];
        line_starts.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { sql, line_starts }
    }

    fn offset(&self, loc: Location) -> usize {
        let Some(&start) = (loc.line as usize).checked_sub(1).and_then(|l| self.line_starts.get(l)) else {
            return self.sql.len();
        };
        let column = (loc.column as usize).saturating_sub(1);
        self.sql[start..].char_indices().nth(column).map(|(i, _)| start + i).unwrap_or(self.sql.len())
    }

    fn slice(&self, group: &[TokenWithSpan]) -> &'a str {
        match (group.first(), group.last()) {
            (Some(first), Some(last)) => {
                let (start, end) = (self.offset(first.span.start), self.offset(last.span.end));
                self.sql.get(start..end.max(start)).unwrap_or_default()
            }
            _ => "",
        }
    }
}

/// Splits at top-level semicolons; the tokenizer already keeps semicolons in
/// strings, comments and dollar quotes out of the way.
fn split_statements(tokens: Vec<TokenWithSpan>) -> Vec<Vec<TokenWithSpan>> {
    let mut groups = Vec::new();
    let mut current = Vec::new();
    for token in tokens {
        if token.token == Token::SemiColon {
            groups.push(std::mem::take(&mut current));
        } else {
            current.push(token);
        }
    }
    groups.push(current);
    groups.retain(|g| g.iter().any(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF)));
    groups
}

/// The first `n` words of a statement, upper-cased, skipping whitespace and
/// comments: enough to route it to the right parser.
fn leading_words(tokens: &[TokenWithSpan], n: usize) -> Vec<String> {
    tokens
        .iter()
        .filter(|t| {
            !matches!(
                t.token,
                Token::Whitespace(
                    Whitespace::Space
                        | Whitespace::Tab
                        | Whitespace::Newline
                        | Whitespace::SingleLineComment { .. }
                        | Whitespace::MultiLineComment(_)
                )
            )
        })
        .take(n)
        .map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() => w.value.to_ascii_uppercase(),
            other => other.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_routes_statements() {
        let p = Parser::new();
        let stmts =
            p.parse("CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x;y'; select ';' ; ; SHOW TABLES").unwrap();
        assert_eq!(stmts.len(), 3);
        assert!(matches!(stmts[0], Statement::CreateExternalTable(_)));
        assert!(matches!(stmts[1], Statement::Query(_)));
        assert!(matches!(stmts[2], Statement::ShowTables));
    }

    #[test]
    fn statements_keep_their_exact_text() {
        let p = Parser::new();
        let stmts = p.parse("SELECT 'it''s', \"a\"\"b\" FROM t;\n  SELECT 'é''x' -- done\n").unwrap();
        let Statement::Query(q) = &stmts[0] else { panic!("{stmts:?}") };
        assert!(q.to_string().contains("'it''s'"), "{q}");
        let Statement::Query(q) = &stmts[1] else { panic!("{stmts:?}") };
        assert!(q.to_string().contains("'é''x'"), "{q}");
    }

    #[test]
    fn syntax_errors_are_syntax_errors() {
        let p = Parser::new();
        let err = p.parse("SELEC 1").unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
        let err = p.parse("CREATE EXTERNAL TABLE t STORED AS").unwrap_err();
        assert_eq!(err.sqlstate(), "42601");
    }

    #[test]
    fn empty_input_is_no_statement() {
        assert!(Parser::new().parse(" ;; -- nothing\n").unwrap().is_empty());
    }
}
