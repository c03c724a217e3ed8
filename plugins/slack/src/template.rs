//! `{{path}}` templates and dot paths: how config text pulls values out of the envelope.
//!
//! A placeholder is replaced by the value at that envelope path: strings raw, any other JSON
//! compact, a missing value as nothing. Only substituted values go through the caller's
//! `escape`, so a template's own markup (a Slack `<url|label>`, a Discord `@here`) survives
//! while event data cannot inject any.

use serde_json::Value;
use switchyard_plugin_sdk::Error;

/// One piece of a parsed template.
enum Piece<'a> {
    /// Literal text, copied as is.
    Text(&'a str),
    /// A `{{path}}` placeholder (path trimmed).
    Field(&'a str),
}

/// Split a template into literal text and placeholders.
fn parse(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some((text, after)) = rest.split_once("{{") {
        let (path, after) = after
            .split_once("}}")
            .ok_or("has an unclosed `{{` (placeholders look like `{{data.title}}`)")?;
        let path = path.trim();
        path_error(path).map_err(|why| format!("has a placeholder `{{{{{path}}}}}` that {why}"))?;
        pieces.extend([Piece::Text(text), Piece::Field(path)]);
        rest = after;
    }
    pieces.push(Piece::Text(rest));
    Ok(pieces)
}

/// Check the template in config key `key`.
///
/// # Errors
/// `` `title` has an unclosed `{{` … `` and the like.
pub fn check(key: &str, template: &str) -> Result<(), Error> {
    parse(template)
        .map(drop)
        .map_err(|why| Error::msg(format!("`{key}` {why}")))
}

/// Check a dot path in config key `key`.
///
/// # Errors
/// When the path is empty or has an empty segment.
pub fn check_path(key: &str, path: &str) -> Result<(), Error> {
    path_error(path).map_err(|why| Error::msg(format!("path `{path}` in `{key}` {why}")))
}

/// Check a config value that is a URL template, a literal `http(s)://` URL or a dot path.
///
/// # Errors
/// As [`check`] or [`check_path`].
pub fn check_link(key: &str, spec: &str) -> Result<(), Error> {
    if spec.contains("{{") {
        check(key, spec)
    } else if is_http(spec) {
        Ok(())
    } else {
        check_path(key, spec)
    }
}

/// Why a path can never name a field, if it cannot.
fn path_error(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        Err("is empty")
    } else if path.split('.').any(str::is_empty) {
        Err("has an empty segment")
    } else {
        Ok(())
    }
}

/// Fill a template from `envelope`, passing each substituted value through `escape`.
///
/// # Errors
/// When the template does not parse (a config that skipped validation).
pub fn render(
    template: &str,
    envelope: &Value,
    escape: fn(&str) -> String,
) -> Result<String, Error> {
    let pieces = parse(template).map_err(|why| Error::msg(format!("template {why}")))?;
    Ok(pieces
        .iter()
        .map(|piece| match piece {
            Piece::Text(text) => (*text).to_owned(),
            Piece::Field(path) => {
                escape(&lookup(envelope, path).map(value_text).unwrap_or_default())
            }
        })
        .collect())
}

/// Resolve a URL template, literal URL or dot path (see [`check_link`]); `""` when missing.
///
/// # Errors
/// When a template does not parse.
pub fn resolve_link(spec: &str, envelope: &Value) -> Result<String, Error> {
    let url = if spec.contains("{{") {
        render(spec, envelope, str::to_owned)?
    } else if is_http(spec) {
        spec.to_owned()
    } else {
        lookup(envelope, spec).map(value_text).unwrap_or_default()
    };
    Ok(url.trim().to_owned())
}

/// Whether `url` is something a chat service accepts as a link.
pub fn is_http(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// The value at a dot path; a numeric segment indexes an array.
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// The last segment of a dot path: the label of a field.
pub fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// A value as message text: strings raw, anything else compact JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether a value is worth a default field: strings, numbers and booleans.
pub fn is_scalar(value: &Value) -> bool {
    value.is_string() || value.is_number() || value.is_boolean()
}

/// At most `max` characters (not bytes, so never a split code point), ending in `…` when cut.
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

    fn envelope() -> Value {
        json!({
            "id": "evt_1", "type": "post.published", "timestamp": "2026-11-23T15:04:05Z",
            "data": {"title": "Hi <b>", "n": 3, "tags": ["a", "b"], "author": {"name": "Ann"}, "z": null}
        })
    }

    fn fill(template: &str) -> String {
        render(template, &envelope(), str::to_owned).unwrap_or_else(|e| e.message().to_owned())
    }

    #[test]
    fn renders_placeholders() {
        assert_eq!(
            fill("New post: {{data.title}} by {{ data.author.name }}"),
            "New post: Hi <b> by Ann"
        );
        assert_eq!(
            fill("{{type}}/{{data.n}}/{{data.tags}}/{{data.tags.1}}"),
            "post.published/3/[\"a\",\"b\"]/b"
        );
        assert_eq!(
            fill("[{{data.missing}}][{{data.z}}][{{data.author}}]"),
            "[][null][{\"name\":\"Ann\"}]"
        );
        assert_eq!(fill("no placeholders } {"), "no placeholders } {");
        assert_eq!(fill("{{type}}{{id}}"), "post.publishedevt_1");
        assert_eq!(fill("ünï {{data.n}} ✓"), "ünï 3 ✓");
    }

    #[test]
    fn escapes_only_values() {
        let out = render("<{{data.title}}>", &envelope(), |v| v.replace('<', "&lt;"));
        assert_eq!(
            out.map_err(|e| e.message().to_owned()),
            Ok("<Hi &lt;b>>".to_owned())
        );
    }

    #[test]
    fn refuses_bad_templates() {
        let msg = |t: &str| {
            check("title", t)
                .err()
                .map(|e| e.message().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(msg("ok {{type}}"), "");
        assert_eq!(
            msg("{{type"),
            "`title` has an unclosed `{{` (placeholders look like `{{data.title}}`)"
        );
        assert_eq!(
            msg("a {{ }} b"),
            "`title` has a placeholder `{{}}` that is empty"
        );
        assert_eq!(
            msg("{{data..x}}"),
            "`title` has a placeholder `{{data..x}}` that has an empty segment"
        );
        assert!(fill("{{oops").starts_with("template has an unclosed"));
    }

    #[test]
    fn links() {
        let env = envelope();
        let link = |spec: &str| resolve_link(spec, &env).unwrap_or_default();
        assert_eq!(link("https://example.com/x"), "https://example.com/x");
        assert_eq!(link("https://x/{{data.author.name}}"), "https://x/Ann");
        assert_eq!(link("data.title"), "Hi <b>");
        assert_eq!(link("data.nope"), "");
        assert!(check_link("link.url", "https://x").is_ok());
        assert!(check_link("link.url", "data.url").is_ok());
        assert!(check_link("link.url", "").is_err());
        assert!(check_link("link.url", "{{x").is_err());
        assert!(
            is_http("HTTPS://X") && is_http("http://x") && !is_http("ftp://x") && !is_http("ht")
        );
        assert!(!is_http("é"), "multi-byte text near the cut must not panic");
    }

    #[test]
    fn paths() {
        let env = envelope();
        assert_eq!(lookup(&env, "data.tags.0"), Some(&json!("a")));
        assert_eq!(lookup(&env, "data.tags.9"), None);
        assert_eq!(lookup(&env, "data.n.x"), None);
        assert_eq!(last_segment("data.author.name"), "name");
        assert_eq!(last_segment("type"), "type");
        assert!(check_path("fields", "").is_err() && check_path("fields", "a.").is_err());
    }

    #[test]
    fn truncates_by_chars() {
        assert_eq!(truncate("héllo", 5), "héllo");
        assert_eq!(truncate("héllo", 4), "hél…");
        assert_eq!(truncate("🎉🎉🎉", 2), "🎉…");
        assert_eq!(truncate("abc", 1), "…");
        assert_eq!(truncate("abc", 0), "");
    }
}
