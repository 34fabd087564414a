//! Which legacy Chroma collection holds a MongoDB collection's vectors. Rules, in order:
//!
//! 1. an entry of `collection_aliases` whose `_id` (the family) is the collection's name, or
//!    the name without its agent prefix, points at an existing Chroma collection (`target`);
//! 2. a Chroma collection of exactly the same name (names are case-sensitive: `Duck_x` and
//!    `duck_x` are different collections and never match each other);
//! 3. a versioned collection `<family>__<version>__<driver>__<fn>` whose family is the name or
//!    the name without its prefix (several versions: the match is marked for a person);
//! 4. for a doubled prefix (`duck_duck_discord_messages`), the same rules on the name with the
//!    prefix once (`duck_discord_messages`).
//!
//! A Chroma collection whose name differs only in case is reported as a near miss, not matched.

use serde::Serialize;

/// An entry of the legacy `collection_aliases` registry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alias {
    pub family: String,
    pub target: String,
    pub embed: Option<EmbedInfo>,
}

/// What a legacy collection says about the model that made its vectors.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct EmbedInfo {
    pub driver: Option<String>,
    /// The model (`fn` in the legacy registry), e.g. `nomic-embed-text`.
    pub model: Option<String>,
    pub dims: Option<usize>,
    pub version: Option<String>,
}

/// `<family>__<version>__<driver>__<fn>` taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedName {
    pub family: String,
    pub version: String,
    pub driver: String,
    pub model: String,
}

/// Parses a versioned collection name; `None` unless it has exactly four non-empty parts.
pub fn parse_versioned(name: &str) -> Option<VersionedName> {
    let parts: Vec<&str> = name.split("__").collect();
    match parts.as_slice() {
        [f, v, d, m] if parts.iter().all(|p| !p.is_empty()) => Some(VersionedName {
            family: f.to_string(),
            version: v.to_string(),
            driver: d.to_string(),
            model: m.to_string(),
        }),
        _ => None,
    }
}

/// The agent prefix of a collection name (`duck` in `duck_transcripts`), if any.
pub fn prefix_of(name: &str) -> Option<&str> {
    name.split_once('_')
        .map(|(p, _)| p)
        .filter(|p| !p.is_empty())
}

/// `duck_duck_x` -> `duck_x` (the prefix compared case-sensitively); `None` if not doubled.
pub fn undoubled(name: &str) -> Option<String> {
    let p = prefix_of(name)?;
    let rest = &name[p.len() + 1..];
    let again = format!("{p}_");
    rest.starts_with(&again).then(|| rest.to_string())
}

/// The name without its agent prefix (`transcripts`), if it has one.
pub fn unprefixed(name: &str) -> Option<&str> {
    let p = prefix_of(name)?;
    let rest = &name[p.len() + 1..];
    (!rest.is_empty()).then_some(rest)
}

/// How a match was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchRule {
    Alias,
    SameName,
    Versioned,
    DoublePrefix,
}

/// The Chroma collection found for a MongoDB collection.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChromaMatch {
    pub chroma: String,
    pub rule: MatchRule,
    /// Other collections that fit as well (a person should choose).
    pub others: Vec<String>,
    /// The alias entry used, if any.
    pub alias: Option<Alias>,
}

/// The result of matching one collection: the match (if any) and notes for a person.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MatchOutcome {
    pub found: Option<ChromaMatch>,
    pub notes: Vec<String>,
}

fn families(name: &str) -> Vec<&str> {
    let mut v = vec![name];
    if let Some(u) = unprefixed(name) {
        v.push(u);
    }
    v
}

fn match_direct(name: &str, chroma: &[String], aliases: &[Alias]) -> Option<ChromaMatch> {
    let fams = families(name);
    for fam in &fams {
        if let Some(a) = aliases.iter().find(|a| a.family == *fam) {
            if chroma.contains(&a.target) {
                return Some(ChromaMatch {
                    chroma: a.target.clone(),
                    rule: MatchRule::Alias,
                    others: Vec::new(),
                    alias: Some(a.clone()),
                });
            }
        }
    }
    if chroma.iter().any(|c| c == name) {
        return Some(ChromaMatch {
            chroma: name.to_string(),
            rule: MatchRule::SameName,
            others: Vec::new(),
            alias: None,
        });
    }
    let mut versioned: Vec<String> = chroma
        .iter()
        .filter(|c| parse_versioned(c).is_some_and(|v| fams.contains(&v.family.as_str())))
        .cloned()
        .collect();
    versioned.sort();
    let first = versioned.pop()?;
    Some(ChromaMatch {
        chroma: first,
        rule: MatchRule::Versioned,
        others: versioned,
        alias: None,
    })
}

/// Finds the Chroma collection of the MongoDB collection `name` among `chroma` (names).
pub fn match_collection(name: &str, chroma: &[String], aliases: &[Alias]) -> MatchOutcome {
    let mut out = MatchOutcome {
        found: match_direct(name, chroma, aliases),
        notes: Vec::new(),
    };
    if out.found.is_none() {
        if let Some(u) = undoubled(name) {
            if let Some(mut m) = match_direct(&u, chroma, aliases) {
                m.rule = MatchRule::DoublePrefix;
                out.notes.push(format!(
                    "`{name}` has a doubled prefix; matched through `{u}`"
                ));
                out.found = Some(m);
            }
        }
    }
    if let Some(m) = &out.found {
        if !m.others.is_empty() {
            out.notes.push(format!(
                "several versioned collections fit ({}, {}); the newest name was chosen: check it",
                m.chroma,
                m.others.join(", ")
            ));
        }
    }
    for c in chroma {
        let same_but_case = c != name && c.eq_ignore_ascii_case(name);
        if same_but_case && out.found.as_ref().is_none_or(|m| m.chroma != *c) {
            out.notes.push(format!(
                "Chroma collection `{c}` differs from `{name}` only in case: not matched (names are case-sensitive)"
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn versioned_names_parse() {
        let v = parse_versioned("repo_files__dev__ollama__nomic-embed-text").unwrap();
        assert_eq!(v.family, "repo_files");
        assert_eq!(v.version, "dev");
        assert_eq!(v.driver, "ollama");
        assert_eq!(v.model, "nomic-embed-text");
        assert!(parse_versioned("a__b__c").is_none());
        assert!(parse_versioned("a__b____d").is_none());
        assert!(parse_versioned("duck_transcripts").is_none());
    }

    #[test]
    fn prefixes() {
        assert_eq!(prefix_of("duck_transcripts"), Some("duck"));
        assert_eq!(unprefixed("duck_transcripts"), Some("transcripts"));
        assert_eq!(
            undoubled("duck_duck_discord_messages").as_deref(),
            Some("duck_discord_messages")
        );
        assert_eq!(undoubled("duck_discord_messages"), None);
        assert_eq!(undoubled("Duck_duck_x"), None, "prefix compared with case");
        assert_eq!(prefix_of("kanban"), None);
    }

    #[test]
    fn same_name_is_case_sensitive() {
        let chroma = names(&["duck_sessionStore"]);
        let m = match_collection("duck_sessionStore", &chroma, &[]);
        assert_eq!(m.found.unwrap().rule, MatchRule::SameName);
        let m = match_collection("Duck_sessionStore", &chroma, &[]);
        assert!(m.found.is_none());
        assert!(m.notes[0].contains("only in case"), "{:?}", m.notes);
    }

    #[test]
    fn alias_wins_over_same_name() {
        let chroma = names(&["duck_agent_messages", "agent_messages__v2__hash__hash-16"]);
        let aliases = vec![Alias {
            family: "duck_agent_messages".into(),
            target: "agent_messages__v2__hash__hash-16".into(),
            embed: None,
        }];
        let m = match_collection("duck_agent_messages", &chroma, &aliases)
            .found
            .unwrap();
        assert_eq!(m.rule, MatchRule::Alias);
        assert_eq!(m.chroma, "agent_messages__v2__hash__hash-16");
    }

    #[test]
    fn alias_by_unprefixed_family_and_missing_target_falls_through() {
        let chroma = names(&["kb__v1__ollama__nomic-embed-text", "duck_kb"]);
        let aliases = vec![Alias {
            family: "kb".into(),
            target: "kb__v1__ollama__nomic-embed-text".into(),
            embed: None,
        }];
        let m = match_collection("duck_kb", &chroma, &aliases)
            .found
            .unwrap();
        assert_eq!(m.rule, MatchRule::Alias);
        let gone = vec![Alias {
            family: "kb".into(),
            target: "deleted_collection".into(),
            embed: None,
        }];
        let m = match_collection("duck_kb", &chroma, &gone).found.unwrap();
        assert_eq!(m.rule, MatchRule::SameName);
    }

    #[test]
    fn versioned_by_family_and_several_versions_flagged() {
        let chroma = names(&[
            "repo_files__dev__ollama__nomic-embed-text",
            "repo_files__v2__ollama__nomic-embed-text",
            "other__v1__x__y",
        ]);
        let m = match_collection("duck_repo_files", &chroma, &[]);
        let f = m.found.clone().unwrap();
        assert_eq!(f.rule, MatchRule::Versioned);
        assert_eq!(f.chroma, "repo_files__v2__ollama__nomic-embed-text");
        assert_eq!(f.others.len(), 1);
        assert!(m.notes.iter().any(|n| n.contains("several")), "{m:?}");
    }

    #[test]
    fn doubled_prefix_matches_through_single_prefix() {
        let chroma = names(&["duck_discord_messages"]);
        let m = match_collection("duck_duck_discord_messages", &chroma, &[]);
        let f = m.found.unwrap();
        assert_eq!(f.rule, MatchRule::DoublePrefix);
        assert_eq!(f.chroma, "duck_discord_messages");
        // The doubled name itself wins when it exists.
        let chroma = names(&["duck_discord_messages", "duck_duck_discord_messages"]);
        let m = match_collection("duck_duck_discord_messages", &chroma, &[]);
        assert_eq!(m.found.unwrap().rule, MatchRule::SameName);
    }

    #[test]
    fn nothing_fits() {
        let m = match_collection("duck_kanban", &names(&["duck_transcripts"]), &[]);
        assert!(m.found.is_none());
        assert!(m.notes.is_empty());
    }
}
