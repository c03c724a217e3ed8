//! One QuickJS runtime per call: evaluate the subscription's source, call its `transform`.

use rquickjs::context::EvalOptions;
use rquickjs::context::intrinsic::{Date, Eval, Json, MapSet, RegExp, RegExpCompiler};
use rquickjs::prelude::Rest;
use rquickjs::{
    CatchResultExt, CaughtError, Coerced, Context, Ctx, Function, Object, Runtime, Value,
};
use switchyard_plugin_sdk::Level;

/// QuickJS's own heap limit. Below the sandbox's default 32 MiB of linear memory (which also
/// holds the engine, its stack and the call's buffers), so a script that allocates without
/// end gets a JavaScript `InternalError: out of memory` it can read in the attempt, instead of
/// the instance being stopped. With a lower sandbox limit, allocation fails earlier and
/// QuickJS reports the same error.
const JS_MEMORY: usize = 24 << 20;

/// QuickJS's stack limit. Natively QuickJS stops runaway recursion with `RangeError: Maximum
/// call stack size exceeded` at this depth. In the component its check never fires first:
/// wasm's own call stack (512 KiB by default) overflows before QuickJS's C stack (in linear
/// memory) reaches even 4 KiB (tried 128, 48, 16 and 4 KiB), so the host stops the call with
/// its stack-overflow error instead: the attempt fails, nothing else is affected.
const JS_STACK: usize = 128 << 10;

/// The file name errors point at (`transform.js:3:7`).
const FILE: &str = "transform.js";

/// What `transform` decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// `["skip", reason]`
    Skip(String),
    /// `["deliver", body, content type, headers]`
    Deliver {
        body: String,
        content_type: String,
        headers: Vec<(String, String)>,
    },
}

/// A runtime and context made ahead of the call (see [`prepare`]); one call takes it.
type Warm = (Runtime, Context);

thread_local! {
    /// Set only by [`prepare`], which the host runs once before it snapshots the component
    /// (pre-initialisation): each call then starts from a memory image in which the runtime
    /// and the context already exist, and skips the ~40% of a call their creation costs. Every
    /// call still gets its own fresh instance, so no call sees another's context.
    static WARM: std::cell::RefCell<Option<Warm>> = const { std::cell::RefCell::new(None) };
}

/// Creates the runtime and context for the next call. Run by the component's
/// `wizer-initialize` export, before the host snapshots the instance.
pub(crate) fn prepare() {
    let warm = fresh().ok();
    WARM.with(|slot| *slot.borrow_mut() = warm);
}

/// A new runtime with only what a transform needs: no `std`/`os` modules, no timers, no
/// module loader. `Context::full` would add Promise, Proxy, typed arrays, WeakRef… at twice
/// the cost of setting up this one.
fn fresh() -> Result<Warm, String> {
    let runtime = Runtime::new().map_err(|e| format!("QuickJS: {e}"))?;
    runtime.set_memory_limit(JS_MEMORY);
    runtime.set_max_stack_size(JS_STACK);
    let context = Context::custom::<(Eval, Json, Date, RegExpCompiler, RegExp, MapSet)>(&runtime)
        .map_err(|e| format!("QuickJS: {e}"))?;
    Ok((runtime, context))
}

/// Runs `f` in the prepared runtime if there is one (a pre-initialised component's first and
/// only call), else in a fresh one.
fn with_context<R>(f: impl FnOnce(&Ctx<'_>) -> Result<R, String>) -> Result<R, String> {
    let (_runtime, context) = match WARM.with(|slot| slot.borrow_mut().take()) {
        Some(warm) => warm,
        None => fresh()?,
    };
    context.with(|ctx| f(&ctx))
}

/// The key of the object `skip(reason)` returns.
const SKIP_KEY: &str = "__switchyard_skip";

/// The keys of the delivery form `{body, headers, content_type}`.
const REPLY_KEYS: [&str; 3] = ["body", "headers", "content_type"];

/// Defines the globals `skip` and `console`, evaluates `source`, and returns its `transform`.
///
/// The globals are Rust functions rather than a JavaScript prelude: evaluating even a short
/// prelude on every call cost about as much as creating the whole context.
fn load<'js>(ctx: &Ctx<'js>, source: &str) -> Result<Function<'js>, String> {
    let qjs = |e: rquickjs::Error| format!("QuickJS: {e}");
    let skip = Function::new(ctx.clone(), |ctx: Ctx<'js>, reason: Coerced<String>| {
        let marker = Object::new(ctx)?;
        marker.set(SKIP_KEY, reason.0)?;
        rquickjs::Result::Ok(marker)
    })
    .map_err(qjs)?;
    let console = Object::new(ctx.clone()).map_err(qjs)?;
    for (name, level) in [
        ("debug", Level::Debug),
        ("log", Level::Info),
        ("info", Level::Info),
        ("warn", Level::Warn),
        ("error", Level::Error),
    ] {
        let log = Function::new(ctx.clone(), move |args: Rest<Value<'js>>| {
            let line: Vec<String> = args.0.iter().map(text).collect();
            crate::log_line(level, &line.join(" "));
        })
        .map_err(qjs)?;
        console.set(name, log).map_err(qjs)?;
    }
    let globals = ctx.globals();
    globals.set("skip", skip).map_err(qjs)?;
    globals.set("console", console).map_err(qjs)?;
    let mut options = EvalOptions::default();
    options.filename = Some(FILE.into());
    ctx.eval_with_options::<(), _>(source, options)
        .catch(ctx)
        .map_err(|e| describe(&e))?;
    // `transform` may be a function declaration or a top-level `const`/`let`, which is not a
    // property of the global object: ask the global scope.
    let transform: Value = ctx
        .eval("typeof transform === 'function' ? transform : undefined")
        .catch(ctx)
        .map_err(|e| describe(&e))?;
    transform
        .into_function()
        .ok_or_else(|| "the source must define function transform(event, config)".to_owned())
}

/// Checks `source` as a subscription is created or changed: it must parse, run its top level
/// and define `transform`.
pub(crate) fn check(source: &str) -> Result<(), String> {
    with_context(|ctx| load(ctx, source).map(drop))
}

/// Runs `transform(event, config)` with both given as JSON text.
pub(crate) fn run(source: &str, event: &str, config: &str) -> Result<Decision, String> {
    with_context(|ctx| {
        let transform = load(ctx, source)?;
        let parse = |json: &str, what: &str| {
            ctx.json_parse(json)
                .catch(ctx)
                .map_err(|e| format!("{what}: {}", describe(&e)))
        };
        let (event, config) = (parse(event, "event")?, parse(config, "config")?);
        let out: Value = transform
            .call((event, config))
            .catch(ctx)
            .map_err(|e| describe(&e))?;
        decision(ctx, out)
    })
}

/// `null`/`undefined` and `skip(…)` skip; the delivery form is taken apart; anything else is
/// the JSON body.
fn decision<'js>(ctx: &Ctx<'js>, out: Value<'js>) -> Result<Decision, String> {
    if out.is_null() || out.is_undefined() {
        return Ok(Decision::Skip(format!(
            "transform returned {}",
            out.type_name()
        )));
    }
    let Some(object) = out
        .as_object()
        .filter(|_| !out.is_array() && !out.is_function())
    else {
        return json_body(ctx, out, None, Vec::new());
    };
    let keys: Vec<String> = object
        .keys::<String>()
        .collect::<rquickjs::Result<_>>()
        .map_err(|e| format!("QuickJS: {e}"))?;
    if keys == [SKIP_KEY] {
        let reason: Coerced<String> = object.get(SKIP_KEY).map_err(|e| format!("skip: {e}"))?;
        return Ok(Decision::Skip(reason.0));
    }
    let is_reply =
        keys.iter().any(|k| k == "body") && keys.iter().all(|k| REPLY_KEYS.contains(&k.as_str()));
    if !is_reply {
        return json_body(ctx, out, None, Vec::new());
    }
    let get = |key: &str| {
        object
            .get::<_, Value>(key)
            .map_err(|e| format!("{key}: {e}"))
    };
    let body = get("body")?;
    if body.is_null() || body.is_undefined() {
        return Ok(Decision::Skip(format!(
            "transform returned a {} body",
            body.type_name()
        )));
    }
    let content_type = get("content_type")?;
    let content_type = if content_type.is_undefined() {
        None
    } else {
        Some(string(&content_type).ok_or("content_type must be a string")?)
    };
    let headers = get("headers")?;
    let headers = if headers.is_undefined() {
        Vec::new()
    } else {
        let object = headers
            .as_object()
            .filter(|_| !headers.is_array() && !headers.is_function())
            .ok_or("headers must be an object of strings")?;
        object
            .props::<String, Value>()
            .map(|prop| {
                let (name, value) = prop.map_err(|e| format!("headers: {e}"))?;
                let value =
                    string(&value).ok_or_else(|| format!("header {name} must be a string"))?;
                Ok((name, value))
            })
            .collect::<Result<_, String>>()?
    };
    if let Some(text) = string(&body) {
        return Ok(Decision::Deliver {
            body: text,
            content_type: content_type.unwrap_or_else(|| "text/plain; charset=utf-8".into()),
            headers,
        });
    }
    json_body(ctx, body, content_type, headers)
}

/// The body as `JSON.stringify` gives it.
fn json_body<'js>(
    ctx: &Ctx<'js>,
    body: Value<'js>,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
) -> Result<Decision, String> {
    let kind = body.type_name();
    let json = ctx
        .json_stringify(body)
        .catch(ctx)
        .map_err(|e| describe(&e))?
        .and_then(|s| s.to_string().ok())
        .ok_or_else(|| format!("transform returned a {kind}, which has no JSON form"))?;
    Ok(Decision::Deliver {
        body: json,
        content_type: content_type.unwrap_or_else(|| "application/json".into()),
        headers,
    })
}

fn string(v: &Value<'_>) -> Option<String> {
    v.as_string().and_then(|s| s.to_string().ok())
}

/// A `console` argument as text: strings as they are, anything else as JSON.
fn text(v: &Value<'_>) -> String {
    string(v)
        .or_else(|| {
            v.ctx()
                .json_stringify(v.clone())
                .ok()
                .flatten()
                .and_then(|s| s.to_string().ok())
        })
        .unwrap_or_else(|| v.type_name().to_owned())
}

/// `TypeError: x is not a function (at transform.js:3:12)`: the error and where it happened.
fn describe(error: &CaughtError<'_>) -> String {
    match error {
        CaughtError::Exception(e) => {
            let name: String = e.get("name").unwrap_or_else(|_| "Error".into());
            let message = e.message().unwrap_or_default();
            let at = e
                .stack()
                .and_then(|s| {
                    s.lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .map(str::to_owned)
                })
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            format!("{name}: {message}{at}")
        }
        CaughtError::Value(v) => {
            let text = v
                .as_string()
                .and_then(|s| s.to_string().ok())
                .or_else(|| {
                    v.ctx()
                        .json_stringify(v.clone())
                        .ok()
                        .flatten()
                        .and_then(|s| s.to_string().ok())
                })
                .unwrap_or_else(|| format!("{:?}", v.type_of()));
            format!("uncaught {text}")
        }
        CaughtError::Error(e) => format!("QuickJS: {e}"),
    }
}
