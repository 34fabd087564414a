//! How a failed command reads: one `error:` line saying what failed, why and what to check.
//! Each distinct cause appears once (a wrapper that already quotes its source is not followed
//! by it again), driver errors are said in words, credentials are removed, and the line is cut
//! at a readable length. `-v` adds the full chain, also without credentials.

use tidemark_core::error_text::{excerpt, one_line, redact_text};

/// Longest `error:` line printed (input quoted in an error is cut well before this).
const MAX_LINE: usize = 360;

/// The one-line text of a command's error.
pub fn render(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let driver = cause.downcast_ref::<mongodb::error::Error>();
        let text = match driver {
            Some(m) => tidemark_store::mongo_text::describe(m),
            None => one_line(&cause.to_string()),
        };
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        if driver.is_some() {
            // What lies below a driver error is the driver's internals, already described.
            break;
        }
    }
    excerpt(&redact_text(&parts.join(": ")), MAX_LINE)
}

/// The whole chain, one cause per line, for `-v`.
pub fn render_verbose(err: &anyhow::Error) -> String {
    redact_text(&format!("{err:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn a_wrapper_that_quotes_its_source_is_not_followed_by_it() {
        #[derive(Debug, thiserror::Error)]
        #[error("store: {0}")]
        struct Wrapper(#[source] std::io::Error);
        let io = std::io::Error::other("disk full");
        let err = anyhow::Error::new(Wrapper(io)).context("cannot import");
        assert_eq!(render(&err), "cannot import: store: disk full");
    }

    #[test]
    fn a_driver_error_is_described_once_and_its_internals_dropped() {
        let driver: mongodb::error::Error =
            std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        let err = anyhow::Error::new(tidemark_store::StoreError::from(driver))
            .context("cannot write `a`");
        let line = render(&err);
        assert_eq!(
            line,
            "cannot write `a`: lost the connection to MongoDB (connection refused): is it \
             running? check mongodb.uri (MONGODB_URI)"
        );
        assert!(!line.contains("Kind:"));
    }

    #[test]
    fn credentials_and_long_input_never_reach_the_line() {
        let long = "{".repeat(30_000);
        let err: anyhow::Result<()> = Err(anyhow::anyhow!("bad value {long}"))
            .context("cannot use mongodb://app:Secret-1@h:27017/");
        let line = render(&err.unwrap_err());
        assert!(!line.contains("Secret-1"), "{line}");
        assert!(line.chars().count() <= MAX_LINE, "{}", line.len());
        let verbose = render_verbose(&anyhow::anyhow!("at mongodb://app:Secret-1@h/"));
        assert!(!verbose.contains("Secret-1"), "{verbose}");
    }
}
