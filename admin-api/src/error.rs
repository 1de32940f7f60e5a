//! The admin API's one error type and its one mapping to HTTP: every failure answers with
//! `{"error": {"message", "type", "code", "param"}}`, the shape the proxy uses too.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tollgate_core::{secrets::SecretError, store::StoreError};
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No credential, or one that is malformed, forged, expired or for a disabled user.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0} not found")]
    NotFound(String),
    /// A field failed validation (422), named in `param`.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// The body is not JSON at all, or the request is otherwise malformed (400).
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Conflict { field: String, message: String },
    /// Too many attempts (logins): wait `retry_after` (429 with `retry-after`).
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after: std::time::Duration,
    },
    /// The request did not arrive in time (408).
    #[error("{0}")]
    RequestTimeout(String),
    /// Momentarily over capacity (the password-checking queue is full): 503, try again.
    #[error("{0}")]
    Busy(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The JSON error body.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, for people.
    pub message: String,
    /// The class of error: `authentication_error`, `permission_error`, `not_found_error`,
    /// `invalid_request_error`, `conflict_error`, `rate_limit_error` or `api_error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// A stable, machine-readable code.
    pub code: &'static str,
    /// The offending field, when there is one.
    pub param: Option<String>,
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::Forbidden(message.into())
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str, Option<String>) {
        match self {
            ApiError::Unauthenticated(_) => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "unauthenticated",
                None,
            ),
            ApiError::Forbidden(_) => {
                (StatusCode::FORBIDDEN, "permission_error", "forbidden", None)
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found_error", "not_found", None),
            ApiError::Invalid { field, .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                "validation_failed",
                Some(field.clone()),
            ),
            ApiError::BadRequest(_) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "bad_request",
                None,
            ),
            ApiError::Conflict { field, .. } => (
                StatusCode::CONFLICT,
                "conflict_error",
                "conflict",
                Some(field.clone()),
            ),
            ApiError::TooManyRequests { .. } => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "too_many_attempts",
                None,
            ),
            ApiError::RequestTimeout(_) => (
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                "request_timeout",
                None,
            ),
            ApiError::Busy(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "service_unavailable",
                None,
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
                None,
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, kind, code, param) = self.parts();
        let message = match &self {
            // Details of internal failures go to the log, not to the client.
            ApiError::Internal(detail) => {
                tracing::error!("admin API internal error: {detail}");
                "internal error; see the server log".to_string()
            }
            other => other.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                message,
                kind,
                code,
                param,
            },
        };
        let mut response = (status, Json(body)).into_response();
        let wait = match &self {
            ApiError::TooManyRequests { retry_after, .. } => Some(retry_after.as_secs().max(1)),
            ApiError::Busy(_) => Some(1),
            _ => None,
        };
        if let Some(secs) = wait {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Invalid { field, message } => ApiError::invalid(field, message),
            StoreError::Conflict { field, message } => ApiError::Conflict {
                field: field.to_string(),
                message,
            },
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::Secret(e @ (SecretError::Tampered | SecretError::UnknownKeyId(_))) => {
                ApiError::Internal(format!("stored secret cannot be decrypted: {e}"))
            }
            StoreError::Secret(e) => ApiError::Internal(e.to_string()),
            StoreError::Db(e) => ApiError::Internal(format!("database: {e}")),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::Internal(format!("database: {err}"))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
