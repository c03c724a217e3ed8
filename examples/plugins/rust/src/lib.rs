//! Example Switchyard plugin in Rust: a Slack-style formatter with a skip rule and a config
//! check. The JavaScript (`examples/plugins/js`) and Python (`examples/plugins/python`)
//! examples do exactly the same, byte for byte; `tests/conformance` holds the cases all three
//! pass. The guide is `docs/plugins/rust.md`.
//!
//! Config (every key optional), e.g.
//! `{"title": "New post: {{data.title}}", "fields": ["data.author"], "skip_types": ["post.draft*"]}`:
//! - `title`: header template, default `{{type}}`;
//! - `text`: a mrkdwn section template;
//! - `fields`: envelope paths shown as `*label*` / value fields (default: up to ten top-level
//!   strings, numbers and booleans of `data`, by key);
//! - `skip_types`: event types to skip (exact, or a prefix ending in `*`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use switchyard_plugin_sdk::envelope::{envelope, rfc3339};
use switchyard_plugin_sdk::path::{last_segment, lookup};
use switchyard_plugin_sdk::text::{is_scalar, truncate, value_text};
use switchyard_plugin_sdk::{Error, Event, Outcome, Plugin, log, template};

/// The subscription's `plugin_config`, read from a JSON object only: serde would also read a
/// struct from an array, by position (`["New post"]` as a title), so the plugin takes a map
/// first ([`Plugin::Config`]) and reads this from it.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    title: Option<String>,
    text: Option<String>,
    fields: Option<Vec<String>>,
    skip_types: Vec<String>,
}

/// The incoming-webhook body: `text` (what notifications show) and the Block Kit `blocks`.
#[derive(Serialize)]
struct Message {
    text: String,
    blocks: Vec<Block>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Header {
        text: Text,
    },
    Section {
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<Text>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        fields: Vec<Text>,
    },
    Context {
        elements: Vec<Text>,
    },
}

#[derive(Clone, Serialize)]
struct Text {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    emoji: Option<bool>,
}

/// Most fields a config may list.
const MAX_FIELDS: usize = 20;

impl Config {
    /// Reads and checks the config.
    fn parse(config: Map<String, Value>) -> Result<Self, Error> {
        let config: Config = serde_json::from_value(Value::Object(config))
            .map_err(|e| Error::msg(format!("invalid plugin config: {e}")))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), Error> {
        template::check("title", self.title.as_deref().unwrap_or("{{type}}"))?;
        if let Some(text) = &self.text {
            template::check("text", text)?;
        }
        let fields = self.fields.as_deref().unwrap_or_default();
        if fields.len() > MAX_FIELDS {
            return Err(Error::msg(format!(
                "`fields` lists {} paths; at most {MAX_FIELDS}",
                fields.len()
            )));
        }
        for path in fields {
            template::check_path("fields", path)?;
        }
        if self.skip_types.iter().any(String::is_empty) {
            return Err(Error::msg("`skip_types` has an empty entry"));
        }
        Ok(())
    }
}

struct Example;

impl Plugin for Example {
    /// Any JSON object (`null`: an empty one).
    type Config = Map<String, Value>;

    fn transform(event: Event, config: Map<String, Value>) -> Result<Outcome, Error> {
        let config = Config::parse(config)?;
        let skipped = config
            .skip_types
            .iter()
            .find(|p| match p.strip_suffix('*') {
                Some(prefix) => event.event_type.starts_with(prefix),
                None => **p == event.event_type,
            });
        if let Some(pattern) = skipped {
            return Ok(Outcome::skip(format!(
                "event type `{}` matches skip_types entry `{pattern}`",
                event.event_type
            )));
        }
        let envelope = envelope(&event)?;
        let title_template = config.title.as_deref().unwrap_or("{{type}}");
        let title = template::render(title_template, &envelope, str::to_owned)?;
        let text = match &config.text {
            Some(t) => template::render(t, &envelope, escape)?,
            None => String::new(),
        };
        let mut blocks = Vec::new();
        if !title.trim().is_empty() {
            let text = Text {
                kind: "plain_text",
                text: truncate(&title, 150),
                emoji: Some(true),
            };
            blocks.push(Block::Header { text });
        }
        if !text.trim().is_empty() {
            let text = Some(mrkdwn(&text, 3000));
            blocks.push(Block::Section {
                text,
                fields: Vec::new(),
            });
        }
        let fields = fields(&envelope, config.fields.as_deref());
        for chunk in fields.chunks(10) {
            let fields = chunk.to_vec();
            blocks.push(Block::Section { text: None, fields });
        }
        let context = format!(
            "`{}` · {} · {}",
            escape(&event.event_type),
            escape(&event.id),
            rfc3339(event.timestamp)
        );
        let elements = vec![mrkdwn(&context, 3000)];
        blocks.push(Block::Context { elements });
        let title_mrkdwn = template::render(title_template, &envelope, escape)?;
        let parts: Vec<&str> = [title_mrkdwn.as_str(), text.as_str()]
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .collect();
        let fallback = if parts.is_empty() {
            escape(&event.event_type)
        } else {
            parts.join("\n")
        };
        log::info(&format!(
            "formatted {} as {} blocks",
            event.id,
            blocks.len()
        ));
        Outcome::json(&Message {
            text: truncate_mrkdwn(&fallback, 4000),
            blocks,
        })
    }

    fn validate_config(config: &Map<String, Value>) -> Result<(), Error> {
        Config::parse(config.clone()).map(drop)
    }
}

/// `*label*\nvalue` fields: the configured paths that exist, or up to ten top-level scalars of
/// `data` (by key).
fn fields(envelope: &Value, paths: Option<&[String]>) -> Vec<Text> {
    let pairs: Vec<(&str, &Value)> = match (paths, envelope.get("data")) {
        (Some(paths), _) => paths
            .iter()
            .filter_map(|p| Some((last_segment(p), lookup(envelope, p)?)))
            .collect(),
        (None, Some(Value::Object(data))) => data
            .iter()
            .filter(|(key, value)| !key.is_empty() && is_scalar(value))
            .take(10)
            .map(|(key, value)| (key.as_str(), value))
            .collect(),
        (None, _) => Vec::new(),
    };
    pairs
        .into_iter()
        .map(|(label, value)| {
            let value = value_text(value);
            let value = if value.trim().is_empty() {
                "—"
            } else {
                &value
            };
            mrkdwn(&format!("*{}*\n{}", escape(label), escape(value)), 2000)
        })
        .collect()
}

/// A Slack mrkdwn text object, cut to `max` characters.
fn mrkdwn(text: &str, max: usize) -> Text {
    Text {
        kind: "mrkdwn",
        text: truncate_mrkdwn(text, max),
        emoji: None,
    }
}

/// Escapes the three characters Slack treats as markup (`&` first).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// [`truncate`] that never leaves half an entity (`&am…`).
fn truncate_mrkdwn(text: &str, max: usize) -> String {
    let cut = truncate(text, max);
    let Some(kept) = cut.strip_suffix('…').filter(|_| cut != text) else {
        return cut;
    };
    let (before, tail) = kept.rsplit_once('&').unwrap_or((kept, ";"));
    if tail.len() < 8 && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '#') {
        format!("{before}…")
    } else {
        cut
    }
}

switchyard_plugin_sdk::export_plugin!(Example);
