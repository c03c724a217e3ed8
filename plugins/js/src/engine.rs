//! One QuickJS runtime per call: evaluate the subscription's source, call its `transform`.

use rquickjs::context::EvalOptions;
use rquickjs::context::intrinsic::{Date, Eval, Json, MapSet, RegExp, RegExpCompiler};
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Runtime, Value};
use switchyard_plugin_sdk::Level;

/// QuickJS's own heap limit. Below the sandbox's default 32 MiB of linear memory (which also
/// holds the engine, its stack and the call's buffers), so a script that allocates without
/// end gets a JavaScript `InternalError: out of memory` it can read in the attempt, instead of
/// the instance being stopped. With a lower sandbox limit, allocation fails earlier and
/// QuickJS reports the same error.
const JS_MEMORY: usize = 24 << 20;

/// QuickJS's stack limit. JavaScript recursion uses QuickJS's C stack (in linear memory) and
/// wasm's own call stack (512 KiB by default, trapped by the host); at this size QuickJS stops
/// first with `RangeError: Maximum call stack size exceeded`.
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

/// Runs `f` in a fresh runtime with only what a transform needs: no `std`/`os` modules, no
/// timers, no module loader. `Context::full` would add Promise, Proxy, typed arrays, WeakRef…
/// at twice the cost of setting up this one.
fn with_context<R>(f: impl FnOnce(&Ctx<'_>) -> Result<R, String>) -> Result<R, String> {
    let runtime = Runtime::new().map_err(|e| format!("QuickJS: {e}"))?;
    runtime.set_memory_limit(JS_MEMORY);
    runtime.set_max_stack_size(JS_STACK);
    let context = Context::custom::<(Eval, Json, Date, RegExpCompiler, RegExp, MapSet)>(&runtime)
        .map_err(|e| format!("QuickJS: {e}"))?;
    context.with(|ctx| f(&ctx))
}

/// Evaluates the prelude and `source`; returns the wrapper and the user's `transform`.
fn load<'js>(ctx: &Ctx<'js>, source: &str) -> Result<(Function<'js>, Function<'js>), String> {
    let log = Function::new(ctx.clone(), |level: i32, message: String| {
        crate::log_line(level_of(level), &message);
    })
    .map_err(|e| format!("QuickJS: {e}"))?;
    ctx.globals()
        .set("__switchyard_log", log)
        .map_err(|e| format!("QuickJS: {e}"))?;
    let wrapper: Function = ctx
        .eval(include_str!("prelude.js"))
        .catch(ctx)
        .map_err(|e| format!("prelude: {}", describe(&e)))?;
    let mut options = EvalOptions::default();
    options.filename = Some(FILE.into());
    ctx.eval_with_options::<(), _>(source, options)
        .catch(ctx)
        .map_err(|e| describe(&e))?;
    let transform: Value = ctx
        .eval("typeof transform === 'function' ? transform : undefined")
        .catch(ctx)
        .map_err(|e| describe(&e))?;
    let transform = transform
        .into_function()
        .ok_or("the source must define function transform(event, config)")?;
    Ok((wrapper, transform))
}

/// Checks `source` as a subscription is created or changed: it must parse, run its top level
/// and define `transform`.
pub(crate) fn check(source: &str) -> Result<(), String> {
    with_context(|ctx| load(ctx, source).map(drop))
}

/// Runs `transform(event, config)` with both given as JSON text.
pub(crate) fn run(source: &str, event: &str, config: &str) -> Result<Decision, String> {
    with_context(|ctx| {
        let (wrapper, transform) = load(ctx, source)?;
        let parse = |json: &str, what: &str| {
            ctx.json_parse(json)
                .catch(ctx)
                .map_err(|e| format!("{what}: {}", describe(&e)))
        };
        let (event, config) = (parse(event, "event")?, parse(config, "config")?);
        let result: Vec<Value> = wrapper
            .call((transform, event, config))
            .catch(ctx)
            .map_err(|e| describe(&e))?;
        decision(result)
    })
}

/// Reads the wrapper's `["skip", reason]` / `["deliver", body, type, headers]`.
fn decision(result: Vec<Value<'_>>) -> Result<Decision, String> {
    let string = |v: &Value| -> Result<String, String> {
        v.as_string()
            .and_then(|s| s.to_string().ok())
            .ok_or_else(|| "the prelude returned a non-string".to_owned())
    };
    match result.as_slice() {
        [kind, reason] if string(kind)? == "skip" => Ok(Decision::Skip(string(reason)?)),
        [kind, body, content_type, headers] if string(kind)? == "deliver" => {
            let headers: Vec<Vec<Value>> = headers.get().map_err(|e| format!("headers: {e}"))?;
            let headers = headers
                .iter()
                .map(|pair| match pair.as_slice() {
                    [name, value] => Ok((string(name)?, string(value)?)),
                    _ => Err("headers: not a pair".to_owned()),
                })
                .collect::<Result<_, String>>()?;
            Ok(Decision::Deliver {
                body: string(body)?,
                content_type: string(content_type)?,
                headers,
            })
        }
        _ => Err("the prelude returned an unknown decision".into()),
    }
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

fn level_of(level: i32) -> Level {
    match level {
        1 => Level::Debug,
        3 => Level::Warn,
        4 => Level::Error,
        _ => Level::Info,
    }
}
