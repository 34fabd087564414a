//! deploy/tidemark.example.toml parses, names every configuration key, and states the real
//! defaults (so the comments cannot drift from the code unnoticed).

use tidemark_core::Config;
use tidemark_e2e::repo_root;

#[test]
fn example_config_parses_and_covers_every_key_with_the_defaults() {
    let path = repo_root().join("deploy/tidemark.example.toml");
    let text = std::fs::read_to_string(&path).expect("deploy/tidemark.example.toml exists");
    let cfg = Config::from_toml_with_env(&text, |_| None).expect("example parses and validates");

    let file: toml::Table = text.parse().unwrap();
    let defaults = toml::Table::try_from(Config::default()).unwrap();
    for (section, keys) in &defaults {
        let keys = keys.as_table().unwrap();
        let in_file = file
            .get(section)
            .and_then(|s| s.as_table())
            .unwrap_or_else(|| panic!("section [{section}] missing"));
        for key in keys.keys() {
            assert!(
                in_file.contains_key(key),
                "key {section}.{key} missing from the example"
            );
            let line = format!("\n{key} = ");
            assert!(text.contains(&line), "{section}.{key}");
        }
    }
    // Optional keys without a default appear commented out.
    assert!(text.contains("# api_key_file = "));
    // Every key line is preceded by a comment line.
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.contains(" = ") && !l.starts_with('#') {
            assert!(lines[i - 1].starts_with('#'), "no comment above `{l}`");
        }
    }
    // The values shown are the defaults.
    assert_eq!(
        toml::to_string(&cfg).unwrap(),
        toml::to_string(&Config::default()).unwrap()
    );
}
