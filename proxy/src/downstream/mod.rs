//! The client's side of a request: its connection (deadlines, caps, malformed heads), which
//! OpenAI endpoint it calls, its body read under a cap, the model list answered from the
//! config, and the responses the gateway writes itself.

pub mod connection;
pub mod draining;
pub mod endpoints;
pub mod models;
pub mod request_body;
pub mod request_id;
pub mod respond;
