//! Switchyard `js` plugin: the subscription's config is JavaScript source defining
//! `transform(event, config)`, run by QuickJS (rquickjs) compiled into the component. No
//! toolchain, no upload: edit the source with a PATCH.
//!
//! Config: the source as a JSON string, or `{"source": "…", "config": {…}}` (`config` is the
//! second argument, `{}` without). `transform` returns the body (any JSON value), `null` /
//! `undefined` or `skip("why")` to skip, or `{body, headers, content_type}` to spell the
//! delivery out. The source is evaluated when a subscription is created or changed, so a
//! syntax error is refused with a 422 naming `transform.js:line:column`. See README.md.

// Natively (unit tests, `cargo test --workspace`) the plugin glue below is unused: see the
// `export_plugin!` call at the end.
#![cfg_attr(not(target_family = "wasm"), allow(dead_code))]

mod engine;

use serde::Deserialize;
use serde_json::Value;
use switchyard_plugin_sdk::envelope::envelope_text as envelope;
use switchyard_plugin_sdk::{Error, Event, Level, Outcome, Plugin};

use crate::engine::Decision;

/// The subscription's `plugin_config`: the source, and the JSON text of `config`.
#[derive(Debug, Deserialize)]
#[serde(try_from = "Value")]
struct Config {
    source: String,
    config: String,
}

impl TryFrom<Value> for Config {
    type Error = String;

    fn try_from(value: Value) -> Result<Self, String> {
        const SHAPE: &str = "the js plugin's config is JavaScript defining transform(event, config): a JSON string, or {\"source\": \"…\", \"config\": {…}}";
        let (source, config) = match value {
            Value::String(source) => (source, Value::Object(Default::default())),
            Value::Object(mut fields) => {
                let source = match fields.remove("source") {
                    Some(Value::String(source)) => source,
                    Some(_) => return Err("`source` must be a string".into()),
                    None => return Err(format!("missing `source`: {SHAPE}")),
                };
                let config = fields
                    .remove("config")
                    .unwrap_or_else(|| Value::Object(Default::default()));
                if let Some(key) = fields.keys().next() {
                    return Err(format!("unknown key `{key}`: {SHAPE}"));
                }
                (source, config)
            }
            _ => return Err(SHAPE.into()),
        };
        Ok(Self {
            source,
            config: config.to_string(),
        })
    }
}

/// The plugin.
struct Js;

impl Plugin for Js {
    type Config = Config;

    fn transform(event: Event, config: Config) -> Result<Outcome, Error> {
        transform(&event, &config)
    }

    fn validate_config(config: &Config) -> Result<(), Error> {
        engine::check(&config.source).map_err(Error::msg)
    }
}

fn transform(event: &Event, config: &Config) -> Result<Outcome, Error> {
    let decision =
        engine::run(&config.source, &envelope(event)?, &config.config).map_err(Error::msg)?;
    Ok(match decision {
        Decision::Skip(reason) => Outcome::skip(reason),
        Decision::Deliver {
            body,
            content_type,
            headers,
        } => headers
            .iter()
            .fold(Outcome::body(body, &content_type), |o, (n, v)| {
                o.with_header(n, v)
            }),
    })
}

/// A line in the plugin's log: the host's in a component, a buffer natively.
fn log_line(level: Level, message: &str) {
    #[cfg(target_family = "wasm")]
    switchyard_plugin_sdk::bindings::switchyard::plugin::host::log(level, message);
    #[cfg(not(target_family = "wasm"))]
    NATIVE_LOG.with(|log| log.borrow_mut().push((level, message.to_owned())));
}

#[cfg(not(target_family = "wasm"))]
thread_local! {
    /// What `log_line` wrote natively (unit tests read it).
    static NATIVE_LOG: std::cell::RefCell<Vec<(Level, String)>> = const { std::cell::RefCell::new(Vec::new()) };
}

// Only a wasm build exports the component: natively the cdylib cannot link the export names
// (they contain `:`), and there is no host to call them anyway.
#[cfg(target_family = "wasm")]
switchyard_plugin_sdk::export_plugin!(Js);

/// The `wizer-initialize` export: a component export of its own, merged into the component
/// beside the plugin world's. The host calls it once and snapshots the instance (see
/// `host/src/plugins/preinit.rs`); a host that does not simply never calls it.
#[cfg(target_family = "wasm")]
#[allow(unsafe_code)] // the generated export is canonical-ABI glue, unsafe by nature
mod preinit {
    switchyard_plugin_sdk::__wit_bindgen::generate!({
        inline: "package switchyard:js-preinit; world preinit { export wizer-initialize: func(); }",
        runtime_path: "switchyard_plugin_sdk::__wit_bindgen::rt",
    });

    struct Preinit;

    impl Guest for Preinit {
        fn wizer_initialize() {
            crate::engine::prepare();
        }
    }

    export!(Preinit);
}

#[cfg(test)]
mod readme;

#[cfg(test)]
mod tests {
    use super::*;

    /// `(content type, headers, body)` of a delivery.
    pub(crate) type Delivered = (String, Vec<(String, String)>, String);

    pub(crate) fn event(event_type: &str, data: &str) -> Event {
        Event {
            id: "evt_01J".into(),
            event_type: event_type.into(),
            timestamp: 1_795_446_245,
            subscription_id: "sub_1".into(),
            payload: data.into(),
        }
    }

    /// `Ok((content type, headers, body))` on a delivery, `Err("skip: …")` or the error.
    fn run(config: Value) -> Result<Delivered, String> {
        let config = Config::try_from(config)?;
        match transform(
            &event("post.published", r#"{"n": 1, "tags": ["a", "b"]}"#),
            &config,
        )
        .map_err(|e| e.message().to_owned())?
        {
            Outcome::Deliver(d) => Ok((
                d.content_type,
                d.headers,
                String::from_utf8(d.body).map_err(|e| e.to_string())?,
            )),
            Outcome::Skip(reason) => Err(format!("skip: {reason}")),
        }
    }

    fn src(source: &str) -> Result<Delivered, String> {
        run(Value::String(source.into()))
    }

    fn body(source: &str) -> String {
        match src(source) {
            Ok((content_type, headers, body)) => {
                assert_eq!(content_type, "application/json");
                assert!(headers.is_empty());
                body
            }
            Err(e) => panic!("{source}: {e}"),
        }
    }

    #[test]
    fn sees_the_envelope_and_the_config() {
        assert_eq!(
            body("function transform(e) { return e }"),
            r#"{"id":"evt_01J","type":"post.published","timestamp":"2026-11-23T15:04:05Z","data":{"n":1,"tags":["a","b"]}}"#
        );
        assert_eq!(
            body("const transform = (e) => new Date(e.timestamp).getTime() / 1000"),
            "1795446245"
        );
        let with_config = serde_json::json!({
            "source": "function transform(e, c) { return {to: c.to, tags: e.data.tags.map(t => t.toUpperCase())} }",
            "config": {"to": "#ops"},
        });
        assert_eq!(
            run(with_config).map(|r| r.2),
            Ok(r##"{"to":"#ops","tags":["A","B"]}"##.into())
        );
        assert_eq!(body("function transform(e, c) { return c }"), "{}");
        assert_eq!(
            body(
                "function transform(e) { return 'x'.replace(/x/g, 'y') + new Map([[1, 2]]).size }"
            ),
            r#""y1""#
        );
    }

    #[test]
    fn null_undefined_and_skip_skip_with_a_reason() {
        assert_eq!(
            src("function transform() { return null }"),
            Err("skip: transform returned null".into())
        );
        assert_eq!(
            src("function transform() {}"),
            Err("skip: transform returned undefined".into())
        );
        assert_eq!(
            src("function transform(e) { return skip(`not ${e.data.n}`) }"),
            Err("skip: not 1".into())
        );
        assert_eq!(
            src("function transform() { return {body: null} }"),
            Err("skip: transform returned a null body".into())
        );
    }

    #[test]
    fn the_delivery_form_sets_headers_and_content_type() {
        assert_eq!(
            src("function transform(e) { return {body: `n=${e.data.n}`, headers: {'x-n': '1'}} }"),
            Ok((
                "text/plain; charset=utf-8".into(),
                vec![("x-n".into(), "1".into())],
                "n=1".into()
            ))
        );
        assert_eq!(
            src(
                "function transform() { return {body: {a: 1}, content_type: 'application/x+json'} }"
            ),
            Ok(("application/x+json".into(), vec![], r#"{"a":1}"#.into()))
        );
        assert_eq!(
            body("function transform() { return {body: 1, other: 2} }"),
            r#"{"body":1,"other":2}"#
        );
        assert_eq!(
            body("function transform() { return {headers: {}} }"),
            r#"{"headers":{}}"#
        );
        assert_eq!(
            body("function transform() { return {body: {body: 'x'}} }"),
            r#"{"body":"x"}"#
        );
    }

    #[test]
    fn errors_say_what_and_where() {
        let err = |s: &str| src(s).err().unwrap_or_else(|| panic!("{s} delivered"));
        let e = err("function transform(e) {\n  return e.data.nope.x;\n}");
        assert!(
            e.starts_with("TypeError: cannot read property 'x' of undefined"),
            "{e}"
        );
        assert!(e.contains("transform.js:2"), "{e}");
        assert!(err("function transform() { throw new Error('boom') }").starts_with("Error: boom"));
        assert_eq!(
            err("function transform() { throw 'plain' }"),
            "uncaught plain"
        );
        assert!(err("function transform() { return () => 1 }").contains("no JSON form"));
        assert!(
            err("function transform() { return {body: 1, headers: {a: 1}} }")
                .contains("header a must be a string")
        );
        assert!(
            err("function transform() { return 1n }").contains("BigInt"),
            "{}",
            err("function transform() { return 1n }")
        );
        assert_eq!(
            err("const x = 1;"),
            "the source must define function transform(event, config)"
        );
    }

    #[test]
    fn validate_config_refuses_syntax_errors_with_a_position() {
        let validate = |source: &str| {
            let config = Config::try_from(Value::String(source.into()))?;
            Js::validate_config(&config).map_err(|e| e.message().to_owned())
        };
        assert_eq!(validate("function transform(e) { return e }"), Ok(()));
        let e = validate("function transform(e) {\n  return {a: };\n}")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("SyntaxError: "), "{e}");
        assert!(e.contains("transform.js:2:"), "{e}");
        assert!(validate("var transform = 1").is_err());
        assert!(validate("throw new Error('top level')").is_err_and(|e| e.contains("top level")));
        for bad in [
            "null",
            "1",
            "{}",
            r#"{"source": 1}"#,
            r#"{"source": "", "x": 1}"#,
        ] {
            let value: Value = serde_json::from_str(bad).unwrap_or_default();
            assert!(Config::try_from(value).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn console_goes_to_the_log() {
        NATIVE_LOG.with(|log| log.borrow_mut().clear());
        body(
            "function transform(e) { console.log('n is', e.data.n, {a: 1}); console.warn('w'); console.debug('d'); return 1 }",
        );
        let logged = NATIVE_LOG.with(|log| log.borrow().clone());
        assert_eq!(
            logged,
            [
                (Level::Info, r#"n is 1 {"a":1}"#.to_owned()),
                (Level::Warn, "w".to_owned()),
                (Level::Debug, "d".to_owned())
            ]
        );
    }

    #[test]
    /// Natively QuickJS catches both itself (in the component, recursion hits the wasm stack
    /// first: see `JS_STACK` and the end-to-end test).
    fn runaway_memory_and_recursion_are_javascript_errors() {
        let err = |s: &str| src(s).err().unwrap_or_else(|| panic!("{s} delivered"));
        let e = err(
            "function transform() { const keep = []; for (;;) keep.push('x'.repeat(1 << 22)); }",
        );
        assert!(e.contains("out of memory"), "{e}");
        let e = err("function f(n) { return f(n + 1) + 1 } function transform() { return f(0) }");
        assert!(e.starts_with("RangeError"), "{e}");
    }
}
