//! Tokens and cost of a finished request: the upstream's usage, else an estimate marked as
//! such, priced from the route's price table in micro-USD.

use crate::{
    metering::{estimate, finished::Finished},
    quota::scopes::estimate_prompt_tokens,
};

/// Tokens (prompt, completion), whether they were estimated, and cost.
pub type Measured = (u64, u64, bool, i64);

/// Tokens and cost of a finished request.
pub fn measure(f: &Finished) -> Measured {
    // A cache hit: the stored answer's tokens, at the policy's share of their price.
    if let (Some(hit_cost), Some(u)) = (f.hit_cost, f.usage) {
        let full = f
            .pricing
            .map_or(0, |p| p.cost(u.prompt_tokens, u.completion_tokens));
        return (
            u.prompt_tokens,
            u.completion_tokens,
            false,
            hit_cost.of(full),
        );
    }
    let (prompt, completion, estimated) = match f.usage {
        Some(u) => {
            let cost = f.pricing.map_or(0, |p| {
                p.cost_cached(
                    u.prompt_tokens,
                    u.completion_tokens,
                    u.cache_read_tokens,
                    u.cache_write_tokens,
                )
            });
            return (u.prompt_tokens, u.completion_tokens, false, cost);
        }
        // The body was not kept (memory): estimated by its size.
        None if f.upstream_ok && f.request_body.len() < f.body_len => return by_size(f),
        None if f.upstream_ok => (
            estimate::prompt_tokens(f.endpoint, &f.request_body),
            estimate::completion_tokens(f.content_events, f.response_bytes, f.streamed),
            true,
        ),
        None => (0, 0, false),
    };
    priced(f, prompt, completion, estimated)
}

/// The tokens with their cost from the route's price table.
pub fn priced(f: &Finished, prompt: u64, completion: u64, estimated: bool) -> Measured {
    let cost = f.pricing.map_or(0, |p| p.cost(prompt, completion));
    (prompt, completion, estimated, cost)
}

/// The crude estimate when the tokenizer failed: a token per four bytes of prompt.
pub fn by_size(f: &Finished) -> Measured {
    let prompt = estimate_prompt_tokens(f.body_len.max(f.request_body.len()));
    let completion = estimate::completion_tokens(f.content_events, f.response_bytes, f.streamed);
    priced(f, prompt, completion, true)
}
