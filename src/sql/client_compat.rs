//! Rewrites of fragments that client tools put in their catalog queries and
//! that DataFusion cannot plan, matched token by token (whitespace and case
//! of the client's text do not matter). Complements the rewrite table of
//! datafusion-pg-catalog, which targets other client versions.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

/// (fragment a client sends, what weir plans instead, which client).
const FRAGMENTS: &[(&str, &str)] = &[
    // psql 15 `\d+`: table storage options including TOAST options, built
    // with `array(subquery)`, which DataFusion cannot plan. Weir tables have
    // neither, so the answer is the empty option list.
    (
        "pg_catalog.array_to_string(c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x), ', ')",
        "''",
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
        let significant: Vec<&Token> =
            tokens.iter().map(|t| &t.token).filter(|t| !matches!(t, Token::Whitespace(_))).collect();
        let matches_any = self.fragments.iter().any(|(from, _)| {
            !from.is_empty() && significant.windows(from.len()).any(|w| w.iter().zip(from).all(|(a, b)| same(a, b)))
        });
        if !matches_any {
            return None;
        }
        let mut out: Vec<Token> = significant.into_iter().cloned().collect();
        for (from, to) in &self.fragments {
            let mut i = 0;
            while i + from.len() <= out.len() {
                if out[i..i + from.len()].iter().zip(from).all(|(a, b)| same(a, b)) {
                    out.splice(i..i + from.len(), to.iter().cloned());
                    i += to.len();
                } else {
                    i += 1;
                }
            }
        }
        Some(out.iter().map(token_sql).collect::<Vec<_>>().join(" "))
    }
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
        assert!(text.contains("c . relkind , '' , c . x"), "{text}");
        let plain = Tokenizer::new(&PostgreSqlDialect {}, "select 'it''s'").tokenize_with_location().unwrap();
        assert!(ClientCompat::default().rewrite(&plain).is_none());
    }
}
