//! The reshaping itself: `pick`, then `drop`, then `rename`, then `set`, on a JSON value.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use switchyard_plugin_sdk::Error;
use switchyard_plugin_sdk::path::{check as check_path, lookup_mut};

/// Top-level keys of the envelope, for catching `pick: ["title"]` meant as `data.title`.
const ENVELOPE_KEYS: [&str; 4] = ["id", "type", "timestamp", "data"];

/// The subscription's `plugin_config`; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// What the paths are relative to, and what the output starts from.
    pub root: Root,
    /// Keep only these paths (nesting preserved); `None` keeps everything.
    pub pick: Option<Vec<String>>,
    /// Remove these paths, in order.
    pub drop: Vec<String>,
    /// Move values from one path to another, in key order.
    pub rename: BTreeMap<String, String>,
    /// Write constants, in key order.
    pub set: Map<String, Value>,
}

/// The value a reshape starts from.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Root {
    /// `{"id", "type", "timestamp", "data"}`.
    #[default]
    Envelope,
    /// The event's `data` alone.
    Data,
}

impl Config {
    /// Semantic checks serde cannot express, so a bad config is a 422 instead of failed
    /// deliveries.
    ///
    /// # Errors
    /// A message naming the offending key and path.
    pub fn check(&self) -> Result<(), Error> {
        if let Some(paths) = &self.pick {
            if paths.is_empty() {
                return Err(Error::msg("`pick` is empty: omit it to keep every field"));
            }
            paths
                .iter()
                .try_for_each(|p| self.check_source("pick", p))?;
        }
        self.drop
            .iter()
            .try_for_each(|p| self.check_source("drop", p))?;
        self.rename
            .iter()
            .try_for_each(|(from, to)| check_rename(from, to))?;
        self.set.keys().try_for_each(|p| check_path("set", p))
    }

    /// A path read from the input: well formed, and inside the envelope when that is the root.
    fn check_source(&self, key: &str, path: &str) -> Result<(), Error> {
        check_path(key, path)?;
        let first = path.split('.').next().unwrap_or_default();
        if self.root == Root::Envelope && !ENVELOPE_KEYS.contains(&first) {
            return Err(Error::msg(format!(
                "`{key}` path `{path}` is not in the envelope (id, type, timestamp, data): \
                 did you mean `data.{path}`, or \"root\": \"data\"?"
            )));
        }
        Ok(())
    }
}

/// Refuse a rename into its own source: the value would be removed and then written below
/// the place it was just removed from.
fn check_rename(from: &str, to: &str) -> Result<(), Error> {
    check_path("rename", from)?;
    check_path("rename", to)?;
    if to == from {
        return Err(Error::msg(format!("`rename` moves `{from}` to itself")));
    }
    if to.starts_with(&format!("{from}.")) {
        return Err(Error::msg(format!(
            "`rename` target `{to}` is inside its source `{from}`"
        )));
    }
    Ok(())
}

/// Apply the config to `root`, in the documented order.
///
/// # Errors
/// When `rename` or `set` must write through a string, number or boolean.
pub fn reshape(root: Value, config: &Config) -> Result<Value, Error> {
    let mut value = match &config.pick {
        Some(paths) => pick(&root, paths),
        None => root,
    };
    for path in &config.drop {
        remove(&mut value, path);
    }
    for (from, to) in &config.rename {
        rename(&mut value, from, to)?;
    }
    for (path, constant) in &config.set {
        set(&mut value, path, constant.clone())?;
    }
    Ok(value)
}

/// A copy of `root` holding only `paths`; `{}` when none of them exist.
fn pick(root: &Value, paths: &[String]) -> Value {
    let mut tree = PathTree::default();
    paths.iter().for_each(|p| tree.insert(p));
    tree.project(root)
        .unwrap_or_else(|| Value::Object(Map::new()))
}

/// The picked paths as a tree, so several paths under one object share one copy of it.
#[derive(Debug, Default)]
struct PathTree {
    /// A picked path ends here: keep the whole value.
    whole: bool,
    /// Deeper picked paths, by segment.
    children: BTreeMap<String, PathTree>,
}

impl PathTree {
    /// Add a dot path.
    fn insert(&mut self, path: &str) {
        let node = path.split('.').fold(self, |node, segment| {
            node.children.entry(segment.to_owned()).or_default()
        });
        node.whole = true;
    }

    /// The parts of `value` this tree covers, `None` when there are none. Picked array
    /// elements keep their relative order but close ranks (`items.2` alone becomes `[x]`).
    fn project(&self, value: &Value) -> Option<Value> {
        if self.whole {
            return Some(value.clone());
        }
        match value {
            Value::Object(map) => {
                let kept: Map<String, Value> = self
                    .children
                    .iter()
                    .filter_map(|(key, child)| Some((key.clone(), child.project(map.get(key)?)?)))
                    .collect();
                (!kept.is_empty()).then_some(Value::Object(kept))
            }
            Value::Array(items) => {
                let kept: Vec<Value> = items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, item)| self.children.get(&i.to_string())?.project(item))
                    .collect();
                (!kept.is_empty()).then_some(Value::Array(kept))
            }
            _ => None,
        }
    }
}

/// Move the value at `from` to `to`, then remove objects the move left empty (renaming
/// `author.name` to `author` should not leave `"author": {}` behind). A missing source is a
/// no-op.
fn rename(root: &mut Value, from: &str, to: &str) -> Result<(), Error> {
    let Some(value) = remove(root, from) else {
        return Ok(());
    };
    prune_empty_parents(root, from);
    set(root, to, value)
}

/// Remove the objects on the way to `path` that are now empty, deepest first.
fn prune_empty_parents(root: &mut Value, path: &str) {
    let mut path = path;
    while let Some((parent, _)) = path.rsplit_once('.') {
        let emptied =
            lookup_mut(root, parent).is_some_and(|v| v.as_object().is_some_and(Map::is_empty));
        if !emptied {
            break;
        }
        remove(root, parent);
        path = parent;
    }
}

/// Remove and return the value at `path`; an array element removal shifts the later ones.
fn remove(root: &mut Value, path: &str) -> Option<Value> {
    let (parent, last) = match path.rsplit_once('.') {
        Some((parent, last)) => (lookup_mut(root, parent)?, last),
        None => (root, path),
    };
    match parent {
        Value::Object(map) => map.remove(last),
        Value::Array(items) => {
            let index = last.parse::<usize>().ok().filter(|&i| i < items.len())?;
            Some(items.remove(index))
        }
        _ => None,
    }
}

/// Write `value` at `path`, turning missing or `null` steps into objects.
///
/// # Errors
/// When the path runs through a scalar or past the end of an array: overwriting data the
/// config did not name would be worse than failing the delivery.
fn set(root: &mut Value, path: &str, value: Value) -> Result<(), Error> {
    let segments: Vec<&str> = path.split('.').collect();
    set_in(root, &segments, value)
        .map_err(|why| Error::msg(format!("cannot write `{path}`: {why}")))
}

/// [`set`] below `node`, one segment at a time.
fn set_in(node: &mut Value, segments: &[&str], value: Value) -> Result<(), String> {
    let Some((segment, rest)) = segments.split_first() else {
        *node = value;
        return Ok(());
    };
    if node.is_null() {
        *node = Value::Object(Map::new());
    }
    let child = match node {
        Value::Object(map) => map.entry(*segment).or_insert(Value::Null),
        Value::Array(items) => segment
            .parse::<usize>()
            .ok()
            .and_then(|i| items.get_mut(i))
            .ok_or_else(|| format!("`{segment}` is not an index of the array there"))?,
        other => return Err(format!("`{segment}` would go inside {}", kind(other))),
    };
    set_in(child, rest, value)
}

/// "a string", "a number"… for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: Value) -> Config {
        match serde_json::from_value(value) {
            Ok(config) => config,
            Err(e) => panic!("bad test config: {e}"),
        }
    }

    /// Check and apply `cfg` to `input`.
    fn run(cfg: Value, input: Value) -> Result<Value, String> {
        let cfg = config(cfg);
        cfg.check().map_err(|e| e.message().to_owned())?;
        reshape(input, &cfg).map_err(|e| e.message().to_owned())
    }

    fn refused(cfg: Value) -> String {
        config(cfg)
            .check()
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default()
    }

    fn post() -> Value {
        json!({"title": "Hi", "author": {"name": "Ann", "id": 7}, "url": "https://x", "draft": false})
    }

    #[test]
    fn spec_example() {
        let cfg = json!({
            "root": "data",
            "pick": ["title", "author.name", "url"],
            "rename": {"author.name": "author"},
            "set": {"source": "switchyard"}
        });
        assert_eq!(
            run(cfg, post()),
            Ok(json!({"title": "Hi", "author": "Ann", "url": "https://x", "source": "switchyard"}))
        );
    }

    #[test]
    fn empty_config_is_identity() {
        assert_eq!(run(json!({}), post()), Ok(post()));
        assert_eq!(run(json!({}), json!(5)), Ok(json!(5)));
    }

    #[test]
    fn pick_preserves_nesting() {
        assert_eq!(
            run(
                json!({"root": "data", "pick": ["author.name", "missing", "title.deeper"]}),
                post()
            ),
            Ok(json!({"author": {"name": "Ann"}}))
        );
        assert_eq!(
            run(
                json!({"root": "data", "pick": ["author", "author.name"]}),
                post()
            ),
            Ok(json!({"author": {"name": "Ann", "id": 7}})),
            "a whole pick wins over a deeper one"
        );
        assert_eq!(
            run(json!({"root": "data", "pick": ["nothing.here"]}), post()),
            Ok(json!({}))
        );
        assert_eq!(
            run(json!({"root": "data", "pick": ["author.nope"]}), post()),
            Ok(json!({})),
            "an object none of whose picked keys exist is absent"
        );
    }

    #[test]
    fn pick_indexes_arrays() {
        let data = json!({"items": [{"sku": "a", "n": 1}, {"sku": "b", "n": 2}, {"sku": "c"}]});
        assert_eq!(
            run(
                json!({"root": "data", "pick": ["items.2.sku", "items.0.sku", "items.9"]}),
                data
            ),
            Ok(json!({"items": [{"sku": "a"}, {"sku": "c"}]}))
        );
    }

    #[test]
    fn envelope_root() {
        let envelope =
            json!({"id": "evt_1", "type": "post.published", "timestamp": "t", "data": post()});
        assert_eq!(
            run(
                json!({"pick": ["type", "data.author.name"], "drop": ["data.author.id"]}),
                envelope
            ),
            Ok(json!({"type": "post.published", "data": {"author": {"name": "Ann"}}}))
        );
    }

    #[test]
    fn drop_removes_paths() {
        assert_eq!(
            run(
                json!({"root": "data", "drop": ["draft", "author.id", "missing", "url.x"]}),
                post()
            ),
            Ok(json!({"title": "Hi", "author": {"name": "Ann"}, "url": "https://x"}))
        );
        assert_eq!(
            run(
                json!({"root": "data", "drop": ["author.name", "author.id"]}),
                post()
            ),
            Ok(json!({"title": "Hi", "author": {}, "url": "https://x", "draft": false})),
            "drop removes exactly what it names"
        );
        assert_eq!(
            run(
                json!({"root": "data", "drop": ["0", "0", "7"]}),
                json!([1, 2, 3])
            ),
            Ok(json!([3])),
            "indexes refer to the array as each drop finds it"
        );
    }

    #[test]
    fn rename_moves_values() {
        assert_eq!(
            run(
                json!({"root": "data", "rename": {"author.name": "by.name", "nope": "x"}}),
                post()
            ),
            Ok(json!({
                "title": "Hi", "author": {"id": 7}, "by": {"name": "Ann"},
                "url": "https://x", "draft": false
            }))
        );
        assert_eq!(
            run(
                json!({"root": "data", "rename": {"a.b.c": "d"}}),
                json!({"a": {"b": {"c": 1}}, "k": 0})
            ),
            Ok(json!({"d": 1, "k": 0})),
            "every object the move emptied goes"
        );
        assert_eq!(
            run(
                json!({"root": "data", "rename": {"a.b": "a"}}),
                json!({"a": {"b": 1, "c": 2}})
            ),
            Ok(json!({"a": 1})),
            "a target above the source replaces it"
        );
        assert_eq!(
            run(
                json!({"root": "data", "rename": {"list.1": "second"}}),
                json!({"list": [1, 2, 3]})
            ),
            Ok(json!({"list": [1, 3], "second": 2}))
        );
        assert_eq!(
            run(
                json!({"root": "data", "rename": {"x": "list.1"}}),
                json!({"x": 9, "list": [1, 2]})
            ),
            Ok(json!({"list": [1, 9]}))
        );
    }

    #[test]
    fn set_writes_constants() {
        assert_eq!(
            run(
                json!({"root": "data", "set": {"meta.source": "sy", "title": {"a": [1]}}}),
                post()
            ),
            Ok(json!({
                "title": {"a": [1]}, "author": {"name": "Ann", "id": 7},
                "url": "https://x", "draft": false, "meta": {"source": "sy"}
            }))
        );
        assert_eq!(
            run(json!({"root": "data", "set": {"a.b": true}}), json!(null)),
            Ok(json!({"a": {"b": true}})),
            "null data becomes an object"
        );
        assert_eq!(
            run(
                json!({"root": "data", "set": {"x.y": 1}}),
                json!({"x": null})
            ),
            Ok(json!({"x": {"y": 1}}))
        );
    }

    #[test]
    fn writing_through_scalars_fails() {
        assert_eq!(
            run(json!({"root": "data", "set": {"x": 1}}), json!(5)),
            Err("cannot write `x`: `x` would go inside a number".to_owned())
        );
        assert_eq!(
            run(json!({"root": "data", "set": {"title.x": 1}}), post()),
            Err("cannot write `title.x`: `x` would go inside a string".to_owned())
        );
        assert_eq!(
            run(json!({"root": "data", "set": {"l.5": 1}}), json!({"l": []})),
            Err("cannot write `l.5`: `5` is not an index of the array there".to_owned())
        );
        assert!(
            run(
                json!({"root": "data", "rename": {"a": "b.c"}}),
                json!({"a": 1, "b": "s"})
            )
            .is_err()
        );
    }

    #[test]
    fn odd_data_roots() {
        for data in [json!(5), json!(null), json!("s"), json!([1])] {
            assert_eq!(
                run(json!({"root": "data", "pick": ["a"]}), data.clone()),
                Ok(json!({}))
            );
            assert_eq!(
                run(json!({"root": "data", "drop": ["a.b"]}), data.clone()),
                Ok(data.clone())
            );
            assert_eq!(
                run(json!({"root": "data", "rename": {"a": "b"}}), data.clone()),
                Ok(data)
            );
        }
    }

    #[test]
    fn refuses_bad_configs() {
        assert_eq!(
            refused(json!({"pick": []})),
            "`pick` is empty: omit it to keep every field"
        );
        assert_eq!(refused(json!({"drop": [""]})), "empty path in `drop`");
        assert_eq!(
            refused(json!({"root": "data", "pick": ["a..b"]})),
            "path `a..b` in `pick` has an empty segment"
        );
        assert_eq!(
            refused(json!({"set": {"a.": 1}})),
            "path `a.` in `set` has an empty segment"
        );
        assert_eq!(
            refused(json!({"rename": {"": "x"}})),
            "empty path in `rename`"
        );
        assert_eq!(
            refused(json!({"rename": {"x": ""}})),
            "empty path in `rename`"
        );
        assert_eq!(
            refused(json!({"rename": {"data.a": "data.a.b"}})),
            "`rename` target `data.a.b` is inside its source `data.a`"
        );
        assert_eq!(
            refused(json!({"rename": {"data.a": "data.a"}})),
            "`rename` moves `data.a` to itself"
        );
        assert_eq!(
            refused(json!({"rename": {"data.a": "data.ab"}})),
            "",
            "a sibling is fine"
        );
        assert_eq!(
            refused(json!({"pick": ["title"]})),
            "`pick` path `title` is not in the envelope (id, type, timestamp, data): \
             did you mean `data.title`, or \"root\": \"data\"?"
        );
        assert!(refused(json!({"drop": ["draft"]})).starts_with("`drop` path `draft`"));
        assert_eq!(refused(json!({"root": "data", "pick": ["title"]})), "");
        assert_eq!(
            refused(json!({"set": {"source": 1}, "rename": {"data.x": "x"}})),
            "",
            "writes may add keys"
        );
    }

    #[test]
    fn config_parsing() {
        assert!(serde_json::from_value::<Config>(json!({"picks": []})).is_err());
        assert!(serde_json::from_value::<Config>(json!({"root": "body"})).is_err());
        assert!(serde_json::from_value::<Config>(json!({"rename": {"a": 1}})).is_err());
    }
}
