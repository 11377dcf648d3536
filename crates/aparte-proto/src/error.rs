//! Stable error codes sent to clients, and the parse error that carries one.

use serde::{Deserialize, Serialize};

/// An error a client is told about. The serialized names are stable: clients
/// and tests match on them, so a variant is never renamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The message is not valid JSON or does not have the shape of any message.
    BadMessage,
    /// The message is valid JSON but its `type` is not one this server knows.
    UnknownType,
    /// The message's `v` is not [`crate::PROTOCOL_VERSION`].
    UnsupportedVersion,
    /// The message is larger than [`crate::MAX_MESSAGE_BYTES`], or a field in it
    /// is larger than its own bound.
    TooLarge,
    /// A field has a value outside its allowed form (for example a room id).
    InvalidField,
    /// `join` on a connection that already joined.
    AlreadyJoined,
    /// A message that needs a joined connection arrived before `join`.
    NotJoined,
    /// The room cannot take one more participant.
    RoomFull,
    /// The SDP could not be parsed or does not answer the pending offer.
    InvalidSdp,
    /// An answer arrived while no offer was waiting for one.
    NoPendingOffer,
    /// The relay target is not in the room.
    UnknownPeer,
    /// An MLS commit or application message from a participant that is not
    /// (yet) a member of the room's group.
    NotInGroup,
    /// The media connection failed or stopped answering ICE consent checks;
    /// the participant was removed.
    ConnectionLost,
    /// The server failed in a way that is not the client's fault.
    Internal,
    /// A message that needs admission came from someone waiting in the lobby.
    NotAdmitted,
    /// The room does not exist, or it is locked. Both answer the same, so a
    /// stranger cannot tell a locked meeting from no meeting.
    RoomUnavailable,
    /// The room needs a passcode and the join carried none.
    PasscodeRequired,
    /// The passcode was wrong.
    WrongPasscode,
    /// Too many messages, joins or passcode attempts; try again later.
    RateLimited,
    /// Only the host (or a moderator) may do this.
    Forbidden,
    /// A host or moderator removed this participant; its seat is revoked.
    Removed,
    /// A host or moderator refused this participant's entry.
    Denied,
    /// The host ended the meeting for everyone.
    MeetingEnded,
    /// The participant publishes more tracks than the server allows; the
    /// extra track is not forwarded.
    TooManyTracks,
    /// The connection stayed idle longer than the server allows (no join, or
    /// no sign of life); it is closed.
    Timeout,
    /// The server is at a limit shared by everyone (for example passcode
    /// checks at once, or connections); try again shortly.
    ServerBusy,
    /// A quota was reached (for example persistent rooms); nothing was changed.
    QuotaExceeded,
}

impl ErrorCode {
    /// The stable wire name of this code.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadMessage => "bad_message",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::AlreadyJoined => "already_joined",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::RoomFull => "room_full",
            ErrorCode::InvalidSdp => "invalid_sdp",
            ErrorCode::NoPendingOffer => "no_pending_offer",
            ErrorCode::UnknownPeer => "unknown_peer",
            ErrorCode::NotInGroup => "not_in_group",
            ErrorCode::ConnectionLost => "connection_lost",
            ErrorCode::Internal => "internal",
            ErrorCode::NotAdmitted => "not_admitted",
            ErrorCode::RoomUnavailable => "room_unavailable",
            ErrorCode::PasscodeRequired => "passcode_required",
            ErrorCode::WrongPasscode => "wrong_passcode",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::Removed => "removed",
            ErrorCode::Denied => "denied",
            ErrorCode::MeetingEnded => "meeting_ended",
            ErrorCode::TooManyTracks => "too_many_tracks",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ServerBusy => "server_busy",
            ErrorCode::QuotaExceeded => "quota_exceeded",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a message from a peer was refused. The detail is for humans and never
/// echoes the peer's input back (it may be hostile or private).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {detail}")]
pub struct ParseError {
    /// The code the client is sent.
    pub code: ErrorCode,
    /// A short explanation in English.
    pub detail: &'static str,
}

impl ParseError {
    pub(crate) fn new(code: ErrorCode, detail: &'static str) -> Self {
        ParseError { code, detail }
    }
}
