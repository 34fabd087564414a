//! Pieces for errors a person reads: one line, a short excerpt of rejected input, a network
//! failure said in words, and credentials removed from any URI inside a message.

/// Collapses all whitespace runs (newlines included) into single spaces.
pub fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most `max_chars` characters of `text` on one line, with `…` when something was cut.
pub fn excerpt(text: &str, max_chars: usize) -> String {
    let line = one_line(text);
    if line.chars().count() <= max_chars {
        return line;
    }
    let mut cut: String = line.chars().take(max_chars.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The first I/O failure in an error's source chain, in words ("connection refused",
/// "timed out", ...), or `None` when no I/O error is in the chain.
pub fn io_reason(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io_kind_words(io));
        }
        cur = e.source();
    }
    None
}

/// An I/O error said in a few words, without the OS error number.
pub fn io_kind_words(io: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match io.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::TimedOut => "timed out".into(),
        K::UnexpectedEof => "connection closed early".into(),
        K::BrokenPipe => "connection closed".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => excerpt(&io.to_string(), 120),
    }
}

/// Replaces the password of every `scheme://user:password@host` inside a text with `***`.
pub fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let start = rest[..pos]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '.' || c == '-'))
            .map(|i| i + 1)
            .unwrap_or(0);
        out.push_str(&rest[..start]);
        let after = &rest[pos + 3..];
        let end = after
            .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')' || c == ',')
            .unwrap_or(after.len());
        out.push_str(&crate::redact_uri(&rest[start..pos + 3 + end]));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_long_input_and_keeps_short_input() {
        assert_eq!(excerpt("a\n  b", 10), "a b");
        let long = "x".repeat(30_000);
        let e = excerpt(&long, 80);
        assert_eq!(e.chars().count(), 80);
        assert!(e.ends_with('…'));
    }

    #[test]
    fn io_reason_finds_the_io_error_in_a_chain() {
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let e = Outer(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(io_reason(&e).as_deref(), Some("connection refused"));
        let plain = std::fmt::Error;
        assert_eq!(io_reason(&plain), None);
    }

    #[test]
    fn redact_text_hides_every_password_in_a_message() {
        let msg = "cannot use mongodb://app:s3cret@h:1/?x=1, nor (https://u:pw@c:8000)";
        let r = redact_text(msg);
        assert!(!r.contains("s3cret") && !r.contains(":pw@"), "{r}");
        assert!(r.contains("mongodb://app:***@h:1/?x=1"), "{r}");
        assert!(r.contains("https://u:***@c:8000"), "{r}");
        assert_eq!(redact_text("no uri here"), "no uri here");
    }
}
