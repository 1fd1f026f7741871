//! Event times are microseconds since the Unix epoch, UTC.

/// Now, in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    jiff::Timestamp::now().as_microsecond()
}

/// RFC 3339 in UTC with microseconds, e.g. `2026-11-22T02:08:49.123456Z`.
pub fn format_micros(us: i64) -> String {
    match jiff::Timestamp::from_microsecond(us) {
        Ok(ts) => format!("{ts:.6}"),
        Err(_) => format!("<invalid time {us}>"),
    }
}
