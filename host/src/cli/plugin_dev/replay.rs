//! `switchyard plugins replay`: what a stored delivery's event would become now. Dry-runs the
//! event through the subscription's plugin (or another one) with the subscription's config,
//! and shows it beside the attempts that were made: when, with which plugin version, and what
//! the receiver answered. The service does not keep the request bodies it sent, so "what was
//! sent" is the attempts' record; when the version is the same as the last attempt's, the dry
//! run's body is the body that was sent (plugins are pure functions of event and config).

use reqwest::Method;
use serde::Serialize;
use switchyard::api::models::{
    AttemptOut, DeliveryDetailOut, DryRunEvent, DryRunIn, DryRunOut, EventOut, SubscriptionOut,
};

use crate::cli::client::{Answer, Api, Body, CliError, encode};
use crate::cli::output::outln;
use crate::cli::{output, plugins};

/// What `--json` prints: everything the human output shows.
#[derive(Serialize)]
struct Replay<'a> {
    delivery: &'a DeliveryDetailOut,
    plugin: &'a str,
    replayed: &'a DryRunOut,
    same_version_as_last_attempt: Option<bool>,
}

/// Replays delivery `id`, through `plugin` if given.
///
/// # Errors
/// An unknown delivery, a subscription without a plugin (and none given), or the server's
/// refusal of the dry run.
pub async fn run(api: &Api, id: &str, plugin: Option<String>) -> Result<(), CliError> {
    let detail: Answer<DeliveryDetailOut> =
        api.get(&format!("/v1/deliveries/{}", encode(id))).await?;
    let delivery = &detail.model.delivery;
    let sub: Answer<SubscriptionOut> = api
        .get(&format!(
            "/v1/subscriptions/{}",
            encode(delivery.subscription_id.as_ref())
        ))
        .await?;
    let event: Answer<EventOut> = api
        .get(&format!(
            "/v1/events/{}",
            encode(delivery.event_id.as_ref())
        ))
        .await?;
    let Some(plugin) = plugin.or(sub.model.plugin.clone()) else {
        return Err(CliError::Input(format!(
            "subscription {} has no plugin (its deliveries are the standard envelope): name one with --plugin",
            delivery.subscription_id
        )));
    };
    let data = serde_json::from_str(event.model.data.get())
        .map_err(|e| CliError::Input(format!("event {}: {e}", event.model.id)))?;
    let body = DryRunIn {
        event: DryRunEvent {
            event_type: event.model.event_type.clone(),
            data,
            id: Some(event.model.id.to_string()),
        },
        config: sub.model.plugin_config.clone(),
    };
    let replayed: Answer<DryRunOut> = api
        .call(
            Method::POST,
            &format!("/v1/plugins/{}/dry-run", encode(&plugin)),
            Some(Body::json(&body)?),
        )
        .await?;
    let now = version(&replayed.model);
    let last = detail
        .model
        .attempts
        .iter()
        .rev()
        .find_map(|a| a.plugin_version.as_deref());
    let same = last.map(|last| last == now);
    if api.json {
        let all = Replay {
            delivery: &detail.model,
            plugin: &plugin,
            replayed: &replayed.model,
            same_version_as_last_attempt: same,
        };
        output::json(&serde_json::to_value(&all).unwrap_or_default());
        return Ok(());
    }
    outln!("what was sent ({} attempts):", detail.model.attempts.len());
    output::table(
        &["at", "outcome", "status", "plugin_version", "error"],
        detail.model.attempts.iter().map(attempt_row),
    );
    outln!();
    match same {
        Some(true) => outln!("replayed through {plugin} — the same version as the last attempt:"),
        Some(false) => outln!(
            "replayed through {plugin} — version {} (the last attempt ran {}):",
            short(now),
            short(last.unwrap_or_default())
        ),
        None => outln!("replayed through {plugin} (no attempt ran a plugin):"),
    }
    plugins::show_dry_run(&replayed.model);
    Ok(())
}

fn version(out: &DryRunOut) -> &str {
    match out {
        DryRunOut::Deliver(d) => &d.plugin_version,
        DryRunOut::Skip(s) => &s.plugin_version,
    }
}

fn attempt_row(a: &AttemptOut) -> Vec<String> {
    vec![
        a.at.to_string(),
        output::value(&serde_json::to_value(a.outcome).unwrap_or_default()),
        output::opt(a.status_code),
        output::opt(a.plugin_version.as_deref().map(short)),
        output::opt(a.error.as_deref()),
    ]
}

fn short(version: &str) -> String {
    version.chars().take(12).collect()
}
