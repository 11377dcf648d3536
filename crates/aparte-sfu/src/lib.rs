//! The sans-IO selective forwarding unit at the core of Aparté.
//!
//! This crate owns rooms, participants and the routing of media between them.
//! It does no IO and reads no clock: the caller feeds it signaling messages
//! ([`Sfu::join`], [`Sfu::handle_message`], [`Sfu::leave`]), UDP datagrams
//! ([`Sfu::handle_datagram`]) and the passing of time ([`Sfu::handle_timeout`]),
//! always with the current `Instant`. What to do comes back out of
//! [`Sfu::poll_output`]: datagrams to send, signaling messages to deliver and
//! connections to close. [`Sfu::poll_timeout`] says when to call
//! `handle_timeout` next.
//!
//! # Run loop
//!
//! ```text
//! loop {
//!     wait for a datagram, a signaling message, or sfu.poll_timeout()
//!     sfu.handle_*(now, …)           // or sfu.handle_timeout(now)
//!     while let Some(out) = sfu.poll_output() { send or deliver it }
//! }
//! ```
//!
//! # Model
//!
//! Each participant has one str0m [`Rtc`] in ICE-lite mode. The server is the
//! only SDP offerer, so there is never glare: the first offer gives the client
//! four receive-only m-lines to publish on (mic, camera, screen, screen audio);
//! later offers add one send-only m-line per track of another participant and
//! stop those of participants who left. A published source becomes *live* when
//! its first frame arrives, and only live sources are offered to others, so a
//! camera that is never turned on costs nobody an m-line.
//!
//! Media is forwarded frame by frame (str0m's sample API): the payload is never
//! read, only the codec's payload descriptor that str0m's depacketizer needs, so
//! end-to-end encrypted frames pass through unchanged. Each leg has its own
//! NACK/RTX; a frame that arrives with a gap makes the SFU ask the publisher for
//! a keyframe. Keyframe requests from receivers are relayed to the publisher,
//! at most one per published track every [`SfuConfig::keyframe_throttle`].
//!
//! Each room also runs the MLS delivery service (`ds.rs`): it orders commits
//! (the first for an epoch wins), relays key packages, Welcomes and application
//! messages to the room's group, and never reads any of them — they are opaque
//! base64 to it. The group's secrets live only in the participants.
//!
//! A participant is removed when its signaling connection closes, when it
//! leaves, when ICE has not connected [`CONNECT_TIMEOUT`] after its first
//! offer, or when ICE consent stops (no binding request for 15 s, str0m's
//! ICE-lite rule). Its tracks then end for everyone and an empty room is freed.

#![forbid(unsafe_code)]

mod ds;
mod participant;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aparte_proto::{ClientMsg, ErrorCode, ParticipantId, PeerInfo, RoomId, ServerMsg};
use str0m::crypto::{CryptoProvider, from_feature_flags};
use str0m::media::{KeyframeRequestKind, MediaData};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output as RtcOutput, Rtc};
use tracing::{debug, info, warn};

use participant::{AnswerError, Participant, TrackKey};

/// How long ICE may take to connect after a participant's first offer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the SFU core.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Addresses given to clients as ICE host candidates (the media socket's
    /// reachable addresses).
    pub candidates: Vec<SocketAddr>,
    /// Most participants in one room.
    pub max_participants_per_room: usize,
    /// Least time between two keyframe requests sent to one published track.
    pub keyframe_throttle: Duration,
}

impl SfuConfig {
    /// Defaults for a media socket reachable at `candidate`.
    pub fn new(candidate: SocketAddr) -> Self {
        SfuConfig {
            candidates: vec![candidate],
            max_participants_per_room: aparte_proto::MAX_PARTICIPANTS_PER_ROOM,
            keyframe_throttle: Duration::from_millis(500),
        }
    }
}

/// Something the caller must do.
#[derive(Debug)]
pub enum Output {
    /// Send a UDP datagram.
    Transmit {
        /// Local address to send from.
        source: SocketAddr,
        /// Where to.
        destination: SocketAddr,
        /// The datagram.
        contents: Vec<u8>,
    },
    /// Deliver a signaling message to a participant.
    Signal {
        /// Recipient.
        to: ParticipantId,
        /// Message.
        msg: ServerMsg,
    },
    /// The participant is gone: close its signaling connection (after sending
    /// it an error with `code`, when there is one).
    Close {
        /// Who.
        who: ParticipantId,
        /// Why, when it is not the participant's own choice.
        code: Option<ErrorCode>,
    },
}

/// What a tap sees: everything the server handles that a participant sent or
/// receives, after transport decryption. Used by tests that prove the server
/// only ever handles ciphertext; the server binary never installs one.
#[derive(Debug)]
pub enum TapEvent<'a> {
    /// A media frame's payload, as received from its publisher.
    Frame(&'a [u8]),
    /// A signaling message from a participant.
    FromClient(&'a ClientMsg),
    /// A signaling message to a participant.
    ToClient(&'a ServerMsg),
}

/// A tap's callback.
pub type Tap = Box<dyn FnMut(TapEvent<'_>) + Send>;

/// Counters of what the core did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Frames received from publishers.
    pub frames_in: u64,
    /// Frames written to receivers.
    pub frames_out: u64,
    /// Frames not forwarded because a newer one of the same track already was.
    pub frames_late: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Datagrams dropped because no participant accepted them.
    pub datagrams_unmatched: u64,
}

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The room already holds [`SfuConfig::max_participants_per_room`].
    #[error("room is full")]
    RoomFull,
}

impl JoinError {
    /// The code sent to the client.
    pub fn code(self) -> ErrorCode {
        match self {
            JoinError::RoomFull => ErrorCode::RoomFull,
        }
    }
}

/// One room: its participants in join order and its MLS delivery service.
#[derive(Debug, Default)]
struct Room {
    members: Vec<ParticipantId>,
    ds: ds::Ds,
}

/// The SFU core. See the crate documentation for the run loop.
pub struct Sfu {
    config: SfuConfig,
    crypto: Arc<CryptoProvider>,
    next_id: u64,
    rooms: HashMap<RoomId, Room>,
    participants: HashMap<ParticipantId, Participant>,
    /// Source addresses already validated by ICE, to their participant.
    by_addr: HashMap<SocketAddr, ParticipantId>,
    /// Participants whose `Rtc` has output to drain.
    dirty: Vec<ParticipantId>,
    /// Participants that may need a new offer.
    renegotiate: Vec<ParticipantId>,
    /// Participants to remove once the current input is handled.
    doomed: Vec<(ParticipantId, Option<ErrorCode>)>,
    out: VecDeque<Output>,
    stats: SfuStats,
    tap: Option<Tap>,
}

impl std::fmt::Debug for Sfu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sfu")
            .field("rooms", &self.rooms.len())
            .field("participants", &self.participants.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Sfu {
    /// A new SFU with no rooms.
    pub fn new(config: SfuConfig) -> Self {
        Sfu {
            config,
            crypto: Arc::new(from_feature_flags()),
            next_id: 1,
            rooms: HashMap::new(),
            participants: HashMap::new(),
            by_addr: HashMap::new(),
            dirty: Vec::new(),
            renegotiate: Vec::new(),
            doomed: Vec::new(),
            out: VecDeque::new(),
            stats: SfuStats::default(),
            tap: None,
        }
    }

    /// Installs a tap (tests only: see [`TapEvent`]).
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Adds a participant to `room`, creating the room if needed. The welcome
    /// and the first offer come out of [`Sfu::poll_output`].
    pub fn join(&mut self, now: Instant, room: RoomId) -> Result<ParticipantId, JoinError> {
        let members = self.rooms.get(&room).map_or(0, |r| r.members.len());
        if members >= self.config.max_participants_per_room {
            return Err(JoinError::RoomFull);
        }
        let id = ParticipantId(self.next_id);
        self.next_id += 1;

        let mut rtc = Rtc::builder()
            .set_crypto_provider(self.crypto.clone())
            .set_ice_lite(true)
            // Opus and VP8 only: both carry end-to-end encrypted frames well
            // (H.264 packetization parses NAL units and breaks on them).
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        for &addr in &self.config.candidates {
            match Candidate::host(addr, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(%e, "media candidate refused"),
            }
        }
        let mut p = Participant::new(id, room.clone(), rtc, now);

        let r = self.rooms.entry(room).or_default();
        let peers: Vec<PeerInfo> = r.members.iter().map(|&id| PeerInfo { id }).collect();
        for &other in r.members.iter() {
            let Some(o) = self.participants.get(&other) else {
                continue;
            };
            for &source in &o.live {
                p.want((other, source));
            }
            self.out.push_back(Output::Signal {
                to: other,
                msg: ServerMsg::PeerJoined {
                    peer: PeerInfo { id },
                },
            });
        }
        r.members.push(id);
        let create_group = r.ds.joined(id);
        self.participants.insert(id, p);
        info!(participant = %id, "joined");

        self.out.push_back(Output::Signal {
            to: id,
            msg: ServerMsg::Welcome {
                you: id,
                peers,
                create_group,
            },
        });
        self.renegotiate.push(id);
        self.settle(now);
        Ok(id)
    }

    /// Handles a message from a joined participant. Refusals are answered
    /// with a typed error to that participant only.
    pub fn handle_message(&mut self, now: Instant, from: ParticipantId, msg: ClientMsg) {
        if !self.participants.contains_key(&from) {
            return;
        }
        if let Some(tap) = &mut self.tap {
            tap(TapEvent::FromClient(&msg));
        }
        match msg {
            ClientMsg::Join { .. } => {
                self.refuse(
                    from,
                    ErrorCode::AlreadyJoined,
                    "this connection already joined",
                );
            }
            ClientMsg::Answer { sdp } => self.handle_answer(now, from, &sdp),
            ClientMsg::Relay { to, payload } => self.handle_relay(from, to, payload),
            ClientMsg::Leave => {
                self.doomed.push((from, None));
            }
            ClientMsg::MlsKeyPackage { data } => {
                self.with_ds(from, |ds| ds.key_package(from, data));
            }
            ClientMsg::MlsCommit {
                epoch,
                data,
                welcome,
                added,
            } => {
                self.with_ds(from, |ds| ds.commit(from, epoch, data, welcome, &added));
            }
            ClientMsg::MlsApp { data } => {
                self.with_ds(from, |ds| ds.app(from, data));
            }
        }
        self.settle(now);
    }

    /// The participant's signaling connection closed.
    pub fn leave(&mut self, now: Instant, who: ParticipantId) {
        if self.participants.contains_key(&who) {
            self.doomed.push((who, None));
            self.settle(now);
        }
    }

    /// Handles one UDP datagram received on the media socket.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Ok(contents) = DatagramRecv::try_from(data) else {
            self.stats.datagrams_unmatched += 1;
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        let known = self
            .by_addr
            .get(&source)
            .copied()
            .filter(|id| self.participants.contains_key(id));
        let id = match known {
            Some(id) => id,
            None => {
                // Only a STUN binding request with a participant's ICE
                // credentials is accepted from a new address: this is how
                // packets from unvalidated addresses are dropped.
                let Some(id) = self
                    .participants
                    .values()
                    .find(|p| p.rtc.accepts(&input))
                    .map(|p| p.id)
                else {
                    self.stats.datagrams_unmatched += 1;
                    return;
                };
                self.by_addr.insert(source, id);
                id
            }
        };
        if let Some(p) = self.participants.get_mut(&id) {
            if let Err(e) = p.rtc.handle_input(input) {
                debug!(participant = %id, %e, "datagram refused");
            }
            self.dirty.push(id);
        }
        self.settle(now);
    }

    /// Advances time: call at [`Sfu::poll_timeout`] (calling earlier is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        for p in self.participants.values_mut() {
            if p.connect_deadline.is_some_and(|d| d <= now) {
                info!(participant = %p.id, "media never connected");
                self.doomed.push((p.id, Some(ErrorCode::ConnectionLost)));
                continue;
            }
            if p.next_wake <= now {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                    warn!(participant = %p.id, %e, "rtc failed");
                    self.doomed.push((p.id, Some(ErrorCode::Internal)));
                }
                self.dirty.push(p.id);
            }
        }
        self.settle(now);
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        let out = self.out.pop_front();
        if let (Some(tap), Some(Output::Signal { msg, .. })) = (&mut self.tap, &out) {
            tap(TapEvent::ToClient(msg));
        }
        out
    }

    /// When [`Sfu::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.participants
            .values()
            .flat_map(|p| [Some(p.next_wake), p.connect_deadline])
            .flatten()
            .min()
    }

    /// Counters since start.
    pub fn stats(&self) -> SfuStats {
        self.stats
    }

    /// Number of rooms that have at least one participant.
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }

    /// Number of participants in all rooms.
    pub fn participant_count(&self) -> usize {
        self.participants.len()
    }

    /// The participants of `room`, in join order.
    pub fn members(&self, room: &RoomId) -> &[ParticipantId] {
        self.rooms.get(room).map_or(&[], |r| r.members.as_slice())
    }

    fn refuse(&mut self, to: ParticipantId, code: ErrorCode, message: &str) {
        self.out.push_back(Output::Signal {
            to,
            msg: ServerMsg::error(code, message),
        });
    }

    /// Runs a delivery-service step for `from`'s room and sends what it says.
    fn with_ds(
        &mut self,
        from: ParticipantId,
        step: impl FnOnce(&mut ds::Ds) -> Result<ds::Sends, ErrorCode>,
    ) {
        let Some(room) = self.participants.get(&from).map(|p| p.room.clone()) else {
            return;
        };
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        match step(&mut r.ds) {
            Ok(sends) => {
                for (to, msg) in sends {
                    self.out.push_back(Output::Signal { to, msg });
                }
            }
            Err(code) => {
                let text = match code {
                    ErrorCode::NotInGroup => "not a member of this room's group",
                    ErrorCode::AlreadyJoined => "already a member of this room's group",
                    _ => "refused by the delivery service",
                };
                self.refuse(from, code, text);
            }
        }
    }

    fn handle_answer(&mut self, now: Instant, from: ParticipantId, sdp: &str) {
        let Some(p) = self.participants.get_mut(&from) else {
            return;
        };
        let opened: Vec<TrackKey> = p
            .outgoing
            .iter()
            .filter(|t| matches!(t.state, participant::OutState::Opening(_)))
            .map(|t| t.key)
            .collect();
        match p.accept_answer(sdp) {
            Ok(()) => {
                self.dirty.push(from);
                self.renegotiate.push(from);
                // A receiver that just got a track needs a keyframe to start.
                for (publisher, source) in opened {
                    self.request_keyframe(now, publisher, source, KeyframeRequestKind::Pli);
                }
            }
            Err(AnswerError::NoPendingOffer) => {
                self.refuse(
                    from,
                    ErrorCode::NoPendingOffer,
                    "no offer waits for an answer",
                );
            }
            Err(AnswerError::Unparsable) => {
                self.refuse(from, ErrorCode::InvalidSdp, "the answer is not valid SDP");
            }
            Err(AnswerError::Rejected) => {
                // The pending offer is spent and the two sides may disagree
                // about the session: start over with a new connection.
                self.doomed.push((from, Some(ErrorCode::InvalidSdp)));
            }
        }
    }

    fn handle_relay(&mut self, from: ParticipantId, to: Option<ParticipantId>, payload: String) {
        let Some(room) = self.participants.get(&from).map(|p| &p.room) else {
            return;
        };
        let members = self
            .rooms
            .get(room)
            .map_or(&[][..], |r| r.members.as_slice());
        match to {
            Some(to) if to != from && members.contains(&to) => {
                self.out.push_back(Output::Signal {
                    to,
                    msg: ServerMsg::Relay { from, payload },
                });
            }
            Some(_) => self.refuse(from, ErrorCode::UnknownPeer, "no such peer in this room"),
            None => {
                for &to in members.iter().filter(|&&m| m != from) {
                    self.out.push_back(Output::Signal {
                        to,
                        msg: ServerMsg::Relay {
                            from,
                            payload: payload.clone(),
                        },
                    });
                }
            }
        }
    }

    /// Drains every dirty `Rtc`, forwards what it produced, removes doomed
    /// participants and sends the offers that became due, until nothing moves.
    fn settle(&mut self, now: Instant) {
        loop {
            if let Some(id) = self.dirty.pop() {
                self.drain(now, id);
                continue;
            }
            if let Some((id, code)) = self.doomed.pop() {
                self.remove(id, code);
                continue;
            }
            if let Some(id) = self.renegotiate.pop() {
                if let Some(p) = self.participants.get_mut(&id) {
                    if let Some(msg) = p.offer_if_needed(now) {
                        self.out.push_back(Output::Signal { to: id, msg });
                        self.dirty.push(id);
                    }
                }
                continue;
            }
            break;
        }
    }

    fn drain(&mut self, now: Instant, id: ParticipantId) {
        loop {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            let event = match p.rtc.poll_output() {
                Ok(RtcOutput::Timeout(t)) => {
                    p.next_wake = t;
                    return;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    self.out.push_back(Output::Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    });
                    continue;
                }
                Ok(RtcOutput::Event(e)) => e,
                Err(e) => {
                    warn!(participant = %id, %e, "rtc failed");
                    self.doomed.push((id, Some(ErrorCode::Internal)));
                    p.next_wake = now;
                    return;
                }
            };
            match event {
                Event::Connected => {
                    p.connect_deadline = None;
                    debug!(participant = %id, "media connected");
                }
                Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                    info!(participant = %id, "ice consent lost");
                    self.doomed.push((id, Some(ErrorCode::ConnectionLost)));
                }
                Event::MediaData(data) => self.forward(now, id, data),
                Event::KeyframeRequest(req) => {
                    if let Some((publisher, source)) = p.outgoing_on(req.mid).map(|t| t.key) {
                        self.request_keyframe(now, publisher, source, req.kind);
                    }
                }
                _ => {}
            }
        }
    }

    /// Forwards a frame of `from` to every other member of its room that
    /// receives that track; makes the track live on its first frame.
    fn forward(&mut self, now: Instant, from: ParticipantId, data: MediaData) {
        let Some(p) = self.participants.get_mut(&from) else {
            return;
        };
        let Some(source) = p.source_of(data.mid) else {
            return;
        };
        self.stats.frames_in += 1;
        if let Some(tap) = &mut self.tap {
            tap(TapEvent::Frame(&data.data));
        }
        if !p.take_if_newer(data.mid, **data.seq_range.end()) {
            self.stats.frames_late += 1;
            return;
        }
        let first_frame = !p.live.contains(&source);
        if first_frame {
            p.live.push(source);
        }
        let room = p.room.clone();
        if !data.contiguous {
            self.request_keyframe(now, from, source, KeyframeRequestKind::Pli);
        }
        let members = self
            .rooms
            .get(&room)
            .map_or(&[][..], |r| r.members.as_slice());
        for &to in members.iter().filter(|&&m| m != from) {
            let Some(r) = self.participants.get_mut(&to) else {
                continue;
            };
            if first_frame {
                r.want((from, source));
                self.renegotiate.push(to);
                continue;
            }
            let Some(mid) = r.open_mid_for((from, source)) else {
                continue;
            };
            let Some(writer) = r.rtc.writer(mid) else {
                continue;
            };
            let Some(pt) = writer.match_params(data.params) else {
                continue;
            };
            match writer.write(pt, data.network_time, data.time, data.data.clone()) {
                Ok(()) => {
                    self.stats.frames_out += 1;
                    self.dirty.push(to);
                }
                Err(e) => debug!(participant = %to, %e, "frame not written"),
            }
        }
    }

    fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: ParticipantId,
        source: aparte_proto::TrackSource,
        kind: KeyframeRequestKind,
    ) {
        if source.is_audio() {
            return;
        }
        let throttle = self.config.keyframe_throttle;
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        let Some(mid) = p.mid_of(source) else {
            return;
        };
        if let Some(last) = p.last_keyframe_request.get(&mid) {
            if now.saturating_duration_since(*last) < throttle {
                return;
            }
        }
        let Some(mut writer) = p.rtc.writer(mid) else {
            return;
        };
        if writer.request_keyframe(None, kind).is_ok() {
            p.last_keyframe_request.insert(mid, now);
            self.stats.keyframe_requests += 1;
            self.dirty.push(publisher);
        }
    }

    fn remove(&mut self, id: ParticipantId, code: Option<ErrorCode>) {
        let Some(mut p) = self.participants.remove(&id) else {
            return;
        };
        p.rtc.disconnect();
        self.by_addr.retain(|_, v| *v != id);
        if let Some(r) = self.rooms.get_mut(&p.room) {
            r.members.retain(|&m| m != id);
            let sends = r.ds.left(id, &r.members);
            if r.members.is_empty() {
                self.rooms.remove(&p.room);
                debug!("room freed");
            }
            for (to, msg) in sends {
                self.out.push_back(Output::Signal { to, msg });
            }
        }
        for &other in self
            .rooms
            .get(&p.room)
            .map_or(&[][..], |r| r.members.as_slice())
        {
            if let Some(o) = self.participants.get_mut(&other) {
                o.drop_peer(id);
                self.renegotiate.push(other);
                self.out.push_back(Output::Signal {
                    to: other,
                    msg: ServerMsg::PeerLeft { peer: id },
                });
            }
        }
        info!(participant = %id, code = code.map(ErrorCode::as_str), "left");
        self.out.push_back(Output::Close { who: id, code });
    }
}
