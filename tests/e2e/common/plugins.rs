//! Plugin bytes for tests: the bundled plugins (embedded in the host) and the fixtures built
//! from `tests/fixtures/` by `build.rs`.

use std::sync::Arc;

use switchyard::plugins::{BUNDLED, Limits, LoadedPlugin, PluginEvent, Runtime};

/// A bundled plugin's component bytes.
pub fn bundled(name: &str) -> Vec<u8> {
    BUNDLED
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, b)| b.to_vec())
        .unwrap_or_else(|| panic!("no bundled plugin {name}"))
}

/// A fixture plugin's component bytes (`hostile`, `wrong_world`).
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/{name}.wasm", env!("SWITCHYARD_FIXTURE_PLUGINS_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A runtime with default limits and no compile cache.
pub fn runtime() -> Runtime {
    Runtime::new(Limits::default(), None).unwrap()
}

/// Compiles a plugin on `runtime`.
pub async fn load(runtime: &Runtime, name: &str, bytes: Vec<u8>) -> Arc<LoadedPlugin> {
    runtime.load(name, bytes).await.unwrap()
}

/// An event with this type and data.
pub fn event(event_type: &str, data: serde_json::Value) -> PluginEvent {
    PluginEvent {
        id: "evt_01TEST".into(),
        event_type: event_type.into(),
        timestamp: 1_700_000_000,
        subscription_id: "sub_01TEST".into(),
        payload: data.to_string(),
    }
}
