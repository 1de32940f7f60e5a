//! The Tollgate gateway: an OpenAI-compatible LLM proxy on Pingora.
//!
//! One folder per concern; `gateway` is the Pingora glue that calls into them phase by
//! phase (see `docs/ARCHITECTURE.md`).

pub mod admission;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod cli;
pub mod context;
pub mod downstream;
pub mod error;
pub mod gateway;
pub mod live;
pub mod log_writer;
pub mod memory;
pub mod metering;
pub mod metrics;
pub mod quota;
pub mod rfc3339;
pub mod routing;
pub mod server;
pub mod start_up_code;
pub mod upstream;
