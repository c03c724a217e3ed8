//! The four bundled plugins, compiled to real components and run through the real host runtime:
//! each output checked against the receiver's format (Slack Block Kit, Discord embeds) or the
//! exact JSON its README promises, and each config check exercised through `validate-config`.

use std::sync::Arc;

use serde_json::{Value, json};
use switchyard::plugins::{
    Decision, LoadedPlugin, PluginError, PluginEvent, PluginRequest, Runtime,
};

use crate::common::plugins::{bundled, event, load, runtime};

/// A runtime with one bundled plugin loaded.
async fn plugin(name: &str) -> (Runtime, std::sync::Arc<LoadedPlugin>) {
    let rt = runtime();
    let plugin = load(&rt, name, bundled(name)).await;
    (rt, plugin)
}

/// An event with every field chosen (the README examples use their own id and time).
fn event_at(id: &str, event_type: &str, timestamp: i64, payload: &str) -> PluginEvent {
    PluginEvent {
        id: id.into(),
        event_type: event_type.into(),
        timestamp,
        subscription_id: "sub_01TEST".into(),
        payload: payload.into(),
    }
}

/// Runs `transform`; the call must deliver.
async fn deliver(
    rt: &Runtime,
    plugin: &Arc<LoadedPlugin>,
    event: PluginEvent,
    config: &str,
) -> PluginRequest {
    let report = rt.transform(plugin, event, config).await;
    match report.result {
        Ok(Decision::Deliver(request)) => request,
        other => panic!(
            "{} with config {config} did not deliver: {other:?} (logs {:?})",
            plugin.name, report.logs
        ),
    }
}

/// Runs `transform`; the call must skip. Returns the reason.
async fn skip(
    rt: &Runtime,
    plugin: &Arc<LoadedPlugin>,
    event: PluginEvent,
    config: &str,
) -> String {
    let report = rt.transform(plugin, event, config).await;
    match report.result {
        Ok(Decision::Skip(reason)) => reason,
        other => panic!(
            "{} with config {config} did not skip: {other:?}",
            plugin.name
        ),
    }
}

/// The delivered body, which must be JSON sent as `application/json` with no extra headers.
fn json_body(request: &PluginRequest) -> Value {
    assert_eq!(request.content_type, "application/json");
    assert!(
        request.headers.is_empty(),
        "unexpected headers {:?}",
        request.headers
    );
    serde_json::from_slice(&request.body).unwrap_or_else(|e| {
        panic!(
            "body is not JSON ({e}): {}",
            String::from_utf8_lossy(&request.body)
        )
    })
}

/// The body as text.
fn text_body(request: &PluginRequest) -> &str {
    std::str::from_utf8(&request.body).expect("body is UTF-8")
}

/// `validate-config` must refuse `config`; returns the message.
async fn refused(rt: &Runtime, plugin: &Arc<LoadedPlugin>, config: &str) -> String {
    match rt.validate_config(plugin, config).await {
        Err(PluginError::Guest(message)) => message,
        other => panic!("{} accepted config {config}: {other:?}", plugin.name),
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// A string at `value[key]` that is not blank, at most `max` characters.
fn text_at<'a>(value: &'a Value, key: &str, max: usize, what: &str) -> &'a str {
    let text = value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{what}.{key} is not a string: {value}"));
    assert!(!text.trim().is_empty(), "{what}.{key} is blank: {value}");
    assert!(
        chars(text) <= max,
        "{what}.{key} has {} characters, more than {max}",
        chars(text)
    );
    text
}

/// The object's keys are all among `allowed` (Slack refuses unknown keys with `invalid_blocks`).
fn only_keys(value: &Value, allowed: &[&str], what: &str) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("{what} is not an object: {value}"));
    for key in object.keys() {
        assert!(
            allowed.contains(&key.as_str()),
            "{what} has unexpected key {key:?}: {value}"
        );
    }
}

/// Every `&` in mrkdwn starts one of the three entities Slack defines: data cannot leave a raw
/// `&`, and truncation cannot leave half an entity.
fn assert_entities_whole(text: &str) {
    for (i, _) in text.match_indices('&') {
        let rest = &text[i..];
        assert!(
            rest.starts_with("&amp;") || rest.starts_with("&lt;") || rest.starts_with("&gt;"),
            "broken entity at byte {i} in {text:?}"
        );
    }
}

/// A Slack text object: `plain_text` or `mrkdwn`, not blank, at most `max` characters.
fn slack_text(value: &Value, kind: &str, max: usize, what: &str) -> String {
    assert_eq!(value["type"], kind, "{what} should be {kind}: {value}");
    let allowed: &[&str] = if kind == "plain_text" {
        &["type", "text", "emoji"]
    } else {
        &["type", "text", "verbatim"]
    };
    only_keys(value, allowed, what);
    let text = text_at(value, "text", max, what);
    if kind == "mrkdwn" {
        assert_entities_whole(text);
    }
    text.to_owned()
}

/// Checks a Slack incoming-webhook body against Block Kit's shape and limits.
fn assert_block_kit(body: &Value) {
    only_keys(body, &["text", "blocks"], "message");
    text_at(body, "text", 4000, "message");
    let blocks = body["blocks"].as_array().expect("blocks is an array");
    assert!(
        !blocks.is_empty() && blocks.len() <= 50,
        "{} blocks",
        blocks.len()
    );
    for (i, block) in blocks.iter().enumerate() {
        let what = format!("blocks[{i}]");
        match block["type"].as_str() {
            Some("header") => {
                only_keys(block, &["type", "text", "block_id"], &what);
                slack_text(&block["text"], "plain_text", 150, &what);
            }
            Some("section") => {
                only_keys(
                    block,
                    &["type", "text", "fields", "accessory", "block_id"],
                    &what,
                );
                assert!(
                    block.get("text").is_some() || block.get("fields").is_some(),
                    "{what} is empty"
                );
                if let Some(text) = block.get("text") {
                    slack_text(text, "mrkdwn", 3000, &what);
                }
                if let Some(fields) = block.get("fields") {
                    let fields = fields.as_array().expect("fields is an array");
                    assert!(
                        !fields.is_empty() && fields.len() <= 10,
                        "{what} has {} fields",
                        fields.len()
                    );
                    for field in fields {
                        slack_text(field, "mrkdwn", 2000, &what);
                    }
                }
            }
            Some("actions") => {
                only_keys(block, &["type", "elements", "block_id"], &what);
                let elements = block["elements"].as_array().expect("elements is an array");
                assert!(!elements.is_empty() && elements.len() <= 25);
                for button in elements {
                    only_keys(
                        button,
                        &["type", "text", "url", "action_id", "value", "style"],
                        &what,
                    );
                    assert_eq!(button["type"], "button");
                    slack_text(&button["text"], "plain_text", 75, &what);
                    let url = text_at(button, "url", 3000, &what);
                    assert!(
                        url.starts_with("https://") || url.starts_with("http://"),
                        "{url}"
                    );
                }
            }
            Some("context") => {
                only_keys(block, &["type", "elements", "block_id"], &what);
                let elements = block["elements"].as_array().expect("elements is an array");
                assert!(!elements.is_empty() && elements.len() <= 10);
                for element in elements {
                    let kind = element["type"].as_str().unwrap_or_default().to_owned();
                    slack_text(element, &kind, 3000, &what);
                }
            }
            Some("divider") => only_keys(block, &["type", "block_id"], &what),
            other => panic!("{what} has an unknown type {other:?}: {block}"),
        }
    }
}

/// The blocks of one type.
fn blocks_of<'a>(body: &'a Value, kind: &str) -> Vec<&'a Value> {
    body["blocks"]
        .as_array()
        .expect("blocks")
        .iter()
        .filter(|b| b["type"] == kind)
        .collect()
}

#[tokio::test]
async fn slack_readme_example_is_reproduced_exactly() {
    let (rt, slack) = plugin("slack").await;
    let config = json!({
        "title": "New post: {{data.title}}",
        "text": "*{{data.author.name}}* wrote <{{data.url}}|{{data.title}}>",
        "fields": ["data.author.name", "data.words", "data.tags"],
        "link": {"url": "data.url", "label": "Read it"},
        "skip_types": ["post.draft*"]
    })
    .to_string();
    let data = r#"{"title":"Ships & Boats","url":"https://blog.example/ships","words":1200,"tags":["sea","travel"],"author":{"name":"Ann"}}"#;
    let request = deliver(
        &rt,
        &slack,
        event_at("evt_01J", "post.published", 1_795_446_245, data),
        &config,
    )
    .await;
    let body = json_body(&request);
    assert_block_kit(&body);
    let expected = concat!(
        r#"{"text":"New post: Ships &amp; Boats\n*Ann* wrote <https://blog.example/ships|Ships &amp; Boats>","#,
        r#""blocks":[{"type":"header","text":{"type":"plain_text","text":"New post: Ships & Boats","emoji":true}},"#,
        r#"{"type":"section","text":{"type":"mrkdwn","text":"*Ann* wrote <https://blog.example/ships|Ships &amp; Boats>"}},"#,
        r#"{"type":"section","fields":[{"type":"mrkdwn","text":"*name*\nAnn"},{"type":"mrkdwn","text":"*words*\n1200"},"#,
        r#"{"type":"mrkdwn","text":"*tags*\n[\"sea\",\"travel\"]"}]},"#,
        r#"{"type":"actions","elements":[{"type":"button","text":{"type":"plain_text","text":"Read it"},"url":"https://blog.example/ships"}]},"#,
        r#"{"type":"context","elements":[{"type":"mrkdwn","text":"`post.published` · evt_01J · 2026-11-23T15:04:05Z"}]}]}"#,
    );
    assert_eq!(text_body(&request), expected);

    let reason = skip(
        &rt,
        &slack,
        event_at("evt_01J", "post.draft.saved", 1_795_446_245, data),
        &config,
    )
    .await;
    assert_eq!(
        reason,
        "event type `post.draft.saved` matches skip_types entry `post.draft*`"
    );
}

#[tokio::test]
async fn slack_default_config_is_valid_block_kit() {
    let (rt, slack) = plugin("slack").await;
    let data = json!({
        "title": "Hello", "n": 3, "ok": true, "empty": "", "nested": {"x": 1}, "list": [1, 2], "nothing": null
    });
    for config in ["null", "{}"] {
        let body =
            json_body(&deliver(&rt, &slack, event("post.published", data.clone()), config).await);
        assert_block_kit(&body);
        // The header is the event type; the fields are data's scalars in alphabetical order,
        // an empty string showing as a dash; the context line traces the event.
        assert_eq!(
            body,
            json!({
                "text": "post.published",
                "blocks": [
                    {"type": "header", "text": {"type": "plain_text", "text": "post.published", "emoji": true}},
                    {"type": "section", "fields": [
                        {"type": "mrkdwn", "text": "*empty*\n—"},
                        {"type": "mrkdwn", "text": "*n*\n3"},
                        {"type": "mrkdwn", "text": "*ok*\ntrue"},
                        {"type": "mrkdwn", "text": "*title*\nHello"}
                    ]},
                    {"type": "context", "elements": [
                        {"type": "mrkdwn", "text": "`post.published` · evt_01TEST · 2023-11-14T22:13:20Z"}
                    ]}
                ]
            }),
            "config {config}"
        );
    }
}

#[tokio::test]
async fn slack_templates_substitute_event_fields() {
    let (rt, slack) = plugin("slack").await;
    let config = json!({
        "title": "{{type}}: {{data.title}}",
        "text": "id {{id}} at {{timestamp}} by {{ data.author.name }}; n={{data.n}} tags={{data.tags}} first={{data.tags.0}} missing=[{{data.nope}}]",
        "fields": ["data.author.name", "data.n", "data.empty", "data.nope", "type"],
        "link": {"url": "https://example.com/posts/{{data.n}}", "label": "See {{data.n}}"}
    })
    .to_string();
    let data = json!({"title": "Hello", "n": 3, "tags": ["a", "b"], "author": {"name": "Ann"}, "empty": ""});
    let body = json_body(&deliver(&rt, &slack, event("post.published", data), &config).await);
    assert_block_kit(&body);
    let text =
        "id evt_01TEST at 2023-11-14T22:13:20Z by Ann; n=3 tags=[\"a\",\"b\"] first=a missing=[]";
    assert_eq!(
        body,
        json!({
            "text": format!("post.published: Hello\n{text}"),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": "post.published: Hello", "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": text}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": "*name*\nAnn"},
                    {"type": "mrkdwn", "text": "*n*\n3"},
                    {"type": "mrkdwn", "text": "*empty*\n—"},
                    {"type": "mrkdwn", "text": "*type*\npost.published"}
                ]},
                // The label is not a template: it is shown as written.
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "See {{data.n}}"}, "url": "https://example.com/posts/3"}
                ]},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": "`post.published` · evt_01TEST · 2023-11-14T22:13:20Z"}
                ]}
            ]
        })
    );
}

#[tokio::test]
async fn slack_escapes_event_data_in_mrkdwn_only() {
    let (rt, slack) = plugin("slack").await;
    let hostile = "<!channel> Tom & Jerry <https://evil.example|click>";
    let config = json!({
        "title": "{{data.title}}",
        "text": "*{{data.title}}* <{{data.url}}|open>",
        "link": {"url": "data.url"}
    })
    .to_string();
    let data = json!({"title": hostile, "url": "https://ok.example/?a=1&b=2"});
    let body = json_body(&deliver(&rt, &slack, event("a<b>&c", data), &config).await);
    assert_block_kit(&body);
    let escaped = "&lt;!channel&gt; Tom &amp; Jerry &lt;https://evil.example|click&gt;";
    let section = format!("*{escaped}* <https://ok.example/?a=1&amp;b=2|open>");
    assert_eq!(
        body,
        json!({
            "text": format!("{escaped}\n{section}"),
            "blocks": [
                // Plain text is not parsed by Slack, so it stays as the data says.
                {"type": "header", "text": {"type": "plain_text", "text": hostile, "emoji": true}},
                {"type": "section", "text": {"type": "mrkdwn", "text": section}},
                {"type": "section", "fields": [
                    {"type": "mrkdwn", "text": format!("*title*\n{escaped}")},
                    {"type": "mrkdwn", "text": "*url*\nhttps://ok.example/?a=1&amp;b=2"}
                ]},
                // A button URL is not mrkdwn: sent as is.
                {"type": "actions", "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open"}, "url": "https://ok.example/?a=1&b=2"}
                ]},
                {"type": "context", "elements": [
                    {"type": "mrkdwn", "text": "`a&lt;b&gt;&amp;c` · evt_01TEST · 2023-11-14T22:13:20Z"}
                ]}
            ]
        })
    );
    // No raw `<` from the data anywhere in mrkdwn: the only links are the template's.
    let section_text = body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(section_text.matches('<').count(), 1, "{section_text}");
}

#[tokio::test]
async fn slack_leaves_out_buttons_slack_would_refuse() {
    let (rt, slack) = plugin("slack").await;
    let long = format!("https://x.example/{}", "a".repeat(3000));
    for url in ["javascript:alert(1)", "ftp://x.example/file", long.as_str()] {
        let config = json!({"title": "t", "link": {"url": "data.url"}}).to_string();
        let report = rt
            .transform(
                &slack,
                event("post.published", json!({ "url": url })),
                &config,
            )
            .await;
        let Ok(Decision::Deliver(request)) = &report.result else {
            panic!("{:?}", report.result)
        };
        let body = json_body(request);
        assert_block_kit(&body);
        assert!(blocks_of(&body, "actions").is_empty(), "{url}: {body}");
        assert!(
            report
                .logs
                .iter()
                .any(|l| l.level == "warn" && l.message.contains("button left out")),
            "{url}: {:?}",
            report.logs
        );
    }
    // A missing URL quietly leaves the button out.
    let config = json!({"link": {"url": "data.nope"}}).to_string();
    let report = rt
        .transform(&slack, event("post.published", json!({})), &config)
        .await;
    let Ok(Decision::Deliver(request)) = &report.result else {
        panic!("{:?}", report.result)
    };
    assert!(blocks_of(&json_body(request), "actions").is_empty());
    assert!(report.logs.is_empty(), "{:?}", report.logs);
}

#[tokio::test]
async fn slack_truncates_long_unicode_by_characters() {
    let (rt, slack) = plugin("slack").await;
    let title = "Ünïcødé 🎉 ".repeat(100); // 1000 characters, many multi-byte
    let long_text = "é&<🎉".repeat(1500); // 6000 characters, 13500 once escaped
    let many: serde_json::Map<String, Value> = (0..23)
        .map(|i| (format!("f{i:02}"), json!(format!("v{i}"))))
        .collect();
    let mut data = json!({"title": title, "body": long_text, "value": "ж".repeat(5000)});
    data.as_object_mut().unwrap().extend(many.clone());
    let mut fields: Vec<String> = many.keys().map(|k| format!("data.{k}")).collect();
    fields.push("data.value".into());
    let config =
        json!({"title": "{{data.title}}", "text": "{{data.body}}", "fields": fields}).to_string();
    let report = rt
        .transform(&slack, event("post.published", data), &config)
        .await;
    let Ok(Decision::Deliver(request)) = report.result else {
        panic!("{:?}", report.result)
    };
    let body = json_body(&request);
    assert_block_kit(&body);

    let header = blocks_of(&body, "header")[0]["text"]["text"]
        .as_str()
        .unwrap();
    let expected_header: String = title.chars().take(149).chain(['…']).collect();
    assert_eq!(header, expected_header);
    assert_eq!(chars(header), 150);

    let sections = blocks_of(&body, "section");
    let text = sections[0]["text"]["text"].as_str().unwrap();
    assert!(
        text.ends_with('…') && chars(text) <= 3000 && chars(text) > 2900,
        "{} characters",
        chars(text)
    );
    assert!(
        "é&amp;&lt;🎉"
            .repeat(1500)
            .starts_with(text.trim_end_matches('…')),
        "not a prefix of the escaped text"
    );

    // 24 fields: sections of 10, 10 and 4, the long value cut to 2000 characters.
    let field_counts: Vec<usize> = sections[1..]
        .iter()
        .map(|s| s["fields"].as_array().unwrap().len())
        .collect();
    assert_eq!(field_counts, [10, 10, 4]);
    let long_field = sections[3]["fields"][3]["text"].as_str().unwrap();
    assert_eq!(chars(long_field), 2000);
    assert!(long_field.starts_with("*value*\nжжж") && long_field.ends_with('…'));

    let fallback = body["text"].as_str().unwrap();
    assert!(chars(fallback) <= 4000 && fallback.ends_with('…'));
}

#[tokio::test]
async fn slack_refuses_bad_configs() {
    let (rt, slack) = plugin("slack").await;
    for good in [
        "null",
        "{}",
        r#"{"title":"{{type}}","fields":[],"link":{"url":"https://x.example"}}"#,
    ] {
        assert_eq!(rt.validate_config(&slack, good).await, Ok(()), "{good}");
    }
    let message = refused(&rt, &slack, r##"{"title":"x","color":"#ff0000"}"##).await;
    assert!(message.contains("unknown field `color`"), "{message}");
    let message = refused(&rt, &slack, r#"{"titel":"x"}"#).await;
    assert!(message.contains("unknown field `titel`"), "{message}");
    let message = refused(&rt, &slack, r#"{"text":"{{data.title"}"#).await;
    assert!(message.contains("`text` has an unclosed `{{`"), "{message}");
    let message = refused(&rt, &slack, r#"{"link":{"url":"data.url","label":" "}}"#).await;
    assert_eq!(message, "`link.label` must not be empty");
    let too_many: Vec<String> = (0..101).map(|i| format!("data.f{i}")).collect();
    let message = refused(&rt, &slack, &json!({ "fields": too_many }).to_string()).await;
    assert_eq!(message, "`fields` lists 101 paths; at most 100");
    // The same checks guard delivery: a config that skipped validation fails the call.
    let report = rt
        .transform(&slack, event("t", json!({})), r#"{"colour":1}"#)
        .await;
    assert!(
        matches!(&report.result, Err(PluginError::Guest(m)) if m.contains("colour")),
        "{:?}",
        report.result
    );
}

/// Checks a Discord webhook body against the embed limits Discord enforces.
fn assert_discord_embeds(body: &Value) {
    only_keys(body, &["username", "content", "embeds"], "message");
    if body.get("content").is_some() {
        text_at(body, "content", 2000, "message");
    }
    if body.get("username").is_some() {
        text_at(body, "username", 80, "message");
    }
    let embeds = body["embeds"].as_array().expect("embeds is an array");
    assert!(!embeds.is_empty() && embeds.len() <= 10);
    for embed in embeds {
        only_keys(
            embed,
            &[
                "title",
                "description",
                "url",
                "color",
                "fields",
                "timestamp",
                "footer",
            ],
            "embed",
        );
        let mut total = 0;
        if embed.get("title").is_some() {
            total += chars(text_at(embed, "title", 256, "embed"));
        }
        if embed.get("description").is_some() {
            total += chars(text_at(embed, "description", 4096, "embed"));
        }
        if let Some(url) = embed.get("url") {
            let url = url.as_str().unwrap();
            assert!(
                url.starts_with("https://") || url.starts_with("http://"),
                "{url}"
            );
        }
        let color = embed["color"]
            .as_u64()
            .unwrap_or_else(|| panic!("color is not an integer: {embed}"));
        assert!(color <= 0xFF_FFFF);
        let fields = embed["fields"].as_array().expect("fields is an array");
        assert!(fields.len() <= 25, "{} fields", fields.len());
        for field in fields {
            only_keys(field, &["name", "value", "inline"], "field");
            total += chars(text_at(field, "name", 256, "field"));
            total += chars(text_at(field, "value", 1024, "field"));
            assert!(field["inline"].is_boolean());
        }
        total += chars(text_at(&embed["footer"], "text", 2048, "footer"));
        assert!(total <= 6000, "embed has {total} characters");
        let timestamp = embed["timestamp"].as_str().expect("timestamp is a string");
        assert!(time_like(timestamp), "{timestamp} is not RFC 3339");
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ`.
fn time_like(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test]
async fn discord_readme_example_is_reproduced_exactly() {
    let (rt, discord) = plugin("discord").await;
    let config = json!({
        "username": "Shop",
        "content": "New order from {{data.customer.name}}",
        "title": "Order {{data.number}}",
        "description": "**{{data.total}} {{data.currency}}**, {{data.items}} items",
        "url": "https://shop.example/orders/{{data.number}}",
        "color": 3_066_993,
        "fields": ["data.customer.name", "data.country", "data.paid"],
        "inline": true
    })
    .to_string();
    let data = r#"{"number":"A-1042","total":99.5,"currency":"EUR","items":3,"country":"DE","paid":true,"customer":{"name":"Ann @everyone"}}"#;
    let request = deliver(
        &rt,
        &discord,
        event_at("evt_01J", "order.created", 1_795_446_245, data),
        &config,
    )
    .await;
    let body = json_body(&request);
    assert_discord_embeds(&body);
    let expected = concat!(
        r#"{"username":"Shop","content":"New order from Ann @"#,
        "\u{200b}",
        r#"everyone","embeds":[{"title":"Order A-1042","description":"**99.5 EUR**, 3 items","#,
        r#""url":"https://shop.example/orders/A-1042","color":3066993,"fields":["#,
        r#"{"name":"name","value":"Ann @everyone","inline":true},{"name":"country","value":"DE","inline":true},"#,
        r#"{"name":"paid","value":"true","inline":true}],"timestamp":"2026-11-23T15:04:05Z","#,
        r#""footer":{"text":"order.created · evt_01J"}}]}"#,
    );
    assert_eq!(text_body(&request), expected);
}

#[tokio::test]
async fn discord_default_embed_has_the_event_timestamp_and_fields() {
    let (rt, discord) = plugin("discord").await;
    let data = json!({"total": 42, "country": "DE", "paid": false, "note": "", "customer": {"name": "Ann"}});
    let body = json_body(&deliver(&rt, &discord, event("order.created", data), "null").await);
    assert_discord_embeds(&body);
    assert_eq!(
        body,
        json!({
            "embeds": [{
                "title": "order.created",
                "color": 5_793_266,
                "fields": [
                    {"name": "country", "value": "DE", "inline": true},
                    {"name": "note", "value": "—", "inline": true},
                    {"name": "paid", "value": "false", "inline": true},
                    {"name": "total", "value": "42", "inline": true}
                ],
                "timestamp": "2023-11-14T22:13:20Z",
                "footer": {"text": "order.created · evt_01TEST"}
            }]
        })
    );
}

#[tokio::test]
async fn discord_stays_within_embed_limits() {
    let (rt, discord) = plugin("discord").await;
    // 40 long scalar fields, a 400-character unicode title and a long description: the
    // embed is cut to Discord's limits, never split mid code point.
    let mut data = serde_json::Map::new();
    for i in 0..40 {
        data.insert(
            format!("f{i:02}"),
            json!(format!("{i}:{}", "ü".repeat(3000))),
        );
    }
    data.insert("title".into(), json!("🎉".repeat(400)));
    data.insert("long".into(), json!("d".repeat(10_000)));
    let config =
        json!({"title": "{{data.title}}", "description": "{{data.long}}", "inline": false})
            .to_string();
    let report = rt
        .transform(
            &discord,
            event("order.created", Value::Object(data)),
            &config,
        )
        .await;
    let Ok(Decision::Deliver(request)) = &report.result else {
        panic!("{:?}", report.result)
    };
    let body = json_body(request);
    assert_discord_embeds(&body);
    let embed = &body["embeds"][0];
    assert_eq!(embed["title"], format!("{}…", "🎉".repeat(255)));
    assert_eq!(embed["timestamp"], "2023-11-14T22:13:20Z");
    let fields = embed["fields"].as_array().unwrap();
    assert!(
        !fields.is_empty() && fields.len() < 25,
        "{} fields",
        fields.len()
    );
    assert_eq!(fields[0]["name"], "f00");
    assert_eq!(fields[0]["value"], format!("0:{}…", "ü".repeat(1021)));
    assert_eq!(fields[0]["inline"], false);
    // The description went first (no room left), then trailing fields, with a warning.
    assert!(
        embed.get("description").is_none(),
        "{}",
        embed["description"]
    );
    assert!(
        report
            .logs
            .iter()
            .any(|l| l.level == "warn" && l.message.contains("fields left out")),
        "{:?}",
        report.logs
    );
}

#[tokio::test]
async fn discord_defuses_mentions_from_data_only() {
    let (rt, discord) = plugin("discord").await;
    let config = json!({"content": "@here {{data.who}} <@{{data.id}}>"}).to_string();
    let data = json!({"who": "@everyone", "id": "@123"});
    let body = json_body(&deliver(&rt, &discord, event("order.created", data), &config).await);
    assert_discord_embeds(&body);
    assert_eq!(body["content"], "@here @\u{200b}everyone <@@\u{200b}123>");
}

#[tokio::test]
async fn discord_refuses_bad_colors() {
    let (rt, discord) = plugin("discord").await;
    for good in [r#"{"color":0}"#, r#"{"color":16777215}"#, "null"] {
        assert_eq!(rt.validate_config(&discord, good).await, Ok(()), "{good}");
    }
    for (bad, shown) in [("16777216", "16777216"), ("-1", "-1")] {
        let message = refused(&rt, &discord, &format!(r#"{{"color":{bad}}}"#)).await;
        assert_eq!(
            message,
            format!("`color` must be between 0 and 16777215 (0xFFFFFF), got {shown}")
        );
    }
    let message = refused(&rt, &discord, r##"{"color":"#5865F2"}"##).await;
    assert!(
        message.starts_with("invalid plugin config: invalid type: string"),
        "{message}"
    );
    let message = refused(&rt, &discord, r#"{"colour":1}"#).await;
    assert!(message.contains("unknown field `colour`"), "{message}");
    let message = refused(&rt, &discord, r#"{"username":"Discord Bot"}"#).await;
    assert!(
        message.starts_with("`username` may not contain"),
        "{message}"
    );
}

/// The event every filter case runs against.
const FILTER_DATA: &str = r#"{"total":42,"price":9.5,"country":"US","vip":false,"note":null,"tags":["new","gift"],"items":[{"sku":"A-1"},{"sku":"B-2"}],"customer":{"name":"Ann","address":{"city":"Berlin"}},"big":123456789012345678901234567890}"#;

fn filter_event() -> PluginEvent {
    event_at("evt_01TEST", "order.created", 1_700_000_000, FILTER_DATA)
}

#[tokio::test]
async fn filter_every_operator_passes_and_skips() {
    let (rt, filter) = plugin("filter").await;
    let envelope = format!(
        r#"{{"id":"evt_01TEST","type":"order.created","timestamp":"2023-11-14T22:13:20Z","data":{FILTER_DATA}}}"#
    );
    // (what, a condition that holds, a condition that fails, the skip reason after the prefix)
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        (
            "$eq",
            json!({"data.country": {"$eq": "US"}}),
            json!({"data.country": {"$eq": "DE"}}),
            r#"data.country $eq "DE" (got "US")"#,
        ),
        (
            "$eq numbers by value",
            json!({"data.total": {"$eq": 42.0}}),
            json!({"data.total": {"$eq": 42.5}}),
            "data.total $eq 42.5 (got 42)",
        ),
        (
            "$neq",
            json!({"data.country": {"$neq": "DE"}}),
            json!({"data.country": {"$neq": "US"}}),
            r#"data.country $neq "US" (got "US")"#,
        ),
        (
            "$gt",
            json!({"data.total": {"$gt": 41}}),
            json!({"data.total": {"$gt": 42}}),
            "data.total $gt 42 (got 42)",
        ),
        (
            "$gte",
            json!({"data.total": {"$gte": 42}}),
            json!({"data.total": {"$gte": 42.01}}),
            "data.total $gte 42.01 (got 42)",
        ),
        (
            "$lt",
            json!({"data.price": {"$lt": 10}}),
            json!({"data.price": {"$lt": 9.5}}),
            "data.price $lt 9.5 (got 9.5)",
        ),
        (
            "$lte",
            json!({"data.price": {"$lte": 9.5}}),
            json!({"data.price": {"$lte": 9}}),
            "data.price $lte 9 (got 9.5)",
        ),
        (
            "strings compare lexicographically",
            json!({"timestamp": {"$gte": "2023-11-14T00:00:00Z"}}),
            json!({"timestamp": {"$lt": "2023-11-14T22:13:20Z"}}),
            r#"timestamp $lt "2023-11-14T22:13:20Z" (got "2023-11-14T22:13:20Z")"#,
        ),
        (
            "mixed types never compare",
            json!({"data.total": {"$gt": 10}}),
            json!({"data.total": {"$gt": "10"}}),
            r#"data.total $gt "10" (got 42)"#,
        ),
        (
            "$in",
            json!({"data.country": {"$in": ["DE", "US"]}}),
            json!({"data.country": {"$in": ["DE", "FR"]}}),
            r#"data.country $in ["DE","FR"] (got "US")"#,
        ),
        (
            "$in on an array field",
            json!({"data.tags": {"$in": ["old", "gift"]}}),
            json!({"data.tags": {"$in": ["old"]}}),
            r#"data.tags $in ["old"] (got ["new","gift"])"#,
        ),
        (
            "$nin",
            json!({"data.country": {"$nin": ["DE", "FR"]}}),
            json!({"data.country": {"$nin": ["FR", "US"]}}),
            r#"data.country $nin ["FR","US"] (got "US")"#,
        ),
        (
            "$exist true",
            json!({"data.note": {"$exist": true}}),
            json!({"data.nope": {"$exist": true}}),
            "data.nope $exist true (missing)",
        ),
        (
            "$exist false",
            json!({"data.nope": {"$exist": false}}),
            json!({"data.note": {"$exist": false}}),
            "data.note $exist false (got null)",
        ),
        (
            "implicit equality",
            json!({"type": "order.created"}),
            json!({"type": "order.paid"}),
            r#"type $eq "order.paid" (got "order.created")"#,
        ),
        (
            "implicit equality on null",
            json!({"data.note": null}),
            json!({"data.vip": null}),
            "data.vip $eq null (got false)",
        ),
        (
            "array implicit contains",
            json!({"data.tags": "gift"}),
            json!({"data.tags": "old"}),
            r#"data.tags $eq "old" (got ["new","gift"])"#,
        ),
        (
            "whole array equality",
            json!({"data.tags": ["new", "gift"]}),
            json!({"data.tags": ["gift", "new"]}),
            r#"data.tags $eq ["gift","new"] (got ["new","gift"])"#,
        ),
        (
            "$and",
            json!({"$and": [{"data.total": {"$gte": 10}}, {"data.country": "US"}]}),
            json!({"$and": [{"data.total": {"$gte": 10}}, {"data.country": "DE"}]}),
            r#"data.country $eq "DE" (got "US")"#,
        ),
        (
            "$or",
            json!({"$or": [{"data.country": "DE"}, {"data.vip": false}]}),
            json!({"$or": [{"data.country": "DE"}, {"data.vip": true}]}),
            r#"$or: no branch matched (data.country $eq "DE" (got "US"); data.vip $eq true (got false))"#,
        ),
        (
            "nested $or inside $and",
            json!({"$and": [{"$or": [{"data.total": {"$gt": 100}}, {"data.tags": "new"}]}]}),
            json!({"$and": [{"$or": [{"data.total": {"$gt": 100}}, {"data.tags": "old"}]}]}),
            r#"$or: no branch matched (data.total $gt 100 (got 42); data.tags $eq "old" (got ["new","gift"]))"#,
        ),
        (
            "nested object path",
            json!({"data.customer.address.city": "Berlin"}),
            json!({"data.customer.address.city": "Paris"}),
            r#"data.customer.address.city $eq "Paris" (got "Berlin")"#,
        ),
        (
            "array index path",
            json!({"data.items.1.sku": "B-2"}),
            json!({"data.items.0.sku": "B-2"}),
            r#"data.items.0.sku $eq "B-2" (got "A-1")"#,
        ),
        (
            "missing field with $neq",
            json!({"data.nope": {"$neq": 1}}),
            json!({"data.nope": 1}),
            "data.nope $eq 1 (missing)",
        ),
        (
            "missing field with $nin",
            json!({"data.nope": {"$nin": [1]}}),
            json!({"data.nope": {"$in": [1]}}),
            "data.nope $in [1] (missing)",
        ),
        (
            "missing field with ranges",
            json!({"data.items.5.sku": {"$exist": false}}),
            json!({"data.nope": {"$gte": 0}}),
            "data.nope $gte 0 (missing)",
        ),
        (
            "path through a non-object",
            json!({"data.total.x": {"$exist": false}}),
            json!({"data.total.x": {"$exist": true}}),
            "data.total.x $exist true (missing)",
        ),
        (
            "several operators on one path",
            json!({"data.total": {"$gte": 10, "$lt": 100}}),
            json!({"data.total": {"$gte": 10, "$lt": 42}}),
            "data.total $lt 42 (got 42)",
        ),
        (
            "big numbers",
            json!({"data.big": {"$gt": 1_000_000_000_000_000_000_u64}}),
            json!({"data.big": {"$lt": 1_000_000_000_000_000_000_u64}}),
            "data.big $lt 1000000000000000000 (got 1.2345678901234568e+29)",
        ),
    ];
    for (what, pass, fail, reason) in cases {
        let config = json!({ "match": pass }).to_string();
        assert_eq!(
            rt.validate_config(&filter, &config).await,
            Ok(()),
            "{what}: {config}"
        );
        let request = deliver(&rt, &filter, filter_event(), &config).await;
        assert_eq!(request.content_type, "application/json", "{what}");
        assert_eq!(
            text_body(&request),
            envelope,
            "{what}: the envelope with data verbatim"
        );

        let config = json!({ "match": fail }).to_string();
        assert_eq!(
            rt.validate_config(&filter, &config).await,
            Ok(()),
            "{what}: {config}"
        );
        let got = skip(&rt, &filter, filter_event(), &config).await;
        assert_eq!(
            got,
            format!("filter did not match: {reason}"),
            "{what}: {config}"
        );
    }
}

#[tokio::test]
async fn filter_reports_the_first_failure_in_alphabetical_order() {
    let (rt, filter) = plugin("filter").await;
    // Config text with keys out of order: the plugin must not depend on the text's order.
    let config = r#"{"match":{"data.total":1,"data.country":"DE","type":"x"}}"#;
    let reason = skip(&rt, &filter, filter_event(), config).await;
    assert_eq!(
        reason,
        r#"filter did not match: data.country $eq "DE" (got "US")"#
    );
    let config = r#"{"match":{"data.country":"DE","$or":[{"type":"x"}]}}"#;
    let reason = skip(&rt, &filter, filter_event(), config).await;
    assert_eq!(
        reason,
        r#"filter did not match: $or: no branch matched (type $eq "x" (got "order.created"))"#
    );
    // Long values are cut in the reason.
    let long = "x".repeat(200);
    let reason = skip(
        &rt,
        &filter,
        filter_event(),
        &json!({"match": {"data.country": long}}).to_string(),
    )
    .await;
    assert_eq!(
        reason,
        format!(
            "filter did not match: data.country $eq \"{}… (got \"US\")",
            "x".repeat(78)
        )
    );
}

#[tokio::test]
async fn filter_readme_example_and_output_data() {
    let (rt, filter) = plugin("filter").await;
    let config = json!({
        "match": {
            "type": "order.created",
            "data.total": {"$gte": 100},
            "$or": [{"data.country": {"$in": ["DE", "FR"]}}, {"data.vip": true}]
        }
    })
    .to_string();
    let at = |data: &str| event_at("evt_01J", "order.created", 1_795_446_245, data);
    let request = deliver(
        &rt,
        &filter,
        at(r#"{"total":142.5,"country":"FR","vip":false}"#),
        &config,
    )
    .await;
    assert_eq!(
        text_body(&request),
        r#"{"id":"evt_01J","type":"order.created","timestamp":"2026-11-23T15:04:05Z","data":{"total":142.5,"country":"FR","vip":false}}"#
    );
    assert_eq!(
        skip(&rt, &filter, at(r#"{"total":42,"country":"FR"}"#), &config).await,
        "filter did not match: data.total $gte 100 (got 42)"
    );
    assert_eq!(
        skip(
            &rt,
            &filter,
            at(r#"{"total":142.5,"country":"US"}"#),
            &config
        )
        .await,
        r#"filter did not match: $or: no branch matched (data.country $in ["DE","FR"] (got "US"); data.vip $eq true (missing))"#
    );
    // `output: data` delivers the event's own JSON text; `{}` matches everything.
    let request = deliver(
        &rt,
        &filter,
        filter_event(),
        r#"{"match":{},"output":"data"}"#,
    )
    .await;
    assert_eq!(text_body(&request), FILTER_DATA);
}

#[tokio::test]
async fn filter_refuses_invalid_configs_naming_the_problem() {
    let (rt, filter) = plugin("filter").await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"match": {"data.total": {"$gtt": 1}}}),
            "unknown operator `$gtt` on `data.total`",
        ),
        (
            json!({"match": {"data.country": {"$in": "DE"}}}),
            r#"`$in` on `data.country` needs a non-empty array of values, got "DE""#,
        ),
        (
            json!({"match": {"data.country": {"$in": []}}}),
            "`$in` on `data.country` needs a non-empty array of values, got []",
        ),
        (
            json!({"match": {"data.country": {"$nin": 3}}}),
            "`$nin` on `data.country` needs a non-empty array of values, got 3",
        ),
        (
            json!({"match": {"$or": []}}),
            "`match.$or` must be a non-empty array of conditions, got []",
        ),
        (
            json!({"match": {"$and": {"type": "x"}}}),
            "`match.$and` must be a non-empty array of conditions",
        ),
        (
            json!({"match": {"$or": [{"type": "x"}, 3]}}),
            "`match.$or[1]` must be an object of conditions, got 3",
        ),
        (
            json!({"match": {"data.total": {"$gt": true}}}),
            "`$gt` on `data.total` needs a number or a string, got true",
        ),
        (
            json!({"match": {"data.x": {"$exist": "yes"}}}),
            r#"`$exist` on `data.x` needs true or false, got "yes""#,
        ),
        (json!({"match": {"$eq": 1}}), "unknown key `$eq` in `match`"),
        (
            json!({"match": {"data..x": 1}}),
            "path `data..x` in `match` has an empty segment",
        ),
        (
            json!({"match": {"data.x": {"$eq": 1, "a": 2}}}),
            "`data.x` mixes operators and plain keys",
        ),
        (
            json!({"match": []}),
            "`match` must be an object of conditions, got []",
        ),
        (json!({}), "missing field `match`"),
        (
            json!({"match": {}, "ouput": "data"}),
            "unknown field `ouput`",
        ),
    ];
    for (config, expected) in cases {
        let message = refused(&rt, &filter, &config.to_string()).await;
        assert!(
            message.contains(expected),
            "{config}: {message:?} should contain {expected:?}"
        );
    }
}

#[tokio::test]
async fn reshape_readme_examples_are_reproduced_exactly() {
    let (rt, reshape) = plugin("reshape").await;
    let data = r#"{"title":"Hi","author":{"name":"Ann","id":7},"url":"https://x","draft":false}"#;
    let at = || event_at("evt_01J", "post.published", 1_795_446_245, data);
    let config = json!({
        "root": "data",
        "pick": ["title", "author.name", "url"],
        "rename": {"author.name": "author"},
        "set": {"source": "switchyard"}
    })
    .to_string();
    let request = deliver(&rt, &reshape, at(), &config).await;
    assert_eq!(
        json_body(&request),
        json!({"author": "Ann", "source": "switchyard", "title": "Hi", "url": "https://x"})
    );
    assert_eq!(
        text_body(&request),
        r#"{"author":"Ann","source":"switchyard","title":"Hi","url":"https://x"}"#
    );

    let config = json!({
        "pick": ["id", "type", "timestamp", "data.title", "data.author"],
        "drop": ["data.author.id"],
        "rename": {"data.author.name": "data.by"},
        "set": {"data.source": "switchyard"}
    })
    .to_string();
    let request = deliver(&rt, &reshape, at(), &config).await;
    assert_eq!(
        json_body(&request),
        json!({
            "data": {"by": "Ann", "source": "switchyard", "title": "Hi"},
            "id": "evt_01J",
            "timestamp": "2026-11-23T15:04:05Z",
            "type": "post.published"
        })
    );
    assert_eq!(
        text_body(&request),
        r#"{"data":{"by":"Ann","source":"switchyard","title":"Hi"},"id":"evt_01J","timestamp":"2026-11-23T15:04:05Z","type":"post.published"}"#
    );
}

#[tokio::test]
async fn reshape_each_step() {
    let (rt, reshape) = plugin("reshape").await;
    let data = json!({
        "title": "Hi",
        "author": {"name": "Ann", "id": 7},
        "items": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 2}, {"sku": "C", "qty": 3}],
        "draft": false
    });
    let envelope = json!({
        "id": "evt_01TEST", "type": "post.published", "timestamp": "2023-11-14T22:13:20Z", "data": data.clone()
    });
    let cases: Vec<(&str, Value, Value)> = vec![
        ("no config: the envelope", Value::Null, envelope.clone()),
        ("root data alone", json!({"root": "data"}), data.clone()),
        (
            "pick keeps nesting, array elements close ranks",
            json!({"pick": ["type", "data.author.name", "data.items.2.sku", "data.nope"]}),
            json!({"type": "post.published", "data": {"author": {"name": "Ann"}, "items": [{"sku": "C"}]}}),
        ),
        (
            "drop removes exactly what is named, in order",
            json!({"root": "data", "drop": ["author.id", "items.0", "items.0.qty", "draft", "nope"]}),
            json!({"title": "Hi", "author": {"name": "Ann"}, "items": [{"sku": "B"}, {"sku": "C", "qty": 3}]}),
        ),
        (
            "rename moves values and removes emptied objects",
            json!({"root": "data", "rename": {"author.name": "by.name", "author.id": "by.id", "title": "headline", "nope": "x"}}),
            json!({"headline": "Hi", "by": {"name": "Ann", "id": 7}, "items": data["items"].clone(), "draft": false}),
        ),
        (
            "set writes constants, creating objects on the way",
            json!({"set": {"data.source": "switchyard", "meta.version": 2, "data.author.name": null, "data.items.1.qty": 20}}),
            {
                let mut expected = envelope.clone();
                expected["data"]["source"] = json!("switchyard");
                expected["data"]["author"]["name"] = Value::Null;
                expected["data"]["items"][1]["qty"] = json!(20);
                expected["meta"] = json!({"version": 2});
                expected
            },
        ),
        (
            "all four steps in order",
            json!({"root": "data", "pick": ["title", "author"], "drop": ["author.id"], "rename": {"author.name": "author"}, "set": {"v": [1]}}),
            json!({"title": "Hi", "author": "Ann", "v": [1]}),
        ),
    ];
    for (what, config, expected) in cases {
        let config = config.to_string();
        assert_eq!(
            rt.validate_config(&reshape, &config).await,
            Ok(()),
            "{what}"
        );
        let request = deliver(
            &rt,
            &reshape,
            event("post.published", data.clone()),
            &config,
        )
        .await;
        assert_eq!(json_body(&request), expected, "{what}");
    }
}

#[tokio::test]
async fn reshape_refuses_bad_configs_and_fails_unsafe_writes() {
    let (rt, reshape) = plugin("reshape").await;
    let cases = [
        (r#"{"mode":"x"}"#, "unknown field `mode`"),
        (r#"{"root":"body"}"#, "body"),
        (r#"{"pick":[]}"#, "`pick` is empty"),
        (r#"{"pick":["title"]}"#, "title"),
        (r#"{"root":"data","drop":["a..b"]}"#, "a..b"),
        (
            r#"{"root":"data","rename":{"a":"a"}}"#,
            "`rename` moves `a` to itself",
        ),
        (r#"{"root":"data","rename":{"a":"a.b"}}"#, "a.b"),
    ];
    for (config, expected) in cases {
        let message = refused(&rt, &reshape, config).await;
        assert!(
            message.contains(expected),
            "{config}: {message:?} should contain {expected:?}"
        );
    }
    let report = rt
        .transform(
            &reshape,
            event("t", json!(5)),
            r#"{"root":"data","set":{"x":1}}"#,
        )
        .await;
    assert_eq!(
        report.result,
        Err(PluginError::Guest(
            "cannot write `x`: `x` would go inside a number".into()
        ))
    );
}

#[tokio::test]
async fn slack_truncation_keeps_text_after_a_bare_ampersand_of_the_template() {
    let (rt, slack) = plugin("slack").await;
    // The template's own `&` is not an entity: cutting must not fall back to it.
    let config = json!({"text": "R&D{{data.x}}"}).to_string();
    let data = json!({"x": "a".repeat(4000)});
    let body = json_body(&deliver(&rt, &slack, event("t", data), &config).await);
    let text = body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(text, format!("R&D{}…", "a".repeat(2996)));
    // An entity of the data cut in half is still dropped whole.
    let config = json!({"text": "{{data.x}}"}).to_string();
    let data = json!({"x": format!("{}&{}", "a".repeat(2997), "b".repeat(10))});
    let body = json_body(&deliver(&rt, &slack, event("t", data), &config).await);
    let text = body["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(text, format!("{}…", "a".repeat(2997)));
}
