//! Every way loading or running a plugin can fail, as one typed error.

use std::time::Duration;

use super::limits::{MAX_PLUGIN_TEXT, bound_text};

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
    /// The plugin's file is still being loaded (compiled, after a start without its cached
    /// artefact): nothing of it serves yet.
    #[error("plugin {0:?} is still loading (compiling after a start); retry in a few seconds")]
    Loading(String),
    /// The bytes are not a WebAssembly component (garbage, a core module, …).
    #[error("not a WebAssembly component: {0}")]
    NotAComponent(String),
    /// The component does not fit the `switchyard:plugin` `transformer` world.
    #[error("component does not match the switchyard:plugin@0.1 transformer world: {0}")]
    WrongWorld(String),
    /// The component failed to validate or compile.
    #[error("component failed to compile: {0}")]
    Compile(String),
    /// Compiling the component went past its time or memory budget (see `CompileBudget`).
    #[error("compiling the component exceeded {0}")]
    CompileBudget(String),
    /// One instance of the component needs more of the instance pool than a plugin may use.
    #[error("component is too big to instantiate: {0}")]
    InstanceTooLarge(String),
    /// A plugin's own deadline or memory is outside what the operator allows.
    #[error("invalid plugin limit: {0}")]
    InvalidLimit(String),
    /// The file is larger than the configured maximum.
    #[error(
        "the component is {size} bytes, more than the limit of {limit} bytes (plugin_max_component_mb)"
    )]
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
    /// No room in the instance pool within the call's deadline: the plugin did not run.
    #[error("no plugin instance was free within {0:?} (all are busy); the plugin did not run")]
    Busy(Duration),
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
    /// The service is stopping; compiles and calls in progress were cancelled.
    #[error("the plugin runtime is shutting down")]
    ShuttingDown,
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
            Self::Loading(_) => "plugin_loading",
            Self::NotAComponent(_) => "not_a_component",
            Self::WrongWorld(_) => "wrong_world",
            Self::Compile(_) => "compile",
            Self::CompileBudget(_) => "compile_budget_exceeded",
            Self::InstanceTooLarge(_) => "instance_too_large",
            Self::InvalidLimit(_) => "invalid_query",
            Self::TooLarge { .. } => "too_large",
            Self::InputTooLarge { .. } => "input_too_large",
            Self::Busy(_) => "busy",
            Self::Timeout(_) => "timeout",
            Self::OutOfMemory { .. } => "out_of_memory",
            Self::StackOverflow => "stack_overflow",
            Self::Trap { .. } => "trap",
            Self::Guest(_) => "plugin_error",
            Self::OutputTooLarge { .. } => "output_too_large",
            Self::InvalidHeader(_) => "invalid_header",
            Self::ShuttingDown => "shutting_down",
            Self::Io(_) => "io",
        }
    }

    /// This error with every piece of text in it cut to [`MAX_PLUGIN_TEXT`]: applied to every
    /// error that leaves the plugin runtime, because much of that text (a guest's `err`, a
    /// trap's stderr, names inside a component) is the plugin's to choose.
    #[must_use]
    pub fn bounded(self) -> Self {
        match self {
            Self::InvalidName(t) => Self::InvalidName(bound_text(t)),
            Self::NotFound(t) => Self::NotFound(bound_text(t)),
            Self::Loading(t) => Self::Loading(bound_text(t)),
            Self::NotAComponent(t) => Self::NotAComponent(bound_text(t)),
            Self::WrongWorld(t) => Self::WrongWorld(bound_text(t)),
            Self::Compile(t) => Self::Compile(bound_text(t)),
            Self::CompileBudget(t) => Self::CompileBudget(bound_text(t)),
            Self::InstanceTooLarge(t) => Self::InstanceTooLarge(bound_text(t)),
            Self::InvalidLimit(t) => Self::InvalidLimit(bound_text(t)),
            Self::OutOfMemory { limit, stderr } => Self::OutOfMemory {
                limit,
                stderr: bound_text(stderr),
            },
            Self::Trap { message, stderr } => {
                let message = bound_text(message);
                // The whole text (message and stderr together) stays within the bound.
                let room = MAX_PLUGIN_TEXT.saturating_sub(message.len());
                Self::Trap {
                    message,
                    stderr: super::limits::truncate(stderr, room),
                }
            }
            Self::Guest(t) => Self::Guest(bound_text(t)),
            Self::InvalidHeader(t) => Self::InvalidHeader(bound_text(t)),
            Self::Io(t) => Self::Io(bound_text(t)),
            other @ (Self::TooLarge { .. }
            | Self::InputTooLarge { .. }
            | Self::Busy(_)
            | Self::Timeout(_)
            | Self::StackOverflow
            | Self::OutputTooLarge { .. }
            | Self::ShuttingDown) => other,
        }
    }
}
