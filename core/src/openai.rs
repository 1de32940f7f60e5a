//! OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`, which every
//! OpenAI SDK parses and shows to the user.

use bytes::Bytes;
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Envelope<'a> {
    error: ErrorObject<'a>,
}

#[derive(Debug, Serialize)]
struct ErrorObject<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

/// Serialises an OpenAI-shaped error body.
pub fn error_body(message: &str, kind: &str, code: Option<&str>, param: Option<&str>) -> Bytes {
    let envelope = Envelope {
        error: ErrorObject {
            message,
            kind,
            param,
            code,
        },
    };
    // Serialising plain strings into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let body = error_body(
            "no such model \"x\"",
            "invalid_request_error",
            Some("model_not_found"),
            Some("model"),
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["message"], "no such model \"x\"");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "model_not_found");
        assert_eq!(v["error"]["param"], "model");
        let v: serde_json::Value =
            serde_json::from_slice(&error_body("m", "t", None, None)).unwrap();
        assert!(v["error"]["code"].is_null() && v["error"]["param"].is_null());
    }
}
