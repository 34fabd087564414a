//! Deterministic benchmark documents: short English-like texts (about 40 words, the size of a
//! typical FAQ answer or chunk) with a little metadata, so every run writes the same bytes.

use tidemark_store::NewDocument;

const WORDS: &[&str] = &[
    "account",
    "password",
    "reset",
    "billing",
    "invoice",
    "refund",
    "order",
    "shipping",
    "delivery",
    "address",
    "email",
    "login",
    "security",
    "token",
    "subscription",
    "plan",
    "upgrade",
    "cancel",
    "support",
    "ticket",
    "error",
    "network",
    "timeout",
    "server",
    "database",
    "backup",
    "restore",
    "export",
    "import",
    "report",
    "dashboard",
    "user",
    "team",
    "role",
    "permission",
    "invite",
    "language",
    "region",
    "currency",
    "payment",
    "card",
    "bank",
    "transfer",
    "limit",
    "quota",
    "storage",
    "file",
    "upload",
    "download",
    "search",
    "filter",
    "sort",
    "page",
    "mobile",
    "desktop",
    "browser",
    "update",
    "version",
    "release",
    "feature",
    "bug",
    "fix",
    "how",
    "do",
    "I",
    "can",
    "the",
    "a",
    "my",
    "to",
    "is",
];

/// A small xorshift generator: reproducible texts without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// The text of document `i` (about 40 words).
pub fn text(i: u64) -> String {
    let mut rng = Rng(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let n = 32 + (rng.next() % 16) as usize;
    let mut out = format!("Document {i}:");
    for _ in 0..n {
        out.push(' ');
        out.push_str(WORDS[(rng.next() % WORDS.len() as u64) as usize]);
    }
    out.push('.');
    out
}

/// Document `i` with contentId `<prefix>-<i>`.
pub fn document(prefix: &str, i: u64) -> NewDocument {
    NewDocument::new(format!("{prefix}-{i}"), "bench", text(i)).with_metadata(serde_json::json!({
        "i": i,
        "group": format!("g{}", i % 10),
        "tags": ["bench", if i.is_multiple_of(2) { "even" } else { "odd" }],
    }))
}

/// Documents `start..start + n`.
pub fn documents(prefix: &str, start: u64, n: usize) -> Vec<NewDocument> {
    (start..start + n as u64)
        .map(|i| document(prefix, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_deterministic_and_distinct() {
        assert_eq!(text(7), text(7));
        assert_ne!(text(7), text(8));
        let words = text(3).split_whitespace().count();
        assert!((33..=50).contains(&words), "{words} words");
        assert_eq!(document("p", 5).content_id, "p-5");
    }
}
