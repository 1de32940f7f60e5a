//! Values encrypted at rest with AES-256-GCM: a random 96-bit nonce per value, the owning
//! record's id as associated data (a ciphertext copied to another row fails to open), and
//! the key's id so values sealed before a key rotation can still be opened.

use aes_gcm::{
    Aes256Gcm, Key, KeyInit,
    aead::{Aead, Nonce, Payload},
};

use super::{SecretError, hex, hmac_sha256, random_bytes};
use hmac::Mac;

/// An encrypted value as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Ciphertext followed by the 16-byte tag.
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub key_id: String,
}

pub(super) struct SealingKey {
    id: String,
    cipher: Aes256Gcm,
}

impl SealingKey {
    pub fn new(key: [u8; 32]) -> Self {
        // The id is a fingerprint of the key, not the key: safe to store next to values.
        let mut mac = hmac_sha256(&key);
        mac.update(b"tollgate/v1/key-id");
        let id = hex(&mac.finalize().into_bytes()[..6]);
        let key: Key<Aes256Gcm> = key.into();
        SealingKey {
            id,
            cipher: Aes256Gcm::new(&key),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn seal(&self, record_id: i64, plaintext: &str) -> Result<Sealed, SecretError> {
        let nonce_bytes = random_bytes::<12>()?;
        let nonce: Nonce<Aes256Gcm> = nonce_bytes.into();
        let aad = record_id.to_be_bytes();
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Tampered)?;
        Ok(Sealed {
            ciphertext,
            nonce: nonce_bytes.to_vec(),
            key_id: self.id.clone(),
        })
    }

    pub fn open(&self, record_id: i64, sealed: &Sealed) -> Result<String, SecretError> {
        let nonce = Nonce::<Aes256Gcm>::try_from(sealed.nonce.as_slice())
            .map_err(|_| SecretError::Tampered)?;
        let aad = record_id.to_be_bytes();
        let plaintext = self
            .cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| SecretError::Tampered)?;
        String::from_utf8(plaintext).map_err(|_| SecretError::Tampered)
    }
}

#[cfg(test)]
mod tests {
    use super::super::ServerSecret;
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
    const OLD: &str = "an-older-secret-that-was-rotated-out-000";

    #[test]
    fn round_trip_and_fresh_nonces() {
        let s = ServerSecret::new(SECRET, &[]).unwrap();
        let a = s.seal(7, "sk-provider-secret").unwrap();
        let b = s.seal(7, "sk-provider-secret").unwrap();
        assert_ne!(a.nonce, b.nonce);
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(s.open(7, &a).unwrap(), "sk-provider-secret");
        assert_eq!(a.key_id, s.current_key_id());
        assert!(!a.ciphertext.windows(6).any(|w| w == b"sk-pro"));
    }

    #[test]
    fn tampering_is_detected() {
        let s = ServerSecret::new(SECRET, &[]).unwrap();
        let sealed = s.seal(7, "sk-provider-secret").unwrap();
        for i in 0..sealed.ciphertext.len() {
            let mut bad = sealed.clone();
            bad.ciphertext[i] ^= 0x01;
            assert_eq!(
                s.open(7, &bad),
                Err(SecretError::Tampered),
                "flipped byte {i}"
            );
        }
        let mut bad = sealed.clone();
        bad.nonce[0] ^= 0x80;
        assert_eq!(s.open(7, &bad), Err(SecretError::Tampered));
        // Moved to another record: the associated data no longer matches.
        assert_eq!(s.open(8, &sealed), Err(SecretError::Tampered));
    }

    #[test]
    fn rotation_keeps_old_values_readable() {
        let old = ServerSecret::new(OLD, &[]).unwrap();
        let sealed = old.seal(1, "v1").unwrap();
        let rotated = ServerSecret::new(SECRET, &[OLD]).unwrap();
        assert_eq!(rotated.open(1, &sealed).unwrap(), "v1");
        assert_ne!(rotated.current_key_id(), sealed.key_id);
        let without = ServerSecret::new(SECRET, &[]).unwrap();
        assert_eq!(
            without.open(1, &sealed),
            Err(SecretError::UnknownKeyId(sealed.key_id.clone()))
        );
    }
}
