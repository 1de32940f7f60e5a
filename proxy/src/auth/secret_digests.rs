//! The keyed digest (HMAC-SHA256) of each key secret in use, remembered by a cheaper keyed
//! hash of the secret: a warm key's request costs one SipHash-2-4 instead of an HMAC.
//!
//! The tag is SipHash-2-4's 128-bit output under a key drawn from the OS when the gateway
//! starts and never leaving the process: a secret's tag cannot be told without that key,
//! so another secret with the same tag can neither be searched for nor happen by chance.
//! A secret's digest never changes, so nothing here needs evicting when a key changes (the
//! key cache, by digest, does that); only secrets of stored keys are remembered, so a flood
//! of made-up keys cannot fill it.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::RwLock,
};

use siphasher::sip128::SipHasher24;
use tollgate_core::secrets::random_bytes;

pub type Digest = [u8; 32];
pub type Tag = [u8; 16];

/// Most secrets remembered; a full shard starts again empty (each entry is one HMAC to
/// make again).
const CAPACITY: usize = 100_000;
const SHARDS: usize = 16;

/// A tag or digest is already uniformly spread and keyed: its first bytes serve as a map's
/// hash (no second hash over it, and no flooding to fear).
#[derive(Default)]
pub struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

type Shard = HashMap<Tag, Digest, BuildHasherDefault<PrefixHasher>>;

pub struct SecretDigests {
    /// `None` if the OS gave no random key: every request then makes the HMAC.
    hasher: Option<SipHasher24>,
    shards: Box<[RwLock<Shard>]>,
}

impl SecretDigests {
    pub fn new() -> Self {
        let hasher = random_bytes::<16>()
            .ok()
            .map(|key| SipHasher24::new_with_key(&key));
        if hasher.is_none() {
            tracing::warn!("no random key for the key-secret memo: every request hashes its key");
        }
        SecretDigests {
            hasher,
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
        }
    }

    /// The secret's tag, and its digest if remembered.
    pub fn get(&self, secret: &str) -> (Option<Tag>, Option<Digest>) {
        let Some(hasher) = &self.hasher else {
            return (None, None);
        };
        let tag: Tag = hasher.hash(secret.as_bytes()).as_bytes();
        let digest = self
            .shard(&tag)
            .read()
            .ok()
            .and_then(|shard| shard.get(&tag).copied());
        (Some(tag), digest)
    }

    /// Remembers the digest of a stored key's secret by its tag.
    pub fn remember(&self, tag: Tag, digest: Digest) {
        let Ok(mut shard) = self.shard(&tag).write() else {
            return;
        };
        if shard.len() >= CAPACITY / SHARDS {
            shard.clear();
        }
        shard.insert(tag, digest);
    }

    fn shard(&self, tag: &Tag) -> &RwLock<Shard> {
        &self.shards[usize::from(tag[15]) % SHARDS]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_by_the_whole_secret_under_a_key_of_its_own() {
        let digests = SecretDigests::new();
        let (tag, none) = digests.get("tg_first");
        assert_eq!(none, None);
        digests.remember(tag.unwrap(), [7; 32]);
        assert_eq!(digests.get("tg_first").1, Some([7; 32]));
        // One character more or less is another secret.
        assert_eq!(digests.get("tg_firs").1, None);
        assert_eq!(digests.get("tg_first_").1, None);
        // Another process (another key) tags the same secret differently.
        assert_ne!(SecretDigests::new().get("tg_first").0, tag);
    }

    #[test]
    fn a_full_shard_starts_again() {
        let digests = SecretDigests::new();
        for i in 0..2 * CAPACITY {
            let (tag, _) = digests.get(&format!("tg_{i}"));
            digests.remember(tag.unwrap(), [1; 32]);
        }
        let held: usize = digests.shards.iter().map(|s| s.read().unwrap().len()).sum();
        assert!(held <= CAPACITY, "{held}");
    }
}
