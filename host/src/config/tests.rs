use super::*;

#[test]
fn later_layers_win_and_defaults_fill_the_rest() {
    let file = Layer {
        listen: Some("0.0.0.0:9000".into()),
        max_in_flight: Some(7),
        ..Layer::default()
    };
    let env = Layer {
        listen: Some("127.0.0.1:9001".into()),
        ..Layer::default()
    };
    let config = file.overridden_by(env).resolve().unwrap();
    assert_eq!(config.listen.port(), 9001);
    assert_eq!(config.max_in_flight, 7);
    assert_eq!(config.retry_schedule, default_retry_schedule());
    assert_eq!(
        config.plugins_dir,
        PathBuf::from("./switchyard-data/plugins")
    );
    assert_eq!(config.plugin_compile_budget, CompileBudget::default());
    assert!(!config.plugins_follow_symlinks);
}

#[test]
fn the_per_tenant_cap_is_set_layered_and_must_be_positive() {
    assert_eq!(Config::with_data_dir("d").max_in_flight_per_tenant, 64);
    let file = Layer {
        max_in_flight_per_tenant: Some(3),
        ..Layer::default()
    };
    let config = file
        .clone()
        .overridden_by(Layer::default())
        .resolve()
        .unwrap();
    assert_eq!(config.max_in_flight_per_tenant, 3);
    let env = Layer {
        max_in_flight_per_tenant: Some(0),
        ..Layer::default()
    };
    assert!(file.overridden_by(env).resolve().is_err());
}

#[test]
fn compile_budget_settings_apply() {
    let config = Layer {
        plugin_compile_timeout: Some("5s".into()),
        plugin_compile_memory_mb: Some(512),
        plugins_follow_symlinks: Some(true),
        ..Layer::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(config.plugin_compile_budget.timeout, Duration::from_secs(5));
    assert_eq!(config.plugin_compile_budget.memory_bytes, 512 << 20);
    assert!(config.plugins_follow_symlinks);
}

#[test]
fn plugin_limits_and_their_maxima() {
    let config = Layer {
        plugin_timeout: Some("200ms".into()),
        plugin_max_timeout: Some("2s".into()),
        plugin_max_memory_mb: Some(512),
        plugin_max_component_mb: Some(100),
        plugin_upload_wait: Some("0s".into()),
        plugin_startup_wait: Some("0s".into()),
        plugin_keep_resident_mb: Some(0),
        ..Layer::default()
    }
    .resolve()
    .unwrap();
    let limits = &config.plugin_limits;
    assert_eq!(limits.keep_resident_bytes, 0);
    assert_eq!(limits.deadline, Duration::from_millis(200));
    assert_eq!(limits.max_deadline, Duration::from_secs(2));
    assert_eq!(limits.max_memory_bytes, 512 << 20);
    assert_eq!(limits.component_bytes, 100 << 20);
    assert_eq!(config.plugin_upload_wait, Duration::ZERO);
    assert_eq!(config.plugin_startup_wait, Duration::ZERO);
    let defaults = Layer::default().resolve().unwrap();
    assert_eq!(defaults.plugin_startup_wait, Duration::from_secs(5));
    let bad = Layer {
        plugin_startup_wait: Some("soon".into()),
        ..Layer::default()
    }
    .resolve()
    .unwrap_err();
    assert!(
        bad.iter().any(|e| e.contains("plugin_startup_wait")),
        "{bad:?}"
    );
    assert_eq!(defaults.plugin_limits.component_bytes, 64 << 20);
    assert_eq!(defaults.plugin_upload_wait, Duration::from_secs(2));
    assert_eq!(defaults.plugin_limits.keep_resident_bytes, 2 << 20);
    // A default raised past the built-in maximum raises the maximum with it…
    let raised = Layer {
        plugin_memory_mb: Some(1024),
        ..Layer::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(raised.plugin_limits.max_memory_bytes, 1024 << 20);
    // …but not past one the operator set.
    let errors = Layer {
        plugin_memory_mb: Some(64),
        plugin_max_memory_mb: Some(32),
        plugin_timeout: Some("2s".into()),
        plugin_max_timeout: Some("1s".into()),
        plugin_max_component_mb: Some(0),
        plugin_keep_resident_mb: Some(4096),
        ..Layer::default()
    }
    .resolve()
    .unwrap_err();
    assert_eq!(errors.len(), 4, "{errors:#?}");
    assert!(errors.iter().all(|e| e.contains("plugin_")), "{errors:#?}");
}

#[test]
fn every_bad_field_is_reported() {
    let layer = Layer {
        listen: Some("nope".into()),
        retry_schedule: Some("5s,soon".into()),
        delivery_timeout: Some("0s".into()),
        max_in_flight: Some(0),
        max_pending_events: Some(0),
        plugin_memory_mb: Some(0),
        plugin_compile_timeout: Some("0s".into()),
        plugin_compile_memory_mb: Some(16),
        ..Layer::default()
    };
    let errors = layer.resolve().unwrap_err();
    assert_eq!(errors.len(), 8, "{errors:#?}");
    assert!(
        errors.iter().any(|e| e.starts_with("max_pending_events")),
        "{errors:#?}"
    );
}

/// A schedule entry too large to add to a time (here about 490 billion years, which
/// overflowed a worker's jitter arithmetic) is refused, as is anything past the bound.
#[test]
fn absurd_retry_delays_are_refused() {
    for schedule in ["5s,490000000000y", "31d"] {
        let layer = Layer {
            retry_schedule: Some(schedule.into()),
            ..Layer::default()
        };
        let errors = layer.resolve().unwrap_err();
        assert!(
            errors.iter().any(|e| e.starts_with("retry_schedule")),
            "{schedule}: {errors:?}"
        );
    }
}

/// Retention settings are read, and a key TTL longer than the events holding the keys
/// are kept is refused.
#[test]
fn retention_settings_are_read_and_the_key_ttl_must_fit() {
    let config = Layer {
        retention_finished: Some("2d".into()),
        retention_failed: Some("10d".into()),
        idempotency_key_ttl: Some("12h".into()),
        ..Layer::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(
        config.retention,
        RetentionPolicy {
            finished: Duration::from_secs(2 * 86_400),
            failed: Duration::from_secs(10 * 86_400),
            idempotency_ttl: Duration::from_secs(12 * 3600),
        }
    );
    assert_eq!(
        Layer::default().resolve().unwrap().retention,
        RetentionPolicy::default()
    );
    let errors = Layer {
        retention_finished: Some("1h".into()),
        retention_failed: Some("0s".into()),
        ..Layer::default()
    }
    .resolve()
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("retention_failed")),
        "{errors:?}"
    );
    let errors = Layer {
        retention_finished: Some("1h".into()),
        ..Layer::default()
    }
    .resolve()
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.starts_with("idempotency_key_ttl")),
        "{errors:?}"
    );
}

/// A delivery timeout the lease cannot hold would let an attempt run past its lease (and
/// the delivery be leased again while it runs): refused, with the way out in the message.
#[test]
fn timeouts_must_fit_in_the_lease() {
    let layer = Layer {
        delivery_timeout: Some("400s".into()),
        ..Layer::default()
    };
    let errors = layer.resolve().unwrap_err();
    assert!(errors.iter().any(|e| e.contains("lease")), "{errors:?}");
}

#[test]
fn the_admin_key_can_come_from_a_file_and_a_later_layer_replaces_either() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("key");
    std::fs::write(&file, "  from-the-file-0123456789\n").unwrap();
    let layer = Layer {
        api_key_file: Some(file.clone()),
        ..Layer::default()
    };
    assert_eq!(
        layer.clone().resolve().unwrap().api_key.as_deref(),
        Some("from-the-file-0123456789")
    );
    let env = Layer {
        api_key: Some("from-the-environment-0123".into()),
        ..Layer::default()
    };
    let config = layer.clone().overridden_by(env).resolve().unwrap();
    assert_eq!(config.api_key.as_deref(), Some("from-the-environment-0123"));
    let both = Layer {
        api_key: Some("from-the-environment-0123".into()),
        ..layer
    };
    assert!(both.resolve().unwrap_err()[0].contains("not both"));
    let missing = Layer {
        api_key_file: Some(dir.path().join("nope")),
        ..Layer::default()
    };
    assert!(missing.resolve().unwrap_err()[0].starts_with("api_key_file"));
}

#[test]
fn edge_settings_are_validated() {
    let layer = Layer {
        max_event_bytes: Some(2 << 20),
        max_pending_bytes: Some(1 << 20),
        secret_key: Some("too-short".into()),
        header_timeout: Some("0s".into()),
        max_connections: Some(0),
        max_auth_failures: Some(0),
        ..Layer::default()
    };
    let errors = layer.resolve().unwrap_err();
    for name in [
        "max_pending_bytes",
        "secret_key",
        "header_timeout",
        "max_connections",
        "max_auth_failures",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(name)),
            "{name}: {errors:#?}"
        );
    }
    let ok = Layer {
        header_timeout: Some("2s".into()),
        shutdown_timeout: Some("3s".into()),
        secret_key: Some(hex::encode([7u8; 32])),
        ..Layer::default()
    }
    .resolve()
    .unwrap();
    assert_eq!(ok.http.header_timeout, Duration::from_secs(2));
    assert_eq!(ok.http.shutdown_timeout, Duration::from_secs(3));
    assert_eq!(ok.http.body_timeout, HttpLimits::default().body_timeout);
    assert!(ok.secret_key.is_some());
    assert_eq!(
        ok.secret_key_file,
        PathBuf::from("./switchyard-data/secrets.key")
    );
}

#[test]
fn schedules_parse() {
    assert_eq!(
        parse_schedule("5s, 2m,1h").unwrap(),
        vec![
            Duration::from_secs(5),
            Duration::from_secs(120),
            Duration::from_secs(3600)
        ]
    );
    assert_eq!(parse_schedule("").unwrap(), Vec::<Duration>::new());
    assert_eq!(parse_schedule("none").unwrap(), Vec::<Duration>::new());
}
