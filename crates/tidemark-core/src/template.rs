//! Embedding templates: the text each chunk (or each unchunked document) embeds, e.g.
//! `"{type}: {metadata.title}\n\n{content}"`. Fields: `{content}` (the chunk's text),
//! `{type}`, `{contentId}` and `{metadata.<path>}` (a dotted path into the document's
//! metadata; missing or non-primitive values render empty). `{{` and `}}` are literal braces.
//! An unknown field is an error naming it, found when the configuration is read.

use crate::contract::DocumentRecord;
use bson::{Bson, Document};

/// The default template: the content alone (what tidemark embedded before templates).
pub const DEFAULT_TEMPLATE: &str = "{content}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Content,
    Type,
    ContentId,
    Metadata(Vec<String>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

fn field(name: &str) -> Result<Part, String> {
    match name {
        "content" => Ok(Part::Content),
        "type" => Ok(Part::Type),
        "contentId" => Ok(Part::ContentId),
        _ => match name.strip_prefix("metadata.") {
            Some(path) if !path.is_empty() && path.split('.').all(|s| !s.is_empty()) => {
                Ok(Part::Metadata(path.split('.').map(str::to_string).collect()))
            }
            _ => Err(format!(
                "unknown field `{{{name}}}` (known: {{content}}, {{type}}, {{contentId}}, {{metadata.<key>}})"
            )),
        },
    }
}

impl Template {
    /// Parses `source`; the error names the unknown field or the unclosed brace.
    pub fn parse(source: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for c in chars.by_ref() {
                        if c == '}' {
                            closed = true;
                            break;
                        }
                        name.push(c);
                    }
                    if !closed {
                        return Err(format!("unclosed `{{` before `{name}`"));
                    }
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(field(name.trim())?);
                }
                '}' => return Err("a `}` without its `{` (write `}}` for a literal brace)".into()),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        if !parts.contains(&Part::Content) {
            return Err("the template must contain `{content}`".into());
        }
        Ok(Template {
            source: source.to_string(),
            parts,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// True for `{content}` alone: the embedded text is the content itself.
    pub fn is_identity(&self) -> bool {
        self.parts == [Part::Content]
    }

    /// The text to embed for `content` (a chunk of `doc`, or its whole content).
    pub fn render(&self, doc: &DocumentRecord, content: &str) -> String {
        let mut out = String::with_capacity(content.len() + 64);
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Content => out.push_str(content),
                Part::Type => out.push_str(&doc.doc_type),
                Part::ContentId => out.push_str(&doc.content_id),
                Part::Metadata(path) => out.push_str(&lookup(&doc.metadata, path)),
            }
        }
        out
    }
}

/// A primitive metadata value at `path`, as text; empty when absent or not primitive.
fn lookup(meta: &Document, path: &[String]) -> String {
    let mut cur = meta;
    for (i, key) in path.iter().enumerate() {
        match cur.get(key) {
            Some(Bson::Document(d)) if i + 1 < path.len() => cur = d,
            Some(v) if i + 1 == path.len() => {
                return match v {
                    Bson::String(s) => s.clone(),
                    Bson::Int32(n) => n.to_string(),
                    Bson::Int64(n) => n.to_string(),
                    Bson::Double(f) => f.to_string(),
                    Bson::Boolean(b) => b.to_string(),
                    _ => String::new(),
                }
            }
            _ => return String::new(),
        }
    }
    String::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::{doc, oid::ObjectId, DateTime};

    fn record(meta: Document) -> DocumentRecord {
        DocumentRecord {
            id: ObjectId::new(),
            content_id: "manual-7".into(),
            doc_type: "manual".into(),
            content: "body".into(),
            metadata: meta,
            timestamp: DateTime::now(),
            version: 1,
            content_hash: crate::content_hash("body"),
            vector_id: None,
            indexed_version: None,
        }
    }

    #[test]
    fn renders_fields_and_nested_metadata() {
        let t = Template::parse("{type}: {metadata.title} ({metadata.a.b})\n\n{content}").unwrap();
        let d = record(doc! {"title": "Pumps", "a": {"b": 3}});
        assert_eq!(t.render(&d, "chunk"), "manual: Pumps (3)\n\nchunk");
        assert!(!t.is_identity());
    }

    #[test]
    fn a_missing_optional_field_renders_empty() {
        let t = Template::parse("{metadata.title}|{content}").unwrap();
        assert_eq!(t.render(&record(doc! {}), "x"), "|x");
        let t = Template::parse("{metadata.tags}|{content}").unwrap();
        assert_eq!(t.render(&record(doc! {"tags": ["a"]}), "x"), "|x");
    }

    #[test]
    fn unknown_fields_and_bad_braces_are_named() {
        let e = Template::parse("{titel}: {content}").unwrap_err();
        assert!(e.contains("`{titel}`"), "{e}");
        assert!(Template::parse("{metadata.}{content}").is_err());
        assert!(Template::parse("{content").unwrap_err().contains("unclosed"));
        assert!(Template::parse("{content} {content").is_err());
        assert!(Template::parse("a } {content}").is_err());
        let e = Template::parse("{type}").unwrap_err();
        assert!(e.contains("{content}"), "{e}");
    }

    #[test]
    fn braces_escape_and_identity_is_detected() {
        let t = Template::parse("{{x}} {contentId}: {content}").unwrap();
        assert_eq!(t.render(&record(doc! {}), "y"), "{x} manual-7: y");
        assert!(Template::parse(DEFAULT_TEMPLATE).unwrap().is_identity());
    }
}
