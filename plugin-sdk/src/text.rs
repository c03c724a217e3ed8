//! Turning JSON values into message text, and keeping it within a receiver's limits.
//!
//! ```
//! use serde_json::json;
//! use switchyard_plugin_sdk::text;
//!
//! assert_eq!(text::value_text(&json!("Ann")), "Ann");
//! assert_eq!(text::value_text(&json!({"n": 1})), r#"{"n":1}"#);
//! assert_eq!(text::truncate("héllo", 4), "hél…");
//! ```

use serde_json::Value;

/// A value as message text: strings raw (no quotes), anything else compact JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether a value reads well as one piece of text: a string, number or boolean (not `null`,
/// an array or an object). Handy for picking default fields to show.
pub fn is_scalar(value: &Value) -> bool {
    value.is_string() || value.is_number() || value.is_boolean()
}

/// At most `max` characters (not bytes, so never a split code point), ending in `…` when cut;
/// `""` when `max` is 0.
pub fn truncate(text: &str, max: usize) -> String {
    if max == 0 {
        return String::new();
    }
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_as_text() {
        assert_eq!(value_text(&json!("Hi <b>")), "Hi <b>");
        assert_eq!(value_text(&json!(3)), "3");
        assert_eq!(value_text(&json!(null)), "null");
        assert_eq!(value_text(&json!(["a", "b"])), "[\"a\",\"b\"]");
        assert!(is_scalar(&json!("")) && is_scalar(&json!(1.5)) && is_scalar(&json!(false)));
        assert!(!is_scalar(&json!(null)) && !is_scalar(&json!([])) && !is_scalar(&json!({})));
    }

    #[test]
    fn truncates_by_chars() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo", 4), "hél…");
        assert_eq!(truncate("🎉🎉🎉", 2), "🎉…");
        assert_eq!(truncate("abc", 1), "…");
        assert_eq!(truncate("abc", 0), "");
        assert_eq!(truncate("", 0), "");
    }
}
