//! `switchyard events …`: publish an event (like `stripe trigger`) and look one up.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Api, Body, CliError, Connection, PROFILES_HELP, encode};
use super::{input, output};

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
        } => {
            let data = match data {
                Some(data) => input::json(&data, "--data")?,
                None => json!({}),
            };
            let mut body = json!({ "type": event_type, "data": data });
            if let Some(id) = id {
                body["id"] = json!(id);
            }
            let answer = api
                .send(Method::POST, "/v1/events", Some(Body::Json(body)))
                .await?;
            if api.json {
                output::json(&answer);
                return Ok(());
            }
            output::record(&output::pairs(&answer, &["id", "deliveries"]));
        }
        Command::Get { id } => {
            let event = api.get(&format!("/v1/events/{}", encode(&id))).await?;
            if api.json {
                output::json(&event);
                return Ok(());
            }
            show(&event);
        }
    }
    Ok(())
}

fn show(event: &Value) {
    let mut fields = output::pairs(event, &["id", "type", "timestamp", "idempotency_key"]);
    fields.push(("data", event["data"].to_string()));
    output::record(&fields);
    let deliveries = event["deliveries"].as_array().cloned().unwrap_or_default();
    if !deliveries.is_empty() {
        output::table(
            super::deliveries::COLUMNS,
            deliveries
                .iter()
                .map(|d| output::cells(d, super::deliveries::COLUMNS)),
        );
    }
}
