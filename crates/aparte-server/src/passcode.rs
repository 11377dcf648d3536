//! Room passcodes: argon2id verifiers (PHC strings). Hashing takes tens of
//! milliseconds on purpose, so callers run it on a blocking thread.

use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The verifier of `passcode`, with a fresh random salt.
pub fn hash(passcode: &str) -> anyhow::Result<Arc<str>> {
    let h = Argon2::default()
        .hash_password(passcode.as_bytes())
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(Arc::from(h.to_string()))
}

/// Whether `passcode` matches `verifier` (constant time in the passcode).
pub fn verify(passcode: &str, verifier: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(verifier) else {
        return false;
    };
    Argon2::default()
        .verify_password(passcode.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_only_the_passcode() {
        let v = hash("4711 cologne").expect("hash");
        assert!(v.starts_with("$argon2id$"));
        assert!(!v.contains("4711"));
        assert!(verify("4711 cologne", &v));
        assert!(!verify("4711 Cologne", &v));
        assert!(!verify("4711 cologne", "not a verifier"));
        assert_ne!(hash("4711 cologne").expect("hash"), v, "salted");
    }
}
