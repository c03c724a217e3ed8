//! `switchyard plugins dev`: edit → result in a loop. Watches the source, and on every change
//! rebuilds the component, pushes it (an upload, or a copy into the plugins folder the server
//! watches) and dry-runs a sample event, printing body, headers, logs and how long each step
//! took. A `.jq` or `.js` file instead runs through the bundled `jq` / `js` plugin as its
//! program: no build, no upload, so a change shows in well under a second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use switchyard::api::models::{DryRunEvent, DryRunIn, DryRunOut, EventOut, PluginOut};
use tokio::sync::mpsc;

use super::toolchain;
use crate::cli::client::{Answer, Api, Body, CliError, encode};
use crate::cli::{input, plugins};

/// What `plugins dev` was asked to do.
pub struct Options {
    /// A project folder, or a `.jq` / `.js` program file.
    pub source: PathBuf,
    /// The plugin name to push as (projects only).
    pub name: Option<String>,
    /// A stored event to dry-run (`evt_…`).
    pub event: Option<String>,
    /// A sample event file (`{"type": …, "data": …}`).
    pub sample: Option<PathBuf>,
    /// The plugin config (projects), or the program's `args` / `config` (programs).
    pub config: Option<String>,
    /// Copy into this plugins folder instead of uploading.
    pub plugins_dir: Option<PathBuf>,
    /// One round, then exit (its exit code says whether it worked).
    pub once: bool,
}

/// What is being developed.
enum Target {
    /// A component project, built and pushed as `name`.
    Project { dir: PathBuf, name: String },
    /// A program for a bundled plugin (`jq` or `js`).
    Program { file: PathBuf, plugin: &'static str },
}

/// Runs the loop until interrupted (or one round with `--once`).
///
/// # Errors
/// Bad options; with `--once`, also a failed round.
pub async fn run(api: &Api, options: Options) -> Result<(), CliError> {
    let target = target(&options)?;
    let event = sample_event(api, &options, &target).await?;
    let config = options
        .config
        .as_deref()
        .map(|c| input::json(c, "--config"))
        .transpose()?;
    let round = || round(api, &target, &event, config.as_ref(), &options);
    if options.once {
        return round().await;
    }
    let mut changes = watch(&target)?;
    loop {
        if let Err(e) = round().await {
            eprintln!("error: {e}");
        }
        eprintln!("watching {} (Ctrl-C to stop)", watched(&target).display());
        if changes.recv().await.is_none() {
            return Ok(());
        }
        // A save often comes as several events: one round for all of them.
        while changes.try_recv().is_ok() {}
    }
}

fn target(options: &Options) -> Result<Target, CliError> {
    let source = &options.source;
    if source.is_dir() {
        let name = match &options.name {
            Some(name) => name.clone(),
            None => default_name(source)?,
        };
        return Ok(Target::Project {
            dir: source.clone(),
            name,
        });
    }
    let plugin = match source.extension().and_then(|e| e.to_str()) {
        Some("jq") => "jq",
        Some("js") => "js",
        _ => {
            return Err(CliError::Input(format!(
                "{}: give a plugin project folder, or a .jq or .js program file",
                source.display()
            )));
        }
    };
    if !source.is_file() {
        return Err(CliError::Input(format!(
            "{}: no such file",
            source.display()
        )));
    }
    Ok(Target::Program {
        file: source.clone(),
        plugin,
    })
}

/// The folder's name as a plugin name (`My Plugin` → `my-plugin`).
fn default_name(dir: &Path) -> Result<String, CliError> {
    let full = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let raw = full
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if switchyard::plugins::valid_name(&name) {
        Ok(name)
    } else {
        Err(CliError::Input(format!(
            "cannot make a plugin name from {}: give one with --name",
            dir.display()
        )))
    }
}

/// The event every round dry-runs: a stored one, a sample file, `event.json` beside the
/// source, or an empty `test.event`.
async fn sample_event(
    api: &Api,
    options: &Options,
    target: &Target,
) -> Result<DryRunEvent, CliError> {
    if let Some(id) = &options.event {
        let stored: Answer<EventOut> = api.get(&format!("/v1/events/{}", encode(id))).await?;
        let data = serde_json::from_str(stored.model.data.get())
            .map_err(|e| CliError::Input(format!("event {id}: {e}")))?;
        return Ok(DryRunEvent {
            event_type: stored.model.event_type,
            data,
            id: Some(stored.model.id.to_string()),
        });
    }
    let beside = watched(target).join("event.json");
    let file = match &options.sample {
        Some(file) => file.clone(),
        None if beside.is_file() => beside,
        None => {
            return Ok(DryRunEvent {
                event_type: "test.event".into(),
                data: json!({}),
                id: None,
            });
        }
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        CliError::Input(format!(
            "{}: not a sample event ({{\"type\": …, \"data\": …}}): {e}",
            file.display()
        ))
    })
}

/// The folder whose changes start a round.
fn watched(target: &Target) -> PathBuf {
    match target {
        Target::Project { dir, .. } => dir.clone(),
        Target::Program { file, .. } => match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        },
    }
}

/// One round: build and push (projects), then the dry run.
async fn round(
    api: &Api,
    target: &Target,
    event: &DryRunEvent,
    config: Option<&Value>,
    options: &Options,
) -> Result<(), CliError> {
    let started = Instant::now();
    let (plugin, config, steps) = match target {
        Target::Project { dir, name } => {
            let dir = dir.clone();
            let built = tokio::task::spawn_blocking(move || toolchain::build(&dir))
                .await
                .map_err(|e| CliError::Input(format!("the build stopped: {e}")))??;
            let pushed_at = Instant::now();
            let version = push(api, name, &built.path, options.plugins_dir.as_deref()).await?;
            let steps = format!(
                "built in {} · pushed {} in {}",
                ms(built.took),
                short(&version),
                ms(pushed_at.elapsed())
            );
            (name.clone(), config.cloned(), steps)
        }
        Target::Program { file, plugin } => {
            let program = std::fs::read_to_string(file)
                .map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
            let args = config.cloned().unwrap_or_else(|| json!({}));
            let config = match *plugin {
                "jq" => json!({ "program": program, "args": args }),
                _ => json!({ "source": program, "config": args }),
            };
            (
                (*plugin).to_owned(),
                Some(config),
                format!("read {}", file.display()),
            )
        }
    };
    let body = DryRunIn {
        event: event.clone(),
        config,
    };
    let answer: Answer<DryRunOut> = api
        .call(
            Method::POST,
            &format!("/v1/plugins/{}/dry-run", encode(&plugin)),
            Some(Body::json(&body)?),
        )
        .await?;
    api.show(&answer, plugins::show_dry_run);
    eprintln!("{steps} · result in {} in all", ms(started.elapsed()));
    Ok(())
}

/// Puts the component where the server takes it from: an upload, or a copy into its plugins
/// folder (then waits until the server serves that version). Returns the version.
async fn push(
    api: &Api,
    name: &str,
    file: &Path,
    plugins_dir: Option<&Path>,
) -> Result<String, CliError> {
    let bytes =
        std::fs::read(file).map_err(|e| CliError::Input(format!("{}: {e}", file.display())))?;
    let version = hex::encode(Sha256::digest(&bytes));
    let path = format!("/v1/plugins/{}", encode(name));
    let Some(folder) = plugins_dir else {
        let info: Answer<PluginOut> = api
            .call(
                Method::PUT,
                &path,
                Some(Body::Bytes(bytes, "application/wasm")),
            )
            .await?;
        return Ok(info.model.version.unwrap_or(version));
    };
    let before: Option<PluginOut> = api.get(&path).await.ok().map(|a: Answer<_>| a.model);
    copy_into(folder, name, &bytes)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(now) = api.get::<PluginOut>(&path).await.map(|a| a.model) else {
            continue;
        };
        if now.version.as_deref() == Some(version.as_str()) {
            return Ok(version);
        }
        let new_error = now.error.is_some() && before.as_ref().is_none_or(|b| b.error != now.error);
        if new_error {
            return Err(CliError::Input(format!(
                "the server did not load it: {}",
                now.error.unwrap_or_default()
            )));
        }
    }
    Err(CliError::Input(format!(
        "the server did not pick up {}/{name}.wasm within 60 s: is it watching that folder?",
        folder.display()
    )))
}

/// Writes `<folder>/<name>.wasm` whole (a temporary file renamed over it), so the server's
/// watcher never reads half a component.
fn copy_into(folder: &Path, name: &str, bytes: &[u8]) -> Result<(), CliError> {
    let io = |e: std::io::Error| CliError::Input(format!("{}: {e}", folder.display()));
    let mut temp = tempfile::Builder::new()
        .prefix(".switchyard-dev-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .map_err(io)?;
    std::io::Write::write_all(&mut temp, bytes).map_err(io)?;
    temp.persist(folder.join(format!("{name}.wasm")))
        .map_err(|e| io(e.error))?;
    Ok(())
}

/// Changes under the watched folder, minus build output and installed toolchains.
fn watch(target: &Target) -> Result<mpsc::UnboundedReceiver<()>, CliError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let folder = watched(target);
    let root = std::fs::canonicalize(&folder).unwrap_or_else(|_| folder.clone());
    let inside = root.clone();
    let only = match target {
        Target::Program { file, .. } => file.file_name().map(ToOwned::to_owned),
        Target::Project { .. } => None,
    };
    let mut debouncer = new_debouncer(
        Duration::from_millis(100),
        None,
        move |result: DebounceEventResult| {
            let Ok(events) = result else { return };
            // Writes, creations, removals and renames only: reading the source (each round
            // does) is an event too.
            let relevant = events
                .iter()
                .filter(|e| e.kind.is_modify() || e.kind.is_create() || e.kind.is_remove())
                .flat_map(|e| e.paths.iter())
                .any(|path| match &only {
                    Some(name) => path.file_name() == Some(name.as_os_str()),
                    None => !ignored(path.strip_prefix(&inside).unwrap_or(path)),
                });
            if relevant {
                let _ = tx.send(());
            }
        },
    )
    .map_err(|e| CliError::Input(format!("cannot watch files: {e}")))?;
    let mode = match target {
        Target::Project { .. } => RecursiveMode::Recursive,
        Target::Program { .. } => RecursiveMode::NonRecursive,
    };
    debouncer
        .watch(&root, mode)
        .map_err(|e| CliError::Input(format!("cannot watch {}: {e}", folder.display())))?;
    // The watcher lives as long as the process: the loop ends only when the process does.
    std::mem::forget(debouncer);
    Ok(rx)
}

/// Build output, installed toolchains and the component itself: not the user's edits (`path`
/// relative to the project, so a project that itself lives under a `target/` still counts).
fn ignored(path: &Path) -> bool {
    path.components().any(|c| {
        matches!(
            c.as_os_str().to_str(),
            Some("target" | "node_modules" | ".venv" | "__pycache__" | ".git")
        )
    }) || path.extension().is_some_and(|e| e == "wasm" || e == "tmp")
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

fn short(version: &str) -> String {
    version.chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_output_is_not_an_edit() {
        assert!(ignored(Path::new("target/release/x.rs")));
        assert!(ignored(Path::new("node_modules/a/b.js")));
        assert!(ignored(Path::new("plugin.wasm")));
        assert!(!ignored(Path::new("src/lib.rs")));
        assert!(!ignored(Path::new("app.js")));
    }

    #[test]
    fn a_folder_name_becomes_a_plugin_name() {
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("My Plugin");
        std::fs::create_dir(&project).unwrap();
        assert_eq!(default_name(&project).unwrap(), "my-plugin");
    }
}
