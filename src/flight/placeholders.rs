//! Flight SQL's `?` parameters in the PostgreSQL dialect's numbered form.

/// Flight SQL clients (ADBC, JDBC bridges) write parameters as `?`; the
/// PostgreSQL dialect numbers them (`$1`). Rewrites `?` outside string
/// literals, quoted identifiers and comments, in order.
pub(super) fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut n = 0;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                // Doubled quotes inside the literal close and reopen it: fine.
                for d in chars.by_ref() {
                    out.push(d);
                    if d == c {
                        break;
                    }
                }
            }
            '-' if chars.peek() == Some(&'-') => {
                out.push(c);
                for d in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '?' => {
                n += 1;
                out.push_str(&format!("${n}"));
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::number_placeholders;

    #[test]
    fn question_marks_become_numbered_placeholders() {
        assert_eq!(
            number_placeholders("SELECT '?', \"a?\" FROM t WHERE x = ? AND y > ? -- ?\n"),
            "SELECT '?', \"a?\" FROM t WHERE x = $1 AND y > $2 -- ?\n"
        );
    }
}
