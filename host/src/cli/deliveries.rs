//! `switchyard deliveries …`: the delivery log, one delivery with its attempts, a manual retry,
//! and `tail`, which follows new attempts live.

use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;
use switchyard::api::models::{
    AttemptFeedOut, AttemptFeedPage, DeliveryDetailOut, DeliveryOut, DeliveryPage, RetryOut,
};

use super::client::{Answer, Api, CliError, Connection, PROFILES_HELP, encode, query};
use super::output;
use super::subscriptions::PageArgs;
use crate::cli::output::outln;

/// How often `tail` asks for new attempts.
const TAIL_EVERY: Duration = Duration::from_millis(500);

/// `switchyard deliveries`
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
    /// List deliveries, newest first.
    #[command(
        after_help = "Example:\n  switchyard deliveries list --status failed --subscription sub_01J..."
    )]
    List {
        /// Only this subscription's
        #[arg(long, value_name = "SUB_ID")]
        subscription: Option<String>,
        /// Only this event's
        #[arg(long, value_name = "EVT_ID")]
        event: Option<String>,
        /// Only in this status: pending, delivering, succeeded, failed, skipped, cancelled
        #[arg(long)]
        status: Option<String>,
        /// Only this tenant's (a key bound to a tenant sees only its own anyway)
        #[arg(long, value_name = "TENANT_ID")]
        tenant: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
    /// Show a delivery and its attempts.
    #[command(after_help = "Example:\n  switchyard deliveries get dlv_01J...")]
    Get {
        /// The delivery's id (dlv_…).
        id: String,
    },
    /// Queue a finished delivery again.
    #[command(after_help = "Example:\n  switchyard deliveries retry dlv_01J...")]
    Retry {
        /// The delivery's id (dlv_…).
        id: String,
    },
    /// Print the latest attempts, then follow new ones as they happen (ctrl-c stops).
    #[command(
        after_help = "Example:\n  switchyard deliveries tail --subscription sub_01J...\n  switchyard deliveries tail --json | jq .status_code"
    )]
    Tail {
        /// Only this subscription's attempts
        #[arg(long, value_name = "SUB_ID")]
        subscription: Option<String>,
        /// How many of the latest attempts to print first
        #[arg(long, short = 'n', default_value_t = 10)]
        lines: u32,
        /// Print what is there and stop instead of following
        #[arg(long)]
        no_follow: bool,
    },
}

/// Runs a `deliveries` command.
///
/// # Errors
/// Bad input, or the server's refusal.
pub async fn run(args: Args) -> Result<(), CliError> {
    let api = Api::connect(&args.conn)?;
    match args.command {
        Command::List {
            subscription,
            event,
            status,
            tenant,
            page,
        } => {
            let path = format!(
                "/v1/deliveries{}",
                query(&[
                    ("tenant_id", tenant),
                    ("subscription_id", subscription),
                    ("event_id", event),
                    ("status", status),
                    ("limit", page.limit.map(|l| l.to_string())),
                    ("cursor", page.cursor),
                ])
            );
            let page: Answer<DeliveryPage> = api.get(&path).await?;
            api.show(&page, |page| {
                table(&page.data);
                output::next_page(page.next_cursor.as_deref());
            });
        }
        Command::Get { id } => {
            let delivery: Answer<DeliveryDetailOut> =
                api.get(&format!("/v1/deliveries/{}", encode(&id))).await?;
            api.show(&delivery, show);
        }
        Command::Retry { id } => {
            let answer: Answer<RetryOut> = api
                .call(
                    Method::POST,
                    &format!("/v1/deliveries/{}/retry", encode(&id)),
                    None,
                )
                .await?;
            api.show(&answer, |a| outln!("{} queued again", a.id));
        }
        Command::Tail {
            subscription,
            lines,
            no_follow,
        } => tail(&api, subscription, lines, !no_follow).await?,
    }
    Ok(())
}

fn word(value: &impl serde::Serialize) -> String {
    output::value(&serde_json::to_value(value).unwrap_or_default())
}

/// Deliveries as a table (also under `events get`).
pub fn table(deliveries: &[DeliveryOut]) {
    output::table(
        &[
            "id",
            "subscription_id",
            "status",
            "attempts",
            "last_error",
            "created_at",
        ],
        deliveries.iter().map(|d| {
            vec![
                d.id.to_string(),
                d.subscription_id.to_string(),
                word(&d.status),
                d.attempts_made.to_string(),
                output::opt(d.last_error.as_deref()),
                d.created_at.to_string(),
            ]
        }),
    );
}

fn show(detail: &DeliveryDetailOut) {
    let d = &detail.delivery;
    output::record(&[
        ("id", d.id.to_string()),
        ("event_id", d.event_id.to_string()),
        ("subscription_id", d.subscription_id.to_string()),
        ("status", word(&d.status)),
        ("attempts_made", d.attempts_made.to_string()),
        ("next_attempt_at", output::opt(d.next_attempt_at)),
        ("last_error", output::opt(d.last_error.as_deref())),
        ("skip_reason", output::opt(d.skip_reason.as_deref())),
        ("created_at", d.created_at.to_string()),
        ("updated_at", d.updated_at.to_string()),
    ]);
    if !detail.attempts.is_empty() {
        output::table(
            &["at", "outcome", "status_code", "latency_ms", "error"],
            detail.attempts.iter().map(|a| {
                vec![
                    a.at.to_string(),
                    word(&a.outcome),
                    output::opt(a.status_code),
                    output::opt(a.latency_ms),
                    output::opt(a.error.as_deref()),
                ]
            }),
        );
    }
}

/// `GET /v1/attempts` without a cursor gives the latest attempts; with `after` the ones
/// recorded since, oldest first.
async fn tail(
    api: &Api,
    subscription: Option<String>,
    lines: u32,
    follow: bool,
) -> Result<(), CliError> {
    let first = query(&[
        ("subscription_id", subscription.clone()),
        ("limit", Some(lines.clamp(1, 250).to_string())),
    ]);
    let mut page: Answer<AttemptFeedPage> = api.get(&format!("/v1/attempts{first}")).await?;
    let mut cursor = None;
    loop {
        let raw = page.raw["data"].as_array().cloned().unwrap_or_default();
        for (attempt, raw) in page.model.data.iter().zip(raw) {
            if api.json {
                outln!("{raw}");
            } else {
                print_attempt(attempt);
            }
        }
        if page.model.next_cursor.is_some() {
            cursor.clone_from(&page.model.next_cursor);
        }
        if !follow {
            return Ok(());
        }
        // A full page means more are waiting: ask again at once.
        if page.model.data.len() < 250 {
            tokio::time::sleep(TAIL_EVERY).await;
        }
        let next = query(&[
            ("subscription_id", subscription.clone()),
            ("after", cursor.clone()),
            ("limit", Some("250".into())),
        ]);
        page = api.get(&format!("/v1/attempts{next}")).await?;
    }
}

fn print_attempt(feed: &AttemptFeedOut) {
    let a = &feed.attempt;
    let latency = a.latency_ms.map(|ms| format!("{ms}ms"));
    outln!(
        "{}  {}  {}  {}  {:<9} {:>3} {:>7}  {}",
        a.at,
        feed.delivery_id,
        feed.subscription_id,
        feed.event_type,
        word(&a.outcome),
        output::opt(a.status_code),
        output::opt(latency),
        a.error.as_deref().unwrap_or(""),
    );
}
