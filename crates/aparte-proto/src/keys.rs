//! Capabilities: the host key, moderator keys and seats.
//!
//! A capability is a random [`Token`] its holder presents when joining. The
//! server keeps only its [`KeyHash`] (SHA-256 under a purpose label), so a
//! leaked server state or database grants nothing.
//!
//! The host key also names its room: a meeting's room id is derived from the
//! host key ([`room_for_host_key`]), so only the holder of that key can open
//! the room, and nobody can squat a room id before its host arrives.

use sha2::{Digest, Sha256};

use crate::ids::{RoomId, Token};

/// What a capability is for. Each purpose hashes under its own label, so a
/// seat can never stand in for a moderator key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// The host key: opens the room and makes its holder the host.
    Host,
    /// A moderator key, issued by the server when the host promotes someone.
    Moderator,
    /// A seat, issued on admission: lets its holder reconnect without waiting
    /// in the lobby again, until it is revoked.
    Seat,
}

impl KeyPurpose {
    fn label(self) -> &'static [u8] {
        match self {
            KeyPurpose::Host => b"aparte/v1/host",
            KeyPurpose::Moderator => b"aparte/v1/moderator",
            KeyPurpose::Seat => b"aparte/v1/seat",
        }
    }
}

/// The hash of a capability, as the server stores it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hashes `token` for `purpose`.
    pub fn of(purpose: KeyPurpose, token: &Token) -> Self {
        let mut h = Sha256::new();
        h.update(purpose.label());
        h.update([0]);
        h.update(token.as_str().as_bytes());
        KeyHash(h.finalize().into())
    }

    /// Lowercase hex, for storage.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses [`KeyHash::to_hex`] output.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(KeyHash(out))
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A prefix is enough to tell hashes apart in a test failure.
        write!(f, "KeyHash({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The room id a host key opens: 16 base64url characters (96 bits) of
/// SHA-256 over the key under its own label.
pub fn room_for_host_key(key: &Token) -> RoomId {
    let mut h = Sha256::new();
    h.update(b"aparte/v1/room");
    h.update([0]);
    h.update(key.as_str().as_bytes());
    let digest = h.finalize();
    let mut text = String::with_capacity(16);
    for chunk in digest[..12].chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(chunk[1]) << 8) | u32::from(chunk[2]);
        for shift in [18, 12, 6, 0] {
            text.push(char::from(B64URL[((n >> shift) & 63) as usize]));
        }
    }
    RoomId::parse(&text).unwrap_or_else(|_| unreachable!("16 base64url characters form a room id"))
}

/// A fresh token from 32 bytes of the caller's randomness, base64url.
pub fn token_from_bytes(bytes: [u8; 32]) -> Token {
    let mut text = String::with_capacity(43);
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        let chars = chunk.len() + 1;
        for shift in [18, 12, 6, 0].into_iter().take(chars) {
            text.push(char::from(B64URL[((n >> shift) & 63) as usize]));
        }
    }
    Token::parse(&text).unwrap_or_else(|_| unreachable!("43 base64url characters form a token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_and_rooms_are_separate() {
        let t = token_from_bytes([7; 32]);
        assert_eq!(t.as_str().len(), 43);
        assert_ne!(
            KeyHash::of(KeyPurpose::Host, &t),
            KeyHash::of(KeyPurpose::Seat, &t)
        );
        let room = room_for_host_key(&t);
        assert_eq!(room.as_str().len(), 16);
        assert_eq!(room, room_for_host_key(&t));
        assert_ne!(room, room_for_host_key(&token_from_bytes([8; 32])));
        let h = KeyHash::of(KeyPurpose::Moderator, &t);
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
    }

    #[test]
    fn room_id_matches_the_pages_derivation() {
        // The same vector is checked against web/js/keys.js by
        // e2e/tests/keys.test.js (and was computed independently with
        // Python's hashlib): the page and the server derive one room id.
        let t = Token::parse("QXBhcnRlVGVzdEhvc3RLZXkwMDAwMDAwMDAwMDAwMDAwMDAwMA").expect("token");
        assert_eq!(room_for_host_key(&t).as_str(), "XS__WYBNMxm4IlZp");
        // token_from_bytes is base64url without padding.
        assert_eq!(
            token_from_bytes([0xfb; 32]).as_str(),
            "-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_v7-_s"
        );
    }
}
