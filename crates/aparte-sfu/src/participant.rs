//! One participant: its str0m `Rtc`, what it publishes, what it receives, and
//! the state of its SDP negotiation.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Instant;

use aparte_proto::{ParticipantId, PublishSlots, RemoteTrack, RoomId, ServerMsg, TrackSource};
use str0m::Rtc;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, KeyframeRequestKind, MediaKind, Mid, Simulcast, SimulcastLayer};

use crate::alloc::{Hysteresis, Shown};
use crate::budget::Budget;
use crate::forward::SeqMap;
use crate::simulcast::{Continuity, LAYERS, Layer, LayerChoice, PublishedLayers, RIDS};

/// How long the highest recent estimate of a downlink is remembered.
pub(crate) const PEAK_MEMORY: std::time::Duration = std::time::Duration::from_secs(20);

/// The key of a published track: whose, and which source.
pub(crate) type TrackKey = (ParticipantId, TrackSource);

/// A hasher for track keys. Participant ids are random numbers the server
/// draws, so a multiply-and-rotate mix spreads them well, and no peer can
/// pick keys that collide; SipHash cost as much as the scan it replaced.
#[derive(Default)]
pub(crate) struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn write_isize(&mut self, v: isize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Positions of the open outgoing tracks, by key.
type OpenIndex = HashMap<TrackKey, usize, BuildHasherDefault<KeyHasher>>;

pub(crate) struct Participant {
    pub id: ParticipantId,
    pub room: RoomId,
    pub rtc: Rtc,
    /// Mids on which this participant publishes, by source; set by the first offer.
    pub publish: Vec<(Mid, TrackSource)>,
    /// Sources of this participant that have carried media, so others receive them.
    pub live: Vec<TrackSource>,
    /// Published sources refused by the track limit (told once).
    pub over_limit: Vec<TrackSource>,
    /// Tracks of others this participant receives, in creation order.
    pub outgoing: Vec<OutTrack>,
    /// Where each open track is in `outgoing`: the forwarding path looks one
    /// up per packet and receiver, and a scan would make a room's packet cost
    /// grow with the square of its size. Rebuilt when tracks open or go.
    open_index: OpenIndex,
    /// The offer waiting for this participant's answer.
    pub pending: Option<SdpPendingOffer>,
    /// When the `Rtc` next wants `Input::Timeout`.
    pub next_wake: Instant,
    /// When ICE must have connected by, or the participant is removed.
    pub connect_deadline: Option<Instant>,
    /// Last keyframe request sent to this participant, per published mid
    /// and layer.
    pub last_keyframe_request: HashMap<(Mid, Layer), Instant>,
    /// Keyframe requests held back by the throttle, sent when it allows.
    pub keyframe_later: HashMap<(Mid, Layer), KeyframeRequestKind>,
    /// The layers of each video this participant publishes, per mid.
    pub layers: HashMap<Mid, PublishedLayers>,
    /// The layers it was last told to encode, per simulcast source.
    pub layers_told: HashMap<TrackSource, [bool; LAYERS]>,
    /// How it shows the videos it receives (from its `view` message).
    pub view: HashMap<TrackKey, Shown>,
    /// Whom it shows as the active speaker.
    pub speaker: Option<ParticipantId>,
    /// Its view changed since the last allocation.
    pub layout_changed: bool,
    /// str0m's latest estimate of its downlink, bits per second.
    pub estimate: Option<u64>,
    /// Until when its receiver reports count as congested (loss seen).
    pub congested_until: Option<Instant>,
    /// The highest estimate of the last [`PEAK_MEMORY`], and when it came.
    pub peak_estimate: Option<(u64, Instant)>,
    /// Hysteresis of its layer allocation.
    pub hysteresis: Hysteresis,
    /// When this participant last had a keyframe request passed on, per mid
    /// it receives on.
    pub keyframes_asked: HashMap<Mid, Instant>,
    /// What it may still have copied to the others.
    pub budget: Budget,
}

impl std::fmt::Debug for Participant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Participant")
            .field("id", &self.id)
            .field("live", &self.live)
            .field("outgoing", &self.outgoing.len())
            .finish_non_exhaustive()
    }
}

/// A track of another participant that this participant receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutTrack {
    pub key: TrackKey,
    pub state: OutState,
    /// Sequence numbers of the publisher's packets in this receiver's stream.
    pub seq: SeqMap,
    /// Which layer it gets (video).
    pub choice: LayerChoice,
    /// Timestamps and picture ids across layer switches (video).
    pub continuity: Continuity,
    /// When a keyframe of the target layer was last asked for.
    pub switch_asked: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// Wanted; not yet in an offer.
    ToOpen,
    /// In the pending offer.
    Opening(Mid),
    /// Negotiated: media flows on this mid.
    Open(Mid),
    /// The publisher left; to be stopped in the next offer.
    ToStop(Mid),
    /// Stopped in the pending offer.
    Stopping(Mid),
}

impl OutTrack {
    pub fn open_mid(&self) -> Option<Mid> {
        match self.state {
            OutState::Open(m) => Some(m),
            _ => None,
        }
    }

    fn mid(&self) -> Option<Mid> {
        match self.state {
            OutState::ToOpen => None,
            OutState::Opening(m)
            | OutState::Open(m)
            | OutState::ToStop(m)
            | OutState::Stopping(m) => Some(m),
        }
    }
}

/// Why an answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AnswerError {
    /// No offer waits for an answer: nothing changed.
    NoPendingOffer,
    /// The text is not SDP: nothing changed, the offer still waits.
    Unparsable,
    /// SDP that does not answer the offer: the negotiation state is lost.
    Rejected,
}

impl Participant {
    pub fn new(id: ParticipantId, room: RoomId, rtc: Rtc, now: Instant) -> Self {
        Participant {
            id,
            room,
            rtc,
            publish: Vec::new(),
            live: Vec::new(),
            over_limit: Vec::new(),
            outgoing: Vec::new(),
            open_index: OpenIndex::default(),
            pending: None,
            next_wake: now,
            connect_deadline: None,
            last_keyframe_request: HashMap::new(),
            keyframe_later: HashMap::new(),
            keyframes_asked: HashMap::new(),
            budget: Budget::new(now),
            layers: HashMap::new(),
            layers_told: HashMap::new(),
            view: HashMap::new(),
            speaker: None,
            layout_changed: false,
            estimate: None,
            congested_until: None,
            peak_estimate: None,
            hysteresis: Hysteresis::default(),
        }
    }

    /// The source published on `mid`, if it is one of this participant's publish m-lines.
    pub fn source_of(&self, mid: Mid) -> Option<TrackSource> {
        self.publish
            .iter()
            .find_map(|&(m, s)| (m == mid).then_some(s))
    }

    /// When the first held-back keyframe request may go, given `throttle`.
    pub fn keyframe_due(&self, throttle: std::time::Duration) -> Option<Instant> {
        self.keyframe_later
            .keys()
            .filter_map(|key| self.last_keyframe_request.get(key))
            .map(|&last| last + throttle)
            .min()
    }

    /// The mid on which this participant publishes `source`.
    pub fn mid_of(&self, source: TrackSource) -> Option<Mid> {
        self.publish
            .iter()
            .find_map(|&(m, s)| (s == source).then_some(m))
    }

    /// Whether a keyframe request of this receiver for the track it receives
    /// on `mid` may pass now: one per `interval`. Counts it when it may.
    pub fn may_ask_keyframe(
        &mut self,
        mid: Mid,
        now: Instant,
        interval: std::time::Duration,
    ) -> bool {
        let last = self.keyframes_asked.get(&mid).copied();
        if last.is_some_and(|t| now.saturating_duration_since(t) < interval) {
            return false;
        }
        self.keyframes_asked.insert(mid, now);
        true
    }

    /// Takes in a new TWCC estimate of the downlink, and keeps the highest
    /// of the last [`PEAK_MEMORY`]: a delay-based estimate falls to what was
    /// acknowledged at one sign of queueing, so while a receiver gets little
    /// (small or hidden tiles) the latest figure says little about its link
    /// (`adapt.rs` uses the peak unless receiver reports show loss).
    pub fn note_estimate(&mut self, now: Instant, estimate: u64) {
        let stale = self.peak_estimate.is_none_or(|(peak, at)| {
            estimate >= peak || now.saturating_duration_since(at) > PEAK_MEMORY
        });
        if stale {
            self.peak_estimate = Some((estimate, now));
        }
        self.estimate = Some(estimate);
    }

    /// Its receiver reports show loss: the link carries less than it did,
    /// so the highest estimate seen before no longer says what it carries
    /// (kept, it would move the receiver up again as soon as the loss
    /// stopped, while the link is as narrow as before). The peak starts over
    /// from the estimate of the moment.
    pub fn note_congestion(&mut self, now: Instant, until: Instant) {
        self.congested_until = Some(until);
        self.peak_estimate = self.estimate.map(|e| (e, now));
    }

    /// The outgoing track on `mid`, whatever its state.
    pub fn outgoing_on(&self, mid: Mid) -> Option<&OutTrack> {
        self.outgoing.iter().find(|t| t.mid() == Some(mid))
    }

    /// The track `key` as this participant receives it, if it is open.
    pub fn open_track(&mut self, key: TrackKey) -> Option<&mut OutTrack> {
        let &i = self.open_index.get(&key)?;
        self.outgoing.get_mut(i)
    }

    /// Rebuilds the index of open tracks after `outgoing` changed.
    fn reindex(&mut self) {
        self.open_index.clear();
        for (i, t) in self.outgoing.iter().enumerate() {
            if t.open_mid().is_some() {
                self.open_index.insert(t.key, i);
            }
        }
    }

    /// Starts receiving `key` (at the next negotiation).
    pub fn want(&mut self, key: TrackKey) {
        if !self.outgoing.iter().any(|t| t.key == key) {
            self.outgoing.push(OutTrack {
                key,
                state: OutState::ToOpen,
                seq: SeqMap::default(),
                // Until the allocator decides: the lowest layer, which
                // starts fastest.
                choice: LayerChoice::new(Some(0)),
                continuity: Continuity::default(),
                switch_asked: None,
            });
        }
    }

    /// Stops receiving every track of `peer` (at the next negotiation).
    pub fn drop_peer(&mut self, peer: ParticipantId) {
        self.outgoing.retain_mut(|t| {
            if t.key.0 != peer {
                return true;
            }
            match t.state {
                // Never offered: forget it.
                OutState::ToOpen => false,
                OutState::Open(m) | OutState::Opening(m) => {
                    t.state = OutState::ToStop(m);
                    true
                }
                OutState::ToStop(_) | OutState::Stopping(_) => true,
            }
        });
        self.reindex();
    }

    /// Makes the next offer if something changed and no offer is pending.
    /// The first offer also creates the publish m-lines.
    pub fn offer_if_needed(&mut self, now: Instant) -> Option<ServerMsg> {
        if self.pending.is_some() {
            return None;
        }
        let mut change = self.rtc.sdp_api();
        if self.publish.is_empty() {
            for source in TrackSource::ALL {
                let kind = if source.is_audio() {
                    MediaKind::Audio
                } else {
                    MediaKind::Video
                };
                // The camera is asked for in three layers (simulcast);
                // screens stay one stream, sharp text first.
                let simulcast = (source == TrackSource::Camera).then(|| {
                    let mut s = Simulcast::new();
                    for rid in RIDS {
                        s.add_recv_layer(SimulcastLayer::new(rid));
                    }
                    s
                });
                let mid = change.add_media(kind, Direction::RecvOnly, None, None, simulcast);
                self.publish.push((mid, source));
            }
            self.connect_deadline = Some(now + crate::CONNECT_TIMEOUT);
        }
        for t in &mut self.outgoing {
            match t.state {
                OutState::ToOpen => {
                    let kind = if t.key.1.is_audio() {
                        MediaKind::Audio
                    } else {
                        MediaKind::Video
                    };
                    // msid carries the publisher and source so a client can
                    // group tracks even before it reads the `tracks` list.
                    let stream = format!("{}", t.key.0);
                    let track = format!("{}-{}", t.key.0, t.key.1.as_str());
                    let mid = change.add_media(
                        kind,
                        Direction::SendOnly,
                        Some(stream),
                        Some(track),
                        None,
                    );
                    t.state = OutState::Opening(mid);
                }
                OutState::ToStop(m) => {
                    change.stop_media(m);
                    t.state = OutState::Stopping(m);
                }
                _ => {}
            }
        }
        if !change.has_changes() {
            return None;
        }
        let (offer, pending) = change.apply()?;
        self.pending = Some(pending);
        Some(ServerMsg::Offer {
            sdp: offer.to_sdp_string(),
            publish: self.publish_slots(),
            tracks: self.receiving(),
        })
    }

    /// Applies the client's answer to the pending offer.
    pub fn accept_answer(&mut self, sdp: &str) -> Result<(), AnswerError> {
        if self.pending.is_none() {
            return Err(AnswerError::NoPendingOffer);
        }
        let answer = SdpAnswer::from_sdp_string(sdp).map_err(|_| AnswerError::Unparsable)?;
        let pending = self.pending.take().ok_or(AnswerError::NoPendingOffer)?;
        self.rtc
            .sdp_api()
            .accept_answer(pending, answer)
            .map_err(|_| AnswerError::Rejected)?;
        for t in &mut self.outgoing {
            if let OutState::Opening(m) = t.state {
                t.state = OutState::Open(m);
            }
        }
        self.outgoing
            .retain(|t| !matches!(t.state, OutState::Stopping(_)));
        self.reindex();
        Ok(())
    }

    /// The publish m-lines as the client is told them.
    pub fn publish_slots(&self) -> PublishSlots {
        let mid = |s| self.mid_of(s).map(|m| m.to_string()).unwrap_or_default();
        PublishSlots {
            mic: mid(TrackSource::Mic),
            camera: mid(TrackSource::Camera),
            screen: mid(TrackSource::Screen),
            screen_audio: mid(TrackSource::ScreenAudio),
        }
    }

    /// Every m-line on which this participant receives, and what it carries.
    fn receiving(&self) -> Vec<RemoteTrack> {
        self.outgoing
            .iter()
            .filter_map(|t| match t.state {
                OutState::Opening(m) | OutState::Open(m) => Some(RemoteTrack {
                    mid: m.to_string(),
                    peer: t.key.0,
                    source: t.key.1,
                }),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn loss_makes_the_peak_estimate_start_over() {
        let t0 = Instant::now();
        let room = RoomId::parse("room-peak").unwrap_or_else(|e| panic!("{e:?}"));
        let mut p = Participant::new(ParticipantId(1), room, Rtc::builder().build(t0), t0);
        let s = Duration::from_secs(1);
        let peak = |p: &Participant| p.peak_estimate.map(|(e, _)| e);
        p.note_estimate(t0, 6_000_000);
        p.note_estimate(t0 + s, 300_000);
        // A drop of the delay-based estimate alone keeps the peak: a busy
        // machine reads as a queue.
        assert_eq!(peak(&p), Some(6_000_000));
        // Loss confirms it: the link carries less now.
        p.note_congestion(t0 + 2 * s, t0 + 5 * s);
        assert_eq!(peak(&p), Some(300_000));
        assert_eq!(p.congested_until, Some(t0 + 5 * s));
        p.note_estimate(t0 + 3 * s, 250_000);
        p.note_estimate(t0 + 4 * s, 500_000);
        assert_eq!(peak(&p), Some(500_000));
    }
}
