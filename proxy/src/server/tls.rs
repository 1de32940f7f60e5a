//! `server.tls`: the certificate and key of the proxy and admin listeners, read at start
//! (a bad file stops the start with its path) and again whenever either file changes — a
//! renewed certificate is used from the next handshake on, with no restart. A renewal that
//! does not load (half-written, key and certificate not matching) keeps the old one in use
//! and is logged.

use std::{
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::Context;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use openssl::{
    pkey::{PKey, Private},
    ssl::{SslAcceptor, SslMethod, SslRef},
    x509::X509,
};
use pingora::{
    listeners::{TlsAccept, tls::TlsSettings},
    tls::ext::{ssl_add_chain_cert, ssl_use_certificate, ssl_use_private_key},
};
use tollgate_core::config::TlsFiles;

/// How often the files are checked for a change.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// One loaded certificate: the chain (leaf first), the key, and an acceptor for listeners
/// that are not Pingora's (the admin API).
struct Loaded {
    chain: Vec<X509>,
    key: PKey<Private>,
    acceptor: Arc<SslAcceptor>,
}

pub struct Certificates {
    files: TlsFiles,
    current: ArcSwap<Loaded>,
    /// The files' modification times when last loaded.
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificates")
            .field("cert", &self.files.cert)
            .finish_non_exhaustive()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(files: &TlsFiles) -> anyhow::Result<Loaded> {
    let read =
        |path: &PathBuf| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let chain = X509::stack_from_pem(&read(&files.cert)?)
        .with_context(|| format!("{}: not a PEM certificate chain", files.cert.display()))?;
    let leaf = chain
        .first()
        .with_context(|| format!("{}: no certificate in it", files.cert.display()))?;
    let key = PKey::private_key_from_pem(&read(&files.key)?)
        .with_context(|| format!("{}: not a PEM private key", files.key.display()))?;
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    builder.set_certificate(leaf)?;
    for extra in &chain[1..] {
        builder.add_extra_chain_cert(extra.clone())?;
    }
    builder.set_private_key(&key)?;
    builder.check_private_key().with_context(|| {
        format!(
            "{} does not belong to the certificate in {}",
            files.key.display(),
            files.cert.display()
        )
    })?;
    Ok(Loaded {
        acceptor: Arc::new(builder.build()),
        chain,
        key,
    })
}

impl Certificates {
    pub fn load(files: &TlsFiles) -> anyhow::Result<Arc<Certificates>> {
        let seen = (modified(&files.cert), modified(&files.key));
        let loaded = load(files).context("server.tls")?;
        Ok(Arc::new(Certificates {
            files: files.clone(),
            current: ArcSwap::from_pointee(loaded),
            seen: Mutex::new(seen),
        }))
    }

    /// Reads the files again if either changed since the last load.
    pub fn reload_if_changed(&self) {
        let now = (modified(&self.files.cert), modified(&self.files.key));
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        if *seen == now {
            return;
        }
        match load(&self.files) {
            Ok(loaded) => {
                *seen = now;
                self.current.store(Arc::new(loaded));
                tracing::info!(
                    "server.tls: loaded the renewed certificate from {}",
                    self.files.cert.display()
                );
            }
            // Perhaps half-written: tried again on the next change (or the next check, as
            // the times stay unrecorded).
            Err(e) => tracing::error!("server.tls: the certificate in use stays: {e:#}"),
        }
    }

    /// Checks the files every second on `runtime`, for as long as the process runs.
    pub fn watch(self: &Arc<Self>, runtime: &tokio::runtime::Handle) {
        let certificates = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(WATCH_INTERVAL);
            loop {
                tick.tick().await;
                let Some(certificates) = certificates.upgrade() else {
                    return;
                };
                certificates.reload_if_changed();
            }
        });
    }

    /// Pingora's TLS settings for the proxy listener: the certificate is chosen per
    /// handshake from what is loaded now.
    pub fn proxy_settings(self: &Arc<Self>) -> anyhow::Result<TlsSettings> {
        // HTTP/1.1 only (no h2 in ALPN): the gateway reads request heads itself.
        TlsSettings::with_callbacks(Box::new(PerHandshake(self.clone())))
            .map_err(|e| anyhow::anyhow!("server.tls: {e}"))
    }

    fn apply(&self, ssl: &mut SslRef) -> Result<(), openssl::error::ErrorStack> {
        let loaded = self.current.load();
        if let Some(leaf) = loaded.chain.first() {
            ssl_use_certificate(ssl, leaf)?;
        }
        for extra in &loaded.chain[1..] {
            ssl_add_chain_cert(ssl, extra)?;
        }
        ssl_use_private_key(ssl, &loaded.key)
    }
}

impl tollgate_admin::TlsAcceptorSource for Certificates {
    fn acceptor(&self) -> Arc<SslAcceptor> {
        self.current.load().acceptor.clone()
    }
}

struct PerHandshake(Arc<Certificates>);

#[async_trait]
impl TlsAccept for PerHandshake {
    async fn certificate_callback(&self, ssl: &mut SslRef) {
        if let Err(e) = self.0.apply(ssl) {
            tracing::warn!("server.tls: setting the certificate for a handshake failed: {e}");
        }
    }
}
