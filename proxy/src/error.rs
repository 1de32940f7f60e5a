//! Every error the gateway answers itself, mapped in one place to the status, OpenAI error
//! type and code that OpenAI SDKs turn into the right exception.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::StatusCode;
use tollgate_core::openai::error_body;

use crate::quota::{Dimension, Limits, Owner, Snapshot};

/// A quota refusal: which limit, when to retry, and the state for the headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub dimension: Dimension,
    /// Whose limit refused.
    pub owner: Owner,
    pub retry_after_ms: Option<u64>,
    pub snapshot: Snapshot,
    pub limits: Limits,
    pub resets_at: Option<DateTime<Utc>>,
}

fn rate_limit_message(r: &RateLimit) -> String {
    let (dimension, retry_after_ms, limits, resets_at, owner) = (
        r.dimension,
        r.retry_after_ms,
        &r.limits,
        r.resets_at.as_ref(),
        r.owner.described(),
    );
    let wait = retry_after_ms.map_or(String::new(), |ms| {
        format!(" Try again in {}.", crate::quota::headers::format_reset(ms))
    });
    match dimension {
        Dimension::Requests => format!(
            "Rate limit reached for {owner}: {} requests per minute.{wait}",
            limits.rpm.unwrap_or(0)
        ),
        Dimension::Tokens if retry_after_ms.is_none() => format!(
            "This request may use more tokens than the whole limit of {owner}, {} tokens per minute; lower max_tokens or shorten the prompt.",
            limits.tpm.unwrap_or(0)
        ),
        Dimension::Tokens => format!(
            "Rate limit reached for {owner}: {} tokens per minute.{wait}",
            limits.tpm.unwrap_or(0)
        ),
        Dimension::Concurrency => format!(
            "Too many concurrent requests for {owner} (limit {}).{wait}",
            limits.concurrency.unwrap_or(0)
        ),
        Dimension::Budget => {
            let budget = limits.budget.as_ref();
            let amount = budget.map_or(0, |b| b.limit_micro_usd);
            let resets = resets_at.map_or_else(
                || " It does not reset.".to_string(),
                |at| {
                    format!(
                        " It resets at {}.",
                        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    )
                },
            );
            format!(
                "The budget of {owner}, {}.{:06} USD{}, is used up.{resets}",
                amount / 1_000_000,
                amount % 1_000_000,
                match budget.map(|b| b.period) {
                    Some(crate::quota::Period::Day) => " per day",
                    Some(crate::quota::Period::Month) => " per month",
                    _ => "",
                }
            )
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error(
        "Invalid URL ({method} {path}): Tollgate serves /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, /v1/models and Anthropic's /v1/messages."
    )]
    UnknownPath { method: String, path: String },
    #[error("Method {method} is not allowed on {path}; use {allowed}.")]
    MethodNotAllowed {
        method: String,
        path: String,
        allowed: &'static str,
    },
    #[error(
        "You didn't provide an API key. Send it as `Authorization: Bearer <key>` or in the `x-api-key` header."
    )]
    MissingKey,
    #[error("Incorrect API key provided. Use a key issued by this Tollgate gateway.")]
    InvalidKey,
    #[error("Invalid token: {0}.")]
    InvalidToken(String),
    #[error("This API key ({0}) was revoked.")]
    KeyRevoked(String),
    #[error("This API key ({0}) has expired.")]
    KeyExpired(String),
    #[error(
        "This API key ({0}) was replaced by a rotation and its grace period is over; use the new key."
    )]
    KeyRotated(String),
    #[error("The user who owns this API key ({0}) is disabled.")]
    KeyOwnerDisabled(String),
    #[error("This API key may not use the model `{0}`.")]
    ModelNotAllowed(String),
    #[error("The key store is unavailable; try again shortly.")]
    KeyStoreUnavailable,
    #[error("{}", rate_limit_message(.0))]
    RateLimited(Box<RateLimit>),
    #[error(
        "The quota store is unavailable and this gateway is set to refuse requests then (quota.on_store_error: fail_closed); try again shortly."
    )]
    QuotaUnavailable,
    #[error(
        "Request body is {size} bytes, larger than the {limit}-byte limit of this gateway (server.max_body_size)."
    )]
    BodyTooLarge { size: usize, limit: usize },
    #[error("Chunked request bodies larger than 64 KiB need a Content-Length header.")]
    LengthRequired,
    #[error("We could not parse the JSON body of your request: {0}")]
    InvalidBody(String),
    #[error("You must provide a model parameter.")]
    MissingModel,
    #[error(
        "The model `{0}` does not exist or you do not have access to it. GET /v1/models lists the models this gateway serves."
    )]
    UnknownModel(String),
    #[error("The upstream for model `{model}` ({provider}) could not be reached: {detail}.")]
    UpstreamUnreachable {
        model: String,
        provider: String,
        detail: String,
    },
    #[error("The upstream for model `{model}` ({provider}) did not answer in time: {detail}.")]
    UpstreamTimeout {
        model: String,
        provider: String,
        detail: String,
    },
    #[error("The upstream for model `{model}` ({provider}) failed: {detail}.")]
    UpstreamFailed {
        model: String,
        provider: String,
        detail: String,
    },
    /// A retryable upstream answer whose retry found no deployment to take it after all:
    /// the client gets that answer's status (and requested pause), as SDKs expect.
    #[error(
        "The upstream for model `{model}` ({deployment}) answered HTTP {status}, and no other deployment could take the request."
    )]
    UpstreamAnswered {
        model: String,
        deployment: String,
        status: u16,
        retry_after: Option<std::time::Duration>,
    },
    #[error("Malformed HTTP request: {0}.")]
    BadRequest(String),
    /// A chat completion that cannot be translated for the model's Anthropic deployment.
    #[error("{message}")]
    UnsupportedParameter { param: String, message: String },
    #[error(
        "The model `{0}` is served by Anthropic, which this gateway reaches through /v1/chat/completions only."
    )]
    EndpointNotServed(String),
    #[error(
        "The model `{0}` has no Anthropic deployment: /v1/messages serves models whose deployments are all of kind anthropic."
    )]
    NotAnAnthropicModel(String),
    #[error(
        "The request {part} did not arrive within {} s (server.{part}_timeout); send the whole request promptly.",
        limit.as_secs_f64()
    )]
    RequestTimeout {
        /// `header` or `body`.
        part: &'static str,
        limit: std::time::Duration,
    },
    #[error(
        "The request headers are larger than the {limit}-byte limit of this gateway (server.max_header_size)."
    )]
    HeaderTooLarge { limit: usize },
    #[error("The request has more than {limit} header fields.")]
    TooManyHeaders { limit: usize },
    #[error(
        "The gateway has as many open connections as it accepts (server.max_connections); try again shortly."
    )]
    Overloaded,
    #[error(
        "Every deployment of the model `{model}` is cooling down after failures; try again in {} s.",
        retry_after.as_secs().max(1)
    )]
    NoHealthyDeployment {
        model: String,
        retry_after: std::time::Duration,
    },
    #[error(
        "This gateway replica is shutting down and takes no new requests; retry (another replica will answer)."
    )]
    ShuttingDown,
    #[error(
        "The gateway had an internal error while processing your request; the x-request-id response header identifies it in the gateway's logs."
    )]
    Internal,
}

/// `retry-after` in whole seconds (at least 1) and `retry-after-ms`.
fn retry_after_headers(pause: std::time::Duration) -> Vec<(&'static str, String)> {
    let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX).max(1);
    vec![
        ("retry-after", ms.div_ceil(1000).to_string()),
        ("retry-after-ms", ms.to_string()),
    ]
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        use GatewayError::*;
        match self {
            UnknownPath { .. } | UnknownModel(_) => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            MissingKey | InvalidKey | InvalidToken(_) | KeyRevoked(_) | KeyExpired(_)
            | KeyRotated(_) | KeyOwnerDisabled(_) => StatusCode::UNAUTHORIZED,
            ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            KeyStoreUnavailable | QuotaUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            LengthRequired => StatusCode::LENGTH_REQUIRED,
            RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            HeaderTooLarge { .. } | TooManyHeaders { .. } => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            Overloaded | NoHealthyDeployment { .. } | ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            InvalidBody(_)
            | MissingModel
            | BadRequest(_)
            | UnsupportedParameter { .. }
            | EndpointNotServed(_)
            | NotAnAnthropicModel(_) => StatusCode::BAD_REQUEST,
            UpstreamUnreachable { .. } | UpstreamFailed { .. } => StatusCode::BAD_GATEWAY,
            UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            UpstreamAnswered { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// OpenAI's `type` field.
    pub fn kind(&self) -> &'static str {
        use GatewayError::*;
        match self {
            UpstreamUnreachable { .. }
            | UpstreamTimeout { .. }
            | UpstreamFailed { .. }
            | KeyStoreUnavailable
            | QuotaUnavailable
            | Overloaded
            | NoHealthyDeployment { .. }
            | ShuttingDown
            | Internal => "server_error",
            ModelNotAllowed(_) => "permission_error",
            UpstreamAnswered { status: 429, .. } => "rate_limit_error",
            UpstreamAnswered { .. } => "server_error",
            RateLimited(r) if r.dimension == Dimension::Budget => "insufficient_quota",
            RateLimited(_) => "rate_limit_error",
            _ => "invalid_request_error",
        }
    }

    /// OpenAI's `code` field.
    pub fn code(&self) -> Option<&'static str> {
        use GatewayError::*;
        match self {
            UnknownPath { .. } => Some("unknown_url"),
            MethodNotAllowed { .. } => Some("method_not_allowed"),
            MissingKey => Some("missing_api_key"),
            InvalidKey => Some("invalid_api_key"),
            InvalidToken(_) => Some("invalid_token"),
            KeyRevoked(_) => Some("api_key_revoked"),
            KeyExpired(_) => Some("api_key_expired"),
            KeyRotated(_) => Some("api_key_rotated"),
            KeyOwnerDisabled(_) => Some("api_key_owner_disabled"),
            ModelNotAllowed(_) => Some("model_not_allowed"),
            KeyStoreUnavailable | QuotaUnavailable => Some("service_unavailable"),
            RateLimited(r) => Some(r.dimension.code()),
            BodyTooLarge { .. } => Some("request_too_large"),
            LengthRequired => Some("length_required"),
            RequestTimeout { .. } => Some("request_timeout"),
            HeaderTooLarge { .. } | TooManyHeaders { .. } => Some("request_header_too_large"),
            Overloaded => Some("server_overloaded"),
            ShuttingDown => Some("server_shutting_down"),
            NoHealthyDeployment { .. } => Some("no_healthy_deployment"),
            InvalidBody(_) => Some("invalid_json"),
            MissingModel => Some("missing_model"),
            UnknownModel(_) => Some("model_not_found"),
            UpstreamUnreachable { .. } => Some("upstream_unreachable"),
            UpstreamTimeout { .. } => Some("upstream_timeout"),
            UpstreamFailed { .. } | UpstreamAnswered { .. } => Some("upstream_error"),
            UnsupportedParameter { .. } => Some("unsupported_parameter"),
            EndpointNotServed(_) => Some("unsupported_endpoint"),
            NotAnAnthropicModel(_) => Some("model_not_found"),
            BadRequest(_) | Internal => None,
        }
    }

    pub fn param(&self) -> Option<&'static str> {
        match self {
            GatewayError::MissingModel
            | GatewayError::UnknownModel(_)
            | GatewayError::ModelNotAllowed(_) => Some("model"),
            _ => None,
        }
    }

    /// Whether an SDK retry could help; sent as `x-should-retry` so SDKs do not retry
    /// requests that will fail the same way again.
    pub fn should_retry(&self) -> bool {
        matches!(
            self,
            GatewayError::UpstreamUnreachable { .. }
                | GatewayError::UpstreamTimeout { .. }
                | GatewayError::UpstreamFailed { .. }
                | GatewayError::UpstreamAnswered { .. }
                | GatewayError::KeyStoreUnavailable
                | GatewayError::QuotaUnavailable
                | GatewayError::Overloaded
                | GatewayError::ShuttingDown
                | GatewayError::NoHealthyDeployment { .. }
                | GatewayError::Internal
        ) || matches!(
            self,
            GatewayError::RateLimited(r)
                if r.dimension != Dimension::Budget && r.retry_after_ms.is_some()
        )
    }

    /// Headers that go with the error: `retry-after` and the rate-limit state of a 429.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let r = match self {
            GatewayError::RateLimited(r) => r,
            GatewayError::Overloaded | GatewayError::ShuttingDown => {
                return vec![("retry-after", "1".to_string())];
            }
            GatewayError::NoHealthyDeployment { retry_after, .. } => {
                return retry_after_headers(*retry_after);
            }
            GatewayError::UpstreamAnswered { retry_after, .. } => {
                return retry_after.map(retry_after_headers).unwrap_or_default();
            }
            _ => return Vec::new(),
        };
        let mut headers = crate::quota::headers::rate_limit_headers(&r.snapshot);
        if let Some(ms) = r.retry_after_ms {
            headers.push(("retry-after", ms.div_ceil(1000).max(1).to_string()));
            headers.push(("retry-after-ms", ms.to_string()));
        }
        headers
    }

    pub fn body(&self) -> Bytes {
        let param = match self {
            GatewayError::UnsupportedParameter { param, .. } if !param.is_empty() => {
                Some(param.as_str())
            }
            _ => self.param(),
        };
        error_body(&self.to_string(), self.kind(), self.code(), param)
    }

    /// The error in Anthropic's shape, for the `/v1/messages` ingress:
    /// `{"type":"error","error":{"type","message"}}` with Anthropic's type for the status.
    pub fn anthropic_body(&self) -> Bytes {
        let kind = match self.status().as_u16() {
            400 | 408 | 411 | 431 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            504 => "timeout_error",
            _ => "api_error",
        };
        let body = serde_json::json!({
            "type": "error",
            "error": { "type": kind, "message": self.to_string() },
        });
        Bytes::from(body.to_string())
    }

    /// The error as a server-sent event, for failures after a stream has begun: the status
    /// is already sent, and OpenAI SDKs raise an `error` event as an API error.
    pub fn sse_event(&self, anthropic: bool) -> Bytes {
        let mut event = b"event: error\ndata: ".to_vec();
        event.extend_from_slice(&if anthropic {
            self.anthropic_body()
        } else {
            self.body()
        });
        event.extend_from_slice(b"\n\n");
        Bytes::from(event)
    }

    /// Maps a Pingora failure to the error the client gets; `None` when the client is gone.
    pub fn from_proxy_failure(
        e: &pingora::Error,
        model: &str,
        provider: &str,
    ) -> Option<GatewayError> {
        use pingora::{ErrorSource, ErrorType::*};
        let upstream = |detail: &str| (model.to_string(), provider.to_string(), detail.to_string());
        let cause = e.root_cause().to_string();
        match (e.esource(), e.etype()) {
            (_, HTTPStatus(code)) if *code == 400 => Some(GatewayError::BadRequest(cause)),
            (
                ErrorSource::Downstream,
                ReadError | WriteError | ConnectionClosed | ReadTimedout | WriteTimedout,
            ) => None,
            (ErrorSource::Downstream, _) => {
                Some(GatewayError::BadRequest(e.etype().as_str().to_string()))
            }
            (_, ConnectTimedout | TLSHandshakeTimedout) => {
                let (model, provider, detail) = upstream("connecting timed out");
                Some(GatewayError::UpstreamTimeout {
                    model,
                    provider,
                    detail,
                })
            }
            (_, ReadTimedout | WriteTimedout) => {
                let (model, provider, detail) =
                    upstream("no response within the configured timeout");
                Some(GatewayError::UpstreamTimeout {
                    model,
                    provider,
                    detail,
                })
            }
            (
                _,
                ConnectRefused | ConnectNoRoute | ConnectError | SocketError | BindError
                | ConnectProxyFailure,
            ) => {
                let (model, provider, detail) =
                    upstream(&format!("{} ({cause})", e.etype().as_str()));
                Some(GatewayError::UpstreamUnreachable {
                    model,
                    provider,
                    detail,
                })
            }
            (_, TLSHandshakeFailure | InvalidCert | HandshakeError | TLSWantX509Lookup) => {
                let (model, provider, detail) =
                    upstream(&format!("TLS handshake failed ({cause})"));
                Some(GatewayError::UpstreamUnreachable {
                    model,
                    provider,
                    detail,
                })
            }
            (ErrorSource::Upstream, ReadError | WriteError | ConnectionClosed) => {
                let (model, provider, detail) =
                    upstream("the connection closed before the response was complete");
                Some(GatewayError::UpstreamFailed {
                    model,
                    provider,
                    detail,
                })
            }
            (ErrorSource::Upstream, InvalidHTTPHeader | H1Error | H2Error | InvalidH2) => {
                let (model, provider, detail) = upstream("it sent an invalid HTTP response");
                Some(GatewayError::UpstreamFailed {
                    model,
                    provider,
                    detail,
                })
            }
            (ErrorSource::Upstream, _) => {
                let (model, provider, detail) = upstream(e.etype().as_str());
                Some(GatewayError::UpstreamFailed {
                    model,
                    provider,
                    detail,
                })
            }
            _ => Some(GatewayError::Internal),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_match_what_sdks_expect() {
        assert_eq!(GatewayError::MissingKey.status(), 401);
        assert_eq!(GatewayError::UnknownModel("x".into()).status(), 404);
        assert_eq!(GatewayError::InvalidBody("x".into()).status(), 400);
        assert_eq!(
            GatewayError::BodyTooLarge { size: 2, limit: 1 }.status(),
            413
        );
        let body: serde_json::Value =
            serde_json::from_slice(&GatewayError::UnknownModel("gpt-9".into()).body()).unwrap();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("`gpt-9`")
        );
    }
}
