//! SFrame (RFC 9605) keys for media frames, derived from the MLS group as in
//! RFC 9605 §5.2: one base key per epoch from the MLS exporter, and one key per
//! sender through the key id, which packs the sender's leaf index and the low
//! bits of the epoch.
//!
//! A sender always seals with the newest epoch's key. A receiver keeps the
//! previous epochs' keys for a grace period after moving on, so frames already in
//! flight when a commit lands still open; after the grace they are refused.

use std::collections::HashMap;

use sframe::CipherSuite;
use sframe::frame::{EncryptedFrame, MediaFrame, MonotonicCounter};
use sframe::header::KeyId;
use sframe::key::{DecryptionKey, EncryptionKey};
use sframe::mls::{MlsExporter, MlsKeyId, MlsKeyIdBitRange};

/// The SFrame cipher suite: AES-128-GCM with SHA-256, matching the MLS suite.
pub const SFRAME_SUITE: CipherSuite = CipherSuite::AesGcm128Sha256;

/// Bits of the key id that carry the low bits of the epoch.
const EPOCH_BITS: u8 = 8;
/// Bits of the key id that carry the sender's leaf index.
const LEAF_BITS: u8 = 12;

/// Leaf indexes a key id can name: a group may hold at most this many members
/// (the server's room cap, `aparte_proto::MAX_PARTICIPANTS_PER_ROOM`, stays
/// well below it, leaving room for blank leaves). The key id is
/// `leaf << 8 | epoch & 0xff`: two bytes in the SFrame header while leaves stay
/// below 256, three above.
pub const MAX_LEAVES: u32 = 1 << LEAF_BITS;

fn bit_range() -> MlsKeyIdBitRange {
    MlsKeyIdBitRange::new(EPOCH_BITS, LEAF_BITS)
}

/// Which media a frame carries; decides how many leading bytes stay in clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// Opus audio.
    Audio,
    /// VP8 video.
    Video,
}

/// Leading bytes left in clear (and authenticated as SFrame metadata).
///
/// Opus: the TOC byte. VP8: the payload header that packetizers and depacketizers
/// read — 3 bytes of a delta frame, 10 of a keyframe (which carry the frame size).
/// The SFU reads only bit 0 of the first byte (keyframe or not). Everything else,
/// the picture and the sound, is encrypted.
pub fn clear_prefix(kind: MediaKind, frame: &[u8]) -> usize {
    codec_header(kind, frame).min(frame.len())
}

/// The codec header's length, as the first byte says it.
fn codec_header(kind: MediaKind, frame: &[u8]) -> usize {
    match kind {
        MediaKind::Audio => 1,
        MediaKind::Video => match frame.first() {
            Some(b) if b & 1 == 0 => 10,
            _ => 3,
        },
    }
}

/// Why a frame did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// No key yet (the group is not joined) or the sender's key is unknown,
    /// expired, or from an epoch this member never had.
    #[error("no key for this frame")]
    NoKey,
    /// The frame failed authentication or is malformed.
    #[error("frame failed authentication")]
    Invalid,
    /// This member has no group key to seal with.
    #[error("not in a group: nothing may be sent")]
    NotReady,
    /// The key that opens the frame is another member's than the one whose
    /// track it came on: the server relabelled it. Not shown.
    #[error("frame of another sender than its track's")]
    WrongSender,
    /// A frame counter this key already opened, or one older than the replay
    /// window: a replay (or a frame so late it no longer matters). Not shown.
    #[error("frame replayed")]
    Replayed,
    /// The frame's key id names an epoch older than this member's, whose keys
    /// are gone (past their grace): its sender missed a commit and still seals
    /// with an old key. Its tile says so. The key id is in clear, so a server
    /// can also fake this (as it can drop any frame): it says only that the
    /// frame cannot be trusted, never that someone is in the meeting.
    #[error("frame sealed with a past epoch's key: its sender is behind")]
    Behind,
}

struct RxKey {
    key: DecryptionKey,
    /// When this key stops being accepted (ms, caller's clock); `None` while current.
    expires_ms: Option<u64>,
    /// The participant whose MLS leaf this key belongs to, in its epoch
    /// (from the leaf's credential); `None` for keys with no owner (the
    /// benchmarks' fixed keys).
    sender: Option<u64>,
    /// Frame counters already opened with this key.
    seen: ReplayWindow,
}

/// The counters one key opened: the highest, and which of the
/// [`ReplayWindow::SIZE`] below it. A frame is fresh if its counter is above
/// the highest, or within the window and not seen. Counters are recorded only
/// once a frame authenticated, so forged frames cannot move the window.
#[derive(Debug, Clone, Copy, Default)]
struct ReplayWindow {
    top: Option<u64>,
    /// Bit i: counter `top - i` was opened.
    bits: u128,
}

impl ReplayWindow {
    /// Frames of reordering tolerated: about four seconds of 30 fps video.
    const SIZE: u64 = 128;

    fn is_fresh(&self, ctr: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if ctr > top => true,
            Some(top) => top - ctr < Self::SIZE && self.bits & (1 << (top - ctr)) == 0,
        }
    }

    fn record(&mut self, ctr: u64) {
        match self.top {
            Some(top) if ctr <= top => self.bits |= 1 << (top - ctr),
            Some(top) => {
                let shift = ctr - top;
                self.bits = if shift >= Self::SIZE {
                    0
                } else {
                    self.bits << shift
                };
                self.bits |= 1;
                self.top = Some(ctr);
            }
            None => {
                self.bits = 1;
                self.top = Some(ctr);
            }
        }
    }
}

/// The media keys of one member.
pub struct MediaKeys {
    grace_ms: u64,
    sender: Option<(EncryptionKey, MonotonicCounter)>,
    receive: HashMap<KeyId, RxKey>,
    epoch: Option<u64>,
}

impl std::fmt::Debug for MediaKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaKeys")
            .field("epoch", &self.epoch)
            .field("receive_keys", &self.receive.len())
            .finish_non_exhaustive()
    }
}

impl MediaKeys {
    /// No keys yet; old epochs' keys are kept `grace_ms` after a new epoch.
    pub fn new(grace_ms: u64) -> Self {
        MediaKeys {
            grace_ms,
            sender: None,
            receive: HashMap::new(),
            epoch: None,
        }
    }

    /// Keys from one fixed secret shared out of band, for benchmarks that drive
    /// SFUs without an MLS delivery service (the Janus comparison): every frame
    /// costs the same SFrame work as in a meeting, but the secret is nobody's
    /// group key. Never used by meetings.
    pub fn fixed_for_benchmarks(secret: &[u8; 16]) -> Result<Self, FrameError> {
        const KID: u64 = 0;
        let enc = EncryptionKey::derive_from(SFRAME_SUITE, KID, secret)
            .map_err(|_| FrameError::NotReady)?;
        let dec = DecryptionKey::derive_from(SFRAME_SUITE, KID, secret)
            .map_err(|_| FrameError::NotReady)?;
        let mut keys = MediaKeys::new(0);
        keys.sender = Some((enc, MonotonicCounter::default()));
        keys.receive.insert(
            KeyId::from(KID),
            RxKey {
                key: dec,
                expires_ms: None,
                sender: None,
                seen: ReplayWindow::default(),
            },
        );
        Ok(keys)
    }

    /// The epoch whose key seals outgoing frames.
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// Installs the keys of a new epoch: its own leaf's to seal with, and one
    /// per other member, `(leaf, participant)`, to open with. `now_ms` starts
    /// the grace of the old ones.
    pub(crate) fn rekey(
        &mut self,
        now_ms: u64,
        exporter: &impl MlsExporter,
        epoch: u64,
        own_leaf: u32,
        others: impl IntoIterator<Item = (u32, u64)>,
    ) -> Result<(), sframe::error::SframeError> {
        for k in self.receive.values_mut() {
            k.expires_ms.get_or_insert(now_ms + self.grace_ms);
        }
        self.expire(now_ms);
        let kid = |leaf: u32| MlsKeyId::try_new(0u64, epoch, leaf, bit_range());
        let enc = EncryptionKey::derive_from_mls(SFRAME_SUITE, exporter, kid(own_leaf)?)?;
        self.sender = Some((enc, MonotonicCounter::default()));
        for (leaf, participant) in others {
            let id = kid(leaf)?;
            let key = DecryptionKey::derive_from_mls(SFRAME_SUITE, exporter, id)?;
            self.receive.insert(
                KeyId::from(id),
                RxKey {
                    key,
                    expires_ms: None,
                    sender: Some(participant),
                    seen: ReplayWindow::default(),
                },
            );
        }
        self.epoch = Some(epoch);
        Ok(())
    }

    /// Forgets every key (the member left or was removed).
    pub(crate) fn clear(&mut self) {
        self.sender = None;
        self.receive.clear();
        self.epoch = None;
    }

    fn expire(&mut self, now_ms: u64) {
        self.receive
            .retain(|_, k| k.expires_ms.is_none_or(|t| now_ms < t));
    }

    /// Seals a frame: the clear prefix, then the SFrame header, ciphertext and tag.
    pub fn seal(&mut self, kind: MediaKind, frame: &[u8]) -> Result<Vec<u8>, FrameError> {
        let (key, counter) = self.sender.as_mut().ok_or(FrameError::NotReady)?;
        // A frame shorter than its own codec header is no frame; sealed, it
        // would not open (the receiver reads the header's length from the
        // longer sealed frame). Found by the sframe_open fuzz target.
        if frame.len() < codec_header(kind, frame) {
            return Err(FrameError::Invalid);
        }
        let n = clear_prefix(kind, frame);
        let media = MediaFrame::try_with_meta_data(counter, &frame[n..], &frame[..n])
            .map_err(|_| FrameError::NotReady)?;
        let sealed = media.encrypt(key).map_err(|_| FrameError::Invalid)?;
        Ok(sealed.as_ref().to_vec())
    }

    /// Opens a sealed frame that came on a track of participant `from`:
    /// refused if the key that opens it is another member's (the server
    /// relabelled it), if its counter was already opened or is older than the
    /// replay window, or if its key is past its grace at `now_ms`.
    pub fn open(
        &mut self,
        now_ms: u64,
        kind: MediaKind,
        from: u64,
        sealed: &[u8],
    ) -> Result<Vec<u8>, FrameError> {
        self.expire(now_ms);
        let n = clear_prefix(kind, sealed);
        let frame = EncryptedFrame::try_with_meta_data(&sealed[n..], &sealed[..n])
            .map_err(|_| FrameError::Invalid)?;
        let kid = frame.header().key_id();
        let ctr = frame.header().counter();
        let Some(rx) = self.receive.get_mut(&kid) else {
            return Err(self.why_no_key(kid));
        };
        if rx.sender.is_some_and(|s| s != from) {
            return Err(FrameError::WrongSender);
        }
        if !rx.seen.is_fresh(ctr) {
            return Err(FrameError::Replayed);
        }
        let media = frame.decrypt(&rx.key).map_err(|_| FrameError::Invalid)?;
        rx.seen.record(ctr);
        let mut out = Vec::with_capacity(n + media.payload().len());
        out.extend_from_slice(media.meta_data());
        out.extend_from_slice(media.payload());
        Ok(out)
    }

    /// Why no key opens key id `kid`: [`FrameError::Behind`] if it names an
    /// epoch up to 127 before ours (its low bits, modulo 256), else
    /// [`FrameError::NoKey`] (a later epoch, or no group yet).
    fn why_no_key(&self, kid: KeyId) -> FrameError {
        let Some(epoch) = self.epoch else {
            return FrameError::NoKey;
        };
        let mask = (1u64 << EPOCH_BITS) - 1;
        let behind_by = (epoch & mask).wrapping_sub(kid & mask) & mask;
        if (1..=mask / 2).contains(&behind_by) {
            FrameError::Behind
        } else {
            FrameError::NoKey
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exporter of fixed bytes, standing in for an MLS group's.
    struct Fixed;

    impl MlsExporter for Fixed {
        type BaseKey = Vec<u8>;
        type Error = std::convert::Infallible;

        fn export_secret(&self, _: &str, _: &[u8], len: usize) -> Result<Vec<u8>, Self::Error> {
            Ok(vec![7; len])
        }
    }

    /// Groups larger than 256 members: every leaf gets keys, and a frame sealed
    /// by a sender at a high leaf opens (a two-byte key id once failed for
    /// leaves from 256 on, leaving those members without any key).
    #[test]
    fn leaves_past_256_get_keys() {
        let leaves = [0, 1, 255, 256, 300, 499, MAX_LEAVES - 1];
        let mut keys: Vec<MediaKeys> = leaves
            .iter()
            .map(|&own| {
                let mut k = MediaKeys::new(1000);
                let others = leaves
                    .iter()
                    .copied()
                    .filter(|&l| l != own)
                    .map(|l| (l, participant(l)));
                k.rekey(0, &Fixed, 3, own, others)
                    .expect("keys for every leaf");
                k
            })
            .collect();
        let frame = [0xfc, 1, 2, 3];
        for i in 0..leaves.len() {
            let sealed = keys[i].seal(MediaKind::Audio, &frame).expect("sealed");
            let j = (i + 1) % leaves.len();
            let from = participant(leaves[i]);
            let opened = keys[j].open(0, MediaKind::Audio, from, &sealed);
            assert_eq!(opened.as_deref(), Ok(&frame[..]), "leaf {}", leaves[i]);
        }
        let mut k = MediaKeys::new(1000);
        assert!(k.rekey(0, &Fixed, 3, MAX_LEAVES, [(0, 1)]).is_err());
    }

    /// The participant a test puts at `leaf`.
    fn participant(leaf: u32) -> u64 {
        u64::from(leaf) * 7 + 1000
    }

    /// Two senders, one receiver: a frame opens only when it came on its own
    /// sender's track; shown on another's, it is refused as relabelled.
    #[test]
    fn a_frame_opens_only_on_its_senders_track() {
        let mut alice = MediaKeys::new(1000);
        alice
            .rekey(0, &Fixed, 5, 1, [(0, participant(0)), (2, participant(2))])
            .expect("keys");
        let mut bob = MediaKeys::new(1000);
        bob.rekey(0, &Fixed, 5, 2, [(0, participant(0)), (1, participant(1))])
            .expect("keys");
        let mut carol = MediaKeys::new(1000);
        carol
            .rekey(0, &Fixed, 5, 0, [(1, participant(1)), (2, participant(2))])
            .expect("keys");
        let frame = [0xfc, 9, 9, 9];
        let from_alice = alice.seal(MediaKind::Audio, &frame).expect("sealed");
        assert_eq!(
            carol.open(0, MediaKind::Audio, participant(2), &from_alice),
            Err(FrameError::WrongSender),
            "Alice's frame on Bob's tile"
        );
        assert_eq!(
            carol
                .open(0, MediaKind::Audio, participant(1), &from_alice)
                .as_deref(),
            Ok(&frame[..])
        );
        let from_bob = bob.seal(MediaKind::Audio, &frame).expect("sealed");
        assert_eq!(
            carol.open(0, MediaKind::Audio, participant(1), &from_bob),
            Err(FrameError::WrongSender)
        );
    }

    /// A frame opens once; a replay of it, or of a frame older than the
    /// window, is refused. Frames out of order within the window open.
    #[test]
    fn replays_are_refused_and_reordering_within_the_window_is_not() {
        let mut tx = MediaKeys::fixed_for_benchmarks(&[1; 16]).expect("keys");
        let mut rx = MediaKeys::fixed_for_benchmarks(&[1; 16]).expect("keys");
        let sealed: Vec<Vec<u8>> = (0..300u32)
            .map(|i| {
                let frame = [0xfc, (i % 256) as u8, 1, 2];
                tx.seal(MediaKind::Audio, &frame).expect("sealed")
            })
            .collect();
        let open = |rx: &mut MediaKeys, i: usize| rx.open(0, MediaKind::Audio, 0, &sealed[i]);
        assert!(open(&mut rx, 0).is_ok());
        assert_eq!(open(&mut rx, 0), Err(FrameError::Replayed));
        // Out of order: 5, then 3, 4, 1: all new.
        for i in [5, 3, 4, 1] {
            assert!(open(&mut rx, i).is_ok(), "frame {i}");
        }
        assert_eq!(open(&mut rx, 3), Err(FrameError::Replayed));
        // Far ahead: what fell out of the window is refused, even unseen.
        assert!(open(&mut rx, 250).is_ok());
        assert_eq!(open(&mut rx, 2), Err(FrameError::Replayed));
        assert!(open(&mut rx, 250 - 127).is_ok(), "the window's oldest");
        assert_eq!(open(&mut rx, 250 - 128), Err(FrameError::Replayed));
        // A forged frame with a fresh counter does not move the window.
        let mut forged = sealed[299].clone();
        *forged.last_mut().expect("tag") ^= 1;
        assert_eq!(
            rx.open(0, MediaKind::Audio, 0, &forged),
            Err(FrameError::Invalid)
        );
        assert!(open(&mut rx, 200).is_ok(), "the window did not move to 299");
    }

    /// A sender still sealing with an epoch's key after the receiver's grace
    /// for it ended is behind; a key of a later epoch, or of the current one
    /// that the receiver lacks, is not.
    #[test]
    fn a_frame_of_a_past_epoch_after_the_grace_says_its_sender_is_behind() {
        let mut old = MediaKeys::new(1000);
        old.rekey(0, &Fixed, 255, 1, [(0, 10)]).expect("keys");
        let frame = [0xfc, 1, 2];
        let stale = old.seal(MediaKind::Audio, &frame).expect("sealed");
        let mut rx = MediaKeys::new(1000);
        rx.rekey(0, &Fixed, 255, 0, [(1, 11)]).expect("keys");
        // Epoch 256: the key id's low bits wrap to 0.
        rx.rekey(5000, &Labelled(1), 256, 0, [(1, 11)])
            .expect("keys");
        assert!(rx.open(5500, MediaKind::Audio, 11, &stale).is_ok(), "grace");
        let again = old.seal(MediaKind::Audio, &frame).expect("sealed");
        assert_eq!(
            rx.open(6000, MediaKind::Audio, 11, &again),
            Err(FrameError::Behind)
        );
        let mut ahead = MediaKeys::new(1000);
        ahead.rekey(0, &Fixed, 257, 1, [(0, 10)]).expect("keys");
        let early = ahead.seal(MediaKind::Audio, &frame).expect("sealed");
        assert_eq!(
            rx.open(6000, MediaKind::Audio, 11, &early),
            Err(FrameError::NoKey)
        );
        let mut none = MediaKeys::new(1000);
        assert_eq!(
            none.open(0, MediaKind::Audio, 11, &again),
            Err(FrameError::NoKey)
        );
    }

    #[test]
    fn clear_prefix_follows_the_codec() {
        assert_eq!(clear_prefix(MediaKind::Audio, &[0xfc, 1, 2]), 1);
        assert_eq!(clear_prefix(MediaKind::Video, &[0x10; 20]), 10); // P=0: keyframe
        assert_eq!(clear_prefix(MediaKind::Video, &[0x11; 20]), 3); // P=1: delta
        assert_eq!(clear_prefix(MediaKind::Video, &[0x10; 4]), 4);
        assert_eq!(clear_prefix(MediaKind::Video, &[]), 0);
    }

    /// An exporter whose output depends on everything it is asked (label,
    /// context, length), like an MLS group's: keys made with another label
    /// or length would differ.
    struct Labelled(u8);

    impl MlsExporter for Labelled {
        type BaseKey = Vec<u8>;
        type Error = std::convert::Infallible;

        fn export_secret(
            &self,
            label: &str,
            ctx: &[u8],
            len: usize,
        ) -> Result<Vec<u8>, Self::Error> {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update([self.0]);
            h.update((label.len() as u32).to_be_bytes());
            h.update(label.as_bytes());
            h.update(ctx);
            h.update((len as u32).to_be_bytes());
            Ok(h.finalize()[..len].to_vec())
        }
    }

    /// RFC 9605 §5.2, written out here from the RFC rather than through the
    /// sframe crate's MLS helper that `rekey` uses: the epoch's base key is
    /// `MLS-Exporter("SFrame 1.0 Base Key", "", AEAD.Nk)`, and a sender's key
    /// id is `(context << (S + E)) + (sender_index << E) + (epoch % (1 << E))`
    /// with context 0, E = 8 and S = 12 here. The per-key-id key and salt are
    /// §4.4.2's (`derive_from`, checked against the RFC's vectors in
    /// tests/rfc9605.rs). A frame sealed with keys made this way opens with
    /// ours, and ours carries that key id and opens with those keys.
    #[test]
    fn media_keys_follow_rfc9605_section_5_2() {
        let exporter = Labelled(3);
        let (epoch, sender, receiver) = (300u64, 257u32, 4u32);
        let nk = 16; // AES-128-GCM
        let base_key = exporter
            .export_secret("SFrame 1.0 Base Key", b"", nk)
            .expect("export");
        let kid = |leaf: u32| (u64::from(leaf) << 8) + (epoch % (1 << 8));
        assert_eq!(kid(sender), 0x1012c);

        let mut ours = MediaKeys::new(1000);
        ours.rekey(0, &exporter, epoch, receiver, [(sender, 77)])
            .expect("keys");
        // The sender's frame, sealed by the RFC's recipe.
        let enc = EncryptionKey::derive_from(SFRAME_SUITE, kid(sender), &base_key).expect("key");
        let mut counter = MonotonicCounter::default();
        let frame = [0xfc, 1, 2, 3, 4];
        let sealed = MediaFrame::try_with_meta_data(&mut counter, &frame[1..], &frame[..1])
            .expect("frame")
            .encrypt(&enc)
            .expect("sealed");
        let opened = ours.open(0, MediaKind::Audio, 77, sealed.as_ref());
        assert_eq!(opened.as_deref(), Ok(&frame[..]));

        // Our own frame: the RFC's key id, and the RFC's keys open it.
        let mine = ours.seal(MediaKind::Audio, &frame).expect("sealed");
        let parsed = EncryptedFrame::try_with_meta_data(&mine[1..], &mine[..1]).expect("parsed");
        assert_eq!(parsed.header().key_id(), kid(receiver));
        let dec = DecryptionKey::derive_from(SFRAME_SUITE, kid(receiver), &base_key).expect("key");
        let media = parsed.decrypt(&dec).expect("opens with the RFC's keys");
        assert_eq!(media.payload(), &frame[1..]);

        // Another epoch's keys are other keys: a member who only has the
        // next epoch's cannot open it (and says its sender is behind).
        let mut later = MediaKeys::new(1000);
        later
            .rekey(0, &exporter, epoch + 1, receiver, [(sender, 77)])
            .expect("keys");
        assert_eq!(
            later.open(0, MediaKind::Audio, 77, sealed.as_ref()),
            Err(FrameError::Behind)
        );
    }

    /// Every frame that seals opens; a frame shorter than its codec header
    /// (a "keyframe" of 6 bytes, an empty audio frame) is refused at sealing.
    #[test]
    fn what_seals_opens_and_short_frames_do_not_seal() {
        let mut k = MediaKeys::fixed_for_benchmarks(&[6; 16]).expect("keys");
        for (kind, frame) in [
            (MediaKind::Video, &[0xfc, 1, 2, 0xfe, 2, 3][..]),
            (MediaKind::Video, &[0x11, 1][..]),
            (MediaKind::Audio, &[][..]),
        ] {
            assert_eq!(k.seal(kind, frame), Err(FrameError::Invalid), "{frame:?}");
        }
        for (kind, frame) in [
            (MediaKind::Video, &[0xfc, 1, 2, 0xfe, 2, 3, 4, 5, 6, 7][..]),
            (MediaKind::Video, &[0x11, 1, 2][..]),
            (MediaKind::Audio, &[0xfc][..]),
        ] {
            let sealed = k.seal(kind, frame).expect("sealed");
            assert_eq!(k.open(0, kind, 0, &sealed).as_deref(), Ok(frame));
        }
    }
}
