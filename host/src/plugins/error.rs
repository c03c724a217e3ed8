//! Every way loading or running a plugin can fail, as one typed error.

use std::time::Duration;

/// Why a plugin could not be loaded or could not produce an outcome.
///
/// The messages are written for the person who wrote the plugin: they end up on delivery
/// attempts, in dry-run responses and on `GET /v1/plugins/{name}`.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PluginError {
    /// The name is not `[a-z0-9][a-z0-9_-]{0,62}`.
    #[error(
        "invalid plugin name {0:?}: use 1-63 characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
    )]
    InvalidName(String),
    /// No plugin of that name is loaded.
    #[error("plugin {0:?} is not loaded")]
    NotFound(String),
    /// The bytes are not a WebAssembly component (garbage, a core module, …).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component does not fit the `switchyard:plugin` `transformer` world.
    #[error("component does not match the switchyard:plugin@0.1 transformer world: {0}")]
    WrongWorld(String),
    /// The component failed to validate or compile.
    #[error("component failed to compile: {0}")]
    Compile(String),
    /// The file is larger than the configured maximum.
    #[error("plugin is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge {
        /// Size of the component.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The event payload handed in is larger than the configured maximum.
    #[error("event payload is {size} bytes, more than the plugin input limit of {limit} bytes")]
    InputTooLarge {
        /// Size of the payload.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The call ran past its wall-clock deadline.
    #[error("plugin timed out after {0:?}")]
    Timeout(Duration),
    /// The plugin tried to grow its memory past the cap.
    #[error("plugin ran out of memory (limit {limit} bytes){}", detail(.stderr))]
    OutOfMemory {
        /// The memory cap.
        limit: usize,
        /// What the plugin wrote to stderr, if anything (usually the allocator's complaint).
        stderr: String,
    },
    /// The plugin recursed too deeply.
    #[error("plugin overflowed its stack")]
    StackOverflow,
    /// The plugin trapped: a panic, an `unreachable`, a division by zero…
    #[error("plugin trapped: {message}{}", detail(.stderr))]
    Trap {
        /// The trap, e.g. "wasm `unreachable` instruction executed".
        message: String,
        /// What the plugin wrote to stderr: a Rust panic message lands here.
        stderr: String,
    },
    /// The plugin returned `err(message)`.
    #[error("plugin returned an error: {0}")]
    Guest(String),
    /// The plugin's output is larger than allowed.
    #[error("plugin output is {size} bytes, more than the limit of {limit} bytes")]
    OutputTooLarge {
        /// Size of the produced body.
        size: usize,
        /// The configured maximum.
        limit: usize,
    },
    /// The plugin asked for a header it may not set or that is not valid HTTP.
    #[error("plugin set an invalid or reserved header: {0}")]
    InvalidHeader(String),
    /// Reading or writing a plugin file failed.
    #[error("plugin file error: {0}")]
    Io(String),
}

fn detail(stderr: &str) -> String {
    let tail = stderr.trim();
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

impl PluginError {
    /// A short, stable word for the failure, stored on attempts and used in metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidName(_) => "invalid_name",
            Self::NotFound(_) => "not_found",
            Self::NotAComponent(_) => "not_a_component",
            Self::WrongWorld(_) => "wrong_world",
            Self::Compile(_) => "compile",
            Self::TooLarge { .. } => "too_large",
            Self::InputTooLarge { .. } => "input_too_large",
            Self::Timeout(_) => "timeout",
            Self::OutOfMemory { .. } => "out_of_memory",
            Self::StackOverflow => "stack_overflow",
            Self::Trap { .. } => "trap",
            Self::Guest(_) => "plugin_error",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::InvalidHeader(_) => "invalid_header",
            Self::Io(_) => "io",
        }
    }
}
