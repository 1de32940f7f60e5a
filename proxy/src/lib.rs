//! The Tollgate gateway: an OpenAI-compatible LLM proxy on Pingora.

pub mod admin_service;
pub mod auth;
pub mod backend;
pub mod client_keys;
pub mod context;
pub mod endpoints;
pub mod error;
pub mod gateway;
pub mod invalidation;
pub mod keys_cli;
pub mod limiter;
pub mod listeners;
pub mod metrics;
pub mod mock_upstream;
pub mod models;
pub mod quota;
pub mod redis;
pub mod request_body;
pub mod respond;
pub mod routing;
pub mod secret_key;
pub mod server;
pub mod store;
pub mod upstream;
pub mod users_cli;
