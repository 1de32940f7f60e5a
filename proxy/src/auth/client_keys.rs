//! Client API keys (`tg_…`) on the request path. Look-ups go through an in-memory cache
//! (positive and negative entries, bounded, with a TTL) in front of the store, so a warm key
//! costs one SipHash and two map look-ups under shards' read locks (its HMAC digest is
//! remembered, see `secret_digests`). Admin changes evict entries at once (see
//! `invalidation`); the TTL bounds staleness should a message be lost.

use std::{
    collections::{HashMap, HashSet},
    hash::BuildHasherDefault,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use tollgate_core::{
    secrets::{ServerSecret, hex},
    store::keys::{self, KeyChange, KeyRecord, KeyRejection},
};

use super::secret_digests::{Digest, PrefixHasher, SecretDigests};
use crate::{backend::Backend, error::GatewayError, metrics::shared};

const POSITIVE_TTL: Duration = Duration::from_secs(60);
const NEGATIVE_TTL: Duration = Duration::from_secs(10);
const CAPACITY: usize = 100_000;
/// Shards of the cache: requests on different keys rarely meet on one lock.
const SHARDS: usize = 16;
/// How often `last_used_at` is written for the keys used since.
const TOUCH_INTERVAL: Duration = Duration::from_secs(5);

/// A key that passed authentication, with what the request path needs of it.
#[derive(Debug)]
pub struct ClientKey {
    pub record: KeyRecord,
    /// Models the key may use; `None` for all.
    pub allowed_models: Option<HashSet<String>>,
    /// Used since `last_used_at` was last written: set by the first request after a write,
    /// so the others only read it.
    touched: AtomicBool,
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

impl Entry {
    fn live(&self) -> bool {
        let ttl = if self.key.is_some() {
            POSITIVE_TTL
        } else {
            NEGATIVE_TTL
        };
        self.at.elapsed() < ttl
    }
}

fn client_key(record: KeyRecord) -> Arc<ClientKey> {
    let allowed_models = record
        .key
        .allowed_models()
        .map(|m| m.into_iter().collect::<HashSet<_>>());
    Arc::new(ClientKey {
        record,
        allowed_models,
        touched: AtomicBool::new(false),
    })
}

type Shard = HashMap<Digest, Entry, BuildHasherDefault<PrefixHasher>>;

pub struct ClientKeys {
    secret: Arc<ServerSecret>,
    /// Each secret's digest, so a warm key's request makes no HMAC.
    digests: SecretDigests,
    backend: Arc<Backend>,
    /// By the HMAC of the secret, sharded by its last byte (the first ones hash in a shard).
    shards: Box<[RwLock<Shard>]>,
    /// Bumped by every eviction: a look-up that started before one must not cache what it
    /// read, which may be what the eviction was about.
    generation: AtomicU64,
    /// Keys used since the last `last_used_at` write, once each.
    touched: Arc<Mutex<Vec<Arc<ClientKey>>>>,
    /// Look-ups under way: concurrent first uses of one key share one database query (a
    /// new key's first burst would otherwise send the whole burst to the database and open
    /// every connection of its pool).
    loading: Mutex<HashMap<Digest, Arc<Loading>>>,
}

/// One look-up's outcome, for everyone who asked meanwhile; `None` when the store failed.
type Loading = tokio::sync::OnceCell<Option<Option<Arc<ClientKey>>>>;

impl ClientKeys {
    pub fn new(secret: Arc<ServerSecret>, backend: Arc<Backend>) -> Arc<Self> {
        let keys = Arc::new(ClientKeys {
            secret,
            digests: SecretDigests::new(),
            backend,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            generation: AtomicU64::new(0),
            touched: Arc::new(Mutex::new(Vec::new())),
            loading: Mutex::default(),
        });
        keys.start_touch_writer();
        keys
    }

    fn shard(&self, digest: &Digest) -> &RwLock<Shard> {
        &self.shards[usize::from(digest[31]) % SHARDS]
    }

    /// The key a presented secret belongs to, or why it is refused.
    pub async fn authenticate(&self, presented: &str) -> Result<Arc<ClientKey>, GatewayError> {
        let (tag, remembered) = self.digests.get(presented);
        let digest = remembered.unwrap_or_else(|| self.secret.api_key_digest(presented));
        let cached = self.cached(&digest);
        shared::key_cache_lookup(cached.is_some());
        let key = match cached {
            // Only keys that passed the keyed check are cached, and the digest is of the
            // whole secret: a hit needs no second check.
            Some(key) => key,
            // Made-up keys fail the keyed check here, before any database work (and are not
            // cached, so a flood of them cannot crowd out real keys).
            None if !self.secret.is_issued_key(presented) => return Err(GatewayError::InvalidKey),
            None => self.load_once(digest).await?,
        };
        let key = key.ok_or(GatewayError::InvalidKey)?;
        if remembered.is_none()
            && let Some(tag) = tag
        {
            self.digests.remember(tag, digest);
        }
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
        if !key.touched.load(Ordering::Relaxed)
            && !key.touched.swap(true, Ordering::Relaxed)
            && let Ok(mut touched) = self.touched.lock()
        {
            touched.push(key.clone());
        }
        Ok(key)
    }

    fn cached(&self, digest: &Digest) -> Option<Option<Arc<ClientKey>>> {
        let shard = self.shard(digest).read().ok()?;
        let entry = shard.get(digest)?;
        entry.live().then(|| entry.key.clone())
    }

    /// [`Self::load`], shared by the requests that ask for the same key meanwhile: they all
    /// get its outcome, a failure included (each would otherwise wait out its own timeout).
    async fn load_once(&self, digest: Digest) -> Result<Option<Arc<ClientKey>>, GatewayError> {
        let cell = match self.loading.lock() {
            Ok(mut loading) => loading.entry(digest).or_default().clone(),
            Err(_) => Arc::default(),
        };
        let outcome = cell
            .get_or_init(|| async { self.load(digest).await.ok() })
            .await
            .clone();
        if let Ok(mut loading) = self.loading.lock()
            && loading
                .get(&digest)
                .is_some_and(|current| Arc::ptr_eq(current, &cell))
        {
            loading.remove(&digest);
        }
        outcome.ok_or(GatewayError::KeyStoreUnavailable)
    }

    async fn load(&self, digest: Digest) -> Result<Option<Arc<ClientKey>>, GatewayError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let db = self.backend.db.clone();
        let lookup = hex(&digest);
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
            self.insert(digest, key.clone());
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
                if let Some(digest) = parse_digest(&record.key.secret_hash) {
                    self.insert(digest, Some(client_key(record)));
                }
            }
        }
        Ok(count)
    }

    fn insert(&self, digest: Digest, key: Option<Arc<ClientKey>>) {
        let Ok(mut shard) = self.shard(&digest).write() else {
            return;
        };
        let before = shard.len();
        if shard.len() >= CAPACITY / SHARDS {
            shard.retain(|_, e| e.live());
            if shard.len() >= CAPACITY / SHARDS {
                // Still full of live entries: unknown-key entries go first (they are cheap to
                // rebuild), then everything.
                shard.retain(|_, e| e.key.is_some());
                if shard.len() >= CAPACITY / SHARDS {
                    shard.clear();
                }
            }
            shared::key_cache_evicted(before - shard.len());
        }
        shard.insert(
            digest,
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
        let stale = |entry: &Entry| {
            entry.key.as_ref().is_some_and(|key| {
                let k = &key.record.key;
                match change {
                    KeyChange::Key(public_id) => &k.public_id == public_id,
                    KeyChange::User(id) => k.user_id == Some(*id),
                    KeyChange::Team(id) => k.team_id == Some(*id),
                    KeyChange::Credentials => false,
                }
            })
        };
        for shard in &self.shards {
            let Ok(mut shard) = shard.write() else {
                continue;
            };
            let before = shard.len();
            shard.retain(|_, entry| !stale(entry));
            shared::key_cache_evicted(before - shard.len());
        }
    }

    /// Forgets everything (when change messages may have been missed).
    pub fn evict_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for shard in &self.shards {
            if let Ok(mut shard) = shard.write() {
                shared::key_cache_evicted(shard.len());
                shard.clear();
            }
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
                let used = match touched.lock() {
                    Ok(mut used) => std::mem::take(&mut *used),
                    Err(_) => return,
                };
                if used.is_empty() {
                    continue;
                }
                // Cleared before the write: a use from now on is the next round's.
                let mut ids: Vec<i64> = used
                    .iter()
                    .map(|key| {
                        key.touched.store(false, Ordering::Relaxed);
                        key.id()
                    })
                    .collect();
                // A key reloaded meanwhile may be here twice.
                ids.sort_unstable();
                ids.dedup();
                if let Err(e) = keys::touch_last_used(&db, ids, Utc::now()).await {
                    tracing::warn!("updating last_used_at failed: {e}");
                }
            }
        });
    }
}

/// The digest a stored hash (lower-case hex) spells.
fn parse_digest(text: &str) -> Option<Digest> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        let pair = std::str::from_utf8(pair).ok()?;
        *out = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hashes_parse_back_to_their_digest() {
        let secret = ServerSecret::new("0123456789abcdef0123456789abcdef-test", &[]).unwrap();
        let digest = secret.api_key_digest("tg_abc");
        assert_eq!(parse_digest(&secret.hash_api_key("tg_abc")), Some(digest));
        assert_eq!(parse_digest("zz"), None);
        assert_eq!(parse_digest(&"g".repeat(64)), None);
    }
}
