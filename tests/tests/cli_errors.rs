//! Errors a person can act on: for each failure class (unreachable MongoDB, a refused write,
//! Chroma down, the embedder down, input too large to quote) the command prints exactly one
//! `error:` line that names what failed, says why in words and where to look, without raw
//! BSON, the driver's topology dump or any text twice. Authentication and TLS failures are in
//! `fault_auth.rs`.

use crate::fault_support;

use fault_support::{base_config, FaultEnv, WRITER};
use tidemark_core::config::EmbedderKind;
use tidemark_e2e::failpoint::FailCommand;
use tidemark_e2e::servers::temp_dir;
use tidemark_e2e::{chroma_url, mongodb_uri, procs};

/// Runs a command that must fail and returns its single `error:` line, after checking the
/// properties every such line has.
fn error_line(config: &std::path::Path, args: &[&str]) -> String {
    let out = procs::run(config, args, &[]);
    let text = procs::text(&out);
    assert!(!out.status.success(), "expected a failure: {text}");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    let line = lines[0];
    assert!(line.starts_with("error: "), "{line}");
    assert!(line.chars().count() < 400, "too long: {line}");
    for raw in ["RawDocumentBuf", "Kind:", "labels:", "Topology", "os error"] {
        assert!(!line.contains(raw), "driver internals `{raw}` in: {line}");
    }
    let parts: Vec<&str> = line.split(": ").collect();
    for (i, p) in parts.iter().enumerate() {
        assert!(
            !parts[i + 1..].contains(p),
            "`{p}` appears twice in: {line}"
        );
    }
    line.to_string()
}

fn config_with(prefix: &str, tweak: impl FnOnce(&mut tidemark_core::Config)) -> std::path::PathBuf {
    let mut cfg = base_config(prefix, &mongodb_uri(), &chroma_url());
    tweak(&mut cfg);
    procs::write_config(&cfg, &temp_dir(prefix))
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    tidemark_e2e::servers::free_port()
}

#[test]
fn an_unreachable_mongodb_names_the_address_and_what_to_check() {
    let port = closed_port();
    let config = config_with("ce_nomongo", |c| {
        c.mongodb.uri = format!("mongodb://127.0.0.1:{port}/?serverSelectionTimeoutMS=1500");
    });
    for args in [&["status"][..], &["put", "a", "hello"][..]] {
        let line = error_line(&config, args);
        assert!(
            line.contains(&format!("cannot reach MongoDB at 127.0.0.1:{port}"))
                && line.contains("connection refused")
                && line.contains("MONGODB_URI"),
            "{args:?}: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_write_quotes_the_server_and_its_code_once() {
    let env = FaultEnv::new("ce_refused").await;
    FailCommand::new(&["insert", "update", "delete", "bulkWrite"], WRITER)
        .error_code(2)
        .always_on()
        .arm(&env.admin)
        .await;
    let config = env.config_file(WRITER);
    let line = error_line(&config, &["put", "refused-1", "hello"]);
    tidemark_e2e::failpoint::off(&env.admin).await;
    assert!(line.contains("MongoDB refused"), "{line}");
    assert!(
        line.contains("code 2 BadValue") || line.contains("code 2)"),
        "{line}"
    );
    assert!(
        line.contains("refused-1"),
        "does not name the document: {line}"
    );
    let docs = tidemark_e2e::all_documents(&env.check_store).await;
    assert!(docs.is_empty(), "a refused put left a document: {docs:?}");
}

#[test]
fn chroma_down_names_its_address_and_what_to_check() {
    let port = closed_port();
    let config = config_with("ce_nochroma", |c| {
        c.chroma.url = format!("http://127.0.0.1:{port}");
    });
    let line = error_line(&config, &["search", "hello"]);
    assert!(
        line.contains(&format!("cannot reach Chroma at http://127.0.0.1:{port}"))
            && line.contains("connection refused")
            && line.contains("CHROMA_URL"),
        "{line}"
    );
}

#[test]
fn the_embedder_down_names_its_address_and_what_to_check() {
    let port = closed_port();
    let config = config_with("ce_noembed", |c| {
        c.embedder.provider = EmbedderKind::Openai;
        c.embedder.base_url = format!("http://127.0.0.1:{port}");
        c.embedder.model = "all-MiniLM-L6-v2".into();
        c.embedder.dimension = 384;
        c.embedder.max_retries = 0;
    });
    let line = error_line(&config, &["search", "hello"]);
    assert!(
        line.contains(&format!(
            "cannot reach the embedder at http://127.0.0.1:{port}"
        )) && line.contains("connection refused")
            && line.contains("embedder.base_url"),
        "{line}"
    );
}

#[test]
fn rejected_input_is_quoted_as_a_short_excerpt() {
    let config = config_with("ce_input", |_| {});
    let nested = "[".repeat(30_000);
    let line = error_line(&config, &["put", "x", "hello", "--metadata", &nested]);
    assert!(line.contains("--metadata is not valid JSON"), "{line}");
    assert!(line.contains("recursion limit"), "{line}");
}
