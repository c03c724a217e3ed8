//! The real service, in-process, on 127.0.0.1:0 with its own data folder, and a client for it.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use switchyard::Config;

/// The admin key every test server uses.
pub const KEY: &str = "test-key-0123456789abcdef";

/// A running service.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    /// The data folder (database, plugins, cache).
    pub data_dir: PathBuf,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), switchyard::StartError>>>,
    _dir: Option<tempfile::TempDir>,
}

/// Test defaults: the given key, loopback receivers allowed, fast retries, no bundled plugins.
pub fn test_config(data_dir: PathBuf) -> Config {
    let mut config = Config::with_data_dir(data_dir);
    config.api_key = Some(KEY.into());
    config.allow_private_networks = true;
    config.retry_schedule = vec![Duration::from_millis(100), Duration::from_millis(100)];
    config.bundled_plugins = false;
    config.delivery_timeout = Duration::from_secs(5);
    // Uploads answer with the compile's result (`202 compiling` only in the tests of it), so
    // a slow compile on a busy machine does not change what a test sees.
    config.plugin_upload_wait = Duration::from_secs(300);
    // Every plugin of the folder is loaded before the test's first request.
    config.plugin_startup_wait = Duration::from_secs(300);
    // Plugins compile in a child process of the real binary, as `switchyard serve` does.
    config.plugin_compiler = Some(env!("CARGO_BIN_EXE_switchyard").into());
    // Tests send wrong keys on purpose, all from 127.0.0.1; `edge` tests the limit itself.
    config.max_auth_failures = 10_000;
    config
}

impl TestServer {
    /// Starts a service with the test defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a service with the test defaults changed by `tweak`.
    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path().to_owned());
        tweak(&mut config);
        let mut server = Self::start_config(config).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a service with exactly this configuration (the caller owns the folder).
    pub async fn start_config(config: Config) -> Self {
        switchyard::net::install_crypto_provider();
        // Service logs go to the test's captured output: shown only when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("warn,switchyard=info")
            .try_init();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let data_dir = config.data_dir.clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(switchyard::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let server = Self {
            base,
            data_dir,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        };
        let ready = super::wait_until(Duration::from_secs(30), || async {
            server
                .http
                .get(format!("{}/healthz", server.base))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "service did not become healthy");
        server
    }

    /// Graceful stop; waits for the service to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    /// Sends a request with the admin key; returns status and JSON body (Null when empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(KEY, method, path, body).await
    }

    /// [`TestServer::call`] with another key.
    pub async fn call_as(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    /// [`TestServer::call`], asserting the status (and showing the body when it differs).
    pub async fn expect(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let (got, json) = self.call(method.clone(), path, body).await;
        assert_eq!(
            got.as_u16(),
            status,
            "{method} {path} answered {got}: {json:#}"
        );
        json
    }

    /// [`TestServer::expect`], decoding the answer into `T` strictly: the body must read as
    /// `T` and write back as exactly the same JSON, so a missing, renamed or extra field fails
    /// the test (where `value["field"] == null` would pass on a missing field).
    pub async fn typed<T: DeserializeOwned + Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> T {
        let json = self.expect(method.clone(), path, body, status).await;
        strict(json, &format!("{method} {path}"))
    }

    /// `GET path`, expecting 200, decoded strictly (see [`TestServer::typed`]).
    pub async fn get<T: DeserializeOwned + Serialize>(&self, path: &str) -> T {
        self.typed(Method::GET, path, None, 200).await
    }

    /// A raw request builder with the admin key, for odd bodies and headers.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(KEY)
    }

    /// A raw request builder without any key.
    pub fn anonymous(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base))
    }

    /// A value of `/metrics` by exact series name (labels included), if it is there.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self
            .anonymous(Method::GET, "/metrics")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines().find_map(|line| {
            let (series, value) = line.split_once(' ')?;
            (series == name).then(|| value.trim().parse::<f64>().unwrap())
        })
    }

    /// Uploads a plugin; asserts 200/201; returns the response.
    pub async fn upload_plugin(&self, name: &str, bytes: Vec<u8>) -> Value {
        let response = self
            .request(Method::PUT, &format!("/v1/plugins/{name}"))
            .header("content-type", "application/wasm")
            .body(bytes)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let json: Value = response.json().await.unwrap();
        assert!(
            status == 200 || status == 201,
            "upload of {name} answered {status}: {json:#}"
        );
        json
    }

    /// Creates a subscription; asserts 201; returns it (with its secret).
    pub async fn subscribe(&self, body: Value) -> Value {
        self.expect(Method::POST, "/v1/subscriptions", Some(body), 201)
            .await
    }

    /// Posts an event; asserts 202; returns the response.
    pub async fn send_event(&self, body: Value) -> Value {
        self.expect(Method::POST, "/v1/events", Some(body), 202)
            .await
    }

    /// Waits until the delivery reaches `status`; returns it with its attempts.
    pub async fn wait_delivery(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let last = self
                .expect(Method::GET, &format!("/v1/deliveries/{id}"), None, 200)
                .await;
            if last["status"] == status {
                return last;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "delivery {id} did not reach {status} within {timeout:?}: {last:#}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The deliveries of an event.
    pub async fn deliveries_of(&self, event_id: &str) -> Vec<Value> {
        let page = self
            .expect(
                Method::GET,
                &format!("/v1/deliveries?event_id={event_id}"),
                None,
                200,
            )
            .await;
        page["data"].as_array().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `value` as `T`, asserting that `T` writes it back unchanged (every field there, none extra).
pub fn strict<T: DeserializeOwned + Serialize>(value: Value, what: &str) -> T {
    let typed: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what}: answer does not decode ({e}): {value:#}"));
    let again = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        again, value,
        "{what}: the answer has fields the model does not (or lacks some)"
    );
    typed
}
