//! The plugin author's loop: `switchyard plugins new | build | test | dev | replay` — scaffold
//! a project, build it with its language's toolchain, run its cases locally, rebuild-push-dry-run
//! on every save, and replay a stored delivery through the current version.

pub mod cases;
pub mod dev;
pub mod replay;
pub mod scaffold;
pub mod toolchain;

/// The languages a project can be scaffolded and built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the Switchyard SDK (cargo, wasm32-wasip2).
    Rust,
    /// JavaScript on StarlingMonkey (componentize-js, the Bytecode Alliance's): a 12 MB
    /// component, 5-6 s to compile.
    Js,
    /// JavaScript on QuickJS (componentize-qjs): a 1.6 MB component that builds and compiles
    /// in about a second each, for a fast dev loop; no `TextEncoder`.
    JsQuickjs,
    /// Python (componentize-py).
    Python,
}
