//! Routing between participants: media packets from a publisher to every
//! receiver of its track, keyframe requests back to the publisher (throttled
//! per published track and per receiver), and opaque relays.

use std::time::Instant;

use aparte_proto::{ErrorCode, ParticipantId, ServerMsg, TrackSource};
use str0m::media::{KeyframeRequestKind, Mid};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite};

use crate::simulcast::{self, Admit, Layer};
use crate::{Output, RESEND_AGE, RESEND_BUFFER_VIDEO, RESEND_RATIO_CAP, Sfu, TapEvent};

impl Sfu {
    pub(crate) fn handle_relay(
        &mut self,
        from: ParticipantId,
        to: Option<ParticipantId>,
        payload: String,
    ) {
        let Some(room) = self.participants.get(&from).map(|p| &p.room) else {
            return;
        };
        let members = self
            .rooms
            .get(room)
            .map_or(&[][..], |r| r.members.as_slice());
        match to {
            Some(to) if to != from && members.contains(&to) => {
                self.out.push_back(Output::Signal {
                    to,
                    msg: ServerMsg::Relay { from, payload },
                });
            }
            Some(_) => self.refuse(from, ErrorCode::UnknownPeer, "no such peer in this room"),
            None => {
                for &to in members.iter().filter(|&&m| m != from) {
                    self.out.push_back(Output::Signal {
                        to,
                        msg: ServerMsg::Relay {
                            from,
                            payload: payload.clone(),
                        },
                    });
                }
            }
        }
    }

    /// `from` asks for keyframes of `peer`'s videos (its keys for them just
    /// became usable): passed on as RTCP keyframe requests from `from` would
    /// be, under the same per-receiver throttle. Tracks it does not receive
    /// (yet), and peers of other rooms, are ignored: the m-line's opening
    /// asks for a keyframe anyway.
    pub(crate) fn keyframe_wish(&mut self, now: Instant, from: ParticipantId, peer: ParticipantId) {
        let interval = self.config.receiver_keyframe_interval;
        let Some(p) = self.participants.get_mut(&from) else {
            return;
        };
        let wanted: Vec<(Mid, TrackSource, Layer)> = p
            .outgoing
            .iter()
            .filter(|t| t.key.0 == peer && !t.key.1.is_audio())
            .filter_map(|t| Some((t.open_mid()?, t.key.1, t.choice.target?)))
            .collect();
        let mut due = Vec::new();
        for (mid, source, layer) in wanted {
            if p.may_ask_keyframe(mid, now, interval) {
                due.push((source, layer));
            } else {
                self.stats.keyframe_requests_ignored += 1;
            }
        }
        for (source, layer) in due {
            self.request_keyframe(now, peer, source, layer, KeyframeRequestKind::Pli);
        }
    }

    /// Forwards a media packet of `from` to every other member of its room
    /// that receives that track; makes the track live on its first packet.
    ///
    /// The payload (shared, not copied) and marker go out unchanged on the
    /// receiver's stream for the track, with that stream's own SSRC and
    /// sequence numbers ([`forward::SeqMap`]). A video packet goes only to
    /// the receivers of its layer, with timestamp and VP8 picture ids made
    /// continuous across layer switches (`simulcast.rs`). Packets a publisher
    /// resends after a NACK are forwarded when they arrive.
    pub(crate) fn forward(&mut self, from: ParticipantId, mut pkt: RtpPacket) {
        let Some(p) = self.participants.get_mut(&from) else {
            return;
        };
        let ssrc = pkt.header.ssrc;
        let Some((mid, rid)) = p
            .rtc
            .direct_api()
            .stream_rx(&ssrc)
            .map(|s| (s.mid(), s.rid()))
        else {
            return;
        };
        let (Some(source), Some(layer)) = (p.source_of(mid), simulcast::layer_of(rid)) else {
            return;
        };
        self.stats.packets_in += 1;
        if let Some(tap) = &mut self.tap {
            tap(TapEvent::Packet {
                from,
                source,
                payload: &mut pkt.payload,
            });
        }
        let video = !source.is_audio();
        let head = if video {
            simulcast::vp8_head(&pkt.payload)
        } else {
            None
        };
        let mut in_order = true;
        if video {
            let layers = p.layers.entry(mid).or_default();
            layers.simulcast |= rid.is_some();
            in_order = layers.packet(
                layer,
                pkt.timestamp,
                pkt.payload.len(),
                *pkt.seq_no,
                head.as_ref(),
            );
        }
        // A stream starts, or changes layer, only at a keyframe that came in
        // order (see `PublishedLayers::packet`).
        let keyframe = in_order && head.is_some_and(|h| h.keyframe);
        let descriptor = simulcast::descriptor(&pkt.payload, head.as_ref());
        let first_packet = !p.live.contains(&source);
        if first_packet {
            if p.live.len() >= self.config.max_tracks_per_participant {
                if !p.over_limit.contains(&source) {
                    p.over_limit.push(source);
                    self.refuse(
                        from,
                        ErrorCode::TooManyTracks,
                        "this track is over the per-participant limit and is not forwarded",
                    );
                }
                return;
            }
            p.live.push(source);
        }
        let room = p.room.clone();
        let members = self
            .rooms
            .get(&room)
            .map_or(&[][..], |r| r.members.as_slice());
        let header = &pkt.header;
        // Header extensions that describe the media travel on; transport
        // ones (MID, RID, TWCC, send times) belong to each leg and str0m
        // sets them. No audio level: it is not negotiated (see
        // `header_extensions`).
        let ext_vals = ExtensionValues {
            video_orientation: header.ext_vals.video_orientation,
            ..ExtensionValues::default()
        };
        for &to in members.iter().filter(|&&m| m != from) {
            let Some(r) = self.participants.get_mut(&to) else {
                continue;
            };
            if first_packet {
                r.want((from, source));
                self.renegotiate.push(to);
                continue;
            }
            let Some(track) = r.open_track((from, source)) else {
                continue;
            };
            let Some(out_mid) = track.open_mid() else {
                continue;
            };
            let mut timestamp = header.timestamp;
            let mut patch = None;
            if video {
                // Video starts, and changes layer, at a keyframe's first
                // packet (see `simulcast.rs`); an audio packet is a whole frame.
                match track.choice.admit(layer, keyframe, header.marker) {
                    Admit::Drop => continue,
                    Admit::Switch => {
                        track
                            .continuity
                            .rebase(timestamp, pkt.timestamp, head.as_ref());
                        track.switch_asked = None;
                        self.stats.layer_switches += 1;
                    }
                    Admit::Forward => {}
                }
                let rewritten = track
                    .continuity
                    .rewrite(timestamp, pkt.timestamp, head.as_ref());
                timestamp = rewritten.timestamp;
                patch = simulcast::patch(descriptor.as_ref(), &rewritten);
            }
            let fresh = track.seq.is_fresh();
            let Some(seq) = track.seq.map(ssrc, *pkt.seq_no) else {
                continue;
            };
            let mut api = r.rtc.direct_api();
            let Some(tx) = api.stream_tx_by_mid(out_mid, None) else {
                continue;
            };
            if fresh && video {
                tx.set_rtx_cache(RESEND_BUFFER_VIDEO, RESEND_AGE, Some(RESEND_RATIO_CAP));
                // Forwarded as it comes, not held to the estimate by str0m's
                // pacer: the publisher's encoder already paces it, and what
                // reaches each receiver is decided by the layers chosen for
                // it (`adapt.rs`), which follow the estimate only when loss
                // confirms it. A pacer holding 1.2 Mbit/s of video to an
                // estimate read low on a busy machine stalled it for seconds.
                tx.set_unpaced(true);
            }
            let mut write = RtpWrite::new(
                header.payload_type,
                seq.into(),
                timestamp,
                pkt.timestamp,
                pkt.payload.clone(),
            )
            .marker(header.marker)
            .ext_vals(ext_vals.clone())
            .nackable(video);
            if let Some(patch) = patch {
                write = write.vp8_patch(patch);
            }
            tx.write_rtp(write);
            self.stats.packets_out += 1;
            self.dirty.push(to);
        }
    }

    /// Asks `publisher` for a keyframe of `layer` of its `source`, at most
    /// once per [`SfuConfig::keyframe_throttle`] per published layer; a
    /// request that comes sooner is held and sent when the throttle allows.
    pub(crate) fn request_keyframe(
        &mut self,
        now: Instant,
        publisher: ParticipantId,
        source: TrackSource,
        layer: Layer,
        kind: KeyframeRequestKind,
    ) {
        if source.is_audio() {
            return;
        }
        let throttle = self.config.keyframe_throttle;
        let Some(p) = self.participants.get_mut(&publisher) else {
            return;
        };
        let Some(mid) = p.mid_of(source) else {
            return;
        };
        let key = (mid, layer);
        if let Some(last) = p.last_keyframe_request.get(&key) {
            if now.saturating_duration_since(*last) < throttle {
                // Asked too recently: ask once more when the throttle allows,
                // so a receiver that came in meanwhile gets its keyframe
                // without waiting for a request of its own.
                p.keyframe_later.insert(key, kind);
                return;
            }
        }
        p.keyframe_later.remove(&key);
        let rid = p.layers.get(&mid).and_then(|l| l.rid(layer));
        let mut api = p.rtc.direct_api();
        let Some(rx) = api.stream_rx_by_mid(mid, rid) else {
            return;
        };
        rx.request_keyframe(kind);
        p.last_keyframe_request.insert(key, now);
        self.stats.keyframe_requests += 1;
        self.dirty.push(publisher);
    }
}
