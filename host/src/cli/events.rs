//! `switchyard events …`: publish an event (like `stripe trigger`) and look one up.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use switchyard::api::models::{EventAccepted, EventIn, EventOut};

use super::client::{Answer, Api, Body, CliError, Connection, PROFILES_HELP, encode};
use super::{input, output};
use crate::cli::output::outln;

/// `switchyard events`
#[derive(clap::Args)]
#[command(after_long_help = PROFILES_HELP)]
pub struct Args {
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish an event; answers once it is durably stored, with how many deliveries it made.
    #[command(
        after_help = "Example:\n  switchyard events send post.published --data '{\"title\": \"Hello\"}'\n  switchyard events send order.paid --data @order.json --id order-1234-paid"
    )]
    Send {
        /// Event type, e.g. post.published
        #[arg(value_name = "TYPE")]
        event_type: String,
        /// The event data: JSON, @file or @- (stdin) [default: {}]
        #[arg(long, value_name = "JSON|@FILE")]
        data: Option<String>,
        /// Idempotency key: sending the same key again returns the same event
        #[arg(long, value_name = "KEY")]
        id: Option<String>,
        /// The tenant to publish into [default: the key's tenant, or `default`]
        #[arg(long, value_name = "TENANT_ID", value_parser = super::tenant_arg)]
        tenant: Option<switchyard::tenant::TenantId>,
    },
    /// Show an event and its deliveries.
    #[command(after_help = "Example:\n  switchyard events get evt_01J...")]
    Get {
        /// The event's id (evt_…).
        id: String,
    },
}

/// Runs an `events` command.
///
/// # Errors
/// Bad input, or the server's refusal.
pub async fn run(args: Args) -> Result<(), CliError> {
    let api = Api::connect(&args.conn)?;
    match args.command {
        Command::Send {
            event_type,
            data,
            id,
            tenant,
        } => {
            let data = match data {
                Some(data) => input::json(&data, "--data")?,
                None => json!({}),
            };
            let data = serde_json::value::to_raw_value(&data)
                .map_err(|e| CliError::Input(e.to_string()))?;
            let body = EventIn {
                tenant_id: tenant,
                event_type,
                data,
                id,
            };
            let answer: Answer<EventAccepted> = api
                .call(Method::POST, "/v1/events", Some(Body::json(&body)?))
                .await?;
            api.show(&answer, |a| {
                output::record(&[
                    ("id", a.id.to_string()),
                    ("deliveries", a.deliveries.to_string()),
                ]);
            });
        }
        Command::Get { id } => {
            let event: Answer<EventOut> = api.get(&format!("/v1/events/{}", encode(&id))).await?;
            api.show(&event, show);
        }
    }
    Ok(())
}

fn show(event: &EventOut) {
    output::record(&[
        ("id", event.id.to_string()),
        ("type", event.event_type.clone()),
        ("timestamp", event.timestamp.to_string()),
        (
            "idempotency_key",
            output::opt(event.idempotency_key.as_deref()),
        ),
        ("data", event.data.get().to_owned()),
    ]);
    if !event.deliveries.is_empty() {
        super::deliveries::table(&event.deliveries);
    }
    if let Some(cursor) = &event.deliveries_next_cursor {
        outln!(
            "(more deliveries: switchyard deliveries list --event {} --cursor {cursor})",
            event.id
        );
    }
}
