//! Issue 8 item 8: rejected uploads leave nothing in the compile cache, the cache keeps only
//! what a loaded plugin uses, and concurrent uploads are bounded (past the bound they are
//! refused with `429` before their body is read).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::components::{huge_function, tagged};
use super::process::Service;
use crate::common::plugins::{bundled, fixture};
use crate::common::server::KEY;
use crate::common::{TestServer, wait_until};

fn cache_files(server: &TestServer) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(server.data_dir.join("plugin-cache"))
        .map(|dir| {
            dir.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_uploads_leave_no_cache_files_and_the_cache_is_pruned() {
    let server = TestServer::start().await;
    let wrong = fixture("wrong_world");
    for i in 0..50 {
        let response = server
            .request(Method::PUT, &format!("/v1/plugins/wrong-{i}"))
            .header("content-type", "application/wasm")
            .body(tagged(&wrong, &i.to_string()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 422);
    }
    assert_eq!(
        cache_files(&server),
        Vec::<String>::new(),
        "rejected components were cached"
    );

    // Replacing and deleting a plugin drops the artefacts no loaded version uses.
    server.upload_plugin("p", bundled("reshape")).await;
    assert_eq!(cache_files(&server).len(), 1);
    server.upload_plugin("p", bundled("filter")).await;
    assert_eq!(cache_files(&server).len(), 1, "{:?}", cache_files(&server));
    server
        .expect(Method::DELETE, "/v1/plugins/p", None, 204)
        .await;
    assert_eq!(cache_files(&server), Vec::<String>::new());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let service =
        Arc::new(Service::start(dir.path(), &[("SWITCHYARD_PLUGIN_COMPILE_TIMEOUT", "8s")]).await);
    let baseline = service.peak_rss_mib();
    // A slow compile first, as in the issue (uploads queued behind it).
    let bomb = {
        let service = service.clone();
        tokio::spawn(async move { service.upload("bomb", huge_function(100_000)).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // 50 uploads of 15 MiB at once: a component header, then bytes that do not parse.
    let mut body = vec![0_u8, b'a', b's', b'm', 0x0d, 0, 1, 0];
    body.resize(15 << 20, 0xff);
    let started = Instant::now();
    let uploads: Vec<_> = (0..50)
        .map(|i| {
            let (service, body) = (service.clone(), body.clone());
            tokio::spawn(async move { service.try_upload(&format!("big-{i}"), body).await })
        })
        .collect();
    let mut answers = BTreeMap::<String, usize>::new();
    for upload in uploads {
        let answer = match upload.await.unwrap() {
            Ok((status, _)) => status.to_string(),
            // Answered 429 before the body was read, so the rest of it could not be sent.
            Err(e) if e.is_request() => "cut off".to_owned(),
            Err(e) => panic!("{e}"),
        };
        *answers.entry(answer).or_default() += 1;
    }
    let took = started.elapsed();
    let _ = bomb.await.unwrap();
    let peak = service.peak_rss_mib();
    eprintln!(
        "50 concurrent 15 MiB uploads beside a compile bomb: {answers:?} in {took:.2?}; service peak RSS {peak:.0} MiB (at start {baseline:.0} MiB)"
    );
    assert!(
        answers
            .keys()
            .all(|a| ["422", "429", "cut off"].contains(&a.as_str())),
        "{answers:?}"
    );
    assert!(
        peak - baseline < 300.0,
        "50 uploads of 15 MiB grew the service by {:.0} MiB",
        peak - baseline
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_bound_an_upload_is_refused_before_its_body_is_read() {
    let server = TestServer::start().await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let head = |name: &str| {
        format!(
            "PUT /v1/plugins/{name} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {KEY}\r\ncontent-type: application/wasm\r\ncontent-length: 1048576\r\n\r\n"
        )
    };
    // Eight uploads that send their headers and a few bytes, then stall.
    let mut held = Vec::new();
    for i in 0..8 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        stream
            .write_all(head(&format!("held-{i}")).as_bytes())
            .await
            .unwrap();
        stream.write_all(b"\0asm\x0d\0\x01\0").await.unwrap();
        held.push(stream);
    }
    // Only once all eight hold their turn (else a probe could take one itself)…
    let holding = wait_until(Duration::from_secs(10), || async {
        server.metric("switchyard_plugin_uploads_in_progress").await == Some(8.0)
    })
    .await;
    assert!(holding, "the eight stalled uploads did not all get a turn");
    // …the next one, which sends only its headers, is answered without its body being read.
    let answered = wait_until(Duration::from_secs(10), || async {
        let mut probe = TcpStream::connect(&addr).await.unwrap();
        probe.write_all(head("probe").as_bytes()).await.unwrap();
        let mut answer = vec![0_u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), probe.read(&mut answer))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0);
        let text = String::from_utf8_lossy(&answer[..n]).to_ascii_lowercase();
        text.starts_with("http/1.1 429") && text.contains("retry-after:")
    })
    .await;
    assert!(
        answered,
        "an upload past the bound was not refused before its body was read"
    );
    // Once the held uploads are gone, uploads go through again.
    drop(held);
    let ok = wait_until(Duration::from_secs(10), || async {
        let response = server
            .request(Method::PUT, "/v1/plugins/after")
            .header("content-type", "application/wasm")
            .body(bundled("reshape"))
            .send()
            .await
            .unwrap();
        response.status().is_success()
    })
    .await;
    assert!(ok, "uploads did not recover");
    server.stop().await;
}
