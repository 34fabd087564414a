use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

#[test]
fn empty_file_is_the_defaults() {
    let c = Config::from_toml_with_env("", no_env).unwrap();
    assert_eq!(c.mongodb.uri, DEFAULT_MONGODB_URI);
    assert_eq!(c.worker.batch_size, 128);
    assert_eq!(c.worker.batch_wait, Duration::from_millis(50));
}

#[test]
fn unknown_key_is_named() {
    let err = Config::from_toml_with_env("[worker]\nbatch_sise = 3\n", no_env).unwrap_err();
    assert!(err.to_string().contains("batch_sise"), "{err}");
}

#[test]
fn bad_duration_is_named() {
    let err = Config::from_toml_with_env("[worker]\nlease = \"soon\"\n", no_env).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("lease") && msg.contains("soon"), "{msg}");
}

#[test]
fn invalid_value_names_key() {
    let err = Config::from_toml_with_env("[worker]\nbatch_size = 0\n", no_env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config key `worker.batch_size`: must be at least 1"
    );
    let err = Config::from_toml_with_env("[mongodb]\nuri = \"http://x\"\n", no_env).unwrap_err();
    assert!(err.to_string().contains("mongodb.uri"));
    let err = Config::from_toml_with_env("[worker]\nvector_writes = 0\n", no_env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config key `worker.vector_writes`: must be between 1 and 64"
    );
    let err = Config::from_toml_with_env("[worker]\nconcurrency = 0\n", no_env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config key `worker.concurrency`: must be between 1 and 64"
    );
}

#[test]
fn batch_linger_is_bounded_by_the_lease() {
    let c = Config::from_toml_with_env("[worker]\nbatch_linger = \"0s\"\n", no_env).unwrap();
    assert_eq!(
        c.worker.batch_linger,
        Duration::ZERO,
        "0s turns lingering off"
    );
    let d = Config::from_toml_with_env("", no_env).unwrap();
    assert_eq!(d.worker.batch_linger, Duration::from_millis(200));
    let toml = "[worker]\nlease = \"4s\"\nbatch_linger = \"2s\"\n";
    let err = Config::from_toml_with_env(toml, no_env).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "config key `worker.batch_linger`: must be at most a quarter of worker.lease"
        ),
        "{err}"
    );
}

#[test]
fn env_overrides_file() {
    let env = |k: &str| match k {
        "MONGODB_URI" => Some("mongodb://h:1/?replicaSet=r".to_string()),
        "TIDEMARK_WORKER_BATCH_SIZE" => Some("128".to_string()),
        "TIDEMARK_WORKER_LEASE" => Some("5s".to_string()),
        _ => None,
    };
    let c = Config::from_toml_with_env("[worker]\nbatch_size = 3\n", env).unwrap();
    assert_eq!(c.mongodb.uri, "mongodb://h:1/?replicaSet=r");
    assert_eq!(c.worker.batch_size, 128);
    assert_eq!(c.worker.lease, Duration::from_secs(5));
}

#[test]
fn env_override_with_wrong_type_names_key() {
    let env = |k: &str| (k == "TIDEMARK_WORKER_BATCH_SIZE").then(|| "many".to_string());
    let err = Config::from_toml_with_env("", env).unwrap_err();
    assert!(err.to_string().contains("worker.batch_size"), "{err}");
}

#[test]
fn openai_needs_base_url() {
    let err =
        Config::from_toml_with_env("[embedder]\nprovider = \"openai\"\n", no_env).unwrap_err();
    assert!(err.to_string().contains("embedder.base_url"), "{err}");
}
