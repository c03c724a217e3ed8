use super::*;

fn new_subscription(url: &str) -> NewSubscription {
    NewSubscription::to_url(url, "*")
}

/// A change to one subscription changes one entry of the in-memory copy: the others are
/// the very same entries (at 10,000 subscriptions, re-reading all of them on every create
/// took 288 ms on the writer).
#[tokio::test]
async fn a_change_updates_only_its_own_cache_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db.sqlite")).await.unwrap();
    let a = store
        .create_subscription(new_subscription("https://a.example"))
        .await
        .unwrap();
    let b = store
        .create_subscription(new_subscription("https://b.example"))
        .await
        .unwrap();
    let entry = |id: &str| store.cached_subscription(id).unwrap();
    let (a0, b0) = (entry(&a.id), entry(&b.id));

    let c = store
        .create_subscription(new_subscription("https://c.example"))
        .await
        .unwrap();
    assert!(Arc::ptr_eq(&a0, &entry(&a.id)), "create re-read the others");
    assert!(Arc::ptr_eq(&b0, &entry(&b.id)));

    let update = SubscriptionUpdate {
        url: "https://b2.example".into(),
        events: b.events.clone(),
        plugin: None,
        plugin_config: None,
        description: None,
        headers: BTreeMap::new(),
        signature: b.signature.clone(),
        secret: None,
        rotation_grace_ms: 0,
    };
    let outcome = store
        .update_subscription(&crate::tenant::Scope::Any, &b, update)
        .await
        .unwrap();
    assert!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
    assert_eq!(entry(&b.id).url, "https://b2.example");
    assert!(Arc::ptr_eq(&a0, &entry(&a.id)), "update re-read the others");

    store.disable_subscription(&a.id, "test").await.unwrap();
    assert_eq!(
        entry(&a.id).status,
        super::super::SubscriptionStatus::Disabled
    );
    let c0 = entry(&c.id);
    assert!(
        store
            .delete_subscription(&crate::tenant::Scope::Any, &b.id)
            .await
            .unwrap()
    );
    assert!(store.cached_subscription(&b.id).is_none());
    assert!(Arc::ptr_eq(&c0, &entry(&c.id)), "delete re-read the others");
    let ids: Vec<String> = store.subscriptions().iter().map(|s| s.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "the copy stays sorted by id");
    assert_eq!(ids, vec![a.id.clone(), c.id.clone()]);
}
