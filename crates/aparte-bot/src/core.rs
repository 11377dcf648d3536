//! The sans-IO participant: answers the server's offers, publishes synthetic
//! frames on a schedule and checks every frame it receives.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aparte_e2ee::{
    FrameError, LinkSecret, MediaKeys, MediaKind, Session, SessionEvent, SessionOut, b64,
};
use aparte_proto::{
    ClientMsg, ErrorCode, ParticipantId, Role, RoomId, ServerMsg, Token, TrackSource,
};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::crypto::{CryptoProvider, from_feature_flags};
use str0m::media::{Direction, KeyframeRequestKind, MediaData, MediaTime, Mid, Rid, Rids};
use str0m::net::{DatagramRecv, Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};

use crate::payload::{self, FrameInfo};
use crate::report::{BotReport, StreamReport};

/// What a bot publishes.
#[derive(Debug, Clone)]
pub struct BotConfig {
    /// Video bitrate in bits per second; 0 publishes no video.
    pub video_bps: u32,
    /// Video frames per second.
    pub fps: u32,
    /// Whether to publish 50 audio frames per second (Opus-sized).
    pub audio: bool,
    /// Audio frame size in bytes.
    pub audio_frame_bytes: usize,
    /// Seconds between keyframes (a keyframe request also makes one).
    pub keyframe_interval: Duration,
    /// The time all bots of a run stamp frames against, to measure latency.
    pub epoch: Instant,
    /// The meeting link's secret: without it the bot cannot join the group.
    pub link: LinkSecret,
    /// The display name the bot announces (end-to-end encrypted).
    pub name: String,
    /// How long old epochs' media keys stay accepted, in ms.
    pub grace_ms: u64,
    /// A host or moderator key to present when joining. With the host key of
    /// a room that is not running, the join opens it.
    pub key: Option<Token>,
    /// A seat from an earlier admission (a reconnect).
    pub seat: Option<Token>,
    /// The room's passcode.
    pub passcode: Option<String>,
    /// As host: turn the lobby off once welcomed, so other bots walk in.
    pub open_room: bool,
    /// As host or moderator: admit everyone who waits in the lobby.
    pub admit_all: bool,
    /// Seal and open frames with keys from this fixed secret instead of an
    /// MLS group: for benchmarks of SFUs that have no delivery service (the
    /// per-frame work stays the same). Aparté meetings never use it.
    pub fixed_media_key: Option<[u8; 16]>,
    /// Keep running and publishing after the server refuses or ends this
    /// participant, as a hostile client would (tests that the server cuts it
    /// off, rather than trusting it to stop).
    pub stubborn: bool,
    /// With simulcast, the top layer starts this long after the others, as a
    /// browser starts its layers while its own estimate grows.
    pub top_layer_after: Duration,
}

impl BotConfig {
    /// A bot of the meeting whose link holds `link`, publishing `video_bps`
    /// of video at 30 fps and audio.
    pub fn new(video_bps: u32, epoch: Instant, link: LinkSecret) -> Self {
        BotConfig {
            video_bps,
            fps: 30,
            audio: true,
            audio_frame_bytes: 80,
            keyframe_interval: Duration::from_secs(2),
            epoch,
            link,
            name: String::from("bot"),
            grace_ms: 1000,
            key: None,
            seat: None,
            passcode: None,
            open_room: false,
            admit_all: false,
            fixed_media_key: None,
            stubborn: false,
            top_layer_after: Duration::ZERO,
        }
    }

    /// The same bot as the host of `key`'s room, turning its lobby off so
    /// the other bots of a run enter directly.
    pub fn hosting(mut self, key: Token) -> Self {
        self.key = Some(key);
        self.open_room = true;
        self
    }

    /// A bot that only receives.
    pub fn receive_only(epoch: Instant, link: LinkSecret) -> Self {
        BotConfig {
            video_bps: 0,
            audio: false,
            ..BotConfig::new(0, epoch, link)
        }
    }
}

/// Something the bot's runtime must do.
#[derive(Debug)]
pub enum BotOutput {
    /// Send a datagram to the server's media socket.
    Transmit {
        /// Where to.
        destination: SocketAddr,
        /// The datagram.
        contents: Vec<u8>,
    },
    /// Send a signaling message.
    Signal(ClientMsg),
}

/// Why the bot cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotError {
    /// The server sent an error the bot cannot recover from.
    #[error("server error {0}: {1}")]
    Server(ErrorCode, String),
    /// The server's offer could not be used.
    #[error("bad offer: {0}")]
    Offer(String),
    /// The media connection failed.
    #[error("media connection lost")]
    Disconnected,
    /// End-to-end encryption could not start or go on.
    #[error("e2ee: {0}")]
    E2ee(String),
}

/// The mids this bot publishes its camera and microphone on.
#[derive(Debug, Clone, Copy)]
struct PublishMids {
    camera: Option<Mid>,
    mic: Option<Mid>,
}

/// The keys frames are sealed and opened with: the MLS session's, or fixed
/// benchmark keys when there is no session.
fn media_keys<'a>(
    session: &'a mut Option<Session>,
    fixed: &'a mut Option<MediaKeys>,
) -> Option<&'a mut MediaKeys> {
    match session {
        Some(s) => Some(s.media()),
        None => fixed.as_mut(),
    }
}

/// A frame generator for one published source.
#[derive(Debug)]
struct Publisher {
    source: TrackSource,
    mid: Mid,
    interval: Duration,
    clock_rate: u64,
    seq: u32,
    next: Instant,
    last_keyframe: Option<Instant>,
    /// The streams it sends: one, or a simulcast camera's layers (lowest
    /// first). Each frame is captured once and encoded once per layer.
    layers: Vec<SendLayer>,
}

/// One stream of a published source.
#[derive(Debug)]
struct SendLayer {
    /// Its rid, when the server asked for simulcast.
    rid: Option<Rid>,
    frame_bytes: usize,
    /// The size its keyframes announce.
    size: (u16, u16),
    /// Whether it is sent (the server stops layers nobody receives).
    on: bool,
    /// Nothing is sent on it before this (see [`BotConfig::top_layer_after`]).
    not_before: Option<Instant>,
    keyframe_wanted: bool,
    /// Frames sent on it.
    sent: u64,
    /// Added to its RTP timestamps: each stream has its own clock offset,
    /// as a browser's simulcast layers do.
    time_offset: u64,
}

impl SendLayer {
    fn new(rid: Option<Rid>, frame_bytes: usize, size: (u16, u16), time_offset: u64) -> Self {
        SendLayer {
            rid,
            frame_bytes,
            size,
            on: true,
            not_before: None,
            keyframe_wanted: true,
            sent: 0,
            time_offset,
        }
    }
}

/// Sizes and shares of the top layer's rate of a simulcast camera's layers,
/// lowest first, as a browser sends them (quarter, half and full size).
const SIMULCAST_LAYERS: [((u16, u16), usize); 3] =
    [((320, 180), 10), ((640, 360), 33), ((1280, 720), 100)];

/// One participant, without IO.
pub struct BotCore {
    config: BotConfig,
    rtc: Rtc,
    local: SocketAddr,
    me: Option<ParticipantId>,
    peers: Vec<ParticipantId>,
    publishers: Vec<Publisher>,
    /// Receiving mids and whose track each carries.
    tracks: HashMap<Mid, (ParticipantId, TrackSource)>,
    streams: HashMap<(ParticipantId, TrackSource), StreamReport>,
    unexpected_frames: u64,
    keyframe_requests: u64,
    /// `layers` messages the server sent.
    layers_told: u64,
    datagrams_in: u64,
    connected_us: Option<u64>,
    /// The latest time a caller gave us (sans-IO: we never read the clock).
    last_now: Instant,
    connected: bool,
    next_wake: Instant,
    out: VecDeque<BotOutput>,
    buf: Vec<u8>,
    crypto: Arc<CryptoProvider>,
    /// The E2EE session, from the server's welcome on.
    session: Option<Session>,
    /// Media keys from [`BotConfig::fixed_media_key`], used when there is no session.
    fixed_media: Option<MediaKeys>,
    /// An offer this bot made (external signaling) and its publishing mids.
    pending_offer: Option<(SdpPendingOffer, PublishMids)>,
    e2ee: crate::report::E2eeReport,
    room: Option<RoomId>,
    control: crate::report::ControlReport,
}

impl std::fmt::Debug for BotCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BotCore")
            .field("me", &self.me)
            .field("connected", &self.connected)
            .finish_non_exhaustive()
    }
}

impl BotCore {
    /// A bot whose media socket is bound at `local`. Join by sending
    /// [`BotCore::join_msg`].
    pub fn new(now: Instant, local: SocketAddr, config: BotConfig) -> Self {
        let crypto = Arc::new(from_feature_flags());
        let fixed_media = config
            .fixed_media_key
            .and_then(|k| MediaKeys::fixed_for_benchmarks(&k).ok());
        BotCore {
            fixed_media,
            pending_offer: None,
            rtc: Self::new_rtc(now, local, &crypto),
            config,
            local,
            me: None,
            peers: Vec::new(),
            publishers: Vec::new(),
            tracks: HashMap::new(),
            streams: HashMap::new(),
            unexpected_frames: 0,
            keyframe_requests: 0,
            layers_told: 0,
            datagrams_in: 0,
            connected_us: None,
            last_now: now,
            connected: false,
            next_wake: now,
            out: VecDeque::new(),
            buf: Vec::with_capacity(2048),
            crypto,
            session: None,
            e2ee: Default::default(),
            room: None,
            control: Default::default(),
        }
    }

    fn new_rtc(now: Instant, local: SocketAddr, crypto: &Arc<CryptoProvider>) -> Rtc {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crypto.clone())
            // str0m releases complete frames past a gap once this many packets
            // wait (default 30); a frame repaired by retransmission after that
            // would be delivered out of order. A receiver that checks order holds
            // more, as a decoder's jitter buffer would (str0m also gives up on a
            // gap once a later frame is complete and the missing packets' NACKs
            // have had their time).
            .set_reordering_size_video(300)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        if let Ok(c) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(c);
        }
        // The ICE agent learns the time only from a timeout: until it has one it
        // asks for no wake-up, so the checks an offer's candidates start would
        // wait for whatever else woke the bot (nothing, in a quiet lobby).
        let _ = rtc.handle_input(Input::Timeout(now));
        rtc
    }

    /// The id the server gave this bot, once welcomed.
    pub fn id(&self) -> Option<ParticipantId> {
        self.me
    }

    /// The id the server gave this bot while it waits in the lobby.
    pub fn waiting(&self) -> Option<ParticipantId> {
        self.control.waiting
    }

    /// Whether ICE and DTLS are up.
    pub fn is_connected(&self) -> bool {
        self.connected
    }

    /// Other participants of the room, as the server announced them.
    pub fn peers(&self) -> &[ParticipantId] {
        &self.peers
    }

    /// What the bot received so far.
    pub fn report(&self) -> BotReport {
        let mut streams: Vec<StreamReport> = self.streams.values().cloned().collect();
        streams.sort_by_key(|s| (s.peer, s.source));
        BotReport {
            id: self.me,
            streams,
            unexpected_frames: self.unexpected_frames,
            sent_frames: self.publishers.iter().map(|p| u64::from(p.seq)).sum(),
            connected: self.connected,
            keyframe_requests_received: self.keyframe_requests,
            layers_told: self.layers_told,
            camera_layers_sent: self
                .publishers
                .iter()
                .filter(|p| p.source == TrackSource::Camera)
                .flat_map(|p| p.layers.iter().map(|l| l.sent))
                .collect(),
            datagrams_in: self.datagrams_in,
            connected_us: self.connected_us,
            control: self.control.clone(),
            e2ee: {
                let mut e = self.e2ee.clone();
                if let Some(s) = &self.session {
                    e.epoch = s.epoch();
                    e.members = s.members().into_iter().map(ParticipantId).collect();
                    e.security_code = s.security_code().map(|c| c.digits);
                }
                e
            },
        }
    }

    /// Handles a message from the server.
    pub fn handle_signal(&mut self, now: Instant, msg: ServerMsg) -> Result<(), BotError> {
        self.last_now = now;
        match msg {
            ServerMsg::Welcome {
                you,
                role,
                seat,
                room,
                peers,
                create_group,
            } => {
                self.me = Some(you);
                self.control.waiting = None;
                self.control.role = Some(role);
                self.control.seat = Some(seat);
                self.control.room = Some(room);
                if role == Role::Host && self.config.open_room && room.lobby {
                    self.out.push_back(BotOutput::Signal(ClientMsg::UpdateRoom {
                        lobby: Some(false),
                        locked: None,
                        persistent: None,
                        passcode: None,
                    }));
                }
                self.peers = peers.into_iter().map(|p| p.id).collect();
                let room = self.room.as_ref().map_or("", RoomId::as_str);
                let mut session =
                    Session::new(you.0, self.config.link.clone(), self.config.grace_ms, room)
                        .map_err(|e| BotError::E2ee(e.to_string()))?;
                session
                    .start(self.ms(now), create_group)
                    .map_err(|e| BotError::E2ee(e.to_string()))?;
                self.session = Some(session);
            }
            ServerMsg::PeerJoined { peer } => self.peers.push(peer.id),
            ServerMsg::Waiting { you } => {
                self.control.waiting = Some(you);
                // The name, sealed for this waiter's id, goes to the hosts.
                if let Some(room) = &self.room {
                    let name = self.config.link.seal_lobby_name(
                        room.as_str(),
                        you.0,
                        &self.config.name,
                        rand::random::<[u8; 12]>(),
                    );
                    self.out
                        .push_back(BotOutput::Signal(ClientMsg::LobbyName { name }));
                }
            }
            ServerMsg::LobbyRequest { peer, name } => {
                let opened = match (&self.room, name) {
                    (Some(room), Some(n)) => {
                        self.config.link.open_lobby_name(room.as_str(), peer.0, &n)
                    }
                    _ => None,
                };
                // A second request for the same waiter carries its name.
                if let Some(entry) = self.control.lobby.iter_mut().find(|(p, _)| *p == peer) {
                    entry.1 = opened;
                } else {
                    self.control.lobby.push((peer, opened));
                    if self.config.admit_all {
                        self.out
                            .push_back(BotOutput::Signal(ClientMsg::Admit { peer }));
                    }
                }
            }
            ServerMsg::LobbyDone { peer, admitted } => {
                self.control.lobby_done.push((peer, admitted));
            }
            ServerMsg::RoleChanged { peer, role } => {
                if Some(peer) == self.me {
                    self.control.role = Some(role);
                }
            }
            ServerMsg::ModeratorKey { key } => self.control.moderator_key = Some(key),
            ServerMsg::RoomUpdated { room } => self.control.room = Some(room),
            ServerMsg::MuteRequested { by, peer } => {
                self.control.mute_requests.push((by, peer));
                if peer.is_none() || peer == self.me {
                    // Asked to mute: the bot's microphone goes quiet.
                    self.control.muted = true;
                    self.publishers.retain(|p| p.source != TrackSource::Mic);
                }
            }
            ServerMsg::PeerLeft { peer } => {
                self.peers.retain(|&p| p != peer);
                self.tracks.retain(|_, (p, _)| *p != peer);
                let ms = self.ms(now);
                if let Some(s) = &mut self.session {
                    s.peer_left(ms, peer.0);
                }
            }
            ServerMsg::MlsJoinRequest { from, data } => {
                let ms = self.ms(now);
                if let (Some(s), Some(kp)) = (&mut self.session, b64::decode(&data)) {
                    s.join_request(ms, from.0, kp);
                }
            }
            ServerMsg::MlsCommit { from, data, .. } => {
                let ms = self.ms(now);
                if let (Some(s), Some(c)) = (&mut self.session, b64::decode(&data)) {
                    s.commit(ms, from.0, &c);
                }
            }
            ServerMsg::MlsCommitResult { epoch, accepted } => {
                let ms = self.ms(now);
                if let Some(s) = &mut self.session {
                    s.commit_result(ms, epoch, accepted);
                }
            }
            ServerMsg::MlsWelcome { data } => {
                let ms = self.ms(now);
                if let (Some(s), Some(w)) = (&mut self.session, b64::decode(&data)) {
                    if let Err(e) = s.welcome(ms, &w) {
                        self.e2ee.refusals.push(e.to_string());
                    }
                }
            }
            ServerMsg::MlsApp { from, data } => {
                let ms = self.ms(now);
                if let (Some(s), Some(m)) = (&mut self.session, b64::decode(&data)) {
                    s.app(ms, from.0, &m);
                }
            }
            ServerMsg::MlsCreateGroup => {
                let ms = self.ms(now);
                if let Some(s) = &mut self.session {
                    s.create_group(ms)
                        .map_err(|e| BotError::E2ee(e.to_string()))?;
                }
            }
            ServerMsg::Offer {
                sdp,
                publish,
                tracks,
            } => {
                let answer =
                    self.answer(&sdp, tracks.into_iter().map(|t| (t.mid, t.peer, t.source)))?;
                if self.publishers.is_empty() {
                    let mids = PublishMids {
                        camera: Some(publish.camera.as_str().into()),
                        mic: Some(publish.mic.as_str().into()),
                    };
                    self.start_publishing(now, &mids);
                }
                self.out
                    .push_back(BotOutput::Signal(ClientMsg::Answer { sdp: answer }));
            }
            ServerMsg::Relay { .. } => {}
            ServerMsg::Layers { source, active } => self.set_layers(source, &active),
            // Bots reach the server directly.
            ServerMsg::IceServers { .. } => {}
            ServerMsg::Error { code, message } => {
                self.control.errors.push(code);
                if !Self::survives(code) && !self.config.stubborn {
                    return Err(BotError::Server(code, message));
                }
            }
        }
        self.drain_session();
        self.drain(now)
    }

    /// Milliseconds on the bots' shared clock, for the E2EE session.
    fn ms(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.config.epoch).as_millis() as u64
    }

    /// Sends a chat message to the group (end-to-end encrypted).
    pub fn send_chat(&mut self, text: &str) -> Result<(), BotError> {
        let msg = serde_json::json!({ "t": "chat", "text": text }).to_string();
        let s = self
            .session
            .as_mut()
            .ok_or(BotError::E2ee("not in a group".into()))?;
        s.send(msg.as_bytes())
            .map_err(|e| BotError::E2ee(e.to_string()))?;
        self.drain_session();
        Ok(())
    }

    /// Moves what the E2EE session produced to the signaling queue and the report.
    fn drain_session(&mut self) {
        let Some(s) = &mut self.session else { return };
        // Who should learn this bot's name: nobody, those who just joined,
        // or (in its first epoch) everyone.
        let mut announce: Option<Vec<u64>> = None;
        // Whose frames this bot can open from now on: ask for their keyframes.
        let mut keyframes: Vec<u64> = Vec::new();
        while let Some(ev) = s.poll_event() {
            match ev {
                SessionEvent::Epoch { epoch, joined, .. } => {
                    keyframes.extend(&joined);
                    let first = self.e2ee.epoch_changes.is_empty();
                    announce = match announce.take() {
                        _ if first => Some(Vec::new()),
                        Some(to) if to.is_empty() => Some(to),
                        Some(mut to) => {
                            to.extend(joined);
                            Some(to)
                        }
                        None => (!joined.is_empty()).then_some(joined),
                    };
                    let us = self
                        .last_now
                        .saturating_duration_since(self.config.epoch)
                        .as_micros() as u64;
                    self.e2ee.epoch_changes.push((epoch, us));
                }
                SessionEvent::Message { from, data } => {
                    let text = String::from_utf8_lossy(&data).into_owned();
                    self.e2ee.messages.push((ParticipantId(from), text));
                }
                SessionEvent::Removed => self.e2ee.removed = true,
                SessionEvent::Refused { reason, .. } => self.e2ee.refusals.push(reason),
            }
        }
        if let Some(to) = announce {
            let state = serde_json::json!({ "t": "state", "name": self.config.name }).to_string();
            let _ = s.send_to(&to, state.as_bytes());
        }
        for peer in keyframes {
            self.out.push_back(BotOutput::Signal(ClientMsg::Keyframe {
                peer: ParticipantId(peer),
            }));
        }
        while let Some(out) = s.poll_output() {
            let msg = match out {
                SessionOut::KeyPackage(kp) => ClientMsg::MlsKeyPackage {
                    data: b64::encode(&kp),
                },
                SessionOut::Commit {
                    epoch,
                    message,
                    welcome,
                    added,
                } => ClientMsg::MlsCommit {
                    epoch,
                    data: b64::encode(&message),
                    welcome: welcome.map(|w| b64::encode(&w)),
                    added: added.into_iter().map(ParticipantId).collect(),
                },
                SessionOut::App { message, to } => ClientMsg::MlsApp {
                    data: b64::encode(&message),
                    to: to.into_iter().map(ParticipantId).collect(),
                },
            };
            self.out.push_back(BotOutput::Signal(msg));
        }
    }

    /// Handles a datagram from the server.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), BotError> {
        self.last_now = now;
        self.datagrams_in += 1;
        let Ok(contents) = DatagramRecv::try_from(data) else {
            return Ok(());
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        if self.rtc.accepts(&input) {
            let _ = self.rtc.handle_input(input);
        }
        self.drain(now)
    }

    /// Advances time: publishes frames that are due.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), BotError> {
        self.last_now = now;
        let ms = self.ms(now);
        if let Some(s) = &mut self.session {
            s.handle_timeout(ms);
        }
        self.drain_session();
        if self.connected {
            self.publish_due(now);
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drain(now)
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<BotOutput> {
        self.out.pop_front()
    }

    /// When [`BotCore::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_wake;
        if let Some(ms) = self.session.as_ref().and_then(Session::poll_timeout) {
            t = t.min(self.config.epoch + Duration::from_millis(ms));
        }
        if self.connected {
            for p in &self.publishers {
                t = t.min(p.next);
            }
        }
        t
    }

    /// The message that joins `room`, with this bot's key, seat and
    /// passcode. (Its name follows if it waits in the lobby, sealed for the
    /// id the server gives it.)
    pub fn join_msg(&mut self, room: RoomId) -> ClientMsg {
        self.room = Some(room.clone());
        ClientMsg::Join {
            room,
            key: self.config.key.clone(),
            seat: self.config.seat.clone(),
            passcode: self.config.passcode.clone(),
        }
    }

    /// Refusals after which a participant carries on: the server refused one
    /// request and changed nothing else. Any other error ends the bot.
    fn survives(code: ErrorCode) -> bool {
        matches!(
            code,
            ErrorCode::TooManyTracks
                | ErrorCode::Forbidden
                | ErrorCode::UnknownPeer
                | ErrorCode::RateLimited
                | ErrorCode::ServerBusy
                | ErrorCode::QuotaExceeded
                | ErrorCode::NotAdmitted
                | ErrorCode::NotInGroup
                | ErrorCode::AlreadyJoined
                | ErrorCode::BadMessage
                | ErrorCode::UnknownType
                | ErrorCode::InvalidField
                | ErrorCode::TooLarge
        )
    }

    /// How the bot was configured.
    pub fn config(&self) -> &BotConfig {
        &self.config
    }

    /// Queues a signaling message (host controls, probes of the server).
    pub fn send_signal(&mut self, msg: ClientMsg) {
        let removed = match &msg {
            ClientMsg::Remove { peer } => Some(*peer),
            _ => None,
        };
        self.out.push_back(BotOutput::Signal(msg));
        // A removal is committed by the remover itself, at once: the server
        // cannot keep the removed participant in the group by hiding it.
        let ms = self.ms(self.last_now);
        if let (Some(peer), Some(s)) = (removed, self.session.as_mut()) {
            s.remove(ms, peer.0);
            self.drain_session();
        }
    }

    /// Answers an offer whose m-lines `tracks` carry (mid, publisher, source).
    fn answer(
        &mut self,
        sdp: &str,
        tracks: impl IntoIterator<Item = (impl AsRef<str>, ParticipantId, TrackSource)>,
    ) -> Result<String, BotError> {
        let offer = SdpOffer::from_sdp_string(sdp).map_err(|e| BotError::Offer(e.to_string()))?;
        let answer = self
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| BotError::Offer(e.to_string()))?;
        self.tracks.clear();
        for (mid, peer, source) in tracks {
            self.tracks.insert(mid.as_ref().into(), (peer, source));
        }
        Ok(answer.to_sdp_string())
    }

    /// For SFUs with their own signaling (the benchmark's Janus adapter): the
    /// id this bot's frames carry, which receivers check against the
    /// publisher they were told about.
    pub fn set_id(&mut self, id: ParticipantId) {
        self.me = Some(id);
    }

    /// For SFUs with their own signaling that want the publisher's offer: an
    /// offer to send camera and microphone (as configured).
    pub fn publish_offer(&mut self) -> Result<String, BotError> {
        let c = &self.config;
        let video = c.video_bps > 0 && c.fps > 0;
        let audio = c.audio;
        let mut api = self.rtc.sdp_api();
        let mic = audio.then(|| {
            api.add_media(
                str0m::media::MediaKind::Audio,
                Direction::SendOnly,
                None,
                None,
                None,
            )
        });
        let camera = video.then(|| {
            api.add_media(
                str0m::media::MediaKind::Video,
                Direction::SendOnly,
                None,
                None,
                None,
            )
        });
        let (offer, pending) = api
            .apply()
            .ok_or_else(|| BotError::Offer("nothing to publish".into()))?;
        self.pending_offer = Some((pending, PublishMids { camera, mic }));
        Ok(offer.to_sdp_string())
    }

    /// The answer to [`BotCore::publish_offer`]: publishing starts once connected.
    pub fn accept_answer(&mut self, now: Instant, sdp: &str) -> Result<(), BotError> {
        let (pending, mids) = self
            .pending_offer
            .take()
            .ok_or_else(|| BotError::Offer("no offer is pending".into()))?;
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|e| BotError::Offer(e.to_string()))?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|e| BotError::Offer(e.to_string()))?;
        self.start_publishing(now, &mids);
        self.drain(now)
    }

    /// For SFUs with their own signaling that send the receiver an offer:
    /// answers it; `tracks` says whose track each m-line (mid) carries.
    pub fn answer_offer(
        &mut self,
        now: Instant,
        sdp: &str,
        tracks: impl IntoIterator<Item = (String, ParticipantId, TrackSource)>,
    ) -> Result<String, BotError> {
        self.last_now = now;
        let answer = self.answer(sdp, tracks)?;
        self.drain(now)?;
        Ok(answer)
    }

    fn start_publishing(&mut self, now: Instant, publish: &PublishMids) {
        let c = &self.config;
        if let (Some(mid), true) = (publish.camera, c.video_bps > 0 && c.fps > 0) {
            let fps = c.fps;
            let top = (c.video_bps / 8 / fps) as usize;
            // The rids the answer agreed to send, when the server asked for
            // simulcast: a layer for each, in the server's order.
            let rids: Vec<Rid> = match self.rtc.media(mid).map(|m| m.rids_tx()) {
                Some(Rids::Specific(rids)) => rids.clone(),
                _ => Vec::new(),
            };
            let mut layers: Vec<SendLayer> = if rids.is_empty() {
                vec![SendLayer::new(None, top, SIMULCAST_LAYERS[2].0, 0)]
            } else {
                rids.iter()
                    .zip(SIMULCAST_LAYERS)
                    .enumerate()
                    .map(|(i, (&rid, (size, share)))| {
                        let offset = (i as u64 + 1) * 0x5432_1000;
                        SendLayer::new(Some(rid), top * share / 100, size, offset)
                    })
                    .collect()
            };
            if let Some(top) = layers.last_mut().filter(|l| l.rid.is_some()) {
                top.not_before = Some(now + c.top_layer_after);
            }
            self.publishers.push(Publisher {
                source: TrackSource::Camera,
                mid,
                interval: Duration::from_secs(1) / fps,
                clock_rate: 90_000,
                seq: 0,
                next: now,
                last_keyframe: None,
                layers,
            });
        }
        if let (Some(mid), true) = (publish.mic, c.audio) {
            self.publishers.push(Publisher {
                source: TrackSource::Mic,
                mid,
                interval: Duration::from_millis(20),
                clock_rate: 48_000,
                seq: 0,
                next: now,
                last_keyframe: None,
                // Audio has no keyframes: `keyframe_wanted` is never read.
                layers: vec![SendLayer::new(None, c.audio_frame_bytes, (0, 0), 0)],
            });
        }
    }

    fn publish_due(&mut self, now: Instant) {
        let Some(me) = self.me else { return };
        let epoch = self.config.epoch;
        let keyframe_interval = self.config.keyframe_interval;
        for p in &mut self.publishers {
            while p.next <= now {
                let video = !p.source.is_audio();
                let periodic = video
                    && p.last_keyframe
                        .is_none_or(|k| now.saturating_duration_since(k) >= keyframe_interval);
                if periodic {
                    p.last_keyframe = Some(now);
                }
                let rtp_time =
                    u64::from(p.seq) * p.clock_rate * p.interval.as_micros() as u64 / 1_000_000;
                let (kind, freq) = if video {
                    (MediaKind::Video, str0m::media::Frequency::NINETY_KHZ)
                } else {
                    (MediaKind::Audio, str0m::media::Frequency::FORTY_EIGHT_KHZ)
                };
                let started = |l: &SendLayer| l.not_before.is_none_or(|t| now >= t);
                for (index, layer) in p
                    .layers
                    .iter_mut()
                    .enumerate()
                    .filter(|(_, l)| l.on && started(l))
                {
                    let keyframe = video && (periodic || layer.keyframe_wanted);
                    if keyframe {
                        layer.keyframe_wanted = false;
                    }
                    let info = FrameInfo {
                        keyframe,
                        publisher: me,
                        source: p.source,
                        seq: p.seq,
                        sent_us: now.saturating_duration_since(epoch).as_micros() as u64,
                        size: if keyframe { layer.size } else { (0, 0) },
                        layer: index as u8,
                    };
                    payload::encode(&info, layer.frame_bytes, &mut self.buf);
                    // Fail closed: a frame that cannot be sealed is not sent.
                    let sealed = match media_keys(&mut self.session, &mut self.fixed_media)
                        .map(|keys| keys.seal(kind, &self.buf))
                    {
                        Some(Ok(sealed)) => sealed,
                        _ => {
                            self.e2ee.frames_not_sent += 1;
                            continue;
                        }
                    };
                    if let Some(writer) = self.rtc.writer(p.mid) {
                        let pt = writer.payload_params().next().map(|pp| pp.pt());
                        let writer = match layer.rid {
                            Some(rid) => writer.rid(rid),
                            None => writer,
                        };
                        if let Some(pt) = pt {
                            let data: Arc<[u8]> = sealed.into();
                            let time = (rtp_time + layer.time_offset) & 0xffff_ffff;
                            let _ = writer.write(pt, now, MediaTime::new(time, freq), data);
                            layer.sent += 1;
                        }
                    }
                }
                p.seq = p.seq.wrapping_add(1);
                p.next += p.interval;
                // After a long stall, skip frames rather than burst them.
                if now.saturating_duration_since(p.next) > Duration::from_secs(1) {
                    p.next = now + p.interval;
                }
            }
        }
    }

    /// The server says which layers of `source` someone receives: the others
    /// stop; one that starts again starts with a keyframe.
    fn set_layers(&mut self, source: TrackSource, active: &[bool]) {
        let Some(p) = self.publishers.iter_mut().find(|p| p.source == source) else {
            return;
        };
        for (layer, &on) in p.layers.iter_mut().zip(active) {
            if on && !layer.on {
                layer.keyframe_wanted = true;
            }
            layer.on = on;
        }
        self.layers_told += 1;
    }

    fn drain(&mut self, now: Instant) -> Result<(), BotError> {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Timeout(t)) => {
                    self.next_wake = t;
                    return Ok(());
                }
                Ok(Output::Transmit(t)) => self.out.push_back(BotOutput::Transmit {
                    destination: t.destination,
                    contents: t.contents.into(),
                }),
                Ok(Output::Event(e)) => match e {
                    Event::Connected => {
                        self.connected = true;
                        self.connected_us = Some(
                            now.saturating_duration_since(self.config.epoch).as_micros() as u64,
                        );
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return Err(BotError::Disconnected);
                    }
                    Event::MediaData(d) => self.receive(now, &d),
                    Event::KeyframeRequest(r) => {
                        if let Some(p) = self.publishers.iter_mut().find(|p| p.mid == r.mid) {
                            for layer in p.layers.iter_mut().filter(|l| l.rid == r.rid) {
                                layer.keyframe_wanted = true;
                            }
                            self.keyframe_requests += 1;
                        }
                    }
                    _ => {}
                },
                Err(e) => return Err(BotError::Offer(e.to_string())),
            }
        }
    }

    fn receive(&mut self, now: Instant, d: &MediaData) {
        let Some(&(peer, source)) = self.tracks.get(&d.mid) else {
            self.unexpected_frames += 1;
            return;
        };
        let s = self
            .streams
            .entry((peer, source))
            .or_insert_with(|| StreamReport::new(peer, source));
        let now_us = now.saturating_duration_since(self.config.epoch).as_micros() as u64;
        let kind = if source.is_audio() {
            MediaKind::Audio
        } else {
            MediaKind::Video
        };
        let ms = now_us / 1000;
        if !d.contiguous {
            s.discontinuities += 1;
        }
        let time = d.time.numer();
        if s.last_time.is_some_and(|t| time <= t && !source.is_audio()) {
            s.time_backwards += 1;
        }
        s.last_time = Some(time);
        let opened = media_keys(&mut self.session, &mut self.fixed_media)
            .map(|keys| keys.open(ms, kind, peer.0, &d.data));
        let plain = match opened {
            Some(Ok(p)) => p,
            Some(Err(FrameError::WrongSender)) => {
                s.relabelled += 1;
                return;
            }
            Some(Err(FrameError::Replayed)) => {
                s.replayed += 1;
                return;
            }
            Some(Err(FrameError::Behind)) => {
                s.behind += 1;
                return;
            }
            _ => {
                s.undecryptable += 1;
                return;
            }
        };
        match payload::decode(&plain) {
            Ok(info) if info.publisher == peer && info.source == source => {
                s.record(&info, plain.len(), now_us);
            }
            Ok(_) => s.wrong_sender += 1,
            Err(_) => s.corrupt += 1,
        }
        if !d.contiguous {
            if let Some(mut w) = self.rtc.writer(d.mid) {
                let _ = w.request_keyframe(None, KeyframeRequestKind::Pli);
            }
        }
    }

    /// Asks for a keyframe of `peer`'s `source` (as a decoder that lost its
    /// reference would). Returns false if the bot does not receive that track.
    pub fn request_keyframe(&mut self, peer: ParticipantId, source: TrackSource) -> bool {
        let Some(mid) = self
            .tracks
            .iter()
            .find_map(|(m, &k)| (k == (peer, source)).then_some(*m))
        else {
            return false;
        };
        let Some(mut w) = self.rtc.writer(mid) else {
            return false;
        };
        w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
    }

    /// Drops the media connection and makes a fresh `Rtc` (for tests of
    /// reconnection; the server sees the old one stop answering).
    pub fn reset_media(&mut self, now: Instant) {
        self.rtc = Self::new_rtc(now, self.local, &self.crypto);
        self.connected = false;
        self.publishers.clear();
        self.tracks.clear();
    }
}
