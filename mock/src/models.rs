//! `GET /v1/models` and `GET /v1/models/{id}`: a fixed catalogue, serialised once at start-up.

use bytes::Bytes;
use serde::Serialize;

/// Ids a client is likely to ask for. Chat and the other endpoints accept any model name.
pub const MODEL_IDS: [&str; 8] = [
    "gpt-4o-mini",
    "gpt-4o",
    "gpt-4.1-mini",
    "gpt-4.1",
    "o4-mini",
    "gpt-3.5-turbo-instruct",
    "text-embedding-3-small",
    "text-embedding-3-large",
];

/// A fixed date (2024-05-13) so the catalogue is byte-for-byte stable across runs.
const CREATED: u64 = 1_715_558_400;

#[derive(Serialize)]
struct Model<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct List<'a> {
    object: &'static str,
    data: Vec<Model<'a>>,
}

fn model(id: &str) -> Model<'_> {
    Model {
        id,
        object: "model",
        created: CREATED,
        owned_by: "tollgate-mock",
    }
}

pub fn list_body() -> Bytes {
    let list = List {
        object: "list",
        data: MODEL_IDS.iter().map(|id| model(id)).collect(),
    };
    Bytes::from(serde_json::to_vec(&list).unwrap_or_default())
}

/// The catalogue entry for `id`, or None (the caller answers 404 `model_not_found`).
pub fn one_body(id: &str) -> Option<Bytes> {
    MODEL_IDS
        .contains(&id)
        .then(|| Bytes::from(serde_json::to_vec(&model(id)).unwrap_or_default()))
}
