//! The embedding API budget keys of `[embedder]` (OpenAI-compatible provider only): tokens
//! per request, tokens and requests per minute, and the price used for the cost estimate.

use super::{invalid, ConfigError, EmbedderConfig, EmbedderKind};

/// Checks the budget keys; `chunk_tokens` is the largest chunk the chunking settings make
/// (None: documents are not chunked).
pub(super) fn validate(e: &EmbedderConfig, chunk_tokens: Option<usize>) -> Result<(), ConfigError> {
    let set = [
        (
            "embedder.max_tokens_per_request",
            e.max_tokens_per_request as u64,
        ),
        ("embedder.max_tokens_per_minute", e.max_tokens_per_minute),
        (
            "embedder.max_requests_per_minute",
            e.max_requests_per_minute,
        ),
    ];
    if e.provider != EmbedderKind::Openai {
        if let Some((key, _)) = set.iter().find(|(_, v)| *v > 0) {
            return Err(invalid(
                key,
                "only the openai provider has an API budget (remove the key, or set provider = \"openai\")",
            ));
        }
    }
    if !(e.price_per_million_tokens.is_finite() && e.price_per_million_tokens >= 0.0) {
        return Err(invalid(
            "embedder.price_per_million_tokens",
            "must be a number of at least 0",
        ));
    }
    let per_request = e.max_tokens_per_request as u64;
    if per_request > 0 && e.max_tokens_per_minute > 0 && per_request > e.max_tokens_per_minute {
        return Err(invalid(
            "embedder.max_tokens_per_request",
            format!(
                "{per_request} is more than embedder.max_tokens_per_minute ({})",
                e.max_tokens_per_minute
            ),
        ));
    }
    if let (Some(chunk), true) = (chunk_tokens, per_request > 0) {
        if chunk as u64 > per_request {
            return Err(invalid(
                "embedder.max_tokens_per_request",
                format!(
                    "{per_request} is less than one chunk (chunking.max_tokens resolves to {chunk}): a chunk could never be sent"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai() -> EmbedderConfig {
        EmbedderConfig {
            provider: EmbedderKind::Openai,
            base_url: "http://127.0.0.1:1".into(),
            ..EmbedderConfig::default()
        }
    }

    fn key_of(r: Result<(), ConfigError>) -> String {
        match r {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid_for_every_provider() {
        assert!(validate(&EmbedderConfig::default(), None).is_ok());
        assert!(validate(&openai(), Some(8191)).is_ok());
    }

    #[test]
    fn budgets_only_for_openai() {
        let mut e = EmbedderConfig {
            max_requests_per_minute: 10,
            ..EmbedderConfig::default()
        };
        assert_eq!(
            key_of(validate(&e, None)),
            "embedder.max_requests_per_minute"
        );
        e.provider = EmbedderKind::Openai;
        e.base_url = "http://x".into();
        assert!(validate(&e, None).is_ok());
    }

    #[test]
    fn per_request_must_fit_a_minute_and_a_chunk() {
        let mut e = openai();
        e.max_tokens_per_request = 2000;
        e.max_tokens_per_minute = 1000;
        assert_eq!(
            key_of(validate(&e, None)),
            "embedder.max_tokens_per_request"
        );
        e.max_tokens_per_minute = 0;
        assert_eq!(
            key_of(validate(&e, Some(8191))),
            "embedder.max_tokens_per_request"
        );
        assert!(validate(&e, Some(512)).is_ok());
    }

    #[test]
    fn price_must_be_a_non_negative_number() {
        let mut e = openai();
        e.price_per_million_tokens = -1.0;
        assert_eq!(
            key_of(validate(&e, None)),
            "embedder.price_per_million_tokens"
        );
        e.price_per_million_tokens = 0.02;
        assert!(validate(&e, None).is_ok());
    }
}
