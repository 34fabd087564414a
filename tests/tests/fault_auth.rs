//! Authentication and TLS: a SecantusDB with `--auth` and TLS (certificates from a CA made at
//! test time), and a user holding only the privileges tidemark needs (the role documented in
//! the README: find, insert, update, remove, createCollection, createIndex, listCollections,
//! listIndexes, changeStream, killCursors on tidemark's database). Every command and the
//! worker work as that user over TLS; a wrong password and an untrusted certificate are clear
//! one-line errors; the password never appears in any output or log, even at trace level.

use crate::fault_support;

use bson::{doc, Bson};
use fault_support::base_config;
use std::time::Duration;
use tidemark_chroma::{ChromaClient, ChromaOptions};
use tidemark_core::Config;
use tidemark_e2e::procs::{self, WorkerProc};
use tidemark_e2e::servers::{temp_dir, MongoOptions, MongoServer, User};
use tidemark_e2e::tls::TestCa;
use tidemark_e2e::{consistency, unique_name};
use tidemark_store::Store;

const PASSWORD: &str = "Pw-9f3e1c7a-never-printed";
const ADMIN_PASSWORD: &str = "admin-Pw-5b2d";

/// The privileges tidemark needs on its database (see README, "Authentication and TLS").
pub fn tidemark_actions() -> Vec<&'static str> {
    vec![
        "find",
        "insert",
        "update",
        "remove",
        "createCollection",
        "createIndex",
        "listCollections",
        "listIndexes",
        "changeStream",
        "killCursors",
    ]
}

struct AuthWorld {
    ca: TestCa,
    server: MongoServer,
    cfg: Config,
    dir: std::path::PathBuf,
}

async fn auth_world(prefix: &str) -> AuthWorld {
    let ca = TestCa::new(prefix);
    let db = unique_name(prefix);
    let privileges: bson::Array = vec![Bson::Document(doc! {
        "resource": {"db": &db, "collection": ""},
        "actions": tidemark_actions(),
    })];
    let opts = MongoOptions {
        users: vec![
            User {
                name: "admin".into(),
                password: ADMIN_PASSWORD.into(),
                roles: vec![("root".into(), "admin".into())],
                custom_roles: vec![],
            },
            User {
                name: "tidemark".into(),
                password: PASSWORD.into(),
                roles: vec![("tidemark".into(), db.clone())],
                custom_roles: vec![("tidemark".into(), db.clone(), privileges)],
            },
        ],
        tls: Some(ca.files.clone()),
        ..MongoOptions::default()
    };
    let server = MongoServer::start(opts).await;
    let mut cfg = base_config(
        prefix,
        &server.uri_as("tidemark", PASSWORD),
        &tidemark_e2e::chroma_url(),
    );
    cfg.mongodb.database = db.clone();
    cfg.chroma.namespace = db;
    AuthWorld {
        ca,
        server,
        cfg,
        dir: temp_dir(prefix),
    }
}

/// Runs a command; it must exit 0 and never print the password.
fn ok(config: &std::path::Path, args: &[&str]) -> String {
    let out = procs::run(config, args, &[("RUST_LOG", "trace")]);
    let text = procs::text(&out);
    assert!(
        !text.contains(PASSWORD),
        "{args:?} printed the password:\n{text}"
    );
    assert!(
        out.status.success(),
        "{args:?} as the tidemark user: {text}"
    );
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_and_the_worker_run_as_a_least_privileged_user_over_tls() {
    let w = auth_world("fa_all").await;
    let config = procs::write_config(&w.cfg, &w.dir.join("cli"));
    let file = w.dir.join("docs.jsonl");
    let lines: String = (0..30)
        .map(|i| {
            format!("{{\"contentId\":\"i{i}\",\"type\":\"t\",\"content\":\"imported text {i}\"}}\n")
        })
        .collect();
    std::fs::write(&file, lines).unwrap();
    let f = file.to_str().unwrap();
    ok(&config, &["put", "a1", "a first text", "--type", "t"]);
    ok(&config, &["put", "a2", "a second text", "--type", "t"]);
    ok(&config, &["import", f, "--batch", "10"]);
    ok(&config, &["get", "a1"]);
    ok(&config, &["worker", "--once"]);
    ok(&config, &["status"]);
    ok(&config, &["verify"]);
    ok(&config, &["search", "imported text", "-k", "3"]);
    ok(&config, &["delete", "a2"]);
    ok(&config, &["backfill"]);
    ok(&config, &["repair"]);
    ok(&config, &["dlq", "list"]);
    ok(&config, &["dlq", "purge", "--older-than", "7d"]);

    // The daemon, logging at trace level.
    let mut wcfg = w.cfg.clone();
    wcfg.metrics.addr = String::new();
    let wconfig = procs::write_config(&wcfg, &w.dir.join("worker"));
    let mut worker = WorkerProc::spawn(&wconfig, "trace");
    assert!(
        worker
            .wait_log("worker started", Duration::from_secs(30))
            .await,
        "worker did not start as the tidemark user:\n{}",
        worker.log_tail(20)
    );
    ok(
        &config,
        &["put", "a3", "written while the daemon runs", "--type", "t"],
    );
    let admin = w.server.client().await;
    let store = Store::new(admin, &w.cfg.mongodb.database, &w.cfg);
    let chroma = ChromaClient::new(ChromaOptions::from_config(&w.cfg.chroma)).unwrap();
    let coll = tidemark_core::collection_name(&w.cfg.chroma.namespace, "hash-64");
    let (r, _) =
        consistency::wait_consistent(&store, &chroma, &coll, Duration::from_secs(30)).await;
    assert!(
        r.is_consistent() && r.dead.is_empty(),
        "{r:?}\n{}",
        worker.log_tail(20)
    );
    assert_eq!(r.documents, 32);
    worker.sigterm();
    let (status, _) = worker
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("worker stops");
    assert!(status.success(), "{}", worker.log_tail(10));
    let log = worker.log_text();
    assert!(log.len() > 1000, "trace log suspiciously short: {log}");
    assert!(
        !log.contains(PASSWORD),
        "the worker's trace log contains the password"
    );
    let _ = chroma.delete_collection(&coll).await;
    let _ = std::fs::remove_dir_all(&w.dir);
}

/// The single `error:` line of a failed command (stderr has nothing else).
fn one_line_error(config: &std::path::Path, secret: &str) -> String {
    let out = procs::run(config, &["status"], &[]);
    let text = procs::text(&out);
    assert!(!out.status.success(), "expected a failure: {text}");
    assert!(!text.contains(secret), "the secret was printed: {text}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].len() < 400, "too long for one line: {}", lines[0]);
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_is_a_clear_one_line_error() {
    let w = auth_world("fa_badpw").await;
    let wrong = "Wrong-pw-3a1f";
    let mut bad = w.cfg.clone();
    bad.mongodb.uri = w.server.uri_as("tidemark", wrong);
    let config = procs::write_config(&bad, &w.dir.join("badpw"));
    let line = one_line_error(&config, wrong);
    eprintln!("wrong password: {line}");
    assert!(
        line.to_lowercase().contains("auth"),
        "does not say authentication failed: {line}"
    );
    let _ = std::fs::remove_dir_all(&w.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_certificate_is_a_clear_one_line_error() {
    let w = auth_world("fa_badca").await;

    let other = TestCa::new("untrusted");
    let mut bad = w.cfg.clone();
    bad.mongodb.uri = bad.mongodb.uri.replace(
        &format!("tlsCAFile={}", w.ca.files.ca.display()),
        &format!("tlsCAFile={}", other.files.ca.display()),
    );
    assert_ne!(bad.mongodb.uri, w.cfg.mongodb.uri);
    let config = procs::write_config(&bad, &w.dir.join("badca"));
    let line = one_line_error(&config, PASSWORD);
    eprintln!("untrusted certificate: {line}");
    assert!(
        line.to_lowercase().contains("certificate"),
        "does not name the certificate problem: {line}"
    );
    let _ = std::fs::remove_dir_all(&w.dir);
}
