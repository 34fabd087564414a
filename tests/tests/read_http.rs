//! The HTTP API of `tidemark serve` against the real services: bearer-token authentication
//! (401), the body limit (413), bad JSON and wrong fields named (400), `k` over the limit
//! (400), JSON error bodies with stable codes, PUT then read-your-writes search, the routes
//! the server answers are exactly those of docs/openapi.yaml, and through the binary: the
//! token never appears in a debug log, and a non-loopback address without a token is refused.
//!
//! REQUIRES the binary for the last test: `cargo build -p tidemark-cli` (scripts/test does it).

use crate::read_support;

use read_support::{background_worker, reader, stop, Env};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use tidemark_read::http::{routes, serve_on, ServeOptions, Token};

const TOKEN: &str = "test-token-5f1c9e";
const MAX_BODY: usize = 4096;
const MAX_K: usize = 20;

struct Server {
    base: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Server {
    async fn start(env: &Env) -> Server {
        let opts = ServeOptions {
            token: Token::new(TOKEN),
            max_body_bytes: MAX_BODY,
            max_k: MAX_K,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let r = reader(env);
        tokio::spawn(async move {
            serve_on(listener, r, opts, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        Server {
            base,
            http: reqwest::Client::new(),
            stop: Some(tx),
        }
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }

    async fn call(&self, rb: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let resp = rb.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn search(&self, body: Value) -> (StatusCode, Value) {
        self.call(self.req(reqwest::Method::POST, "/v1/search").json(&body))
            .await
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts a JSON error body with this code; returns its message.
fn error(got: &(StatusCode, Value), status: StatusCode, code: &str) -> String {
    assert_eq!(got.0, status, "{got:?}");
    assert_eq!(got.1["error"]["code"], json!(code), "{got:?}");
    got.1["error"]["message"]
        .as_str()
        .expect("a message")
        .to_string()
}

/// Sends the request and asserts a JSON error with this status and code; returns the message.
async fn expect(s: &Server, rb: reqwest::RequestBuilder, status: StatusCode, code: &str) -> String {
    error(&s.call(rb).await, status, code)
}

async fn check_authentication(s: &Server) {
    let url = format!("{}/v1/search", s.base);
    let body = json!({"query": "x"});
    let r = s
        .http
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "healthz needs no token");
    let none = s.http.post(&url).json(&body).send().await.unwrap();
    assert_eq!(none.headers()["www-authenticate"], "Bearer");
    let none = (none.status(), none.json::<Value>().await.unwrap());
    assert!(error(&none, StatusCode::UNAUTHORIZED, "unauthorized").contains("missing"));
    let wrong = s.http.post(&url).bearer_auth("not-the-token").json(&body);
    let msg = expect(s, wrong, StatusCode::UNAUTHORIZED, "unauthorized").await;
    assert_eq!(msg, "invalid bearer token");
    let get = s.http.get(format!("{}/v1/documents/x", s.base));
    expect(s, get, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

async fn check_search_limits_and_fields(s: &Server) {
    let search = |b: Value| s.req(reqwest::Method::POST, "/v1/search").json(&b);
    let big = search(json!({"query": "a".repeat(MAX_BODY * 2)}));
    let msg = expect(s, big, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    assert!(msg.contains("serve.max_body_bytes"), "{msg}");
    let syntax = s
        .req(reqwest::Method::POST, "/v1/search")
        .body("{\"query\": \"x\",");
    let msg = expect(s, syntax, StatusCode::BAD_REQUEST, "invalid_json").await;
    assert!(msg.contains("not valid JSON"), "{msg}");
    let bad = [
        (json!({"query": "x", "k": "ten"}), "`k`"),
        (json!({"query": "x", "kk": 1}), "`kk`"),
        (json!({"query": 5}), "`query`"),
        (
            json!({"query": "x", "after": {"documentId": "zz", "version": 1}}),
            "`after.documentId`",
        ),
        (
            json!({"query": "x", "after": {"documentId": "65f0c0ffee00000000000001"}}),
            "`version`",
        ),
        (json!({"k": 3}), "`query`"),
        (json!({"query": "x", "k": 0}), "`k`"),
        (json!({"query": "x", "waitMs": 3_600_000}), "`waitMs`"),
        (json!({"vector": [0.5, 0.5]}), "the vector has 2 numbers"),
    ];
    for (b, field) in bad {
        let msg = expect(
            s,
            search(b.clone()),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        )
        .await;
        assert!(msg.contains(field), "{b}: {msg}");
    }
    let over = search(json!({"query": "x", "k": MAX_K + 1}));
    let msg = expect(s, over, StatusCode::BAD_REQUEST, "k_over_limit").await;
    assert!(msg.contains("serve.max_k") && msg.contains("21"), "{msg}");
    let filter = search(json!({"query": "x", "filter": {"year": {"$gt": true}}}));
    let msg = expect(s, filter, StatusCode::BAD_REQUEST, "invalid_filter").await;
    assert!(msg.contains("filter.year.$gt"), "{msg}");
}

async fn check_document_errors(s: &Server) {
    let bad = StatusCode::BAD_REQUEST;
    let list = |q: &str| s.req(reqwest::Method::GET, &format!("/v1/documents?{q}"));
    expect(s, list("limit=500"), bad, "k_over_limit").await;
    let msg = expect(s, list("bogus=1"), bad, "invalid_request").await;
    assert!(msg.contains("`bogus`"), "{msg}");
    let msg = expect(s, list("limit=many"), bad, "invalid_request").await;
    assert!(msg.contains("`limit`"), "{msg}");
    expect(s, list("where=%7Bnope"), bad, "invalid_filter").await;
    let missing = s.req(reqwest::Method::GET, "/v1/documents/nope");
    let msg = expect(s, missing, StatusCode::NOT_FOUND, "not_found").await;
    assert!(msg.contains("`nope`"), "{msg}");
    let put = |b: Value| s.req(reqwest::Method::PUT, "/v1/documents/e").json(&b);
    let big = put(json!({"content": "b".repeat(MAX_BODY)}));
    expect(s, big, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
    let msg = expect(s, put(json!({"content": ""})), bad, "invalid_document").await;
    assert!(msg.contains("`content`"), "{msg}");
    let typo = put(json!({"content": "c", "meta": {}}));
    assert!(expect(s, typo, bad, "invalid_request")
        .await
        .contains("`meta`"));
    let nowhere = s.req(reqwest::Method::GET, "/v2/nothing");
    expect(s, nowhere, StatusCode::NOT_FOUND, "no_route").await;
    let wrong_method = s.req(reqwest::Method::POST, "/v1/documents");
    expect(
        s,
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn authentication_limits_and_errors_are_json_with_stable_codes() {
    let env = Env::new("rh_errors").await;
    let s = Server::start(&env).await;
    check_authentication(&s).await;
    check_search_limits_and_fields(&s).await;
    check_document_errors(&s).await;
    drop(s);
    env.cleanup().await;
}

async fn put(s: &Server, id: &str, body: &Value) -> Value {
    let (status, out) = s
        .call(
            s.req(reqwest::Method::PUT, &format!("/v1/documents/{id}"))
                .json(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{out}");
    out
}

async fn get(s: &Server, path: &str) -> (StatusCode, Value) {
    s.call(s.req(reqwest::Method::GET, path)).await
}

fn hit_ids(found: &Value) -> Vec<&str> {
    found["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["contentId"].as_str())
        .collect()
}

#[tokio::test]
async fn put_then_search_over_http_reads_the_write() {
    let env = Env::new("rh_put").await;
    let worker = background_worker(&env);
    let s = Server::start(&env).await;
    let text = "How do I reset my password quickly";
    let doc = json!({"type": "faq", "content": text, "metadata": {"lang": "en", "v": {"n": 2}}});
    let first = put(&s, "faq-1", &doc).await;
    assert_eq!(first["version"], json!(1));
    let other = put(
        &s,
        "note-1",
        &json!({"type": "note", "content": text, "metadata": {"lang": "en"}}),
    )
    .await;

    // Read-your-writes: the PUT answer is the `after` of the search, no sleep in between.
    let (status, found) = s
        .search(json!({
            "query": text, "k": 5, "type": "faq",
            "filter": {"lang": "en", "v.n": {"$gte": 2}}, "after": first, "waitMs": 10_000,
        }))
        .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(hit_ids(&found), vec!["faq-1"], "{found}");
    let hit = &found["hits"][0];
    assert_eq!(hit["stale"], json!(false));
    assert_eq!(hit["document"]["metadata"]["v"]["n"], json!(2));
    assert!(hit["score"].as_f64().unwrap() > 0.99);
    let (_, both) = s
        .search(json!({"query": "reset my password", "after": other}))
        .await;
    assert_eq!(hit_ids(&both).len(), 2, "{both}");

    let (status, got) = get(&s, "/v1/documents/faq-1").await;
    assert_eq!((status, &got["content"]), (StatusCode::OK, &doc["content"]));
    let (_, recent) = get(&s, "/v1/documents?type=note&limit=5").await;
    assert_eq!(recent["documents"].as_array().unwrap().len(), 1, "{recent}");
    assert_eq!(recent["documents"][0]["contentId"], json!("note-1"));
    let w = s
        .req(reqwest::Method::GET, "/v1/documents")
        .query(&[("where", r#"{"lang": {"$in": ["en"]}}"#), ("limit", "10")]);
    assert_eq!(s.call(w).await.1["documents"].as_array().unwrap().len(), 2);

    let delete = || s.req(reqwest::Method::DELETE, "/v1/documents/faq-1");
    let (status, del) = s.call(delete()).await;
    assert_eq!((status, &del["version"]), (StatusCode::OK, &json!(2)));
    let (_, after) = s
        .search(json!({"query": "reset my password", "after": del}))
        .await;
    assert_eq!(hit_ids(&after), vec!["note-1"], "{after}");
    let (status, hist) = get(&s, "/v1/documents/faq-1/history").await;
    assert_eq!(status, StatusCode::OK);
    let ops: Vec<&Value> = hist["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["op"])
        .collect();
    assert_eq!(ops, vec![&json!("upsert"), &json!("delete")], "{hist}");
    assert_eq!(hist["entries"][1]["status"], json!("done"));
    expect(&s, delete(), StatusCode::NOT_FOUND, "not_found").await;
    drop(s);
    stop(worker).await;
    env.cleanup().await;
}

/// (method, path) of every operation in docs/openapi.yaml (its `paths:` section: two-space
/// indented paths, four-space indented methods).
fn openapi_routes() -> BTreeSet<(String, String)> {
    let text =
        std::fs::read_to_string(tidemark_e2e::repo_root().join("docs/openapi.yaml")).unwrap();
    let mut out = BTreeSet::new();
    let mut path = None;
    let mut in_paths = false;
    for line in text.lines() {
        if !line.starts_with(' ') {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(p) = line.strip_prefix("  /").and_then(|l| l.strip_suffix(':')) {
            path = Some(format!("/{p}"));
        } else if let Some(m) = line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')) {
            if ["get", "put", "post", "delete", "patch"].contains(&m) {
                out.insert((m.to_uppercase(), path.clone().expect("a path above")));
            }
        }
    }
    out
}

#[tokio::test]
async fn the_server_answers_exactly_the_routes_of_the_openapi_description() {
    let spec = openapi_routes();
    let served: BTreeSet<(String, String)> = routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(served, spec, "routes() against docs/openapi.yaml");
    assert_eq!(spec.len(), 7);
    // And the live router answers each of them (not `no_route`, not 405).
    let env = Env::new("rh_routes").await;
    let s = Server::start(&env).await;
    for (m, p) in &spec {
        let path = p.replace("{contentId}", "some-id");
        let method = reqwest::Method::from_bytes(m.as_bytes()).unwrap();
        let (status, body) = s.call(s.req(method, &path).json(&json!({}))).await;
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && body["error"]["code"] != json!("no_route"),
            "{m} {p}: {status} {body}"
        );
    }
    drop(s);
    env.cleanup().await;
}
