//! Splitting long documents into chunks that fit the embedding model.
//!
//! Text is cut into units at paragraph boundaries (blank lines); a paragraph longer than the
//! budget is cut at sentence ends; a sentence still too long at word boundaries, and a single
//! over-long word by characters. Units are then packed greedily into chunks of at most
//! `max_tokens`; each chunk after the first starts with the last units of the one before, up to
//! `overlap` tokens, so a sentence near a boundary keeps its context. Tokens are counted by a
//! [`TokenCounter`]: the local model's own tokenizer, or [`ApproxCounter`] for HTTP providers.
//!
//! Chunking is deterministic: the same text, budget and counter give the same chunks, so an edit
//! in one paragraph changes the chunks around it and leaves the others' text (and hash) alone.

/// Counts the tokens a text costs the model (without the model's special tokens).
pub trait TokenCounter: Send + Sync {
    fn count(&self, text: &str) -> usize;
}

/// The stated approximation for providers whose tokenizer tidemark does not have: one token
/// per three bytes of UTF-8, rounded up. English runs at about four bytes per token in the
/// common BPE vocabularies, so this overestimates by about a third and chunks stay under the
/// provider's limit for ordinary text.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproxCounter;

impl TokenCounter for ApproxCounter {
    fn count(&self, text: &str) -> usize {
        text.len().div_ceil(3)
    }
}

/// How to chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkSpec {
    /// Budget of one chunk's text, in tokens.
    pub max_tokens: usize,
    /// Tokens of the previous chunk repeated at the start of the next.
    pub overlap: usize,
}

/// One chunk: its number, its byte span in the document's content, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub index: usize,
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// A unit: a byte range of the content and its token count.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    tokens: usize,
}

/// Byte ranges of `text[range]` split after each match of `is_cut` (kept with the left part).
fn pieces(text: &str, start: usize, end: usize, cut: impl Fn(&str, usize) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut from = start;
    for (i, _) in text[start..end].char_indices() {
        let at = start + i;
        if at > from && cut(text, at) {
            out.push((from, at));
            from = at;
        }
    }
    if from < end {
        out.push((from, end));
    }
    out
}

/// Paragraph starts: a position right after a blank line.
fn paragraph_cut(text: &str, at: usize) -> bool {
    text[..at].ends_with("\n\n") && !text[at..].starts_with('\n')
}

/// Sentence starts: after `.`, `!` or `?` and whitespace.
fn sentence_cut(text: &str, at: usize) -> bool {
    let before = &text[..at];
    let ws = before.ends_with(' ') || before.ends_with('\n');
    let trimmed = before.trim_end();
    ws && !text[at..].starts_with(char::is_whitespace)
        && (trimmed.ends_with('.') || trimmed.ends_with('!') || trimmed.ends_with('?'))
}

/// Word starts: after whitespace.
fn word_cut(text: &str, at: usize) -> bool {
    text[..at].ends_with(char::is_whitespace) && !text[at..].starts_with(char::is_whitespace)
}

fn units(text: &str, spec: &ChunkSpec, counter: &dyn TokenCounter) -> Vec<Unit> {
    let mut out = Vec::new();
    let levels: [fn(&str, usize) -> bool; 3] = [paragraph_cut, sentence_cut, word_cut];
    split_into(text, 0, text.len(), &levels, spec.max_tokens, counter, &mut out);
    out
}

fn split_into(
    text: &str,
    start: usize,
    end: usize,
    levels: &[fn(&str, usize) -> bool],
    max: usize,
    counter: &dyn TokenCounter,
    out: &mut Vec<Unit>,
) {
    for (s, e) in pieces(text, start, end, levels[0]) {
        let tokens = counter.count(&text[s..e]);
        if tokens <= max {
            out.push(Unit { start: s, end: e, tokens });
        } else if levels.len() > 1 {
            split_into(text, s, e, &levels[1..], max, counter, out);
        } else {
            by_chars(text, s, e, max, counter, out);
        }
    }
}

/// The last resort for a single word longer than the budget.
fn by_chars(text: &str, start: usize, end: usize, max: usize, counter: &dyn TokenCounter, out: &mut Vec<Unit>) {
    let mut from = start;
    while from < end {
        let mut to = from;
        for (i, c) in text[from..end].char_indices() {
            let next = from + i + c.len_utf8();
            if to > from && counter.count(&text[from..next]) > max {
                break;
            }
            to = next;
        }
        out.push(Unit {
            start: from,
            end: to,
            tokens: counter.count(&text[from..to]),
        });
        from = to;
    }
}

/// Splits `text` into chunks of at most `spec.max_tokens` tokens (see the module rules). An
/// empty text gives one empty chunk, so every document has at least one vector.
pub fn split(text: &str, spec: &ChunkSpec, counter: &dyn TokenCounter) -> Vec<Chunk> {
    let max = spec.max_tokens.max(1);
    let spec = ChunkSpec {
        max_tokens: max,
        overlap: spec.overlap.min(max / 2),
    };
    let units = units(text, &spec, counter);
    let mut chunks: Vec<Chunk> = Vec::new();
    let mut i = 0;
    while i < units.len() {
        // Overlap: the last units of the previous chunk, up to `overlap` tokens.
        let mut first = i;
        if !chunks.is_empty() {
            let mut carried = 0;
            while first > 0 && carried + units[first - 1].tokens <= spec.overlap {
                carried += units[first - 1].tokens;
                first -= 1;
            }
        }
        let mut used: usize = units[first..i].iter().map(|u| u.tokens).sum();
        // The overlap never pushes a chunk over the budget.
        while first < i && used + units[i].tokens > max {
            used -= units[first].tokens;
            first += 1;
        }
        let mut j = i;
        while j < units.len() && (j == i || used + units[j].tokens <= max) {
            used += units[j].tokens;
            j += 1;
        }
        let (start, end) = (units[first].start, units[j - 1].end);
        chunks.push(Chunk {
            index: chunks.len(),
            start,
            end,
            text: text[start..end].trim().to_string(),
        });
        i = j;
    }
    if chunks.is_empty() {
        chunks.push(Chunk {
            index: 0,
            start: 0,
            end: text.len(),
            text: text.trim().to_string(),
        });
    }
    chunks
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
