//! `switchyard plugins …`: upload a component, list and inspect plugins, delete one, dry-run one
//! on a sample event; and the author's loop (`new`, `build`, `dev`, `replay`, in `plugin_dev`).

use clap::Subcommand;
use reqwest::Method;
use serde_json::json;
use switchyard::api::models::{DryRunEvent, DryRunIn, DryRunOut, PluginOut, PluginPage};

use super::client::{Answer, Api, Body, CliError, Connection, PROFILES_HELP, encode};
use super::plugin_dev::{Lang, cases, dev, replay, scaffold, toolchain};
use super::{input, output};
use crate::cli::output::outln;

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
    /// Make a plugin project that builds as generated: code, the WIT contract, a sample event
    /// (event.json) and test cases (cases/).
    #[command(
        after_help = "Examples:\n  switchyard plugins new my-plugin --lang rust\n  \
        switchyard plugins new my-plugin --lang js --dir plugins/my-plugin"
    )]
    New {
        /// Plugin name: a lower-case letter, then a-z, 0-9, '_' and '-'
        name: String,
        /// The language
        #[arg(long, value_enum)]
        lang: Lang,
        /// Where to make it [default: ./NAME]
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Build a plugin project with its toolchain (cargo, componentize-js, componentize-py) and
    /// print the component's path. Installs the JS/Python toolchain into the project if needed.
    #[command(after_help = "Example:\n  switchyard plugins build my-plugin")]
    Build {
        /// The project folder
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
    },
    /// Run a project's cases (cases/*.json: event + config -> expected body, skip or error)
    /// locally, in the same sandbox and limits as a delivery; no server needed.
    #[command(after_help = "Examples:\n  switchyard plugins test my-plugin\n  \
        switchyard plugins test --component plugin.wasm --cases tests/cases")]
    Test {
        /// The project folder (built unless --component is given)
        #[arg(default_value = ".")]
        dir: std::path::PathBuf,
        /// Test this component instead of building the project
        #[arg(long, value_name = "FILE")]
        component: Option<std::path::PathBuf>,
        /// The folder of case files [default: DIR/cases]
        #[arg(long, value_name = "DIR")]
        cases: Option<std::path::PathBuf>,
    },
    /// On every save: rebuild, push to the server and dry-run a sample event, printing body,
    /// headers, logs and timings. A .jq or .js file runs as the program of the bundled jq / js
    /// plugin instead (no build, no upload).
    #[command(
        after_help = "Examples:\n  switchyard plugins dev my-plugin --config '{\"prefix\": \"New\"}'\n  \
        switchyard plugins dev my-plugin --event evt_01J…  # a stored event\n  \
        switchyard plugins dev slack.jq --sample event.json\n  \
        switchyard plugins dev my-plugin --plugins-dir /var/lib/switchyard/plugins"
    )]
    Dev {
        /// A project folder, or a .jq / .js program file
        #[arg(default_value = ".")]
        source: std::path::PathBuf,
        /// The name to push the plugin as [default: the folder's name]
        #[arg(long)]
        name: Option<String>,
        /// Dry-run this stored event
        #[arg(long, value_name = "EVENT_ID", conflicts_with = "sample")]
        event: Option<String>,
        /// Dry-run this sample event file ({"type": …, "data": …}) [default: event.json beside
        /// the source, if there is one]
        #[arg(long, value_name = "FILE")]
        sample: Option<std::path::PathBuf>,
        /// The plugin config (for a program: its args): JSON, @file or @- (stdin)
        #[arg(long, value_name = "JSON|@FILE")]
        config: Option<String>,
        /// Copy the component into this plugins folder (which the server watches) instead of
        /// uploading it
        #[arg(long, value_name = "DIR")]
        plugins_dir: Option<std::path::PathBuf>,
        /// One round, then exit (non-zero if it failed)
        #[arg(long)]
        once: bool,
    },
    /// Dry-run a stored delivery's event through the subscription's plugin as it is now (or
    /// another plugin), beside the attempts that were made.
    #[command(after_help = "Examples:\n  switchyard plugins replay dlv_01J…\n  \
        switchyard plugins replay dlv_01J… --plugin my-plugin-dev")]
    Replay {
        /// The delivery
        delivery: String,
        /// Run this plugin instead of the subscription's
        #[arg(long)]
        plugin: Option<String>,
    },
}

/// Runs a `plugins` command.
///
/// # Errors
/// Bad input, or the server's refusal.
pub async fn run(args: Args) -> Result<(), CliError> {
    let json = args.conn.json;
    let command = match args.command {
        Command::New { name, lang, dir } => return new(&name, lang, dir, json),
        Command::Build { dir } => return build(&dir, json).await,
        Command::Test {
            dir,
            component,
            cases: folder,
        } => return cases::run(&dir, component, folder, json).await,
        other => other,
    };
    let api = Api::connect(&args.conn)?;
    match command {
        Command::New { .. } | Command::Build { .. } | Command::Test { .. } => {}
        Command::Dev {
            source,
            name,
            event,
            sample,
            config,
            plugins_dir,
            once,
        } => {
            let options = dev::Options {
                source,
                name,
                event,
                sample,
                config,
                plugins_dir,
                once,
            };
            dev::run(&api, options).await?;
        }
        Command::Replay { delivery, plugin } => replay::run(&api, &delivery, plugin).await?,
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
                outln!("deleted {name}");
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

/// `plugins new`: the project, then what to do next.
fn new(
    name: &str,
    lang: Lang,
    dir: Option<std::path::PathBuf>,
    json: bool,
) -> Result<(), CliError> {
    let dir = dir.unwrap_or_else(|| std::path::PathBuf::from(name));
    let files = scaffold::create(&dir, name, lang)?;
    if json {
        let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        output::json(&json!({ "dir": dir.display().to_string(), "files": files }));
    } else {
        outln!("made {} ({} files)", dir.display(), files.len());
        outln!("next:");
        outln!("  switchyard plugins build {}", dir.display());
        outln!("  switchyard plugins dev {} --api-key …", dir.display());
    }
    Ok(())
}

/// `plugins build`: the toolchain's output on stderr, the component's path on stdout.
async fn build(dir: &std::path::Path, json: bool) -> Result<(), CliError> {
    let dir = dir.to_owned();
    let built = tokio::task::spawn_blocking(move || toolchain::build(&dir))
        .await
        .map_err(|e| CliError::Input(format!("the build stopped: {e}")))??;
    if json {
        output::json(&json!({
            "path": built.path.display().to_string(),
            "took_ms": u64::try_from(built.took.as_millis()).unwrap_or(u64::MAX),
        }));
    } else {
        outln!("{}", built.path.display());
        eprintln!("built in {} ms", built.took.as_millis());
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
pub(super) fn show_dry_run(answer: &DryRunOut) {
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
                    Err(_) => outln!("{body}"),
                },
                (None, Some(raw)) => outln!("(binary body, base64) {raw}"),
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
