//! Identifier newtypes: room ids chosen by clients, participant ids chosen by the server.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A room id as it appears in a meeting link (`/m/ROOM`). It is a name, not a
/// secret: the link's secret lives in the URL fragment and never reaches the
/// server. Allowed form: 6 to 64 characters of `A-Z a-z 0-9 - _`.
///
/// The text is shared: cloning a room id (the SFU does it for every forwarded
/// frame) costs a reference count, not an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomId(Arc<str>);

/// Why an id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a room id is 6 to 64 characters of A-Z, a-z, 0-9, '-' and '_'")]
pub struct IdError;

impl RoomId {
    /// Parses a room id, refusing anything outside the allowed form.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let ok_len = (6..=64).contains(&s.len());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok_len && ok_chars {
            Ok(RoomId(Arc::from(s)))
        } else {
            Err(IdError)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for RoomId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for RoomId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        RoomId::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for RoomId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A capability's secret text (a host key, moderator key or seat): 16 to 64
/// base64url characters. Its `Debug` output hides the value, so it can never
/// reach a log through a formatted message.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(Box<str>);

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a token is 16 to 64 characters of A-Z, a-z, 0-9, '-' and '_'")]
pub struct TokenError;

impl Token {
    /// Parses a token, refusing anything outside the allowed form.
    pub fn parse(s: &str) -> Result<Self, TokenError> {
        let ok_len = (16..=64).contains(&s.len());
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok_len && ok_chars {
            Ok(Token(s.into()))
        } else {
            Err(TokenError)
        }
    }

    /// The secret text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Serialize for Token {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Token::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An opaque participant id, unique for the server's lifetime. It says nothing
/// about who the participant is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ParticipantId(pub u64);

impl std::fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "p{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_id_form() {
        assert!(RoomId::parse("abc-DEF_123").is_ok());
        assert!(RoomId::parse("short").is_err());
        assert!(RoomId::parse("has space").is_err());
        assert!(RoomId::parse("../../etc").is_err());
        assert!(RoomId::parse(&"a".repeat(65)).is_err());
        assert!(RoomId::parse("ünïcode-room").is_err());
    }

    #[test]
    fn token_form_and_debug() {
        let t = Token::parse("abcdefghijklmnop").expect("valid");
        assert_eq!(format!("{t:?}"), "Token(..)");
        assert!(Token::parse("short").is_err());
        assert!(Token::parse(&"a".repeat(65)).is_err());
        assert!(Token::parse("abcdefghijklmno=").is_err());
    }
}
