//! `switchyard plugins …`: upload a component, list and inspect plugins, delete one, dry-run one
//! on a sample event.

use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{Api, Body, CliError, Connection, PROFILES_HELP, encode};
use super::{input, output};

const COLUMNS: &[&str] = &["name", "status", "version", "size", "loaded_at"];
const FIELDS: &[&str] = &["name", "status", "version", "size", "loaded_at", "error"];

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
            let info = api
                .send(
                    Method::PUT,
                    &path(&name),
                    Some(Body::Bytes(bytes, "application/wasm")),
                )
                .await?;
            show(&api, &info);
        }
        Command::List => {
            let page = api.get("/v1/plugins").await?;
            if api.json {
                output::json(&page);
                return Ok(());
            }
            let rows = page["data"].as_array().cloned().unwrap_or_default();
            output::table(COLUMNS, rows.iter().map(|p| output::cells(p, COLUMNS)));
        }
        Command::Get { name } => {
            let info = api.get(&path(&name)).await?;
            show(&api, &info);
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
            let data = match data {
                Some(data) => input::json(&data, "--data")?,
                None => json!({}),
            };
            let mut body = json!({ "event": { "type": event_type, "data": data } });
            if let Some(config) = config {
                body["config"] = input::json(&config, "--config")?;
            }
            let answer = api
                .send(
                    Method::POST,
                    &format!("{}/dry-run", path(&name)),
                    Some(Body::Json(body)),
                )
                .await?;
            if api.json {
                output::json(&answer);
                return Ok(());
            }
            show_dry_run(&answer);
        }
    }
    Ok(())
}

fn path(name: &str) -> String {
    format!("/v1/plugins/{}", encode(name))
}

fn show(api: &Api, info: &Value) {
    if api.json {
        return output::json(info);
    }
    output::record(&output::pairs(info, FIELDS));
}

/// The outcome, then the body as sent (pretty when it is JSON), then the logs.
fn show_dry_run(answer: &Value) {
    let mut fields = output::pairs(answer, &["outcome", "duration_us", "plugin_version"]);
    if answer["outcome"] == "skip" {
        fields.push(("reason", output::cell(&answer["reason"])));
    } else {
        fields.push(("content_type", output::cell(&answer["content_type"])));
        fields.push(("headers", output::cell(&answer["headers"])));
    }
    output::record(&fields);
    if let Some(body) = answer["body"].as_str() {
        match serde_json::from_str::<Value>(body) {
            Ok(json) => output::json(&json),
            Err(_) => println!("{body}"),
        }
    } else if let Some(raw) = answer["body_base64"].as_str() {
        println!("(binary body, base64) {raw}");
    }
    for line in answer["logs"].as_array().into_iter().flatten() {
        eprintln!(
            "[{}] {}",
            output::cell(&line["level"]),
            output::cell(&line["message"])
        );
    }
}
