//! The `[serve]` section: the HTTP read/write API of `tidemark serve` (its address, where the
//! bearer token comes from, and the request limits). The token itself is never in the file.

use super::{invalid, ConfigError};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address to listen on; loopback by default. Any other address needs a token.
    pub addr: String,
    /// Name of an environment variable holding the bearer token (never the token itself).
    pub token_env: String,
    /// Alternatively, a file holding the bearer token (e.g. a mounted secret).
    pub token_file: Option<PathBuf>,
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Largest `k` a search may ask for (400 above it).
    pub max_k: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            addr: "127.0.0.1:8471".into(),
            token_env: String::new(),
            token_file: None,
            max_body_bytes: 2 << 20,
            max_k: 100,
        }
    }
}

impl ServeConfig {
    /// True when a token source is configured (the token is read at start-up).
    pub fn has_token_source(&self) -> bool {
        !self.token_env.trim().is_empty() || self.token_file.is_some()
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let addr: SocketAddr = self.addr.parse().map_err(|_| {
            invalid(
                "serve.addr",
                format!("`{}` is not an address like 127.0.0.1:8471", self.addr),
            )
        })?;
        if !self.token_env.trim().is_empty() && self.token_file.is_some() {
            return Err(invalid(
                "serve.token_file",
                "set either serve.token_env or serve.token_file, not both",
            ));
        }
        if !addr.ip().is_loopback() && !self.has_token_source() {
            return Err(invalid(
                "serve.addr",
                format!(
                    "`{addr}` is not a loopback address, so a bearer token is required: \
                     set serve.token_env or serve.token_file"
                ),
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(invalid("serve.max_body_bytes", "must be at least 1024"));
        }
        if !(1..=10_000).contains(&self.max_k) {
            return Err(invalid("serve.max_k", "must be between 1 and 10000"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    fn check(toml: &str) -> String {
        Config::from_toml_with_env(toml, |_| None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn serve_section_is_validated_naming_the_key() {
        assert_eq!(check(""), "");
        assert!(check("[serve]\naddr = \"nowhere\"\n").contains("`serve.addr`"));
        let open = check("[serve]\naddr = \"0.0.0.0:8471\"\n");
        assert!(
            open.contains("`serve.addr`") && open.contains("token"),
            "{open}"
        );
        assert_eq!(
            check("[serve]\naddr = \"0.0.0.0:8471\"\ntoken_env = \"TM_TOKEN\"\n"),
            ""
        );
        assert!(
            check("[serve]\ntoken_env = \"A\"\ntoken_file = \"/x\"\n").contains("serve.token_file")
        );
        assert!(check("[serve]\nmax_k = 0\n").contains("`serve.max_k`"));
        assert!(check("[serve]\nmax_body_bytes = 10\n").contains("`serve.max_body_bytes`"));
    }
}
