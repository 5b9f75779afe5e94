//! Session variables: the settings a client sends at start-up or changes
//! with `SET`, their defaults, and what they mean to the engine (search_path,
//! `datafusion.*` overrides, the idle-session timeout). Settings live in the
//! connection's metadata map (pgwire keeps the startup parameters there too),
//! so they die with the connection; the `SET`/`SHOW` statements themselves
//! are `handler::session`.

use std::collections::HashMap;

use datafusion::config::ConfigOptions;

use crate::catalog::{PG_VERSION, PG_VERSION_NUM};
use crate::error::QueryError;

/// Per-connection variables: startup parameters plus `SET` values.
pub type SessionVars = HashMap<String, String>;

/// Prefix of keys written by `SET`, keeping them apart from startup keys.
const SET_PREFIX: &str = "setting:";

/// Server settings with their defaults: (name as PostgreSQL spells it,
/// default, description). Only these (and `datafusion.*` options, and dotted
/// custom names as in PostgreSQL) may be SET.
const SETTINGS: &[(&str, &str, &str)] = &[
    ("application_name", "", "Sets the application name to be reported in statistics and logs."),
    ("bytea_output", "hex", "Sets the output format for bytea."),
    ("client_encoding", "UTF8", "Sets the client's character set encoding."),
    ("client_min_messages", "notice", "Sets the message levels that are sent to the client."),
    ("DateStyle", "ISO, MDY", "Sets the display format for date and time values."),
    ("default_transaction_isolation", "read committed", "Sets the transaction isolation level of each new transaction."),
    ("default_transaction_read_only", "off", "Sets the default read-only status of new transactions."),
    ("extra_float_digits", "1", "Sets the number of digits displayed for floating-point values."),
    ("idle_in_transaction_session_timeout", "0", "Accepted for compatibility; weir has no open transactions."),
    ("idle_session_timeout", "0", "Sets the maximum allowed idle time between queries, when not in a transaction block."),
    ("integer_datetimes", "on", "Shows whether datetimes are integer based."),
    ("IntervalStyle", "postgres", "Sets the display format for interval values."),
    ("is_superuser", "on", "Shows whether the current user is a superuser."),
    ("lc_messages", "C", "Sets the language in which messages are displayed."),
    ("lock_timeout", "0", "Accepted for compatibility; weir takes no user-visible locks."),
    ("max_identifier_length", "63", "Shows the maximum identifier length."),
    ("search_path", "public", "Sets the schema search order for names that are not schema-qualified."),
    ("server_encoding", "UTF8", "Shows the server (database) character set encoding."),
    ("server_version", PG_VERSION, "Shows the PostgreSQL version weir is compatible with."),
    ("server_version_num", PG_VERSION_NUM, "Shows the PostgreSQL version as an integer."),
    ("standard_conforming_strings", "on", "Causes '...' strings to treat backslashes literally."),
    ("statement_timeout", "0", "Sets the maximum allowed duration of any read (SELECT, EXPLAIN); 0 turns this off."),
    ("TimeZone", "UTC", "Time zone for displaying time stamps (weir always renders timestamptz in UTC)."),
    ("transaction_isolation", "read committed", "Shows the current transaction's isolation level."),
    ("transaction_read_only", "off", "Shows whether the current transaction is read-only."),
];

fn canonical_name(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let lower = match lower.as_str() {
        "transaction isolation level" => "transaction_isolation",
        "time zone" => "timezone",
        "session authorization" | "session_authorization" => return Some("session_authorization"),
        other => other,
    };
    SETTINGS.iter().map(|(n, _, _)| *n).find(|n| n.eq_ignore_ascii_case(lower))
}

/// `SET name = value` (`None`: `SET name TO DEFAULT`, or `RESET name`): checks the name and,
/// where the engine reads it, the value, then records it for this session.
pub fn set(vars: &mut SessionVars, name: &str, value: Option<String>) -> Result<(), QueryError> {
    let lower = name.to_ascii_lowercase();
    let key = if lower.starts_with("datafusion.") {
        if let Some(value) = &value {
            ConfigOptions::new().set(&lower, value).map_err(|e| QueryError::InvalidParameterValue {
                name: name.to_string(),
                reason: crate::error::QueryError::from(e).message(),
            })?;
        }
        lower
    } else if let Some(canonical) = canonical_name(name) {
        canonical.to_ascii_lowercase()
    } else if lower.contains('.') {
        lower // a custom "app.setting", which PostgreSQL also accepts
    } else {
        return Err(QueryError::UnknownParameter(name.to_string()));
    };
    if let (IDLE_SESSION_TIMEOUT | STATEMENT_TIMEOUT, Some(v)) = (key.as_str(), &value) {
        parse_duration_ms(v).ok_or_else(|| QueryError::InvalidParameterValue {
            name: name.to_string(),
            reason: format!("\"{v}\" is not a duration (a number of milliseconds, or with a unit: ms, s, min, h, d)"),
        })?;
    }
    match value {
        Some(v) => vars.insert(format!("{SET_PREFIX}{key}"), v),
        None => vars.remove(&format!("{SET_PREFIX}{key}")),
    };
    Ok(())
}

/// `RESET ALL`: every `SET` of this session is undone; settings go back to
/// what the client sent at start-up, else the server default.
pub fn reset_all(vars: &mut SessionVars) {
    vars.retain(|k, _| !k.starts_with(SET_PREFIX));
}

/// The name a setting is shown under (`SHOW`'s column), as PostgreSQL
/// spells it; names weir does not know are shown in lower case.
pub fn display_name(name: &str) -> String {
    canonical_name(name).map(str::to_string).unwrap_or_else(|| name.to_ascii_lowercase())
}

/// Every server setting (`SHOW ALL`): name, this session's value, description.
pub fn all(vars: &SessionVars) -> impl Iterator<Item = (&'static str, String, &'static str)> + '_ {
    SETTINGS.iter().map(|(n, _, d)| (*n, lookup(vars, n).unwrap_or_default(), *d))
}

/// A setting's value: this session's SET, else what the client sent at
/// start-up, else the server default.
fn lookup(vars: &SessionVars, name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if lower == "session_authorization" || lower == "session authorization" {
        return vars.get("user").cloned();
    }
    let key = canonical_name(name).map(str::to_ascii_lowercase).unwrap_or(lower);
    if let Some(v) = vars.get(&format!("{SET_PREFIX}{key}")) {
        return Some(v.clone());
    }
    if let Some((_, v)) = vars.iter().find(|(k, _)| !k.starts_with(SET_PREFIX) && k.eq_ignore_ascii_case(&key)) {
        return Some(v.clone());
    }
    if key.starts_with("datafusion.") {
        return ConfigOptions::new().entries().into_iter().find(|e| e.key == key).map(|e| e.value.unwrap_or_default());
    }
    SETTINGS.iter().find(|(n, _, _)| n.eq_ignore_ascii_case(&key)).map(|(_, d, _)| d.to_string())
}

/// A setting as `current_setting()` reports it in a session.
pub fn setting(vars: &SessionVars, name: &str) -> Option<String> {
    lookup(vars, name)
}

const IDLE_SESSION_TIMEOUT: &str = "idle_session_timeout";
const STATEMENT_TIMEOUT: &str = "statement_timeout";

/// How long a read may run before it is cancelled with 57014
/// (PostgreSQL's `statement_timeout`); `None` when off.
pub fn statement_timeout(vars: &SessionVars) -> Option<std::time::Duration> {
    let ms = parse_duration_ms(&lookup(vars, STATEMENT_TIMEOUT)?)?;
    (ms > 0.0).then(|| std::time::Duration::from_secs_f64(ms / 1000.0))
}

/// Key of the connection's process id (BackendKeyData) among the vars. The
/// connection writes it once logged in, over anything a client sent under
/// that name at start-up; `SET` refuses names with a `:`.
pub const BACKEND_PID: &str = "weir:backend_pid";

/// The connection's process id, as `pg_backend_pid()` returns it.
pub fn backend_pid(vars: &SessionVars) -> Option<i32> {
    vars.get(BACKEND_PID)?.parse().ok()
}

/// The user the session logged in as.
pub fn user(vars: &SessionVars) -> Option<&str> {
    vars.get("user").map(String::as_str)
}

/// How long the session may sit idle between queries before the server
/// closes it (PostgreSQL's `idle_session_timeout`); `None` when off. The
/// server's `--idle-session-timeout` is the session's start-up value.
pub fn idle_session_timeout(vars: &SessionVars) -> Option<std::time::Duration> {
    let ms = parse_duration_ms(&lookup(vars, IDLE_SESSION_TIMEOUT)?)?;
    (ms > 0.0).then(|| std::time::Duration::from_secs_f64(ms / 1000.0))
}

/// Records the server's default `idle_session_timeout` as the session's
/// start-up value, unless the client sent one.
pub fn default_idle_session_timeout(vars: &mut SessionVars, timeout: Option<std::time::Duration>) {
    let value = match timeout.map(|t| t.as_millis()) {
        None | Some(0) => "0".to_string(),
        Some(ms) if ms % 1000 == 0 => format!("{}s", ms / 1000),
        Some(ms) => format!("{ms}ms"),
    };
    if !vars.keys().any(|k| k.eq_ignore_ascii_case(IDLE_SESSION_TIMEOUT)) {
        vars.insert(IDLE_SESSION_TIMEOUT.to_string(), value);
    }
}

/// A PostgreSQL time setting in milliseconds: a bare number is milliseconds,
/// or a number with one of PostgreSQL's units; at most `i32::MAX` ms, as
/// PostgreSQL allows.
fn parse_duration_ms(value: &str) -> Option<f64> {
    let value = value.trim();
    let split = value.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(value.len());
    let number: f64 = value[..split].parse().ok()?;
    let unit = match value[split..].trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = number * unit;
    (ms.is_finite() && ms <= f64::from(i32::MAX)).then_some(ms)
}

/// The session's `search_path` as schema names, when it finds tables
/// anywhere other than weir's default does (`sql::search_path`).
pub fn search_path(vars: &SessionVars) -> Option<Vec<String>> {
    let path = crate::sql::search_path::schemas(&lookup(vars, "search_path")?, vars.get("user").map(String::as_str));
    (!crate::sql::search_path::is_default(&path)).then_some(path)
}

/// The session's `SET datafusion.*` values, applied to each statement's state.
pub fn datafusion_overrides(vars: &SessionVars) -> impl Iterator<Item = (String, String)> + '_ {
    vars.iter().filter_map(|(k, v)| {
        k.strip_prefix(SET_PREFIX).filter(|k| k.starts_with("datafusion.")).map(|k| (k.to_string(), v.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_session_timeout_reads_postgres_durations() {
        let mut vars = SessionVars::new();
        assert_eq!(idle_session_timeout(&vars), None);
        default_idle_session_timeout(&mut vars, Some(std::time::Duration::from_secs(30)));
        assert_eq!(idle_session_timeout(&vars), Some(std::time::Duration::from_secs(30)));
        for (text, ms) in [("250", 250), ("250ms", 250), ("2s", 2000), ("1 min", 60_000), ("1.5s", 1500)] {
            set(&mut vars, "idle_session_timeout", Some(text.into())).unwrap();
            assert_eq!(idle_session_timeout(&vars), Some(std::time::Duration::from_millis(ms)), "{text}");
        }
        set(&mut vars, "idle_session_timeout", Some("0".into())).unwrap();
        assert_eq!(idle_session_timeout(&vars), None);
        for bad in ["soon", "-1", "5 weeks", "1e99"] {
            assert!(set(&mut vars, "idle_session_timeout", Some(bad.into())).is_err(), "{bad}");
        }
    }
}
