//! Hot reload through the real registry and file watcher on a temporary plugins folder: files
//! dropped, replaced (atomically and not), corrupted and deleted; calls running through swaps;
//! and the API's install path with the watcher's echo of its own writes.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use sha2::{Digest, Sha256};
use switchyard::plugins::{
    Decision, Limits, LoadedPlugin, PluginError, PluginInfo, PluginLimits, PluginStatus, Registry,
    Runtime, Watcher,
};

use crate::common::plugins::{bundled, event, fixture};
use crate::common::wait_until;

/// How long any reload may take before a test fails: generous, the machine is shared. The
/// measured times are printed (run with `--nocapture`).
const WAIT: Duration = Duration::from_secs(5);

/// A watched plugins folder. Fields drop in order: the watcher stops before the folder goes.
struct Folder {
    _watcher: Watcher,
    registry: Arc<Registry>,
    dir: tempfile::TempDir,
}

impl Folder {
    /// An empty watched folder on a runtime with default limits and no compile cache (so every
    /// reload really compiles).
    async fn new() -> Self {
        Self::with_runtime(Runtime::new(Limits::default(), None).unwrap()).await
    }

    async fn with_runtime(runtime: Runtime) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Arc::new(Registry::new(runtime, dir.path()).unwrap());
        let watcher = Watcher::start(registry.clone()).await.unwrap();
        Self {
            _watcher: watcher,
            registry,
            dir,
        }
    }

    fn path(&self, file: &str) -> std::path::PathBuf {
        self.dir.path().join(file)
    }

    /// Replaces `<name>.wasm` the way an upload does: a dot-file in the same folder, renamed.
    fn replace_atomically(&self, name: &str, bytes: &[u8]) {
        let tmp = self.path(&format!(".{name}.uploading.wasm"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, self.path(&format!("{name}.wasm"))).unwrap();
    }

    /// Overwrites `<name>.wasm` in place (truncate, then write), as `cp` does.
    fn overwrite(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(&format!("{name}.wasm")), bytes).unwrap();
    }

    fn version_of(&self, name: &str) -> Option<String> {
        self.registry.get(name).map(|p| p.version.clone())
    }

    /// Waits until `name` serves `version`; returns how long that took since `since`.
    async fn wait_version(&self, name: &str, version: &str, since: Instant) -> Duration {
        let ok = wait_until(WAIT, || async {
            self.version_of(name).as_deref() == Some(version)
        })
        .await;
        let took = since.elapsed();
        assert!(
            ok,
            "{name} did not switch to {version} within {WAIT:?}: {:?}",
            self.registry.info(name)
        );
        took
    }

    /// Waits until `name`'s status satisfies `check`; returns the info.
    async fn wait_info(
        &self,
        name: &str,
        what: &str,
        check: impl Fn(&PluginInfo) -> bool,
    ) -> PluginInfo {
        let ok = wait_until(WAIT, || async {
            self.registry.info(name).is_some_and(|i| check(&i))
        })
        .await;
        assert!(
            ok,
            "{name}: {what} within {WAIT:?}; info is {:?}",
            self.registry.info(name)
        );
        self.registry.info(name).unwrap()
    }

    /// Drops a sentinel plugin (named to sort after every test plugin) and waits for it: the
    /// watcher handles events in order, so every earlier file event has been handled by then.
    async fn flush(&self, round: usize) {
        let name = format!("zz-sentinel-{round}");
        let bytes = bundled("reshape");
        self.replace_atomically(&name, &bytes);
        self.wait_version(&name, &version(&bytes), Instant::now())
            .await;
    }

    /// The names of the files in the folder.
    fn files(&self) -> Vec<String> {
        let mut files: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        files
    }
}

/// A compile cache in `dir` with its digests in memory.
fn memory_cache(dir: &Path) -> switchyard::plugins::Cache {
    switchyard::plugins::Cache::new(dir, Arc::new(switchyard::plugins::MemoryDigests::default()))
}

/// A plugin's version: sha256 of its bytes.
fn version(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What each plugin used here delivers for [`call`]'s event with config `null`.
const RESHAPE_BODY: &str =
    r#"{"data":{"n":1},"id":"evt_01TEST","timestamp":"2023-11-14T22:13:20Z","type":"t"}"#;
const ECHO_BODY: &str = r#"{"n":1}"#;

/// Calls `plugin` on a fixed event with config `null`; it must deliver. Returns the body.
async fn call(runtime: &Runtime, plugin: &Arc<LoadedPlugin>) -> String {
    let report = runtime
        .transform(plugin, event("t", json!({"n": 1})), "null")
        .await;
    match report.result {
        Ok(Decision::Deliver(request)) => String::from_utf8(request.body).unwrap(),
        other => panic!(
            "call on {} {} failed: {other:?}",
            plugin.name, plugin.version
        ),
    }
}

/// `n` pseudo-random bytes (xorshift; no `\0asm` header).
fn random_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect()
}

#[tokio::test]
async fn dropping_and_replacing_a_file_switches_the_version() {
    let folder = Folder::new().await;
    let registry = &folder.registry;
    assert!(registry.get("swap").is_none());
    let (reshape, hostile, slack) = (bundled("reshape"), fixture("hostile"), bundled("slack"));

    // A new file loads.
    let started = Instant::now();
    folder.overwrite("swap", &reshape);
    let load = folder
        .wait_version("swap", &version(&reshape), started)
        .await;
    let first = registry.get("swap").unwrap();
    assert_eq!(call(registry.runtime(), &first).await, RESHAPE_BODY);
    let info = registry.info("swap").unwrap();
    assert_eq!(
        (info.status, info.error, info.size),
        (PluginStatus::Ready, None, Some(reshape.len()))
    );

    // Replaced by rename from a dot-file in the same folder.
    let started = Instant::now();
    folder.replace_atomically("swap", &hostile);
    let renamed = folder
        .wait_version("swap", &version(&hostile), started)
        .await;
    assert_eq!(
        call(registry.runtime(), &registry.get("swap").unwrap()).await,
        ECHO_BODY
    );
    assert_eq!(folder.files(), ["swap.wasm"]);

    // Overwritten in place.
    let started = Instant::now();
    folder.overwrite("swap", &slack);
    let overwritten = folder.wait_version("swap", &version(&slack), started).await;
    let current = registry.get("swap").unwrap();
    let body: serde_json::Value =
        serde_json::from_str(&call(registry.runtime(), &current).await).unwrap();
    assert_eq!(
        body["blocks"][0]["text"]["text"], "t",
        "slack's header is the event type"
    );
    let info = folder
        .wait_info("swap", "ready", |i| i.status == PluginStatus::Ready)
        .await;
    assert_eq!((info.error, info.version), (None, Some(version(&slack))));

    // The first version still runs for whoever holds it.
    assert_eq!(call(registry.runtime(), &first).await, RESHAPE_BODY);
    eprintln!(
        "hot reload latency (write → new version served, compile included): new file {load:?}, rename {renamed:?}, overwrite {overwritten:?}"
    );
}

#[tokio::test]
async fn a_corrupt_file_keeps_the_last_good_version_and_shows_the_error() {
    let folder = Folder::new().await;
    let registry = &folder.registry;
    let good = bundled("reshape");
    folder.replace_atomically("p", &good);
    folder
        .wait_version("p", &version(&good), Instant::now())
        .await;
    let loaded_at = registry.info("p").unwrap().loaded_at;

    // Each kind of bad file: the error shows, the old version keeps serving.
    let mut truncated = bundled("slack");
    truncated.truncate(truncated.len() / 2);
    let bad_files: [(&str, Vec<u8>, &str); 3] = [
        ("truncated", truncated, "component failed to compile: "),
        (
            "random bytes",
            random_bytes(64 << 10),
            "not a WebAssembly component: missing the WebAssembly header",
        ),
        (
            "another world",
            fixture("wrong_world"),
            "component does not match the switchyard:plugin@0.1 transformer world: ",
        ),
    ];
    for (i, (what, bytes, expected)) in bad_files.iter().enumerate() {
        let started = Instant::now();
        if i % 2 == 0 {
            folder.replace_atomically("p", bytes);
        } else {
            folder.overwrite("p", bytes);
        }
        let info = folder
            .wait_info("p", &format!("{what}: error shown"), |i| {
                i.error.as_deref().is_some_and(|e| e.starts_with(expected))
            })
            .await;
        eprintln!(
            "{what}: error shown after {:?}: {:?}",
            started.elapsed(),
            info.error
        );
        assert_eq!(info.status, PluginStatus::Error, "{what}");
        assert!(
            info.error.as_deref().unwrap().len() > expected.len(),
            "{what}: the error says why: {:?}",
            info.error
        );
        assert_eq!(
            info.version,
            Some(version(&good)),
            "{what}: the last good version is reported"
        );
        assert_eq!(info.loaded_at, loaded_at, "{what}");
        let serving = registry.get("p").unwrap();
        assert_eq!(serving.version, version(&good), "{what}");
        assert_eq!(
            call(registry.runtime(), &serving).await,
            RESHAPE_BODY,
            "{what}: calls still succeed"
        );
    }

    // Putting the last good file back clears the error without reloading.
    folder.replace_atomically("p", &good);
    let info = folder
        .wait_info("p", "error cleared by the old file", |i| {
            i.status == PluginStatus::Ready
        })
        .await;
    assert_eq!(
        (info.error, info.version, info.loaded_at),
        (None, Some(version(&good)), loaded_at)
    );

    // Corrupt again, then a new good file: it serves and clears the error.
    folder.overwrite("p", b"garbage");
    folder
        .wait_info("p", "error shown", |i| i.status == PluginStatus::Error)
        .await;
    let next = fixture("hostile");
    let started = Instant::now();
    folder.replace_atomically("p", &next);
    folder.wait_version("p", &version(&next), started).await;
    let info = folder
        .wait_info("p", "ready", |i| i.status == PluginStatus::Ready)
        .await;
    assert_eq!(info.error, None);
    assert_eq!(
        call(registry.runtime(), &registry.get("p").unwrap()).await,
        ECHO_BODY
    );
}

#[tokio::test]
async fn a_corrupt_new_file_is_listed_with_its_error_and_nothing_serves() {
    let folder = Folder::new().await;
    let registry = &folder.registry;
    folder.overwrite("fresh", b"\0asm\x0d\0\x01\0 and then nothing sensible");
    let info = folder
        .wait_info("fresh", "error shown", |i| i.status == PluginStatus::Error)
        .await;
    assert!(
        info.error
            .as_deref()
            .is_some_and(|e| e.starts_with("component failed to compile: ")),
        "{info:?}"
    );
    assert_eq!(
        (info.version, info.size, info.loaded_at),
        (None, None, None)
    );
    assert!(registry.get("fresh").is_none());

    std::fs::remove_file(folder.path("fresh.wasm")).unwrap();
    assert!(
        wait_until(WAIT, || async { registry.info("fresh").is_none() }).await,
        "{:?}",
        registry.info("fresh")
    );
}

#[tokio::test]
async fn deleting_the_file_unloads_the_plugin() {
    let folder = Folder::new().await;
    let registry = &folder.registry;
    let bytes = bundled("reshape");
    folder.replace_atomically("gone", &bytes);
    folder
        .wait_version("gone", &version(&bytes), Instant::now())
        .await;
    let held = registry.get("gone").unwrap();

    let started = Instant::now();
    std::fs::remove_file(folder.path("gone.wasm")).unwrap();
    let unloaded = wait_until(WAIT, || async {
        registry.get("gone").is_none() && registry.info("gone").is_none()
    })
    .await;
    assert!(unloaded, "still loaded: {:?}", registry.info("gone"));
    eprintln!("unloaded {:?} after the delete", started.elapsed());
    assert!(registry.list().iter().all(|i| i.name != "gone"));
    // A call that already holds the version finishes on it.
    assert_eq!(call(registry.runtime(), &held).await, RESHAPE_BODY);
}

#[tokio::test]
async fn files_not_named_like_a_plugin_are_ignored() {
    let folder = Folder::new().await;
    let registry = &folder.registry;
    // Valid components under names that must not load (if any did, it would show in the list).
    let bytes = bundled("reshape");
    for file in [
        ".tmpXYZ.wasm",
        "Bad Name.wasm",
        "notes.txt",
        "UPPER.wasm",
        "-dash.wasm",
        "slack.wasm.bak",
        "a.b.wasm",
        ".wasm",
    ] {
        std::fs::write(folder.path(file), &bytes).unwrap();
    }
    std::fs::create_dir(folder.path("nested")).unwrap();
    std::fs::write(folder.path("nested/inner.wasm"), &bytes).unwrap();
    folder.flush(0).await;
    // The periodic rescan ignores them too.
    registry.scan().await;
    let names: Vec<String> = registry.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["zz-sentinel-0"]);
    assert!(registry.get("tmpxyz").is_none() && registry.get("inner").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_calls_all_succeed_through_ten_swaps() {
    // A compile cache, as the service has, keeps the ten swaps quick; and a deadline far above
    // any call, because this test is about swapping, not about calls queued behind 99 others on
    // a shared machine (deadlines have their own tests).
    let cache = tempfile::tempdir().unwrap();
    let limits = Limits {
        deadline: Duration::from_secs(10),
        ..Limits::default()
    };
    let folder =
        Folder::with_runtime(Runtime::new(limits, Some(memory_cache(cache.path()))).unwrap()).await;
    let registry = folder.registry.clone();
    let versions = [bundled("reshape"), fixture("hostile")];
    let ids = [version(&versions[0]), version(&versions[1])];
    let bodies = [RESHAPE_BODY, ECHO_BODY];
    folder.replace_atomically("hot", &versions[0]);
    folder.wait_version("hot", &ids[0], Instant::now()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (registry, stop, seen, failures) = (
                registry.clone(),
                stop.clone(),
                seen.clone(),
                failures.clone(),
            );
            let (ids, bodies) = (ids.clone(), bodies);
            tokio::spawn(async move {
                let mut calls = 0_usize;
                while !stop.load(Ordering::Relaxed) {
                    calls += 1;
                    match registry.get("hot") {
                        None => failures.lock().unwrap().push("get returned None".into()),
                        Some(plugin) => {
                            let report = registry
                                .runtime()
                                .transform(&plugin, event("t", json!({"n": 1})), "null")
                                .await;
                            let index = ids.iter().position(|id| *id == plugin.version);
                            match (report.result, index) {
                                (Ok(Decision::Deliver(request)), Some(i))
                                    if request.body == bodies[i].as_bytes() =>
                                {
                                    seen[i].fetch_add(1, Ordering::Relaxed);
                                }
                                (other, _) => failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("version {}: {other:?}", plugin.version)),
                            }
                        }
                    }
                    tokio::task::yield_now().await;
                }
                calls
            })
        })
        .collect();
    let calls_on = |i: usize| seen[i].load(Ordering::Relaxed);
    assert!(
        wait_until(WAIT, || async { calls_on(0) >= 100 }).await,
        "the calls did not start"
    );

    let mut switches = Vec::new();
    for round in 0..10 {
        let next = (round + 1) % 2;
        let before = calls_on(next);
        let started = Instant::now();
        if round % 2 == 0 {
            folder.replace_atomically("hot", &versions[next]);
        } else {
            folder.overwrite("hot", &versions[next]);
        }
        switches.push(folder.wait_version("hot", &ids[next], started).await);
        // Calls pick the new version up before the next swap.
        let picked_up = wait_until(WAIT, || async { calls_on(next) >= before + 100 }).await;
        assert!(
            picked_up,
            "round {round}: calls did not run on the new version"
        );
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }

    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {total} calls failed, first: {:?}",
        failures.len(),
        failures.first()
    );
    let (a, b) = (calls_on(0), calls_on(1));
    assert_eq!(a + b, total, "every call counted");
    assert!(a > 0 && b > 0, "both versions observed: {a} and {b}");
    eprintln!(
        "{total} calls by 100 tasks through 10 swaps ({a} on reshape, {b} on hostile); switch times {switches:?}"
    );
    assert_eq!(registry.info("hot").unwrap().status, PluginStatus::Ready);
}

#[tokio::test]
async fn a_held_version_finishes_on_the_version_it_started_with() {
    let folder = Folder::new().await;
    let registry = &folder.registry;
    let (old, new) = (bundled("reshape"), fixture("hostile"));
    folder.replace_atomically("p", &old);
    folder
        .wait_version("p", &version(&old), Instant::now())
        .await;
    let held = registry.get("p").unwrap();

    folder.replace_atomically("p", &new);
    folder
        .wait_version("p", &version(&new), Instant::now())
        .await;
    assert_eq!(held.version, version(&old));
    assert_eq!(call(registry.runtime(), &held).await, RESHAPE_BODY);
    assert_eq!(
        call(registry.runtime(), &registry.get("p").unwrap()).await,
        ECHO_BODY
    );

    // Several calls on the held version running while the registry serves the new one.
    let runs: Vec<_> = (0..8)
        .map(|_| {
            let (registry, held) = (folder.registry.clone(), held.clone());
            tokio::spawn(async move { call(registry.runtime(), &held).await })
        })
        .collect();
    for run in runs {
        assert_eq!(run.await.unwrap(), RESHAPE_BODY);
    }
}

#[tokio::test]
async fn install_writes_the_file_atomically_and_the_echo_is_harmless() {
    let folder = Folder::new().await;
    let registry = &folder.registry;
    let file = folder.path("x.wasm");
    let first = bundled("reshape");

    let (info, created) = registry
        .install("x", first.clone(), PluginLimits::default())
        .await
        .unwrap();
    assert!(created);
    assert_eq!(
        (info.version, info.status, info.error, info.size),
        (
            Some(version(&first)),
            PluginStatus::Ready,
            None,
            Some(first.len())
        )
    );
    assert!(
        std::fs::read(&file).unwrap() == first,
        "the file holds the installed bytes"
    );
    assert_eq!(folder.files(), ["x.wasm"], "no temp file left behind");
    let installed = registry.get("x").unwrap();

    // The watcher sees the write: no reload, no error.
    folder.flush(0).await;
    let info = registry.info("x").unwrap();
    assert_eq!((info.status, info.error), (PluginStatus::Ready, None));
    assert!(
        Arc::ptr_eq(&installed, &registry.get("x").unwrap()),
        "the echo reloaded the plugin"
    );

    // Garbage is refused and changes nothing: not the file, not the version, not the status.
    let err = registry
        .install("x", b"garbage".to_vec(), PluginLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::NotAComponent(_)), "{err:?}");
    let mut truncated = bundled("slack");
    truncated.truncate(truncated.len() / 2);
    let err = registry
        .install("x", truncated, PluginLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::Compile(_)), "{err:?}");
    let err = registry
        .install("x", fixture("wrong_world"), PluginLimits::default())
        .await
        .unwrap_err();
    assert!(matches!(err, PluginError::WrongWorld(_)), "{err:?}");
    folder.flush(1).await;
    assert!(
        std::fs::read(&file).unwrap() == first,
        "the old bytes stay on disk"
    );
    assert!(Arc::ptr_eq(&installed, &registry.get("x").unwrap()));
    let info = registry.info("x").unwrap();
    assert_eq!(
        (info.status, info.error, info.version),
        (PluginStatus::Ready, None, Some(version(&first)))
    );

    // A second good version replaces the first; again the echo is harmless.
    let second = fixture("hostile");
    let (info, created) = registry
        .install("x", second.clone(), PluginLimits::default())
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(info.version, Some(version(&second)));
    assert!(std::fs::read(&file).unwrap() == second);
    let replaced = registry.get("x").unwrap();
    folder.flush(2).await;
    assert!(
        Arc::ptr_eq(&replaced, &registry.get("x").unwrap()),
        "the echo reloaded the plugin"
    );
    assert_eq!(registry.info("x").unwrap().status, PluginStatus::Ready);
    assert_eq!(call(registry.runtime(), &replaced).await, ECHO_BODY);

    // Invalid names never touch the folder.
    for name in ["Bad Name", "../x", ".tmp", ""] {
        let err = registry
            .install(name, first.clone(), PluginLimits::default())
            .await
            .unwrap_err();
        assert!(
            matches!(err, PluginError::InvalidName(_)),
            "{name}: {err:?}"
        );
    }

    // Removal deletes the file and unloads; a second removal finds nothing.
    assert_eq!(registry.remove("x").await, Ok(true));
    assert!(!Path::new(&file).exists());
    assert!(registry.get("x").is_none() && registry.info("x").is_none());
    folder.flush(3).await;
    assert!(
        registry.info("x").is_none(),
        "the echo of the delete brought it back"
    );
    assert_eq!(registry.remove("x").await, Ok(false));
    let mut expected: Vec<String> = (0..4).map(|i| format!("zz-sentinel-{i}.wasm")).collect();
    expected.sort();
    assert_eq!(folder.files(), expected);
}
