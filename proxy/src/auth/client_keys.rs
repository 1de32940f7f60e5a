//! Client API keys (`tg_…`) on the request path. Look-ups go through an in-memory cache
//! (positive and negative entries, bounded, with a TTL) in front of the store, so a warm key
//! costs one HMAC and a map look-up. Admin changes evict entries at once (see
//! `invalidation`); the TTL bounds staleness should a message be lost.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use tollgate_core::{
    secrets::ServerSecret,
    store::keys::{self, KeyChange, KeyRecord, KeyRejection},
};

use crate::{backend::Backend, error::GatewayError, metrics::shared};

const POSITIVE_TTL: Duration = Duration::from_secs(60);
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
const CAPACITY: usize = 100_000;
/// How often `last_used_at` is written for the keys used since.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);

/// A key that passed authentication, with what the request path needs of it.
#[derive(Debug)]
pub struct ClientKey {
    pub record: KeyRecord,
    /// Models the key may use; `None` for all.
    pub allowed_models: Option<HashSet<String>>,
}

impl ClientKey {
    pub fn id(&self) -> i64 {
        self.record.key.id
    }

    pub fn public_id(&self) -> &str {
        &self.record.key.public_id
    }

    pub fn allows(&self, requested: &str, canonical: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|m| m.contains(requested) || m.contains(canonical))
    }
}

struct Entry {
    key: Option<Arc<ClientKey>>,
    at: Instant,
}

fn client_key(record: KeyRecord) -> Arc<ClientKey> {
    let allowed_models = record
        .key
        .allowed_models()
        .map(|m| m.into_iter().collect::<HashSet<_>>());
    Arc::new(ClientKey {
        record,
        allowed_models,
    })
}

pub struct ClientKeys {
    secret: Arc<ServerSecret>,
    backend: Arc<Backend>,
    /// By the HMAC of the secret.
    cache: Mutex<HashMap<String, Entry>>,
    /// Bumped by every eviction: a look-up that started before one must not cache what it
    /// read, which may be what the eviction was about.
    generation: AtomicU64,
    touched: Arc<Mutex<HashSet<i64>>>,
}

impl ClientKeys {
    pub fn new(secret: Arc<ServerSecret>, backend: Arc<Backend>) -> Arc<Self> {
        let keys = Arc::new(ClientKeys {
            secret,
            backend,
            cache: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            touched: Arc::new(Mutex::new(HashSet::new())),
        });
        keys.start_touch_writer();
        keys
    }

    /// The key a presented secret belongs to, or why it is refused.
    pub async fn authenticate(&self, presented: &str) -> Result<Arc<ClientKey>, GatewayError> {
        // Made-up keys fail the keyed check here, before any cache or database work.
        if !self.secret.is_issued_key(presented) {
            return Err(GatewayError::InvalidKey);
        }
        let hash = self.secret.hash_api_key(presented);
        let cached = self.cached(&hash);
        shared::key_cache_lookup(cached.is_some());
        let key = match cached {
            Some(key) => key,
            None => self.load(hash).await?,
        };
        let key = key.ok_or(GatewayError::InvalidKey)?;
        let public = || key.public_id().to_string();
        key.record
            .check(Utc::now())
            .map_err(|reason| match reason {
                KeyRejection::Unknown => GatewayError::InvalidKey,
                KeyRejection::Revoked => GatewayError::KeyRevoked(public()),
                KeyRejection::Expired => GatewayError::KeyExpired(public()),
                KeyRejection::Rotated => GatewayError::KeyRotated(public()),
                KeyRejection::OwnerDisabled => GatewayError::KeyOwnerDisabled(public()),
            })?;
        if let Ok(mut touched) = self.touched.lock() {
            touched.insert(key.id());
        }
        Ok(key)
    }

    fn cached(&self, hash: &str) -> Option<Option<Arc<ClientKey>>> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(hash)?;
        let ttl = if entry.key.is_some() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        (entry.at.elapsed() < ttl).then(|| entry.key.clone())
    }

    async fn load(&self, hash: String) -> Result<Option<Arc<ClientKey>>, GatewayError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let db = self.backend.db.clone();
        let lookup = hash.clone();
        let found =
            self.backend
                .run(async move {
                    shared::database("key_lookup", keys::find_by_hash(&db, &lookup)).await
                })
                .await;
        let record = match found {
            Some(Ok(record)) => record,
            Some(Err(e)) => {
                tracing::error!("key look-up failed: {e}");
                return Err(GatewayError::KeyStoreUnavailable);
            }
            None => return Err(GatewayError::KeyStoreUnavailable),
        };
        let key = record.map(client_key);
        if self.generation.load(Ordering::SeqCst) == generation {
            self.insert(hash, key.clone());
        }
        Ok(key)
    }

    /// Loads the `limit` most recently used keys into the cache, so that the first requests
    /// after a start do not each wait on the database. Returns how many were loaded.
    pub async fn warm(&self, limit: u64) -> anyhow::Result<usize> {
        let generation = self.generation.load(Ordering::SeqCst);
        let db = self.backend.db.clone();
        let records =
            self.backend
                .run(async move {
                    shared::database("key_warmup", keys::recently_used(&db, limit)).await
                })
                .await
                .ok_or_else(|| anyhow::anyhow!("the database runtime is gone"))??;
        let count = records.len();
        // A key changed meanwhile is read again on its first use instead.
        if self.generation.load(Ordering::SeqCst) == generation {
            for record in records {
                let hash = record.key.secret_hash.clone();
                self.insert(hash, Some(client_key(record)));
            }
        }
        Ok(count)
    }

    fn insert(&self, hash: String, key: Option<Arc<ClientKey>>) {
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let before = cache.len();
        if cache.len() >= CAPACITY {
            cache.retain(|_, e| {
                e.at.elapsed()
                    < if e.key.is_some() {
                        POSITIVE_TTL
                    } else {
                        NEGATIVE_TTL
                    }
            });
            if cache.len() >= CAPACITY {
                // Still full of live entries: unknown-key entries go first (they are cheap to
                // rebuild and are what a flood of bad keys produces), then everything.
                cache.retain(|_, e| e.key.is_some());
                if cache.len() >= CAPACITY {
                    cache.clear();
                }
            }
            shared::key_cache_evicted(before - cache.len());
        }
        cache.insert(
            hash,
            Entry {
                key,
                at: Instant::now(),
            },
        );
    }

    /// Forgets what a change made stale.
    pub fn evict(&self, change: &KeyChange) {
        if *change == KeyChange::Credentials {
            return;
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let before = cache.len();
        cache.retain(|_, entry| {
            let Some(key) = &entry.key else {
                return true;
            };
            let k = &key.record.key;
            !match change {
                KeyChange::Key(public_id) => &k.public_id == public_id,
                KeyChange::User(id) => k.user_id == Some(*id),
                KeyChange::Team(id) => k.team_id == Some(*id),
                KeyChange::Credentials => false,
            }
        });
        shared::key_cache_evicted(before - cache.len());
    }

    /// Forgets everything (when change messages may have been missed).
    pub fn evict_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut cache) = self.cache.lock() {
            shared::key_cache_evicted(cache.len());
            cache.clear();
        }
    }

    /// Writes `last_used_at` for recently used keys in batches, off the request path.
    fn start_touch_writer(&self) {
        let touched = self.touched.clone();
        let db = self.backend.db.clone();
        self.backend.handle().spawn(async move {
            let mut tick = tokio::time::interval(TOUCH_INTERVAL);
            loop {
                tick.tick().await;
                let ids: Vec<i64> = match touched.lock() {
                    Ok(mut set) => set.drain().collect(),
                    Err(_) => return,
                };
                if let Err(e) = keys::touch_last_used(&db, ids, Utc::now()).await {
                    tracing::warn!("updating last_used_at failed: {e}");
                }
            }
        });
    }
}
