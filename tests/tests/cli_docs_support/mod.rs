//! Shared helpers of the document-command tests: run the built `tidemark` binary against a
//! database of the test's own, and a `Store` on that database to check what was written.

#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};
use tidemark_core::Config;
use tidemark_e2e::{mongo_client, mongodb_uri, tidemark_bin, unique_name};
use tidemark_store::Store;

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// A unique database and a store on it (schema not created: the commands must do it).
pub async fn new_db(prefix: &str) -> (String, Store) {
    let db = unique_name(prefix);
    let mut cfg = Config::default();
    cfg.mongodb.uri = mongodb_uri();
    cfg.mongodb.database = db.clone();
    let store = Store::new(mongo_client().await, &db, &cfg);
    (db, store)
}

/// Runs `tidemark ARGS` with the test database, optionally feeding `stdin`.
pub fn tidemark(db: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let bin = tidemark_bin();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p tidemark-cli` first (scripts/test does)",
        bin.display()
    );
    let mut child = Command::new(bin)
        .args(args)
        .env("MONGODB_URI", mongodb_uri())
        .env("TIDEMARK_MONGODB_DATABASE", db)
        .env_remove("TIDEMARK_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tidemark");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().expect("tidemark runs");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}
