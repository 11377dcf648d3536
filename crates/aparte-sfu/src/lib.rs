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
//! its first packet arrives, and only live sources are offered to others, so a
//! camera that is never turned on costs nobody an m-line.
//!
//! Media is forwarded packet by packet (str0m's RTP mode): each RTP packet of
//! a publisher goes out as it arrives to every receiver of the track, with
//! its payload (shared, never copied or read), RTP timestamp and marker
//! unchanged, under the receiver's own SSRC and sequence numbers
//! (`forward.rs`). Nothing waits for a whole frame and nothing is
//! re-packetized, so end-to-end encrypted frames pass through as the sender
//! packetized them. Each leg has its own NACK/RTX: str0m asks the publisher
//! for what the server missed, and answers receivers' NACKs from a per-receiver
//! resend buffer; a resend from the publisher is forwarded when it comes.
//! Keyframe requests from receivers are relayed to the publisher, at most one
//! per published track every [`SfuConfig::keyframe_throttle`]; requests that
//! come sooner are held and answered by one more request when the window ends.
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

mod adapt;
mod alloc;
mod budget;
mod controls;
mod ds;
mod forward;
mod participant;
mod policy;
mod routing;
mod simulcast;
mod stun;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aparte_proto::{
    ClientMsg, ErrorCode, ParticipantId, PeerInfo, Role, RoomId, ServerMsg, Token, TrackSource,
};
use rand::{RngCore, SeedableRng};
use str0m::bwe::{Bitrate, BweKind};
use str0m::crypto::{CryptoProvider, from_feature_flags};
use str0m::media::KeyframeRequestKind;
pub use str0m::net::Protocol;
use str0m::net::{DatagramRecv, Receive, TcpType};
use str0m::rtp::{Extension, ExtensionMap};
use str0m::{
    Candidate, Event, IceConnectionState, Input, Output as RtcOutput, PacerReason, Reason, Rtc,
};
use tracing::{debug, info, warn};

use participant::{AnswerError, Participant, TrackKey};
pub use policy::{Admission, JoinError, JoinRequest, RoomSettings, RoomUpdate, StoredRoom};
use policy::{Gate, Policy};
use simulcast::Layer;
pub use simulcast::RIDS;

/// How long ICE may take to connect after a participant's first offer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of the SFU core.
#[derive(Debug, Clone)]
pub struct SfuConfig {
    /// Addresses given to clients as ICE host candidates (the media socket's
    /// reachable addresses).
    pub candidates: Vec<SocketAddr>,
    /// Addresses given as passive ICE-TCP host candidates (RFC 6544), for
    /// networks that block UDP: the caller accepts TCP connections there
    /// and passes each RFC 4571 frame to [`Sfu::handle_tcp_frame`].
    pub tcp_candidates: Vec<SocketAddr>,
    /// Most participants in one room.
    pub max_participants_per_room: usize,
    /// Least time between two keyframe requests sent to one published track.
    pub keyframe_throttle: Duration,
    /// Most tracks one participant may publish at once (of mic, camera,
    /// screen and screen audio). A packet of one more is refused with
    /// `too_many_tracks` and not forwarded.
    pub max_tracks_per_participant: usize,
    /// Most people waiting in one room's lobby.
    pub max_lobby: usize,
    /// Most people from one network ([`JoinRequest::network`]) waiting in
    /// one room's lobby, so that one address cannot fill it.
    pub max_lobby_per_network: usize,
    /// Least time between two keyframe requests of one receiver for one
    /// track that are passed on; the others are ignored. A receiver that
    /// cannot decode (or pretends not to) would otherwise make the
    /// publisher send keyframes to everyone at the publisher's throttle.
    pub receiver_keyframe_interval: Duration,
    /// Participant ids are random, below 2^53 (JavaScript's exact integers),
    /// and equal to `first_id` modulo `id_step`: several cores (one per media
    /// thread) then never give out the same id, and an id says which thread
    /// runs it. Random, so an id says nothing about how many joined before.
    pub first_id: u64,
    /// See `first_id`.
    pub id_step: u64,
}

/// The RTP header extensions offered: str0m's standard set without the audio
/// level (client-to-mixer audio level, RFC 6464), which would show the server
/// who speaks and when. Every one left is transport (send time, transport-wide
/// sequence number, mid, simulcast stream ids) or needed to render (video
/// orientation).
fn header_extensions() -> ExtensionMap {
    let mut kept = ExtensionMap::empty();
    for (id, ext) in ExtensionMap::standard().iter() {
        if *ext != Extension::AudioLevel {
            kept.set(id, ext.clone());
        }
    }
    kept
}

/// Outgoing video packets kept per receiver for resends. str0m's default
/// (1024) holds ~6 s of 1.5 Mbps video; 400 still holds a whole large
/// keyframe and more than a resend can usefully reach back. The payloads are
/// shared with the publisher's packet, so a receiver's buffer costs only the
/// packet headers.
const RESEND_BUFFER_VIDEO: usize = 400;
/// How far ahead a timeout str0m asks for may be and still be served in the
/// same drain (its pacer asks for one a microsecond after the last).
const PACER_TURN: Duration = Duration::from_micros(100);
/// At most this many pacer turns per drain: a receiver with a long queue
/// yields to the others and goes on at the next turn of the media loop.
const MAX_PACER_TURNS: usize = 64;
/// Oldest packet a resend may answer with.
const RESEND_AGE: Duration = Duration::from_secs(3);
/// Share of resent bytes over which queued resends are dropped (str0m's default).
const RESEND_RATIO_CAP: f32 = 0.15;

impl SfuConfig {
    /// Defaults for a media socket reachable at `candidate`.
    pub fn new(candidate: SocketAddr) -> Self {
        SfuConfig {
            candidates: vec![candidate],
            tcp_candidates: Vec::new(),
            max_participants_per_room: aparte_proto::DEFAULT_PARTICIPANTS_PER_ROOM,
            keyframe_throttle: Duration::from_millis(500),
            max_tracks_per_participant: TrackSource::ALL.len(),
            max_lobby: 50,
            max_lobby_per_network: 10,
            receiver_keyframe_interval: Duration::from_secs(2),
            first_id: 1,
            id_step: 1,
        }
    }
}

/// Something the caller must do.
#[derive(Debug)]
pub enum Output {
    /// Send a datagram: over UDP, or as one RFC 4571 frame on the TCP
    /// connection between `source` and `destination`.
    Transmit {
        /// UDP or TCP.
        proto: Protocol,
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
    /// A persistent room's stored settings changed (or, with `None`, the
    /// room stopped being persistent and its record must go). Also sent
    /// when a persistent room's meeting ends, to record that it was used.
    Persist {
        /// The room.
        room: RoomId,
        /// What to store.
        stored: Option<StoredRoom>,
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
/// only ever handles ciphertext, and by tests that play a hostile server: a
/// tap may rewrite a media payload before it is forwarded, or a message before
/// it is sent. The server binary never installs one.
#[derive(Debug)]
pub enum TapEvent<'a> {
    /// A media packet's RTP payload, as received from its publisher, before
    /// it is forwarded to the track's receivers.
    Packet {
        /// The publisher.
        from: ParticipantId,
        /// Which of its tracks.
        source: TrackSource,
        /// The payload (SFrame-sealed frame or a piece of one).
        payload: &'a mut std::sync::Arc<[u8]>,
    },
    /// A signaling message from a participant.
    FromClient(&'a ClientMsg),
    /// A signaling message to a participant, before it is sent.
    ToClient {
        /// The recipient.
        to: ParticipantId,
        /// The message.
        msg: &'a mut ServerMsg,
    },
}

/// A tap's callback.
pub type Tap = Box<dyn FnMut(TapEvent<'_>) + Send>;

/// Counters of what the core did, for logs and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SfuStats {
    /// Media packets received from publishers.
    pub packets_in: u64,
    /// Media packets written to receivers.
    pub packets_out: u64,
    /// Keyframe requests sent to publishers.
    pub keyframe_requests: u64,
    /// Datagrams dropped because no participant accepted them.
    pub datagrams_unmatched: u64,
    /// Keyframe requests of receivers ignored (too soon after their last).
    pub keyframe_requests_ignored: u64,
    /// Times a receiver's video started on a layer or moved to another, at
    /// a keyframe of that layer.
    pub layer_switches: u64,
}

/// Which byte budget a message spends (see `budget.rs`).
#[derive(Debug, Clone, Copy)]
enum Spend {
    App,
    Commit,
}

/// One room: its participants in join order, its MLS delivery service, and
/// who may do what.
#[derive(Debug)]
struct Room {
    members: Vec<ParticipantId>,
    ds: ds::Ds,
    policy: Policy,
}

/// The SFU core. See the crate documentation for the run loop.
pub struct Sfu {
    config: SfuConfig,
    crypto: Arc<CryptoProvider>,
    rooms: HashMap<RoomId, Room>,
    participants: HashMap<ParticipantId, Participant>,
    /// People in a lobby, to their room. They have no `Rtc` and are in no
    /// room's members: nothing of the meeting can reach them.
    waiting: HashMap<ParticipantId, RoomId>,
    /// Randomness for seats and moderator keys.
    rng: rand::rngs::StdRng,
    /// Source addresses (UDP, or TCP connections) already validated by ICE,
    /// to their participant.
    by_addr: HashMap<(Protocol, SocketAddr), ParticipantId>,
    /// Participants by the local ICE ufrag of their `Rtc`: a binding request
    /// from a new address names it, so routing it is one lookup (a scan of
    /// every participant per unknown datagram let anyone spraying datagrams
    /// cost O(N) each).
    by_ufrag: HashMap<String, ParticipantId>,
    /// Participants whose `Rtc` has output to drain.
    dirty: Vec<ParticipantId>,
    /// Participants that may need a new offer.
    renegotiate: Vec<ParticipantId>,
    /// Participants to remove once the current input is handled.
    doomed: Vec<(ParticipantId, Option<ErrorCode>)>,
    out: VecDeque<Output>,
    stats: SfuStats,
    tap: Option<Tap>,
    /// When layers are next allocated (`adapt.rs`), once someone joined.
    next_allocation: Option<Instant>,
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
            rooms: HashMap::new(),
            participants: HashMap::new(),
            waiting: HashMap::new(),
            rng: rand::rngs::StdRng::from_os_rng(),
            by_addr: HashMap::new(),
            by_ufrag: HashMap::new(),
            dirty: Vec::new(),
            renegotiate: Vec::new(),
            doomed: Vec::new(),
            out: VecDeque::new(),
            stats: SfuStats::default(),
            tap: None,
            next_allocation: None,
        }
    }

    /// Installs a tap (tests only: see [`TapEvent`]).
    pub fn set_tap(&mut self, tap: Tap) {
        self.tap = Some(tap);
    }

    /// Lets a participant into `room` or its lobby, opening the room when the
    /// request may (host key, or stored settings). What the participant is
    /// told comes out of [`Sfu::poll_output`].
    pub fn join(&mut self, now: Instant, req: JoinRequest) -> Result<Admission, JoinError> {
        if !self.rooms.contains_key(&req.room) {
            let policy = Policy::open(&req).ok_or(JoinError::Unavailable)?;
            self.rooms.insert(
                req.room.clone(),
                Room {
                    members: Vec::new(),
                    ds: ds::Ds::default(),
                    policy,
                },
            );
        }
        let result = self.gate(now, &req);
        self.free_if_empty(&req.room);
        self.settle(now);
        result
    }

    fn gate(&mut self, now: Instant, req: &JoinRequest) -> Result<Admission, JoinError> {
        let Some(r) = self.rooms.get(&req.room) else {
            return Err(JoinError::Unavailable);
        };
        let gate = r.policy.gate(req)?;
        match gate {
            Gate::Wait => {
                let from_network = req.network.map_or(0, |n| {
                    r.policy
                        .waiting
                        .iter()
                        .filter(|w| w.network == Some(n))
                        .count()
                });
                if r.policy.waiting.len() >= self.config.max_lobby
                    || from_network >= self.config.max_lobby_per_network
                {
                    return Err(JoinError::RoomFull);
                }
                let id = self.new_id();
                self.enter_lobby(id, req.room.clone(), req.network);
                Ok(Admission::Waiting(id))
            }
            Gate::Admit { role, replaces } => {
                let members = r.members.len() - usize::from(replaces.is_some());
                if members >= self.config.max_participants_per_room {
                    return Err(JoinError::RoomFull);
                }
                let id = self.new_id();
                if let Some(old) = replaces {
                    // A reconnect takes over its seat from the connection it
                    // left behind.
                    self.remove(old, Some(ErrorCode::ConnectionLost));
                }
                if let (Some(seat), Some(r)) = (&req.seat, self.rooms.get_mut(&req.room)) {
                    r.policy.retire_seat(seat);
                }
                self.admit(now, id, req.room.clone(), role, req.key.as_ref());
                Ok(Admission::Admitted(id))
            }
        }
    }

    /// Makes `id` a participant of `room`: its `Rtc`, welcome, first offer.
    fn admit(
        &mut self,
        now: Instant,
        id: ParticipantId,
        room: RoomId,
        role: Role,
        key: Option<&Token>,
    ) {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(self.crypto.clone())
            .set_ice_lite(true)
            // Opus and VP8 only: both carry end-to-end encrypted frames well
            // (H.264 packetization parses NAL units and breaks on them).
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            // No audio level: in clear, it would tell the server who speaks
            // when (speaking indicators are computed in each page from
            // decrypted audio). Not offered, so browsers do not send it.
            .set_extension_map(header_extensions())
            // Packets in, packets out: see `forward`.
            .set_rtp_mode(true)
            // TWCC estimates of each receiver's downlink drive its layers
            // (`adapt.rs`).
            .enable_bwe(Some(Bitrate::bps(adapt::INITIAL_ESTIMATE)))
            // Receiver reports' loss, once a second: the sign of congestion
            // that a move down waits for (`adapt.rs`).
            .set_stats_interval(Some(adapt::STATS_INTERVAL))
            .build(now);
        for &addr in &self.config.candidates {
            match Candidate::host(addr, "udp") {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(%e, "media candidate refused"),
            }
        }
        for &addr in &self.config.tcp_candidates {
            let tcp = Candidate::builder()
                .tcp()
                .host(addr)
                .tcptype(TcpType::Passive)
                .build();
            match tcp {
                Ok(c) => {
                    rtc.add_local_candidate(c);
                }
                Err(e) => warn!(%e, "media TCP candidate refused"),
            }
        }
        // Start the ICE agent's clock: without a first timeout it asks for no
        // wake-up, and consent checks would wait for other traffic.
        if let Err(e) = rtc.handle_input(Input::Timeout(now)) {
            warn!(%e, "rtc refused its first timeout");
        }
        let ufrag = rtc.direct_api().local_ice_credentials().ufrag;
        let mut p = Participant::new(id, room.clone(), rtc, now);
        let seat = self.token();

        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let peers: Vec<PeerInfo> = r
            .members
            .iter()
            .map(|&m| PeerInfo {
                id: m,
                role: r.policy.role(m).unwrap_or(Role::Guest),
            })
            .collect();
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
                    peer: PeerInfo { id, role },
                },
            });
        }
        r.members.push(id);
        r.policy.admitted(id, role, key, seat.clone());
        let create_group = r.ds.joined(id);
        let state = r.policy.settings.state();
        self.by_ufrag.insert(ufrag, id);
        self.participants.insert(id, p);
        self.next_allocation
            .get_or_insert(now + adapt::ALLOCATION_INTERVAL);
        info!(participant = %id, role = ?role, "joined");

        self.out.push_back(Output::Signal {
            to: id,
            msg: ServerMsg::Welcome {
                you: id,
                role,
                seat,
                room: state,
                peers,
                create_group,
            },
        });
        if role.moderates() {
            self.send_lobby(id, &room);
        }
        self.renegotiate.push(id);
    }

    /// A fresh random participant id (see [`SfuConfig::first_id`]).
    fn new_id(&mut self) -> ParticipantId {
        const MAX: u64 = (1 << 53) - 1;
        let step = self.config.id_step.max(1);
        let offset = self.config.first_id.saturating_sub(1) % step;
        let slots = (MAX - offset - 1) / step;
        loop {
            let id = ParticipantId((self.rng.next_u64() % slots) * step + offset + 1);
            if !self.participants.contains_key(&id) && !self.waiting.contains_key(&id) {
                return id;
            }
        }
    }

    fn token(&mut self) -> Token {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        aparte_proto::keys::token_from_bytes(bytes)
    }

    /// Handles a message from a joined participant. Refusals are answered
    /// with a typed error to that participant only.
    pub fn handle_message(&mut self, now: Instant, from: ParticipantId, msg: ClientMsg) {
        if let Some(tap) = &mut self.tap {
            tap(TapEvent::FromClient(&msg));
        }
        if self.waiting.contains_key(&from) {
            // Someone in the lobby may only give its name, or leave.
            match msg {
                ClientMsg::Leave => self.leave_lobby(from, None, false),
                ClientMsg::LobbyName { name } => self.lobby_name(from, name),
                _ => self.refuse(
                    from,
                    ErrorCode::NotAdmitted,
                    "waiting in the lobby: nothing is available until a host admits you",
                ),
            }
            self.settle(now);
            return;
        }
        if !self.participants.contains_key(&from) {
            return;
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
            ClientMsg::LobbyName { .. } => {
                self.refuse(from, ErrorCode::Forbidden, "not waiting in a lobby");
            }
            ClientMsg::Relay { to, payload } => {
                if self.spend(now, from, Spend::App, payload.len()) {
                    self.handle_relay(from, to, payload);
                }
            }
            ClientMsg::Leave => {
                self.doomed.push((from, None));
            }
            ClientMsg::Keyframe { peer } => self.keyframe_wish(now, from, peer),
            ClientMsg::View { tiles, speaker } => self.set_view(now, from, &tiles, speaker),
            ClientMsg::MlsKeyPackage { data } => {
                if self.spend(now, from, Spend::App, data.len()) {
                    self.with_ds(from, |ds| ds.key_package(from, data));
                }
            }
            ClientMsg::MlsCommit {
                epoch,
                data,
                welcome,
                added,
            } => {
                let bytes = data.len() + welcome.as_ref().map_or(0, String::len);
                if self.spend(now, from, Spend::Commit, bytes) {
                    self.with_ds(from, |ds| ds.commit(from, epoch, data, welcome, &added));
                }
            }
            ClientMsg::MlsApp { data, to } => {
                if self.spend(now, from, Spend::App, data.len()) {
                    self.with_ds(from, |ds| ds.app(from, data, &to));
                }
            }
            ClientMsg::Admit { peer } => self.control(from, Role::Moderator, |sfu, room| {
                sfu.decide(now, room, peer, true)
            }),
            ClientMsg::Deny { peer } => self.control(from, Role::Moderator, |sfu, room| {
                sfu.decide(now, room, peer, false)
            }),
            ClientMsg::Remove { peer } => self.control(from, Role::Moderator, |sfu, room| {
                sfu.remove_by(from, room, peer)
            }),
            ClientMsg::Promote { peer } => {
                self.control(from, Role::Host, |sfu, room| sfu.promote(room, peer))
            }
            ClientMsg::Mute { peer } => self.control(from, Role::Moderator, |sfu, room| {
                sfu.ask_mute(from, room, peer)
            }),
            ClientMsg::End => self.control(from, Role::Host, |sfu, room| {
                sfu.end(room);
                Ok(())
            }),
            ClientMsg::UpdateRoom {
                lobby,
                locked,
                persistent,
                passcode,
            } => {
                if passcode.is_some() {
                    // Hashing a passcode takes tens of milliseconds: the
                    // server does it off the media loop and calls
                    // `update_room` with the verifier.
                    self.refuse(
                        from,
                        ErrorCode::Internal,
                        "passcodes are set through the server",
                    );
                } else {
                    let update = RoomUpdate {
                        lobby,
                        locked,
                        persistent,
                        passcode: None,
                    };
                    self.apply_update(now, from, &update);
                }
            }
        }
        self.settle(now);
    }

    /// Frees a room nobody is in or waiting for, and everything it held. A
    /// persistent room's record is touched so retention counts from now.
    fn free_if_empty(&mut self, room: &RoomId) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        if !r.members.is_empty() || !r.policy.waiting.is_empty() {
            return;
        }
        if let Some(r) = self.rooms.remove(room) {
            if r.policy.settings.persistent {
                self.out.push_back(Output::Persist {
                    room: room.clone(),
                    stored: Some(r.policy.stored()),
                });
            }
            debug!("room freed");
        }
    }

    /// The participant's signaling connection closed.
    pub fn leave(&mut self, now: Instant, who: ParticipantId) {
        if self.waiting.contains_key(&who) {
            self.leave_lobby(who, None, false);
            self.settle(now);
        } else if self.participants.contains_key(&who) {
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
        self.handle_packet(now, Protocol::Udp, source, destination, data);
    }

    /// Handles one RFC 4571 frame (its payload, without the length) read
    /// from the TCP connection `source` made to `destination`, one of the
    /// [`SfuConfig::tcp_candidates`]. What goes back on that connection comes
    /// out as [`Output::Transmit`] with [`Protocol::Tcp`].
    pub fn handle_tcp_frame(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        self.handle_packet(now, Protocol::Tcp, source, destination, data);
    }

    fn handle_packet(
        &mut self,
        now: Instant,
        proto: Protocol,
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
                proto,
                source,
                destination,
                contents,
            },
        );
        let known = self
            .by_addr
            .get(&(proto, source))
            .copied()
            .filter(|id| self.participants.contains_key(id));
        let id = match known {
            Some(id) => id,
            None => {
                // Only a STUN binding request with a participant's ICE
                // credentials is accepted from a new address: this is how
                // packets from unvalidated addresses are dropped.
                let Some(id) = stun::request_ufrag(data)
                    .and_then(|ufrag| self.by_ufrag.get(ufrag))
                    .and_then(|id| self.participants.get(id))
                    .filter(|p| p.rtc.accepts(&input))
                    .map(|p| p.id)
                else {
                    self.stats.datagrams_unmatched += 1;
                    return;
                };
                self.by_addr.insert((proto, source), id);
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
        let throttle = self.config.keyframe_throttle;
        let mut keyframes = Vec::new();
        for p in self.participants.values_mut() {
            if p.connect_deadline.is_some_and(|d| d <= now) {
                info!(participant = %p.id, "media never connected");
                self.doomed.push((p.id, Some(ErrorCode::ConnectionLost)));
                continue;
            }
            if p.keyframe_due(throttle).is_some_and(|due| due <= now) {
                keyframes.push(p.id);
            }
            if p.next_wake <= now {
                if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                    warn!(participant = %p.id, %e, "rtc failed");
                    self.doomed.push((p.id, Some(ErrorCode::Internal)));
                }
                self.dirty.push(p.id);
            }
        }
        for id in keyframes {
            let Some(p) = self.participants.get(&id) else {
                continue;
            };
            let due: Vec<_> = p
                .keyframe_later
                .iter()
                .filter(|(key, _)| {
                    p.last_keyframe_request
                        .get(key)
                        .is_none_or(|&last| last + throttle <= now)
                })
                .filter_map(|(&(mid, layer), &kind)| Some((p.source_of(mid)?, layer, kind)))
                .collect();
            for (source, layer, kind) in due {
                self.request_keyframe(now, id, source, layer, kind);
            }
        }
        if self.next_allocation.is_some_and(|t| now >= t) {
            self.allocate_all(now);
            self.next_allocation = Some(now + adapt::ALLOCATION_INTERVAL);
        }
        self.settle(now);
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        let mut out = self.out.pop_front();
        if let (Some(tap), Some(Output::Signal { to, msg })) = (&mut self.tap, &mut out) {
            tap(TapEvent::ToClient { to: *to, msg });
        }
        out
    }

    /// When [`Sfu::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // A walk over every participant, once per loop iteration (a batch of
        // packets), not per packet: measured cheaper than a timer heap fed on
        // every drain (bench/RESULTS.md, "Forwarding path: timers, track
        // lookup, unknown addresses").
        let throttle = self.config.keyframe_throttle;
        let allocation = self
            .next_allocation
            .filter(|_| !self.participants.is_empty());
        self.participants
            .values()
            .flat_map(|p| {
                [
                    Some(p.next_wake),
                    p.connect_deadline,
                    p.keyframe_due(throttle),
                ]
            })
            .flatten()
            .chain(allocation)
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

    /// Who waits in `room`'s lobby, in arrival order.
    pub fn lobby(&self, room: &RoomId) -> Vec<ParticipantId> {
        self.rooms.get(room).map_or_else(Vec::new, |r| {
            r.policy.waiting.iter().map(|w| w.id).collect()
        })
    }

    /// The settings of a running room.
    pub fn room_settings(&self, room: &RoomId) -> Option<&RoomSettings> {
        self.rooms.get(room).map(|r| &r.policy.settings)
    }

    fn refuse(&mut self, to: ParticipantId, code: ErrorCode, message: &str) {
        self.out.push_back(Output::Signal {
            to,
            msg: ServerMsg::error(code, message),
        });
    }

    /// Spends `bytes` of `from`'s budget of `kind`; refuses with
    /// `rate_limited` when it has not that many.
    fn spend(&mut self, now: Instant, from: ParticipantId, kind: Spend, bytes: usize) -> bool {
        let Some(p) = self.participants.get_mut(&from) else {
            return false;
        };
        let ok = match kind {
            Spend::App => p.budget.app(now, bytes),
            Spend::Commit => p.budget.commit(now, bytes),
        };
        if !ok {
            self.refuse(
                from,
                ErrorCode::RateLimited,
                "over the byte budget for messages to the others: the message was dropped",
            );
        }
        ok
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
        let opened: Vec<(TrackKey, Option<Layer>)> = p
            .outgoing
            .iter()
            .filter(|t| matches!(t.state, participant::OutState::Opening(_)))
            .map(|t| (t.key, t.choice.target))
            .collect();
        match p.accept_answer(sdp) {
            Ok(()) => {
                self.dirty.push(from);
                self.renegotiate.push(from);
                // A receiver that just got a track needs a keyframe to start.
                for ((publisher, source), layer) in opened {
                    if let Some(layer) = layer {
                        self.request_keyframe(
                            now,
                            publisher,
                            source,
                            layer,
                            KeyframeRequestKind::Pli,
                        );
                    }
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
        let mut pacer_turns = 0;
        loop {
            let Some(p) = self.participants.get_mut(&id) else {
                return;
            };
            // str0m's pacer (on with its bandwidth estimator) lets one packet
            // out per timeout and asks for the next turn a microsecond later,
            // even for unpaced streams. Served here, a receiver with several
            // packets queued sends them all in this drain rather than one per
            // turn of the media loop, each turn walking every participant.
            // Only the pacer's turns: serving every timer due as soon (the
            // estimator's are as frequent) cost more than it saved, as those
            // are better taken together in the loop's turn (bench/RESULTS.md).
            let polled = loop {
                match p.rtc.poll_output() {
                    Ok(RtcOutput::Timeout(t))
                        if pacer_turns < MAX_PACER_TURNS
                            && t <= now + PACER_TURN
                            && p.rtc.last_timeout_reason()
                                == Reason::Pacer(PacerReason::Immediate) =>
                    {
                        pacer_turns += 1;
                        if let Err(e) = p.rtc.handle_input(Input::Timeout(t)) {
                            break Err(e);
                        }
                    }
                    other => break other,
                }
            };
            let event = match polled {
                Ok(RtcOutput::Timeout(t)) => {
                    p.next_wake = t;
                    return;
                }
                Ok(RtcOutput::Transmit(t)) => {
                    self.out.push_back(Output::Transmit {
                        proto: t.proto,
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
                Event::RtpPacket(pkt) => self.forward(id, pkt),
                Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                    p.note_estimate(now, estimate.as_u64());
                    debug!(participant = %id, estimate = estimate.as_u64(), taken = ?p.estimate, "downlink estimate");
                }
                Event::MediaEgressStats(stats)
                    if stats.loss.is_some_and(|l| l >= adapt::CONGESTED_LOSS) =>
                {
                    p.note_congestion(now, now + adapt::CONGESTION_MEMORY);
                }
                Event::KeyframeRequest(req) => {
                    // The receiver lost its reference: a keyframe of the layer
                    // it gets (or waits for).
                    let Some((publisher, source, layer)) = p.outgoing_on(req.mid).and_then(|t| {
                        let layer = t.choice.current.or(t.choice.target)?;
                        Some((t.key.0, t.key.1, layer))
                    }) else {
                        continue;
                    };
                    let interval = self.config.receiver_keyframe_interval;
                    if !p.may_ask_keyframe(req.mid, now, interval) {
                        self.stats.keyframe_requests_ignored += 1;
                        continue;
                    }
                    self.request_keyframe(now, publisher, source, layer, req.kind);
                }
                _ => {}
            }
        }
    }

    fn remove(&mut self, id: ParticipantId, code: Option<ErrorCode>) {
        let Some(mut p) = self.participants.remove(&id) else {
            return;
        };
        p.rtc.disconnect();
        self.by_addr.retain(|_, v| *v != id);
        self.by_ufrag
            .remove(&p.rtc.direct_api().local_ice_credentials().ufrag);
        if let Some(r) = self.rooms.get_mut(&p.room) {
            r.members.retain(|&m| m != id);
            if code == Some(ErrorCode::Removed) {
                if r.policy.revoke(id) && r.policy.settings.persistent {
                    self.out.push_back(Output::Persist {
                        room: p.room.clone(),
                        stored: Some(r.policy.stored()),
                    });
                }
            } else {
                r.policy.left(id);
            }
            let sends = r.ds.left(id, &r.members);
            for (to, msg) in sends {
                self.out.push_back(Output::Signal { to, msg });
            }
        }
        self.free_if_empty(&p.room);
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
