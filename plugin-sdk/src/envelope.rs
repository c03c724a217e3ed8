//! The envelope the router delivers when no plugin runs: `{"id", "type", "timestamp", "data"}`.
//!
//! Rebuilding it in a plugin lets paths such as `type` or `data.title` in a config mean the same
//! thing as in the body a receiver gets without a plugin:
//!
//! ```
//! use switchyard_plugin_sdk::{Event, envelope, path};
//!
//! let event = Event {
//!     id: "evt_1".into(),
//!     event_type: "post.published".into(),
//!     timestamp: 1_795_446_245,
//!     subscription_id: "sub_1".into(),
//!     payload: r#"{"title": "Hi"}"#.into(),
//! };
//! let envelope = envelope::envelope(&event)?;
//! assert_eq!(envelope["timestamp"], "2026-11-23T15:04:05Z");
//! assert_eq!(path::lookup(&envelope, "data.title"), Some(&"Hi".into()));
//! # Ok::<(), switchyard_plugin_sdk::Error>(())
//! ```

use serde_json::{Value, json};

use crate::{Error, Event};

/// `{"id", "type", "timestamp", "data"}` with `data` parsed from the event's payload and the
/// timestamp formatted by [`rfc3339`].
///
/// The result is a [`serde_json::Value`], so serialising it sorts the keys and normalises the
/// payload's JSON; deliver [`Event::payload`] itself when its exact text matters.
///
/// # Errors
/// When the event's payload is not JSON.
pub fn envelope(event: &Event) -> Result<Value, Error> {
    let data: Value = event.data()?;
    Ok(json!({
        "id": event.id,
        "type": event.event_type,
        "timestamp": rfc3339(event.timestamp),
        "data": data,
    }))
}

/// [`envelope`] as JSON text, with the event's payload spliced in as it came rather than
/// parsed: numbers keep their digits and nothing is re-serialised, for plugins that hand the
/// envelope to another JSON reader (a jq or JavaScript engine).
///
/// # Errors
/// When the payload is empty (the router never sends that; a hand-made event might).
pub fn envelope_text(event: &Event) -> Result<String, Error> {
    let data = event.payload.trim();
    if data.is_empty() {
        return Err(Error::msg("event data is empty"));
    }
    Ok(format!(
        "{{\"id\":{},\"type\":{},\"timestamp\":\"{}\",\"data\":{data}}}",
        serde_json::to_string(&event.id)?,
        serde_json::to_string(&event.event_type)?,
        rfc3339(event.timestamp),
    ))
}

/// Unix seconds as RFC 3339 UTC (`2026-11-23T15:04:05Z`), as the router formats an event's
/// timestamp. Plugins get no clock or time crate, so the date comes from Howard Hinnant's
/// `civil_from_days`. Never panics, even at `i64::MIN` and `i64::MAX`, though a year outside
/// `0000..=9999` does not make valid RFC 3339.
pub fn rfc3339(unix_seconds: i64) -> String {
    let (days, secs) = (
        unix_seconds.div_euclid(86_400),
        unix_seconds.rem_euclid(86_400),
    );
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs / 3600, secs % 3600 / 60, secs % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// (year, month, day) of a count of days since 1970-01-01 in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_795_446_245), "2026-11-23T15:04:05Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
        // extreme inputs must not panic
        let _ = rfc3339(i64::MAX);
        let _ = rfc3339(i64::MIN);
    }

    fn event(payload: &str) -> Event {
        Event {
            id: "evt_1".into(),
            event_type: "a\"b".into(),
            timestamp: 0,
            subscription_id: "sub_1".into(),
            payload: payload.into(),
        }
    }

    #[test]
    fn builds_the_envelope() -> Result<(), Error> {
        assert_eq!(
            envelope(&event(" {\"z\":1,\"a\":[true]}\n"))?,
            json!({
                "id": "evt_1",
                "type": "a\"b",
                "timestamp": "1970-01-01T00:00:00Z",
                "data": {"z": 1, "a": [true]},
            })
        );
        assert_eq!(envelope(&event("null"))?["data"], Value::Null);
        assert!(envelope(&event("{oops")).is_err());
        Ok(())
    }
}
