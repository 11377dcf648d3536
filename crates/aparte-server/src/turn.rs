//! Time-limited TURN credentials, in the scheme coturn checks with
//! `use-auth-secret` (the "TURN REST API" draft): the username is the expiry
//! time, the password an HMAC-SHA1 of the username under a secret the TURN
//! server shares. The server hands each joiner one; nothing names the
//! participant, nothing lasts past [`TTL`], and no user list is kept.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aparte_proto::IceServer;
use base64::Engine;
use hmac::{Hmac, Mac};

/// How long a credential works for.
pub const TTL: Duration = Duration::from_secs(12 * 3600);

/// The TURN servers `urls`, with a credential made at `now` from `secret`.
pub fn ice_server(urls: &[String], secret: &str, now: SystemTime) -> IceServer {
    let expiry = now.duration_since(UNIX_EPOCH).unwrap_or_default() + TTL;
    let username = format!("{}:aparte", expiry.as_secs());
    IceServer {
        urls: urls.to_vec(),
        credential: credential(secret, &username),
        username,
    }
}

/// Base64 of HMAC-SHA1(`secret`, `username`).
pub fn credential(secret: &str, username: &str) -> String {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) else {
        // HMAC takes keys of any length; this arm is never taken.
        return String::new();
    };
    mac.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_expire_and_match_the_scheme() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let s = ice_server(
            &["turns:turn.example.org:443?transport=tcp".into()],
            "secret",
            now,
        );
        assert_eq!(s.username, format!("{}:aparte", 1_700_000_000 + 12 * 3600));
        // HMAC-SHA1("secret", "1700043200:aparte"), computed with openssl:
        // printf %s 1700043200:aparte | openssl dgst -sha1 -hmac secret -binary | base64
        assert_eq!(s.credential, "zGRcSuvBmGa1ivhnadthcPYIcCk=");
        assert_ne!(
            credential("secret", "1:aparte"),
            credential("other", "1:aparte")
        );
    }
}
