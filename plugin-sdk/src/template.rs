//! `{{path}}` templates: how config text pulls values out of the [envelope](crate::envelope).
//!
//! A placeholder `{{path}}` (spaces around the path allowed) is replaced by the value at that
//! [dot path](crate::path): strings raw, any other JSON compact ([`value_text`]), a missing
//! value as nothing. Everything outside placeholders is copied as is; a lone `{` or `}` is
//! plain text. Only substituted values go through the caller's `escape`, so a template's own
//! markup (a Slack `<url|label>`, a Discord `@here`) survives while event data cannot inject
//! any.
//!
//! Check templates in [`Plugin::validate_config`](crate::Plugin::validate_config) with
//! [`check`] so a broken one is refused when the subscription is saved, not at delivery.
//!
//! ```
//! use serde_json::json;
//! use switchyard_plugin_sdk::template;
//!
//! let envelope = json!({"type": "post.published", "data": {"title": "<b>Hi</b>", "n": 3}});
//! let html = |text: &str| text.replace('<', "&lt;").replace('>', "&gt;");
//! assert_eq!(
//!     template::render("<i>{{ data.title }}</i> ({{data.n}}{{data.nope}})", &envelope, html)?,
//!     "<i>&lt;b&gt;Hi&lt;/b&gt;</i> (3)"
//! );
//! assert!(template::check("title", "{{data.title").is_err());
//! # Ok::<(), switchyard_plugin_sdk::Error>(())
//! ```
//!
//! A *link* is a config value that may be a template, a literal `http(s)://` URL or a dot path
//! to a URL in the event: see [`check_link`] and [`resolve_link`].

use serde_json::Value;

use crate::Error;
use crate::path::{self, lookup};
use crate::text::value_text;

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
        path::validate(path)
            .map_err(|why| format!("has a placeholder `{{{{{path}}}}}` that {why}"))?;
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

/// Check a dot path in config key `key`, worded like the other checks here (where
/// [`path::check`] says ``empty path in `key` `` for `""`).
///
/// # Errors
/// ``path `` in `key` is empty`` or ``path `a..b` in `key` has an empty segment``.
pub fn check_path(key: &str, path: &str) -> Result<(), Error> {
    path::validate(path).map_err(|why| Error::msg(format!("path `{path}` in `{key}` {why}")))
}

/// Check a link in config key `key`: a value containing `{{` is a template, one starting with
/// `http://` or `https://` a literal URL, anything else a dot path.
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

/// Fill a template from `envelope`, passing each substituted value through `escape`: a
/// function or a closure that captures nothing (`str::to_owned` for no escaping).
///
/// # Errors
/// When the template does not parse (a config that skipped [`check`]).
pub fn render(
    template: &str,
    envelope: &Value,
    escape: fn(&str) -> String,
) -> Result<String, Error> {
    let pieces = parse(template).map_err(|why| Error::msg(format!("template {why}")))?;
    // Into one string: literal text is copied, not allocated piece by piece.
    let mut out = String::with_capacity(template.len());
    for piece in &pieces {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Field(path) => out.push_str(&escape(
                &lookup(envelope, path).map(value_text).unwrap_or_default(),
            )),
        }
    }
    Ok(out)
}

/// Resolve a link (see [`check_link`]) against `envelope`, trimmed; `""` when its path is
/// missing. Substituted values are not escaped, and the result is not checked to be a URL:
/// see [`is_http`].
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

/// Whether `url` starts with `http://` or `https://` (in any case): something a chat service
/// accepts as a link.
pub fn is_http(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
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
    fn checks_paths() {
        let msg = |path: &str| check_path("fields", path).map_err(|e| e.message().to_owned());
        assert_eq!(msg("data.title"), Ok(()));
        assert_eq!(msg(""), Err("path `` in `fields` is empty".to_owned()));
        assert_eq!(
            msg("a."),
            Err("path `a.` in `fields` has an empty segment".to_owned())
        );
    }
}
