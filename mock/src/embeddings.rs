//! `POST /v1/embeddings` (and its Azure twin): unit-length vectors seeded by (model, input),
//! as JSON floats or base64 little-endian f32 (what the Python SDK asks for by default).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;

use crate::app::App;
use crate::errors::ApiError;
use crate::pipeline::{ApiRequest, Call, Endpoint};
use crate::prompt::{EmbeddingInput, JsonStr};
use crate::reply::{self, Ctx, Reply};
use crate::text::{hash_str, mix};

pub const DEFAULT_DIMENSIONS: u32 = 1536;
const MAX_DIMENSIONS: u32 = 8192;
/// OpenAI's per-request input limit.
const MAX_INPUTS: usize = 2048;

#[derive(Deserialize)]
pub struct EmbeddingRequest<'a> {
    #[serde(borrow, default)]
    model: Option<JsonStr<'a>>,
    #[serde(default)]
    input: Option<EmbeddingInput>,
    #[serde(borrow, default)]
    encoding_format: Option<JsonStr<'a>>,
    #[serde(default)]
    dimensions: Option<u32>,
}

impl ApiRequest for EmbeddingRequest<'_> {
    fn model(&self) -> Option<&str> {
        self.model.as_ref().map(|m| &*m.0)
    }
    fn stream(&self) -> Option<bool> {
        None
    }
    fn validate(&self) -> Result<(), ApiError> {
        let Some(input) = &self.input else {
            return Err(ApiError::missing("input"));
        };
        if input.0.is_empty() || input.0.iter().any(|i| i.tokens == 0) {
            return Err(ApiError::invalid(
                "input",
                "'$.input' is invalid: inputs must be non-empty.",
            ));
        }
        if input.0.len() > MAX_INPUTS {
            return Err(ApiError::invalid(
                "input",
                format!("'$.input' is invalid: at most {MAX_INPUTS} inputs."),
            ));
        }
        if !matches!(
            self.encoding_format.as_ref().map(|f| &*f.0),
            None | Some("float" | "base64")
        ) {
            return Err(ApiError::invalid(
                "encoding_format",
                "'encoding_format' must be 'float' or 'base64'.",
            ));
        }
        if self
            .dimensions
            .is_some_and(|d| d == 0 || d > MAX_DIMENSIONS)
        {
            return Err(ApiError::invalid(
                "dimensions",
                format!("'dimensions' must be between 1 and {MAX_DIMENSIONS}."),
            ));
        }
        Ok(())
    }
}

pub struct Embeddings;

impl Endpoint for Embeddings {
    type Req<'a> = EmbeddingRequest<'a>;

    fn respond(app: &App, ctx: &Ctx, req: &EmbeddingRequest<'_>, call: &Call<'_>) -> Reply {
        let inputs = req
            .input
            .as_ref()
            .map(|i| i.0.as_slice())
            .unwrap_or_default();
        let dims = req.dimensions.unwrap_or(DEFAULT_DIMENSIONS) as usize;
        let base64 = req
            .encoding_format
            .as_ref()
            .is_some_and(|f| f.0 == "base64");
        let model_hash = hash_str(call.model);
        let tokens = inputs
            .iter()
            .fold(0u32, |acc, i| acc.saturating_add(i.tokens));
        app.stats.prompt_tokens(tokens);

        // Floats print as up to ~12 bytes each; base64 is 4/3 of 4 bytes.
        let mut out =
            Vec::with_capacity(64 + inputs.len() * (48 + dims * if base64 { 6 } else { 12 }));
        out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
        let mut vector = Vec::with_capacity(dims);
        let mut raw = Vec::new();
        for (index, input) in inputs.iter().enumerate() {
            fill(mix(input.hash ^ model_hash), dims, &mut vector);
            if index > 0 {
                out.push(b',');
            }
            out.extend_from_slice(
                format!("{{\"object\":\"embedding\",\"index\":{index},\"embedding\":").as_bytes(),
            );
            if base64 {
                raw.clear();
                raw.extend(vector.iter().flat_map(|v| v.to_le_bytes()));
                out.push(b'"');
                out.extend_from_slice(STANDARD.encode(&raw).as_bytes());
                out.push(b'"');
            } else if serde_json::to_writer(&mut out, &vector).is_err() {
                out.extend_from_slice(b"[]");
            }
            out.push(b'}');
        }
        let model = serde_json::to_string(call.model).unwrap_or_default();
        out.extend_from_slice(
            format!("],\"model\":{model},\"usage\":{{\"prompt_tokens\":{tokens},\"total_tokens\":{tokens}}}}}")
                .as_bytes(),
        );
        reply::json_ok(ctx, call.behavior.content_type.as_ref(), out)
    }
}

/// Uniform values in [-1, 1) from a splitmix sequence, scaled to unit length.
fn fill(seed: u64, dims: usize, out: &mut Vec<f32>) {
    out.clear();
    let mut state = seed;
    let mut norm = 0.0f32;
    for _ in 0..dims {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let v = (mix(state) >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
        norm += v * v;
        out.push(v);
    }
    let scale = 1.0 / norm.sqrt().max(f32::MIN_POSITIVE);
    for v in out.iter_mut() {
        *v *= scale;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_unit_and_deterministic() {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        fill(7, 256, &mut a);
        fill(7, 256, &mut b);
        assert_eq!(a, b);
        let norm: f32 = a.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        fill(8, 256, &mut b);
        assert_ne!(a, b);
    }
}
