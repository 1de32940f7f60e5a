//! Admin passwords, hashed with Argon2id (the crate's defaults: 19 MiB, 2 passes). Hashing
//! takes tens of milliseconds of CPU: call it off the async workers (`spawn_blocking`).

use argon2::{Argon2, PasswordHasher, PasswordVerifier, password_hash};

/// The PHC string to store, e.g. `$argon2id$v=19$m=19456,t=2,p=1$…`.
pub fn hash_password(password: &str) -> Result<String, password_hash::Error> {
    Ok(Argon2::default()
        .hash_password(password.as_bytes())?
        .to_string())
}

/// Whether `password` matches the stored hash; an unreadable hash is an error.
pub fn verify_password(password: &str, stored: &str) -> Result<bool, password_hash::Error> {
    match Argon2::default().verify_password(password.as_bytes(), stored) {
        Ok(()) => Ok(true),
        Err(password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let stored = hash_password("correct horse battery staple").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery staple", &stored).unwrap());
        assert!(!verify_password("Correct horse battery staple", &stored).unwrap());
        assert_ne!(
            stored,
            hash_password("correct horse battery staple").unwrap(),
            "salted"
        );
        assert!(verify_password("x", "not a hash").is_err());
    }
}
