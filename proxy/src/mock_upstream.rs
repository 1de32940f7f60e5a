//! Runs the bundled mock upstream in-process for `kind: mock` providers, so the default
//! config answers offline while requests still take the real proxy path over loopback.

use std::sync::Mutex;

use async_trait::async_trait;
use pingora::{server::ShutdownWatch, services::background::BackgroundService};
use tollgate_mock::MockOptions;

pub struct MockUpstreamService {
    listener: Mutex<Option<std::net::TcpListener>>,
}

impl MockUpstreamService {
    pub fn new(listener: std::net::TcpListener) -> Self {
        MockUpstreamService {
            listener: Mutex::new(Some(listener)),
        }
    }
}

#[async_trait]
impl BackgroundService for MockUpstreamService {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let Some(listener) = self.listener.lock().ok().and_then(|mut l| l.take()) else {
            return;
        };
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("mock upstream listener: {e}");
                return;
            }
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
