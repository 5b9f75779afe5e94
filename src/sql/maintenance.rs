//! Table maintenance statements, as Delta Lake users know them from Spark
//! and Databricks:
//!
//! * `OPTIMIZE name [WITH (target_size = '128MB')]`: compacts small files;
//! * `VACUUM name [RETAIN n HOURS] [DRY RUN]`: deletes files no version
//!   within the retention still references;
//! * `DESCRIBE HISTORY name [LIMIT n]`: the table's commits, newest first.

use datafusion::sql::sqlparser::ast::ObjectName;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser as SqlParser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan};

use super::streaming::{expect_word, peek_word, run};
use crate::error::QueryError;

#[derive(Debug, Clone, PartialEq)]
pub enum Maintenance {
    Optimize { name: ObjectName, target_size: Option<String> },
    Vacuum { name: ObjectName, retain_hours: Option<f64>, dry_run: bool },
    DescribeHistory { name: ObjectName, limit: Option<usize> },
}

/// The longest `VACUUM ... RETAIN`: 100 years.
const MAX_RETAIN_HOURS: f64 = 876_000.0;

/// `Some` when the statement is one of these (by its first words).
pub fn parse(words: &[&str], tokens: &[TokenWithSpan]) -> Option<Result<super::Statement, QueryError>> {
    let parsed = match words {
        ["OPTIMIZE", _, ..] => run(tokens, optimize),
        ["VACUUM", _, ..] => run(tokens, vacuum),
        // `DESCRIBE history` alone describes a table named history.
        ["DESCRIBE", "HISTORY", _, ..] => run(tokens, describe_history),
        _ => return None,
    };
    Some(parsed.map(super::Statement::Maintenance))
}

fn optimize(p: &mut SqlParser) -> Result<Maintenance, ParserError> {
    expect_word(p, "OPTIMIZE")?;
    let name = p.parse_object_name(false)?;
    let mut target_size = None;
    if p.parse_keyword(Keyword::WITH) {
        p.expect_token(&Token::LParen)?;
        let option = p.parse_identifier()?;
        if !option.value.eq_ignore_ascii_case("target_size") {
            return Err(ParserError::ParserError(format!("OPTIMIZE takes the option target_size, not '{}'", option.value)));
        }
        p.expect_token(&Token::Eq)?;
        target_size = Some(p.parse_literal_string()?);
        p.expect_token(&Token::RParen)?;
    }
    Ok(Maintenance::Optimize { name, target_size })
}

fn vacuum(p: &mut SqlParser) -> Result<Maintenance, ParserError> {
    expect_word(p, "VACUUM")?;
    let name = p.parse_object_name(false)?;
    let mut retain_hours = None;
    if peek_word(p, "RETAIN") {
        p.next_token();
        let hours = p.parse_number_value()?;
        let hours: f64 = hours
            .value
            .to_string()
            .parse()
            .map_err(|_| ParserError::ParserError(format!("RETAIN takes a number of hours, not {}", hours.value)))?;
        if !hours.is_finite() || hours < 0.0 {
            return Err(ParserError::ParserError(format!("RETAIN {hours} HOURS: the retention cannot be negative")));
        }
        // Far beyond any table's age, and far from where subtracting it
        // from the clock would overflow a timestamp.
        if hours > MAX_RETAIN_HOURS {
            return Err(ParserError::ParserError(format!(
                "RETAIN {hours} HOURS: at most {MAX_RETAIN_HOURS} hours (100 years)"
            )));
        }
        expect_word(p, "HOURS")?;
        retain_hours = Some(hours);
    }
    let dry_run = peek_word(p, "DRY");
    if dry_run {
        p.next_token();
        expect_word(p, "RUN")?;
    }
    Ok(Maintenance::Vacuum { name, retain_hours, dry_run })
}

fn describe_history(p: &mut SqlParser) -> Result<Maintenance, ParserError> {
    p.expect_keyword(Keyword::DESCRIBE)?;
    expect_word(p, "HISTORY")?;
    let name = p.parse_object_name(false)?;
    let limit = if p.parse_keyword(Keyword::LIMIT) {
        let n = p.parse_literal_uint()?;
        Some(usize::try_from(n).map_err(|_| ParserError::ParserError(format!("LIMIT {n} is too large")))?)
    } else {
        None
    };
    Ok(Maintenance::DescribeHistory { name, limit })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::{Parser, Statement};

    fn parsed(sql: &str) -> Maintenance {
        match Parser::new().parse(sql).unwrap().remove(0) {
            Statement::Maintenance(m) => m,
            other => panic!("{sql}: {other:?}"),
        }
    }

    #[test]
    fn maintenance_statements_parse() {
        assert!(matches!(parsed("OPTIMIZE t"), Maintenance::Optimize { target_size: None, .. }));
        assert!(
            matches!(parsed("optimize t with (target_size = '1MB')"), Maintenance::Optimize { target_size: Some(s), .. } if s == "1MB")
        );
        assert!(matches!(
            parsed("VACUUM t RETAIN 0 HOURS DRY RUN"),
            Maintenance::Vacuum { retain_hours: Some(h), dry_run: true, .. } if h == 0.0
        ));
        assert!(matches!(parsed("VACUUM \"T\""), Maintenance::Vacuum { retain_hours: None, dry_run: false, .. }));
        assert!(matches!(parsed("DESCRIBE HISTORY t LIMIT 2"), Maintenance::DescribeHistory { limit: Some(2), .. }));
        // A table named history is still described.
        assert!(matches!(Parser::new().parse("DESCRIBE history").unwrap().remove(0), Statement::Describe(_)));
        for bad in [
            "VACUUM t RETAIN -1 HOURS",
            "VACUUM t RETAIN 99999999999999999999 HOURS",
            "VACUUM t RETAIN 2 DAYS",
            "OPTIMIZE t WITH (zorder = 'x')",
            "OPTIMIZE t extra",
        ] {
            assert!(Parser::new().parse(bad).is_err(), "{bad} accepted");
        }
    }
}
