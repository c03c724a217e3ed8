//! `switchyard deliveries …`: the delivery log, one delivery with its attempts, a manual retry,
//! and `tail`, which follows new attempts live.

use std::time::Duration;

use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use super::client::{Api, CliError, Connection, PROFILES_HELP, encode, query};
use super::output;
use super::subscriptions::PageArgs;

/// The delivery fields a table shows.
pub const COLUMNS: &[&str] = &[
    "id",
    "subscription_id",
    "status",
    "attempts_made",
    "last_error",
    "created_at",
];
const FIELDS: &[&str] = &[
    "id",
    "event_id",
    "subscription_id",
    "status",
    "attempts_made",
    "next_attempt_at",
    "last_error",
    "skip_reason",
    "created_at",
    "updated_at",
];
const ATTEMPT_COLUMNS: &[&str] = &["at", "outcome", "status_code", "latency_ms", "error"];
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
            page,
        } => {
            let path = format!(
                "/v1/deliveries{}",
                query(&[
                    ("subscription_id", subscription),
                    ("event_id", event),
                    ("status", status),
                    ("limit", page.limit.map(|l| l.to_string())),
                    ("cursor", page.cursor),
                ])
            );
            let page = api.get(&path).await?;
            if api.json {
                output::json(&page);
                return Ok(());
            }
            let rows = page["data"].as_array().cloned().unwrap_or_default();
            output::table(COLUMNS, rows.iter().map(|d| output::cells(d, COLUMNS)));
            output::next_page(&page);
        }
        Command::Get { id } => {
            let delivery = api.get(&format!("/v1/deliveries/{}", encode(&id))).await?;
            if api.json {
                output::json(&delivery);
                return Ok(());
            }
            output::record(&output::pairs(&delivery, FIELDS));
            let attempts = delivery["attempts"].as_array().cloned().unwrap_or_default();
            if !attempts.is_empty() {
                output::table(
                    ATTEMPT_COLUMNS,
                    attempts.iter().map(|a| output::cells(a, ATTEMPT_COLUMNS)),
                );
            }
        }
        Command::Retry { id } => {
            let answer = api
                .send(
                    Method::POST,
                    &format!("/v1/deliveries/{}/retry", encode(&id)),
                    None,
                )
                .await?;
            if api.json {
                output::json(&answer);
                return Ok(());
            }
            println!("{id} queued again");
        }
        Command::Tail {
            subscription,
            lines,
            no_follow,
        } => tail(&api, subscription, lines, !no_follow).await?,
    }
    Ok(())
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
    let mut page = api.get(&format!("/v1/attempts{first}")).await?;
    let mut cursor = None;
    loop {
        for attempt in page["data"].as_array().into_iter().flatten() {
            print_attempt(api, attempt);
        }
        if let Some(next) = page["next_cursor"].as_str() {
            cursor = Some(next.to_owned());
        }
        if !follow {
            return Ok(());
        }
        // A full page means more are waiting: ask again at once.
        if page["data"].as_array().is_none_or(|d| d.len() < 250) {
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

fn print_attempt(api: &Api, attempt: &Value) {
    if api.json {
        return println!("{attempt}");
    }
    let status = match attempt["status_code"].as_i64() {
        Some(code) => code.to_string(),
        None => "-".into(),
    };
    let latency = match attempt["latency_ms"].as_i64() {
        Some(ms) => format!("{ms}ms"),
        None => "-".into(),
    };
    let error = attempt["error"].as_str().unwrap_or("");
    println!(
        "{}  {}  {}  {}  {:<9} {:>3} {:>7}  {error}",
        output::cell(&attempt["at"]),
        output::cell(&attempt["delivery_id"]),
        output::cell(&attempt["subscription_id"]),
        output::cell(&attempt["event_type"]),
        output::cell(&attempt["outcome"]),
        status,
        latency,
    );
}
