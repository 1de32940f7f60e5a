//! Error bodies in OpenAI's shape `{"error":{"message","type","param","code"}}` (and Azure's
//! gateway shape `{"error":{"code","message"}}`), including the ones injected by `status=`.

use std::borrow::Cow;

use axum::http::StatusCode;
use bytes::Bytes;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    /// OpenAI's `type`.
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
    /// Azure's front door answers auth and routing failures in its own shape.
    pub azure_shape: bool,
    /// Sent as `retry-after` (seconds).
    pub retry_after: Option<u32>,
}

const INVALID_REQUEST: &str = "invalid_request_error";

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            azure_shape: false,
            retry_after: None,
        }
    }

    fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, INVALID_REQUEST, message)
    }

    /// A body that failed to parse: syntax errors get OpenAI's wording, type errors serde's.
    pub fn from_json(e: &serde_json::Error) -> Self {
        if e.is_syntax() || e.is_eof() {
            Self::bad_request(
                "We could not parse the JSON body of your request. (HINT: This likely means you \
                 aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, \
                 but what was sent was not valid JSON.)",
            )
        } else {
            Self::bad_request(format!("Invalid request body: {e}"))
        }
    }

    pub fn missing(param: &'static str) -> Self {
        let message = if param == "model" {
            Cow::Borrowed("you must provide a model parameter")
        } else {
            Cow::Owned(format!("Missing required parameter: '{param}'."))
        };
        Self::bad_request(message).param(param)
    }

    pub fn invalid(param: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::bad_request(message).param(param)
    }

    pub fn directive(message: String) -> Self {
        Self::bad_request(message).code("invalid_mock_directive")
    }

    pub fn unauthorized(provided: Option<&str>) -> Self {
        let message = match provided {
            None => Cow::Borrowed(
                "You didn't provide an API key. You need to provide your API key in an \
                 Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            ),
            Some(key) => Cow::Owned(format!(
                "Incorrect API key provided: {}. Check the key configured for this upstream.",
                mask(key)
            )),
        };
        Self::new(StatusCode::UNAUTHORIZED, INVALID_REQUEST, message).code("invalid_api_key")
    }

    pub fn azure_unauthorized() -> Self {
        ApiError {
            azure_shape: true,
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to \
                 provide a valid key for an active subscription and use a correct regional API \
                 endpoint for your resource.",
            )
        }
    }

    pub fn azure_not_found() -> Self {
        ApiError {
            azure_shape: true,
            ..Self::new(StatusCode::NOT_FOUND, "", "Resource not found")
        }
    }

    pub fn unknown_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            format!("Invalid URL ({method} {path})"),
        )
    }

    pub fn method_not_allowed(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            INVALID_REQUEST,
            format!("Invalid method for URL ({method} {path})"),
        )
    }

    pub fn model_not_found(model: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            INVALID_REQUEST,
            format!("The model `{model}` does not exist or you do not have access to it."),
        )
        .code("model_not_found")
    }

    pub fn body_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            format!("Request body too large: the mock accepts up to {limit} bytes."),
        )
    }

    /// The error a `status=<code>` directive asks for, shaped like OpenAI's own for that status.
    pub fn injected(code: u16, model: &str, retry_after: Option<u32>) -> Self {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let tag = format!("(injected by tollgate-mock: status={code})");
        let mut e = match code {
            401 => Self::unauthorized(Some("sk-mock-injected")),
            403 => Self::new(
                status,
                INVALID_REQUEST,
                format!("Country, region, or territory not supported. {tag}"),
            )
            .code("unsupported_country_region_territory"),
            404 => Self::model_not_found(model),
            429 => Self::new(
                status,
                "requests",
                format!(
                    "Rate limit reached for {model} in organization org-mock on requests per min \
                     (RPM): Limit 30000, Used 30000, Requested 1. Please try again in {}s. {tag}",
                    retry_after.unwrap_or(1)
                ),
            )
            .code("rate_limit_exceeded"),
            500 => Self::new(
                status,
                "server_error",
                format!(
                    "The server had an error while processing your request. Sorry about that! {tag}"
                ),
            ),
            502 => Self::new(status, "server_error", format!("Bad gateway. {tag}")),
            503 => Self::new(
                status,
                "server_error",
                format!("The engine is currently overloaded, please try again later. {tag}"),
            )
            .code("overloaded"),
            504 => Self::new(status, "server_error", format!("Request timed out. {tag}"))
                .code("timeout"),
            400..=499 => Self::bad_request(format!("Request rejected. {tag}")),
            _ => Self::new(status, "server_error", format!("Upstream failure. {tag}")),
        };
        e.status = status;
        e.retry_after = if code == 429 {
            Some(retry_after.unwrap_or(1))
        } else {
            retry_after
        };
        e
    }

    pub fn body(&self) -> Bytes {
        #[derive(Serialize)]
        struct OpenAi<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Azure<'a> {
            code: &'a str,
            message: &'a str,
        }
        #[derive(Serialize)]
        struct Envelope<T> {
            error: T,
        }
        let json = if self.azure_shape {
            serde_json::to_vec(&Envelope {
                error: Azure {
                    code: self.status.as_str(),
                    message: &self.message,
                },
            })
        } else {
            serde_json::to_vec(&Envelope {
                error: OpenAi {
                    message: &self.message,
                    kind: self.kind,
                    param: self.param,
                    code: self.code,
                },
            })
        };
        // Serialising these plain structs cannot fail; an empty body is the harmless fallback.
        Bytes::from(json.unwrap_or_default())
    }
}

/// `sk-abc…wxyz`, as OpenAI shows a wrong key: enough to tell keys apart, not enough to use one.
fn mask(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() <= 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}***{tail}")
}

/// The body a misbehaving load balancer sends instead of JSON.
pub const HTML_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let v: serde_json::Value =
            serde_json::from_slice(&ApiError::injected(429, "m", None).body()).unwrap();
        assert_eq!(v["error"]["type"], "requests");
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        assert!(v["error"]["param"].is_null());
        let v: serde_json::Value =
            serde_json::from_slice(&ApiError::azure_not_found().body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error": {"code": "404", "message": "Resource not found"}})
        );
        assert_eq!(mask("sk-abcdefghijkl"), "sk-***ijkl");
        assert_eq!(ApiError::injected(418, "m", None).status.as_u16(), 418);
        assert_eq!(ApiError::injected(401, "m", None).status.as_u16(), 401);
    }
}
