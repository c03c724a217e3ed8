//! The REST client behind the resource commands: where the server is and which key to use
//! (flags, then `SWITCHYARD_URL` / `SWITCHYARD_API_KEY`, then a profile), one request helper
//! that turns the server's error shape into a [`CliError`], and the exit-code policy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use reqwest::Method;
use serde::Deserialize;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Where no flag, variable or profile says otherwise.
const DEFAULT_SERVER: &str = "http://127.0.0.1:8686";

/// How to reach the server; flattened into every resource command.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Server base URL [default: the profile's, else http://127.0.0.1:8686]
    #[arg(
        long = "server",
        env = "SWITCHYARD_URL",
        global = true,
        value_name = "URL"
    )]
    server: Option<String>,
    /// API key (prefer the SWITCHYARD_API_KEY variable or a profile: flags show in `ps`)
    #[arg(
        long,
        env = "SWITCHYARD_API_KEY",
        global = true,
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// Profile to read from the profiles file (see `switchyard subscriptions --help`)
    #[arg(
        long,
        env = "SWITCHYARD_PROFILE",
        global = true,
        default_value = "default"
    )]
    profile: String,
    /// Print the API's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
}

/// Explains the profiles file; shown in the resource commands' help.
pub const PROFILES_HELP: &str = "Connection: --server/--api-key, else SWITCHYARD_URL/SWITCHYARD_API_KEY, else the \
profile (--profile, default \"default\") in $SWITCHYARD_PROFILES or \
~/.config/switchyard/profiles.toml:\n  [default]\n  url = \"http://127.0.0.1:8686\"\n  api_key = \"sk_...\"";

/// One profile in the profiles file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    url: Option<String>,
    api_key: Option<String>,
}

/// Why a command failed; each maps to a message on stderr and an exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The server answered with an error (its `{"error": {"code", "message"}}`).
    #[error("{status}: {message} ({code})")]
    Server {
        /// HTTP status.
        status: u16,
        /// The error's stable code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The server could not be reached or answered something that is not our API.
    #[error("{0}")]
    Transport(String),
    /// The command's own input is wrong (a file that cannot be read, JSON that does not parse).
    #[error("{0}")]
    Input(String),
    /// A check the command ran did not pass (e.g. a plugin's test cases).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    /// Exit codes: 1 for a refused request or a failed check, 2 for bad input (as clap uses for
    /// usage errors), 3 when the server cannot be reached.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Self::Server { .. } | Self::Failed(_) => ExitCode::from(1),
            Self::Input(_) => ExitCode::from(2),
            Self::Transport(_) => ExitCode::from(3),
        }
    }
}

/// Runs a client command on a small runtime and turns its result into an exit code.
pub fn block_on(command: impl Future<Output = Result<(), CliError>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// A connection to one server with one key.
pub struct Api {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
    /// Print JSON rather than tables.
    pub json: bool,
}

/// A request body.
pub enum Body {
    /// JSON.
    Json(Value),
    /// Raw bytes with a content type (plugin uploads).
    Bytes(Vec<u8>, &'static str),
}

impl Body {
    /// A model as a JSON body.
    ///
    /// # Errors
    /// Never for the API's models (they always serialize); kept fallible for `?`.
    pub fn json(model: &impl Serialize) -> Result<Self, CliError> {
        serde_json::to_value(model)
            .map(Self::Json)
            .map_err(|e| CliError::Input(e.to_string()))
    }
}

/// An answer as the server sent it (printed as-is with `--json`) and decoded into its model
/// (what the tables show).
pub struct Answer<T> {
    /// The JSON as received.
    pub raw: Value,
    /// The same, as the API's model.
    pub model: T,
}

impl Api {
    /// Resolves the connection (flags, variables, profile).
    ///
    /// # Errors
    /// When the profiles file exists but cannot be read, or names no such profile explicitly.
    pub fn connect(connection: &Connection) -> Result<Self, CliError> {
        let profile = load_profile(&connection.profile)?;
        let base = connection
            .server
            .clone()
            .or(profile.url)
            .unwrap_or_else(|| DEFAULT_SERVER.to_owned());
        // https servers: the same rustls provider the service uses.
        switchyard::net::install_crypto_provider();
        let http = reqwest::Client::builder()
            .user_agent(concat!("switchyard-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Transport(e.to_string()))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            key: connection.api_key.clone().or(profile.api_key),
            http,
            json: connection.json,
        })
    }

    /// Sends a request; the JSON answer (`Null` for an empty one), or the server's error.
    ///
    /// # Errors
    /// A non-2xx answer ([`CliError::Server`]) or a transport failure.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Value, CliError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url);
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        request = match body {
            Some(Body::Json(value)) => request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(value.to_string()),
            Some(Body::Bytes(bytes, content_type)) => request
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(bytes),
            None => request,
        };
        let response = request
            .send()
            .await
            .map_err(|e| CliError::Transport(format!("cannot reach {}: {e}", self.base)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| CliError::Transport(format!("reading the answer: {e}")))?;
        let value: Value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| {
                CliError::Transport(format!(
                    "{url} answered {status} with something that is not JSON: {}",
                    text.chars().take(200).collect::<String>()
                ))
            })?
        };
        if status.is_success() {
            return Ok(value);
        }
        let text_of = |key: &str| {
            value["error"][key]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_default()
        };
        Err(CliError::Server {
            status: status.as_u16(),
            code: text_of("code"),
            message: text_of("message"),
        })
    }

    /// [`Api::send`], decoding the answer into the API's model `T` (the types the server
    /// answers with), so a field the server no longer sends is an error here, not a blank cell.
    ///
    /// # Errors
    /// As [`Api::send`], or an answer that does not fit the model.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Answer<T>, CliError> {
        let raw = self.send(method, path, body).await?;
        let model = serde_json::from_value(raw.clone()).map_err(|e| {
            CliError::Transport(format!("the server's answer to {path} is not what this client expects ({e}); is the server another version?"))
        })?;
        Ok(Answer { raw, model })
    }

    /// `GET path`, decoded into `T`.
    ///
    /// # Errors
    /// As [`Api::call`].
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<Answer<T>, CliError> {
        self.call(Method::GET, path, None).await
    }

    /// Prints the raw answer with `--json`, otherwise what `human` prints.
    pub fn show<T>(&self, answer: &Answer<T>, human: impl FnOnce(&T)) {
        if self.json {
            super::output::json(&answer.raw);
        } else {
            human(&answer.model);
        }
    }
}

/// The profiles file: `$SWITCHYARD_PROFILES`, else `$XDG_CONFIG_HOME/switchyard/profiles.toml`,
/// else `~/.config/switchyard/profiles.toml`.
fn profiles_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SWITCHYARD_PROFILES") {
        return Some(PathBuf::from(path));
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("switchyard").join("profiles.toml"))
}

fn load_profile(name: &str) -> Result<Profile, CliError> {
    let Some(path) = profiles_path().filter(|p| p.exists()) else {
        return if name == "default" {
            Ok(Profile::default())
        } else {
            Err(CliError::Input(format!(
                "profile {name:?} not found: there is no profiles file (see --help)"
            )))
        };
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    let mut profiles: BTreeMap<String, Profile> =
        toml::from_str(&text).map_err(|e| CliError::Input(format!("{}: {e}", path.display())))?;
    match profiles.remove(name) {
        Some(profile) => Ok(profile),
        None if name == "default" => Ok(Profile::default()),
        None => Err(CliError::Input(format!(
            "profile {name:?} not found in {}",
            path.display()
        ))),
    }
}

/// Percent-encodes one query or path value.
pub fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// `?a=1&b=2` from the pairs that have a value (empty when none).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", encode(v))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_skip_absent_values_and_encode() {
        assert_eq!(query(&[("a", None)]), "");
        assert_eq!(
            query(&[
                ("a", Some("x y&z".into())),
                ("b", None),
                ("c", Some("1".into()))
            ]),
            "?a=x+y%26z&c=1"
        );
    }
}
