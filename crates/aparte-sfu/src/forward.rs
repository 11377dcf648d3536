//! Packet forwarding state: how one publisher's RTP sequence numbers become
//! those of the stream a receiver gets.
//!
//! The SFU forwards RTP packets as they come (str0m's RTP mode): payload,
//! RTP timestamp and marker unchanged, under the receiver's own SSRC. Each
//! receiver's stream has its own sequence numbers, because SRTP keys its
//! replay window and rollover counter on them: a stream must start with a
//! rollover counter of 0 however long the publisher has been sending, and
//! must keep counting when the publisher's stream is replaced (a new SSRC on
//! the same m-line after the publisher renegotiates).
//!
//! A receiver's video stream starts on a frame boundary: the first packet it
//! gets is the one right after a packet with the marker bit (the last packet
//! of a frame). Starting in the middle of a frame would leave the receiver a
//! frame without its first packets, which a jitter buffer holds until it
//! gives up on the missing ones (str0m waits up to 2 s).

use str0m::rtp::Ssrc;

/// Maps a publisher's extended sequence numbers to one receiver's stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SeqMap {
    /// The publisher's stream the map follows, its first forwarded sequence
    /// number, and the receiver's sequence number for it.
    base: Option<(Ssrc, u64, u64)>,
    /// One past the highest sequence number given out.
    next: u64,
}

impl SeqMap {
    /// The receiver's sequence number for packet `seq` of the publisher's
    /// stream `ssrc`, or `None` for a packet older than the first one
    /// forwarded from that stream (the receiver never knew it).
    ///
    /// The first packet keeps its 16-bit sequence number (the publisher chose
    /// it at random) with a rollover counter of 0. A packet of another stream
    /// of the publisher starts a new base right after the last number given
    /// out, so the receiver sees one continuous stream.
    pub fn map(&mut self, ssrc: Ssrc, seq: u64) -> Option<u64> {
        let (first_in, first_out) = match self.base {
            Some((s, first_in, first_out)) if s == ssrc => (first_in, first_out),
            base => {
                let first_out = if base.is_none() {
                    seq & 0xffff
                } else {
                    self.next
                };
                self.base = Some((ssrc, seq, first_out));
                (seq, first_out)
            }
        };
        let out = first_out + seq.checked_sub(first_in)?;
        self.next = self.next.max(out + 1);
        Some(out)
    }

    /// Whether no packet went through yet.
    pub fn is_fresh(&self) -> bool {
        self.base.is_none()
    }
}

/// Finds where frames start in one published video stream, from the RTP
/// marker bit alone (the payload is end-to-end encrypted and never read).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct FrameStarts {
    /// Extended sequence number of the newest packet that ended a frame.
    last_end: Option<u64>,
}

impl FrameStarts {
    /// Notes packet `seq` (with its marker bit) and says whether it is the
    /// first packet of a frame: the packet right before it ended one.
    pub fn packet(&mut self, seq: u64, marker: bool) -> bool {
        let starts = self.last_end.is_some_and(|end| end + 1 == seq);
        if marker && self.last_end.is_none_or(|end| seq > end) {
            self.last_end = Some(seq);
        }
        starts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_packet_keeps_its_number_with_no_rollover() {
        let mut m = SeqMap::default();
        let a = Ssrc::from(7);
        // The publisher has wrapped three times before this receiver came.
        let first = 3 * 65536 + 40_000;
        assert_eq!(m.map(a, first), Some(40_000));
        assert_eq!(m.map(a, first + 1), Some(40_001));
        // Gaps stay gaps (the receiver NACKs them; a resend fills them).
        assert_eq!(m.map(a, first + 5), Some(40_005));
        assert_eq!(m.map(a, first + 3), Some(40_003));
        // Counting goes on past the 16-bit wrap.
        assert_eq!(m.map(a, first + 30_000), Some(70_000));
    }

    #[test]
    fn packets_older_than_the_first_are_dropped() {
        let mut m = SeqMap::default();
        let a = Ssrc::from(7);
        assert_eq!(m.map(a, 1000), Some(1000));
        assert_eq!(m.map(a, 999), None);
        assert_eq!(m.map(a, 1001), Some(1001));
    }

    #[test]
    fn frames_start_after_a_marker() {
        let mut f = FrameStarts::default();
        // Joined mid-frame: nothing known yet.
        assert!(!f.packet(10, false));
        assert!(!f.packet(11, true));
        assert!(f.packet(12, false));
        assert!(!f.packet(13, false));
        assert!(!f.packet(14, true));
        // A late resend of an older frame's end changes nothing.
        assert!(!f.packet(9, true));
        assert!(f.packet(15, true));
        assert!(f.packet(16, false));
        // The packet after a marker was lost: wait for the next frame.
        assert!(!f.packet(18, true));
        assert!(f.packet(19, false));
    }

    #[test]
    fn a_new_publisher_stream_continues_the_receivers_numbers() {
        let mut m = SeqMap::default();
        let (a, b) = (Ssrc::from(7), Ssrc::from(8));
        assert!(m.is_fresh());
        assert_eq!(m.map(a, 500), Some(500));
        assert_eq!(m.map(a, 510), Some(510));
        assert!(!m.is_fresh());
        // The publisher renegotiated: another SSRC, other numbers.
        assert_eq!(m.map(b, 60_000), Some(511));
        assert_eq!(m.map(b, 60_001), Some(512));
        assert_eq!(m.map(b, 59_999), None);
    }
}
