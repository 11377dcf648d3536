//! The synthetic frames bots send: who sent them, in which order, when, and a
//! checksum, so a receiver can prove each frame arrived intact, from the right
//! sender, and in order.
//!
//! Layout (big endian):
//!
//! ```text
//! 0     1       10      14             22       23    27             35     39       55        len-4  len
//! | tag | codec | magic | publisher id | source | seq | send time µs | len  | marker | filler … | fnv1a |
//! ```
//!
//! The first ten bytes stand where a VP8 payload header sits (bit 0 of the first
//! byte clear marks a keyframe, which the bots' own depacketizers read; the SFU
//! reads nothing of the payload). End-to-end
//! encryption leaves up to those ten bytes in clear, so nothing a test looks
//! for is there: [`MARKER`], the plaintext a server tap must never see, follows.

use aparte_proto::{ParticipantId, TrackSource};

const MAGIC: &[u8; 4] = b"APBT";
/// Bytes every frame carries in its encrypted part, for taps to look for.
pub const MARKER: &[u8; 16] = b"aparte-plaintext";
/// Bytes of the codec-like prefix.
const CODEC_LEN: usize = 10;
/// Bytes before the filler.
pub const HEADER_LEN: usize = CODEC_LEN + 4 + 8 + 1 + 4 + 8 + 4 + 16;
/// Smallest frame: header and checksum.
pub const MIN_LEN: usize = HEADER_LEN + 4;

/// What a frame says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Whether the frame is marked as a keyframe.
    pub keyframe: bool,
    /// The publisher that made it.
    pub publisher: ParticipantId,
    /// Its source.
    pub source: TrackSource,
    /// Its sequence number in its stream.
    pub seq: u32,
    /// When it was made, in µs since the bots' shared epoch.
    pub sent_us: u64,
    /// A keyframe's width and height, written where a VP8 keyframe's
    /// payload header has them (in clear, as the SFU reads them); 0 × 0 on
    /// other frames.
    pub size: (u16, u16),
    /// Which layer of a simulcast source it was sent on (0 otherwise), in
    /// the high four bits of the source byte.
    pub layer: u8,
}

/// Why a received frame is not one a bot made intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Shorter than a header, or its length field disagrees with its size.
    #[error("frame has the wrong length")]
    Length,
    /// The magic bytes are missing.
    #[error("frame is not a bot frame")]
    Magic,
    /// The checksum does not match.
    #[error("frame checksum mismatch")]
    Checksum,
    /// The source byte is not a known source.
    #[error("frame names an unknown source")]
    Source,
}

fn source_byte(s: TrackSource) -> u8 {
    match s {
        TrackSource::Mic => 0,
        TrackSource::Camera => 1,
        TrackSource::Screen => 2,
        TrackSource::ScreenAudio => 3,
    }
}

/// FNV-1a, 32 bits: cheap, and enough to notice a changed or truncated frame.
fn fnv1a(data: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for &b in data {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Writes a frame of `len` bytes (at least [`MIN_LEN`]) into `out`.
pub fn encode(info: &FrameInfo, len: usize, out: &mut Vec<u8>) {
    let len = len.max(MIN_LEN);
    out.clear();
    if info.keyframe {
        // A VP8 keyframe's payload header: frame tag, start code, size.
        out.extend_from_slice(&[0x00, 0x00, 0x00, 0x9d, 0x01, 0x2a]);
        out.extend_from_slice(&info.size.0.to_le_bytes());
        out.extend_from_slice(&info.size.1.to_le_bytes());
    } else {
        out.push(0x01);
        out.extend_from_slice(&[0; CODEC_LEN - 1]);
    }
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&info.publisher.0.to_be_bytes());
    out.push(source_byte(info.source) | info.layer << 4);
    out.extend_from_slice(&info.seq.to_be_bytes());
    out.extend_from_slice(&info.sent_us.to_be_bytes());
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(MARKER);
    let filler = len - MIN_LEN;
    out.extend((0..filler).map(|i| (i as u32).wrapping_add(info.seq) as u8));
    let sum = fnv1a(out);
    out.extend_from_slice(&sum.to_be_bytes());
}

/// Reads and checks a frame.
pub fn decode(data: &[u8]) -> Result<FrameInfo, FrameError> {
    if data.len() < MIN_LEN {
        return Err(FrameError::Length);
    }
    const AT: usize = CODEC_LEN;
    if &data[AT..AT + 4] != MAGIC {
        return Err(FrameError::Magic);
    }
    let be32 = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    let be64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&data[at..at + 8]);
        u64::from_be_bytes(b)
    };
    if be32(AT + 25) as usize != data.len() {
        return Err(FrameError::Length);
    }
    if &data[AT + 29..AT + 45] != MARKER {
        return Err(FrameError::Magic);
    }
    let body = data.len() - 4;
    if fnv1a(&data[..body]) != be32(body) {
        return Err(FrameError::Checksum);
    }
    let layer = data[AT + 12] >> 4;
    let source = match data[AT + 12] & 0x0f {
        0 => TrackSource::Mic,
        1 => TrackSource::Camera,
        2 => TrackSource::Screen,
        3 => TrackSource::ScreenAudio,
        _ => return Err(FrameError::Source),
    };
    let keyframe = data[0] & 1 == 0;
    let le16 = |at: usize| u16::from_le_bytes([data[at], data[at + 1]]) & 0x3fff;
    let size = if keyframe && data[3..6] == [0x9d, 0x01, 0x2a] {
        (le16(6), le16(8))
    } else {
        (0, 0)
    };
    Ok(FrameInfo {
        layer,
        size,
        keyframe,
        publisher: ParticipantId(be64(AT + 4)),
        source,
        seq: be32(AT + 13),
        sent_us: be64(AT + 17),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let info = FrameInfo {
            keyframe: true,
            publisher: ParticipantId(42),
            source: TrackSource::Camera,
            seq: 7,
            sent_us: 123_456,
            size: (640, 360),
            layer: 2,
        };
        let mut buf = Vec::new();
        encode(&info, 1000, &mut buf);
        assert_eq!(buf.len(), 1000);
        assert_eq!(decode(&buf), Ok(info));
        let mut bad = buf.clone();
        bad[500] ^= 1;
        assert_eq!(decode(&bad), Err(FrameError::Checksum));
        assert_eq!(decode(&buf[..999]), Err(FrameError::Length));
        assert_eq!(decode(&buf[..10]), Err(FrameError::Length));
    }
}
