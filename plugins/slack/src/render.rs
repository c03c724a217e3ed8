//! Building the Slack message: Block Kit blocks within Slack's limits, plus the `text` fallback
//! Slack shows in notifications.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use switchyard_plugin_sdk::envelope::{envelope, rfc3339};
use switchyard_plugin_sdk::path::{last_segment, lookup};
use switchyard_plugin_sdk::template;
use switchyard_plugin_sdk::text::{is_scalar, truncate, value_text};
use switchyard_plugin_sdk::{Error, Event};

/// The title when the config sets none.
const DEFAULT_TITLE: &str = "{{type}}";
/// Default fields taken from `data` when the config lists none.
const DEFAULT_FIELDS: usize = 10;
/// Most `fields` a config may list: ten sections, well under Slack's 50 blocks a message.
const MAX_FIELDS: usize = 100;
/// Slack's limits, in characters.
const HEADER_MAX: usize = 150;
const SECTION_TEXT_MAX: usize = 3000;
const FIELD_MAX: usize = 2000;
const FIELDS_PER_SECTION: usize = 10;
const BUTTON_LABEL_MAX: usize = 75;
const URL_MAX: usize = 3000;
const FALLBACK_MAX: usize = 4000;

/// The subscription's `plugin_config`; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Header template; `{{type}}` when absent, no header when it renders blank.
    pub title: Option<String>,
    /// Section text template (mrkdwn).
    pub text: Option<String>,
    /// Envelope paths shown as fields; `None` shows `data`'s top-level scalars.
    pub fields: Option<Vec<String>>,
    /// A button under the message.
    pub link: Option<Link>,
    /// Event types (exact, or a prefix ending in `*`) to skip instead of posting.
    pub skip_types: Vec<String>,
}

/// The `link` config: a button opening `url`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Link {
    /// A URL template, a literal `http(s)://` URL, or an envelope path holding the URL.
    pub url: String,
    /// The button's text.
    #[serde(default = "default_label")]
    pub label: String,
}

/// The button text when `link.label` is absent.
fn default_label() -> String {
    "Open".to_owned()
}

impl Config {
    /// Semantic checks serde cannot express, so a bad config is a 422 up front.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn check(&self) -> Result<(), Error> {
        template::check("title", self.title.as_deref().unwrap_or(DEFAULT_TITLE))?;
        if let Some(text) = &self.text {
            template::check("text", text)?;
        }
        if let Some(paths) = &self.fields {
            if paths.len() > MAX_FIELDS {
                return Err(Error::msg(format!(
                    "`fields` lists {} paths; at most {MAX_FIELDS}",
                    paths.len()
                )));
            }
            paths
                .iter()
                .try_for_each(|p| template::check_path("fields", p))?;
        }
        if let Some(link) = &self.link {
            template::check_link("link.url", &link.url)?;
            if link.label.trim().is_empty() {
                return Err(Error::msg("`link.label` must not be empty"));
            }
        }
        if self.skip_types.iter().any(String::is_empty) {
            return Err(Error::msg("`skip_types` has an empty entry"));
        }
        Ok(())
    }
}

/// The skip reason when `skip_types` covers this event type.
pub fn skip_reason(config: &Config, event_type: &str) -> Option<String> {
    let pattern = config
        .skip_types
        .iter()
        .find(|p| type_matches(p, event_type))?;
    Some(format!(
        "event type `{event_type}` matches skip_types entry `{pattern}`"
    ))
}

/// `post.*` covers `post.published`; anything else must be equal.
fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

/// An incoming-webhook body.
#[derive(Debug, Serialize)]
pub struct Message {
    /// Notification and fallback text.
    text: String,
    /// The Block Kit layout.
    blocks: Vec<Block>,
}

/// The blocks this plugin emits.
#[derive(Debug, Serialize)]
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
    Actions {
        elements: Vec<Button>,
    },
    Context {
        elements: Vec<Text>,
    },
}

/// A Slack text object.
#[derive(Debug, Clone, Serialize)]
struct Text {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    emoji: Option<bool>,
}

impl Text {
    /// Plain text, where Slack parses nothing (so nothing needs escaping).
    fn plain(text: String, emoji: Option<bool>) -> Self {
        Self {
            kind: "plain_text",
            text,
            emoji,
        }
    }

    /// Slack markup; the caller has escaped the data in it.
    fn mrkdwn(text: String) -> Self {
        Self {
            kind: "mrkdwn",
            text,
            emoji: None,
        }
    }
}

/// A link button.
#[derive(Debug, Serialize)]
struct Button {
    #[serde(rename = "type")]
    kind: &'static str,
    text: Text,
    url: String,
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
/// When the payload is not JSON or a template does not parse.
pub fn render(event: &Event, config: &Config) -> Result<Rendered, Error> {
    let envelope = envelope(event)?;
    let title_template = config.title.as_deref().unwrap_or(DEFAULT_TITLE);
    let title = template::render(title_template, &envelope, str::to_owned)?;
    let text = match &config.text {
        Some(t) => Some(template::render(t, &envelope, escape)?).filter(|t| !t.trim().is_empty()),
        None => None,
    };
    let mut warnings = Vec::new();
    let mut blocks = Vec::new();
    if !title.trim().is_empty() {
        blocks.push(Block::Header {
            text: Text::plain(truncate(&title, HEADER_MAX), Some(true)),
        });
    }
    if let Some(text) = &text {
        let text = Some(Text::mrkdwn(truncate_mrkdwn(text, SECTION_TEXT_MAX)));
        blocks.push(Block::Section {
            text,
            fields: Vec::new(),
        });
    }
    let fields = fields(&envelope, config);
    for chunk in fields.chunks(FIELDS_PER_SECTION) {
        blocks.push(Block::Section {
            text: None,
            fields: chunk.to_vec(),
        });
    }
    if let Some(link) = &config.link {
        let button = button(link, &envelope, &mut warnings)?;
        blocks.extend(button.map(|b| Block::Actions { elements: vec![b] }));
    }
    blocks.push(context(event));
    let title_mrkdwn = template::render(title_template, &envelope, escape)?;
    let text = fallback(&title_mrkdwn, text.as_deref(), &event.event_type);
    Ok(Rendered {
        message: Message { text, blocks },
        warnings,
    })
}

/// The field texts (`*label*\nvalue`): the configured paths that exist, or by default up to
/// ten top-level strings, numbers and booleans of `data` (alphabetical).
fn fields(envelope: &Value, config: &Config) -> Vec<Text> {
    let pairs: Vec<(&str, &Value)> = match &config.fields {
        Some(paths) => paths
            .iter()
            .filter_map(|p| Some((last_segment(p), lookup(envelope, p)?)))
            .collect(),
        None => match envelope.get("data") {
            Some(Value::Object(data)) => data
                .iter()
                .filter(|(key, value)| !key.is_empty() && is_scalar(value))
                .take(DEFAULT_FIELDS)
                .map(|(key, value)| (key.as_str(), value))
                .collect(),
            _ => Vec::new(),
        },
    };
    pairs
        .into_iter()
        .map(|(label, value)| field(label, value))
        .collect()
}

/// One field; an empty value shows as `—` so the field does not look broken.
fn field(label: &str, value: &Value) -> Text {
    let value = value_text(value);
    let value = if value.trim().is_empty() {
        "—"
    } else {
        &value
    };
    Text::mrkdwn(truncate_mrkdwn(
        &format!("*{}*\n{}", escape(label), escape(value)),
        FIELD_MAX,
    ))
}

/// The link button, or `None` when this event has no URL (quietly) or a URL Slack would refuse
/// (with a warning: Slack rejects the whole message over one bad button).
fn button(
    link: &Link,
    envelope: &Value,
    warnings: &mut Vec<String>,
) -> Result<Option<Button>, Error> {
    let url = template::resolve_link(&link.url, envelope)?;
    if url.is_empty() {
        return Ok(None);
    }
    if !template::is_http(&url) || url.chars().count() > URL_MAX {
        warnings.push(format!(
            "link url `{}` is not an http(s) URL of at most {URL_MAX} characters: button left out",
            truncate(&url, 100)
        ));
        return Ok(None);
    }
    let text = Text::plain(truncate(&link.label, BUTTON_LABEL_MAX), None);
    Ok(Some(Button {
        kind: "button",
        text,
        url,
    }))
}

/// `` `type` · id · timestamp ``, so a message can be traced back to its event.
fn context(event: &Event) -> Block {
    let text = format!(
        "`{}` · {} · {}",
        escape(&event.event_type),
        escape(&event.id),
        rfc3339(event.timestamp)
    );
    Block::Context {
        elements: vec![Text::mrkdwn(truncate_mrkdwn(&text, SECTION_TEXT_MAX))],
    }
}

/// The top-level `text`: title, then text; the event type when both are blank (Slack wants
/// some text for notifications).
fn fallback(title: &str, text: Option<&str>, event_type: &str) -> String {
    let parts: Vec<&str> = [Some(title), text]
        .into_iter()
        .flatten()
        .filter(|part| !part.trim().is_empty())
        .collect();
    let joined = if parts.is_empty() {
        escape(event_type)
    } else {
        parts.join("\n")
    };
    truncate_mrkdwn(&joined, FALLBACK_MAX)
}

/// Escape the three characters Slack treats as markup in mrkdwn, in one pass (one allocation,
/// where chained `replace` calls made three per value).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// [`truncate`] for escaped text: never leave half an entity (`&am…`) that Slack would show raw.
fn truncate_mrkdwn(text: &str, max: usize) -> String {
    let cut = truncate(text, max);
    let Some(kept) = cut.strip_suffix('…').filter(|_| cut != text) else {
        return cut;
    };
    let (before, tail) = kept.rsplit_once('&').unwrap_or((kept, ";"));
    // An entity is short (`&amp;`, `&#x1F389;`): a bare `&` of the template followed by a long
    // run of letters (`R&Daaaa…`) is not one, and cutting back to it would lose the text.
    let partial_entity =
        tail.len() < 8 && tail.chars().all(|c| c.is_ascii_alphanumeric() || c == '#');
    if partial_entity {
        format!("{before}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(data: Value) -> Event {
        Event {
            id: "evt_01J".into(),
            event_type: "post.published".into(),
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

    fn body(cfg: Value, data: Value) -> Value {
        run(cfg, data).0
    }

    fn refused(cfg: Value) -> String {
        config(cfg)
            .check()
            .err()
            .map(|e| e.message().to_owned())
            .unwrap_or_default()
    }

    const CONTEXT: &str = "`post.published` · evt_01J · 2026-11-23T15:04:05Z";

    #[test]
    fn readme_example() -> Result<(), Error> {
        let cfg = config(json!({
            "title": "New post: {{data.title}}",
            "text": "*{{data.author.name}}* wrote <{{data.url}}|{{data.title}}>",
            "fields": ["data.author.name", "data.words", "data.tags"],
            "link": {"url": "data.url", "label": "Read it"},
            "skip_types": ["post.draft*"]
        }));
        cfg.check()?;
        let data = json!({
            "title": "Ships & Boats", "url": "https://blog.example/ships", "words": 1200,
            "tags": ["sea", "travel"], "author": {"name": "Ann"}
        });
        let rendered = render(&event(data), &cfg)?;
        assert_eq!(
            serde_json::to_string(&rendered.message)?,
            concat!(
                r#"{"text":"New post: Ships &amp; Boats\n*Ann* wrote <https://blog.example/ships|Ships &amp; Boats>","#,
                r#""blocks":[{"type":"header","text":{"type":"plain_text","text":"New post: Ships & Boats","emoji":true}},"#,
                r#"{"type":"section","text":{"type":"mrkdwn","text":"*Ann* wrote <https://blog.example/ships|Ships &amp; Boats>"}},"#,
                r#"{"type":"section","fields":[{"type":"mrkdwn","text":"*name*\nAnn"},{"type":"mrkdwn","text":"*words*\n1200"},"#,
                r#"{"type":"mrkdwn","text":"*tags*\n[\"sea\",\"travel\"]"}]},"#,
                r#"{"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"Read it"},"url":"https://blog.example/ships"}]},"#,
                r#"{"type":"context","elements":[{"type":"mrkdwn","text":"`post.published` · evt_01J · 2026-11-23T15:04:05Z"}]}]}"#
            )
        );
        assert!(rendered.warnings.is_empty());
        assert_eq!(
            skip_reason(&cfg, "post.draft.saved").as_deref(),
            Some("event type `post.draft.saved` matches skip_types entry `post.draft*`")
        );
        Ok(())
    }

    #[test]
    fn defaults() {
        let data = json!({"b": "two", "a": 1, "c": true, "nested": {"x": 1}, "list": [1], "nil": null, "": "blank key"});
        assert_eq!(
            body(json!({}), data),
            json!({
                "text": "post.published",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "post.published", "emoji": true}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*a*\n1"},
                        {"type": "mrkdwn", "text": "*b*\ntwo"},
                        {"type": "mrkdwn", "text": "*c*\ntrue"}
                    ]},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": CONTEXT}]}
                ]
            })
        );
    }

    #[test]
    fn default_fields_are_capped_at_ten() {
        let data: serde_json::Map<String, Value> =
            (0..30).map(|i| (format!("k{i:02}"), json!(i))).collect();
        let out = body(json!({}), Value::Object(data));
        assert_eq!(
            out["blocks"][1]["fields"].as_array().map(Vec::len),
            Some(10)
        );
        assert_eq!(out["blocks"][1]["fields"][9]["text"], "*k09*\n9");
    }

    #[test]
    fn many_fields_are_chunked_by_ten() {
        let paths: Vec<String> = (0..23).map(|i| format!("data.{i}")).collect();
        let data: Vec<i32> = (0..23).collect();
        let out = body(json!({"fields": paths}), json!(data));
        let sizes: Vec<usize> = (1..=3)
            .map(|i| out["blocks"][i]["fields"].as_array().map_or(0, Vec::len))
            .collect();
        assert_eq!(sizes, [10, 10, 3]);
        assert_eq!(out["blocks"][3]["fields"][2]["text"], "*22*\n22");
    }

    #[test]
    fn non_object_data() {
        for data in [json!(5), json!(null), json!("text"), json!([1, 2])] {
            let out = body(
                json!({"text": "{{data}}", "fields": ["data.x", "data"]}),
                data.clone(),
            );
            let blocks = out["blocks"].as_array().cloned().unwrap_or_default();
            assert_eq!(blocks.first().map(|b| &b["type"]), Some(&json!("header")));
            assert_eq!(blocks.last().map(|b| &b["type"]), Some(&json!("context")));
            let out = body(json!({}), data);
            assert_eq!(
                out["blocks"].as_array().map(Vec::len),
                Some(2),
                "no default fields"
            );
        }
    }

    #[test]
    fn blank_pieces_are_left_out() {
        let out = body(
            json!({"title": "{{data.nope}}", "text": "  {{data.nope}} ", "fields": ["data.nope", "data.empty"]}),
            json!({"empty": ""}),
        );
        assert_eq!(
            out,
            json!({
                "text": "post.published",
                "blocks": [
                    {"type": "section", "fields": [{"type": "mrkdwn", "text": "*empty*\n—"}]},
                    {"type": "context", "elements": [{"type": "mrkdwn", "text": CONTEXT}]}
                ]
            })
        );
        let out = body(json!({"title": "", "fields": []}), json!({"a": 1}));
        assert_eq!(out["blocks"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn escaping_in_one_pass_is_the_three_replacements() {
        let three = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        for text in [
            "",
            "plain",
            "&",
            "<<>>&&",
            "a &amp; b",
            "<@U123|é> & ✓>",
            "ends with &",
            "🎉<b>🎉</b>&",
        ] {
            assert_eq!(escape(text), three(text), "{text:?}");
        }
    }

    #[test]
    fn escapes_data_in_mrkdwn_only() {
        let data = json!({"t": "<!channel> & <https://evil|x>", "k": "a>b"});
        let out = body(
            json!({"title": "{{data.t}}", "text": "_{{data.t}}_", "fields": ["data.k"]}),
            data,
        );
        assert_eq!(
            out["blocks"][0]["text"]["text"], "<!channel> & <https://evil|x>",
            "plain_text is not parsed"
        );
        assert_eq!(
            out["blocks"][1]["text"]["text"],
            "_&lt;!channel&gt; &amp; &lt;https://evil|x&gt;_"
        );
        assert_eq!(out["blocks"][2]["fields"][0]["text"], "*k*\na&gt;b");
        assert_eq!(
            out["text"],
            "&lt;!channel&gt; &amp; &lt;https://evil|x&gt;\n_&lt;!channel&gt; &amp; &lt;https://evil|x&gt;_"
        );
        let evt = Event {
            event_type: "a<b".into(),
            id: "x&y".into(),
            ..event(json!(null))
        };
        let Block::Context { elements } = context(&evt) else {
            panic!("not a context block")
        };
        assert_eq!(
            elements.first().map(|t| t.text.as_str()),
            Some("`a&lt;b` · x&amp;y · 2026-11-23T15:04:05Z")
        );
    }

    #[test]
    fn truncates_to_slack_limits_by_chars() {
        let data = json!({"t": "é".repeat(5000), "amp": "&".repeat(3000)});
        let out = body(
            json!({"title": "{{data.t}}", "text": "{{data.amp}}", "fields": ["data.t", "data.amp"]}),
            data,
        );
        let text = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
        assert_eq!(text(&out["blocks"][0]["text"]["text"]), 150);
        assert!(
            out["blocks"][0]["text"]["text"]
                .as_str()
                .is_some_and(|s| s.ends_with("é…"))
        );
        let section = out["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(
            section.chars().count() <= 3000 && section.ends_with("&amp;…"),
            "no half entity"
        );
        assert_eq!(text(&out["blocks"][2]["fields"][0]["text"]), 2000);
        let amp = out["blocks"][2]["fields"][1]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(amp.chars().count() <= 2000 && amp.ends_with("&amp;…"));
        assert!(text(&out["text"]) <= 4000);
    }

    #[test]
    fn truncate_mrkdwn_keeps_entities_whole() {
        assert_eq!(truncate_mrkdwn("ab&amp;cd", 5), "ab…");
        assert_eq!(truncate_mrkdwn("ab&amp;cd", 8), "ab&amp;…");
        assert_eq!(truncate_mrkdwn("ab&amp;", 7), "ab&amp;");
        assert_eq!(
            truncate_mrkdwn("a & b c", 5),
            "a & …",
            "a bare & is not an entity"
        );
    }

    #[test]
    fn link_button() {
        let data = json!({"url": "https://x.example/p?a=1&b=2", "slug": "p", "bad": "javascript:alert(1)"});
        let actions = |cfg: Value| {
            let (out, warnings) = run(cfg, data.clone());
            let found = out["blocks"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|b| b["type"] == "actions")
                .cloned();
            (found, warnings)
        };
        let (found, _) = actions(json!({"link": {"url": "data.url"}}));
        assert_eq!(
            found,
            Some(json!({"type": "actions", "elements": [{
                "type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": "https://x.example/p?a=1&b=2"
            }]}))
        );
        let (found, _) =
            actions(json!({"link": {"url": "https://x.example/{{data.slug}}", "label": "Go"}}));
        assert_eq!(
            found.map(|b| b["elements"][0]["url"].clone()),
            Some(json!("https://x.example/p"))
        );
        let (found, _) = actions(json!({"link": {"url": "https://static.example"}}));
        assert!(found.is_some());
        let (found, warnings) = actions(json!({"link": {"url": "data.missing"}}));
        assert!(found.is_none() && warnings.is_empty());
        let (found, warnings) = actions(json!({"link": {"url": "data.bad"}}));
        assert!(found.is_none());
        assert_eq!(warnings.len(), 1);
        let (found, _) = actions(json!({"link": {"url": "data.url", "label": "x".repeat(100)}}));
        assert_eq!(
            found.map(|b| b["elements"][0]["text"]["text"]
                .as_str()
                .map_or(0, |s| s.chars().count())),
            Some(75)
        );
    }

    #[test]
    fn skip_types() {
        let cfg = config(json!({"skip_types": ["post.deleted", "draft.*"]}));
        assert!(skip_reason(&cfg, "post.deleted").is_some());
        assert!(skip_reason(&cfg, "draft.saved").is_some());
        assert!(skip_reason(&cfg, "post.published").is_none());
        assert!(skip_reason(&cfg, "post.deleted.x").is_none());
        assert!(skip_reason(&config(json!({})), "x").is_none());
    }

    #[test]
    fn refuses_bad_configs() {
        assert_eq!(
            refused(json!({"title": "{{type"})),
            "`title` has an unclosed `{{` (placeholders look like `{{data.title}}`)"
        );
        assert!(refused(json!({"text": "{{}}"})).starts_with("`text` has a placeholder"));
        assert_eq!(
            refused(json!({"fields": ["data..x"]})),
            "path `data..x` in `fields` has an empty segment"
        );
        assert!(refused(json!({"fields": vec!["data.a"; 101]})).contains("at most 100"));
        assert_eq!(
            refused(json!({"link": {"url": ""}})),
            "path `` in `link.url` is empty"
        );
        assert_eq!(
            refused(json!({"link": {"url": "data.u", "label": " "}})),
            "`link.label` must not be empty"
        );
        assert_eq!(
            refused(json!({"skip_types": [""]})),
            "`skip_types` has an empty entry"
        );
        assert_eq!(
            refused(json!({"title": "", "fields": [], "link": {"url": "data.u"}})),
            ""
        );
        assert!(serde_json::from_value::<Config>(json!({"color": "#fff"})).is_err());
        assert!(
            serde_json::from_value::<Config>(json!({"link": {"url": "x", "lable": "y"}})).is_err()
        );
        assert!(serde_json::from_value::<Config>(json!({"link": {}})).is_err());
    }
}
