//! Wire types of Aparté's signaling protocol: ids, messages and error codes.
//!
//! This crate does no IO. It turns bytes a peer sent into typed messages (or a
//! typed [`ErrorCode`]) and typed messages into JSON text. Every message carries
//! the protocol version `v`; a message of another version is refused rather than
//! half understood. The full protocol is described in `docs/protocol.md`.
//!
//! The server is meant to stay blind: what participants say to each other
//! (display names, media state, later chat) travels in [`ClientMsg::Relay`] as an
//! opaque string the server bounds in size but never parses.

#![forbid(unsafe_code)]

mod error;
mod ids;
pub mod keys;
mod msg;

pub use error::{ErrorCode, ParseError};
pub use ids::{IdError, ParticipantId, RoomId, Token, TokenError};
pub use keys::{KeyHash, KeyPurpose, room_for_host_key};
pub use msg::{
    ClientMsg, IceServer, PeerInfo, PublishSlots, RemoteTrack, Role, RoomState, ServerMsg,
    TileView, TrackSource, parse_client_msg, parse_server_msg,
};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest signaling message accepted, in bytes. SDP for a dozen participants
/// with four tracks each stays well below this; so does an MLS Welcome with the
/// ratchet tree of a 100-member group (base64).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Largest opaque relay payload, in bytes.
pub const MAX_RELAY_BYTES: usize = 16 * 1024;

/// Largest MLS application message (base64), in bytes. A chat message of
/// 2,000 characters of four-byte UTF-8 is about 11 KB once sealed and
/// encoded. Application messages are copied to every member, so their bound
/// is far below [`MAX_MESSAGE_BYTES`], which commits and Welcomes need.
pub const MAX_APP_BYTES: usize = 32 * 1024;

/// Largest MLS key package (base64), in bytes. Ours are under 1 KB; anyone
/// waiting to join may send one, and it is copied to every member.
pub const MAX_KEY_PACKAGE_BYTES: usize = 8 * 1024;

/// Most participants a server can be configured to hold in one room (a
/// broadcast to hundreds). The MLS Welcome grows with the group: about
/// 250 bytes of ratchet tree per member by estimate, so ~170 KB of base64 at
/// 500, under [`MAX_MESSAGE_BYTES`]; groups of 200 are exercised by the
/// benchmark, not by tests.
pub const MAX_PARTICIPANTS_PER_ROOM: usize = 500;

/// Participants per room unless configured otherwise.
pub const DEFAULT_PARTICIPANTS_PER_ROOM: usize = 100;

/// Largest passcode, in bytes.
pub const MAX_PASSCODE_BYTES: usize = 128;

/// Largest sealed lobby name (base64url), in bytes.
pub const MAX_LOBBY_NAME_BYTES: usize = 1024;
