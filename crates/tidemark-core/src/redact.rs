//! Keeping secrets out of logs: URIs are shown with their password replaced.

/// Replaces the password in a `scheme://user:password@host/...` URI with `***`.
/// URIs without credentials are returned unchanged.
pub fn redact_uri(uri: &str) -> String {
    let Some(scheme_end) = uri.find("://") else {
        return uri.to_string();
    };
    let rest = &uri[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return uri.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    format!("{}://{}:***@{}", &uri[..scheme_end], user, &rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_password() {
        assert_eq!(
            redact_uri("mongodb://app:s3cret@db1:27017,db2/?replicaSet=rs"),
            "mongodb://app:***@db1:27017,db2/?replicaSet=rs"
        );
        assert_eq!(
            redact_uri("mongodb://127.0.0.1:27018/?replicaSet=secantus"),
            "mongodb://127.0.0.1:27018/?replicaSet=secantus"
        );
        assert!(!redact_uri("https://u:p@x@host/").contains("p@x"));
    }
}
