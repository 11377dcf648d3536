//! Signaling messages in both directions, and their parsers.

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ParseError};
use crate::ids::{ParticipantId, RoomId, Token};
use crate::{
    MAX_APP_BYTES, MAX_KEY_PACKAGE_BYTES, MAX_LOBBY_NAME_BYTES, MAX_MESSAGE_BYTES,
    MAX_PASSCODE_BYTES, MAX_RELAY_BYTES, PROTOCOL_VERSION,
};

/// A message a client sends to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Enter a room. Answered by [`ServerMsg::Welcome`] then
    /// [`ServerMsg::Offer`], or by [`ServerMsg::Waiting`] when the joiner
    /// must wait in the lobby, or by an error.
    Join {
        /// The room to enter.
        room: RoomId,
        /// A host key (which also opens a room that is not running yet) or a
        /// moderator key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<Token>,
        /// The seat this participant was given when admitted before: a
        /// reconnect with it skips the lobby, unless it was revoked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seat: Option<Token>,
        /// The room's passcode, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passcode: Option<String>,
    },
    /// While waiting in the lobby: the joiner's display name, sealed under a
    /// key derived from the link secret for this room *and this waiter's id*
    /// (base64url), so that the server can neither read it nor show it on
    /// another waiter's request. Sent once, after [`ServerMsg::Waiting`].
    LobbyName {
        /// The sealed name.
        name: String,
    },
    /// The client's SDP answer to the last [`ServerMsg::Offer`].
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// An opaque payload for one peer (`to`) or every other peer of the room.
    Relay {
        /// The one recipient, or everyone else when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<ParticipantId>,
        /// Opaque text, at most [`MAX_RELAY_BYTES`]; the server never reads it.
        payload: String,
    },
    /// Leave the room; the server closes the connection after this.
    Leave,
    /// Publish this participant's MLS key package (base64), asking to be added
    /// to the room's group. The server relays it to the group's members.
    MlsKeyPackage {
        /// Base64 of the TLS-serialized KeyPackage.
        data: String,
    },
    /// A commit for the group's `epoch`. The first commit for an epoch wins.
    MlsCommit {
        /// The epoch the commit applies to.
        epoch: u64,
        /// Base64 of the MLS commit message.
        data: String,
        /// Base64 of the MLS Welcome for the participants it adds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        welcome: Option<String>,
        /// The participants the commit adds (who get the Welcome).
        #[serde(default)]
        added: Vec<ParticipantId>,
    },
    /// An MLS application message (base64) for every other group member, or
    /// only for those in `to`.
    MlsApp {
        /// Base64 of the MLS message.
        data: String,
        /// The members it is for; empty means every other member. Ids not
        /// in the group are skipped.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        to: Vec<ParticipantId>,
    },
    /// Host or moderator: let someone in from the lobby.
    Admit {
        /// Who, as announced by [`ServerMsg::LobbyRequest`].
        peer: ParticipantId,
    },
    /// Host or moderator: refuse someone waiting in the lobby.
    Deny {
        /// Who.
        peer: ParticipantId,
    },
    /// Host or moderator: remove a participant and revoke its seat.
    Remove {
        /// Who.
        peer: ParticipantId,
    },
    /// Host: make a participant a moderator.
    Promote {
        /// Who.
        peer: ParticipantId,
    },
    /// Host or moderator: ask one participant, or everyone, to mute.
    Mute {
        /// Who, or everyone when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<ParticipantId>,
    },
    /// Change the room's settings. Absent fields stay as they are. The lobby
    /// and the lock may be changed by a moderator; the rest only by the host.
    UpdateRoom {
        /// Whether joiners wait in the lobby.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lobby: Option<bool>,
        /// Whether nobody new may enter (not even the lobby).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        locked: Option<bool>,
        /// Whether the room's settings outlive this meeting.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        persistent: Option<bool>,
        /// A new passcode, or the empty string to remove it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        passcode: Option<String>,
    },
    /// Host: end the meeting for everyone.
    End,
    /// This participant can now open `peer`'s frames (the E2EE group's keys
    /// cover it): send a keyframe of each of `peer`'s videos it receives,
    /// rather than let it wait for the next one. Frames that came before the
    /// keys were dropped, and a decoder cannot start on a delta frame. Subject
    /// to the same per-receiver throttle as RTCP keyframe requests.
    Keyframe {
        /// Whose videos.
        peer: ParticipantId,
    },
    /// How this participant shows the videos it receives, so the server sends
    /// each at the layer its tile needs and none for tiles nobody sees. Sent
    /// whenever the layout changes. A video not listed is taken as shown at
    /// full size.
    View {
        /// At most [`crate::MAX_PARTICIPANTS_PER_ROOM`] × the sources a
        /// participant publishes.
        tiles: Vec<TileView>,
        /// The participant this page shows as the active speaker (its video
        /// comes before the others but after screen shares).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        speaker: Option<ParticipantId>,
    },
}

/// A TURN server and its time-limited credentials (the TURN REST scheme:
/// the username carries the expiry, the credential is an HMAC of it under a
/// secret shared with the TURN server).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `turn:` or `turns:` URLs.
    pub urls: Vec<String>,
    /// `<expiry, Unix seconds>:aparte`: nothing about the participant.
    pub username: String,
    /// Base64 of HMAC-SHA1(secret, username).
    pub credential: String,
}

/// How one received video is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TileView {
    /// Whose video.
    pub peer: ParticipantId,
    /// Which of its videos.
    pub source: TrackSource,
    /// Width and height in device pixels; 0 × 0 when the tile is not on
    /// screen (its video is paused).
    pub width: u16,
    /// See `width`.
    pub height: u16,
}

impl ClientMsg {
    const TYPES: &'static [&'static str] = &[
        "join",
        "lobby_name",
        "answer",
        "relay",
        "leave",
        "mls_key_package",
        "mls_commit",
        "mls_app",
        "admit",
        "deny",
        "remove",
        "promote",
        "mute",
        "update_room",
        "end",
        "keyframe",
        "view",
    ];
}

/// What a participant may do in its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Takes part; no control over others.
    Guest,
    /// Admits and denies, removes guests, asks to mute, locks.
    Moderator,
    /// Everything a moderator does, plus promoting, passcode, persistence,
    /// and ending the meeting.
    Host,
}

impl Role {
    /// Whether this role may admit, remove, mute and lock.
    pub fn moderates(self) -> bool {
        matches!(self, Role::Moderator | Role::Host)
    }
}

/// The room's settings as its participants see them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoomState {
    /// Joiners wait in the lobby.
    pub lobby: bool,
    /// Nobody new may enter.
    pub locked: bool,
    /// A passcode is set.
    pub passcode: bool,
    /// The settings outlive the meeting.
    pub persistent: bool,
}

/// A message the server sends to a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The join succeeded.
    Welcome {
        /// The id the server gave this participant.
        you: ParticipantId,
        /// What this participant may do.
        role: Role,
        /// Presented on a reconnect, this skips the lobby until revoked.
        seat: Token,
        /// The room's settings.
        room: RoomState,
        /// The other participants already in the room.
        peers: Vec<PeerInfo>,
        /// Whether this participant starts the room's MLS group (nobody is in
        /// one yet); otherwise it publishes a key package to be added.
        create_group: bool,
    },
    /// Someone entered the room.
    PeerJoined {
        /// Who.
        peer: PeerInfo,
    },
    /// Someone left the room or was removed; their tracks have ended.
    PeerLeft {
        /// Who.
        peer: ParticipantId,
    },
    /// A new SDP offer from the server. The client answers with
    /// [`ClientMsg::Answer`]. The server is the only offerer, so there is no glare.
    Offer {
        /// SDP text.
        sdp: String,
        /// The m-lines on which the client publishes, by source.
        publish: PublishSlots,
        /// Every m-line on which the client receives, and whose track it carries.
        tracks: Vec<RemoteTrack>,
    },
    /// An opaque payload from a peer.
    Relay {
        /// The sender.
        from: ParticipantId,
        /// The payload as the sender wrote it.
        payload: String,
    },
    /// A participant asks to be added to the group (its key package, base64).
    MlsJoinRequest {
        /// Who asks.
        from: ParticipantId,
        /// Base64 of the KeyPackage.
        data: String,
    },
    /// A commit another member made, in the order the server accepted it.
    MlsCommit {
        /// Its author.
        from: ParticipantId,
        /// The epoch it applies to.
        epoch: u64,
        /// Base64 of the MLS commit.
        data: String,
    },
    /// The verdict on this participant's own commit for `epoch`.
    MlsCommitResult {
        /// The epoch the commit applied to.
        epoch: u64,
        /// Whether it won the epoch (else another commit did, and already arrived).
        accepted: bool,
    },
    /// The MLS Welcome that adds this participant to the group (base64).
    MlsWelcome {
        /// Base64 of the Welcome.
        data: String,
    },
    /// An MLS application message from a member (base64).
    MlsApp {
        /// Its sender.
        from: ParticipantId,
        /// Base64 of the MLS message.
        data: String,
    },
    /// Every member of the group left: this participant starts a new group.
    MlsCreateGroup,
    /// The join waits in the lobby for a host or moderator. Until a
    /// [`ServerMsg::Welcome`] (admitted) or an error `denied`, nothing else
    /// is sent, and anything but `leave` and `lobby_name` is refused with
    /// `not_admitted`.
    Waiting {
        /// This participant's id, as the hosts see it in the lobby.
        you: ParticipantId,
    },
    /// To hosts and moderators: someone waits in the lobby; sent again, with
    /// the name, when the waiter sends its sealed name.
    LobbyRequest {
        /// Who.
        peer: ParticipantId,
        /// Their sealed display name, as they sent it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// To hosts and moderators: someone left the lobby (admitted, denied or
    /// gone).
    LobbyDone {
        /// Who.
        peer: ParticipantId,
        /// Whether they were admitted.
        admitted: bool,
    },
    /// A participant's role changed.
    RoleChanged {
        /// Who.
        peer: ParticipantId,
        /// The new role.
        role: Role,
    },
    /// To a participant just promoted: its moderator key, to present on a
    /// later join. The server keeps only its hash.
    ModeratorKey {
        /// The key.
        key: Token,
    },
    /// The room's settings changed.
    RoomUpdated {
        /// The new settings.
        room: RoomState,
    },
    /// A host or moderator asked someone (or everyone) to mute. Shown to
    /// everyone; the named clients mute themselves.
    MuteRequested {
        /// Who asked.
        by: ParticipantId,
        /// Who should mute, or everyone when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peer: Option<ParticipantId>,
    },
    /// The organisation's TURN servers, with credentials that expire, for
    /// networks where media reaches the server neither over UDP nor TCP.
    /// Sent before the answer to a join, when the server is configured with
    /// TURN; the page adds them to its peer connection.
    IceServers {
        /// As `RTCIceServer`s.
        servers: Vec<IceServer>,
    },
    /// Which layers of its simulcast `source` this publisher should encode,
    /// lowest first: the others reach nobody. The lowest stays on while the
    /// source is published, so a new receiver can start at once.
    Layers {
        /// The published source.
        source: TrackSource,
        /// One flag per layer the server asked for (`l`, `m`, `h`).
        active: Vec<bool>,
    },
    /// A request was refused or something went wrong. Fatal errors are followed
    /// by the server closing the connection.
    Error {
        /// Stable code.
        code: ErrorCode,
        /// Human-readable detail in English.
        message: String,
    },
}

/// What the room says about a participant. Names are not here: they travel
/// between participants in relay payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    /// The participant's opaque id.
    pub id: ParticipantId,
    /// What it may do in the room.
    pub role: Role,
}

/// Where a client's media comes from. Each source has its own m-line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    /// Microphone audio.
    Mic,
    /// Camera video.
    Camera,
    /// Screen-share video.
    Screen,
    /// Audio captured along with a screen share (a tab's sound).
    ScreenAudio,
}

impl TrackSource {
    /// Every source, in m-line order.
    pub const ALL: [TrackSource; 4] = [
        TrackSource::Mic,
        TrackSource::Camera,
        TrackSource::Screen,
        TrackSource::ScreenAudio,
    ];

    /// Whether this source carries audio (else video).
    pub fn is_audio(self) -> bool {
        matches!(self, TrackSource::Mic | TrackSource::ScreenAudio)
    }

    /// Stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TrackSource::Mic => "mic",
            TrackSource::Camera => "camera",
            TrackSource::Screen => "screen",
            TrackSource::ScreenAudio => "screen_audio",
        }
    }
}

/// The m-line ids (mids) on which a client publishes each source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishSlots {
    /// Microphone.
    pub mic: String,
    /// Camera.
    pub camera: String,
    /// Screen video.
    pub screen: String,
    /// Screen audio.
    pub screen_audio: String,
}

impl PublishSlots {
    /// The mid of one source.
    pub fn mid(&self, source: TrackSource) -> &str {
        match source {
            TrackSource::Mic => &self.mic,
            TrackSource::Camera => &self.camera,
            TrackSource::Screen => &self.screen,
            TrackSource::ScreenAudio => &self.screen_audio,
        }
    }
}

/// One receiving m-line and the track it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteTrack {
    /// The m-line id in the offer.
    pub mid: String,
    /// Whose track it is.
    pub peer: ParticipantId,
    /// Which of their sources.
    pub source: TrackSource,
}

/// The part of every message read before its body: version and type.
#[derive(Deserialize)]
struct Envelope<'a> {
    v: Option<u32>,
    #[serde(rename = "type", borrow)]
    ty: Option<std::borrow::Cow<'a, str>>,
}

/// Parses one client message, checking size, version, type and field bounds.
pub fn parse_client_msg(text: &str) -> Result<ClientMsg, ParseError> {
    let msg: ClientMsg = parse_enveloped(text, ClientMsg::TYPES)?;
    match &msg {
        ClientMsg::Relay { payload, .. } if payload.len() > MAX_RELAY_BYTES => Err(
            ParseError::new(ErrorCode::TooLarge, "relay payload over its size limit"),
        ),
        ClientMsg::MlsApp { data, .. } if data.len() > MAX_APP_BYTES => Err(ParseError::new(
            ErrorCode::TooLarge,
            "application message over its size limit",
        )),
        ClientMsg::MlsKeyPackage { data } if data.len() > MAX_KEY_PACKAGE_BYTES => Err(
            ParseError::new(ErrorCode::TooLarge, "key package over its size limit"),
        ),
        ClientMsg::MlsKeyPackage { data } | ClientMsg::MlsApp { data, .. } if !is_base64(data) => {
            Err(ParseError::new(
                ErrorCode::InvalidField,
                "MLS data is not base64",
            ))
        }
        ClientMsg::MlsApp { to, .. } if to.len() > crate::MAX_PARTICIPANTS_PER_ROOM => Err(
            ParseError::new(ErrorCode::TooLarge, "more recipients than a room holds"),
        ),
        ClientMsg::MlsCommit { data, welcome, .. }
            if !is_base64(data) || welcome.as_deref().is_some_and(|w| !is_base64(w)) =>
        {
            Err(ParseError::new(
                ErrorCode::InvalidField,
                "MLS data is not base64",
            ))
        }
        ClientMsg::View { tiles, .. }
            if tiles.len() > crate::MAX_PARTICIPANTS_PER_ROOM * TrackSource::ALL.len() =>
        {
            Err(ParseError::new(
                ErrorCode::TooLarge,
                "more tiles than a room has tracks",
            ))
        }
        ClientMsg::MlsCommit { added, .. } if added.len() > crate::MAX_PARTICIPANTS_PER_ROOM => {
            Err(ParseError::new(
                ErrorCode::TooLarge,
                "a commit adds more members than a room holds",
            ))
        }
        ClientMsg::Join {
            passcode: Some(p), ..
        } if p.len() > MAX_PASSCODE_BYTES => Err(ParseError::new(
            ErrorCode::TooLarge,
            "passcode over its size limit",
        )),
        ClientMsg::LobbyName { name } if name.len() > MAX_LOBBY_NAME_BYTES => Err(ParseError::new(
            ErrorCode::TooLarge,
            "sealed name over its size limit",
        )),
        ClientMsg::LobbyName { name } if !is_base64(name) => Err(ParseError::new(
            ErrorCode::InvalidField,
            "sealed name is not base64",
        )),
        ClientMsg::UpdateRoom {
            passcode: Some(p), ..
        } if p.len() > MAX_PASSCODE_BYTES => Err(ParseError::new(
            ErrorCode::TooLarge,
            "passcode over its size limit",
        )),
        _ => Ok(msg),
    }
}

/// Standard or URL-safe base64, with or without padding, not empty.
fn is_base64(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'='))
}

/// Parses one server message (used by clients such as the bot).
pub fn parse_server_msg(text: &str) -> Result<ServerMsg, ParseError> {
    const TYPES: &[&str] = &[
        "welcome",
        "peer_joined",
        "peer_left",
        "offer",
        "relay",
        "mls_join_request",
        "mls_commit",
        "mls_commit_result",
        "mls_welcome",
        "mls_app",
        "mls_create_group",
        "waiting",
        "lobby_request",
        "lobby_done",
        "role_changed",
        "moderator_key",
        "room_updated",
        "mute_requested",
        "ice_servers",
        "layers",
        "error",
    ];
    parse_enveloped(text, TYPES)
}

fn parse_enveloped<T: serde::de::DeserializeOwned>(
    text: &str,
    types: &[&str],
) -> Result<T, ParseError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ParseError::new(
            ErrorCode::TooLarge,
            "message over the size limit",
        ));
    }
    let env: Envelope = serde_json::from_str(text)
        .map_err(|_| ParseError::new(ErrorCode::BadMessage, "not a JSON object"))?;
    if env.v != Some(PROTOCOL_VERSION) {
        return Err(ParseError::new(
            ErrorCode::UnsupportedVersion,
            "missing or unsupported protocol version",
        ));
    }
    match env.ty.as_deref() {
        Some(ty) if types.contains(&ty) => {}
        Some(_) => {
            return Err(ParseError::new(
                ErrorCode::UnknownType,
                "unknown message type",
            ));
        }
        None => {
            return Err(ParseError::new(
                ErrorCode::BadMessage,
                "message has no type",
            ));
        }
    }
    serde_json::from_str(text).map_err(|e| {
        // An id or token of the wrong form is a field error, not a shape error.
        let e = e.to_string();
        if e.contains("room id") || e.contains("a token is") {
            ParseError::new(ErrorCode::InvalidField, "room id of the wrong form")
        } else {
            ParseError::new(
                ErrorCode::BadMessage,
                "message fields do not match its type",
            )
        }
    })
}

/// Serializes a message with the protocol version, as sent on the wire.
fn to_wire<T: Serialize>(msg: &T) -> String {
    let mut value = serde_json::to_value(msg).unwrap_or(serde_json::Value::Null);
    if let Some(obj) = value.as_object_mut() {
        obj.insert("v".into(), PROTOCOL_VERSION.into());
    }
    value.to_string()
}

impl ServerMsg {
    /// The JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        to_wire(self)
    }

    /// About how many bytes this message takes on the wire: its variable
    /// fields plus a constant for the rest. Queues towards a client are
    /// bounded with it, without serializing twice.
    pub fn wire_len(&self) -> usize {
        const FIXED: usize = 96;
        FIXED
            + match self {
                ServerMsg::Offer { sdp, tracks, .. } => sdp.len() + tracks.len() * 48,
                ServerMsg::Relay { payload, .. } => payload.len(),
                ServerMsg::MlsJoinRequest { data, .. }
                | ServerMsg::MlsCommit { data, .. }
                | ServerMsg::MlsWelcome { data }
                | ServerMsg::MlsApp { data, .. } => data.len(),
                ServerMsg::LobbyRequest { name, .. } => name.as_ref().map_or(0, String::len),
                ServerMsg::Welcome { peers, .. } => peers.len() * 40,
                ServerMsg::Error { message, .. } => message.len(),
                _ => 0,
            }
    }

    /// An error message with its code and detail.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        ServerMsg::Error {
            code,
            message: message.into(),
        }
    }
}

impl ClientMsg {
    /// The JSON text sent on the wire.
    pub fn to_json(&self) -> String {
        to_wire(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> ErrorCode {
        parse_client_msg(text).expect_err("must be refused").code
    }

    #[test]
    fn round_trip() {
        let msgs = [
            ClientMsg::Join {
                room: RoomId::parse("room-123").expect("valid"),
                key: None,
                seat: None,
                passcode: None,
            },
            ClientMsg::Join {
                room: RoomId::parse("room-123").expect("valid"),
                key: Some(Token::parse("abcdefghijklmnopq").expect("valid")),
                seat: Some(Token::parse("abcdefghijklmnopr").expect("valid")),
                passcode: Some("1234".into()),
            },
            ClientMsg::LobbyName {
                name: "c2VhbGVk".into(),
            },
            ClientMsg::Mute { peer: None },
            ClientMsg::UpdateRoom {
                lobby: Some(false),
                locked: None,
                persistent: None,
                passcode: Some(String::new()),
            },
            ClientMsg::End,
            ClientMsg::Answer { sdp: "v=0".into() },
            ClientMsg::Relay {
                to: Some(ParticipantId(3)),
                payload: "x".into(),
            },
            ClientMsg::Relay {
                to: None,
                payload: "{}".into(),
            },
            ClientMsg::Leave,
        ];
        for m in msgs {
            assert_eq!(parse_client_msg(&m.to_json()), Ok(m));
        }
        let s = ServerMsg::error(ErrorCode::RoomFull, "full");
        assert_eq!(parse_server_msg(&s.to_json()), Ok(s));
    }

    #[test]
    fn refusals_have_codes() {
        assert_eq!(code("{not json"), ErrorCode::BadMessage);
        assert_eq!(code("[]"), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"v":1}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"leave"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(
            code(r#"{"v":2,"type":"leave"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(code(r#"{"v":1,"type":"dance"}"#), ErrorCode::UnknownType);
        assert_eq!(code(r#"{"v":1,"type":"join"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"v":1,"type":"join","room":"a/b"}"#),
            ErrorCode::InvalidField
        );
        let big = format!(
            r#"{{"v":1,"type":"answer","sdp":"{}"}}"#,
            "a".repeat(300_000)
        );
        assert_eq!(code(&big), ErrorCode::TooLarge);
        let relay = format!(
            r#"{{"v":1,"type":"relay","payload":"{}"}}"#,
            "a".repeat(MAX_RELAY_BYTES + 1)
        );
        assert_eq!(code(&relay), ErrorCode::TooLarge);
        let app = format!(
            r#"{{"v":1,"type":"mls_app","data":"{}"}}"#,
            "A".repeat(crate::MAX_APP_BYTES + 1)
        );
        assert_eq!(code(&app), ErrorCode::TooLarge);
        let kp = format!(
            r#"{{"v":1,"type":"mls_key_package","data":"{}"}}"#,
            "A".repeat(crate::MAX_KEY_PACKAGE_BYTES + 1)
        );
        assert_eq!(code(&kp), ErrorCode::TooLarge);
        assert_eq!(
            code(r#"{"v":1,"type":"mls_app","data":"not base64!"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"v":1,"type":"mls_commit","epoch":1,"data":"AAAA","welcome":"<html>"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"v":1,"type":"join","room":"room-1","key":"short"}"#),
            ErrorCode::InvalidField
        );
        assert_eq!(
            code(r#"{"v":1,"type":"lobby_name","name":"<b>bob</b>"}"#),
            ErrorCode::InvalidField
        );
        let long = format!(
            r#"{{"v":1,"type":"join","room":"room-1","passcode":"{}"}}"#,
            "1".repeat(MAX_PASSCODE_BYTES + 1)
        );
        assert_eq!(code(&long), ErrorCode::TooLarge);
        assert_eq!(code(r#"{"v":1,"type":"admit"}"#), ErrorCode::BadMessage);
        let crowd: Vec<String> = (0..=crate::MAX_PARTICIPANTS_PER_ROOM)
            .map(|i| i.to_string())
            .collect();
        let crowd = format!(
            r#"{{"v":1,"type":"mls_app","data":"AAAA","to":[{}]}}"#,
            crowd.join(",")
        );
        assert_eq!(code(&crowd), ErrorCode::TooLarge);
        let tile = r#"{"peer":1,"source":"camera","width":1,"height":1}"#;
        let tiles = |n: usize| {
            format!(
                r#"{{"v":1,"type":"view","tiles":[{}]}}"#,
                vec![tile; n].join(",")
            )
        };
        let most = crate::MAX_PARTICIPANTS_PER_ROOM * TrackSource::ALL.len();
        assert!(matches!(
            parse_client_msg(&tiles(most)),
            Ok(ClientMsg::View { .. })
        ));
        assert_eq!(code(&tiles(most + 1)), ErrorCode::TooLarge);
        assert_eq!(
            code(
                r#"{"v":1,"type":"view","tiles":[{"peer":1,"source":"camera","width":70000,"height":1}]}"#
            ),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(r#"{"v":1,"type":"mls_app","data":"AAAA","to":["a"]}"#),
            ErrorCode::BadMessage
        );
    }

    #[test]
    fn application_messages_name_their_recipients_or_none() {
        let everyone = parse_client_msg(r#"{"v":1,"type":"mls_app","data":"AAAA"}"#);
        assert_eq!(
            everyone,
            Ok(ClientMsg::MlsApp {
                data: "AAAA".into(),
                to: vec![]
            })
        );
        let some = parse_client_msg(r#"{"v":1,"type":"mls_app","data":"AAAA","to":[3,5]}"#);
        assert_eq!(
            some,
            Ok(ClientMsg::MlsApp {
                data: "AAAA".into(),
                to: vec![ParticipantId(3), ParticipantId(5)]
            })
        );
    }
}
