//! The OpenAI-compatible provider against a real `embed serve` server (in process, on loopback):
//! float and base64 output, permanent errors at once with the server's message, retries while
//! the server is not up yet, and the server's own 4xx answers (an unsupported `dimensions`
//! included) and its real token counts in `usage`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tidemark_core::config::{EmbedderConfig, EmbedderKind};
use tidemark_embed::hash::HashEmbedder;
use tidemark_embed::openai::OpenAiEmbedder;
use tidemark_embed::{Embedder, SharedEmbedder};
use tokio::sync::oneshot;

/// Starts `embed serve` for a 16-dimension hashing model on a free port.
async fn start_server(embedder: SharedEmbedder) -> (SocketAddr, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(tidemark_embed::server::serve_on(
        embedder,
        listener,
        async {
            let _ = rx.await;
        },
    ));
    (addr, tx)
}

fn config(addr: SocketAddr, model: &str, dim: usize, format: &str) -> EmbedderConfig {
    EmbedderConfig {
        provider: EmbedderKind::Openai,
        base_url: format!("http://{addr}"),
        model: model.into(),
        dimension: dim,
        batch_size: 3,
        encoding_format: format.into(),
        api_key_env: "TIDEMARK_TEST_NO_SUCH_KEY".into(),
        timeout: Duration::from_secs(5),
        max_retries: 8,
        ..EmbedderConfig::default()
    }
}

fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("text number {i} about bread"))
        .collect()
}

#[tokio::test]
async fn float_and_base64_match_the_model_in_order_across_batches() {
    let hash = Arc::new(HashEmbedder::new(16));
    let (addr, _stop) = start_server(hash.clone()).await;
    let input = texts(7); // batch_size 3: three requests
    let expected: Vec<Vec<f32>> = input.iter().map(|t| hash.embed_one(t)).collect();
    for format in ["float", "base64"] {
        let client = OpenAiEmbedder::from_config(&config(addr, "hash-16", 16, format)).unwrap();
        let got = client.embed(&input).await.unwrap();
        assert_eq!(got, expected, "format {format}");
    }
}

#[tokio::test]
async fn permanent_errors_fail_at_once_with_the_server_message() {
    let (addr, _stop) = start_server(Arc::new(HashEmbedder::new(16))).await;
    let started = Instant::now();
    let wrong_model = OpenAiEmbedder::from_config(&config(addr, "gpt-x", 16, "float")).unwrap();
    let err = wrong_model.embed(&texts(1)).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("unknown model `gpt-x`"), "{err}");

    let wrong_dim = OpenAiEmbedder::from_config(&config(addr, "hash-16", 32, "float")).unwrap();
    let err = wrong_dim.embed(&texts(1)).await.unwrap_err();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("dimension 16"), "{err}");

    let empty = OpenAiEmbedder::from_config(&config(addr, "hash-16", 16, "float")).unwrap();
    let err = empty.embed(&[String::new()]).await.unwrap_err();
    assert!(err.to_string().contains("must not be empty"), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "permanent errors were retried"
    );
}

#[tokio::test]
async fn retries_until_a_late_server_comes_up() {
    // Reserve a port, release it, start the server there only after a delay.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = OpenAiEmbedder::from_config(&config(addr, "hash-16", 16, "float")).unwrap();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        tidemark_embed::server::serve_on(
            Arc::new(HashEmbedder::new(16)),
            listener,
            tokio::time::sleep(Duration::from_secs(20)),
        )
        .await
    });
    let started = Instant::now();
    let got = client
        .embed(&texts(2))
        .await
        .expect("succeeds once the server is up");
    assert_eq!(got.len(), 2);
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "cannot have succeeded before the server was up"
    );
    late.abort();
}

#[tokio::test]
async fn gives_up_on_a_server_that_never_comes() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut cfg = config(addr, "hash-16", 16, "float");
    cfg.max_retries = 2;
    let err = OpenAiEmbedder::from_config(&cfg)
        .unwrap()
        .embed(&texts(1))
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn server_answers_4xx_json_for_bad_requests() {
    let (addr, _stop) = start_server(Arc::new(HashEmbedder::new(16))).await;
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/embeddings");
    let cases = [
        ("{not json", 400, "malformed JSON"),
        (
            r#"{"model":"hash-16","input":[]}"#,
            400,
            "must not be empty",
        ),
        (r#"{"model":"nope","input":"x"}"#, 404, "unknown model"),
        (r#"{"model":"hash-16","input":[1]}"#, 400, "input[0]"),
        (
            r#"{"model":"hash-16","input":"x","dimensions":8}"#,
            400,
            "`dimensions` 8 is not supported",
        ),
    ];
    for (body, status, needle) in cases {
        let resp = http
            .post(&url)
            .body(body)
            .header("content-type", "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{body}");
        let v: serde_json::Value = resp.json().await.unwrap();
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{body}: {msg}");
    }
    let many: Vec<String> = texts(tidemark_embed::server::MAX_INPUTS + 1);
    let resp = http
        .post(&url)
        .json(&serde_json::json!({"model": "hash-16", "input": many}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    // The real token count in `usage` (the hashing model's count: bytes / 3, rounded up), and
    // the model's own dimension accepted.
    let ok: serde_json::Value = http
        .post(&url)
        .json(&serde_json::json!({"model": "hash-16", "input": ["abcdef", "abcdefg"], "dimensions": 16}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ok["usage"]["prompt_tokens"], 2 + 3, "{ok}");
    assert_eq!(ok["usage"]["total_tokens"], 5, "{ok}");
    let models: serde_json::Value = http
        .get(format!("http://{addr}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "hash-16");
    let health = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert!(health.status().is_success());
}

/// Kills the child process when dropped, so a failed assertion leaves no server behind.
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_binary_serves_the_local_model_identically() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let _server = KillOnDrop(
        std::process::Command::new(tidemark_e2e::tidemark_bin())
            .args(["embed", "serve", "--addr", &addr.to_string(), "--model-dir"])
            .arg(tidemark_e2e::model_dir())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("tidemark binary built (cargo build -p tidemark-cli)"),
    );
    let cfg = config(addr, "all-MiniLM-L6-v2", 384, "base64");
    // The client's retries cover the server's start-up.
    let client = OpenAiEmbedder::from_config(&cfg).unwrap();
    let input = vec![
        "How do I reset my password?".to_string(),
        "Knead the dough until smooth.".to_string(),
    ];
    let remote = client.embed(&input).await.expect("server comes up");
    let local = tidemark_e2e::local_model(tidemark_core::config::LocalEngine::Onnx);
    let here = local.embed_blocking(&input).unwrap();
    for (a, b) in remote.iter().zip(&here) {
        let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        assert!(dot > 0.99999, "served vector differs: cosine {dot}");
    }
}
