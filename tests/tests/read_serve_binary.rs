//! `tidemark serve` as a process: with RUST_LOG=debug the bearer token (right or wrong) never
//! appears in its log while requests are logged; SIGTERM stops it with exit 0; a non-loopback
//! address without a token is refused at start naming the key.
//!
//! REQUIRES the binary: `cargo build -p tidemark-cli` before this test (scripts/test does it).

use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tidemark_core::config::EmbedderKind;
use tidemark_core::Config;
use tidemark_e2e::servers::free_port;
use tidemark_e2e::{chroma_url, mongodb_uri, tidemark_bin, unique_name};

const SECRET: &str = "serve-secret-7d41a0";
const WRONG: &str = "wrong-secret-93be11";

fn config(dir: &std::path::Path, addr: &str) -> std::path::PathBuf {
    let mut cfg = Config::default();
    cfg.mongodb.uri = mongodb_uri();
    cfg.mongodb.database = unique_name("rs_bin");
    cfg.chroma.url = chroma_url();
    cfg.chroma.namespace = cfg.mongodb.database.clone();
    cfg.embedder.provider = EmbedderKind::Hash;
    cfg.embedder.dimension = 64;
    cfg.metrics.addr = String::new();
    cfg.serve.addr = addr.to_string();
    cfg.serve.token_env = "TM_SERVE_TEST_TOKEN".into();
    let path = dir.join("tidemark.toml");
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
    path
}

/// The log without terminal colour codes (`ESC [ ... m`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[tokio::test]
async fn the_token_never_appears_in_a_debug_log() {
    let dir = std::env::temp_dir().join(unique_name("rs_bin"));
    std::fs::create_dir_all(&dir).unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = config(&dir, &addr);
    let log = dir.join("serve.log");
    let mut child = Command::new(tidemark_bin())
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .env_remove("MONGODB_URI")
        .env_remove("CHROMA_URL")
        .env("RUST_LOG", "debug")
        .env("TM_SERVE_TEST_TOKEN", SECRET)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("run tidemark serve (cargo build -p tidemark-cli first)");
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "serve did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let put = http
        .put(format!("{base}/v1/documents/doc-1"))
        .bearer_auth(SECRET)
        .json(&json!({"content": "hello there"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let search = http
        .post(format!("{base}/v1/search"))
        .bearer_auth(SECRET)
        .json(&json!({"query": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(search.status(), 200);
    let wrong = http
        .get(format!("{base}/v1/documents/doc-1"))
        .bearer_auth(WRONG)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "serve did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status:?}");
    let text = strip_ansi(&std::fs::read_to_string(&log).unwrap());
    assert!(text.contains("serving the HTTP API"), "{text}");
    assert!(
        text.contains("/v1/search") && text.contains("status=401"),
        "requests are logged at debug: {text}"
    );
    assert!(!text.contains(SECRET), "the token is in the log");
    assert!(!text.contains(WRONG), "a presented token is in the log");

    let db = tidemark_e2e::mongo_client().await;
    let name = toml::from_str::<Config>(&std::fs::read_to_string(&cfg).unwrap())
        .unwrap()
        .mongodb
        .database;
    let _ = db.database(&name).drop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_public_address_without_a_token_is_refused_at_start() {
    let dir = std::env::temp_dir().join(unique_name("rs_open"));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = config(&dir, "0.0.0.0:0");
    let out = Command::new(tidemark_bin())
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .env("TIDEMARK_SERVE_TOKEN_ENV", "")
        .output()
        .expect("run tidemark serve");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("serve.addr") && err.contains("token"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    // With the variable named but empty, the start also fails, naming the key.
    let out = Command::new(tidemark_bin())
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .env("TM_SERVE_TEST_TOKEN", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("serve.token_env") && err.contains("unset or empty"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
