//! Rewrites of fragments that client tools put in their catalog queries and
//! that DataFusion cannot plan, matched token by token (whitespace and case
//! of the client's text do not matter; a `$n` placeholder in a pattern
//! matches any one token, and `$n` in the replacement stands for the token
//! the pattern's n-th placeholder matched; `...` matches any tokens up to
//! what follows it).
//! Complements the rewrite table of datafusion-pg-catalog, which targets
//! other client versions.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// (fragment a client sends, what weir plans instead, which client).
const FRAGMENTS: &[(&str, &str)] = &[
    // psql 15 `\dt+`: a table's size by OID. OIDs are datafusion-pg-catalog's,
    // names are weir's: the query's own namespace and class rows name it.
    ("pg_catalog.pg_table_size(c.oid)", "weir_relation_size(n.nspname, c.relname)"),
    // psql 15 `\du`: the roles a role belongs to, through `ARRAY(subquery)`,
    // which DataFusion cannot plan. Weir's one role belongs to none.
    (
        "ARRAY(SELECT b.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles b ON (m.roleid = b.oid) WHERE m.member = r.oid) as memberof",
        "CAST(NULL AS TEXT[]) as memberof",
    ),
    // psql 15 `\d` of a foreign table (a stream): per-column FDW options
    // through `ARRAY(subquery)`, which DataFusion cannot plan. Weir's
    // columns have none.
    ("CASE WHEN attfdwoptions IS NULL THEN '' ELSE ... END AS attfdwoptions", "'' AS attfdwoptions"),
    // ... and the table's options as `key 'value'` from its option list;
    // weir's `pg_foreign_table.ftoptions` already holds them so.
    (
        "pg_catalog.array_to_string(ARRAY(SELECT pg_catalog.quote_ident(option_name) || ' ' || pg_catalog.quote_literal(option_value) FROM pg_catalog.pg_options_to_table(ftoptions)), ', ')",
        "pg_catalog.array_to_string(ftoptions, ', ')",
    ),
    // psql 15 `\d+` of a (materialized) view: its definition by OID, looked
    // up by name through pg_class.
    (
        "pg_catalog.pg_get_viewdef($1::pg_catalog.oid, true)",
        "(SELECT weir_viewdef(n.nspname, c.relname) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = CAST($1 AS INT))",
    ),
    // psql 15 `\d+`: table storage options including TOAST options, built
    // with `array(subquery)`, which DataFusion cannot plan. Weir tables have
    // no TOAST table, so the answer is the table's own options (its format
    // and location, see `pg_catalog_compat`).
    (
        "pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')",
        "coalesce(array_to_string(c.reloptions, ', '), '')",
    ),
    // psql 16 and later `\l` against a 16.x server (weir reported 16.6
    // before it reported 15.x; kept for clients that ask regardless):
    // the ICU rules column, new in PostgreSQL 16, which weir's pg_database
    // leaves out to keep PostgreSQL 15's columns for `SELECT *` readers
    // (DBeaver). Weir has no ICU collations: no rules.
    // (The column title after `as` is translated, so it is left out.)
    ("d.daticurules as", "NULL as"),
    // SQLAlchemy 2 column reflection: column defaults, identity options and
    // collations through correlated sub-selects under CASE, which DataFusion
    // cannot decorrelate. Weir columns have none of the three.
    (
        "CASE WHEN pg_catalog.pg_attribute.atthasdef THEN (SELECT pg_catalog.pg_get_expr ... ELSE NULL END AS \"default\"",
        "NULL AS \"default\"",
    ),
    (
        "CASE WHEN (pg_catalog.pg_attribute.attidentity != $1 ... ELSE NULL END AS identity_options",
        "NULL AS identity_options",
    ),
    ("CASE WHEN (pg_catalog.pg_attribute.attcollation != $1 ... ELSE NULL END AS collation", "NULL AS collation"),
    // SQLAlchemy 2 index, primary-key and unique-constraint reflection: the
    // position of each key column, from the set-returning
    // generate_subscripts(), which DataFusion lacks. Next to
    // `unnest(indkey)` in the same select list, an unnest of the subscripts
    // pairs each column with its position, as PostgreSQL's lockstep
    // evaluation does; an int2vector's subscripts start at 0.
    (
        "generate_subscripts(pg_catalog.pg_index.indkey, $1::INTEGER)",
        "unnest(generate_series(0, CAST(cardinality(pg_catalog.pg_index.indkey) AS BIGINT) - 1))",
    ),
    // Metabase's field sync: each column's comment, looked up through a
    // cast of computed text ('schema.table') to regclass, which resolves
    // names only for literals. Weir keeps no comments: the answer is NULL.
    (
        "COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', ...) AS REGCLASS) AS OID), \"c\".\"ordinal_position\")",
        "CAST(NULL AS TEXT)",
    ),
    // Grafana's table and column pickers: "is this schema on the
    // search_path", an `IN` over a sub-select that splits the setting with
    // generate_series over array bounds and a function in FROM
    // (`string_to_array(...) s`), neither of which DataFusion plans, and that
    // Grafana also puts in ORDER BY, where DataFusion allows no subquery.
    // The same test as one array expression: split at commas, trim the
    // blanks around each name, `"$user"` is the current user.
    // (datafusion-pg-catalog stubs the sub-select with `''`, which lists
    // nothing; this rewrite runs before it.)
    (
        r#"IN (
             SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
             FROM generate_series(
                    array_lower(string_to_array(current_setting('search_path'),','),1),
                    array_upper(string_to_array(current_setting('search_path'),','),1)
                  ) as i,
                  string_to_array(current_setting('search_path'),',') s
           )"#,
        r#"= ANY(array_replace(
               string_to_array(regexp_replace(trim(current_setting('search_path')), ' *, *', ',', 'g'), ','),
               '"$user"', current_user))"#,
    ),
];

pub struct ClientCompat {
    fragments: Vec<(Vec<Token>, Vec<Token>)>,
}

impl Default for ClientCompat {
    fn default() -> Self {
        let tokenize = |sql: &str| -> Vec<Token> {
            Tokenizer::new(&PostgreSqlDialect {}, sql)
                .tokenize()
                .map(|tokens| tokens.into_iter().filter(|t| !matches!(t, Token::Whitespace(_))).collect())
                .unwrap_or_default()
        };
        let fragments = FRAGMENTS.iter().map(|(from, to)| (tokenize(from), tokenize(to))).collect();
        ClientCompat { fragments }
    }
}

impl ClientCompat {
    /// The statement with every known fragment replaced, or `None` when
    /// nothing matches (the common case: the client's text is used as is).
    pub fn rewrite(&self, tokens: &[TokenWithSpan]) -> Option<String> {
        let mut out: Vec<Token> =
            tokens.iter().map(|t| &t.token).filter(|t| !matches!(t, Token::Whitespace(_))).cloned().collect();
        let mut changed = false;
        for (from, to) in &self.fragments {
            let mut i = 0;
            while i < out.len() {
                let mut captured = Vec::new();
                match match_at(&out[i..], from, &mut captured) {
                    Some(len) => {
                        let replacement: Vec<Token> = to.iter().map(|t| substitute(t, &captured)).collect();
                        let n = replacement.len();
                        out.splice(i..i + len, replacement);
                        i += n;
                        changed = true;
                    }
                    None => i += 1,
                }
            }
        }
        changed.then(|| out.iter().map(token_sql).collect::<Vec<_>>().join(" "))
    }
}

/// A replacement token, or the token the `$n` placeholder captured.
fn substitute(token: &Token, captured: &[Token]) -> Token {
    match token {
        Token::Placeholder(p) => p
            .strip_prefix('$')
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| captured.get(n.checked_sub(1)?))
            .cloned()
            .unwrap_or_else(|| token.clone()),
        other => other.clone(),
    }
}

/// The length of the match of `pattern` at the start of `input`, if any;
/// the tokens its placeholders matched are pushed onto `captured`.
fn match_at(input: &[Token], pattern: &[Token], captured: &mut Vec<Token>) -> Option<usize> {
    if pattern.is_empty() {
        return None;
    }
    let (mut i, mut p) = (0, 0);
    let before = captured.len();
    while p < pattern.len() {
        if is_ellipsis(&pattern[p..]) {
            // Lazy: skip input until the token after `...` matches there.
            let rest = &pattern[p + 3..];
            let skipped = (i..=input.len()).find_map(|j| {
                let mut rest_captured = Vec::new();
                let len = match_at(&input[j..], rest, &mut rest_captured)?;
                captured.extend(rest_captured);
                Some(j + len)
            });
            if skipped.is_none() {
                captured.truncate(before);
            }
            return skipped;
        }
        let Some(token) = input.get(i) else {
            captured.truncate(before);
            return None;
        };
        let ok = match &pattern[p] {
            Token::Placeholder(_) => {
                captured.push(token.clone());
                true
            }
            expected => same(token, expected),
        };
        if !ok {
            captured.truncate(before);
            return None;
        }
        i += 1;
        p += 1;
    }
    Some(i)
}

/// `...` tokenizes as three periods.
fn is_ellipsis(pattern: &[Token]) -> bool {
    pattern.len() >= 3 && pattern[..3].iter().all(|t| *t == Token::Period)
}

/// A token as SQL text. `Token`'s Display does not re-escape quotes inside
/// strings and quoted identifiers, so those are written here.
fn token_sql(token: &Token) -> String {
    match token {
        Token::SingleQuotedString(s) => format!("'{}'", s.replace('\'', "''")),
        Token::Word(w) => match w.quote_style {
            Some(q) => format!("{q}{}{q}", w.value.replace(q, &format!("{q}{q}"))),
            None => w.value.clone(),
        },
        other => other.to_string(),
    }
}

/// Token equality that ignores the case of unquoted words.
fn same(a: &Token, b: &Token) -> bool {
    match (a, b) {
        (Token::Word(x), Token::Word(y)) => {
            x.quote_style == y.quote_style
                && if x.quote_style.is_none() { x.value.eq_ignore_ascii_case(&y.value) } else { x.value == y.value }
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_psql_toast_options_fragment() {
        let sql = "SELECT c.relkind, pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')\n, c.x FROM t";
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        let text = ClientCompat::default().rewrite(&tokens).unwrap();
        assert!(
            text.contains("c . relkind , coalesce ( array_to_string ( c . reloptions , ', ' ) , '' ) , c . x"),
            "{text}"
        );
        let plain = Tokenizer::new(&PostgreSqlDialect {}, "select 'it''s'").tokenize_with_location().unwrap();
        assert!(ClientCompat::default().rewrite(&plain).is_none());
    }

    #[test]
    fn generate_subscripts_of_indkey_becomes_an_unnest_of_its_positions() {
        let sql = "SELECT unnest(pg_catalog.pg_index.indkey) AS attnum, generate_subscripts(pg_catalog.pg_index.indkey, $1::INTEGER) AS ord FROM pg_catalog.pg_index";
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        let text = ClientCompat::default().rewrite(&tokens).unwrap();
        assert!(
            text.contains("unnest ( generate_series ( 0 , CAST ( cardinality ( pg_catalog . pg_index . indkey ) AS BIGINT ) - 1 ) ) AS ord"),
            "{text}"
        );
    }

    #[test]
    fn a_placeholder_carries_its_token_into_the_replacement() {
        let sql = "SELECT pg_catalog.pg_get_viewdef('16390'::pg_catalog.oid, true);";
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        let text = ClientCompat::default().rewrite(&tokens).unwrap();
        assert!(text.contains("WHERE c . oid = CAST ( '16390' AS INT ) )"), "{text}");
    }

    #[test]
    fn ellipsis_and_placeholders_match_lazily() {
        let sql = "SELECT a, CASE WHEN (pg_catalog.pg_attribute.attidentity != $3::VARCHAR) THEN (SELECT x FROM s WHERE y) ELSE NULL END AS identity_options, b FROM t";
        let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().unwrap();
        let text = ClientCompat::default().rewrite(&tokens).unwrap();
        assert_eq!(text, "SELECT a , NULL AS identity_options , b FROM t");
    }
}
