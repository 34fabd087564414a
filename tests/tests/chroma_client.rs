//! tidemark-chroma against the running Chroma server: heartbeat, get-or-create, upsert with
//! base64 embeddings, get with metadatas and embeddings, metadata update, delete, count, query,
//! duplicate-id rejection, request splitting and typed errors.

use serde_json::json;
use tidemark_chroma::{ChromaClient, ChromaError, ChromaOptions, Metadata, VectorRecord};
use tidemark_e2e::{chroma_url, unique_name};

fn client() -> ChromaClient {
    ChromaClient::new(ChromaOptions::new(&chroma_url())).unwrap()
}

fn meta(v: serde_json::Value) -> Metadata {
    v.as_object().unwrap().clone()
}

fn rec(id: &str, embedding: Vec<f32>, m: serde_json::Value) -> VectorRecord {
    VectorRecord {
        id: id.into(),
        embedding,
        metadata: meta(m),
    }
}

#[tokio::test]
async fn heartbeat_and_collection_lifecycle() {
    let c = client();
    c.heartbeat().await.unwrap();
    let name = unique_name("chroma_coll");
    assert!(c.get_collection(&name).await.unwrap().is_none());
    let a = c.get_or_create_collection(&name).await.unwrap();
    let b = c.get_or_create_collection(&name).await.unwrap();
    assert_eq!(a, b, "get-or-create returns the same collection");
    assert_eq!(a.name, name);
    assert_eq!(c.get_collection(&name).await.unwrap(), Some(a.clone()));
    assert_eq!(c.count(&a.id).await.unwrap(), 0);
    c.delete_collection(&name).await.unwrap();
    assert!(c.get_collection(&name).await.unwrap().is_none());
    // deleting again is fine
    c.delete_collection(&name).await.unwrap();
}

#[tokio::test]
async fn records_round_trip() {
    let c = client();
    let name = unique_name("chroma_rt");
    let coll = c.get_or_create_collection(&name).await.unwrap();
    let records = vec![
        rec(
            "a",
            vec![1.0, 0.0, 0.25],
            json!({"contentId": "a", "version": 1, "ok": true}),
        ),
        rec(
            "b",
            vec![0.0, 1.0, -0.5],
            json!({"contentId": "b", "version": 2, "w": 0.5}),
        ),
        rec(
            "c",
            vec![0.1, 0.1, 1.0],
            json!({"contentId": "c", "version": 3}),
        ),
    ];
    c.upsert(&coll.id, &records).await.unwrap();
    assert_eq!(c.count(&coll.id).await.unwrap(), 3);

    // base64 embeddings round-trip exactly; metadatas come back with their types
    let ids: Vec<String> = vec!["b".into(), "a".into(), "missing".into()];
    let got = c.get(&coll.id, &ids, true).await.unwrap();
    assert_eq!(got.len(), 2, "missing ids are simply absent");
    let a = got.iter().find(|r| r.id == "a").unwrap();
    assert_eq!(a.embedding.as_deref(), Some(&[1.0, 0.0, 0.25][..]));
    assert_eq!(a.metadata.as_ref().unwrap()["version"], json!(1));
    assert_eq!(a.metadata.as_ref().unwrap()["ok"], json!(true));
    let b = got.iter().find(|r| r.id == "b").unwrap();
    assert_eq!(b.embedding.as_deref(), Some(&[0.0, 1.0, -0.5][..]));
    assert_eq!(b.metadata.as_ref().unwrap()["w"], json!(0.5));
    let no_emb = c.get(&coll.id, &ids[..1], false).await.unwrap();
    assert!(no_emb[0].embedding.is_none());

    // metadata update leaves the embedding alone
    c.update_metadata(
        &coll.id,
        &["a".to_string()],
        &[meta(json!({"contentId": "a", "version": 7}))],
    )
    .await
    .unwrap();
    let a = &c.get(&coll.id, &["a".to_string()], true).await.unwrap()[0];
    assert_eq!(a.metadata.as_ref().unwrap()["version"], json!(7));
    assert_eq!(a.embedding.as_deref(), Some(&[1.0, 0.0, 0.25][..]));

    // query: nearest first, cosine distance ~0 for the identical vector
    let hits = c.query(&coll.id, &[0.0, 1.0, -0.5], 2).await.unwrap();
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].id, "b");
    assert!(hits[0].distance.abs() < 1e-4, "{}", hits[0].distance);
    assert!(hits[1].distance > hits[0].distance);
    assert_eq!(hits[0].metadata.as_ref().unwrap()["contentId"], json!("b"));

    // pages cover every record once
    let mut seen: Vec<String> = Vec::new();
    for off in (0..3).step_by(2) {
        seen.extend(
            c.get_page(&coll.id, off, 2)
                .await
                .unwrap()
                .into_iter()
                .map(|r| r.id),
        );
    }
    seen.sort();
    assert_eq!(seen, ["a", "b", "c"]);

    // delete: absent ids are fine
    c.delete(&coll.id, &["a".into(), "nope".into()])
        .await
        .unwrap();
    assert_eq!(c.count(&coll.id).await.unwrap(), 2);
    assert!(c
        .get(&coll.id, &["a".into()], false)
        .await
        .unwrap()
        .is_empty());
    c.delete_collection(&name).await.unwrap();
}

#[tokio::test]
async fn duplicate_ids_are_rejected_before_sending() {
    let c = client();
    let name = unique_name("chroma_dup");
    let coll = c.get_or_create_collection(&name).await.unwrap();
    let err = c
        .upsert(
            &coll.id,
            &[
                rec("x", vec![1.0, 2.0], json!({"n": 1})),
                rec("x", vec![3.0, 4.0], json!({"n": 2})),
            ],
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ChromaError::Invalid(_)), "{err}");
    assert!(!err.is_transient());
    assert_eq!(c.count(&coll.id).await.unwrap(), 0, "nothing was written");
    c.delete_collection(&name).await.unwrap();
}

#[tokio::test]
async fn large_upserts_are_split_under_the_body_limit() {
    // A tiny body limit forces many requests; all records must arrive.
    let mut opts = ChromaOptions::new(&chroma_url());
    opts.max_body_bytes = 16 * 1024;
    let c = ChromaClient::new(opts).unwrap();
    let name = unique_name("chroma_split");
    let coll = c.get_or_create_collection(&name).await.unwrap();
    let dim = 384; // ~2 KiB of base64 per record -> about 7 records per request
    let records: Vec<_> = (0..60)
        .map(|i| {
            let mut v = vec![0.0f32; dim];
            v[i % dim] = 1.0;
            v[(i * 7 + 1) % dim] = i as f32;
            rec(&format!("r{i}"), v, json!({"i": i}))
        })
        .collect();
    let ranges = tidemark_chroma::split_batches(&records, 16 * 1024, 5000).unwrap();
    assert!(
        ranges.len() >= 8,
        "expected several requests, got {}",
        ranges.len()
    );
    c.upsert(&coll.id, &records).await.unwrap();
    assert_eq!(c.count(&coll.id).await.unwrap(), 60);
    let got = c.get(&coll.id, &["r59".into()], true).await.unwrap();
    // cosine collections may normalise and rescale: equal within float rounding
    let back = got[0].embedding.as_ref().unwrap();
    assert_eq!(back.len(), dim);
    for (x, y) in back.iter().zip(&records[59].embedding) {
        assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "{x} vs {y}");
    }
    assert_eq!(got[0].metadata.as_ref().unwrap()["i"], json!(59));

    // A single record over the limit is refused up front.
    let huge = rec("huge", vec![0.5; 8000], json!({}));
    assert!(matches!(
        c.upsert(&coll.id, &[huge]).await,
        Err(ChromaError::Invalid(_))
    ));
    c.delete_collection(&name).await.unwrap();
}

#[tokio::test]
async fn errors_are_typed() {
    let c = client();
    let name = unique_name("chroma_err");
    let coll = c.get_or_create_collection(&name).await.unwrap();
    c.upsert(&coll.id, &[rec("a", vec![1.0, 0.0, 0.0], json!({}))])
        .await
        .unwrap();
    // dimension mismatch: permanent, with the server's message
    let err = c
        .upsert(&coll.id, &[rec("b", vec![1.0, 0.0], json!({}))])
        .await
        .unwrap_err();
    match &err {
        ChromaError::Permanent { status, message } => {
            assert_eq!(*status, 400);
            assert!(message.contains("dimension"), "{message}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(!err.is_transient());
    // unknown collection id: permanent 404
    let err = c
        .count("00000000-0000-0000-0000-000000000000")
        .await
        .unwrap_err();
    assert!(
        matches!(err, ChromaError::Permanent { status: 404, .. }),
        "{err:?}"
    );
    c.delete_collection(&name).await.unwrap();

    // nobody listening: transient
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut opts = ChromaOptions::new(&format!("http://127.0.0.1:{port}"));
    opts.timeout = std::time::Duration::from_secs(2);
    let down = ChromaClient::new(opts).unwrap();
    let err = down.heartbeat().await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert!(matches!(err, ChromaError::Transient(_)));

    // a bad URL is refused at construction
    assert!(matches!(
        ChromaClient::new(ChromaOptions::new("localhost:8000")),
        Err(ChromaError::Invalid(_))
    ));
}
