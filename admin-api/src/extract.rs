//! Request extractors whose failures are [`ApiError`]s: a JSON body or query string that
//! does not fit names the offending field (422); a body that is not JSON is a 400.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;

use crate::{error::ApiError, serve::BodyTimeout};

/// The body deadline when the server did not set one (a router served by other means).
const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest admin request body; the admin API takes small JSON documents only.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A JSON request body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v.split(';').next().unwrap_or_default().trim();
                mime.eq_ignore_ascii_case("application/json")
                    || mime.to_ascii_lowercase().ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::BadRequest(
                "the body must be JSON with `Content-Type: application/json`".into(),
            ));
        }
        let deadline = req
            .extensions()
            .get::<BodyTimeout>()
            .copied()
            .unwrap_or(BodyTimeout(DEFAULT_BODY_TIMEOUT));
        let bytes = tokio::time::timeout(deadline.0, Bytes::from_request(req, state))
            .await
            .map_err(|_| ApiError::from(deadline))?
            .map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
        if bytes.len() > MAX_BODY_BYTES {
            return Err(ApiError::BadRequest(format!(
                "the body is larger than {MAX_BODY_BYTES} bytes"
            )));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses JSON, naming the path of a value that does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize(&mut de) {
        Ok(value) => Ok(value),
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            if inner.is_syntax() || inner.is_eof() {
                Err(ApiError::BadRequest(format!(
                    "the body is not valid JSON: {inner}"
                )))
            } else {
                Err(field_error(&path, &inner.to_string()))
            }
        }
    }
}

/// A query string.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parse_query(parts.uri.query().unwrap_or_default()).map(QueryParams)
    }
}

/// Parses a query string, naming the parameter that does not fit.
pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        field_error(&path, &err.into_inner().to_string())
    })
}

/// A path parameter; one that does not parse (e.g. a non-numeric id) names nothing that
/// exists, so it is a 404 like an unknown id.
pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(PathParam(value)),
            Err(_) => Err(ApiError::NotFound(parts.uri.path().to_string())),
        }
    }
}

/// A 422 naming the field: the path when serde knows it, else the field a "missing field"
/// or "unknown field" message names.
fn field_error(path: &str, message: &str) -> ApiError {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|lead| message.split_once(lead))
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(name, _)| name.to_string());
    let field = match (path, named) {
        (".", Some(name)) | ("", Some(name)) => name,
        (".", None) | ("", None) => "body".to_string(),
        (p, Some(name)) if message.starts_with("missing field") => format!("{p}.{name}"),
        (p, _) => p.to_string(),
    };
    ApiError::invalid(field, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Sample {
        email: String,
        limits: Option<Limits>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Limits {
        rpm: u32,
    }

    fn field(result: Result<Sample, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    proptest::proptest! {
        #[test]
        fn no_body_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = parse_json::<Sample>(&bytes);
            let _ = parse_json::<crate::routes::keys::CreateKey>(&bytes);
            let _ = parse_json::<crate::routes::keys::UpdateKey>(&bytes);
        }

        #[test]
        fn no_query_panics_and_every_page_it_admits_can_be_fetched(
            query in "[a-z_=&%0-9.-]{0,80}",
            page in "-?[0-9]{0,25}",
            per_page in "-?[0-9]{0,25}",
        ) {
            for text in [query.clone(), format!("page={page}&per_page={per_page}&{query}")] {
                let _ = parse_query::<crate::routes::keys::KeyQuery>(&text);
                let _ = parse_query::<crate::routes::users::UserQuery>(&text);
                let _ = parse_query::<crate::routes::audit::AuditQuery>(&text);
                let _ = parse_query::<crate::routes::usage::UsageQuery>(&text);
                if let Ok(q) = parse_query::<crate::page::PageQuery>(&text)
                    && let Ok((page, per_page)) = q.resolve()
                {
                    // The paginator multiplies these: it must not overflow.
                    proptest::prop_assert!((page - 1).checked_mul(per_page).is_some_and(|o| o <= i64::MAX as u64));
                }
            }
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(field(parse_json(br#"{}"#)), "email");
        assert_eq!(field(parse_json(br#"{"email": 3}"#)), "email");
        assert_eq!(field(parse_json(br#"{"email": "a", "x": 1}"#)), "x");
        assert_eq!(
            field(parse_json(br#"{"email": "a", "limits": {"rpm": -1}}"#)),
            "limits.rpm"
        );
        assert!(matches!(
            parse_json::<Sample>(b"{not json"),
            Err(ApiError::BadRequest(_))
        ));
    }
}
