//! `switchyard subscriptions …`: register endpoints, inspect and change them, rotate secrets,
//! send test events, re-enable, recover after an outage.

use std::collections::BTreeMap;

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};
use switchyard::api::models::{
    NonNullPatch, Patch, RecoverIn, RecoverOut, SecretOut, Signature, SubscriptionIn,
    SubscriptionOut, SubscriptionPage, SubscriptionPatch, SubscriptionStatusOut, TestEventIn,
    TestEventOut, Timestamp,
};

use super::client::{Answer, Api, Body, CliError, Connection, PROFILES_HELP, encode, query};
use super::{input, output};
use crate::cli::output::outln;

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
    #[command(after_help = "Example:\n  switchyard subscriptions list --limit 20 --tenant ws_42")]
    List {
        /// Only this tenant's (a key bound to a tenant sees only its own anyway)
        #[arg(long, value_name = "TENANT_ID")]
        tenant: Option<String>,
        #[command(flatten)]
        page: PageArgs,
    },
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
    /// The tenant it belongs to [default: the key's tenant, or `default`]
    #[arg(long, value_name = "TENANT_ID", value_parser = super::tenant_arg)]
    tenant: Option<switchyard::tenant::TenantId>,
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
            let body = Body::json(&create_body(create)?)?;
            let sub: Answer<SubscriptionOut> = api
                .call(Method::POST, "/v1/subscriptions", Some(body))
                .await?;
            api.show(&sub, |s| show(s, true));
        }
        Command::List { tenant, page } => {
            let path = format!(
                "/v1/subscriptions{}",
                query(&[
                    ("tenant_id", tenant),
                    ("limit", page.limit.map(|l| l.to_string())),
                    ("cursor", page.cursor)
                ])
            );
            let page: Answer<SubscriptionPage> = api.get(&path).await?;
            api.show(&page, |page| {
                output::table(
                    &["id", "url", "events", "plugin", "status", "created_at"],
                    page.data.iter().map(|s| {
                        vec![
                            s.id.to_string(),
                            s.url.clone(),
                            s.events.join(","),
                            output::opt(s.plugin.as_deref()),
                            status(s),
                            s.created_at.to_string(),
                        ]
                    }),
                );
                output::next_page(page.next_cursor.as_deref());
            });
        }
        Command::Get { id } => {
            let sub: Answer<SubscriptionOut> = api.get(&path(&id, "")).await?;
            api.show(&sub, |s| show(s, false));
        }
        Command::Update(update) => {
            let id = update.id.clone();
            let body = Body::json(&update_body(update)?)?;
            let sub: Answer<SubscriptionOut> =
                api.call(Method::PATCH, &path(&id, ""), Some(body)).await?;
            api.show(&sub, |s| show(s, false));
        }
        Command::Delete { id } => {
            api.send(Method::DELETE, &path(&id, ""), None).await?;
            if api.json {
                output::json(&json!({ "deleted": id }));
            } else {
                outln!("deleted {id}");
            }
        }
        Command::RotateSecret { id } => {
            let answer: Answer<SecretOut> = api
                .call(Method::POST, &path(&id, "/rotate-secret"), None)
                .await?;
            api.show(&answer, |a| {
                outln!("new secret (shown only now; the previous one keeps signing for the grace period):");
                outln!("{}", a.secret);
            });
        }
        Command::Test { id, event_type } => {
            let body = match event_type {
                Some(event_type) => Some(Body::json(&TestEventIn {
                    event_type: Some(event_type),
                })?),
                None => None,
            };
            let answer: Answer<TestEventOut> =
                api.call(Method::POST, &path(&id, "/test"), body).await?;
            api.show(&answer, |a| {
                output::record(&[
                    ("delivery_id", output::opt(a.delivery_id.as_ref())),
                    ("event_id", a.event_id.to_string()),
                ]);
            });
        }
        Command::Enable { id } => {
            let sub: Answer<SubscriptionOut> =
                api.call(Method::POST, &path(&id, "/enable"), None).await?;
            api.show(&sub, |s| show(s, false));
        }
        Command::Recover { id, since, until } => {
            let body = RecoverIn {
                since: instant(&since)?,
                until: until.as_deref().map(instant).transpose()?,
            };
            let answer: Answer<RecoverOut> = api
                .call(
                    Method::POST,
                    &path(&id, "/recover"),
                    Some(Body::json(&body)?),
                )
                .await?;
            api.show(&answer, |a| {
                outln!("{} failed deliveries queued again", a.recovered);
            });
        }
    }
    Ok(())
}

fn path(id: &str, tail: &str) -> String {
    format!("/v1/subscriptions/{}{tail}", encode(id))
}

fn status(sub: &SubscriptionOut) -> String {
    match sub.status {
        SubscriptionStatusOut::Enabled => "enabled".into(),
        SubscriptionStatusOut::Disabled => "disabled".into(),
    }
}

fn show(sub: &SubscriptionOut, with_secret: bool) {
    let headers: Vec<String> = sub
        .headers
        .iter()
        .map(|(n, v)| format!("{n}: {v}"))
        .collect();
    output::record(&[
        ("id", sub.id.to_string()),
        ("url", sub.url.clone()),
        ("events", sub.events.join(",")),
        ("plugin", output::opt(sub.plugin.as_deref())),
        (
            "plugin_config",
            output::value(sub.plugin_config.as_ref().unwrap_or(&Value::Null)),
        ),
        ("description", output::opt(sub.description.as_deref())),
        (
            "headers",
            if headers.is_empty() {
                "-".into()
            } else {
                headers.join("\n")
            },
        ),
        (
            "signature",
            serde_json::to_string(&sub.signature).unwrap_or_default(),
        ),
        ("status", status(sub)),
        (
            "disabled_reason",
            output::opt(sub.disabled_reason.as_deref()),
        ),
        ("disabled_at", output::opt(sub.disabled_at)),
        ("created_at", sub.created_at.to_string()),
        ("updated_at", sub.updated_at.to_string()),
    ]);
    if with_secret && let Some(secret) = &sub.secret {
        outln!("secret (shown only now; store it to verify signatures): {secret}");
    }
}

fn headers(list: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    list.iter().map(|h| input::header(h)).collect()
}

fn signature(arg: &str) -> Result<Signature, CliError> {
    serde_json::from_value(input::json(arg, "--signature")?)
        .map_err(|e| CliError::Input(format!("--signature: {e}")))
}

fn create_body(args: CreateArgs) -> Result<SubscriptionIn, CliError> {
    Ok(SubscriptionIn {
        tenant_id: args.tenant,
        url: args.url,
        events: args.events,
        plugin: args.plugin,
        plugin_config: args
            .plugin_config
            .map(|c| input::json(&c, "--plugin-config"))
            .transpose()?,
        description: args.description,
        headers: headers(&args.headers)?,
        signature: args.signature.as_deref().map(signature).transpose()?,
        secret: args.secret,
    })
}

fn update_body(args: UpdateArgs) -> Result<SubscriptionPatch, CliError> {
    let mut patch = SubscriptionPatch::default();
    if let Some(url) = args.url {
        patch.url = NonNullPatch::Value(url);
    }
    if let Some(events) = args.events {
        patch.events = NonNullPatch::Value(events);
    }
    if args.no_plugin {
        patch.plugin = Patch::Null;
        patch.plugin_config = Patch::Null;
    }
    if let Some(plugin) = args.plugin {
        patch.plugin = Patch::Value(plugin);
    }
    if let Some(config) = args.plugin_config {
        patch.plugin_config = Patch::Value(input::json(&config, "--plugin-config")?);
    }
    if args.no_description {
        patch.description = Patch::Null;
    }
    if let Some(description) = args.description {
        patch.description = Patch::Value(description);
    }
    if args.no_headers {
        patch.headers = NonNullPatch::Value(BTreeMap::new());
    } else if !args.headers.is_empty() {
        patch.headers = NonNullPatch::Value(headers(&args.headers)?);
    }
    if let Some(arg) = args.signature {
        patch.signature = NonNullPatch::Value(signature(&arg)?);
    }
    if patch == SubscriptionPatch::default() {
        return Err(CliError::Input(
            "nothing to change: give at least one of --url, --events, --plugin, … (see --help)"
                .into(),
        ));
    }
    Ok(patch)
}

/// RFC 3339 as given, or a duration ago (`6h`).
fn instant(text: &str) -> Result<Timestamp, CliError> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, rfc3339) {
        return Ok(Timestamp(at));
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
        .map(Timestamp)
        .ok_or_else(|| CliError::Input(format!("{text:?} is too long ago")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_rfc3339_or_a_duration_ago() {
        assert_eq!(
            instant("2026-11-30T08:00:00Z").unwrap().to_string(),
            "2026-11-30T08:00:00Z"
        );
        let ago = instant("1h").unwrap();
        let diff = time::OffsetDateTime::now_utc() - ago.0;
        assert!(
            diff.whole_minutes() >= 59 && diff.whole_minutes() <= 61,
            "{diff}"
        );
        assert!(instant("yesterday-ish").is_err());
        assert!(instant("99999999999d").is_err());
    }
}
