//! Server-side secrets: everything derives from `TOLLGATE_SECRET_KEY` (API-key hashing,
//! credential encryption, admin token signing), so one value is all an operator manages.

mod api_key;
mod password;
mod random;
mod sealed;

pub use api_key::{NewApiKey, generate_api_key, is_api_key_shaped};
pub use password::{hash_password, verify_password};
pub use random::{base62, random_bytes};
pub use sealed::Sealed;

use hkdf::Hkdf;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

pub const SECRET_KEY_ENV: &str = "TOLLGATE_SECRET_KEY";
/// Earlier secret keys, comma-separated, still accepted for decryption after a rotation.
pub const PREVIOUS_SECRET_KEYS_ENV: &str = "TOLLGATE_SECRET_KEY_PREVIOUS";
const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error(
        "{SECRET_KEY_ENV} must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -base64 48`)"
    )]
    WeakSecret,
    #[error(
        "the value was encrypted with key {0}, which is not configured (set {PREVIOUS_SECRET_KEYS_ENV})"
    )]
    UnknownKeyId(String),
    #[error(
        "the encrypted value failed authentication: it was altered, or belongs to another record"
    )]
    Tampered,
    #[error("the OS random number generator failed")]
    Random,
}

/// The keys derived from the server secret.
pub struct ServerSecret {
    /// HMACs keyed once: a clone per use skips hashing the key's two padded blocks again.
    hash_mac: Hmac<Sha256>,
    check_mac: Hmac<Sha256>,
    jwt_key: [u8; 32],
    /// The current encryption key first, then keys from earlier secrets.
    sealing_keys: Vec<sealed::SealingKey>,
}

impl std::fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSecret(***)")
    }
}

impl ServerSecret {
    /// From the current secret and any earlier ones (for decrypting older values).
    pub fn new(current: &str, previous: &[&str]) -> Result<Self, SecretError> {
        if current.trim().len() < MIN_SECRET_LEN {
            return Err(SecretError::WeakSecret);
        }
        let mut sealing_keys = vec![sealed::SealingKey::new(derive(
            current,
            b"tollgate/v1/credential-encryption",
        ))];
        for old in previous.iter().filter(|s| !s.trim().is_empty()) {
            sealing_keys.push(sealed::SealingKey::new(derive(
                old,
                b"tollgate/v1/credential-encryption",
            )));
        }
        Ok(ServerSecret {
            hash_mac: hmac_sha256(&derive(current, b"tollgate/v1/api-key-hash")),
            check_mac: hmac_sha256(&derive(current, b"tollgate/v1/api-key-check")),
            jwt_key: derive(current, b"tollgate/v1/admin-jwt"),
            sealing_keys,
        })
    }

    /// The stored form of an API key secret: hex HMAC-SHA256 under a key derived from the
    /// server secret, so a leaked table cannot be checked against guesses offline.
    pub fn hash_api_key(&self, secret: &str) -> String {
        hex(&self.api_key_digest(secret))
    }

    /// The bytes of [`ServerSecret::hash_api_key`]: what the request path's key cache is
    /// keyed by (the hex form is made only for a database look-up).
    pub fn api_key_digest(&self, secret: &str) -> [u8; 32] {
        let mut mac = self.hash_mac.clone();
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// The check characters of an API key's random part.
    pub(crate) fn key_check(&self, random: &str) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let mut mac = self.check_mac.clone();
        mac.update(random.as_bytes());
        mac.finalize().into_bytes()[..api_key::CHECK_CHARS]
            .iter()
            .map(|b| ALPHABET[usize::from(b % 62)] as char)
            .collect()
    }

    /// Whether `text` is a key this server could have issued (shape and keyed check),
    /// decided without any look-up.
    pub fn is_issued_key(&self, text: &str) -> bool {
        let Some((random, check)) = api_key::split_key(text) else {
            return false;
        };
        constant_time_eq(self.key_check(random).as_bytes(), check.as_bytes())
    }

    /// The key that signs admin session tokens.
    pub fn jwt_key(&self) -> &[u8; 32] {
        &self.jwt_key
    }

    /// Encrypts `plaintext` for the record `record_id` (bound as associated data).
    pub fn seal(&self, record_id: i64, plaintext: &str) -> Result<Sealed, SecretError> {
        self.sealing_keys[0].seal(record_id, plaintext)
    }

    /// Decrypts a value sealed for `record_id` by the current or an earlier key.
    pub fn open(&self, record_id: i64, sealed: &Sealed) -> Result<String, SecretError> {
        let key = self
            .sealing_keys
            .iter()
            .find(|k| k.id() == sealed.key_id)
            .ok_or_else(|| SecretError::UnknownKeyId(sealed.key_id.clone()))?;
        key.open(record_id, sealed)
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        self.sealing_keys[0].id()
    }
}

/// A stamp of a user's stored password for their session tokens, keyed with the token
/// key (it reveals nothing of the hash): a password change makes every earlier stamp stale,
/// which ends the sessions that carry one.
pub fn password_stamp(key: &[u8; 32], password_hash: &str) -> String {
    let mut mac = hmac_sha256(key);
    mac.update(b"tollgate/v1/session-password:");
    mac.update(password_hash.as_bytes());
    hex(&mac.finalize().into_bytes()[..12])
}

/// Compares without an early exit, so timing does not reveal how much of a guess matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

/// HKDF-SHA256 subkey of the server secret for one purpose.
fn derive(secret: &str, purpose: &[u8]) -> [u8; 32] {
    let hkdf = Hkdf::<Sha256>::new(Some(b"tollgate"), secret.trim().as_bytes());
    let mut out = [0u8; 32];
    // 32 bytes is far below HKDF's limit of 255 × 32.
    let _ = hkdf.expand(purpose, &mut out);
    out
}

fn hmac_sha256(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts any key length"),
    }
}

/// Lower-case hex, as API-key hashes are stored.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

    #[test]
    fn weak_secrets_are_refused() {
        assert_eq!(
            ServerSecret::new("short", &[]).unwrap_err(),
            SecretError::WeakSecret
        );
    }

    #[test]
    fn api_key_hashes_are_keyed() {
        let a = ServerSecret::new(SECRET, &[]).unwrap();
        let b = ServerSecret::new("another-secret-of-sufficient-length!!", &[]).unwrap();
        let h = a.hash_api_key("tg_abc");
        assert_eq!(h.len(), 64);
        assert_eq!(h, a.hash_api_key("tg_abc"));
        assert_ne!(h, b.hash_api_key("tg_abc"));
        assert_ne!(h, a.hash_api_key("tg_abd"));
        assert_eq!(h, hex(&a.api_key_digest("tg_abc")));
        assert_eq!(hex(&[0x00, 0x9f, 0xa0, 0xff]), "009fa0ff");
        assert!(!format!("{a:?}").contains(SECRET));
    }
}
