//! Weir's streaming DDL, which no upstream grammar knows:
//!
//! ```sql
//! CREATE STREAM name (col type, ..., WATERMARK FOR col AS expr) WITH (k = v, ...)
//! CREATE SINK name INTO table [WITH (...)] AS query [WITH (...)]
//! CREATE MATERIALIZED VIEW name [WITH (...)] AS query [WITH (...)]
//! SHOW STREAMS | SINKS | MATERIALIZED VIEWS
//! SHOW CREATE STREAM | SINK | MATERIALIZED VIEW name
//! DROP STREAM | SINK | MATERIALIZED VIEW [IF EXISTS] name, ...
//! ALTER SINK | MATERIALIZED VIEW name PAUSE | RESUME | SET (k = v, ...)
//! EXPLAIN CREATE SINK | MATERIALIZED VIEW ...
//! EXPLAIN SINK | MATERIALIZED VIEW name
//! ```
//!
//! Column definitions, expressions and queries are parsed by sqlparser's own
//! routines; only the statement frames are ours.

use std::collections::BTreeMap;

use datafusion::sql::sqlparser::ast::{ColumnDef, Expr, Ident, ObjectName, Query, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser as SqlParser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use crate::error::QueryError;

/// The streaming relation kinds, as SHOW / DROP name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamingKind {
    Stream,
    Sink,
    MaterializedView,
}

impl StreamingKind {
    pub fn sql_name(&self) -> &'static str {
        match self {
            StreamingKind::Stream => "STREAM",
            StreamingKind::Sink => "SINK",
            StreamingKind::MaterializedView => "MATERIALIZED VIEW",
        }
    }
}

/// `WITH (...)` options: keys lower-cased, values as plain text.
pub type Options = BTreeMap<String, String>;

#[derive(Debug, Clone)]
pub struct CreateStream {
    pub name: ObjectName,
    pub columns: Vec<ColumnDef>,
    /// `WATERMARK FOR col AS expr`: the event-time column and the expression
    /// giving the watermark for a row.
    pub watermark: Option<(Ident, Expr)>,
    pub options: Options,
    pub if_not_exists: bool,
    /// The statement as written, kept as the stored definition.
    pub text: String,
}

/// Where a continuous query's results go.
#[derive(Debug, Clone)]
pub enum SinkTarget {
    /// `CREATE SINK ... INTO table`: an existing external table.
    Table(ObjectName),
    /// `CREATE MATERIALIZED VIEW`: a table the query creates and owns.
    OwnTable,
    /// `CREATE SINK ... INTO KAFKA (bootstrap_servers = ..., topic = ...)`.
    Kafka(Options),
}

#[derive(Debug, Clone)]
pub struct CreateContinuousQuery {
    pub name: ObjectName,
    pub target: SinkTarget,
    pub query: Box<Query>,
    pub options: Options,
    pub if_not_exists: bool,
    /// `CREATE OR REPLACE`: an existing query of the name is replaced,
    /// keeping its progress where the new query allows.
    pub or_replace: bool,
    pub text: String,
}

/// What `ALTER SINK | MATERIALIZED VIEW name ...` does to a running query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterAction {
    /// Stops the query after its last committed epoch; it stays stopped
    /// across restarts until RESUME.
    Pause,
    /// Runs a paused (or failed) query again from its last commit.
    Resume,
    /// Changes options that do not change what the query computes.
    Set(Options),
}

impl CreateContinuousQuery {
    /// The statement as weir stores it, with `options` as its options: the
    /// definition an `ALTER ... SET` records.
    pub fn render(&self, options: &Options) -> String {
        let head = match &self.target {
            SinkTarget::Table(table) => format!("CREATE SINK {} INTO {table}", self.name),
            SinkTarget::Kafka(kafka) => format!("CREATE SINK {} INTO KAFKA ({})", self.name, render_options(kafka)),
            SinkTarget::OwnTable => format!("CREATE MATERIALIZED VIEW {}", self.name),
        };
        match options.is_empty() {
            true => format!("{head} AS {}", self.query),
            false => format!("{head} AS {} WITH ({})", self.query, render_options(options)),
        }
    }
}

/// `key = 'value', ...`, as `parse_option_list` reads it back.
fn render_options(options: &Options) -> String {
    let key = |k: &str| {
        let plain = k.split('.').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
        if plain { k.to_string() } else { format!("'{}'", k.replace('\'', "''")) }
    };
    options.iter().map(|(k, v)| format!("{} = '{}'", key(k), v.replace('\'', "''"))).collect::<Vec<_>>().join(", ")
}

/// Recognises the statements above from their leading words; `None` means
/// "not a streaming statement".
pub fn parse(words: &[&str], tokens: &[TokenWithSpan], text: &str) -> Option<Result<super::Statement, QueryError>> {
    use super::Statement as S;
    let kind = |w: &[&str]| match w {
        ["STREAM", ..] | ["STREAMS", ..] => Some(StreamingKind::Stream),
        ["SINK", ..] | ["SINKS", ..] => Some(StreamingKind::Sink),
        ["MATERIALIZED", "VIEW", ..] | ["MATERIALIZED", "VIEWS", ..] => Some(StreamingKind::MaterializedView),
        _ => None,
    };
    let statement = match words {
        ["CREATE", rest @ ..] => {
            let (or_replace, rest) = match rest {
                ["OR", "REPLACE", rest @ ..] => (true, rest),
                rest => (false, rest),
            };
            match kind(rest)? {
                StreamingKind::Stream if or_replace => {
                    return Some(Err(QueryError::UnsupportedWithHint {
                        what: "CREATE OR REPLACE STREAM".into(),
                        hint: "drop the stream and create it again (queries reading it must be dropped first)".into(),
                    }));
                }
                StreamingKind::Stream => run(tokens, |p| create_stream(p, text)).map(|s| S::CreateStream(Box::new(s))),
                kind => continuous_query(tokens, kind, text).map(S::CreateContinuousQuery),
            }
        }
        ["SHOW", "CREATE", rest @ ..] => {
            let k = kind(rest)?;
            run(tokens, |p| {
                p.expect_keywords(&[Keyword::SHOW, Keyword::CREATE])?;
                skip_kind(p, k)?;
                p.parse_object_name(false)
            })
            .map(|name| S::ShowCreateStreaming(k, name))
        }
        ["SHOW", rest @ ..] => {
            let k = kind(rest)?;
            run(tokens, |p| {
                p.expect_keyword(Keyword::SHOW)?;
                skip_kind_plural(p, k)?;
                Ok(())
            })
            .map(|()| S::ShowStreaming(k))
        }
        ["EXPLAIN", "CREATE", rest @ ..] => {
            let k = kind(rest)?;
            if k == StreamingKind::Stream {
                return Some(Err(QueryError::Unsupported("EXPLAIN CREATE STREAM".into())));
            }
            // The same statement without the leading EXPLAIN.
            let first = tokens.iter().position(|t| !matches!(t.token, Token::Whitespace(_)))?;
            continuous_query(&tokens[first + 1..], k, text).map(S::ExplainContinuousQuery)
        }
        ["EXPLAIN", rest @ ..] => {
            let k = kind(rest)?;
            if k == StreamingKind::Stream {
                return Some(Err(QueryError::Unsupported(
                    "EXPLAIN STREAM (DESCRIBE shows a stream's columns, SHOW CREATE STREAM its definition)".into(),
                )));
            }
            run(tokens, |p| {
                p.expect_keyword(Keyword::EXPLAIN)?;
                skip_kind(p, k)?;
                p.parse_object_name(false)
            })
            .map(|name| S::ExplainStreaming(k, name))
        }
        ["ALTER", rest @ ..] => {
            let k = kind(rest)?;
            if k == StreamingKind::Stream {
                return Some(Err(QueryError::Unsupported("ALTER STREAM (drop and create the stream again)".into())));
            }
            run(tokens, |p| {
                p.expect_keyword(Keyword::ALTER)?;
                skip_kind(p, k)?;
                let name = p.parse_object_name(false)?;
                let action = if peek_word(p, "PAUSE") {
                    p.next_token();
                    AlterAction::Pause
                } else if peek_word(p, "RESUME") {
                    p.next_token();
                    AlterAction::Resume
                } else if p.parse_keyword(Keyword::SET) {
                    AlterAction::Set(parse_option_list(p)?)
                } else {
                    let found = p.peek_token().token;
                    return Err(ParserError::ParserError(format!("expected PAUSE, RESUME or SET (...), found {found}")));
                };
                Ok((name, action))
            })
            .map(|(name, action)| S::AlterStreaming { kind: k, name, action })
        }
        ["DROP", rest @ ..] => {
            let k = kind(rest)?;
            run(tokens, |p| {
                p.expect_keyword(Keyword::DROP)?;
                skip_kind(p, k)?;
                let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
                let names = p.parse_comma_separated(|p| p.parse_object_name(false))?;
                let cascade = p.parse_keyword(Keyword::CASCADE);
                if !cascade {
                    let _ = p.parse_keyword(Keyword::RESTRICT);
                }
                Ok((names, if_exists, cascade))
            })
            .map(|(names, if_exists, cascade)| S::DropStreaming { kind: k, names, if_exists, cascade })
        }
        _ => return None,
    };
    Some(statement)
}

/// Runs `f` over the statement's tokens and insists it consumed them all.
pub(super) fn run<T>(
    tokens: &[TokenWithSpan],
    f: impl FnOnce(&mut SqlParser) -> Result<T, ParserError>,
) -> Result<T, QueryError> {
    let dialect = PostgreSqlDialect {};
    let mut parser = SqlParser::new(&dialect).with_tokens_with_locations(tokens.to_vec());
    let value = f(&mut parser).map_err(syntax)?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        return Err(QueryError::Syntax(format!("unexpected '{}' at {}", next.token, next.span.start)));
    }
    Ok(value)
}

fn syntax(e: ParserError) -> QueryError {
    let msg = e.to_string();
    QueryError::Syntax(msg.trim_start_matches("sql parser error: ").to_string())
}

fn skip_kind(p: &mut SqlParser, kind: StreamingKind) -> Result<(), ParserError> {
    match kind {
        StreamingKind::Stream => expect_word(p, "STREAM"),
        StreamingKind::Sink => expect_word(p, "SINK"),
        StreamingKind::MaterializedView => p.expect_keywords(&[Keyword::MATERIALIZED, Keyword::VIEW]),
    }
}

fn skip_kind_plural(p: &mut SqlParser, kind: StreamingKind) -> Result<(), ParserError> {
    match kind {
        StreamingKind::Stream => expect_word(p, "STREAMS"),
        StreamingKind::Sink => expect_word(p, "SINKS"),
        StreamingKind::MaterializedView => {
            p.expect_keyword(Keyword::MATERIALIZED)?;
            expect_word(p, "VIEWS")
        }
    }
}

/// Matches a word that may not be a sqlparser keyword (STREAM, SINK, ...).
pub(super) fn expect_word(p: &mut SqlParser, word: &str) -> Result<(), ParserError> {
    let next = p.next_token();
    match &next.token {
        Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word) => Ok(()),
        other => Err(ParserError::ParserError(format!("expected {word}, found {other}"))),
    }
}

pub(super) fn peek_word(p: &SqlParser, word: &str) -> bool {
    matches!(&p.peek_token().token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
}

fn create_stream(p: &mut SqlParser, text: &str) -> Result<CreateStream, ParserError> {
    p.expect_keyword(Keyword::CREATE)?;
    expect_word(p, "STREAM")?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false)?;
    let mut columns = Vec::new();
    let mut watermark = None;
    if p.consume_token(&Token::LParen) {
        loop {
            if peek_word(p, "WATERMARK") {
                p.next_token();
                p.expect_keyword(Keyword::FOR)?;
                let column = p.parse_identifier()?;
                p.expect_keyword(Keyword::AS)?;
                let expr = p.parse_expr()?;
                if watermark.replace((column, expr)).is_some() {
                    return Err(ParserError::ParserError("a stream has at most one WATERMARK".into()));
                }
            } else {
                columns.push(p.parse_column_def()?);
            }
            if !p.consume_token(&Token::Comma) {
                break;
            }
        }
        p.expect_token(&Token::RParen)?;
    }
    let options = parse_with(p)?
        .ok_or_else(|| ParserError::ParserError("CREATE STREAM needs WITH (connector = '...', ...)".into()))?;
    Ok(CreateStream { name, columns, watermark, options, if_not_exists, text: text.to_string() })
}

/// Splits `... WITH ( ... )` off the end of a statement, when the statement
/// ends with such a top-level group.
/// `CREATE [OR REPLACE] SINK | MATERIALIZED VIEW ...` from `tokens`. A
/// trailing `WITH (...)` would otherwise parse as table hints of the
/// query's last FROM item (`FROM t WITH (NOLOCK)`) and vanish: it is split
/// off first.
fn continuous_query(tokens: &[TokenWithSpan], kind: StreamingKind, text: &str) -> Result<CreateContinuousQuery, QueryError> {
    let (head, trailing) = split_trailing_with(tokens);
    let trailing = trailing.map(|t| run(&t, parse_with)).transpose()?.flatten();
    run(&head, |p| create_query(p, kind, text, trailing))
}

fn split_trailing_with(tokens: &[TokenWithSpan]) -> (Vec<TokenWithSpan>, Option<Vec<TokenWithSpan>>) {
    let significant: Vec<usize> = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| !matches!(t.token, Token::Whitespace(_) | Token::EOF))
        .map(|(i, _)| i)
        .collect();
    let Some(&last) = significant.last() else { return (tokens.to_vec(), None) };
    if tokens[last].token != Token::RParen {
        return (tokens.to_vec(), None);
    }
    // Walk back to the parenthesis that opens the final group.
    let mut depth = 0i32;
    let mut open = None;
    for &i in significant.iter().rev() {
        match tokens[i].token {
            Token::RParen => depth += 1,
            Token::LParen => {
                depth -= 1;
                if depth == 0 {
                    open = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let Some(open) = open else { return (tokens.to_vec(), None) };
    let Some(pos) = significant.iter().position(|&i| i == open) else { return (tokens.to_vec(), None) };
    let Some(&with) = pos.checked_sub(1).and_then(|p| significant.get(p)) else { return (tokens.to_vec(), None) };
    match &tokens[with].token {
        Token::Word(w) if w.keyword == Keyword::WITH => (tokens[..with].to_vec(), Some(tokens[with..].to_vec())),
        _ => (tokens.to_vec(), None),
    }
}

fn create_query(
    p: &mut SqlParser,
    kind: StreamingKind,
    text: &str,
    trailing: Option<Options>,
) -> Result<CreateContinuousQuery, ParserError> {
    p.expect_keyword(Keyword::CREATE)?;
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    skip_kind(p, kind)?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    if or_replace && if_not_exists {
        return Err(ParserError::ParserError("OR REPLACE and IF NOT EXISTS cannot be used together".into()));
    }
    let name = p.parse_object_name(false)?;
    let target = match kind {
        StreamingKind::Sink => {
            p.expect_keyword(Keyword::INTO)?;
            let kafka = peek_word(p, "KAFKA") && p.peek_nth_token(1).token == Token::LParen;
            if kafka {
                let options = parse_with_list(p)?;
                SinkTarget::Kafka(options)
            } else {
                SinkTarget::Table(p.parse_object_name(false)?)
            }
        }
        _ => SinkTarget::OwnTable,
    };
    let mut options = parse_with(p)?.unwrap_or_default();
    p.expect_keyword(Keyword::AS)?;
    let query = p.parse_query()?;
    if let Some(more) = trailing {
        for (k, v) in more {
            if options.insert(k.clone(), v).is_some() {
                return Err(ParserError::ParserError(format!("option '{k}' is given twice")));
            }
        }
    }
    Ok(CreateContinuousQuery { name, target, query, options, if_not_exists, or_replace, text: text.to_string() })
}

/// `WITH (key = value, ...)`. Keys may be dotted (`properties.security.protocol`)
/// or quoted; values are literals or bare words.
fn parse_with(p: &mut SqlParser) -> Result<Option<Options>, ParserError> {
    if !p.parse_keyword(Keyword::WITH) {
        return Ok(None);
    }
    parse_option_list(p).map(Some)
}

/// `KAFKA (key = value, ...)`: the word, then the list.
fn parse_with_list(p: &mut SqlParser) -> Result<Options, ParserError> {
    p.next_token();
    parse_option_list(p)
}

/// `(key = value, ...)`.
fn parse_option_list(p: &mut SqlParser) -> Result<Options, ParserError> {
    p.expect_token(&Token::LParen)?;
    let mut options = Options::new();
    loop {
        let key = match p.next_token().token {
            Token::SingleQuotedString(s) => s,
            Token::Word(w) => {
                let mut key = w.value;
                while p.consume_token(&Token::Period) {
                    key.push('.');
                    key.push_str(&p.parse_identifier()?.value);
                }
                key
            }
            other => return Err(ParserError::ParserError(format!("expected an option name, found {other}"))),
        };
        p.expect_token(&Token::Eq)?;
        let value = match p.parse_expr()? {
            Expr::Value(v) => match v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s,
                Value::Number(n, _) => n,
                Value::Boolean(b) => b.to_string(),
                other => other.to_string(),
            },
            Expr::Identifier(id) => id.value,
            other => {
                return Err(ParserError::ParserError(format!("option '{key}' needs a literal value, found {other}")));
            }
        };
        let key = key.to_ascii_lowercase();
        if options.insert(key.clone(), value).is_some() {
            return Err(ParserError::ParserError(format!("option '{key}' is given twice")));
        }
        if !p.consume_token(&Token::Comma) {
            break;
        }
    }
    p.expect_token(&Token::RParen)?;
    Ok(options)
}

/// Checks `options` against the valid keys; the error lists them, sorted.
pub fn check_options(options: &Options, valid: &[&str], context: &str) -> Result<(), QueryError> {
    for key in options.keys() {
        let ok = valid.iter().any(|v| v == key || (v.ends_with('.') && key.starts_with(v)));
        if !ok {
            let mut names: Vec<&str> = valid.to_vec();
            names.sort_unstable();
            return Err(QueryError::InvalidOption {
                option: key.clone(),
                context: context.to_string(),
                valid: names.join(", "),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::sql::{Parser, Statement};

    #[test]
    fn create_stream_with_watermark_and_options() {
        let stmts = Parser::new()
            .parse(
                "CREATE STREAM events (event_type TEXT, \"Host\" TEXT, ts TIMESTAMP, \
                 WATERMARK FOR ts AS ts - INTERVAL '20 seconds') \
                 WITH (connector = 'kafka', topic = 'events', properties.client.id = 'x', max = 5)",
            )
            .unwrap();
        let Statement::CreateStream(s) = &stmts[0] else { panic!("{stmts:?}") };
        assert_eq!(s.columns.len(), 3);
        assert_eq!(s.watermark.as_ref().unwrap().0.value, "ts");
        assert_eq!(s.options["connector"], "kafka");
        assert_eq!(s.options["properties.client.id"], "x");
        assert_eq!(s.options["max"], "5");
    }

    #[test]
    fn create_sink_with_trailing_or_leading_options() {
        let p = Parser::new();
        for sql in [
            "CREATE SINK s INTO t AS SELECT a FROM e WITH (trigger = '10 seconds')",
            "CREATE MATERIALIZED VIEW s AS SELECT a FROM (SELECT a FROM e) x WITH (trigger = '10 seconds')",
            "CREATE SINK s INTO t AS SELECT a FROM e WHERE a = 'x' WITH (trigger = '10 seconds')",
            "CREATE SINK s INTO t WITH (trigger = '10 seconds') AS SELECT a FROM e WHERE a = 'x'",
        ] {
            let stmts = p.parse(sql).unwrap();
            let Statement::CreateContinuousQuery(q) = &stmts[0] else { panic!("{stmts:?}") };
            assert_eq!(q.options["trigger"], "10 seconds");
            assert!(q.query.to_string().contains("FROM e"), "{}", q.query);
            assert!(!q.query.to_string().contains("trigger"), "{}", q.query);
        }
    }

    #[test]
    fn create_sink_into_kafka() {
        let stmts = Parser::new()
            .parse("CREATE SINK out INTO KAFKA (bootstrap_servers = 'h:1', topic = 't') AS SELECT a FROM e WITH (output_mode = 'update')")
            .unwrap();
        let Statement::CreateContinuousQuery(q) = &stmts[0] else { panic!("{stmts:?}") };
        let super::SinkTarget::Kafka(options) = &q.target else { panic!("{:?}", q.target) };
        assert_eq!(options["topic"], "t");
        assert_eq!(q.options["output_mode"], "update");
    }

    #[test]
    fn show_and_drop() {
        let p = Parser::new();
        let stmts = p.parse("SHOW SINKS; SHOW MATERIALIZED VIEWS; DROP STREAM IF EXISTS a, b; SHOW CREATE SINK s").unwrap();
        assert!(matches!(stmts[0], Statement::ShowStreaming(super::StreamingKind::Sink)));
        assert!(matches!(stmts[1], Statement::ShowStreaming(super::StreamingKind::MaterializedView)));
        assert!(
            matches!(&stmts[2], Statement::DropStreaming { names, if_exists: true, cascade: false, .. } if names.len() == 2)
        );
        assert!(matches!(stmts[3], Statement::ShowCreateStreaming(super::StreamingKind::Sink, _)));
    }

    #[test]
    fn bad_streaming_ddl_is_a_syntax_error() {
        let p = Parser::new();
        for sql in ["CREATE STREAM s (a INT)", "CREATE SINK s AS SELECT 1", "CREATE STREAM s (a INT) WITH (x)"] {
            assert_eq!(p.parse(sql).unwrap_err().sqlstate(), "42601", "{sql}");
        }
    }
}
