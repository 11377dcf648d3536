//! Deterministic multi-party simulations of the SFU core: no sockets, no
//! wall clock, real str0m peers on both sides.

#![allow(clippy::unwrap_used)]

mod sim;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aparte_bot::BotConfig;
use aparte_proto::{ClientMsg, ErrorCode, ServerMsg, TrackSource};
use sim::{Sim, room};

const SECOND: Duration = Duration::from_secs(1);

/// Frames `bot` got of `peer`'s source so far.
fn frames(s: &Sim, bot: usize, peer: usize, source: TrackSource) -> u64 {
    s.report(bot)
        .stream(s.id(peer), source)
        .map_or(0, |st| st.frames)
}

#[test]
fn two_participants_see_and_hear_each_other() {
    let mut s = Sim::new();
    let r = room("room-one");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(3 * SECOND);
    for (me, other) in [(a, b), (b, a)] {
        let rep = s.report(me);
        assert!(rep.connected);
        assert!(rep.all_intact(), "{rep:?}");
        let video = rep.stream(s.id(other), TrackSource::Camera).unwrap();
        let audio = rep.stream(s.id(other), TrackSource::Mic).unwrap();
        // 3 s at 30 fps and 50 audio frames/s, less connection setup.
        assert!(video.frames > 60, "video frames {}", video.frames);
        assert!(audio.frames > 100, "audio frames {}", audio.frames);
        assert_eq!(video.lost, 0);
        assert_eq!(audio.lost, 0);
        assert!(video.keyframes >= 1);
    }
    assert_eq!(s.sfu.room_count(), 1);
}

#[test]
fn forwarded_packets_leave_as_they_arrive() {
    // With its bandwidth estimator on, str0m's pacer lets one packet out per
    // timeout, unpaced streams included. The SFU serves those turns in the
    // same drain: a frame's packets leave for the receiver in the step they
    // reach the SFU, not one per turn of the media loop.
    let mut s = Sim::new();
    let r = room("as-they-arrive");
    // 1.5 Mbit/s at 30 fps: frames of several packets.
    let a = s.join_with(&r, BotConfig::new(1_500_000, s.epoch, sim::link()));
    let b = s.join(&r);
    s.run(3 * SECOND);
    s.trace = Some(Vec::new());
    s.run(2 * SECOND);
    let trace = s.trace.take().unwrap();
    let from_publisher = || trace.iter().filter(|t| !t.to_bot && t.bot == a && t.rtp);
    let arrived: HashSet<Instant> = from_publisher().map(|t| t.at).collect();
    // The payload types the publisher's media came on: not the resend type
    // str0m pads and probes with on its own timers.
    let media: HashSet<u8> = from_publisher().map(|t| t.pt).collect();
    let sent: Vec<_> = trace
        .iter()
        .filter(|t| t.to_bot && t.bot == b && t.rtp && media.contains(&t.pt))
        .collect();
    let later = sent.iter().filter(|t| !arrived.contains(&t.at)).count();
    // 2 s of 30 fps video and 50 audio frames/s.
    assert!(
        sent.len() > 400,
        "{} RTP packets to the receiver",
        sent.len()
    );
    // Some leave a step later: another of str0m's timers (its estimator's)
    // came before the pacer's turn, and the SFU leaves those to the loop.
    // Without the turns served in the drain, about half are late.
    assert!(
        later * 10 <= sent.len(),
        "{later} of {} RTP packets to the receiver left after the step their original arrived in",
        sent.len()
    );
}

#[test]
fn rooms_are_isolated() {
    let mut s = Sim::new();
    let (r1, r2) = (room("room-one"), room("room-two"));
    let one: Vec<usize> = (0..3).map(|_| s.join(&r1)).collect();
    let two: Vec<usize> = (0..2).map(|_| s.join(&r2)).collect();
    s.run(3 * SECOND);
    for group in [&one, &two] {
        for &me in group.iter() {
            let rep = s.report(me);
            assert!(rep.all_intact(), "{rep:?}");
            let mut from: Vec<_> = rep.streams.iter().map(|st| st.peer).collect();
            from.dedup();
            let mut expected: Vec<_> = group
                .iter()
                .filter(|&&o| o != me)
                .map(|&o| s.id(o))
                .collect();
            expected.sort();
            assert_eq!(from, expected, "bot {me} received exactly its room");
            for st in &rep.streams {
                assert!(st.frames > 30, "{st:?}");
            }
        }
    }
    assert_eq!(s.sfu.room_count(), 2);
}

#[test]
fn late_joiner_renegotiates_with_everyone() {
    let mut s = Sim::new();
    let r = room("room-late");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(2 * SECOND);
    let offers_before = s.bots[a]
        .inbox
        .iter()
        .filter(|m| matches!(m, ServerMsg::Offer { .. }))
        .count();
    let c = s.join(&r);
    s.run(2 * SECOND);
    // The late joiner receives both earlier publishers, and they receive it.
    for (me, peer) in [(c, a), (c, b), (a, c), (b, c)] {
        assert!(
            frames(&s, me, peer, TrackSource::Camera) > 20,
            "{me} from {peer}"
        );
        assert!(
            frames(&s, me, peer, TrackSource::Mic) > 30,
            "{me} from {peer}"
        );
    }
    let offers_after = s.bots[a]
        .inbox
        .iter()
        .filter(|m| matches!(m, ServerMsg::Offer { .. }))
        .count();
    assert!(
        offers_after > offers_before,
        "an existing member got a new offer"
    );
    for i in [a, b, c] {
        assert!(s.report(i).all_intact());
    }
}

#[test]
fn leaving_ends_tracks_and_frees_the_room() {
    let mut s = Sim::new();
    let r = room("room-leave");
    let a = s.join(&r);
    let b = s.join(&r);
    let c = s.join(&r);
    s.run(2 * SECOND);
    s.send(c, ClientMsg::Leave);
    assert_eq!(s.bots[c].closed, Some(None));
    let left = s.id(c);
    for i in [a, b] {
        assert!(
            s.bots[i]
                .inbox
                .contains(&ServerMsg::PeerLeft { peer: left })
        );
    }
    // The next offer to a and b no longer lists c's tracks.
    s.run(SECOND / 2);
    for i in [a, b] {
        let last_offer = s.bots[i]
            .inbox
            .iter()
            .rev()
            .find_map(|m| match m {
                ServerMsg::Offer { tracks, .. } => Some(tracks.clone()),
                _ => None,
            })
            .unwrap();
        assert!(last_offer.iter().all(|t| t.peer != left));
    }
    let got = frames(&s, a, c, TrackSource::Camera);
    let sent_by_c = s.report(c).sent_frames;
    s.run(SECOND);
    assert_eq!(
        frames(&s, a, c, TrackSource::Camera),
        got,
        "no frame of c after it left"
    );
    assert_eq!(s.report(c).sent_frames, sent_by_c);
    // a and b still talk.
    let ab = frames(&s, a, b, TrackSource::Camera);
    s.run(SECOND);
    assert!(frames(&s, a, b, TrackSource::Camera) > ab + 20);

    s.send(a, ClientMsg::Leave);
    s.disconnect(b);
    assert_eq!(s.sfu.room_count(), 0);
    assert_eq!(s.sfu.participant_count(), 0);
}

/// Video frames of `peer`'s camera `bot` got: (intact, lost).
fn video(s: &Sim, bot: usize, peer: usize) -> (u64, u64) {
    let rep = s.report(bot);
    let st = rep.stream(s.id(peer), TrackSource::Camera).unwrap();
    (st.frames, st.lost)
}

#[test]
fn losses_on_either_leg_are_repaired_and_stay_on_their_leg() {
    // A publishes over a lossy uplink, B receives over a lossy downlink,
    // C's link is clean. Each leg repairs its own losses (NACK and resend
    // between the bot and the SFU), so every camera frame arrives.
    let mut s = Sim::new();
    let r = room("room-loss");
    let a = s.join(&r);
    let b = s.join(&r);
    let c = s.join(&r);
    s.run(3 * SECOND);
    let start = [video(&s, b, a), video(&s, c, a), video(&s, a, b)];
    s.bots[a].lose_every = Some(25);
    s.bots[b].lose_every = Some(25);
    s.run(5 * SECOND);
    let end = [video(&s, b, a), video(&s, c, a), video(&s, a, b)];
    for ((f0, l0), (f1, l1)) in start.into_iter().zip(end) {
        // 5 s at 30 fps.
        assert!(f1 - f0 > 130, "frames {f0} -> {f1}");
        assert_eq!(l1, l0, "no frame lost for good");
    }
    for bot in [a, b, c] {
        let rep = s.report(bot);
        assert!(rep.all_intact(), "{rep:?}");
    }
}

#[test]
fn keyframe_requests_reach_the_publisher_throttled() {
    let mut s = Sim::new();
    let r = room("room-kf");
    let a = s.join(&r);
    let b = s.join(&r);
    let c = s.join(&r);
    s.run(3 * SECOND);
    let before = s.report(a).keyframe_requests_received;
    let kf_before = s
        .report(b)
        .stream(s.id(a), TrackSource::Camera)
        .unwrap()
        .keyframes;
    // Five requests of one receiver within 50 ms: the SFU passes one on and
    // ignores the rest (one receiver, one request per interval).
    let a_id = s.id(a);
    for _ in 0..5 {
        assert!(s.bots[b].core.request_keyframe(a_id, TrackSource::Camera));
        s.pump();
        s.run(Duration::from_millis(10));
    }
    s.run(Duration::from_millis(200));
    let after = s.report(a).keyframe_requests_received;
    assert_eq!(after - before, 1, "one request relayed, the rest dropped");
    let kf_after = s
        .report(b)
        .stream(a_id, TrackSource::Camera)
        .unwrap()
        .keyframes;
    assert!(
        kf_after > kf_before,
        "the publisher answered with a keyframe"
    );
    s.run(SECOND);
    assert_eq!(
        s.report(a).keyframe_requests_received,
        after,
        "nothing held back for a receiver that asked again too soon"
    );
    // Past the receiver's interval its request passes again; another
    // receiver asking within the publisher's throttle window is held back,
    // and one request goes out when the window ends.
    s.run(SECOND);
    assert!(s.bots[b].core.request_keyframe(a_id, TrackSource::Camera));
    s.pump();
    assert!(s.bots[c].core.request_keyframe(a_id, TrackSource::Camera));
    s.pump();
    s.run(Duration::from_millis(100));
    let after = s.report(a).keyframe_requests_received;
    assert_eq!(after - before, 2, "b's second request passed");
    s.run(SECOND);
    assert_eq!(
        s.report(a).keyframe_requests_received - after,
        1,
        "one held-back request followed"
    );
}

#[test]
fn a_receiver_asking_for_keyframes_nonstop_does_not_set_the_publishers_rate() {
    let mut s = Sim::new();
    let r = room("room-kf-flood");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(3 * SECOND);
    let a_id = s.id(a);
    let before = s.report(a).keyframe_requests_received;
    // A request every 50 ms for 10 s: 200 requests.
    for _ in 0..200 {
        assert!(s.bots[b].core.request_keyframe(a_id, TrackSource::Camera));
        s.pump();
        s.run(Duration::from_millis(50));
    }
    let relayed = s.report(a).keyframe_requests_received - before;
    // One per receiver interval (2 s), not one per publisher throttle (500 ms).
    assert!(
        (4..=6).contains(&relayed),
        "{relayed} requests reached the publisher in 10 s"
    );
    assert!(s.sfu.stats().keyframe_requests_ignored >= 190);
}

#[test]
fn silent_participant_is_removed_after_consent_timeout() {
    let mut s = Sim::new();
    let r = room("room-timeout");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(2 * SECOND);
    // b's browser vanishes from the network without closing signaling.
    s.bots[b].online = false;
    s.run(10 * SECOND);
    assert!(
        s.bots[b].closed.is_none(),
        "not removed before the consent timeout"
    );
    s.run(10 * SECOND);
    assert_eq!(s.bots[b].closed, Some(Some(ErrorCode::ConnectionLost)));
    let gone = s.id(b);
    assert!(
        s.bots[a]
            .inbox
            .contains(&ServerMsg::PeerLeft { peer: gone })
    );
    assert_eq!(s.sfu.members(&r), &[s.id(a)]);
}

#[test]
fn participant_that_never_connects_is_removed() {
    let mut s = Sim::new();
    let r = room("room-never");
    let a = s.join(&r);
    s.bots[a].online = false;
    s.run(aparte_sfu::CONNECT_TIMEOUT + SECOND);
    assert_eq!(s.bots[a].closed, Some(Some(ErrorCode::ConnectionLost)));
    assert_eq!(s.sfu.room_count(), 0);
}

#[test]
fn bad_answers_get_typed_errors_and_hurt_nobody() {
    let mut s = Sim::new();
    let r = room("room-bad");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(2 * SECOND);
    s.send(
        b,
        ClientMsg::Answer {
            sdp: "garbage".into(),
        },
    );
    s.send(
        b,
        ClientMsg::Join {
            room: r.clone(),
            key: None,
            seat: None,
            passcode: None,
        },
    );
    s.send(
        b,
        ClientMsg::Relay {
            to: Some(aparte_proto::ParticipantId(999_999)),
            payload: "x".into(),
        },
    );
    let errors: Vec<ErrorCode> = s.bots[b]
        .inbox
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Error { code, .. } => Some(*code),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        [
            ErrorCode::NoPendingOffer,
            ErrorCode::AlreadyJoined,
            ErrorCode::UnknownPeer
        ]
    );
    let before = frames(&s, a, b, TrackSource::Camera);
    s.run(SECOND);
    assert!(frames(&s, a, b, TrackSource::Camera) > before + 20);
    assert!(s.bots[b].closed.is_none());
}

/// An answer while an offer waits: text that is not SDP is refused and the
/// offer still waits; SDP that does not answer it ends that participant's
/// session (the two sides may disagree about it) and nobody else's.
#[test]
fn an_answer_that_does_not_answer_the_offer_removes_only_its_sender() {
    let mut s = Sim::new();
    let r = room("room-bad-answer");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(2 * SECOND);
    // b stops answering; c's tracks then give it an offer that waits.
    s.bots[b].answering = false;
    let c = s.join(&r);
    s.run(2 * SECOND);
    let offers = s.bots[b]
        .inbox
        .iter()
        .filter(|m| matches!(m, ServerMsg::Offer { .. }))
        .count();
    assert!(
        offers >= 2,
        "an offer for c's tracks waits ({offers} offers)"
    );
    let errors = |s: &Sim| -> Vec<ErrorCode> {
        s.bots[b]
            .inbox
            .iter()
            .filter_map(|m| match m {
                ServerMsg::Error { code, .. } => Some(*code),
                _ => None,
            })
            .collect()
    };
    s.send(
        b,
        ClientMsg::Answer {
            sdp: "garbage".into(),
        },
    );
    assert_eq!(errors(&s), [ErrorCode::InvalidSdp]);
    assert!(s.bots[b].closed.is_none(), "the offer still waits");
    // Well-formed SDP that answers nothing of the offer.
    let stranger = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";
    s.send(
        b,
        ClientMsg::Answer {
            sdp: stranger.into(),
        },
    );
    assert_eq!(s.bots[b].closed, Some(Some(ErrorCode::InvalidSdp)));
    let b_id = s.id(b);
    assert!(!s.sfu.members(&r).contains(&b_id));
    // a and c go on.
    let before = frames(&s, a, c, TrackSource::Camera);
    s.run(SECOND);
    assert!(frames(&s, a, c, TrackSource::Camera) > before + 20);
}

#[test]
fn relay_reaches_the_room_only() {
    let mut s = Sim::new();
    let (r1, r2) = (room("room-one"), room("room-two"));
    let a = s.join(&r1);
    let b = s.join(&r1);
    let c = s.join(&r2);
    s.send(
        a,
        ClientMsg::Relay {
            to: None,
            payload: "hello".into(),
        },
    );
    let relayed = |s: &Sim, i: usize| {
        s.bots[i]
            .inbox
            .iter()
            .filter(|m| matches!(m, ServerMsg::Relay { .. }))
            .count()
    };
    assert_eq!(relayed(&s, b), 1);
    assert_eq!(relayed(&s, a), 0);
    assert_eq!(relayed(&s, c), 0);
    // A direct relay to someone in another room is refused.
    let c_id = s.id(c);
    s.send(
        a,
        ClientMsg::Relay {
            to: Some(c_id),
            payload: "x".into(),
        },
    );
    assert_eq!(relayed(&s, c), 0);
}

/// The audio level header extension (RFC 6464) would tell the server who
/// speaks when, in clear: it is never offered, so it is never negotiated,
/// and the media still flows with the transport extensions.
#[test]
fn no_audio_level_is_negotiated() {
    let mut s = Sim::new();
    let r = room("room-no-level");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(2 * SECOND);
    let offers: Vec<&String> = s.bots[b]
        .inbox
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Offer { sdp, .. } => Some(sdp),
            _ => None,
        })
        .collect();
    assert!(offers.len() >= 2, "the first offer and one with a's tracks");
    for sdp in offers {
        assert!(sdp.contains("a=extmap:"), "extensions are offered");
        assert!(sdp.contains("transport-wide-cc"), "{sdp}");
        assert!(!sdp.contains("ssrc-audio-level"), "{sdp}");
    }
    assert!(frames(&s, b, a, TrackSource::Mic) > 40, "audio flows");
}

/// A STUN binding request, as a browser sends from a new address: USERNAME
/// `server_ufrag:client`, then a bogus MESSAGE-INTEGRITY (only a holder of
/// the ICE password could make a true one).
fn binding_request(ufrag: &str) -> Vec<u8> {
    let user = format!("{ufrag}:abcd");
    let mut attrs = Vec::new();
    attrs.extend(0x0006u16.to_be_bytes());
    attrs.extend((user.len() as u16).to_be_bytes());
    attrs.extend(user.as_bytes());
    attrs.resize(attrs.len().div_ceil(4) * 4, 0);
    attrs.extend(0x0008u16.to_be_bytes());
    attrs.extend(20u16.to_be_bytes());
    attrs.extend([0x5a; 20]);
    let mut m = vec![0x00, 0x01];
    m.extend((attrs.len() as u16).to_be_bytes());
    m.extend([0x21, 0x12, 0xa4, 0x42]);
    m.extend([9; 12]);
    m.extend(attrs);
    m
}

/// Datagrams from addresses the SFU does not know are routed by the ufrag a
/// binding request names, never by asking every participant: RTP-looking
/// noise, requests naming no participant, and requests naming a participant's
/// ufrag without its password are all dropped and counted, from thousands of
/// addresses, while the meeting goes on. (That the lookup finds the right
/// participant, every other simulation shows: each connects through it.)
#[test]
fn datagrams_from_unknown_addresses_are_routed_by_ufrag_or_dropped() {
    let mut s = Sim::new();
    let r = room("spray-room");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(2 * SECOND);
    let ufrag = s.bots[a]
        .inbox
        .iter()
        .find_map(|m| match m {
            ServerMsg::Offer { sdp, .. } => sdp
                .lines()
                .find_map(|l| l.strip_prefix("a=ice-ufrag:"))
                .map(str::to_owned),
            _ => None,
        })
        .expect("A's offer has the server's ufrag");
    let server = SocketAddr::from(([10, 0, 0, 1], 5000));
    let before = s.sfu.stats().datagrams_unmatched;
    let frames_before = frames(&s, b, a, TrackSource::Mic);
    let mut sent = 0;
    for i in 0..3000u32 {
        let from = SocketAddr::from(([172, 16, (i >> 8) as u8, i as u8], 40000 + (i % 7) as u16));
        let data = match i % 3 {
            0 => vec![0x80; 60],
            1 => binding_request("nobody-has-this"),
            _ => binding_request(&ufrag),
        };
        s.sfu.handle_datagram(s.now, from, server, &data);
        sent += 1;
    }
    s.pump();
    // The first two kinds match no ufrag; the third is checked by A's `Rtc`
    // alone (one HMAC, not one per participant), whose ICE agent refuses its
    // integrity. None gets in.
    assert_eq!(s.sfu.stats().datagrams_unmatched - before, sent);
    s.run(SECOND);
    assert!(frames(&s, b, a, TrackSource::Mic) > frames_before + 30);
    assert!(s.report(a).all_intact() && s.report(b).all_intact());
}

/// `keyframe` (sent when a member's keys start to open a peer's frames) is
/// an RTCP keyframe request by signaling: it reaches the publisher under the
/// receiver's throttle, and does nothing for a peer of another room or one
/// that does not exist.
#[test]
fn a_keyframe_message_reaches_the_publisher_under_the_receivers_throttle() {
    let mut s = Sim::new();
    let r = room("room-kf-msg");
    let other = room("room-kf-other");
    let a = s.join(&r);
    let b = s.join(&r);
    let c = s.join(&other);
    s.run(3 * SECOND);
    let a_id = s.id(a);
    let requests = |s: &Sim| s.report(a).keyframe_requests_received;
    let keyframes = |s: &Sim| frames_of(s, b, a, TrackSource::Camera).1;
    let before = requests(&s);
    let kf_before = keyframes(&s);
    for _ in 0..3 {
        s.send(b, ClientMsg::Keyframe { peer: a_id });
        s.run(Duration::from_millis(10));
    }
    s.run(Duration::from_millis(200));
    assert_eq!(
        requests(&s) - before,
        1,
        "one passed, two within the interval did not"
    );
    assert!(keyframes(&s) > kf_before, "B got a keyframe of A's camera");
    s.run(3 * SECOND);
    let before = requests(&s);
    s.send(c, ClientMsg::Keyframe { peer: a_id });
    s.send(
        b,
        ClientMsg::Keyframe {
            peer: aparte_proto::ParticipantId(12345),
        },
    );
    s.run(Duration::from_millis(300));
    assert_eq!(requests(&s), before, "nothing for another room or nobody");
    assert!(s.report(b).all_intact());
}

/// Frames and keyframes `bot` got of `peer`'s `source`.
fn frames_of(s: &Sim, bot: usize, peer: usize, source: TrackSource) -> (u64, u64) {
    s.report(bot)
        .stream(s.id(peer), source)
        .map_or((0, 0), |st| (st.frames, st.keyframes))
}
