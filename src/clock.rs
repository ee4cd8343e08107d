//! The wall clock as every part of watchkeeper records it: milliseconds since the Unix epoch.

/// Now, in epoch milliseconds.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
