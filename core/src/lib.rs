//! Shared by the Tollgate gateway, its CLI and its tools: the routing config, the OpenAI
//! error shape, and the cheap request/stream parsers the hot path relies on.

pub mod anthropic;
pub mod body;
pub mod cache_key;
pub mod config;
pub mod limits;
pub mod openai;
pub mod secrets;
pub mod sse;
pub mod store;
pub mod usage;
