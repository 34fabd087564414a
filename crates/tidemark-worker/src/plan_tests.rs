//! Table tests of the planner: every way an entry can end, without a server.

use super::*;
use bson::{doc, DateTime};
use serde_json::json;

const MODEL: &str = "hash-384";

fn oid(n: u8) -> ObjectId {
    let mut b = [0u8; 12];
    b[11] = n;
    ObjectId::from_bytes(b)
}

fn shape() -> Shape {
    Shape::plain(MODEL)
}

fn entry(n: u8, doc: u8, op: Op, version: i64) -> OutboxEntry {
    let mut e = OutboxEntry::new_pending(oid(doc), "c", op, version, "h");
    e.id = oid(100 + n);
    e
}

fn document(doc: u8, version: i64, content: &str) -> DocumentRecord {
    DocumentRecord {
        id: oid(doc),
        content_id: format!("c{doc}"),
        doc_type: "faq".into(),
        content: content.into(),
        metadata: doc! {"lang": "en"},
        timestamp: DateTime::from_millis(1_700_000_000_000),
        version,
        content_hash: content_hash(content),
        vector_id: None,
        indexed_version: None,
    }
}

fn docs(list: Vec<DocumentRecord>) -> Documents {
    list.into_iter().map(|d| (d.id, Ok(d))).collect()
}

fn done(r: OutboxResult) -> Outcome {
    Outcome::Done(r)
}

fn outcome_of(outcomes: &[(ObjectId, Outcome)], entry: ObjectId) -> Option<&Outcome> {
    outcomes.iter().find(|(id, _)| *id == entry).map(|(_, o)| o)
}

/// Stored vectors as the worker would have written them for `d`.
fn stored_for(d: &DocumentRecord) -> Stored {
    let mut s = Stored::default();
    for p in shape().pieces(d) {
        s.of_document.entry(d.id).or_default().push(p.id.clone());
        s.by_id.insert(p.id, p.metadata);
    }
    s
}

#[test]
fn coalescing_keeps_the_newest_entry_per_document() {
    let cases = [
        // (entries as (n, doc, version), expected primary n, superseded n's)
        (vec![(1, 1, 1), (2, 1, 2), (3, 1, 3)], vec![3], vec![1, 2]),
        (vec![(3, 1, 3), (1, 1, 1)], vec![3], vec![1]),
        (vec![(1, 1, 1), (2, 2, 1)], vec![1, 2], vec![]),
        (vec![(1, 1, 2), (2, 1, 2)], vec![2], vec![1]), // same version: latest _id wins
    ];
    for (input, primary, superseded) in cases {
        let entries: Vec<_> = input
            .iter()
            .map(|&(n, d, v)| entry(n, d, Op::Upsert, v))
            .collect();
        let (p, outcomes) = coalesce(entries);
        let got: Vec<ObjectId> = p.iter().map(|e| e.id).collect();
        let want: Vec<ObjectId> = primary.iter().map(|n| oid(100 + n)).collect();
        assert_eq!(got, want, "primary of {input:?}");
        assert_eq!(outcomes.len(), superseded.len(), "{input:?}");
        for n in superseded {
            assert_eq!(
                outcome_of(&outcomes, oid(100 + n)),
                Some(&done(OutboxResult::Superseded))
            );
        }
    }
}

#[test]
fn the_entry_kept_covers_the_indexes_of_those_it_supersedes() {
    // (entries as (n, version, index or "" for every index), indexes of the primary)
    type Case = (Vec<(u8, i64, &'static str)>, Vec<&'static str>);
    let cases: [Case; 5] = [
        // A build's entry after a live one of the same version: the live one's work too.
        (vec![(1, 2, ""), (2, 2, "v2")], vec![]),
        // A live entry after a build's: every index already.
        (vec![(1, 2, "v2"), (2, 3, "")], vec![]),
        // The newer entry first, the older after it: still the union.
        (vec![(2, 3, "v2"), (1, 2, "")], vec![]),
        // Two builds' entries: both indexes, and only those.
        (vec![(1, 2, "v2"), (2, 2, "v3")], vec!["v2", "v3"]),
        (vec![(1, 2, "v2")], vec!["v2"]),
    ];
    for (input, want) in cases {
        let entries: Vec<_> = input
            .iter()
            .map(|&(n, v, idx)| {
                let e = entry(n, 1, Op::Upsert, v);
                if idx.is_empty() {
                    e
                } else {
                    e.for_index(idx)
                }
            })
            .collect();
        let (p, _) = coalesce(entries);
        assert_eq!(p.len(), 1, "{input:?}");
        let mut got = p[0].indexes.clone();
        got.sort();
        assert_eq!(got, want, "indexes of the primary of {input:?}");
    }
}

#[test]
fn live_entries_are_those_for_every_index_after_coalescing() {
    // Document 1: a build's entry only. Document 2: a live one only. Document 3: a build's
    // entry after a live one (it then carries the live write). Document 4: two builds'.
    let entries = vec![
        entry(1, 1, Op::Upsert, 1).for_index("v2"),
        entry(2, 2, Op::Upsert, 1),
        entry(3, 3, Op::Upsert, 2),
        entry(4, 3, Op::Upsert, 2).for_index("v2"),
        entry(5, 4, Op::Upsert, 1).for_index("v2"),
        entry(6, 4, Op::Upsert, 1).for_index("v3"),
    ];
    let (primary, _) = coalesce(entries);
    let live = live_entries(&primary);
    let mut got: Vec<ObjectId> = live.into_iter().collect();
    got.sort();
    assert_eq!(got, vec![oid(102), oid(104)]);
}

#[test]
fn an_unknown_schema_version_fails_permanently() {
    let mut e = entry(1, 1, Op::Upsert, 1);
    e.schema_version = SCHEMA_VERSION + 1;
    let (p, outcomes) = coalesce(vec![e]);
    assert!(p.is_empty());
    match outcome_of(&outcomes, oid(101)) {
        Some(Outcome::Failed(f)) => {
            assert!(f.permanent);
            assert!(f.error.contains("schemaVersion"), "{}", f.error);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn decide_table() {
    // (entry op and version, stored document version (None: gone), expected)
    enum Want {
        Delete,
        Target,
        Superseded,
        Retry,
    }
    // Who wrote the entry: an application, an index build, or a hand-off of a live write.
    #[derive(Debug, Clone, Copy)]
    enum By {
        App,
        Build,
        Handoff,
    }
    let cases = [
        (By::App, Op::Upsert, 2, Some(2), Want::Target),
        (By::App, Op::Upsert, 1, Some(2), Want::Superseded),
        (By::App, Op::Upsert, 3, Some(2), Want::Retry),
        (By::App, Op::Upsert, 2, None, Want::Delete),
        (By::App, Op::Delete, 3, None, Want::Delete),
        // delete then re-put: the old incarnation's entry names a document id that is gone
        (By::App, Op::Delete, 2, Some(2), Want::Target),
        // a build's entry writes the document as it is now (a later change may be left to it)
        (By::Build, Op::Upsert, 1, Some(2), Want::Target),
        (By::Build, Op::Upsert, 2, Some(2), Want::Target),
        (By::Build, Op::Upsert, 3, Some(2), Want::Retry),
        (By::Build, Op::Upsert, 1, None, Want::Delete),
        // a hand-off carries one live write: a newer one carries the rest
        (By::Handoff, Op::Upsert, 1, Some(2), Want::Superseded),
    ];
    for (by, op, version, stored, want) in cases {
        let mut e = entry(1, 1, op, version);
        match by {
            By::App => {}
            By::Build => e = e.for_index("v2"),
            By::Handoff => {
                e = e.for_index("v2");
                e.handoff_of = Some(oid(200));
            }
        }
        let d = docs(
            stored
                .map(|v| document(1, v, "hello"))
                .into_iter()
                .collect(),
        );
        let r = decide(vec![e], d, &shape());
        match want {
            Want::Delete => {
                assert_eq!(
                    r.deletes,
                    vec![Delete {
                        entry: oid(101),
                        document_id: oid(1),
                        ids: vec![oid(1).to_hex()],
                        by_document: false,
                    }]
                );
                assert!(r.targets.is_empty() && r.outcomes.is_empty());
            }
            Want::Target => {
                assert_eq!(r.targets.len(), 1, "{by:?} {op:?} v{version}");
                assert_eq!(r.targets[0].pieces[0].id, oid(1).to_hex());
                assert!(r.deletes.is_empty() && r.outcomes.is_empty());
            }
            Want::Superseded => {
                let want = vec![(oid(101), done(OutboxResult::Superseded))];
                assert_eq!(r.outcomes, want, "{by:?} {op:?} v{version}");
            }
            Want::Retry => match &r.outcomes[..] {
                [(_, Outcome::Failed(f))] => {
                    assert!(!f.permanent, "a newer entry than its document waits");
                    assert!(f.error.contains("older than the entry"), "{}", f.error);
                }
                other => panic!("{other:?}"),
            },
        }
    }
}

#[test]
fn delete_then_reput_never_touches_the_new_incarnation() {
    // Old incarnation (doc 1) was deleted; the new one (doc 2) has the same contentId.
    let old_delete = entry(1, 1, Op::Delete, 2);
    let new_put = entry(2, 2, Op::Upsert, 3);
    let d = docs(vec![document(2, 3, "again")]);
    let r = decide(vec![old_delete, new_put], d, &shape());
    assert_eq!(r.deletes.len(), 1);
    assert_eq!(r.deletes[0].ids, vec![oid(1).to_hex()]);
    assert_eq!(r.targets.len(), 1);
    assert_eq!(r.targets[0].pieces[0].id, oid(2).to_hex());
}

#[test]
fn a_hash_that_does_not_match_the_content_is_permanent() {
    let mut d = document(1, 1, "hello");
    d.content_hash = content_hash("something else");
    let r = decide(vec![entry(1, 1, Op::Upsert, 1)], docs(vec![d]), &shape());
    match &r.outcomes[..] {
        [(_, Outcome::Failed(f))] => {
            assert!(f.permanent);
            assert_eq!(f.stage, "validate");
            assert!(f.error.contains("does not match"), "{}", f.error);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_unreadable_document_is_permanent() {
    let mut d = Documents::new();
    d.insert(
        oid(1),
        Err("invalid document: missing field `content`".into()),
    );
    let r = decide(vec![entry(1, 1, Op::Upsert, 1)], d, &shape());
    assert!(matches!(&r.outcomes[..], [(_, Outcome::Failed(f))] if f.permanent));
}

fn target(d: &DocumentRecord) -> Target {
    let r = decide(
        vec![entry(1, d.id.bytes()[11], Op::Upsert, d.version)],
        docs(vec![d.clone()]),
        &shape(),
    );
    r.targets.into_iter().next().expect("a target")
}

#[test]
fn compare_table() {
    let d = document(1, 2, "hello");
    let mut meta_changed = d.clone();
    meta_changed.metadata = doc! {"lang": "de"};
    let mut content_changed = document(1, 2, "new text");
    content_changed.metadata = d.metadata.clone();
    let other_model = {
        let mut s = stored_for(&d);
        for m in s.by_id.values_mut() {
            m.insert("model".into(), json!("another-model"));
        }
        s
    };
    // (what is stored, the document now, unchanged?, metadata updates, embeds)
    let cases = [
        ("nothing stored", Stored::default(), &d, false, 0, 1),
        ("same hash and metadata", stored_for(&d), &d, true, 0, 0),
        ("metadata only", stored_for(&d), &meta_changed, false, 1, 0),
        (
            "content changed",
            stored_for(&d),
            &content_changed,
            false,
            0,
            1,
        ),
        ("other model", other_model, &d, false, 0, 1),
    ];
    for (name, stored, now, unchanged, updates, embeds) in cases {
        let w = compare(vec![target(now)], &stored, MODEL);
        assert_eq!(
            w.outcomes == vec![(oid(101), done(OutboxResult::Unchanged))],
            unchanged,
            "{name}"
        );
        assert_eq!(w.updates.len(), updates, "{name}");
        assert_eq!(w.embeds.len(), embeds, "{name}");
        assert_eq!(w.writing.is_empty(), unchanged, "{name}");
        assert!(w.removals.is_empty(), "{name}");
    }
}

#[test]
fn writes_carry_the_previous_metadata_for_removed_keys() {
    let d = document(1, 2, "hello");
    let mut now = d.clone();
    now.metadata = doc! {};
    let w = compare(vec![target(&now)], &stored_for(&d), MODEL);
    let (_, u) = &w.updates[0];
    assert!(!u.metadata.contains_key("lang"));
    assert_eq!(u.previous.as_ref().unwrap()["lang"], json!("en"));
}

#[test]
fn stored_vectors_no_piece_has_are_removed() {
    let d = document(1, 2, "hello");
    let mut stored = stored_for(&d);
    stored
        .of_document
        .get_mut(&oid(1))
        .unwrap()
        .push("leftover".into());
    let w = compare(vec![target(&d)], &stored, MODEL);
    assert_eq!(w.removals, vec![(oid(101), "leftover".to_string())]);
    assert_eq!(w.writing, vec![oid(101)], "a removal is a write");
}

#[test]
fn outcomes_combine_failure_over_release_over_done() {
    let f = Outcome::Failed(Failure::transient("embed", "x".into()));
    let d = done(OutboxResult::Indexed);
    assert_eq!(d.clone().combine(f.clone()), f);
    assert_eq!(f.clone().combine(Outcome::Release), f);
    assert_eq!(d.clone().combine(Outcome::Release), Outcome::Release);
    assert_eq!(d.clone().combine(d.clone()), d);
}

fn embed_of(text_len: usize) -> Embed {
    Embed {
        entry: ObjectId::new(),
        attempts: 0,
        text: "x".repeat(text_len),
        write: VectorWrite {
            id: String::new(),
            embedding: Vec::new(),
            metadata: Metadata::new(),
            previous: None,
        },
    }
}

#[test]
fn groups_are_bounded_by_bytes_and_count_and_keep_order() {
    let embeds: Vec<Embed> = (0..10).map(|i| embed_of(100 + i)).collect();
    let lens: Vec<usize> = embeds.iter().map(|e| e.text.len()).collect();
    let g = groups(embeds.clone(), 250, 100);
    assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![2; 5]);
    assert!(g
        .iter()
        .all(|g| g.iter().map(|e| e.text.len()).sum::<usize>() <= 250));
    let flat: Vec<usize> = g.into_iter().flatten().map(|e| e.text.len()).collect();
    assert_eq!(flat, lens, "order kept, nothing lost");
    let g = groups(embeds, 1 << 20, 3);
    assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
}

#[test]
fn a_text_larger_than_the_byte_bound_is_a_group_of_its_own() {
    let g = groups(vec![embed_of(10), embed_of(1000), embed_of(10)], 100, 10);
    assert_eq!(g.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
    assert!(groups(Vec::new(), 100, 10).is_empty());
}

#[test]
fn only_a_first_delivery_of_a_new_document_skips_the_stored_read() {
    let d = document(1, 1, "hello");
    for (new, deliveries, skip) in [(true, 1, true), (true, 2, false), (false, 1, false)] {
        let mut e = entry(1, 1, Op::Upsert, 1).with_new_document(new);
        e.deliveries = deliveries;
        let r = decide(vec![e], docs(vec![d.clone()]), &shape());
        assert_eq!(
            r.targets[0].new_document, skip,
            "new {new}, deliveries {deliveries}"
        );
    }
}
