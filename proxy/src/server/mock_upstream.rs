//! Runs the bundled mock upstream in-process for `kind: mock` providers, so the default
//! config answers offline while requests still take the real proxy path over loopback.

use async_trait::async_trait;
use pingora::{server::ShutdownWatch, services::background::BackgroundService};
use tollgate_mock::MockOptions;

use crate::server::listeners::ListenerSlot;

pub struct MockUpstreamService {
    listener: ListenerSlot,
}

impl MockUpstreamService {
    pub fn new(listener: std::net::TcpListener) -> Self {
        MockUpstreamService {
            listener: ListenerSlot::new("mock upstream", listener),
        }
    }
}

#[async_trait]
impl BackgroundService for MockUpstreamService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        tokio::select! {
            served = tollgate_mock::serve(listener, MockOptions::default()) => {
                if let Err(e) = served {
                    tracing::error!("mock upstream stopped: {e}");
                }
            }
            _ = shutdown.changed() => {}
        }
    }
}
