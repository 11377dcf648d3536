//! The meeting link's secret and the keys derived from it.
//!
//! A link is `https://host/m/ROOM#SECRET`. Browsers never send the fragment
//! to the server, so the server never learns SECRET. Everything that proves
//! "this participant holds the link" is derived from it here, each key with its
//! own HKDF label so one can never stand in for another.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
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
    pub fn psk(&self) -> [u8; 32] {
        self.derive(b"mls external psk")
    }

    /// The MLS group id of the meeting in `room`: only holders of the link
    /// can compute it, and it differs from room to room, so a joiner can
    /// tell its meeting's group from one the server made or one of another
    /// room (the group context names the room).
    pub fn group_id(&self, room: &str) -> [u8; 16] {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.derive(b"mls group id"))
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"aparte group v1");
        mac.update(room.as_bytes());
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        id
    }

    /// The key of the join MAC: members add only key packages that carry it.
    fn join_key(&self) -> [u8; 32] {
        self.derive(b"join mac")
    }

    /// MAC binding a participant id to its MLS signature key.
    pub fn join_mac(&self, participant: u64, signature_key: &[u8]) -> [u8; 32] {
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

/// Longest display name sealed for the lobby, in bytes (longer names are cut
/// at a character boundary).
pub const MAX_LOBBY_NAME: usize = 256;

impl LinkSecret {
    fn lobby_cipher(&self) -> Aes128Gcm {
        let key = self.derive(b"lobby name");
        Aes128Gcm::new_from_slice(&key[..16])
            .unwrap_or_else(|_| unreachable!("16 bytes is an AES-128 key"))
    }

    /// Seals a display name for the lobby of `room`, as the waiter the
    /// server calls `waiter`: only holders of the link can read it, and it
    /// opens neither in another room nor as another waiter's (the server
    /// cannot show one person's name on someone else's request). `nonce` must
    /// be 12 fresh random bytes. Returns base64url text.
    pub fn seal_lobby_name(&self, room: &str, waiter: u64, name: &str, nonce: [u8; 12]) -> String {
        let mut end = name.len().min(MAX_LOBBY_NAME);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        let aad = lobby_aad(room, waiter);
        let ct = self
            .lobby_cipher()
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &name.as_bytes()[..end],
                    aad: &aad,
                },
            )
            .unwrap_or_default();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        crate::b64::encode(&out)
    }

    /// Opens [`LinkSecret::seal_lobby_name`] output; `None` when it was not
    /// sealed with this link, for this room and this waiter, or is not text.
    pub fn open_lobby_name(&self, room: &str, waiter: u64, sealed: &str) -> Option<String> {
        let bytes = crate::b64::decode(sealed)?;
        if bytes.len() < 12 + 16 {
            return None;
        }
        let (nonce, ct) = bytes.split_at(12);
        let aad = lobby_aad(room, waiter);
        let pt = self
            .lobby_cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: ct, aad: &aad })
            .ok()?;
        String::from_utf8(pt).ok()
    }
}

/// What a lobby name is bound to: the version, the room and the waiter's id
/// (lengths first, so no two pairs make the same bytes).
fn lobby_aad(room: &str, waiter: u64) -> Vec<u8> {
    let mut aad = b"aparte lobby v2".to_vec();
    aad.extend_from_slice(&(room.len() as u32).to_be_bytes());
    aad.extend_from_slice(room.as_bytes());
    aad.extend_from_slice(&waiter.to_be_bytes());
    aad
}

#[cfg(test)]
mod tests {
    #[test]
    fn lobby_names_open_only_with_the_link_room_and_waiter() {
        let s = LinkSecret::from_bytes([7; 16]);
        let sealed = s.seal_lobby_name("room-1", 41, "Amélie", [1; 12]);
        assert!(!sealed.contains("Am"));
        assert_eq!(
            s.open_lobby_name("room-1", 41, &sealed).as_deref(),
            Some("Amélie")
        );
        assert_eq!(s.open_lobby_name("room-2", 41, &sealed), None);
        // Shown by the server on another waiter's request: does not open.
        assert_eq!(s.open_lobby_name("room-1", 42, &sealed), None);
        let other = LinkSecret::from_bytes([8; 16]);
        assert_eq!(other.open_lobby_name("room-1", 41, &sealed), None);
        assert_eq!(s.open_lobby_name("room-1", 41, "AAAA"), None);
        let long = "é".repeat(300);
        let opened = s.open_lobby_name("r", 1, &s.seal_lobby_name("r", 1, &long, [2; 12]));
        assert_eq!(opened.map(|n| n.len()), Some(256));
    }

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
