//! `switchyard plugins test`: runs a project's case files (event + config → expected outcome,
//! the format of the repository's conformance cases) through the same sandbox and limits as a
//! delivery, locally, without a server.

use std::path::{Path, PathBuf};

use serde_json::json;
use switchyard::plugins::{Limits, Runtime, conformance};

use super::toolchain;
use crate::cli::client::CliError;
use crate::cli::output;

/// Runs the cases in `cases` (default `<dir>/cases`) on `component` (default: `dir` built).
///
/// # Errors
/// No component or cases, a component that does not load, or a case that fails
/// ([`CliError::Failed`]).
pub async fn run(
    dir: &Path,
    component: Option<PathBuf>,
    cases: Option<PathBuf>,
    json: bool,
) -> Result<(), CliError> {
    let component = match component {
        Some(file) => file,
        None => {
            let dir = dir.to_owned();
            tokio::task::spawn_blocking(move || toolchain::build(&dir))
                .await
                .map_err(|e| CliError::Input(format!("the build stopped: {e}")))??
                .path
        }
    };
    let cases_dir = cases.unwrap_or_else(|| dir.join("cases"));
    let cases = conformance::load_dir(&cases_dir).map_err(|e| CliError::Input(e.to_string()))?;
    if cases.is_empty() {
        return Err(CliError::Input(format!(
            "no cases (*.json) in {}",
            cases_dir.display()
        )));
    }
    let bytes = std::fs::read(&component)
        .map_err(|e| CliError::Input(format!("{}: {e}", component.display())))?;
    let runtime = Runtime::new(Limits::default(), None)
        .map_err(|e| CliError::Input(format!("the plugin sandbox: {e}")))?;
    let plugin = runtime
        .load("under-test", bytes)
        .await
        .map_err(|e| CliError::Input(format!("{}: {e}", component.display())))?;
    let results = conformance::run_all(&runtime, &plugin, &cases).await;
    let failed = results.iter().filter(|r| !r.passed()).count();
    if json {
        let all: Vec<_> = results
            .iter()
            .map(|r| json!({ "case": r.name, "passed": r.passed(), "failure": r.failure }))
            .collect();
        output::json(&json!({ "cases": all, "failed": failed }));
    } else {
        output::table(
            &["case", "result"],
            results.iter().map(|r| {
                let result = match &r.failure {
                    None => "ok".to_owned(),
                    Some(why) => format!("FAILED: {why}"),
                };
                vec![r.name.clone(), result]
            }),
        );
    }
    if failed > 0 {
        return Err(CliError::Failed(format!(
            "{failed} of {} cases failed",
            results.len()
        )));
    }
    Ok(())
}
