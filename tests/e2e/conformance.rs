//! The conformance folder (`tests/conformance/cases`): every example plugin, whatever its
//! language, passes every case, run through `switchyard::plugins::conformance` (the runner
//! `switchyard plugins test` uses) in the real sandbox.

use switchyard::plugins::conformance::{self, Case, Expect};

use crate::common::examples::{Example, all_examples, example, workspace};
use crate::common::plugins::{load, runtime};

fn cases() -> Vec<Case> {
    let dir = workspace().join("tests/conformance/cases");
    let cases = conformance::load_dir(&dir).unwrap();
    assert!(
        cases.len() >= 20,
        "only {} cases in {}",
        cases.len(),
        dir.display()
    );
    cases
}

#[tokio::test]
async fn every_example_passes_every_case() {
    let cases = cases();
    let examples = all_examples();
    let mut failures = Vec::new();
    for (which, bytes) in &examples {
        let rt = runtime();
        let plugin = load(&rt, which.name(), bytes.clone()).await;
        for result in conformance::run_all(&rt, &plugin, &cases).await {
            if let Some(why) = result.failure {
                failures.push(format!("{} / {}: {why}", which.name(), result.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!(
        "{} cases passed by {:?}",
        cases.len(),
        examples.iter().map(|(e, _)| e.name()).collect::<Vec<_>>()
    );
}

/// The runner can fail: a case whose expectation is changed in any way is reported, with what
/// differs.
#[tokio::test]
async fn the_runner_reports_what_differs() {
    let cases = cases();
    let rt = runtime();
    let plugin = load(&rt, "rust", example(Example::Rust).unwrap()).await;
    let mut readme = cases
        .iter()
        .find(|c| c.name == "deliver-readme")
        .unwrap()
        .clone();
    assert!(conformance::run_case(&rt, &plugin, &readme).await.passed());

    let Expect::Deliver(delivery) = &mut readme.expect else {
        panic!("deliver-readme delivers")
    };
    delivery.body = delivery.body.as_ref().map(|b| b.replace("Ann", "Bob"));
    let result = conformance::run_case(&rt, &plugin, &readme).await;
    let why = result.failure.expect("a changed body must fail");
    assert!(why.contains("body") && why.contains("Bob"), "{why}");

    let mut skip = cases
        .iter()
        .find(|c| c.name == "skip-prefix")
        .unwrap()
        .clone();
    skip.expect = Expect::Skip("another reason".into());
    let why = conformance::run_case(&rt, &plugin, &skip)
        .await
        .failure
        .unwrap();
    assert!(why.contains("another reason"), "{why}");

    let mut logs = cases
        .iter()
        .find(|c| c.name == "deliver-readme")
        .unwrap()
        .clone();
    logs.logs = Some(Vec::new());
    let why = conformance::run_case(&rt, &plugin, &logs)
        .await
        .failure
        .unwrap();
    assert!(why.contains("formatted evt_01J"), "{why}");

    let mut refused = cases
        .iter()
        .find(|c| c.name == "refuse-unknown-key")
        .unwrap()
        .clone();
    refused.config = serde_json::json!({"title": "fine"});
    let why = conformance::run_case(&rt, &plugin, &refused)
        .await
        .failure
        .unwrap();
    assert!(why.contains("accepted the config"), "{why}");
}

#[test]
fn a_bad_case_file_is_refused_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("typo.json"),
        r#"{"expect": {"skip": "x"}, "evnt": {}}"#,
    )
    .unwrap();
    let err = conformance::load_dir(dir.path()).unwrap_err().to_string();
    assert!(err.contains("typo.json") && err.contains("evnt"), "{err}");
}
