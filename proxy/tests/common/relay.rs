//! A TCP relay to Redis that a test can cut (connections dropped, new ones refused) or
//! stall (connections stay open but nothing is forwarded until it flows again), to play a
//! Redis outage or a network stall between the gateway and Redis.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, tcp::OwnedReadHalf, tcp::OwnedWriteHalf},
    sync::watch,
    task::JoinHandle,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    Up,
    /// Bytes are held (in both directions) until the relay is up again.
    Stalled,
    /// Connections are dropped and new ones refused.
    Cut,
}

pub struct Relay {
    addr: SocketAddr,
    flow: watch::Sender<Flow>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (flow, watching) = watch::channel(Flow::Up);
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let links_ = links.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                if *watching.borrow() == Flow::Cut {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let up = tokio::spawn(pipe(client_read, server_write, watching.clone()));
                let down = tokio::spawn(pipe(server_read, client_write, watching.clone()));
                let mut links = links_.lock().unwrap();
                links.push(up);
                links.push(down);
            }
        });
        Relay {
            addr,
            flow,
            links,
            _accept: accept,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn set(&self, flow: Flow) {
        self.flow.send_replace(flow);
        if flow == Flow::Cut {
            for link in self.links.lock().unwrap().drain(..) {
                link.abort();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self._accept.abort();
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

/// Copies one direction, holding what it read while the relay is stalled.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut flow: watch::Receiver<Flow>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        match flow.wait_for(|f| *f != Flow::Stalled).await {
            Ok(f) if *f == Flow::Up => {}
            _ => break,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The test Redis (`TOLLGATE_TEST_REDIS`, default the local one) as an address to relay to.
#[allow(dead_code)]
pub fn redis_addr() -> std::net::SocketAddr {
    std::env::var("TOLLGATE_TEST_REDIS")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
        .trim_start_matches("redis://")
        .parse()
        .unwrap()
}
