//! The response cache's key: a SHA-256 of who may share the entry (the scope), the
//! endpoint, the model the client asked for, and the request body in canonical form —
//! object keys sorted, whitespace dropped — without the fields that do not change the
//! answer. Also decides which requests are not cached at all.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::CachePolicy;

/// Top-level body fields left out of the key: how the answer is delivered (`stream`,
/// `stream_options`) and who asked (`user`, `metadata`), never what it says.
pub const IGNORED_FIELDS: [&str; 4] = ["stream", "stream_options", "user", "metadata"];

/// Why a request is not cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uncacheable {
    /// The body is larger than the policy's `max_entry_size`.
    TooLarge,
    /// Not a JSON object.
    NotAnObject,
    /// `n` above 1: several sampled answers.
    SeveralChoices,
    /// It samples (`temperature` not 0) and the policy does not cache that.
    Sampling,
    /// It offers a tool the operator flagged as having side effects.
    SideEffectTool(String),
}

/// What the key is made of besides the body.
pub struct KeyParts<'a> {
    /// Who may share the entry, e.g. `t:12` (a team) or `*` (everyone).
    pub scope: &'a str,
    /// The endpoint's name.
    pub endpoint: &'a str,
    /// The model as the client named it.
    pub model: &'a str,
    /// Whether the endpoint samples (chat, completions, responses; not embeddings).
    pub samples: bool,
}

/// The key of a cacheable request, or why it is not cacheable.
pub fn key(
    parts: &KeyParts<'_>,
    body: &[u8],
    policy: &CachePolicy,
) -> Result<[u8; 32], Uncacheable> {
    if body.len() > policy.max_entry_size {
        return Err(Uncacheable::TooLarge);
    }
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(body) else {
        return Err(Uncacheable::NotAnObject);
    };
    if fields
        .get("n")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1)
    {
        return Err(Uncacheable::SeveralChoices);
    }
    // OpenAI samples at temperature 1 when none is given.
    let deterministic = fields
        .get("temperature")
        .and_then(Value::as_f64)
        .is_some_and(|t| t == 0.0);
    if parts.samples && !deterministic && !policy.nondeterministic {
        return Err(Uncacheable::Sampling);
    }
    if let Some(tool) = side_effect_tool(&fields, &policy.uncached_tools) {
        return Err(Uncacheable::SideEffectTool(tool));
    }
    let mut hash = Sha256::new();
    for part in ["tollgate-cache-1", parts.scope, parts.endpoint, parts.model] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let mut canonical = Vec::with_capacity(body.len());
    canonical.push(b'{');
    let mut names: Vec<&String> = fields
        .keys()
        .filter(|k| !IGNORED_FIELDS.contains(&k.as_str()))
        .collect();
    names.sort_unstable();
    for (i, name) in names.into_iter().enumerate() {
        if i > 0 {
            canonical.push(b',');
        }
        write_string(name, &mut canonical);
        canonical.push(b':');
        if let Some(value) = fields.get(name) {
            write_canonical(value, &mut canonical);
        }
    }
    canonical.push(b'}');
    hash.update(&canonical);
    Ok(hash.finalize().into())
}

/// The first offered tool (`tools[].function.name`, or `tools[].name` in the Responses
/// API) that the operator flagged.
fn side_effect_tool(fields: &serde_json::Map<String, Value>, flagged: &[String]) -> Option<String> {
    if flagged.is_empty() {
        return None;
    }
    fields
        .get("tools")?
        .as_array()?
        .iter()
        .filter_map(|tool| {
            tool.pointer("/function/name")
                .or_else(|| tool.get("name"))
                .and_then(Value::as_str)
        })
        .find(|name| flagged.iter().any(|f| f == name))
        .map(str::to_string)
}

/// JSON with object keys sorted and no whitespace, whatever order the client wrote.
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (name, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(name, out);
                out.push(b':');
                write_canonical(value, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => {
            // Writing a scalar into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut *out, scalar);
        }
    }
}

fn write_string(text: &str, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(&mut *out, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CachePolicy {
        CachePolicy {
            enabled: true,
            uncached_tools: vec!["send_email".into()],
            ..CachePolicy::default()
        }
    }

    const CHAT: KeyParts<'static> = KeyParts {
        scope: "t:1",
        endpoint: "chat_completions",
        model: "gpt-4o-mini",
        samples: true,
    };

    fn key_of(body: &str) -> Result<[u8; 32], Uncacheable> {
        key(&CHAT, body.as_bytes(), &policy())
    }

    #[test]
    fn order_whitespace_and_delivery_fields_do_not_change_the_key() {
        let a =
            key_of(r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#);
        let b = key_of(
            r#"{ "messages": [ { "content": "hi", "role": "user" } ],
                 "temperature": 0, "model": "m", "stream": true,
                 "stream_options": {"include_usage": true}, "user": "u-7",
                 "metadata": {"run": "3"} }"#,
        );
        assert!(a.is_ok());
        assert_eq!(a, b);
    }

    #[test]
    fn fields_that_change_the_answer_change_the_key() {
        let base =
            key_of(r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi"}]}"#);
        for changed in [
            r#"{"model":"m","temperature":0,"messages":[{"role":"user","content":"hi!"}]}"#,
            r#"{"model":"m","temperature":0,"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","temperature":0,"seed":1,"messages":[{"role":"user","content":"hi"}]}"#,
            r#"{"model":"m","temperature":0,"messages":[{"role":"system","content":"hi"}]}"#,
        ] {
            assert_ne!(base, key_of(changed), "{changed}");
        }
        let body = br#"{"model":"m","temperature":0,"messages":[]}"#;
        let other_scope = KeyParts {
            scope: "t:2",
            ..CHAT
        };
        let other_model = KeyParts {
            model: "gpt-4o",
            ..CHAT
        };
        let other_endpoint = KeyParts {
            endpoint: "completions",
            ..CHAT
        };
        let keys: Vec<_> = [CHAT, other_scope, other_model, other_endpoint]
            .iter()
            .map(|p| key(p, body, &policy()).unwrap())
            .collect();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn sampling_several_choices_flagged_tools_and_size_are_not_cached() {
        assert_eq!(key_of(r#"{"messages":[]}"#), Err(Uncacheable::Sampling));
        assert_eq!(
            key_of(r#"{"temperature":0.7,"messages":[]}"#),
            Err(Uncacheable::Sampling)
        );
        assert_eq!(
            key_of(r#"{"temperature":0,"n":2,"messages":[]}"#),
            Err(Uncacheable::SeveralChoices)
        );
        assert_eq!(
            key_of(
                r#"{"temperature":0,"tools":[{"type":"function","function":{"name":"send_email"}}]}"#
            ),
            Err(Uncacheable::SideEffectTool("send_email".into()))
        );
        assert!(
            key_of(
                r#"{"temperature":0,"tools":[{"type":"function","function":{"name":"lookup"}}]}"#
            )
            .is_ok()
        );
        assert_eq!(key_of("[1]"), Err(Uncacheable::NotAnObject));
        let small = CachePolicy {
            max_entry_size: 10,
            ..policy()
        };
        assert_eq!(
            key(&CHAT, br#"{"temperature":0,"messages":[]}"#, &small),
            Err(Uncacheable::TooLarge)
        );
        // Sampling is cached when the policy says so, and embeddings never sample.
        let sampled = CachePolicy {
            nondeterministic: true,
            ..policy()
        };
        assert!(key(&CHAT, br#"{"messages":[]}"#, &sampled).is_ok());
        let embed = KeyParts {
            endpoint: "embeddings",
            samples: false,
            ..CHAT
        };
        assert!(key(&embed, br#"{"input":"x","model":"e"}"#, &policy()).is_ok());
    }
}
