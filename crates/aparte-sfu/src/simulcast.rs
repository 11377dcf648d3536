//! Simulcast: a camera published as three VP8 layers, one of which each
//! receiver gets, switched only where the receiver can decode from.
//!
//! The SFU reads, of a video packet, only what is in clear by design: the RTP
//! header, the VP8 payload descriptor the sender's packetizer adds (outside
//! the end-to-end encryption), and the first bytes of a frame's first packet,
//! the VP8 payload header that the E2EE leaves in clear and authenticates
//! (docs/e2ee.md, "Frames"): bit 0 says keyframe, and a keyframe's header
//! gives its width and height. Nothing is decrypted.
//!
//! A receiver switches layers only at the first packet of a keyframe of the
//! layer it moves to. Its stream stays one stream: sequence numbers continue
//! (`forward::SeqMap` treats the new layer's SSRC as a new source), RTP
//! timestamps continue from the last one it got plus the time that passed,
//! and VP8 picture ids and TL0PICIDX continue by one, rewritten with a
//! descriptor patch str0m applies as it serialises the packet (the shared
//! payload is not copied).

use std::time::{Duration, Instant};

use str0m::media::Rid;
use str0m::rtp::Vp8Descriptor;

/// Layers of a simulcast camera, lowest first.
pub const LAYERS: usize = 3;

/// The rids the server asks for, lowest layer first. A publisher that sends
/// no rid (simulcast declined) has one layer, layer 0.
pub const RIDS: [&str; LAYERS] = ["l", "m", "h"];

/// A layer: an index into [`RIDS`].
pub type Layer = u8;

/// The layer a packet's rid names (`None` for a rid the server did not ask for).
pub(crate) fn layer_of(rid: Option<Rid>) -> Option<Layer> {
    match rid {
        None => Some(0),
        Some(rid) => RIDS.iter().position(|r| *r == &*rid).map(|i| i as Layer),
    }
}

/// What the clear part of a VP8 packet says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Vp8Head {
    /// First packet of a keyframe (S=1, partition 0, P bit clear).
    pub keyframe: bool,
    /// A keyframe's width and height, from its payload header.
    pub size: Option<(u16, u16)>,
    /// The picture id, and whether it is written on 15 bits (else 7).
    pub picture_id: Option<(u16, bool)>,
    /// TL0PICIDX.
    pub tl0: Option<u8>,
}

/// Reads the VP8 payload descriptor (RFC 7741 §4.2) and, on a frame's first
/// packet, the payload header after it (§9.1). `None` for a payload too
/// short for its own descriptor.
pub(crate) fn vp8_head(payload: &[u8]) -> Option<Vp8Head> {
    let &first = payload.first()?;
    let mut at = 1;
    let mut head = Vp8Head::default();
    if first & 0x80 != 0 {
        let &x = payload.get(at)?;
        at += 1;
        if x & 0x80 != 0 {
            let &b = payload.get(at)?;
            at += 1;
            if b & 0x80 != 0 {
                let &lo = payload.get(at)?;
                at += 1;
                head.picture_id = Some((u16::from(b & 0x7f) << 8 | u16::from(lo), true));
            } else {
                head.picture_id = Some((u16::from(b), false));
            }
        }
        if x & 0x40 != 0 {
            head.tl0 = Some(*payload.get(at)?);
            at += 1;
        }
        if x & 0x30 != 0 {
            payload.get(at)?;
            at += 1;
        }
    }
    let starts = first & 0x10 != 0 && first & 0x07 == 0;
    let header = payload.get(at..)?;
    if starts && header.first().is_some_and(|b| b & 0x01 == 0) {
        head.keyframe = true;
        // 3 bytes of frame tag, the start code, then 14-bit width and height.
        if let [_, _, _, 0x9d, 0x01, 0x2a, w0, w1, h0, h1, ..] = *header {
            let w = u16::from_le_bytes([w0, w1]) & 0x3fff;
            let h = u16::from_le_bytes([h0, h1]) & 0x3fff;
            head.size = Some((w, h));
        }
    }
    Some(head)
}

/// A layer's recent bitrate: the highest of its last [`RATE_WINDOWS`]
/// windows of [`RATE_WINDOW`]. An encoder's rate swings between keyframes
/// and ramps up after a layer starts again; the allocator should count what
/// a layer can reach, not what it sent in its quietest half second, or it
/// moves a receiver up and must move it down again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct RateMeter {
    window_start: Option<Instant>,
    bytes: u64,
    /// Bits per second over the last whole windows, newest at `next - 1`.
    windows: [u64; RATE_WINDOWS],
    next: usize,
    last_packet: Option<Instant>,
}

/// How many windows the rate remembers (4 s).
const RATE_WINDOWS: usize = 8;

/// How long bytes are counted before the rate is updated.
const RATE_WINDOW: Duration = Duration::from_millis(500);

/// A layer with no packet for this long is taken as stopped.
pub(crate) const LAYER_GONE: Duration = Duration::from_millis(1500);

impl RateMeter {
    fn add(&mut self, at: Instant, bytes: usize) {
        let start = *self.window_start.get_or_insert(at);
        self.bytes += bytes as u64;
        let elapsed = at.saturating_duration_since(start);
        if elapsed >= RATE_WINDOW {
            self.windows[self.next] = self.bytes * 8 * 1000 / elapsed.as_millis().max(1) as u64;
            self.next = (self.next + 1) % RATE_WINDOWS;
            self.bytes = 0;
            self.window_start = Some(at);
        }
        self.last_packet = Some(at);
    }

    fn bps(&self) -> u64 {
        self.windows.iter().copied().max().unwrap_or(0)
    }

    fn active(&self, now: Instant) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) < LAYER_GONE)
    }
}

/// What the server knows of one published video track's layers.
#[derive(Debug, Clone, Default)]
pub(crate) struct PublishedLayers {
    rates: [RateMeter; LAYERS],
    /// Each layer's size, from its last keyframe.
    pub size: [Option<(u16, u16)>; LAYERS],
    /// Whether the publisher sends rids (simulcast) or one plain stream.
    pub simulcast: bool,
    /// Layers the publisher was told to stop, as nobody receives them.
    pub paused: [bool; LAYERS],
    /// When each layer was last asked for again after a stop.
    pub resumed: [Option<Instant>; LAYERS],
    /// The newest sequence number of each layer.
    newest: [Option<u64>; LAYERS],
}

/// One layer as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    /// Its recent bitrate, bits per second.
    pub bps: u64,
    /// Its width in pixels, when a keyframe told it.
    pub width: Option<u16>,
}

impl PublishedLayers {
    /// Notes packet `seq` of `layer`; returns whether it is the newest of
    /// its layer so far (not a late resend or a reordered packet). Only such
    /// a packet may start a switch: a resent keyframe start whose frame is
    /// older than what the receiver already got would take it back in time.
    pub fn packet(
        &mut self,
        layer: Layer,
        at: Instant,
        bytes: usize,
        seq: u64,
        head: Option<&Vp8Head>,
    ) -> bool {
        let l = usize::from(layer);
        self.rates[l].add(at, bytes);
        if let Some(size) = head.and_then(|h| h.size) {
            self.size[l] = Some(size);
        }
        let newest = self.newest[l].is_none_or(|n| seq > n);
        if newest {
            self.newest[l] = Some(seq);
        }
        newest
    }

    /// The layers a receiver may get: those that carry media now, and those
    /// the server told the publisher to stop (it starts them again when one
    /// is chosen), with their last rates and widths.
    pub fn layers(&self, now: Instant) -> [Option<LayerInfo>; LAYERS] {
        std::array::from_fn(|l| {
            let r = &self.rates[l];
            // A layer just asked for again counts while the publisher
            // starts it.
            let resuming =
                self.resumed[l].is_some_and(|t| now.saturating_duration_since(t) < LAYER_GONE * 2);
            let available =
                r.active(now) || (r.last_packet.is_some() && (self.paused[l] || resuming));
            available.then(|| LayerInfo {
                bps: r.bps(),
                width: self.size[l].map(|s| s.0),
            })
        })
    }

    /// Whether any packet of `layer` ever came.
    pub fn seen(&self, layer: Layer) -> bool {
        self.rates[usize::from(layer)].last_packet.is_some()
    }

    /// The rid of `layer` as the publisher sends it.
    pub fn rid(&self, layer: Layer) -> Option<Rid> {
        self.simulcast
            .then(|| RIDS.get(usize::from(layer)).map(|r| Rid::from(*r)))
            .flatten()
    }
}

/// Which layer of a track one receiver gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct LayerChoice {
    /// The layer forwarded now; `None` until a keyframe started the stream
    /// (or after a pause).
    pub current: Option<Layer>,
    /// The layer the allocator wants; `None` pauses the track.
    pub target: Option<Layer>,
    /// The last packet forwarded did not end its frame: a switch now would
    /// leave the receiver a frame without its end.
    pub mid_frame: bool,
}

/// What to do with one packet for one receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Forward it on the current layer.
    Forward,
    /// It starts a keyframe of the target: switch to it, then forward.
    Switch,
    /// Not for this receiver.
    Drop,
}

impl LayerChoice {
    /// A choice that starts on `target` at its first keyframe.
    pub fn new(target: Option<Layer>) -> Self {
        LayerChoice {
            current: None,
            target,
            mid_frame: false,
        }
    }

    /// Decides for a packet of `layer` (`keyframe`: a keyframe's first
    /// packet; `marker`: the last packet of its frame). A switch happens only
    /// at a keyframe of the target and between two frames of the current
    /// layer, so the receiver never gets a frame whose references it lacks,
    /// nor one cut short.
    pub fn admit(&mut self, layer: Layer, keyframe: bool, marker: bool) -> Admit {
        let Some(target) = self.target else {
            if self.mid_frame && self.current == Some(layer) {
                // Finish the frame under way, then stop.
                self.mid_frame = !marker;
                return Admit::Forward;
            }
            self.current = None;
            self.mid_frame = false;
            return Admit::Drop;
        };
        let decision =
            if layer == target && keyframe && self.current != Some(target) && !self.mid_frame {
                self.current = Some(target);
                Admit::Switch
            } else if self.current == Some(layer) {
                Admit::Forward
            } else {
                return Admit::Drop;
            };
        self.mid_frame = !marker;
        decision
    }

    /// Whether the receiver waits for a keyframe of the target.
    pub fn waiting(&self) -> bool {
        self.target.is_some() && self.current != self.target
    }
}

/// RTP clock of video.
const VIDEO_HZ: u64 = 90_000;

/// Keeps one receiver's RTP timestamps, picture ids and TL0PICIDX continuous
/// across layer switches. Offsets are 0 until the first switch, so a stream
/// that never switched goes out as the publisher made it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Continuity {
    ts_offset: u32,
    pic_offset: u16,
    tl0_offset: u8,
    /// Newest timestamp given out, and when its packet came.
    last_ts: Option<(u32, Instant)>,
    last_pic: Option<u16>,
    last_tl0: Option<u8>,
}

/// What a forwarded packet carries after rewriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rewritten {
    pub timestamp: u32,
    /// New picture id and TL0PICIDX, when they differ from the packet's.
    pub picture_id: Option<u16>,
    pub tl0: Option<u8>,
}

/// Whether `a` is after `b` in 32-bit wrapping order.
fn after32(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 1 << 31
}

impl Continuity {
    /// Starts a new layer at its keyframe packet: its first frame follows the
    /// last one given out by the time that passed (at least one tick), its
    /// picture id and TL0PICIDX by one.
    pub fn rebase(&mut self, ts: u32, at: Instant, head: Option<&Vp8Head>) {
        if let Some((last, last_at)) = self.last_ts {
            let ticks =
                at.saturating_duration_since(last_at).as_micros() as u64 * VIDEO_HZ / 1_000_000;
            let first = last.wrapping_add(ticks.clamp(1, u64::from(u32::MAX >> 2)) as u32);
            self.ts_offset = first.wrapping_sub(ts);
        }
        let head = head.copied().unwrap_or_default();
        if let (Some(last), Some((pic, wide))) = (self.last_pic, head.picture_id) {
            let modulus = if wide { 0x8000 } else { 0x80 };
            self.pic_offset = (last.wrapping_add(1).wrapping_sub(pic)) % modulus;
        }
        if let (Some(last), Some(tl0)) = (self.last_tl0, head.tl0) {
            self.tl0_offset = last.wrapping_add(1).wrapping_sub(tl0);
        }
    }

    /// The packet's timestamp, picture id and TL0PICIDX in the receiver's
    /// stream.
    pub fn rewrite(&mut self, ts: u32, at: Instant, head: Option<&Vp8Head>) -> Rewritten {
        let timestamp = ts.wrapping_add(self.ts_offset);
        if self
            .last_ts
            .is_none_or(|(last, _)| after32(timestamp, last))
        {
            self.last_ts = Some((timestamp, at));
        }
        let mut out = Rewritten {
            timestamp,
            picture_id: None,
            tl0: None,
        };
        let head = head.copied().unwrap_or_default();
        if let Some((pic, wide)) = head.picture_id {
            let modulus: u16 = if wide { 0x8000 } else { 0x80 };
            let new = pic.wrapping_add(self.pic_offset) % modulus;
            let newer = self.last_pic.is_none_or(|last| {
                let d = new.wrapping_sub(last) % modulus;
                d != 0 && d < modulus / 2
            });
            if newer {
                self.last_pic = Some(new);
            }
            out.picture_id = (new != pic).then_some(new);
        }
        if let Some(tl0) = head.tl0 {
            let new = tl0.wrapping_add(self.tl0_offset);
            if self.last_tl0.is_none_or(|last| {
                let d = new.wrapping_sub(last);
                d != 0 && d < 128
            }) {
                self.last_tl0 = Some(new);
            }
            out.tl0 = (new != tl0).then_some(new);
        }
        out
    }
}

/// str0m's view of a packet's descriptor, for [`patch`]: parsed once per
/// packet, and only when it carries a field a switch may rewrite.
pub(crate) fn descriptor(payload: &[u8], head: Option<&Vp8Head>) -> Option<Vp8Descriptor> {
    head.filter(|h| h.picture_id.is_some() || h.tl0.is_some())?;
    Vp8Descriptor::parse(payload).ok()
}

/// The descriptor patch that writes `r`'s picture id and TL0PICIDX into
/// the packet `descriptor` was parsed from, if they changed.
pub(crate) fn patch(
    descriptor: Option<&Vp8Descriptor>,
    r: &Rewritten,
) -> Option<str0m::rtp::Vp8Patch> {
    if r.picture_id.is_none() && r.tl0.is_none() {
        return None;
    }
    let mut b = descriptor?.patch();
    if let Some(p) = r.picture_id {
        b = b.picture_id(p);
    }
    if let Some(t) = r.tl0 {
        b = b.tl0_pic_idx(t);
    }
    b.build().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A VP8 packet: descriptor with a 15-bit picture id and TL0PICIDX, then
    /// (on a first packet) a payload header.
    fn packet(start: bool, key: bool, pic: u16, tl0: u8, size: (u16, u16)) -> Vec<u8> {
        let mut p = vec![0x80 | if start { 0x10 } else { 0 }, 0xe0];
        p.extend_from_slice(&(0x8000 | pic).to_be_bytes());
        p.push(tl0);
        p.push(0x20);
        if key {
            p.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            p.extend_from_slice(&size.0.to_le_bytes());
            p.extend_from_slice(&size.1.to_le_bytes());
        } else {
            p.extend_from_slice(&[0x11, 0x02, 0x00]);
        }
        p.extend_from_slice(&[0xaa; 20]);
        p
    }

    #[test]
    fn the_clear_header_tells_keyframes_sizes_and_ids() {
        let k = vp8_head(&packet(true, true, 300, 9, (640, 360))).unwrap();
        assert!(k.keyframe);
        assert_eq!(k.size, Some((640, 360)));
        assert_eq!(k.picture_id, Some((300, true)));
        assert_eq!(k.tl0, Some(9));
        let d = vp8_head(&packet(true, false, 301, 9, (0, 0))).unwrap();
        assert!(!d.keyframe);
        assert_eq!(d.size, None);
        // A later packet of a keyframe is not its start.
        let mut cont = packet(false, true, 300, 9, (640, 360));
        cont[0] &= !0x10;
        assert!(!vp8_head(&cont).unwrap().keyframe);
        // The minimal descriptor of str0m's packetizer.
        assert!(vp8_head(&[0x10, 0x00, 1, 2]).unwrap().keyframe);
        assert!(!vp8_head(&[0x10, 0x01, 1, 2]).unwrap().keyframe);
        // Truncated descriptors are refused, not read past.
        assert_eq!(vp8_head(&[0x80]), None);
        assert_eq!(vp8_head(&[0x80, 0x80, 0x81]), None);
        assert_eq!(vp8_head(&[]), None);
    }

    #[test]
    fn rids_name_layers() {
        assert_eq!(layer_of(None), Some(0));
        assert_eq!(layer_of(Some(Rid::from("h"))), Some(2));
        assert_eq!(layer_of(Some(Rid::from("x"))), None);
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_of_the_target() {
        let mut c = LayerChoice::new(Some(2));
        // Nothing until the target's keyframe; other layers are not taken.
        assert_eq!(c.admit(2, false, true), Admit::Drop);
        assert_eq!(c.admit(0, true, true), Admit::Drop);
        assert_eq!(c.admit(2, true, true), Admit::Switch);
        assert_eq!(c.admit(2, false, true), Admit::Forward);
        assert_eq!(c.admit(1, false, true), Admit::Drop);
        // Down: the current layer keeps flowing until the target's keyframe.
        c.target = Some(0);
        assert!(c.waiting());
        assert_eq!(c.admit(2, false, true), Admit::Forward);
        assert_eq!(c.admit(0, false, true), Admit::Drop);
        assert_eq!(c.admit(0, true, true), Admit::Switch);
        assert_eq!(c.admit(2, false, true), Admit::Drop);
        assert_eq!(c.admit(2, true, true), Admit::Drop);
        // A keyframe of the current layer is just forwarded.
        assert_eq!(c.admit(0, true, true), Admit::Forward);
        // Paused: nothing, and resuming needs a keyframe.
        c.target = None;
        assert_eq!(c.admit(0, false, true), Admit::Drop);
        c.target = Some(0);
        assert_eq!(c.admit(0, false, true), Admit::Drop);
        assert_eq!(c.admit(0, true, true), Admit::Switch);
    }

    #[test]
    fn a_switch_waits_for_the_current_frame_to_end() {
        let mut c = LayerChoice::new(Some(2));
        assert_eq!(c.admit(2, true, false), Admit::Switch);
        c.target = Some(0);
        // The target's keyframe comes while a frame of layer 2 is under way:
        // no switch; layer 2's frame ends; the next keyframe of 0 switches.
        assert_eq!(c.admit(0, true, true), Admit::Drop);
        assert_eq!(c.admit(2, false, true), Admit::Forward);
        assert_eq!(c.admit(0, true, true), Admit::Switch);
        // Paused mid-frame: the frame is finished first.
        assert_eq!(c.admit(0, true, false), Admit::Forward);
        c.target = None;
        assert_eq!(c.admit(0, false, true), Admit::Forward);
        assert_eq!(c.admit(0, false, false), Admit::Drop);
    }

    #[test]
    fn timestamps_and_picture_ids_continue_across_a_switch() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut c = Continuity::default();
        // Layer 2: timestamps from 1000, picture ids from 32760 (wrapping).
        let h = |pic: u16, tl0: u8| vp8_head(&packet(true, false, pic, tl0, (0, 0)));
        let r = c.rewrite(1000, ms(0), h(32766, 5).as_ref());
        assert_eq!(
            r,
            Rewritten {
                timestamp: 1000,
                picture_id: None,
                tl0: None
            }
        );
        c.rewrite(1000 + 3000, ms(33), h(32767, 6).as_ref());
        // Layer 0 has its own clock and ids; its keyframe comes 33 ms later.
        let key = vp8_head(&packet(true, true, 12, 200, (320, 180)));
        c.rebase(7_000_000, ms(66), key.as_ref());
        let r = c.rewrite(7_000_000, ms(66), key.as_ref());
        assert_eq!(r.timestamp, 4000 + 33 * 90);
        assert_eq!(r.picture_id, Some(0), "32767 + 1 wraps to 0 on 15 bits");
        assert_eq!(r.tl0, Some(7));
        let r = c.rewrite(7_000_000 + 3000, ms(99), h(13, 200).as_ref());
        assert_eq!(r.timestamp, 4000 + 33 * 90 + 3000);
        assert_eq!(r.picture_id, Some(1));
        assert_eq!(r.tl0, Some(7));
        // The patch writes them into the descriptor without touching the rest.
        let p = packet(true, false, 13, 200, (0, 0));
        let d = descriptor(&p, vp8_head(&p).as_ref());
        assert!(patch(d.as_ref(), &r).is_some());
        // A descriptor without picture id or TL0PICIDX is not parsed again.
        let plain = [0x10, 0x00, 1, 2];
        assert!(descriptor(&plain, vp8_head(&plain).as_ref()).is_none());
        assert_eq!(
            patch(
                d.as_ref(),
                &Rewritten {
                    timestamp: 0,
                    picture_id: None,
                    tl0: None
                }
            ),
            None
        );
    }

    #[test]
    fn rates_and_activity_per_layer() {
        let t0 = Instant::now();
        let mut l = PublishedLayers::default();
        for i in 0..=50u64 {
            let at = t0 + Duration::from_millis(i * 20);
            assert!(l.packet(0, at, 250, i, None));
        }
        let now = t0 + Duration::from_millis(1000);
        let layers = l.layers(now);
        let bps = layers[0].unwrap().bps;
        assert!((90_000..=110_000).contains(&bps), "{bps}");
        assert_eq!(layers[1], None);
        // A late packet is not the newest.
        assert!(!l.packet(0, now, 250, 10, None));
        assert_eq!(l.layers(now + Duration::from_secs(2))[0], None);
        // A layer the server paused stays on offer, at its last rate.
        l.paused[0] = true;
        assert_eq!(l.layers(now + Duration::from_secs(2))[0].unwrap().bps, bps);
    }
}
