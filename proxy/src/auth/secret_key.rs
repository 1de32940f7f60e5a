//! The server secret (`TOLLGATE_SECRET_KEY`) behind API-key hashes, credential encryption
//! and admin session tokens. Production needs it set, and the same on every replica; the
//! embedded default (SQLite, one process) generates one into the data directory and warns.

use std::{fs, io::Write, path::Path};

use anyhow::Context;
use tollgate_core::secrets::{PREVIOUS_SECRET_KEYS_ENV, SECRET_KEY_ENV, ServerSecret};

const SECRET_FILE: &str = "secret_key";
/// `TOLLGATE_ENV=production` demands a configured secret even with SQLite.
pub const ENVIRONMENT_ENV: &str = "TOLLGATE_ENV";

/// Where the secret came from.
pub enum SecretSource {
    Environment,
    /// Generated into (or read from) this file: fine for a single embedded instance only.
    DevFile(std::path::PathBuf),
}

/// Whether this process must be given its secret: a shared (non-SQLite) database means
/// several replicas, which must hash keys and sign tokens alike.
pub fn production_mode(database_url: &str) -> bool {
    std::env::var(ENVIRONMENT_ENV).is_ok_and(|v| v.eq_ignore_ascii_case("production"))
        || !database_url.starts_with("sqlite:")
}

pub fn load(data_dir: &Path, production: bool) -> anyhow::Result<(ServerSecret, SecretSource)> {
    let previous = std::env::var(PREVIOUS_SECRET_KEYS_ENV).unwrap_or_default();
    let previous: Vec<&str> = previous.split(',').map(str::trim).collect();
    if let Ok(current) = std::env::var(SECRET_KEY_ENV)
        && !current.is_empty()
    {
        let secret = ServerSecret::new(&current, &previous)
            .with_context(|| format!("{SECRET_KEY_ENV} is not usable"))?;
        return Ok((secret, SecretSource::Environment));
    }
    anyhow::ensure!(
        !production,
        "{SECRET_KEY_ENV} is not set. It is required in production (a shared database or \
         {ENVIRONMENT_ENV}=production) and must be the same on every replica; generate one \
         with `openssl rand -base64 48`"
    );
    let path = data_dir.join(SECRET_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(_) => {
            let generated = tollgate_core::secrets::base62(64)?;
            create_private_file(data_dir, &path, &generated)?;
            generated
        }
    };
    let secret = ServerSecret::new(text.trim(), &previous)
        .with_context(|| format!("the secret in {}", path.display()))?;
    Ok((secret, SecretSource::DevFile(path)))
}

/// Writes a newly generated secret to a file only its owner can read; fails if the file
/// exists (another process made it first).
pub(crate) fn create_private_file(data_dir: &Path, path: &Path, text: &str) -> anyhow::Result<()> {
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{text}").with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_databases_are_production() {
        assert!(production_mode("postgres://db/tollgate"));
        assert!(
            !production_mode("sqlite://.tollgate/tollgate.db?mode=rwc")
                || std::env::var(ENVIRONMENT_ENV).is_ok()
        );
    }

    #[test]
    fn a_dev_secret_is_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var(SECRET_KEY_ENV).is_ok() {
            return;
        }
        let (a, source) = load(dir.path(), false).unwrap();
        assert!(matches!(source, SecretSource::DevFile(_)));
        let (b, _) = load(dir.path(), false).unwrap();
        assert_eq!(a.hash_api_key("tg_x"), b.hash_api_key("tg_x"));
        assert!(load(dir.path(), true).is_err());
    }
}
