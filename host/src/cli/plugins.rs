//! `switchyard plugins …`: upload a component, list and inspect plugins, delete one, dry-run one
//! on a sample event.

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use switchyard::api::models::{DryRunEvent, DryRunIn, DryRunOut, PluginOut, PluginPage};

use super::client::{Answer, Api, Body, CliError, Connection, PROFILES_HELP, encode};
use super::{input, output};

/// `switchyard plugins`
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
    /// Upload a component (.wasm) under a name; it replaces the old version only if it loads.
    #[command(
        after_help = "Example:\n  switchyard plugins push my-slack target/wasm32-wasip2/release/my_slack.wasm"
    )]
    Push {
        /// Plugin name: a-z, 0-9, '_' and '-'
        name: String,
        /// The component file
        file: std::path::PathBuf,
    },
    /// List the plugins and their status.
    #[command(after_help = "Example:\n  switchyard plugins list")]
    List,
    /// Show one plugin (and why its latest file failed to load, if it did).
    #[command(after_help = "Example:\n  switchyard plugins get slack")]
    Get {
        /// Plugin name
        name: String,
    },
    /// Delete a plugin (refused while a subscription uses it).
    #[command(after_help = "Example:\n  switchyard plugins delete my-slack")]
    Delete {
        /// Plugin name
        name: String,
    },
    /// Run a plugin on a sample event: prints the body, headers and logs; nothing is sent.
    #[command(
        after_help = "Example:\n  switchyard plugins dry-run slack --type post.published \\\n    --data '{\"title\": \"Hello\"}' --config '{\"title\": \"New post: {{data.title}}\"}'"
    )]
    DryRun {
        /// Plugin name
        name: String,
        /// Event type of the sample
        #[arg(long = "type", value_name = "TYPE")]
        event_type: String,
        /// Event data: JSON, @file or @- (stdin) [default: {}]
        #[arg(long, value_name = "JSON|@FILE")]
        data: Option<String>,
        /// Plugin config: JSON, @file or @- (stdin)
        #[arg(long, value_name = "JSON|@FILE")]
        config: Option<String>,
    },
}

/// Runs a `plugins` command.
///
/// # Errors
/// Bad input, or the server's refusal.
pub async fn run(args: Args) -> Result<(), CliError> {
    let api = Api::connect(&args.conn)?;
    match args.command {
        Command::Push { name, file } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
            let info: Answer<PluginOut> = api
                .call(
                    Method::PUT,
                    &path(&name),
                    Some(Body::Bytes(bytes, "application/wasm")),
                )
                .await?;
            api.show(&info, show);
        }
        Command::List => {
            let page: Answer<PluginPage> = api.get("/v1/plugins").await?;
            api.show(&page, |page| {
                output::table(
                    &["name", "status", "version", "size", "loaded_at"],
                    page.data.iter().map(|p| {
                        vec![
                            p.name.clone(),
                            word(&p.status),
                            output::opt(p.version.as_deref().map(short)),
                            output::opt(p.size),
                            output::opt(p.loaded_at),
                        ]
                    }),
                );
            });
        }
        Command::Get { name } => {
            let info: Answer<PluginOut> = api.get(&path(&name)).await?;
            api.show(&info, show);
        }
        Command::Delete { name } => {
            api.send(Method::DELETE, &path(&name), None).await?;
            if api.json {
                output::json(&json!({ "deleted": name }));
            } else {
                println!("deleted {name}");
            }
        }
        Command::DryRun {
            name,
            event_type,
            data,
            config,
        } => {
            let body = DryRunIn {
                event: DryRunEvent {
                    event_type,
                    data: match data {
                        Some(data) => input::json(&data, "--data")?,
                        None => json!({}),
                    },
                    id: None,
                },
                config: config.map(|c| input::json(&c, "--config")).transpose()?,
            };
            let answer: Answer<DryRunOut> = api
                .call(
                    Method::POST,
                    &format!("{}/dry-run", path(&name)),
                    Some(Body::json(&body)?),
                )
                .await?;
            api.show(&answer, show_dry_run);
        }
    }
    Ok(())
}

fn path(name: &str) -> String {
    format!("/v1/plugins/{}", encode(name))
}

fn word(value: &impl serde::Serialize) -> String {
    output::value(&serde_json::to_value(value).unwrap_or_default())
}

/// The first 12 hex digits of a version, as `git` shortens commits.
fn short(version: &str) -> String {
    version.chars().take(12).collect()
}

fn show(info: &PluginOut) {
    output::record(&[
        ("name", info.name.clone()),
        ("status", word(&info.status)),
        ("version", output::opt(info.version.as_deref())),
        ("size", output::opt(info.size)),
        ("loaded_at", output::opt(info.loaded_at)),
        ("error", output::opt(info.error.as_deref())),
    ]);
}

/// The outcome, then the body as it would be sent (pretty when it is JSON), then the logs.
fn show_dry_run(answer: &DryRunOut) {
    let logs = match answer {
        DryRunOut::Deliver(d) => {
            let headers: Vec<String> = d.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
            output::record(&[
                ("outcome", "deliver".into()),
                ("duration_us", d.duration_us.to_string()),
                ("plugin_version", short(&d.plugin_version)),
                ("content_type", d.content_type.clone()),
                (
                    "headers",
                    if headers.is_empty() {
                        "-".into()
                    } else {
                        headers.join("\n")
                    },
                ),
            ]);
            match (&d.body, &d.body_base64) {
                (Some(body), _) => match serde_json::from_str::<serde_json::Value>(body) {
                    Ok(json) => output::json(&json),
                    Err(_) => println!("{body}"),
                },
                (None, Some(raw)) => println!("(binary body, base64) {raw}"),
                (None, None) => {}
            }
            &d.logs
        }
        DryRunOut::Skip(s) => {
            output::record(&[
                ("outcome", "skip".into()),
                ("reason", s.reason.clone()),
                ("duration_us", s.duration_us.to_string()),
                ("plugin_version", short(&s.plugin_version)),
            ]);
            &s.logs
        }
    };
    for line in logs {
        eprintln!("[{}] {}", line.level, line.message);
    }
}
