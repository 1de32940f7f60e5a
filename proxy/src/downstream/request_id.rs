//! The id every response carries in `x-request-id`.

use pingora::http::RequestHeader;

/// The client's `x-request-id` when it is a sane token, else a new one.
pub fn request_id(req: &RequestHeader) -> String {
    if let Some(id) = req
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        && (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return id.to_string();
    }
    new_request_id()
}

/// A fresh request id.
pub fn new_request_id() -> String {
    format!("req_{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}
