//! The OpenAI API surface this gateway serves: which paths are proxied, which are
//! answered locally, and what each maps to upstream.

use http::Method;

use crate::error::GatewayError;

/// A proxied endpoint; the suffix is what follows the provider's base URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Embeddings,
    Responses,
    /// Anthropic's Messages API, for Anthropic SDKs and tools: forwarded as sent.
    Messages,
    /// Anthropic's `/v1/messages/count_tokens`.
    CountTokens,
}

impl Endpoint {
    /// Every endpoint, in the order of [`Endpoint::index`].
    pub const ALL: [Endpoint; 6] = [
        Endpoint::ChatCompletions,
        Endpoint::Completions,
        Endpoint::Embeddings,
        Endpoint::Responses,
        Endpoint::Messages,
        Endpoint::CountTokens,
    ];

    /// The position in [`Endpoint::ALL`] (for tables of per-endpoint values).
    pub fn index(self) -> usize {
        self as usize
    }

    /// Anthropic's own API (errors in Anthropic's shape, Anthropic deployments only).
    pub fn is_anthropic(self) -> bool {
        matches!(self, Endpoint::Messages | Endpoint::CountTokens)
    }

    pub fn suffix(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Responses => "/responses",
            Endpoint::Messages => "/v1/messages",
            Endpoint::CountTokens => "/v1/messages/count_tokens",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Proxy(Endpoint),
    ListModels,
    GetModel(String),
}

/// Classifies a request by method and path (query string excluded).
pub fn classify(method: &Method, path: &str) -> Result<Target, GatewayError> {
    let path = path.strip_suffix('/').unwrap_or(path);
    let target = match path {
        "/v1/chat/completions" => Target::Proxy(Endpoint::ChatCompletions),
        "/v1/completions" => Target::Proxy(Endpoint::Completions),
        "/v1/embeddings" => Target::Proxy(Endpoint::Embeddings),
        "/v1/responses" => Target::Proxy(Endpoint::Responses),
        "/v1/messages" => Target::Proxy(Endpoint::Messages),
        "/v1/messages/count_tokens" => Target::Proxy(Endpoint::CountTokens),
        "/v1/models" => Target::ListModels,
        _ => match path.strip_prefix("/v1/models/") {
            Some(id) if !id.is_empty() => Target::GetModel(percent_decode(id)),
            _ => {
                return Err(GatewayError::UnknownPath {
                    method: method.to_string(),
                    path: path.to_string(),
                });
            }
        },
    };
    let allowed = match target {
        Target::Proxy(_) => Method::POST,
        Target::ListModels | Target::GetModel(_) => Method::GET,
    };
    if *method != allowed {
        return Err(GatewayError::MethodNotAllowed {
            method: method.to_string(),
            path: path.to_string(),
            allowed: if allowed == Method::POST {
                "POST"
            } else {
                "GET"
            },
        });
    }
    Ok(target)
}

/// Model ids may contain `/` or `:` and arrive percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(hi << 4 | lo);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_paths_and_methods() {
        assert_eq!(
            classify(&Method::POST, "/v1/chat/completions"),
            Ok(Target::Proxy(Endpoint::ChatCompletions))
        );
        assert_eq!(
            classify(&Method::GET, "/v1/models/"),
            Ok(Target::ListModels)
        );
        assert_eq!(
            classify(&Method::GET, "/v1/models/org%2Fmodel"),
            Ok(Target::GetModel("org/model".into()))
        );
        assert!(matches!(
            classify(&Method::GET, "/v1/chat/completions"),
            Err(GatewayError::MethodNotAllowed { .. })
        ));
        assert!(matches!(
            classify(&Method::POST, "/v2/x"),
            Err(GatewayError::UnknownPath { .. })
        ));
        assert!(matches!(
            classify(&Method::GET, "/v1/models/"),
            Ok(Target::ListModels)
        ));
    }
}
