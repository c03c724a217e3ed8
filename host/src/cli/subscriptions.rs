//! `switchyard subscriptions …`: register endpoints, inspect and change them, rotate secrets,
//! send test events, re-enable, recover after an outage.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Map, Value, json};

use super::client::{Api, Body, CliError, Connection, PROFILES_HELP, encode, query};
use super::{input, output};

/// The subscription fields a table shows.
const COLUMNS: &[&str] = &["id", "url", "events", "plugin", "status", "created_at"];
/// The fields `get` shows.
const FIELDS: &[&str] = &[
    "id",
    "url",
    "events",
    "plugin",
    "plugin_config",
    "description",
    "headers",
    "signature",
    "status",
    "disabled_reason",
    "disabled_at",
    "created_at",
    "updated_at",
];

/// `switchyard subscriptions`
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
    /// Create a subscription; prints its signing secret, shown only now.
    #[command(
        after_help = "Example:\n  switchyard subscriptions create --url https://example.com/hook \\\n    --events 'post.*,user.created' --plugin slack --plugin-config @slack.json"
    )]
    Create(CreateArgs),
    /// List subscriptions, oldest first.
    #[command(after_help = "Example:\n  switchyard subscriptions list --limit 20")]
    List(PageArgs),
    /// Show one subscription.
    #[command(after_help = "Example:\n  switchyard subscriptions get sub_01J...")]
    Get {
        /// The subscription's id (sub_…).
        id: String,
    },
    /// Change a subscription; fields not given stay as they are.
    #[command(
        after_help = "Example:\n  switchyard subscriptions update sub_01J... --events 'post.*' --no-plugin"
    )]
    Update(UpdateArgs),
    /// Delete a subscription; its pending deliveries are cancelled.
    #[command(after_help = "Example:\n  switchyard subscriptions delete sub_01J...")]
    Delete {
        /// The subscription's id (sub_…).
        id: String,
    },
    /// Replace the signing secret; the old one keeps signing during the grace period.
    #[command(after_help = "Example:\n  switchyard subscriptions rotate-secret sub_01J...")]
    RotateSecret {
        /// The subscription's id (sub_…).
        id: String,
    },
    /// Send a sample event to this subscription only, through its plugin and signing.
    #[command(
        after_help = "Example:\n  switchyard subscriptions test sub_01J... --type post.published"
    )]
    Test {
        /// The subscription's id (sub_…).
        id: String,
        /// Event type of the sample [default: switchyard.test]
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
    },
    /// Re-enable a subscription that was disabled (410 Gone, or failing for too long).
    #[command(after_help = "Example:\n  switchyard subscriptions enable sub_01J...")]
    Enable {
        /// The subscription's id (sub_…).
        id: String,
    },
    /// Queue again every failed delivery of the subscription created in a time window.
    #[command(
        after_help = "Example:\n  switchyard subscriptions recover sub_01J... --since 6h\n  switchyard subscriptions recover sub_01J... --since 2026-11-30T08:00:00Z --until 2026-11-30T12:00:00Z"
    )]
    Recover {
        /// The subscription's id (sub_…).
        id: String,
        /// Start of the window: RFC 3339, or a duration ago (e.g. 6h, 2d)
        #[arg(long)]
        since: String,
        /// End of the window: RFC 3339, or a duration ago [default: now]
        #[arg(long)]
        until: Option<String>,
    },
}

/// `--limit` / `--cursor` of list commands.
#[derive(clap::Args)]
pub struct PageArgs {
    /// Page size, 1–250 [default: 50]
    #[arg(long)]
    pub limit: Option<u32>,
    /// Where the page starts (the previous page's next_cursor)
    #[arg(long)]
    pub cursor: Option<String>,
}

#[derive(clap::Args)]
struct CreateArgs {
    /// Where deliveries go (https; http and private addresses only when the server allows them)
    #[arg(long)]
    url: String,
    /// Event types or patterns, comma-separated: post.published, post.*, *
    #[arg(long, value_delimiter = ',', required = true)]
    events: Vec<String>,
    /// Plugin that filters or reshapes the payload
    #[arg(long)]
    plugin: Option<String>,
    /// The plugin's config: JSON, @file or @- (stdin)
    #[arg(long, value_name = "JSON|@FILE")]
    plugin_config: Option<String>,
    /// Free text
    #[arg(long)]
    description: Option<String>,
    /// Extra header sent with every delivery, 'name: value' (repeatable)
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Signing scheme object, e.g. '{"scheme":"hmac-sha256-hex","header":"x-hub-signature-256"}'
    #[arg(long, value_name = "JSON|@FILE")]
    signature: Option<String>,
    /// Your own signing secret instead of a generated one
    #[arg(long)]
    secret: Option<String>,
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// The subscription's id (sub_…).
    id: String,
    /// New URL
    #[arg(long)]
    url: Option<String>,
    /// New event types or patterns, comma-separated
    #[arg(long, value_delimiter = ',')]
    events: Option<Vec<String>>,
    /// New plugin
    #[arg(long, conflicts_with = "no_plugin")]
    plugin: Option<String>,
    /// Remove the plugin (and its config)
    #[arg(long)]
    no_plugin: bool,
    /// New plugin config: JSON, @file or @- (stdin)
    #[arg(long, value_name = "JSON|@FILE", conflicts_with = "no_plugin")]
    plugin_config: Option<String>,
    /// New description
    #[arg(long, conflicts_with = "no_description")]
    description: Option<String>,
    /// Remove the description
    #[arg(long)]
    no_description: bool,
    /// Replace the extra headers, 'name: value' (repeatable)
    #[arg(
        long = "header",
        value_name = "NAME: VALUE",
        conflicts_with = "no_headers"
    )]
    headers: Vec<String>,
    /// Remove every extra header
    #[arg(long)]
    no_headers: bool,
    /// New signing scheme object (JSON or @file)
    #[arg(long, value_name = "JSON|@FILE")]
    signature: Option<String>,
}

/// Runs a `subscriptions` command.
///
/// # Errors
/// Bad input, or the server's refusal.
pub async fn run(args: Args) -> Result<(), CliError> {
    let api = Api::connect(&args.conn)?;
    match args.command {
        Command::Create(create) => {
            let body = create_body(create)?;
            let sub = api
                .send(Method::POST, "/v1/subscriptions", Some(Body::Json(body)))
                .await?;
            show(&api, &sub, true);
        }
        Command::List(page) => {
            let path = format!(
                "/v1/subscriptions{}",
                query(&[
                    ("limit", page.limit.map(|l| l.to_string())),
                    ("cursor", page.cursor)
                ])
            );
            let page = api.get(&path).await?;
            if api.json {
                output::json(&page);
                return Ok(());
            }
            let rows = page["data"].as_array().cloned().unwrap_or_default();
            output::table(COLUMNS, rows.iter().map(|s| output::cells(s, COLUMNS)));
            output::next_page(&page);
        }
        Command::Get { id } => {
            let sub = api.get(&path(&id, "")).await?;
            show(&api, &sub, false);
        }
        Command::Update(update) => {
            let id = update.id.clone();
            let body = update_body(update)?;
            let sub = api
                .send(Method::PATCH, &path(&id, ""), Some(Body::Json(body)))
                .await?;
            show(&api, &sub, false);
        }
        Command::Delete { id } => {
            api.send(Method::DELETE, &path(&id, ""), None).await?;
            if api.json {
                output::json(&json!({ "deleted": id }));
            } else {
                println!("deleted {id}");
            }
        }
        Command::RotateSecret { id } => {
            let answer = api
                .send(Method::POST, &path(&id, "/rotate-secret"), None)
                .await?;
            if api.json {
                output::json(&answer);
                return Ok(());
            }
            println!(
                "new secret (shown only now; the previous one keeps signing for the grace period):"
            );
            println!("{}", output::cell(&answer["secret"]));
        }
        Command::Test { id, event_type } => {
            let body = event_type.map(|t| Body::Json(json!({ "type": t })));
            let answer = api.send(Method::POST, &path(&id, "/test"), body).await?;
            if api.json {
                output::json(&answer);
                return Ok(());
            }
            output::record(&output::pairs(&answer, &["delivery_id", "event_id"]));
        }
        Command::Enable { id } => {
            let sub = api.send(Method::POST, &path(&id, "/enable"), None).await?;
            show(&api, &sub, false);
        }
        Command::Recover { id, since, until } => {
            let mut body = json!({ "since": instant(&since)? });
            if let Some(until) = until {
                body["until"] = json!(instant(&until)?);
            }
            let answer = api
                .send(Method::POST, &path(&id, "/recover"), Some(Body::Json(body)))
                .await?;
            if api.json {
                output::json(&answer);
                return Ok(());
            }
            println!(
                "{} failed deliveries queued again",
                output::cell(&answer["recovered"])
            );
        }
    }
    Ok(())
}

fn path(id: &str, tail: &str) -> String {
    format!("/v1/subscriptions/{}{tail}", encode(id))
}

fn show(api: &Api, sub: &Value, with_secret: bool) {
    if api.json {
        return output::json(sub);
    }
    output::record(&output::pairs(sub, FIELDS));
    if with_secret && let Some(secret) = sub["secret"].as_str() {
        println!("secret (shown only now; store it to verify signatures): {secret}");
    }
}

fn headers(list: &[String]) -> Result<Map<String, Value>, CliError> {
    list.iter()
        .map(|h| input::header(h).map(|(n, v)| (n, Value::String(v))))
        .collect()
}

fn create_body(args: CreateArgs) -> Result<Value, CliError> {
    let mut body = json!({ "url": args.url, "events": args.events });
    if let Some(plugin) = args.plugin {
        body["plugin"] = json!(plugin);
    }
    if let Some(config) = args.plugin_config {
        body["plugin_config"] = input::json(&config, "--plugin-config")?;
    }
    if let Some(description) = args.description {
        body["description"] = json!(description);
    }
    if !args.headers.is_empty() {
        body["headers"] = Value::Object(headers(&args.headers)?);
    }
    if let Some(signature) = args.signature {
        body["signature"] = input::json(&signature, "--signature")?;
    }
    if let Some(secret) = args.secret {
        body["secret"] = json!(secret);
    }
    Ok(body)
}

fn update_body(args: UpdateArgs) -> Result<Value, CliError> {
    let mut body = Map::new();
    if let Some(url) = args.url {
        body.insert("url".into(), json!(url));
    }
    if let Some(events) = args.events {
        body.insert("events".into(), json!(events));
    }
    if args.no_plugin {
        body.insert("plugin".into(), Value::Null);
        body.insert("plugin_config".into(), Value::Null);
    }
    if let Some(plugin) = args.plugin {
        body.insert("plugin".into(), json!(plugin));
    }
    if let Some(config) = args.plugin_config {
        body.insert(
            "plugin_config".into(),
            input::json(&config, "--plugin-config")?,
        );
    }
    if args.no_description {
        body.insert("description".into(), Value::Null);
    }
    if let Some(description) = args.description {
        body.insert("description".into(), json!(description));
    }
    if args.no_headers {
        body.insert("headers".into(), json!({}));
    } else if !args.headers.is_empty() {
        body.insert("headers".into(), Value::Object(headers(&args.headers)?));
    }
    if let Some(signature) = args.signature {
        body.insert("signature".into(), input::json(&signature, "--signature")?);
    }
    if body.is_empty() {
        return Err(CliError::Input(
            "nothing to change: give at least one of --url, --events, --plugin, … (see --help)"
                .into(),
        ));
    }
    Ok(Value::Object(body))
}

/// RFC 3339 as given, or a duration ago (`6h`) as RFC 3339.
fn instant(text: &str) -> Result<String, CliError> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(text, rfc3339).is_ok() {
        return Ok(text.to_owned());
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        CliError::Input(format!(
            "{text:?} is neither an RFC 3339 time (2026-11-30T08:00:00Z) nor a duration (6h)"
        ))
    })?;
    let ago = time::Duration::try_from(ago)
        .map_err(|_| CliError::Input(format!("{text:?} is too long ago")))?;
    time::OffsetDateTime::now_utc()
        .checked_sub(ago)
        .and_then(|t| t.format(rfc3339).ok())
        .ok_or_else(|| CliError::Input(format!("{text:?} is too long ago")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_or_a_duration_ago() {
        assert_eq!(
            instant("2026-11-30T08:00:00Z").unwrap(),
            "2026-11-30T08:00:00Z"
        );
        let ago = instant("1h").unwrap();
        let parsed =
            time::OffsetDateTime::parse(&ago, &time::format_description::well_known::Rfc3339)
                .unwrap();
        let diff = time::OffsetDateTime::now_utc() - parsed;
        assert!(
            diff.whole_minutes() >= 59 && diff.whole_minutes() <= 61,
            "{diff}"
        );
        assert!(instant("yesterday-ish").is_err());
        assert!(instant("99999999999d").is_err());
    }
}
