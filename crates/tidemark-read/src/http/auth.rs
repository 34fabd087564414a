//! Bearer-token authentication: the token is kept only as its SHA-256 digest, compared in
//! constant time, and never logged (its `Debug` is redacted).

use super::error::ApiError;
use super::AppState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use sha2::{Digest, Sha256};
use std::path::Path;
use tidemark_core::config::ServeConfig;

/// The expected bearer token (its digest).
#[derive(Clone)]
pub struct Token([u8; 32]);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from its secret text (surrounding whitespace ignored).
    pub fn new(secret: &str) -> Option<Token> {
        let secret = secret.trim();
        (!secret.is_empty()).then(|| Token(Sha256::digest(secret.as_bytes()).into()))
    }

    /// Constant-time comparison (of digests, so the length of the secret does not leak).
    pub fn verify(&self, presented: &str) -> bool {
        let got: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        got.iter()
            .zip(self.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The token configured in `[serve]`: the variable named by `token_env` or the file
    /// `token_file`; `None` when neither is set. Errors name the key, never the value.
    pub fn from_config(cfg: &ServeConfig) -> Result<Option<Token>, String> {
        if !cfg.token_env.trim().is_empty() {
            let name = cfg.token_env.trim();
            let value = std::env::var(name).unwrap_or_default();
            return Token::new(&value).map(Some).ok_or_else(|| {
                format!("serve.token_env names `{name}`, but that variable is unset or empty")
            });
        }
        match &cfg.token_file {
            None => Ok(None),
            Some(path) => read_file(path).map(Some),
        }
    }
}

fn read_file(path: &Path) -> Result<Token, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read serve.token_file {}: {e}", path.display()))?;
    Token::new(&text).ok_or_else(|| format!("serve.token_file {} is empty", path.display()))
}

/// Middleware: 401 unless the request carries `Authorization: Bearer <token>`.
pub(super) async fn require_token(
    State(st): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = &st.token else {
        return Ok(next.run(req).await);
    };
    let presented = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        None => Err(ApiError::unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>`",
        )),
        Some(p) if !token.verify(p.trim()) => Err(ApiError::unauthorized("invalid bearer token")),
        Some(_) => Ok(next.run(req).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_same_secret_and_never_shows_it() {
        let t = Token::new(" s3cret\n").unwrap();
        assert!(t.verify("s3cret"));
        assert!(!t.verify("s3cret2"));
        assert!(!t.verify(""));
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(Token::new("  ").is_none());
    }

    #[test]
    fn config_sources() {
        let mut cfg = ServeConfig::default();
        assert!(Token::from_config(&cfg).unwrap().is_none());
        cfg.token_env = "TIDEMARK_TEST_SURELY_UNSET_TOKEN".into();
        let err = Token::from_config(&cfg).unwrap_err();
        assert!(
            err.contains("serve.token_env") && err.contains("unset"),
            "{err}"
        );
        cfg.token_env.clear();
        let dir = std::env::temp_dir().join(format!("tm-token-{}", std::process::id()));
        std::fs::write(&dir, "file-secret\n").unwrap();
        cfg.token_file = Some(dir.clone());
        assert!(Token::from_config(&cfg)
            .unwrap()
            .unwrap()
            .verify("file-secret"));
        std::fs::remove_file(&dir).unwrap();
        let err = Token::from_config(&cfg).unwrap_err();
        assert!(
            err.contains("serve.token_file") && !err.contains("file-secret"),
            "{err}"
        );
    }
}
