//! Unit tests of the chunker with a word counter (one token per whitespace-separated word).

use super::*;

struct Words;
impl TokenCounter for Words {
    fn count(&self, text: &str) -> usize {
        text.split_whitespace().count()
    }
}

fn spec(max: usize, overlap: usize) -> ChunkSpec {
    ChunkSpec {
        max_tokens: max,
        overlap,
    }
}

/// `n` paragraphs of `words` words each; paragraph i's words are `p<i>w<j>`.
fn paragraphs(n: usize, words: usize) -> String {
    (0..n)
        .map(|i| {
            let ws: Vec<String> = (0..words).map(|j| format!("p{i}w{j}")).collect();
            format!("{}.", ws.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn check_invariants(text: &str, chunks: &[Chunk], max: usize) {
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(Words.count(&c.text) <= max, "chunk {i} has {} > {max} words", Words.count(&c.text));
        assert_eq!(text[c.start..c.end].trim(), c.text, "span of chunk {i}");
    }
    // Every word of the text is in some chunk, in order.
    let mut covered = vec![false; text.len()];
    for c in chunks {
        covered[c.start..c.end].iter_mut().for_each(|b| *b = true);
    }
    for (i, ch) in text.char_indices() {
        assert!(ch.is_whitespace() || covered[i], "byte {i} ({ch:?}) in no chunk");
    }
}

#[test]
fn a_short_text_is_one_chunk() {
    let c = split("Hello world.", &spec(10, 2), &Words);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].text, "Hello world.");
    assert_eq!((c[0].start, c[0].end), (0, 12));
}

#[test]
fn an_empty_text_is_one_empty_chunk() {
    let c = split("", &spec(10, 2), &Words);
    assert_eq!(c.len(), 1);
    assert_eq!(c[0].text, "");
}

#[test]
fn paragraphs_are_packed_under_the_budget() {
    let text = paragraphs(10, 30);
    let c = split(&text, &spec(100, 0), &Words);
    check_invariants(&text, &c, 100);
    assert_eq!(c.len(), 4, "3 paragraphs of 30 words fit in 100");
    assert!(c[0].text.starts_with("p0w0") && c[0].text.ends_with("p2w29."));
}

#[test]
fn long_paragraphs_split_at_sentences_then_words_then_characters() {
    let sentence = |i: usize| format!("{}.", vec![format!("s{i}"); 8].join(" "));
    let para: String = (0..6).map(sentence).collect::<Vec<_>>().join(" ");
    let c = split(&para, &spec(20, 0), &Words);
    check_invariants(&para, &c, 20);
    assert!(c.iter().all(|c| c.text.ends_with('.')), "cut at sentence ends: {c:?}");

    let long_sentence = vec!["w"; 45].join(" ");
    let c = split(&long_sentence, &spec(20, 0), &Words);
    check_invariants(&long_sentence, &c, 20);
    assert_eq!(c.len(), 3);

    struct Chars;
    impl TokenCounter for Chars {
        fn count(&self, text: &str) -> usize {
            text.chars().count()
        }
    }
    let word = "é".repeat(25);
    let c = split(&word, &spec(10, 0), &Chars);
    assert_eq!(c.len(), 3);
    assert!(c.iter().all(|c| c.text.chars().count() <= 10));
    assert_eq!(c.iter().map(|c| c.text.as_str()).collect::<String>(), word);
}

#[test]
fn overlap_repeats_the_end_of_the_previous_chunk() {
    let text = paragraphs(12, 10);
    let none = split(&text, &spec(30, 0), &Words);
    let some = split(&text, &spec(30, 10), &Words);
    check_invariants(&text, &some, 30);
    for w in none.windows(2) {
        assert!(w[1].start >= w[0].end, "no overlap without overlap");
    }
    for w in some.windows(2) {
        assert!(w[1].start < w[0].end, "chunk {} starts inside chunk {}", w[1].index, w[0].index);
    }
    assert!(some.len() > none.len());
}

#[test]
fn an_edit_of_one_paragraph_changes_only_the_chunks_around_it() {
    let text = paragraphs(40, 20);
    let edited = text.replace("p20w5 ", "CHANGED ");
    for overlap in [0, 10] {
        let a = split(&text, &spec(60, overlap), &Words);
        let b = split(&edited, &spec(60, overlap), &Words);
        assert_eq!(a.len(), b.len());
        let changed = a.iter().zip(&b).filter(|(x, y)| x.text != y.text).count();
        assert!((1..=2).contains(&changed), "overlap {overlap}: {changed} chunks changed");
    }
}

#[test]
fn chunking_is_deterministic() {
    let text = paragraphs(25, 17);
    assert_eq!(split(&text, &spec(50, 8), &Words), split(&text, &spec(50, 8), &Words));
}

#[test]
fn the_approximation_overestimates_english() {
    let t = "The quick brown fox jumps over the lazy dog.";
    assert_eq!(ApproxCounter.count(t), t.len().div_ceil(3));
    assert!(ApproxCounter.count(t) >= 10, "about 10 tokens in common vocabularies");
}
