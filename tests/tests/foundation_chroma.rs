//! The Chroma service is real: heartbeat, collection create, upsert, get and delete round-trip
//! over the v2 HTTP API, spoken here with plain reqwest (independent of tidemark-chroma).

use serde_json::{json, Value};
use tidemark_e2e::{chroma_url, unique_name};

const BASE: &str = "/api/v2/tenants/default_tenant/databases/default_database";

async fn post(client: &reqwest::Client, path: &str, body: Value) -> Value {
    let resp = client
        .post(format!("{}{path}", chroma_url()))
        .json(&body)
        .send()
        .await
        .expect("chroma reachable; is `scripts/services up` running?");
    let status = resp.status();
    let text = resp.text().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[tokio::test]
async fn heartbeat_answers() {
    let body: Value = reqwest::get(format!("{}/api/v2/heartbeat", chroma_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body["nanosecond heartbeat"].as_u64().unwrap() > 0, "{body}");
}

#[tokio::test]
async fn collection_upsert_get_delete_round_trip() {
    let http = reqwest::Client::new();
    let name = unique_name("found");
    let coll = post(
        &http,
        &format!("{BASE}/collections"),
        json!({"name": name, "get_or_create": true}),
    )
    .await;
    let id = coll["id"].as_str().expect("collection id").to_string();

    post(
        &http,
        &format!("{BASE}/collections/{id}/upsert"),
        json!({
            "ids": ["a", "b"],
            "embeddings": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            "metadatas": [{"contentId": "a", "version": 1}, {"contentId": "b", "version": 2}]
        }),
    )
    .await;
    let got = post(
        &http,
        &format!("{BASE}/collections/{id}/get"),
        json!({"ids": ["a", "b"], "include": ["metadatas", "embeddings"]}),
    )
    .await;
    let mut ids: Vec<&str> = got["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["a", "b"]);
    let pos_b = got["ids"]
        .as_array()
        .unwrap()
        .iter()
        .position(|v| v == "b")
        .unwrap();
    assert_eq!(got["metadatas"][pos_b]["version"], 2);
    assert_eq!(got["embeddings"][pos_b][1].as_f64().unwrap(), 1.0);

    post(
        &http,
        &format!("{BASE}/collections/{id}/delete"),
        json!({"ids": ["a"]}),
    )
    .await;
    let got = post(
        &http,
        &format!("{BASE}/collections/{id}/get"),
        json!({"ids": ["a", "b"], "include": ["metadatas"]}),
    )
    .await;
    assert_eq!(got["ids"], json!(["b"]));

    let resp = http
        .delete(format!("{}{BASE}/collections/{name}", chroma_url()))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
}
