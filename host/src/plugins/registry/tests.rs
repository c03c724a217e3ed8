//! Tests of plugin names: which are valid, and which file names in the folder are plugins.

use std::path::Path;

use super::super::folder::name_of_path;
use super::*;

#[test]
fn names() {
    for ok in ["slack", "a", "my-plugin_2", "0x", &"a".repeat(63)] {
        assert!(valid_name(ok), "{ok}");
    }
    for bad in [
        "",
        "-a",
        "_a",
        "Slack",
        "a.b",
        "a/b",
        "ä",
        &"a".repeat(64),
        ".tmpabc",
    ] {
        assert!(!valid_name(bad), "{bad}");
    }
    assert_eq!(
        name_of_path(Path::new("/x/slack.wasm")),
        Some("slack".into())
    );
    assert_eq!(name_of_path(Path::new("/x/.tmpAb12.wasm")), None);
    assert_eq!(name_of_path(Path::new("/x/slack.txt")), None);
}

/// A file listed at start-up is `compiling` and waited for until the first scan has synced
/// it; then it is whatever its file made of it (here an error: it is not a component).
#[tokio::test]
async fn a_plugin_listed_at_start_is_loading_until_its_file_is_synced() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.wasm"), b"not a component").unwrap();
    let runtime = Runtime::new(super::super::Limits::default(), None).unwrap();
    let registry = Registry::new(runtime, dir.path()).unwrap();
    assert!(!registry.is_loading("x"));
    registry.mark_folder_starting().await;
    assert!(registry.is_loading("x"));
    assert_eq!(registry.loading_names(), HashSet::from(["x".to_owned()]));
    assert_eq!(registry.info("x").unwrap().status, PluginStatus::Compiling);
    let waited = registry.ready_within("x", std::time::Duration::ZERO).await;
    assert!(matches!(waited, Err(PluginError::Loading(_))), "{waited:?}");
    assert!(matches!(
        registry
            .ready_within("nope", std::time::Duration::ZERO)
            .await,
        Err(PluginError::NotFound(_))
    ));

    // A waiter is woken by the sync, not by its timeout.
    let waiter = {
        let started = tokio::time::Instant::now();
        let registry = &registry;
        async move {
            let result = registry
                .ready_within("x", std::time::Duration::from_secs(60))
                .await;
            (result, started.elapsed())
        }
    };
    let ((result, waited), ()) = tokio::join!(waiter, async {
        registry.sync_file("x").await;
    });
    assert!(
        matches!(result, Err(PluginError::NotFound(_))),
        "{result:?}"
    );
    assert!(waited < std::time::Duration::from_secs(30), "{waited:?}");
    assert!(!registry.is_loading("x"));
    assert!(registry.loading_names().is_empty());
    assert_eq!(registry.info("x").unwrap().status, PluginStatus::Error);
}

/// A prune while the start's first scan runs (here: an upload of another plugin) keeps the
/// cached artefacts of the plugins the scan has not reached yet, so they load without a
/// compile. (Pruning by the versions serving alone deleted them: each was compiled again.)
#[tokio::test]
async fn a_prune_during_the_first_scan_keeps_what_the_scan_will_load() {
    use super::super::{BUNDLED, Cache, Limits, MemoryDigests};
    let dir = tempfile::tempdir().unwrap();
    let (plugins, cache) = (dir.path().join("plugins"), dir.path().join("cache"));
    let digests = std::sync::Arc::new(MemoryDigests::default());
    let registry = || {
        let cache = Cache::new(&cache, digests.clone());
        Registry::new(
            Runtime::new(Limits::default(), Some(cache)).unwrap(),
            &plugins,
        )
        .unwrap()
    };
    let bundled = |name: &str| BUNDLED.iter().find(|(n, _)| *n == name).unwrap().1;

    let first = registry();
    first
        .install("a", bundled("slack"), PluginLimits::default())
        .await
        .unwrap();
    assert_eq!(first.stats().compiles, 1);
    drop(first);

    // A restart: `a` is listed, not synced yet, when `b` is uploaded (an install prunes).
    let restarted = registry();
    restarted.mark_folder_starting().await;
    restarted
        .install("b", bundled("filter"), PluginLimits::default())
        .await
        .unwrap();
    restarted.sync_file("a").await;
    assert_eq!(restarted.info("a").unwrap().status, PluginStatus::Ready);
    assert_eq!(
        restarted.stats().compiles,
        1,
        "only `b` compiled: `a`'s artefact was pruned before the scan reached it"
    );
}
