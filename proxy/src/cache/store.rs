//! Where entries live: Redis when the gateway has one (shared by every replica, expired by
//! Redis), else an in-process LRU with a byte budget. A store error is never the client's:
//! the caller counts it and treats the request as a miss.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fred::{
    clients::Client,
    interfaces::{ClientLike, KeysInterface, PubsubInterface},
    types::Expiration,
};
use futures_util::TryStreamExt;

use crate::cache::entry::{Entry, HEADER_LEN};

/// Which entries a purge removes (sent to every replica as JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Purge {
    pub model: Option<String>,
    pub key_id: Option<i64>,
}

impl Purge {
    fn matches(&self, entry: &Entry) -> bool {
        self.model.as_ref().is_none_or(|m| *m == entry.model)
            && self.key_id.is_none_or(|k| k == entry.key_id)
    }
}

/// Entries held and their size, with per-model counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holding {
    pub entries: u64,
    pub bytes: u64,
    pub by_model: std::collections::BTreeMap<String, (u64, u64)>,
}

impl Holding {
    fn add(&mut self, model: &str, bytes: u64) {
        self.entries += 1;
        self.bytes += bytes;
        let slot = self.by_model.entry(model.to_string()).or_default();
        slot.0 += 1;
        slot.1 += bytes;
    }
}

pub enum Store {
    Memory(MemoryStore),
    Redis(RedisCache),
}

pub type StoreResult<T> = Result<T, String>;

impl Store {
    pub async fn get(&self, key: &[u8; 32]) -> StoreResult<Option<Arc<Entry>>> {
        match self {
            Store::Memory(m) => Ok(m.get(key)),
            Store::Redis(r) => r.get(key).await,
        }
    }

    /// Stores `entry` for `ttl`; answers how many entries were evicted to make room.
    pub async fn put(&self, key: [u8; 32], entry: Arc<Entry>, ttl: Duration) -> StoreResult<u64> {
        match self {
            Store::Memory(m) => Ok(m.put(key, entry, ttl)),
            Store::Redis(r) => r.put(&key, &entry, ttl).await.map(|()| 0),
        }
    }

    pub async fn purge(&self, which: &Purge) -> StoreResult<u64> {
        match self {
            Store::Memory(m) => Ok(m.purge(which)),
            Store::Redis(r) => r.purge(which).await,
        }
    }

    pub async fn holding(&self) -> StoreResult<Holding> {
        match self {
            Store::Memory(m) => Ok(m.holding()),
            Store::Redis(r) => r.holding().await,
        }
    }

    /// Bytes held, when the store knows it at no cost (the in-process one).
    pub fn bytes(&self) -> Option<u64> {
        match self {
            Store::Memory(m) => Some(m.bytes()),
            Store::Redis(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }
}

/// The in-process store: least recently used entries go first once `budget` bytes are
/// held; an expired entry is dropped when it is next asked for.
pub struct MemoryStore {
    inner: Mutex<Lru>,
    budget: usize,
}

struct Lru {
    entries: lru::LruCache<[u8; 32], (Arc<Entry>, Instant)>,
    bytes: usize,
}

impl MemoryStore {
    pub fn new(budget: u64) -> Self {
        MemoryStore {
            inner: Mutex::new(Lru {
                entries: lru::LruCache::unbounded(),
                bytes: 0,
            }),
            budget: usize::try_from(budget).unwrap_or(usize::MAX),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        // A panic while holding it leaves a consistent map (no invariant spans two calls).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<Arc<Entry>> {
        let mut lru = self.lock();
        let (entry, expires) = lru.entries.get(key)?.clone();
        if expires <= Instant::now() {
            if let Some((gone, _)) = lru.entries.pop(key) {
                lru.bytes -= gone.weight();
            }
            return None;
        }
        Some(entry)
    }

    pub(crate) fn put(&self, key: [u8; 32], entry: Arc<Entry>, ttl: Duration) -> u64 {
        let weight = entry.weight();
        if weight > self.budget {
            return 0;
        }
        let mut lru = self.lock();
        if let Some((old, _)) = lru.entries.put(key, (entry, Instant::now() + ttl)) {
            lru.bytes -= old.weight();
        }
        lru.bytes += weight;
        let mut evicted = 0;
        while lru.bytes > self.budget {
            let Some((_, (gone, _))) = lru.entries.pop_lru() else {
                break;
            };
            lru.bytes -= gone.weight();
            evicted += 1;
        }
        evicted
    }

    pub(crate) fn purge(&self, which: &Purge) -> u64 {
        let mut lru = self.lock();
        let doomed: Vec<[u8; 32]> = lru
            .entries
            .iter()
            .filter(|(_, (entry, _))| which.matches(entry))
            .map(|(key, _)| *key)
            .collect();
        for key in &doomed {
            if let Some((gone, _)) = lru.entries.pop(key) {
                lru.bytes -= gone.weight();
            }
        }
        doomed.len() as u64
    }

    fn holding(&self) -> Holding {
        let lru = self.lock();
        let now = Instant::now();
        let mut holding = Holding::default();
        for (_, (entry, expires)) in lru.entries.iter() {
            if *expires > now {
                holding.add(&entry.model, entry.weight() as u64);
            }
        }
        holding
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.lock().bytes as u64
    }
}

/// Entries in Redis as `{prefix}:cache:{hex key}`, with Redis's own expiry.
pub struct RedisCache {
    client: Client,
    prefix: String,
}

/// Keys a purge or stats scan asks for per round trip.
const SCAN_COUNT: u32 = 500;

impl RedisCache {
    pub fn new(client: Client, prefix: &str) -> Self {
        RedisCache {
            client,
            prefix: format!("{prefix}:cache:"),
        }
    }

    fn name(&self, key: &[u8; 32]) -> String {
        let mut name = String::with_capacity(self.prefix.len() + 64);
        name.push_str(&self.prefix);
        name.push_str(&tollgate_core::secrets::hex(key));
        name
    }

    /// Tells every replica to drop what `which` matches from its in-process copies.
    pub async fn announce(&self, which: &Purge) -> StoreResult<()> {
        let message = serde_json::to_string(which).map_err(|e| e.to_string())?;
        self.client
            .publish::<(), _, _>(self.purges_channel(), message)
            .await
            .map_err(|e| e.to_string())
    }

    /// The channel purges are announced on.
    pub fn purges_channel(&self) -> String {
        format!("{}purges", self.prefix)
    }

    async fn get(&self, key: &[u8; 32]) -> StoreResult<Option<Arc<Entry>>> {
        let stored: Option<Vec<u8>> = self
            .client
            .get(self.name(key))
            .await
            .map_err(|e| e.to_string())?;
        Ok(stored.and_then(|bytes| Entry::decode(&bytes)).map(Arc::new))
    }

    async fn put(&self, key: &[u8; 32], entry: &Entry, ttl: Duration) -> StoreResult<()> {
        let bytes = entry.encode().map_err(|e| e.to_string())?;
        let millis = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        self.client
            .set::<(), _, _>(
                self.name(key),
                bytes.as_slice(),
                Some(Expiration::PX(millis)),
                None,
                false,
            )
            .await
            .map_err(|e| e.to_string())
    }

    /// Each entry's header, read with `GETRANGE` (bodies stay in Redis), and its size.
    async fn headers(&self) -> StoreResult<Vec<(String, Entry, u64)>> {
        let pattern = format!("{}*", self.prefix);
        let names: Vec<fred::types::Key> = if self.client.is_clustered() {
            self.client
                .scan_cluster_buffered(pattern, Some(SCAN_COUNT), None)
                .try_collect()
                .await
        } else {
            self.client
                .scan_buffered(pattern, Some(SCAN_COUNT), None)
                .try_collect()
                .await
        }
        .map_err(|e| e.to_string())?;
        let mut found = Vec::with_capacity(names.len());
        for name in names.into_iter().filter_map(|k| k.into_string()) {
            let head: Vec<u8> = self
                .client
                .getrange(&name, 0, HEADER_LEN + 256)
                .await
                .map_err(|e| e.to_string())?;
            let size: u64 = self.client.strlen(&name).await.map_err(|e| e.to_string())?;
            if let Some((entry, _, _)) = Entry::decode_header(&head) {
                found.push((name, entry, size));
            }
        }
        Ok(found)
    }

    async fn purge(&self, which: &Purge) -> StoreResult<u64> {
        let mut purged = 0;
        for (name, entry, _) in self.headers().await? {
            if which.matches(&entry) {
                let gone: u64 = self.client.del(&name).await.map_err(|e| e.to_string())?;
                purged += gone;
            }
        }
        Ok(purged)
    }

    async fn holding(&self) -> StoreResult<Holding> {
        let mut holding = Holding::default();
        for (_, entry, size) in self.headers().await? {
            holding.add(&entry.model, size);
        }
        Ok(holding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry::sample as entry;

    #[test]
    fn the_memory_store_keeps_its_budget_evicting_the_least_recently_used() {
        let store = MemoryStore::new(3 * 2_300);
        let ttl = Duration::from_secs(60);
        for i in 0..3u8 {
            assert_eq!(store.put([i; 32], entry("m", 1, 1_000), ttl), 0);
        }
        // Reading the first makes the second the least recently used.
        assert!(store.get(&[0; 32]).is_some());
        assert_eq!(store.put([3; 32], entry("m", 1, 1_000), ttl), 1);
        assert!(store.get(&[1; 32]).is_none());
        assert!(store.get(&[0; 32]).is_some() && store.get(&[3; 32]).is_some());
        assert!(store.bytes() <= 3 * 2_300);
        // Larger than the whole budget: not stored, nothing evicted.
        assert_eq!(store.put([9; 32], entry("m", 1, 10_000), ttl), 0);
        assert!(store.get(&[9; 32]).is_none());
    }

    #[test]
    fn memory_entries_expire_and_purge_by_model_or_key() {
        let store = MemoryStore::new(1 << 20);
        store.put([1; 32], entry("a", 1, 10), Duration::ZERO);
        assert!(store.get(&[1; 32]).is_none());
        assert_eq!(store.bytes(), 0);
        let ttl = Duration::from_secs(60);
        store.put([2; 32], entry("a", 1, 10), ttl);
        store.put([3; 32], entry("a", 2, 10), ttl);
        store.put([4; 32], entry("b", 2, 10), ttl);
        let holding = store.holding();
        assert_eq!((holding.entries, holding.by_model["a"].0), (3, 2));
        let by_key = Purge {
            key_id: Some(2),
            model: Some("a".into()),
        };
        assert_eq!(store.purge(&by_key), 1);
        assert_eq!(
            store.purge(&Purge {
                key_id: None,
                model: Some("b".into())
            }),
            1
        );
        assert_eq!(store.purge(&Purge::default()), 1);
        assert_eq!((store.holding().entries, store.bytes()), (0, 0));
    }
}
