//! What a bot received, stream by stream.

use aparte_proto::{ErrorCode, ParticipantId, Role, RoomState, Token, TrackSource};

use crate::payload::FrameInfo;

/// Latency samples kept per stream, at most.
const MAX_LATENCY_SAMPLES: usize = 100_000;
/// Most width changes a stream report keeps.
const MAX_WIDTH_CHANGES: usize = 1000;

/// What one bot received.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotReport {
    /// The bot's participant id.
    pub id: Option<ParticipantId>,
    /// One entry per received stream, sorted by peer and source.
    pub streams: Vec<StreamReport>,
    /// Frames that arrived on an m-line the bot was not told about.
    pub unexpected_frames: u64,
    /// Frames this bot published.
    pub sent_frames: u64,
    /// Whether the media connection is up.
    pub connected: bool,
    /// Keyframe requests that reached this bot's published video.
    pub keyframe_requests_received: u64,
    /// `layers` messages received (the server changed which camera layers
    /// it wants).
    pub layers_told: u64,
    /// Frames sent on each layer of the camera (one entry without simulcast).
    pub camera_layers_sent: Vec<u64>,
    /// UDP datagrams received from the server (media, RTCP, STUN, DTLS).
    pub datagrams_in: u64,
    /// When ICE and DTLS completed, µs on the bots' shared clock.
    pub connected_us: Option<u64>,
    /// What end-to-end encryption did.
    pub e2ee: E2eeReport,
    /// Roles, lobby and host controls as this bot saw them.
    pub control: ControlReport,
}

/// Roles, lobby and host controls, as one bot saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControlReport {
    /// The bot's id while it waits in the lobby.
    pub waiting: Option<ParticipantId>,
    /// Its role, once admitted.
    pub role: Option<Role>,
    /// The seat it was given.
    pub seat: Option<Token>,
    /// The moderator key it was given when promoted.
    pub moderator_key: Option<Token>,
    /// The room's settings, as last announced.
    pub room: Option<RoomState>,
    /// Lobby requests it saw, with the name opened with the link (None when
    /// it could not be opened).
    pub lobby: Vec<(ParticipantId, Option<String>)>,
    /// Lobby entries resolved, and whether each was admitted.
    pub lobby_done: Vec<(ParticipantId, bool)>,
    /// Mute requests: who asked, and whom (None: everyone).
    pub mute_requests: Vec<(ParticipantId, Option<ParticipantId>)>,
    /// Whether the bot muted itself on request.
    pub muted: bool,
    /// Every error code the server sent it, in order.
    pub errors: Vec<ErrorCode>,
}

/// The bot's end-to-end encryption state and what came through it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct E2eeReport {
    /// Current MLS epoch.
    pub epoch: Option<u64>,
    /// Participants the group keys cover.
    pub members: Vec<ParticipantId>,
    /// The security code's digits.
    pub security_code: Option<String>,
    /// Application messages received (names and chat), as JSON text.
    pub messages: Vec<(ParticipantId, String)>,
    /// Whether the group removed this bot.
    pub removed: bool,
    /// Frames not sent because no key could seal them (fail closed).
    pub frames_not_sent: u64,
    /// Things the E2EE layer refused, with reasons.
    pub refusals: Vec<String>,
    /// Each epoch this bot entered, and when (µs on the bots' shared clock).
    pub epoch_changes: Vec<(u64, u64)>,
}

impl E2eeReport {
    /// The last display name `peer` announced.
    pub fn name_of(&self, peer: ParticipantId) -> Option<String> {
        self.messages.iter().rev().find_map(|(from, text)| {
            let v: serde_json::Value = serde_json::from_str(text).ok()?;
            (*from == peer && v["t"] == "state").then(|| v["name"].as_str().map(str::to_owned))?
        })
    }

    /// Chat texts received, with their senders.
    pub fn chats(&self) -> Vec<(ParticipantId, String)> {
        self.messages
            .iter()
            .filter_map(|(from, text)| {
                let v: serde_json::Value = serde_json::from_str(text).ok()?;
                (v["t"] == "chat").then(|| Some((*from, v["text"].as_str()?.to_owned())))?
            })
            .collect()
    }
}

impl BotReport {
    /// The stream of `peer`'s `source`, if any frame of it arrived.
    pub fn stream(&self, peer: ParticipantId, source: TrackSource) -> Option<&StreamReport> {
        self.streams
            .iter()
            .find(|s| s.peer == peer && s.source == source)
    }

    /// Every frame of every stream intact, from the right sender, in order.
    pub fn all_intact(&self) -> bool {
        self.unexpected_frames == 0 && self.streams.iter().all(StreamReport::intact)
    }
}

/// What arrived of one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamReport {
    /// Whose stream.
    pub peer: ParticipantId,
    /// Which source.
    pub source: TrackSource,
    /// Frames received intact.
    pub frames: u64,
    /// Bytes of those frames.
    pub bytes: u64,
    /// Keyframes among them.
    pub keyframes: u64,
    /// Sequence number of the first and last frame received.
    pub first_seq: Option<u32>,
    /// Last sequence number received.
    pub last_seq: Option<u32>,
    /// Frames skipped between the first and last received.
    pub lost: u64,
    /// Frames that arrived after a later one.
    pub out_of_order: u64,
    /// Frames whose checksum, length or magic was wrong.
    pub corrupt: u64,
    /// Frames made by someone else than the track's announced owner.
    pub wrong_sender: u64,
    /// Frames that did not open (no key, or failed authentication).
    pub undecryptable: u64,
    /// Frames that opened only with another member's key than the track's
    /// owner's: relabelled by the server, refused by the E2EE layer.
    pub relabelled: u64,
    /// Frames whose counter was already opened (replays), refused.
    pub replayed: u64,
    /// Frames sealed with a key of an epoch this bot left more than the
    /// grace ago: the sender missed a commit.
    pub behind: u64,
    /// Receive time minus send time, µs, one per frame (bounded).
    pub latency_us: Vec<u32>,
    /// When the first intact frame arrived, µs on the bots' shared clock.
    pub first_us: Option<u64>,
    /// Frames that came after a gap in RTP sequence numbers (str0m's
    /// depacketizer says they are not contiguous).
    pub discontinuities: u64,
    /// Video frames whose RTP timestamp was not after the previous one's.
    pub time_backwards: u64,
    /// The last frame's RTP timestamp.
    pub last_time: Option<u64>,
    /// The layer of the last frame (simulcast).
    pub layer: Option<u8>,
    /// Frames that began a run of another layer than the frame before and
    /// were not keyframes: a switch the receiver could not decode from.
    pub switches_off_keyframe: u64,
    /// Width of the last keyframe (of a simulcast camera: which layer).
    pub width: u16,
    /// Each width the stream changed to, in order (bounded).
    pub widths: Vec<u16>,
    /// The frame counts at which those changes happened.
    pub width_changed_at: Vec<u64>,
}

impl StreamReport {
    pub(crate) fn new(peer: ParticipantId, source: TrackSource) -> Self {
        StreamReport {
            peer,
            source,
            frames: 0,
            bytes: 0,
            keyframes: 0,
            first_seq: None,
            last_seq: None,
            lost: 0,
            out_of_order: 0,
            corrupt: 0,
            wrong_sender: 0,
            undecryptable: 0,
            relabelled: 0,
            replayed: 0,
            behind: 0,
            latency_us: Vec::new(),
            first_us: None,
            discontinuities: 0,
            time_backwards: 0,
            last_time: None,
            layer: None,
            switches_off_keyframe: 0,
            width: 0,
            widths: Vec::new(),
            width_changed_at: Vec::new(),
        }
    }

    pub(crate) fn record(&mut self, info: &FrameInfo, len: usize, now_us: u64) {
        match self.last_seq {
            // A keyframe of another layer may repeat the capture the
            // receiver just got from the layer it leaves.
            Some(last) if info.seq == last && info.keyframe && info.size.0 != self.width => {}
            Some(last) if info.seq <= last => {
                self.out_of_order += 1;
                return;
            }
            Some(last) => self.lost += u64::from(info.seq - last - 1),
            None => self.first_seq = Some(info.seq),
        }
        self.last_seq = Some(info.seq);
        if self.layer != Some(info.layer) {
            if !info.keyframe {
                self.switches_off_keyframe += 1;
            }
            self.layer = Some(info.layer);
        }
        self.first_us.get_or_insert(now_us);
        self.frames += 1;
        self.bytes += len as u64;
        if info.keyframe {
            self.keyframes += 1;
            if info.size.0 != self.width {
                self.width = info.size.0;
                if self.widths.len() < MAX_WIDTH_CHANGES {
                    self.widths.push(info.size.0);
                    self.width_changed_at.push(self.frames);
                }
            }
        }
        if self.latency_us.len() < MAX_LATENCY_SAMPLES {
            let l = now_us.saturating_sub(info.sent_us);
            self.latency_us.push(l.min(u64::from(u32::MAX)) as u32);
        }
    }

    /// No corrupt, misattributed or reordered frame.
    pub fn intact(&self) -> bool {
        self.corrupt == 0 && self.wrong_sender == 0 && self.out_of_order == 0
    }
}
