//! The meeting link's secret and the keys derived from it.
//!
//! A link is `https://host/m/ROOM#SECRET`. Browsers never send the fragment
//! to the server, so the server never learns SECRET. Everything that proves
//! "this participant holds the link" is derived from it here, each key with its
//! own HKDF label so one can never stand in for another.

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::E2eeError;

/// Bytes of entropy in a link secret.
pub const LINK_SECRET_BYTES: usize = 16;

/// The secret carried in a meeting link's fragment. It has no `Debug` output
/// and is wiped from memory when dropped.
#[derive(Clone)]
pub struct LinkSecret([u8; LINK_SECRET_BYTES]);

impl std::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSecret(..)")
    }
}

impl Drop for LinkSecret {
    fn drop(&mut self) {
        // Best effort: the compiler may have made copies, but not of this one.
        self.0.iter_mut().for_each(|b| *b = 0);
    }
}

impl LinkSecret {
    /// A secret from `LINK_SECRET_BYTES` random bytes (the caller's RNG).
    pub fn from_bytes(bytes: [u8; LINK_SECRET_BYTES]) -> Self {
        LinkSecret(bytes)
    }

    /// Parses the base64url text of a link fragment (no padding).
    pub fn parse(text: &str) -> Result<Self, E2eeError> {
        let bytes = crate::b64::decode(text).ok_or(E2eeError::BadLinkSecret)?;
        let arr: [u8; LINK_SECRET_BYTES] =
            bytes.try_into().map_err(|_| E2eeError::BadLinkSecret)?;
        Ok(LinkSecret(arr))
    }

    /// The base64url text for a link fragment.
    pub fn encode(&self) -> String {
        crate::b64::encode(&self.0)
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(b"aparte link v1"), &self.0);
        let mut out = [0u8; 32];
        // 32 bytes is always a valid HKDF-SHA256 output length.
        let _ = hk.expand(label, &mut out);
        out
    }

    /// The external PSK every commit that adds members carries: a joiner that
    /// lacks the link cannot compute the epoch secrets from its Welcome.
    pub(crate) fn psk(&self) -> [u8; 32] {
        self.derive(b"mls external psk")
    }

    /// The key of the join MAC: members add only key packages that carry it.
    fn join_key(&self) -> [u8; 32] {
        self.derive(b"join mac")
    }

    /// MAC binding a participant id to its MLS signature key.
    pub(crate) fn join_mac(&self, participant: u64, signature_key: &[u8]) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.join_key())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"aparte join v1");
        mac.update(&participant.to_be_bytes());
        mac.update(signature_key);
        mac.finalize().into_bytes().into()
    }

    /// Checks a join MAC in constant time.
    pub(crate) fn verify_join_mac(
        &self,
        participant: u64,
        signature_key: &[u8],
        tag: &[u8],
    ) -> bool {
        let expected = self.join_mac(participant, signature_key);
        tag.len() == expected.len()
            && tag
                .iter()
                .zip(expected.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_parse_round_trip() {
        let s = LinkSecret::from_bytes(*b"0123456789abcdef");
        let text = s.encode();
        assert_eq!(text.len(), 22);
        let back = LinkSecret::parse(&text).expect("valid");
        assert_eq!(back.0, s.0);
        assert!(LinkSecret::parse("short").is_err());
        assert!(LinkSecret::parse("has+plus/slash==").is_err());
        assert_eq!(format!("{s:?}"), "LinkSecret(..)");
    }

    #[test]
    fn labels_separate_keys() {
        let s = LinkSecret::from_bytes([7; 16]);
        assert_ne!(s.psk(), s.join_key());
        let tag = s.join_mac(3, b"sig");
        assert!(s.verify_join_mac(3, b"sig", &tag));
        assert!(!s.verify_join_mac(4, b"sig", &tag));
        assert!(!s.verify_join_mac(3, b"sig2", &tag));
        assert!(!s.verify_join_mac(3, b"sig", &tag[..31]));
        let other = LinkSecret::from_bytes([8; 16]);
        assert!(!other.verify_join_mac(3, b"sig", &tag));
    }
}
