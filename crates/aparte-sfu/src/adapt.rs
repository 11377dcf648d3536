//! Adapting what each receiver gets to its downlink and its layout, and what
//! each publisher encodes to what is received.
//!
//! Every [`ALLOCATION_INTERVAL`] (and at once when a receiver's layout
//! changes), each receiver's videos get layers from `alloc.rs`, within str0m's
//! TWCC estimate of its downlink. A change of layer waits for a keyframe of
//! the new layer, which is asked for at once (`simulcast.rs`). str0m is told
//! the rate the receiver would need for every video at its best, so it probes
//! towards it: an estimate rises only by probing, never by hoping.
//!
//! Publishers are told which layers of their camera someone receives
//! ([`ServerMsg::Layers`]); the lowest stays on while the camera is
//! published, so a receiver that comes, or a tile that reappears, starts at
//! once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aparte_proto::{ParticipantId, ServerMsg, TileView, TrackSource};
use str0m::bwe::Bitrate;
use str0m::media::KeyframeRequestKind;
use tracing::debug;

use crate::alloc::{self, Shown, Want};
use crate::participant::TrackKey;
use crate::simulcast::{LAYERS, Layer};
use crate::{Output, Sfu};

/// How often every receiver's layers are decided again.
pub(crate) const ALLOCATION_INTERVAL: Duration = Duration::from_millis(250);
/// The estimate of a downlink before TWCC feedback measured it.
pub(crate) const INITIAL_ESTIMATE: u64 = 2_500_000;
/// The rate taken for each audio track a receiver gets (Opus at its
/// browsers' default, with packet overhead).
const AUDIO_BPS: u64 = 40_000;
/// How often str0m reports each stream's receiver-reported loss.
pub(crate) const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// Loss (fraction, from receiver reports) that marks a receiver's downlink
/// as congested (the threshold at which GCC's loss-based control cuts the
/// rate). Random loss of a few percent is repaired by resends and is no
/// reason to drop a layer.
pub(crate) const CONGESTED_LOSS: f32 = 0.10;
/// How long one report of such loss counts.
pub(crate) const CONGESTION_MEMORY: Duration = Duration::from_secs(3);
/// How long a switch waits for its keyframe before asking again.
const SWITCH_RETRY: Duration = Duration::from_secs(1);

impl Sfu {
    /// A receiver's layout changed: how it shows each tile, and whom it shows
    /// as the active speaker.
    pub(crate) fn set_view(
        &mut self,
        now: Instant,
        from: ParticipantId,
        tiles: &[TileView],
        speaker: Option<ParticipantId>,
    ) {
        let Some(p) = self.participants.get_mut(&from) else {
            return;
        };
        p.view = tiles
            .iter()
            .map(|t| {
                let shown = if t.width == 0 || t.height == 0 {
                    Shown::Hidden
                } else {
                    Shown::Width(t.width)
                };
                ((t.peer, t.source), shown)
            })
            .collect();
        p.speaker = speaker;
        p.layout_changed = true;
        // This receiver's layers change now; what publishers encode is
        // settled at the next allocation tick, since it looks at every
        // receiver of the thread and a client may send views as fast as its
        // message budget allows.
        self.allocate(now, from);
    }

    /// Decides every receiver's layers, then tells publishers what to encode.
    pub(crate) fn allocate_all(&mut self, now: Instant) {
        let ids: Vec<ParticipantId> = self.participants.keys().copied().collect();
        for id in ids {
            self.allocate(now, id);
        }
        self.tell_layers(now);
    }

    /// Decides the layers of receiver `id`'s videos and asks for the
    /// keyframes the changes wait for.
    fn allocate(&mut self, now: Instant, id: ParticipantId) {
        let Some(p) = self.participants.get(&id) else {
            return;
        };
        let mut index = Vec::new();
        let mut wants = Vec::new();
        let mut current = Vec::new();
        let mut audio = 0;
        for (i, t) in p.outgoing.iter().enumerate() {
            let (peer, source) = t.key;
            if source.is_audio() {
                audio += AUDIO_BPS;
                continue;
            }
            let layers = self
                .participants
                .get(&peer)
                .and_then(|publisher| publisher.layers.get(&publisher.mid_of(source)?))
                .map(|l| l.layers(now))
                .unwrap_or_default();
            wants.push(Want {
                screen: source == TrackSource::Screen,
                speaker: p.speaker == Some(peer) && source == TrackSource::Camera,
                shown: p.view.get(&t.key).copied().unwrap_or(Shown::Full),
                layers,
            });
            index.push(i);
            current.push(t.choice.target);
        }
        // A delay-based estimate also falls when nothing is congested: a
        // busy machine delays the receiver's feedback as a queue would, and
        // a receiver that gets little (small tiles) makes it read little.
        // Without loss in the receiver's reports, the highest estimate of the
        // last 20 s stands, and what it gets now stays affordable; with loss,
        // the estimate of the moment rules.
        let congested = p.congested_until.is_some_and(|t| now < t);
        let mut estimate = p.estimate.unwrap_or(INITIAL_ESTIMATE);
        if !congested {
            estimate = estimate.max(p.peak_estimate.map_or(0, |(peak, _)| peak));
        }
        let mut budget = (estimate / 10 * 9).saturating_sub(audio);
        if !congested {
            budget = budget.max(alloc::need(&wants, &current));
        }
        let ideal = alloc::allocate(budget, estimate.saturating_sub(audio), &wants);
        let best = alloc::need(&wants, &alloc::allocate(u64::MAX, u64::MAX, &wants)) + audio;

        let Some(p) = self.participants.get_mut(&id) else {
            return;
        };
        let layout = std::mem::take(&mut p.layout_changed);
        let decided = p.hysteresis.decide(now, &current, &ideal, layout);
        // Probe towards twice what every video at its best would need: str0m
        // pads up to that need (never past its estimate), so an estimate that
        // fell while little was sent (small or hidden tiles) can climb again,
        // and probes past it, so the estimate settles above the need rather
        // than on it, where every dip would flip a layer.
        p.rtc
            .bwe()
            .set_bitrate(Bitrate::bps(best), Bitrate::bps(best.saturating_mul(2)));
        let mut asks: Vec<(TrackKey, Layer)> = Vec::new();
        if decided != current {
            let rates: Vec<[u64; LAYERS]> = wants
                .iter()
                .map(|w| w.layers.map(|l| l.map_or(0, |l| l.bps)))
                .collect();
            debug!(participant = %id, estimate, congested, ?decided, ?rates, "layers");
        }
        for (&i, target) in index.iter().zip(decided) {
            let t = &mut p.outgoing[i];
            t.choice.target = target;
            let Some(target) = target else { continue };
            let due = t
                .switch_asked
                .is_none_or(|at| now.saturating_duration_since(at) >= SWITCH_RETRY);
            if t.choice.waiting() && t.open_mid().is_some() && due {
                t.switch_asked = Some(now);
                asks.push((t.key, target));
            }
        }
        self.dirty.push(id);
        for ((publisher, source), layer) in asks {
            self.request_keyframe(now, publisher, source, layer, KeyframeRequestKind::Pli);
        }
    }

    /// Tells each simulcast publisher which layers someone receives (or
    /// waits for), when that changed. The lowest layer stays on.
    fn tell_layers(&mut self, now: Instant) {
        let mut used: HashMap<TrackKey, [bool; LAYERS]> = HashMap::new();
        for p in self.participants.values() {
            for t in p.outgoing.iter().filter(|t| !t.key.1.is_audio()) {
                let flags = used.entry(t.key).or_default();
                for layer in [t.choice.current, t.choice.target].into_iter().flatten() {
                    flags[usize::from(layer)] = true;
                }
            }
        }
        for p in self.participants.values_mut() {
            for &(mid, source) in &p.publish {
                let Some(layers) = p.layers.get_mut(&mid).filter(|l| l.simulcast) else {
                    continue;
                };
                let mut active = used.get(&(p.id, source)).copied().unwrap_or_default();
                active[0] = true;
                // A layer never received stays on until it shows up: the
                // allocator offers only layers it has seen (their rate and
                // width), so stopping one before it starts would keep it
                // from ever being chosen. A browser starts its layers as its
                // own estimate grows.
                for (layer, on) in (0..).zip(active.iter_mut()) {
                    *on |= !layers.seen(layer);
                }
                let told = p
                    .layers_told
                    .get(&source)
                    .copied()
                    .unwrap_or([true; LAYERS]);
                if told == active {
                    continue;
                }
                p.layers_told.insert(source, active);
                for ((on, paused), resumed) in
                    active.iter().zip(&layers.paused).zip(&mut layers.resumed)
                {
                    if *on && *paused {
                        *resumed = Some(now);
                    }
                }
                layers.paused = active.map(|a| !a);
                self.out.push_back(Output::Signal {
                    to: p.id,
                    msg: ServerMsg::Layers {
                        source,
                        active: active.to_vec(),
                    },
                });
            }
        }
    }
}
