//! Dot paths into JSON: `data.author.name`, `data.items.0.sku`.
//!
//! A path is a `.`-separated list of segments. A segment names an object's key, or indexes an
//! array when it is a number (`0`, `1`, …); there is no escaping, so a key containing `.`
//! cannot be named. Paths are how plugin configs point into the [envelope](crate::envelope)
//! (`type`, `id`, `timestamp`, `data.…`).
//!
//! ```
//! use serde_json::json;
//! use switchyard_plugin_sdk::path;
//!
//! let value = json!({"data": {"items": [{"sku": "A-1"}]}});
//! assert_eq!(path::lookup(&value, "data.items.0.sku"), Some(&json!("A-1")));
//! assert_eq!(path::lookup(&value, "data.items.1.sku"), None);
//! assert_eq!(path::last_segment("data.items.0.sku"), "sku");
//! assert!(path::check("fields", "data..sku").is_err());
//! ```

use std::fmt;

use serde_json::Value;

use crate::Error;

/// The value at a dot path; a numeric segment indexes an array. `None` when a step is
/// missing, out of range, or goes through a string, number, boolean or `null`.
pub fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        })
}

/// [`lookup`], mutably.
pub fn lookup_mut<'a>(root: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    path.split('.')
        .try_fold(root, |value, segment| match value {
            Value::Object(map) => map.get_mut(segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        })
}

/// The last segment of a dot path (the whole path when it has no `.`): a natural label for the
/// value it names.
pub fn last_segment(path: &str) -> &str {
    path.rsplit('.').next().unwrap_or(path)
}

/// Why a path can never name a field (see [`validate`]). Displays as the end of a sentence
/// about the path: "is empty", "has an empty segment".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// `""`.
    Empty,
    /// `data.`, `.data`, `data..title`.
    EmptySegment,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Empty => "is empty",
            PathError::EmptySegment => "has an empty segment",
        })
    }
}

impl std::error::Error for PathError {}

/// Refuse paths that can never name a field: `""`, `data.`, `data..title`. Anything else is
/// well formed, whether or not a given value has it.
///
/// # Errors
/// The [`PathError`] saying what is wrong, for a message of your own wording; [`check`] words
/// one for a config key.
pub fn validate(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        Err(PathError::Empty)
    } else if path.split('.').any(str::is_empty) {
        Err(PathError::EmptySegment)
    } else {
        Ok(())
    }
}

/// [`validate`] a path found in config key `key`, with a message fit for
/// [`Plugin::validate_config`](crate::Plugin::validate_config).
///
/// # Errors
/// ``empty path in `key` `` or ``path `data..x` in `key` has an empty segment``.
pub fn check(key: &str, path: &str) -> Result<(), Error> {
    match validate(path) {
        Ok(()) => Ok(()),
        Err(PathError::Empty) => Err(Error::msg(format!("empty path in `{key}`"))),
        Err(PathError::EmptySegment) => Err(Error::msg(format!(
            "path `{path}` in `{key}` has an empty segment"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value() -> Value {
        json!({
            "type": "post.published",
            "data": {"n": 3, "tags": ["a", "b"], "author": {"name": "Ann"}, "z": null, "": 1}
        })
    }

    #[test]
    fn looks_up() {
        let value = value();
        assert_eq!(lookup(&value, "type"), Some(&json!("post.published")));
        assert_eq!(lookup(&value, "data.author.name"), Some(&json!("Ann")));
        assert_eq!(lookup(&value, "data.tags.0"), Some(&json!("a")));
        assert_eq!(lookup(&value, "data.z"), Some(&Value::Null));
        assert_eq!(lookup(&value, "data.tags.9"), None);
        assert_eq!(lookup(&value, "data.tags.-1"), None);
        assert_eq!(lookup(&value, "data.tags.x"), None);
        assert_eq!(lookup(&value, "data.n.x"), None);
        assert_eq!(lookup(&value, "data.z.x"), None);
        assert_eq!(lookup(&value, "data.missing"), None);
        assert_eq!(lookup(&json!(["x"]), "0"), Some(&json!("x")));
        assert_eq!(lookup(&json!({"0": "x"}), "0"), Some(&json!("x")));
    }

    #[test]
    fn looks_up_mutably() {
        let mut value = value();
        if let Some(name) = lookup_mut(&mut value, "data.author.name") {
            *name = json!("Bo");
        }
        if let Some(tag) = lookup_mut(&mut value, "data.tags.1") {
            *tag = json!("c");
        }
        assert_eq!(value["data"]["author"]["name"], json!("Bo"));
        assert_eq!(value["data"]["tags"], json!(["a", "c"]));
        assert!(lookup_mut(&mut value, "data.tags.2").is_none());
        assert!(lookup_mut(&mut value, "data.n.x").is_none());
    }

    #[test]
    fn last_segments() {
        assert_eq!(last_segment("data.author.name"), "name");
        assert_eq!(last_segment("type"), "type");
        assert_eq!(last_segment("data."), "");
    }

    #[test]
    fn validates() {
        assert_eq!(validate("data.tags.0"), Ok(()));
        assert_eq!(validate(""), Err(PathError::Empty));
        for bad in ["a.", ".a", "a..b", "."] {
            assert_eq!(validate(bad), Err(PathError::EmptySegment), "{bad}");
        }
        let msg = |path: &str| check("pick", path).map_err(|e| e.message().to_owned());
        assert_eq!(msg("a.b"), Ok(()));
        assert_eq!(msg(""), Err("empty path in `pick`".to_owned()));
        assert_eq!(
            msg("a..b"),
            Err("path `a..b` in `pick` has an empty segment".to_owned())
        );
        assert_eq!(
            Error::from(PathError::Empty).message(),
            "is empty",
            "converts for `?`"
        );
    }
}
