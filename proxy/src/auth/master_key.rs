//! The operator's master key: from `TOLLGATE_MASTER_KEY`, or else generated once and kept
//! in the data directory, so the default setup is never open.

use std::{fs, path::Path};

use anyhow::Context;
use http::HeaderMap;
use tollgate_core::secrets::constant_time_eq;

use crate::{auth::secret_key::create_private_file, error::GatewayError};

pub const MASTER_KEY_ENV: &str = "TOLLGATE_MASTER_KEY";
const MASTER_KEY_FILE: &str = "master_key";

pub struct MasterKey(String);

impl MasterKey {
    pub fn new(key: String) -> anyhow::Result<Self> {
        anyhow::ensure!(
            key.len() >= 16,
            "{MASTER_KEY_ENV} must be at least 16 characters"
        );
        anyhow::ensure!(
            key.bytes().all(|b| b.is_ascii_graphic()),
            "{MASTER_KEY_ENV} must be printable ASCII without spaces"
        );
        Ok(MasterKey(key))
    }

    /// The key from the environment, else the one stored in `data_dir` (created on first use).
    /// Returns the key and, when it came from the file, that file's path.
    pub fn load(data_dir: &Path) -> anyhow::Result<(Self, Option<std::path::PathBuf>)> {
        Self::load_from(std::env::var(MASTER_KEY_ENV).ok(), data_dir)
    }

    /// As [`MasterKey::load`], with the environment's value passed in.
    fn load_from(
        from_env: Option<String>,
        data_dir: &Path,
    ) -> anyhow::Result<(Self, Option<std::path::PathBuf>)> {
        if let Some(key) = from_env.filter(|k| !k.is_empty()) {
            return Ok((MasterKey::new(key)?, None));
        }
        let path = data_dir.join(MASTER_KEY_FILE);
        if let Ok(text) = fs::read_to_string(&path) {
            let key = text.trim().to_string();
            return Ok((
                MasterKey::new(key).with_context(|| format!("in {}", path.display()))?,
                Some(path),
            ));
        }
        let key = format!("tg_master_{}", tollgate_core::secrets::base62(40)?);
        create_private_file(data_dir, &path, &key)?;
        Ok((MasterKey(key), Some(path)))
    }

    /// The key itself, for the admin API, which accepts it too.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Checks the request's credential.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        let presented = presented_key(headers).ok_or(GatewayError::MissingKey)?;
        if self.matches(presented) {
            Ok(())
        } else {
            Err(GatewayError::InvalidKey)
        }
    }

    /// Whether `presented` is this key (in constant time).
    pub fn matches(&self, presented: &str) -> bool {
        constant_time_eq(presented.as_bytes(), self.0.as_bytes())
    }
}

/// The client's key from `Authorization: Bearer` or `x-api-key`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.trim().split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim());
    }
    headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, value.parse().unwrap());
        h
    }

    #[test]
    fn accepts_bearer_and_x_api_key() {
        let key = MasterKey::new("tg_master_0123456789".into()).unwrap();
        assert_eq!(
            key.check(&headers("authorization", "Bearer tg_master_0123456789")),
            Ok(())
        );
        assert_eq!(
            key.check(&headers("authorization", "bearer  tg_master_0123456789")),
            Ok(())
        );
        assert_eq!(
            key.check(&headers("x-api-key", "tg_master_0123456789")),
            Ok(())
        );
        assert_eq!(
            key.check(&headers("authorization", "Bearer tg_master_012345678")),
            Err(GatewayError::InvalidKey)
        );
        assert_eq!(
            key.check(&headers("authorization", "Basic abc")),
            Err(GatewayError::MissingKey)
        );
        assert_eq!(key.check(&HeaderMap::new()), Err(GatewayError::MissingKey));
    }

    #[test]
    fn generates_and_reuses_a_stored_key() {
        let dir = tempfile::tempdir().unwrap();
        let (first, path) = MasterKey::load_from(None, dir.path()).unwrap();
        assert!(first.0.starts_with("tg_master_") && first.0.len() == 50);
        let (second, _) = MasterKey::load_from(Some(String::new()), dir.path()).unwrap();
        assert_eq!(first.0, second.0);
        assert!(path.unwrap().exists());
        let (from_env, path) =
            MasterKey::load_from(Some("tg_master_from_env_123".into()), dir.path()).unwrap();
        assert_eq!(from_env.0, "tg_master_from_env_123");
        assert!(path.is_none());
        assert!(MasterKey::load_from(Some("short".into()), dir.path()).is_err());
    }
}
