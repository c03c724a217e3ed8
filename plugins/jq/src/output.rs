//! Running a compiled program on one envelope and turning its output into an [`Outcome`].

use jaq_core::{Ctx, Vars};
use jaq_json::Val;
use switchyard_plugin_sdk::Outcome;

use crate::natives::Data;
use crate::program::Program;

/// The key `skip("why")` raises its error with (see `src/prelude.jq`).
const SKIP_KEY: &[u8] = b"__switchyard_skip";

/// The keys of the delivery form `{body, headers, content_type}`.
const REPLY_KEYS: [&[u8]; 3] = [b"body", b"headers", b"content_type"];

/// Runs `program` on `input` with `$args` = `args`.
///
/// # Errors
/// A runtime error of the program, more than one output, or an output that is not a valid
/// delivery.
pub(crate) fn run(program: &Program, input: Val, args: Val) -> Result<Outcome, String> {
    let ctx = Ctx::<Data>::new(&program.lut, Vars::new([args]));
    let mut outputs = program.id.run((ctx, input));
    let first = match outputs.next() {
        None => return Ok(Outcome::skip("the jq program produced no output")),
        Some(first) => value(first)?,
    };
    let first = match first {
        Ran::Skip(reason) => return Ok(Outcome::skip(reason)),
        Ran::Value(v) => v,
    };
    // One event is one delivery: a second output is a mistake, not a second request.
    if let Some(second) = outputs.next() {
        if let Ran::Skip(reason) = value(second)? {
            return Ok(Outcome::skip(reason));
        }
        return Err("the jq program produced more than one output; a delivery has one body (collect them into an array with [ … ])".into());
    }
    outcome(first)
}

enum Ran {
    Value(Val),
    Skip(String),
}

fn value(result: jaq_core::ValX<'_, Val>) -> Result<Ran, String> {
    let error = match result {
        Ok(v) => return Ok(Ran::Value(v)),
        // `halt` is not linked; anything else that is not an error is a jaq internal.
        Err(exn) => exn
            .get_err()
            .map_err(|_| "the jq program stopped without an error value".to_owned())?,
    };
    match error.into_val() {
        Val::Obj(o) if o.len() == 1 => match o.iter().next() {
            Some((key, reason)) if text(key) == Some(SKIP_KEY) => Ok(Ran::Skip(match reason {
                Val::TStr(s) => String::from_utf8_lossy(s).into_owned(),
                other => other.to_string(),
            })),
            _ => Err(format!("jq program error: {}", Val::Obj(o))),
        },
        Val::TStr(s) => Err(format!("jq program error: {}", String::from_utf8_lossy(&s))),
        other => Err(format!("jq program error: {other}")),
    }
}

/// The bytes of a text string.
fn text(v: &Val) -> Option<&[u8]> {
    match v {
        Val::TStr(s) => Some(s),
        _ => None,
    }
}

/// `null` skips; the delivery form is taken apart; anything else is the JSON body.
fn outcome(v: Val) -> Result<Outcome, String> {
    let Val::Obj(o) = &v else {
        return plain(v);
    };
    let is_reply = o.contains_key(&Val::utf8_str("body"))
        && o.keys()
            .all(|k| text(k).is_some_and(|k| REPLY_KEYS.contains(&k)));
    if !is_reply {
        return plain(v);
    }
    let mut content_type = None;
    let mut headers = Vec::new();
    let mut body = Val::Null;
    for (key, value) in o.iter() {
        match text(key) {
            Some(b"body") => body = value.clone(),
            Some(b"content_type") => match value {
                Val::TStr(s) => content_type = Some(String::from_utf8_lossy(s).into_owned()),
                other => return Err(format!("content_type must be a string, got {other}")),
            },
            _ => headers = header_list(value)?,
        }
    }
    let (bytes, default_type) = match body {
        Val::Null => return Ok(Outcome::skip("the jq program returned a null body")),
        Val::TStr(s) => (s.to_vec(), "text/plain; charset=utf-8"),
        other => (json(&other)?, "application/json"),
    };
    let content_type = content_type.unwrap_or_else(|| default_type.to_owned());
    let mut outcome = Outcome::body(bytes, &content_type);
    for (name, value) in &headers {
        outcome = outcome.with_header(name, value);
    }
    Ok(outcome)
}

fn plain(v: Val) -> Result<Outcome, String> {
    if matches!(v, Val::Null) {
        return Ok(Outcome::skip("the jq program returned null"));
    }
    Ok(Outcome::body(json(&v)?, "application/json"))
}

/// `headers` is an object of strings.
fn header_list(v: &Val) -> Result<Vec<(String, String)>, String> {
    let Val::Obj(o) = v else {
        return Err(format!("headers must be an object of strings, got {v}"));
    };
    o.iter()
        .map(|(name, value)| match (name, value) {
            (Val::TStr(n), Val::TStr(v)) => Ok((
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )),
            (n, v) => Err(format!("header {n} must be a string, got {v}")),
        })
        .collect()
}

/// Compact JSON. jaq prints values JSON has no form for (NaN, infinities, byte strings) in
/// its own notation; a receiver expecting JSON must not get those.
fn json(v: &Val) -> Result<Vec<u8>, String> {
    let text = v.to_string();
    serde_json::from_str::<serde::de::IgnoredAny>(&text).map_err(|_| {
        format!("the jq program's output is not valid JSON (NaN, infinite numbers and byte strings have no JSON form): {}", truncate(&text))
    })?;
    Ok(text.into_bytes())
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::tests::{Delivered, event, run};

    fn outcome(program: &str) -> Result<Delivered, String> {
        run(
            Value::String(program.into()),
            &event("post.published", r#"{"n": 1}"#),
        )
    }

    #[test]
    fn null_empty_and_skip_skip_with_a_reason() {
        assert_eq!(
            outcome("null"),
            Err("skip: the jq program returned null".into())
        );
        assert_eq!(
            outcome("empty"),
            Err("skip: the jq program produced no output".into())
        );
        assert_eq!(
            outcome(r#"skip("not today")"#),
            Err("skip: not today".into())
        );
        assert_eq!(
            outcome(r#"{body: null}"#),
            Err("skip: the jq program returned a null body".into())
        );
        assert_eq!(
            outcome(r#"if .data.n == 1 then skip("one: \(.data.n)") else . end"#),
            Err("skip: one: 1".into())
        );
        // skip ends a stream too
        assert_eq!(outcome(r#"1, skip("later")"#), Err("skip: later".into()));
    }

    #[test]
    fn the_delivery_form_sets_headers_and_content_type() {
        assert_eq!(
            outcome(r#"{body: "hi \(.data.n)", headers: {"x-one": "1"}}"#),
            Ok((
                "text/plain; charset=utf-8".into(),
                vec![("x-one".into(), "1".into())],
                "hi 1".into()
            ))
        );
        assert_eq!(
            outcome(r#"{body: {a: 1}, content_type: "application/vnd.x+json"}"#),
            Ok(("application/vnd.x+json".into(), vec![], r#"{"a":1}"#.into()))
        );
        // Not the delivery form: another key, or no `body`. Sent as the JSON itself.
        for program in [
            r#"{body: 1, extra: 2}"#,
            r#"{headers: {}}"#,
            r#"{"content_type": "x"}"#,
        ] {
            let (ct, _, body) = outcome(program).unwrap_or_else(|e| panic!("{program}: {e}"));
            assert_eq!(ct, "application/json");
            assert!(body.starts_with('{'), "{body}");
        }
        // How to send a body that looks like the delivery form: wrap it.
        assert_eq!(
            outcome(r#"{body: {body: "x"}}"#).map(|r| r.2),
            Ok(r#"{"body":"x"}"#.into())
        );
    }

    #[test]
    fn bad_outputs_are_errors() {
        let err = |p: &str| outcome(p).err().unwrap_or_else(|| panic!("{p} delivered"));
        assert!(err("1, 2").contains("more than one output"));
        assert!(err("nan").contains("not valid JSON"));
        assert!(err("[infinite]").contains("not valid JSON"));
        assert!(err(r#"{body: 1, headers: {"x": 1}}"#).contains("must be a string"));
        assert!(err(r#"{body: 1, headers: []}"#).contains("must be an object"));
        assert!(err(r#"{body: 1, content_type: 3}"#).contains("content_type must be a string"));
        assert_eq!(err(r#"error("boom")"#), "jq program error: boom");
        assert_eq!(err(r#"error({a: 1})"#), r#"jq program error: {"a":1}"#);
        assert!(err(".data.n | ascii_downcase").starts_with("jq program error:"));
    }

    /// The native `join` (see build.rs) gives what jaq's prelude definition gives.
    #[test]
    fn native_join_matches_the_prelude_definition() {
        let prelude =
            r#"def pjoin($s): .[] |= tostring | .[:-1][] += $s | reduce .[] as $x (""; . + $x);"#;
        for input in [
            r#"["a", "b"]"#,
            "[]",
            r#"["x"]"#,
            r#"[1, null, true, {"a": 1}, [2], 1.50, "é"]"#,
        ] {
            for sep in [r#"", ""#, r#""""#, r#""&amp;""#] {
                let native = outcome(&format!("{input} | join({sep})"));
                let defined = outcome(&format!("{prelude} {input} | pjoin({sep})"));
                assert_eq!(native, defined, "{input} | join({sep})");
                assert!(native.is_ok());
            }
        }
        for bad in [
            r#""ab" | join(",")"#,
            r#"{"a": "b"} | join(",")"#,
            r#"["a"] | join(1)"#,
        ] {
            assert!(outcome(bad).is_err(), "{bad}");
        }
        assert_eq!(
            outcome(r#"["it's", "x"] | @sh"#).map(|r| r.2),
            Ok(r#""'it'\\''s' 'x'""#.into())
        );
    }

    #[test]
    fn keeps_the_programs_key_order_and_numbers() {
        let program = r#"{z: 1, a: .data.n, m: 1.10, big: 100000000000000000000001}"#;
        assert_eq!(
            outcome(program).map(|r| r.2),
            Ok(r#"{"z":1,"a":1,"m":1.10,"big":100000000000000000000001}"#.into())
        );
    }
}
