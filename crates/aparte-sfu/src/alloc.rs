//! Bandwidth allocation for one receiver: which layer of each video it gets,
//! given str0m's estimate of its downlink (TWCC) and how it shows each tile.
//!
//! Order of service: screen shares, then the video the receiver shows as the
//! active speaker, then the others in the order they were received. Audio is
//! never allocated: its rate is taken off the estimate first, so video can
//! never starve it. Each shown video first gets its lowest layer, in that
//! order, while the budget lasts (a video that does not fit is paused); then,
//! in the same order, each climbs layer by layer up to the smallest layer at
//! least as wide as its tile (more pixels than the tile shows are wasted).
//! A tile that is not on screen gets nothing.

use std::time::{Duration, Instant};

use crate::simulcast::{LAYERS, Layer, LayerInfo};

/// How a receiver shows one video.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Not told: as large as the publisher sends.
    Full,
    /// In a tile this many device pixels wide.
    Width(u16),
    /// Not on screen.
    Hidden,
}

/// One video a receiver gets, as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// A screen share (served first).
    pub screen: bool,
    /// The receiver's active speaker (served after screen shares).
    pub speaker: bool,
    /// How it is shown.
    pub shown: Shown,
    /// The layers the publisher sends now.
    pub layers: [Option<LayerInfo>; LAYERS],
}

/// What a layer is taken to cost before its rate is measured, bits per second.
const NOMINAL_BPS: [u64; LAYERS] = [150_000, 500_000, 1_500_000];

/// What layer `l` costs: its measured rate or, before it was measured, its
/// nominal rate scaled as the nearest measured higher layer is to its own
/// nominal rate (a publisher whose top layer sends 300 kbit/s is not taken
/// to spend 500 on its middle one).
fn cost(w: &Want, l: Layer) -> u64 {
    let l = usize::from(l);
    match w.layers[l] {
        Some(info) if info.bps > 0 => info.bps,
        _ => (l + 1..LAYERS)
            .find_map(|h| {
                let bps = w.layers[h]?.bps;
                (bps > 0).then(|| NOMINAL_BPS[l] * bps / NOMINAL_BPS[h])
            })
            .unwrap_or(NOMINAL_BPS[l]),
    }
}

/// The highest layer worth sending for how the video is shown.
fn cap(w: &Want) -> Option<Layer> {
    let active = (0..LAYERS as Layer).filter(|&l| w.layers[usize::from(l)].is_some());
    match w.shown {
        Shown::Hidden => None,
        Shown::Full => active.max(),
        Shown::Width(px) => {
            let mut best = None;
            for l in active {
                best = Some(l);
                let wide_enough = w.layers[usize::from(l)]
                    .and_then(|i| i.width)
                    .is_some_and(|width| width >= px);
                if wide_enough {
                    break;
                }
            }
            best
        }
    }
}

/// The order videos are served in: indices into `wants`.
fn priority(wants: &[Want]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&i| (!wants[i].screen, !wants[i].speaker));
    order
}

/// The layer of each video (`None`: paused) within `budget` bits per second.
/// `floor` is the whole estimate left for video, without headroom. The first
/// video in order keeps its lowest layer as long as the estimate carries the
/// audio with anything to spare (`floor > 0`): the lowest layer is the least
/// a meeting shows, and an estimate that reads low while little is sent
/// (measured: 300 kbit/s links read 140 to 180 kbit/s once video paused)
/// would otherwise keep every video paused for good, while a link loaded with
/// one small layer shows what it really carries. Audio does not wait for it:
/// str0m sends audio unpaced, ahead of video. On a link that cannot carry
/// one small layer beside the audio, this costs audio some loss.
pub fn allocate(budget: u64, floor: u64, wants: &[Want]) -> Vec<Option<Layer>> {
    let order = priority(wants);
    let mut left = budget;
    let mut out: Vec<Option<Layer>> = vec![None; wants.len()];
    // Everyone shown gets its lowest layer first.
    let mut first = true;
    for &i in &order {
        let w = &wants[i];
        if cap(w).is_none() {
            continue;
        }
        let Some(lowest) = (0..LAYERS as Layer).find(|&l| w.layers[usize::from(l)].is_some())
        else {
            continue;
        };
        let c = cost(w, lowest);
        if c <= left {
            left -= c;
            out[i] = Some(lowest);
        } else if first && floor > 0 {
            left = 0;
            out[i] = Some(lowest);
        }
        first = false;
    }
    // Then each climbs, in order, to the highest layer its tile is worth
    // that the budget allows.
    for &i in &order {
        let w = &wants[i];
        let (Some(now), Some(top)) = (out[i], cap(w)) else {
            continue;
        };
        let base = cost(w, now);
        let best = (now + 1..=top)
            .rev()
            .filter(|&l| w.layers[usize::from(l)].is_some())
            .find(|&l| cost(w, l).saturating_sub(base) <= left);
        if let Some(l) = best {
            left -= cost(w, l).saturating_sub(base);
            out[i] = Some(l);
        }
    }
    out
}

/// The bitrate `layers` need.
pub fn need(wants: &[Want], layers: &[Option<Layer>]) -> u64 {
    wants
        .iter()
        .zip(layers)
        .filter_map(|(w, l)| l.map(|l| cost(w, l)))
        .sum()
}

/// A lower allocation applies once the estimate has wanted it this long
/// (one dip of the estimate does not flip layers).
pub const DOWN_AFTER: Duration = Duration::from_millis(600);
/// A higher allocation applies no sooner than this after a move down.
pub const UP_AFTER_DOWN: Duration = Duration::from_secs(3);

/// Hysteresis between what the estimate allows now and what a receiver gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hysteresis {
    down_since: Option<Instant>,
    last_down: Option<Instant>,
}

impl Hysteresis {
    /// Given the layers a receiver gets (`current`, as last decided) and
    /// those the estimate allows now (`ideal`), the layers it gets from now
    /// on. A change of tiles (`layout`) applies at once.
    pub fn decide(
        &mut self,
        now: Instant,
        current: &[Option<Layer>],
        ideal: &[Option<Layer>],
        layout: bool,
    ) -> Vec<Option<Layer>> {
        let lower = current
            .iter()
            .zip(ideal)
            .any(|(c, i)| c.is_some() && (i.is_none() || i < c));
        if layout {
            if lower {
                self.last_down = Some(now);
            }
            self.down_since = None;
            return ideal.to_vec();
        }
        if lower {
            let since = *self.down_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= DOWN_AFTER {
                self.down_since = None;
                self.last_down = Some(now);
                return ideal.to_vec();
            }
            return current.to_vec();
        }
        self.down_since = None;
        let calm = self
            .last_down
            .is_none_or(|t| now.saturating_duration_since(t) >= UP_AFTER_DOWN);
        if calm {
            ideal.to_vec()
        } else {
            // Tracks new to the allocation still start.
            current
                .iter()
                .zip(ideal)
                .map(|(c, i)| if c.is_none() { *i } else { *c })
                .collect()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn layers(widths: [u16; 3], bps: [u64; 3]) -> [Option<LayerInfo>; LAYERS] {
        std::array::from_fn(|l| {
            Some(LayerInfo {
                bps: bps[l],
                width: Some(widths[l]),
            })
        })
    }

    const W: [u16; 3] = [320, 640, 1280];
    const B: [u64; 3] = [150_000, 500_000, 1_500_000];

    fn camera(shown: Shown) -> Want {
        Want {
            screen: false,
            speaker: false,
            shown,
            layers: layers(W, B),
        }
    }

    #[test]
    fn a_generous_estimate_gives_each_tile_the_layer_its_size_needs() {
        let wants = [
            camera(Shown::Full),
            camera(Shown::Width(300)),
            camera(Shown::Width(600)),
            camera(Shown::Width(2000)),
            camera(Shown::Hidden),
        ];
        assert_eq!(
            allocate(100_000_000, 100_000_000, &wants),
            vec![Some(2), Some(0), Some(1), Some(2), None]
        );
    }

    #[test]
    fn screen_then_speaker_then_the_rest() {
        let mut screen = camera(Shown::Full);
        screen.screen = true;
        let mut speaker = camera(Shown::Full);
        speaker.speaker = true;
        let wants = [camera(Shown::Full), speaker, screen];
        // Everyone's lowest (450k), then the screen climbs to the top (+1350k).
        assert_eq!(
            allocate(1_800_000, 1_800_000, &wants),
            vec![Some(0), Some(0), Some(2)]
        );
        // 350k more: the speaker climbs one layer; the first camera waits.
        assert_eq!(
            allocate(2_150_000, 2_150_000, &wants),
            vec![Some(0), Some(1), Some(2)]
        );
        // Too little for all three lowest layers: the last in order pauses.
        assert_eq!(
            allocate(300_000, 300_000, &wants),
            vec![None, Some(0), Some(0)]
        );

        // Only the headroom is missing: the first in order still gets its lowest.
        assert_eq!(
            allocate(130_000, 160_000, &wants),
            vec![None, None, Some(0)]
        );
        assert_eq!(allocate(0, 30_000, &wants), vec![None, None, Some(0)]);
        // Not even the audio fits: every video pauses.
        assert_eq!(allocate(0, 0, &wants), vec![None, None, None]);
    }

    #[test]
    fn a_capped_receiver_gets_the_low_layer() {
        let wants = [camera(Shown::Full)];
        assert_eq!(allocate(300_000, 300_000, &wants), vec![Some(0)]);
        assert_eq!(allocate(700_000, 700_000, &wants), vec![Some(1)]);
        assert_eq!(allocate(2_000_000, 2_000_000, &wants), vec![Some(2)]);
    }

    #[test]
    fn an_unmeasured_layer_costs_no_more_than_a_measured_higher_one() {
        // The middle layer was never sent: it is not taken to cost its
        // nominal 500 kbit/s when the top one measured 300.
        let mut w = camera(Shown::Full);
        w.layers = [
            Some(LayerInfo {
                bps: 30_000,
                width: Some(320),
            }),
            Some(LayerInfo {
                bps: 0,
                width: Some(640),
            }),
            Some(LayerInfo {
                bps: 300_000,
                width: Some(1280),
            }),
        ];
        assert_eq!(allocate(350_000, 350_000, &[w]), vec![Some(2)]);
        assert_eq!(allocate(250_000, 250_000, &[w]), vec![Some(1)]);
    }

    #[test]
    fn only_layers_the_publisher_sends_are_chosen() {
        let mut w = camera(Shown::Full);
        w.layers[2] = None;
        assert_eq!(allocate(10_000_000, 10_000_000, &[w]), vec![Some(1)]);
        w.layers[0] = None;
        assert_eq!(allocate(10_000_000, 10_000_000, &[w]), vec![Some(1)]);
        // A publisher without simulcast: one layer, whatever the tile.
        let single = Want {
            layers: [
                Some(LayerInfo {
                    bps: 1_000_000,
                    width: Some(1280),
                }),
                None,
                None,
            ],
            ..camera(Shown::Width(200))
        };
        assert_eq!(allocate(10_000_000, 10_000_000, &[single]), vec![Some(0)]);
        let nothing = Want {
            layers: [None; LAYERS],
            ..camera(Shown::Full)
        };
        assert_eq!(allocate(10_000_000, 10_000_000, &[nothing]), vec![None]);
    }

    #[test]
    fn moves_down_wait_and_moves_up_wait_longer_after_a_move_down() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut h = Hysteresis::default();
        let high = [Some(2)];
        let low = [Some(0)];
        assert_eq!(h.decide(at(0), &[None], &high, false), high);
        // A dip shorter than DOWN_AFTER changes nothing.
        assert_eq!(h.decide(at(100), &high, &low, false), high);
        assert_eq!(h.decide(at(300), &high, &high, false), high);
        // A lasting one does.
        assert_eq!(h.decide(at(400), &high, &low, false), high);
        assert_eq!(h.decide(at(900), &high, &low, false), high);
        assert_eq!(h.decide(at(1000), &high, &low, false), low);
        // Up again only after UP_AFTER_DOWN.
        assert_eq!(h.decide(at(2000), &low, &high, false), low);
        assert_eq!(h.decide(at(4000), &low, &high, false), high);
        // A layout change applies at once, both ways.
        assert_eq!(h.decide(at(4100), &high, &[None], true), vec![None]);
        assert_eq!(h.decide(at(4200), &[None], &high, true), high);
    }
}
