//! Client API keys: `tg_` followed by 34 random base62 characters (about 202 bits) and a
//! 6-character check keyed with the server secret, so the gateway turns away made-up keys
//! without a database look-up. Only a keyed hash is stored, with a display prefix and a
//! public id for references.

use super::{SecretError, ServerSecret, base62};

const KEY_PREFIX: &str = "tg_";
const SECRET_CHARS: usize = 40;
const RANDOM_CHARS: usize = 34;
pub(super) const CHECK_CHARS: usize = SECRET_CHARS - RANDOM_CHARS;
const DISPLAY_CHARS: usize = 8;

/// A freshly issued key. `secret` is shown to its owner once and never stored.
pub struct NewApiKey {
    pub secret: String,
    /// e.g. `tg_AbC12xYz`: enough to recognise a key in a list.
    pub display_prefix: String,
    /// e.g. `key_5Jq…`: how the key is referred to in the admin API and logs.
    pub public_id: String,
}

impl std::fmt::Debug for NewApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewApiKey")
            .field("public_id", &self.public_id)
            .field("display_prefix", &self.display_prefix)
            .finish_non_exhaustive()
    }
}

/// A new key whose check characters are keyed with `server`.
pub fn generate_api_key(server: &ServerSecret) -> Result<NewApiKey, SecretError> {
    let random = base62(RANDOM_CHARS)?;
    let secret = format!("{KEY_PREFIX}{random}{}", server.key_check(&random));
    let display_prefix = secret[..KEY_PREFIX.len() + DISPLAY_CHARS].to_string();
    let public_id = format!("key_{}", base62(16)?);
    Ok(NewApiKey {
        secret,
        display_prefix,
        public_id,
    })
}

/// The random part and the check of a key-shaped text.
pub(super) fn split_key(text: &str) -> Option<(&str, &str)> {
    is_api_key_shaped(text).then(|| text[KEY_PREFIX.len()..].split_at(RANDOM_CHARS))
}

/// Whether `text` has the shape of a Tollgate API key (cheap pre-check before hashing).
pub fn is_api_key_shaped(text: &str) -> bool {
    text.strip_prefix(KEY_PREFIX).is_some_and(|rest| {
        rest.len() == SECRET_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_documented_shape() {
        let server = ServerSecret::new("0123456789abcdef0123456789abcdef-test", &[]).unwrap();
        let key = generate_api_key(&server).unwrap();
        assert!(is_api_key_shaped(&key.secret), "{}", key.secret);
        assert!(server.is_issued_key(&key.secret));
        // A made-up key (or one checked under another secret) fails without a look-up.
        let mut forged = key.secret.clone();
        forged.replace_range(10..11, if &forged[10..11] == "A" { "B" } else { "A" });
        assert!(!server.is_issued_key(&forged));
        let other = ServerSecret::new("another-secret-of-sufficient-length!!", &[]).unwrap();
        assert!(!other.is_issued_key(&key.secret));
        assert!(key.secret.starts_with(&key.display_prefix));
        assert_eq!(key.display_prefix.len(), 11);
        assert!(key.public_id.starts_with("key_"));
        assert!(!format!("{key:?}").contains(&key.secret));
        assert!(!is_api_key_shaped("tg_short"));
        assert!(!is_api_key_shaped(&key.secret.replace("tg_", "sk_")));
    }
}
