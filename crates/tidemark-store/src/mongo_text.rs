//! A MongoDB driver error as one line a person can act on: what failed, why in words, what to
//! check. The driver's own `Display` is a debug dump (the topology, raw BSON server responses)
//! and its source repeats it; every tidemark error that wraps a driver error prints this instead.

use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use tidemark_core::error_text::{excerpt, io_kind_words, redact_text};

/// Where to look when the connection itself fails.
const CHECK_URI: &str = "check mongodb.uri (MONGODB_URI)";

/// One line describing a driver error; never contains a password.
pub fn describe(e: &MongoError) -> String {
    redact_text(&describe_kind(e.kind.as_ref()))
}

fn describe_kind(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ServerSelection { message, .. } => server_selection(message),
        ErrorKind::Authentication { message, .. } => format!(
            "MongoDB refused the credentials (authentication failed: {}): {CHECK_URI}, its user, \
             password and authSource",
            excerpt(message, 120)
        ),
        ErrorKind::Io(io) => format!(
            "lost the connection to MongoDB ({}): is it running? {CHECK_URI}",
            io_kind_words(io)
        ),
        ErrorKind::DnsResolve { message, .. } => format!(
            "cannot resolve MongoDB's host name ({}): {CHECK_URI}",
            excerpt(message, 120)
        ),
        ErrorKind::InvalidArgument { message, .. } => format!(
            "invalid MongoDB option ({}): {CHECK_URI}",
            excerpt(message, 160)
        ),
        ErrorKind::InvalidTlsConfig { message, .. } => format!(
            "invalid MongoDB TLS settings ({}): check the tls options of mongodb.uri",
            excerpt(message, 160)
        ),
        ErrorKind::Command(c) => refused("the command", c.code, &c.code_name, &c.message),
        ErrorKind::Write(WriteFailure::WriteError(w)) => refused(
            "the write",
            w.code,
            w.code_name.as_deref().unwrap_or(""),
            &w.message,
        ),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => {
            refused("the write concern", w.code, &w.code_name, &w.message)
        }
        ErrorKind::InsertMany(m) => batch_refused(
            m.write_errors
                .as_ref()
                .and_then(|v| v.first())
                .map(|w| (w.code, w.code_name.as_deref(), w.message.as_str())),
        ),
        ErrorKind::BulkWrite(b) => batch_refused(
            b.write_errors
                .values()
                .next()
                .map(|w| (w.code, w.code_name.as_deref(), w.message.as_str())),
        ),
        other => format!("MongoDB: {}", excerpt(&other.to_string(), 200)),
    }
}

/// The first refused statement of a batch (code, code name, message), or its write concern.
fn batch_refused(first: Option<(i32, Option<&str>, &str)>) -> String {
    match first {
        Some((code, name, message)) => {
            refused("a write of the batch", code, name.unwrap_or(""), message)
        }
        None => "MongoDB refused the batch's write concern".into(),
    }
}

fn refused(what: &str, code: i32, code_name: &str, message: &str) -> String {
    let name = if code_name.is_empty() {
        String::new()
    } else {
        format!(" {code_name}")
    };
    format!(
        "MongoDB refused {what}: {} (code {code}{name})",
        excerpt(message, 200)
    )
}

/// "No server could be selected": the driver's message holds the topology, each server with
/// its address and last error. Names the addresses and the first error in words.
fn server_selection(message: &str) -> String {
    let addrs = addresses(message);
    let at = if addrs.is_empty() {
        String::new()
    } else {
        format!(" at {}", addrs.join(", "))
    };
    let err = first_server_error(message);
    let lower = err.to_lowercase();
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return format!(
            "cannot connect to MongoDB{at}: its TLS certificate is not accepted ({}): check \
             tlsCAFile / tlsCertificateKeyFile in mongodb.uri",
            excerpt(&err, 120)
        );
    }
    if lower.contains("authentication") || lower.contains("auth failed") {
        return format!(
            "MongoDB{at} refused the credentials (authentication failed): {CHECK_URI}, its user, \
             password and authSource"
        );
    }
    let why = if lower.contains("connection refused") {
        "connection refused".to_string()
    } else if lower.contains("timed out") || err.is_empty() {
        "no answer".to_string()
    } else {
        excerpt(&err, 120)
    };
    let no_primary = message.contains("ReplicaSetNoPrimary") && why == "no answer";
    let hint = if no_primary {
        "is the replica set initiated, with a primary?"
    } else {
        "is it running?"
    };
    format!("cannot reach MongoDB{at} ({why}): {hint} {CHECK_URI}")
}

/// Every `Address: host:port` in a topology description.
fn addresses(message: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in message.split("Address: ").skip(1) {
        let addr: String = part
            .chars()
            .take_while(|c| !matches!(c, ',' | ' ' | '}'))
            .collect();
        if !addr.is_empty() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out
}

/// The text of the first server's `Error: ...` in a topology description, without the
/// driver's "Kind:" and "labels" decorations.
fn first_server_error(message: &str) -> String {
    let Some((_, rest)) = message.split_once("Error: ") else {
        return String::new();
    };
    let end = rest.find(", labels").unwrap_or(rest.len());
    let text = rest[..end].trim_start_matches("Kind: ");
    text.trim_start_matches("I/O error: ")
        .trim_end_matches(|c: char| c == '}' || c == ']' || c.is_whitespace())
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFUSED: &str = "Server selection timeout: No available servers. Topology: { Type: \
        ReplicaSetNoPrimary, Set Name: rs, Servers: [ { Address: 127.0.0.1:27018, Type: \
        Unknown, Error: Kind: I/O error: Connection refused (os error 111), labels: {} } ] }";

    #[test]
    fn an_unreachable_server_names_its_address_and_why() {
        let s = server_selection(REFUSED);
        assert_eq!(
            s,
            "cannot reach MongoDB at 127.0.0.1:27018 (connection refused): is it running? \
             check mongodb.uri (MONGODB_URI)"
        );
    }

    #[test]
    fn a_certificate_failure_says_certificate() {
        let msg = "Server selection timeout: No available servers. Topology: { Type: Unknown, \
            Servers: [ { Address: localhost:4000, Type: Unknown, Error: Kind: I/O error: \
            invalid peer certificate: UnknownIssuer, labels: {} } ] }";
        let s = server_selection(msg);
        assert!(s.contains("localhost:4000"), "{s}");
        assert!(
            s.contains("certificate") && s.contains("UnknownIssuer"),
            "{s}"
        );
        assert!(!s.contains("Kind:") && !s.contains("labels"), "{s}");
    }

    #[test]
    fn no_addresses_still_reads() {
        let s = server_selection("Server selection timeout: No available servers.");
        assert!(s.starts_with("cannot reach MongoDB (no answer)"), "{s}");
    }

    #[test]
    fn a_refused_command_quotes_a_short_excerpt_and_the_code() {
        let long = "x".repeat(5000);
        let s = refused("the write", 2, "BadValue", &long);
        assert!(s.len() < 300, "{}", s.len());
        assert!(s.ends_with("(code 2 BadValue)"), "{s}");
    }

    #[test]
    fn an_io_error_is_words_not_a_dump() {
        let e: MongoError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        assert_eq!(
            describe(&e),
            "lost the connection to MongoDB (connection reset): is it running? check \
             mongodb.uri (MONGODB_URI)"
        );
    }
}
