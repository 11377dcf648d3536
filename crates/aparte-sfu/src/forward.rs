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
//! A receiver's video stream starts at the first packet of a keyframe (see
//! `simulcast.rs`): starting in the middle of a frame would leave the
//! receiver a frame without its first packets, which a jitter buffer holds
//! until it gives up on them, and a delta frame cannot be decoded without the
//! frames before it. The same rule makes a layer switch safe, and the same
//! map keeps sequence numbers continuous across it (a layer is another SSRC).

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
