//! The sans-IO participant: answers the server's offers, publishes synthetic
//! frames on a schedule and checks every frame it receives.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aparte_proto::{ClientMsg, ErrorCode, ParticipantId, ServerMsg, TrackSource};
use str0m::change::SdpOffer;
use str0m::crypto::{CryptoProvider, from_feature_flags};
use str0m::media::{KeyframeRequestKind, MediaData, MediaTime, Mid};
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
}

impl BotConfig {
    /// A bot that publishes `video_bps` of video at 30 fps and audio.
    pub fn new(video_bps: u32, epoch: Instant) -> Self {
        BotConfig {
            video_bps,
            fps: 30,
            audio: true,
            audio_frame_bytes: 80,
            keyframe_interval: Duration::from_secs(2),
            epoch,
        }
    }

    /// A bot that only receives.
    pub fn receive_only(epoch: Instant) -> Self {
        BotConfig {
            video_bps: 0,
            audio: false,
            ..BotConfig::new(0, epoch)
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
}

/// A frame generator for one published source.
#[derive(Debug)]
struct Publisher {
    source: TrackSource,
    mid: Mid,
    interval: Duration,
    frame_bytes: usize,
    clock_rate: u64,
    seq: u32,
    next: Instant,
    last_keyframe: Option<Instant>,
    keyframe_wanted: bool,
}

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
    datagrams_in: u64,
    connected: bool,
    next_wake: Instant,
    out: VecDeque<BotOutput>,
    buf: Vec<u8>,
    crypto: Arc<CryptoProvider>,
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
        BotCore {
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
            datagrams_in: 0,
            connected: false,
            next_wake: now,
            out: VecDeque::new(),
            buf: Vec::with_capacity(2048),
            crypto,
        }
    }

    fn new_rtc(now: Instant, local: SocketAddr, crypto: &Arc<CryptoProvider>) -> Rtc {
        let mut rtc = Rtc::builder()
            .set_crypto_provider(crypto.clone())
            // str0m releases complete frames past a gap once this many packets
            // wait (default 30); a frame repaired by retransmission after that
            // would be delivered out of order. A receiver that checks order holds
            // more, as a decoder's jitter buffer would (the 2 s timeout still
            // bounds the wait).
            .set_reordering_size_video(300)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        if let Ok(c) = Candidate::host(local, "udp") {
            rtc.add_local_candidate(c);
        }
        rtc
    }

    /// The id the server gave this bot, once welcomed.
    pub fn id(&self) -> Option<ParticipantId> {
        self.me
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
            datagrams_in: self.datagrams_in,
        }
    }

    /// Handles a message from the server.
    pub fn handle_signal(&mut self, now: Instant, msg: ServerMsg) -> Result<(), BotError> {
        match msg {
            ServerMsg::Welcome { you, peers } => {
                self.me = Some(you);
                self.peers = peers.into_iter().map(|p| p.id).collect();
            }
            ServerMsg::PeerJoined { peer } => self.peers.push(peer.id),
            ServerMsg::PeerLeft { peer } => {
                self.peers.retain(|&p| p != peer);
                self.tracks.retain(|_, (p, _)| *p != peer);
            }
            ServerMsg::Offer {
                sdp,
                publish,
                tracks,
            } => {
                let offer =
                    SdpOffer::from_sdp_string(&sdp).map_err(|e| BotError::Offer(e.to_string()))?;
                let answer = self
                    .rtc
                    .sdp_api()
                    .accept_offer(offer)
                    .map_err(|e| BotError::Offer(e.to_string()))?;
                self.tracks.clear();
                for t in tracks {
                    let mid: Mid = t.mid.as_str().into();
                    self.tracks.insert(mid, (t.peer, t.source));
                }
                if self.publishers.is_empty() {
                    self.start_publishing(now, &publish);
                }
                self.out.push_back(BotOutput::Signal(ClientMsg::Answer {
                    sdp: answer.to_sdp_string(),
                }));
            }
            ServerMsg::Relay { .. } => {}
            ServerMsg::Error { code, message } => return Err(BotError::Server(code, message)),
        }
        self.drain(now)
    }

    /// Handles a datagram from the server.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        source: SocketAddr,
        data: &[u8],
    ) -> Result<(), BotError> {
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
        if self.connected {
            for p in &self.publishers {
                t = t.min(p.next);
            }
        }
        t
    }

    /// The message that joins `room`.
    pub fn join_msg(room: aparte_proto::RoomId) -> ClientMsg {
        ClientMsg::Join { room }
    }

    fn start_publishing(&mut self, now: Instant, publish: &aparte_proto::PublishSlots) {
        let c = &self.config;
        if c.video_bps > 0 && c.fps > 0 {
            let fps = c.fps;
            self.publishers.push(Publisher {
                source: TrackSource::Camera,
                mid: publish.camera.as_str().into(),
                interval: Duration::from_secs(1) / fps,
                frame_bytes: (c.video_bps / 8 / fps) as usize,
                clock_rate: 90_000,
                seq: 0,
                next: now,
                last_keyframe: None,
                keyframe_wanted: true,
            });
        }
        if c.audio {
            self.publishers.push(Publisher {
                source: TrackSource::Mic,
                mid: publish.mic.as_str().into(),
                interval: Duration::from_millis(20),
                frame_bytes: c.audio_frame_bytes,
                clock_rate: 48_000,
                seq: 0,
                next: now,
                last_keyframe: None,
                keyframe_wanted: false,
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
                let keyframe = video
                    && (p.keyframe_wanted
                        || p.last_keyframe
                            .is_none_or(|k| now.saturating_duration_since(k) >= keyframe_interval));
                if keyframe {
                    p.last_keyframe = Some(now);
                    p.keyframe_wanted = false;
                }
                let info = FrameInfo {
                    keyframe,
                    publisher: me,
                    source: p.source,
                    seq: p.seq,
                    sent_us: now.saturating_duration_since(epoch).as_micros() as u64,
                };
                payload::encode(&info, p.frame_bytes, &mut self.buf);
                let rtp_time =
                    u64::from(p.seq) * p.clock_rate * p.interval.as_micros() as u64 / 1_000_000;
                let freq = if video {
                    str0m::media::Frequency::NINETY_KHZ
                } else {
                    str0m::media::Frequency::FORTY_EIGHT_KHZ
                };
                if let Some(writer) = self.rtc.writer(p.mid) {
                    let pt = writer.payload_params().next().map(|pp| pp.pt());
                    if let Some(pt) = pt {
                        let data: Arc<[u8]> = self.buf.as_slice().into();
                        let _ = writer.write(pt, now, MediaTime::new(rtp_time, freq), data);
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
                    Event::Connected => self.connected = true,
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        return Err(BotError::Disconnected);
                    }
                    Event::MediaData(d) => self.receive(now, &d),
                    Event::KeyframeRequest(r) => {
                        if let Some(p) = self.publishers.iter_mut().find(|p| p.mid == r.mid) {
                            p.keyframe_wanted = true;
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
        match payload::decode(&d.data) {
            Ok(info) if info.publisher == peer && info.source == source => {
                s.record(&info, d.data.len(), now_us);
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
