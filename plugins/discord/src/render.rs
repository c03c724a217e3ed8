//! Building the Discord webhook body: one embed within Discord's limits.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_plugin_sdk::envelope::{envelope, rfc3339};
use switchyard_plugin_sdk::path::{last_segment, lookup};
use switchyard_plugin_sdk::template;
use switchyard_plugin_sdk::text::{is_scalar, truncate, value_text};
use switchyard_plugin_sdk::{Error, Event};

/// The title when the config sets none.
const DEFAULT_TITLE: &str = "{{type}}";
/// Discord's blurple.
const DEFAULT_COLOR: i64 = 0x58_65F2;
/// Largest RGB colour.
const MAX_COLOR: i64 = 0xFF_FFFF;
/// Discord's limits, in characters.
const TITLE_MAX: usize = 256;
const DESCRIPTION_MAX: usize = 4096;
const FIELDS_MAX: usize = 25;
const FIELD_NAME_MAX: usize = 256;
const FIELD_VALUE_MAX: usize = 1024;
const FOOTER_MAX: usize = 2048;
const CONTENT_MAX: usize = 2000;
const USERNAME_MAX: usize = 80;
/// Discord's cap on title + description + field names and values + footer of an embed.
const EMBED_TOTAL_MAX: usize = 6000;

/// The subscription's `plugin_config`; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Embed title template; `{{type}}` when absent, no title when it renders blank.
    pub title: Option<String>,
    /// Embed description template (Discord markdown).
    pub description: Option<String>,
    /// Title link: a URL template, a literal `http(s)://` URL, or an envelope path.
    pub url: Option<String>,
    /// Embed colour, `0..=0xFFFFFF`. Signed so a negative value gets this plugin's message.
    pub color: Option<i64>,
    /// Envelope paths shown as fields; `None` shows `data`'s top-level scalars.
    pub fields: Option<Vec<String>>,
    /// Whether fields sit side by side (default `true`).
    pub inline: Option<bool>,
    /// Overrides the webhook's name.
    pub username: Option<String>,
    /// Message text template above the embed; the only place mentions ping.
    pub content: Option<String>,
}

impl Config {
    /// Semantic checks serde cannot express, so a bad config is a 422 up front.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn check(&self) -> Result<(), Error> {
        template::check("title", self.title.as_deref().unwrap_or(DEFAULT_TITLE))?;
        for (key, value) in [
            ("description", &self.description),
            ("content", &self.content),
        ] {
            value
                .as_deref()
                .map_or(Ok(()), |t| template::check(key, t))?;
        }
        if let Some(url) = &self.url {
            template::check_link("url", url)?;
        }
        self.color()?;
        if let Some(paths) = &self.fields {
            if paths.len() > FIELDS_MAX {
                let n = paths.len();
                return Err(Error::msg(format!(
                    "`fields` lists {n} paths; Discord allows at most {FIELDS_MAX}"
                )));
            }
            paths
                .iter()
                .try_for_each(|p| template::check_path("fields", p))?;
        }
        self.username.as_deref().map_or(Ok(()), check_username)
    }

    /// The embed colour.
    ///
    /// # Errors
    /// When the configured colour is outside `0..=0xFFFFFF`.
    fn color(&self) -> Result<u32, Error> {
        let color = self.color.unwrap_or(DEFAULT_COLOR);
        u32::try_from(color)
            .ok()
            .filter(|_| color <= MAX_COLOR)
            .ok_or_else(|| {
                Error::msg(format!(
                    "`color` must be between 0 and 16777215 (0xFFFFFF), got {color}"
                ))
            })
    }
}

/// Discord refuses (400) a webhook username that is blank, too long, or mentions Discord or
/// Clyde; refusing it here beats failing every delivery.
fn check_username(name: &str) -> Result<(), Error> {
    let lower = name.to_lowercase();
    let why = if name.trim().is_empty() {
        "must not be blank"
    } else if name.chars().count() > USERNAME_MAX {
        "is longer than 80 characters"
    } else if lower.contains("discord") || lower.contains("clyde") {
        "may not contain \"discord\" or \"clyde\" (Discord refuses it)"
    } else {
        return Ok(());
    };
    Err(Error::msg(format!("`username` {why}")))
}

/// A webhook body.
#[derive(Debug, Serialize)]
pub struct Message {
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    embeds: Vec<Embed>,
}

/// The one embed.
#[derive(Debug, Serialize)]
struct Embed {
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    color: u32,
    fields: Vec<Field>,
    timestamp: String,
    footer: Footer,
}

/// An embed field.
#[derive(Debug, Serialize)]
struct Field {
    name: String,
    value: String,
    inline: bool,
}

/// The embed footer.
#[derive(Debug, Serialize)]
struct Footer {
    text: String,
}

/// A message plus notes for the log (things left out, and why).
#[derive(Debug)]
pub struct Rendered {
    /// The body to deliver.
    pub message: Message,
    /// Lines worth a `log::warn` in a dry run.
    pub warnings: Vec<String>,
}

/// Build the message for `event`.
///
/// # Errors
/// When the payload is not JSON, a template does not parse or the colour is out of range.
pub fn render(event: &Event, config: &Config) -> Result<Rendered, Error> {
    let envelope = envelope(event)?;
    let mut warnings = Vec::new();
    let title_template = config.title.as_deref().unwrap_or(DEFAULT_TITLE);
    let mut embed = Embed {
        title: non_blank(
            template::render(title_template, &envelope, str::to_owned)?,
            TITLE_MAX,
        ),
        description: optional(
            config.description.as_deref(),
            &envelope,
            str::to_owned,
            DESCRIPTION_MAX,
        )?,
        url: url(config.url.as_deref(), &envelope, &mut warnings)?,
        color: config.color()?,
        fields: fields(&envelope, config),
        timestamp: rfc3339(event.timestamp),
        footer: Footer {
            text: truncate(&format!("{} · {}", event.event_type, event.id), FOOTER_MAX),
        },
    };
    fit_total(&mut embed, &mut warnings);
    let message = Message {
        username: config
            .username
            .as_deref()
            .map(|name| truncate(name, USERNAME_MAX)),
        content: optional(
            config.content.as_deref(),
            &envelope,
            defuse_mentions,
            CONTENT_MAX,
        )?,
        embeds: vec![embed],
    };
    Ok(Rendered { message, warnings })
}

/// Render an optional template; blank results are left out (Discord rejects empty strings).
fn optional(
    template: Option<&str>,
    envelope: &Value,
    escape: fn(&str) -> String,
    max: usize,
) -> Result<Option<String>, Error> {
    let Some(template) = template else {
        return Ok(None);
    };
    Ok(non_blank(
        template::render(template, envelope, escape)?,
        max,
    ))
}

/// `text` truncated to `max`, or `None` when blank.
fn non_blank(text: String, max: usize) -> Option<String> {
    (!text.trim().is_empty()).then(|| truncate(&text, max))
}

/// The title link, or `None` when this event has none (quietly) or Discord would refuse it
/// (with a warning: Discord rejects the whole message over one bad URL).
fn url(
    spec: Option<&str>,
    envelope: &Value,
    warnings: &mut Vec<String>,
) -> Result<Option<String>, Error> {
    let Some(spec) = spec else { return Ok(None) };
    let url = template::resolve_link(spec, envelope)?;
    if url.is_empty() {
        return Ok(None);
    }
    if !template::is_http(&url) {
        warnings.push(format!(
            "url `{}` is not an http(s) URL: left out",
            truncate(&url, 100)
        ));
        return Ok(None);
    }
    Ok(Some(url))
}

/// The fields: the configured paths that exist, or by default up to 25 top-level strings,
/// numbers and booleans of `data` (alphabetical).
fn fields(envelope: &Value, config: &Config) -> Vec<Field> {
    let pairs: Vec<(&str, &Value)> = match &config.fields {
        Some(paths) => paths
            .iter()
            .filter_map(|p| Some((last_segment(p), lookup(envelope, p)?)))
            .collect(),
        None => match envelope.get("data") {
            Some(Value::Object(data)) => data
                .iter()
                .filter(|(key, value)| !key.trim().is_empty() && is_scalar(value))
                .take(FIELDS_MAX)
                .map(|(key, value)| (key.as_str(), value))
                .collect(),
            _ => Vec::new(),
        },
    };
    let inline = config.inline.unwrap_or(true);
    pairs
        .into_iter()
        .map(|(name, value)| {
            let value = value_text(value);
            let value = if value.trim().is_empty() {
                "—".to_owned()
            } else {
                truncate(&value, FIELD_VALUE_MAX)
            };
            Field {
                name: truncate(name, FIELD_NAME_MAX),
                value,
                inline,
            }
        })
        .collect()
}

/// Keep the embed within Discord's 6000-character total: shorten the description first, then
/// drop fields from the end (title and footer alone stay well below the cap).
fn fit_total(embed: &mut Embed, warnings: &mut Vec<String>) {
    let chars = |text: &str| text.chars().count();
    let fixed = |embed: &Embed| {
        embed.title.as_deref().map_or(0, chars)
            + chars(&embed.footer.text)
            + embed
                .fields
                .iter()
                .map(|f| chars(&f.name) + chars(&f.value))
                .sum::<usize>()
    };
    let room = EMBED_TOTAL_MAX.saturating_sub(fixed(embed));
    if let Some(description) = embed.description.take() {
        embed.description = (room > 0).then(|| truncate(&description, room));
    }
    let fields = embed.fields.len();
    while fixed(embed) > EMBED_TOTAL_MAX && embed.fields.pop().is_some() {}
    if embed.fields.len() < fields {
        let dropped = fields - embed.fields.len();
        warnings.push(format!(
            "{dropped} fields left out to stay within Discord's 6000 characters"
        ));
    }
}

/// Break `@everyone`, `@here` and `<@id>` mentions in substituted values with a zero-width
/// space, so event data cannot ping a server; mentions written in the template still work.
fn defuse_mentions(text: &str) -> String {
    text.replace('@', "@\u{200B}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: Value) -> Event {
        Event {
            id: "evt_01J".into(),
            event_type: "order.created".into(),
            timestamp: 1_795_446_245,
            subscription_id: "sub_1".into(),
            payload: data.to_string(),
        }
    }

    fn config(value: Value) -> Config {
        match serde_json::from_value(value) {
            Ok(config) => config,
            Err(e) => panic!("bad test config: {e}"),
        }
    }

    /// Check the config, render, and return the body as JSON plus the warnings.
    fn run(cfg: Value, data: Value) -> (Value, Vec<String>) {
        let cfg = config(cfg);
        let rendered = cfg.check().and_then(|()| render(&event(data), &cfg));
        match rendered.and_then(|r| Ok((serde_json::to_value(&r.message)?, r.warnings))) {
            Ok(out) => out,
            Err(e) => panic!("render failed: {}", e.message()),
        }
    }

    fn embed(cfg: Value, data: Value) -> Value {
        run(cfg, data).0["embeds"][0].clone()
    }

    fn refused(cfg: Value) -> String {
        config(cfg)
            .check()
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default()
    }

    fn len(value: &Value) -> usize {
        value.as_str().map_or(0, |s| s.chars().count())
    }

    #[test]
    fn readme_example() -> Result<(), Error> {
        let cfg = config(json!({
            "username": "Shop",
            "content": "New order from {{data.customer.name}}",
            "title": "Order {{data.number}}",
            "description": "**{{data.total}} {{data.currency}}**, {{data.items}} items",
            "url": "https://shop.example/orders/{{data.number}}",
            "color": 3_066_993,
            "fields": ["data.customer.name", "data.country", "data.paid"],
            "inline": true
        }));
        cfg.check()?;
        let data = json!({
            "number": "A-1042", "total": 99.5, "currency": "EUR", "items": 3,
            "country": "DE", "paid": true, "customer": {"name": "Ann @everyone"}
        });
        let rendered = render(&event(data), &cfg)?;
        assert_eq!(
            serde_json::to_string(&rendered.message)?,
            concat!(
                "{\"username\":\"Shop\",\"content\":\"New order from Ann @\u{200B}everyone\",\"embeds\":[{",
                r#""title":"Order A-1042","description":"**99.5 EUR**, 3 items","#,
                r#""url":"https://shop.example/orders/A-1042","color":3066993,"fields":["#,
                r#"{"name":"name","value":"Ann @everyone","inline":true},"#,
                r#"{"name":"country","value":"DE","inline":true},"#,
                r#"{"name":"paid","value":"true","inline":true}],"#,
                r#""timestamp":"2026-11-23T15:04:05Z","footer":{"text":"order.created · evt_01J"}}]}"#
            )
        );
        assert!(rendered.warnings.is_empty());
        Ok(())
    }

    #[test]
    fn defaults() {
        let data = json!({"b": "two", "a": 1, "c": false, "nested": {"x": 1}, "list": [1], "nil": null, " ": "blank"});
        assert_eq!(
            run(json!({}), data).0,
            json!({"embeds": [{
                "title": "order.created",
                "color": 5_793_266,
                "fields": [
                    {"name": "a", "value": "1", "inline": true},
                    {"name": "b", "value": "two", "inline": true},
                    {"name": "c", "value": "false", "inline": true}
                ],
                "timestamp": "2026-11-23T15:04:05Z",
                "footer": {"text": "order.created · evt_01J"}
            }]})
        );
    }

    #[test]
    fn default_fields_are_capped_at_25() {
        let data: serde_json::Map<String, Value> =
            (0..40).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let out = embed(json!({}), Value::Object(data));
        assert_eq!(out["fields"].as_array().map(Vec::len), Some(25));
    }

    #[test]
    fn fields_and_inline() {
        let out = embed(
            json!({"fields": ["data.a.b", "data.missing", "data.empty", "data.list", "id"], "inline": false}),
            json!({"a": {"b": 1}, "empty": "", "list": [1, "x"]}),
        );
        assert_eq!(
            out["fields"],
            json!([
                {"name": "b", "value": "1", "inline": false},
                {"name": "empty", "value": "—", "inline": false},
                {"name": "list", "value": "[1,\"x\"]", "inline": false},
                {"name": "id", "value": "evt_01J", "inline": false}
            ])
        );
    }

    #[test]
    fn non_object_data() {
        for data in [json!(5), json!(null), json!("text"), json!([1, 2])] {
            let out = embed(
                json!({"description": "{{data}}", "fields": ["data.x"]}),
                data.clone(),
            );
            assert_eq!(out["description"], json!(value_text(&data)));
            assert_eq!(out["fields"], json!([]));
            assert_eq!(embed(json!({}), data)["fields"], json!([]));
        }
    }

    #[test]
    fn blank_pieces_are_left_out() {
        let (out, _) = run(
            json!({"title": "{{data.x}}", "description": " ", "content": "{{data.x}}", "url": "data.x"}),
            json!({}),
        );
        assert_eq!(
            out,
            json!({"embeds": [{
                "color": 5_793_266, "fields": [], "timestamp": "2026-11-23T15:04:05Z",
                "footer": {"text": "order.created · evt_01J"}
            }]})
        );
    }

    #[test]
    fn urls() {
        let data = json!({"link": "https://x.example/a", "bad": "x.example", "slug": "a b"});
        let url = |spec: &str| {
            let (out, warnings) = run(json!({"url": spec}), data.clone());
            (out["embeds"][0]["url"].clone(), warnings.len())
        };
        assert_eq!(url("data.link"), (json!("https://x.example/a"), 0));
        assert_eq!(
            url("https://static.example"),
            (json!("https://static.example"), 0)
        );
        assert_eq!(
            url("https://x.example/{{data.slug}}"),
            (json!("https://x.example/a b"), 0)
        );
        assert_eq!(url("data.bad"), (Value::Null, 1));
        assert_eq!(url("data.none"), (Value::Null, 0));
    }

    #[test]
    fn mentions_in_data_do_not_ping() {
        let (out, _) = run(
            json!({"content": "@here {{data.t}}", "title": "{{data.t}}"}),
            json!({"t": "@everyone <@123>"}),
        );
        assert_eq!(out["content"], "@here @\u{200B}everyone <@\u{200B}123>");
        assert_eq!(
            out["embeds"][0]["title"], "@everyone <@123>",
            "embeds never ping"
        );
    }

    #[test]
    fn truncates_to_discord_limits_by_chars() {
        let long = "é".repeat(5000);
        let (out, _) = run(
            json!({"title": "{{data.t}}", "content": "{{data.t}}", "username": "Bot", "fields": ["data.t"]}),
            json!({"t": long}),
        );
        let first = &out["embeds"][0];
        assert_eq!(len(&first["title"]), 256);
        assert!(first["title"].as_str().is_some_and(|t| t.ends_with("é…")));
        assert_eq!(len(&out["content"]), 2000);
        assert_eq!(len(&first["fields"][0]["value"]), 1024);
        let out = embed(
            json!({"description": "{{data.t}}"}),
            json!({"t": "ü".repeat(5000)}),
        );
        assert_eq!(len(&out["description"]), 4096);
    }

    #[test]
    fn total_is_capped_description_first() {
        let data = json!({"d": "d".repeat(4000), "v": "v".repeat(1000)});
        let paths: Vec<&str> = vec!["data.v"; 5];
        let (out, warnings) = run(
            json!({"description": "{{data.d}}", "fields": paths}),
            data.clone(),
        );
        let embed = &out["embeds"][0];
        let fields_len = 5 * (1 + 1000);
        let fixed = len(&embed["title"]) + len(&embed["footer"]["text"]) + fields_len;
        assert_eq!(len(&embed["description"]), 6000 - fixed);
        assert_eq!(embed["fields"].as_array().map(Vec::len), Some(5));
        assert!(warnings.is_empty());

        let paths: Vec<&str> = vec!["data.v"; 7];
        let (out, warnings) = run(json!({"description": "{{data.d}}", "fields": paths}), data);
        let embed = &out["embeds"][0];
        assert_eq!(
            embed.get("description"),
            None,
            "no room left for a description"
        );
        assert_eq!(embed["fields"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            warnings,
            ["2 fields left out to stay within Discord's 6000 characters"]
        );
    }

    #[test]
    fn refuses_bad_configs() {
        assert_eq!(
            refused(json!({"color": 16_777_216})),
            "`color` must be between 0 and 16777215 (0xFFFFFF), got 16777216"
        );
        assert!(refused(json!({"color": -1})).contains("got -1"));
        assert_eq!(refused(json!({"color": 0, "inline": false})), "");
        assert_eq!(refused(json!({"color": 16_777_215})), "");
        assert!(refused(json!({"fields": vec!["data.a"; 26]})).contains("at most 25"));
        assert_eq!(
            refused(json!({"fields": ["data."]})),
            "path `data.` in `fields` has an empty segment"
        );
        assert!(refused(json!({"title": "{{x"})).starts_with("`title` has an unclosed"));
        assert!(
            refused(json!({"description": "{{ }}"})).starts_with("`description` has a placeholder")
        );
        assert!(refused(json!({"content": "{{a..b}}"})).starts_with("`content` has a placeholder"));
        assert_eq!(
            refused(json!({"url": "a..b"})),
            "path `a..b` in `url` has an empty segment"
        );
        assert_eq!(
            refused(json!({"username": ""})),
            "`username` must not be blank"
        );
        assert!(refused(json!({"username": "x".repeat(81)})).contains("longer than 80"));
        assert!(refused(json!({"username": "My Discord Bot"})).contains("discord"));
        assert_eq!(refused(json!({"username": "Shop ✓"})), "");
        assert!(serde_json::from_value::<Config>(json!({"colour": 1})).is_err());
        assert!(serde_json::from_value::<Config>(json!({"color": "#fff"})).is_err());
        assert!(serde_json::from_value::<Config>(json!({"inline": "yes"})).is_err());
    }
}
