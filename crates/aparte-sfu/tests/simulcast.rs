//! Simulcast in the deterministic simulation: real str0m bots publish their
//! camera in three layers (320, 640 and 1280 wide, announced in each
//! keyframe's clear VP8 header) and tell the SFU how they show each tile;
//! the SFU picks each receiver's layer, switches at keyframes only, and
//! stops the layers nobody receives.

#![allow(clippy::unwrap_used)]

mod sim;

use std::time::Duration;

use aparte_bot::StreamReport;
use aparte_proto::{ClientMsg, ParticipantId, TileView, TrackSource};
use sim::{Sim, room};

const SECOND: Duration = Duration::from_secs(1);

fn camera(s: &Sim, bot: usize, peer: usize) -> StreamReport {
    s.report(bot)
        .stream(s.id(peer), TrackSource::Camera)
        .cloned()
        .unwrap()
}

fn view(peer: ParticipantId, width: u16) -> ClientMsg {
    ClientMsg::View {
        tiles: vec![TileView {
            peer,
            source: TrackSource::Camera,
            width,
            height: width / 16 * 9,
        }],
        speaker: None,
    }
}

/// A bot that publishes nothing.
fn quiet(s: &Sim) -> aparte_bot::BotConfig {
    let mut c = aparte_bot::BotConfig::new(0, s.epoch, sim::link());
    c.audio = false;
    c
}

/// A room where `a` publishes and `b`, `c` only receive.
fn meeting(name: &str) -> (Sim, usize, usize, usize) {
    let mut s = Sim::new();
    // A real link's delay: str0m's bandwidth estimator needs one.
    s.delay = Duration::from_millis(20);
    let r = room(name);
    let a = s.join(&r);
    let b = s.join_with(&r, quiet(&s));
    let c = s.join_with(&r, quiet(&s));
    (s, a, b, c)
}

/// Every frame of the stream in order, none missing, RTP sequence numbers
/// and timestamps continuous.
fn assert_continuous(st: &StreamReport) {
    assert_eq!(st.out_of_order, 0, "{st:?}");
    assert_eq!(
        st.switches_off_keyframe, 0,
        "a layer began off a keyframe: {st:?}"
    );
    assert_eq!(st.lost, 0, "frames missing: {st:?}");
    assert_eq!(st.discontinuities, 0, "a gap in sequence numbers: {st:?}");
    assert_eq!(st.time_backwards, 0, "timestamps went back: {st:?}");
    assert_eq!(st.corrupt + st.undecryptable, 0, "{st:?}");
}

#[test]
fn each_receiver_gets_the_layer_its_tile_needs_and_switches_at_keyframes() {
    let (mut s, a, b, c) = meeting("room-simulcast");
    s.run(3 * SECOND);
    let a_id = s.id(a);
    // Without a view, a receiver gets the best layer its estimate allows.
    assert_eq!(camera(&s, b, a).width, 1280);
    assert_eq!(camera(&s, c, a).width, 1280);
    // C shows A in a 300 px tile: the 320 px layer is enough.
    s.send(c, view(a_id, 300));
    s.run(2 * SECOND);
    let small = camera(&s, c, a);
    assert_eq!(small.width, 320, "{:?}", small.widths);
    assert_eq!(camera(&s, b, a).width, 1280, "B's layer does not move");
    // A 600 px tile: the middle layer.
    s.send(c, view(a_id, 600));
    s.run(2 * SECOND);
    assert_eq!(camera(&s, c, a).width, 640);
    // Full screen again.
    s.send(c, view(a_id, 1920));
    s.run(2 * SECOND);
    let st = camera(&s, c, a);
    assert_eq!(st.width, 1280);
    // Up, down, up: each change began with a keyframe of the new layer, and
    // the receiver saw one stream throughout.
    assert_eq!(&st.widths[st.widths.len() - 4..], &[1280, 320, 640, 1280]);
    assert_continuous(&st);
    assert!(st.frames > 8 * 30 - 60, "frames {}", st.frames);
    assert_continuous(&camera(&s, b, a));
    // Each switch was counted where it happened.
    assert!(s.sfu.stats().layer_switches >= 3 + 2);
}

#[test]
fn a_switch_waits_for_the_keyframe_and_asks_for_it() {
    let (mut s, a, _b, c) = meeting("room-switch-wait");
    s.run(3 * SECOND);
    let a_id = s.id(a);
    let requests = s.report(a).keyframe_requests_received;
    let before = camera(&s, c, a);
    s.send(c, view(a_id, 300));
    // Right after the view, C still gets the high layer: nothing switches
    // mid-stream.
    s.pump();
    assert_eq!(camera(&s, c, a).width, 1280);
    s.run(SECOND);
    let after = camera(&s, c, a);
    assert_eq!(after.width, 320);
    // The switch asked A for a keyframe of the low layer rather than wait
    // for the next periodic one (every 2 s).
    assert!(s.report(a).keyframe_requests_received > requests);
    assert!(after.keyframes > before.keyframes);
    assert_continuous(&after);
}

#[test]
fn layers_nobody_receives_are_stopped_and_hidden_tiles_paused() {
    let (mut s, a, b, c) = meeting("room-layers-off");
    s.run(3 * SECOND);
    let a_id = s.id(a);
    // Both receivers show A small: nobody needs the two upper layers.
    s.send(b, view(a_id, 300));
    s.send(c, view(a_id, 300));
    s.run(2 * SECOND);
    let sent = s.report(a).camera_layers_sent;
    s.run(2 * SECOND);
    let later = s.report(a).camera_layers_sent;
    assert!(s.report(a).layers_told >= 1);
    assert!(later[0] > sent[0] + 50, "the low layer goes on: {later:?}");
    assert_eq!(later[1], sent[1], "middle layer stopped");
    assert_eq!(later[2], sent[2], "high layer stopped");
    // C hides A's tile: its video pauses; B keeps it.
    s.send(c, view(a_id, 0));
    s.run(SECOND);
    let (c0, b0) = (camera(&s, c, a).frames, camera(&s, b, a).frames);
    s.run(2 * SECOND);
    assert_eq!(camera(&s, c, a).frames, c0, "paused");
    assert!(camera(&s, b, a).frames > b0 + 50);
    // B wants A large again: A starts its high layer (with a keyframe), and
    // B moves up to it.
    s.send(b, view(a_id, 1280));
    s.run(2 * SECOND);
    assert!(s.report(a).camera_layers_sent[2] > later[2] + 20);
    assert_eq!(camera(&s, b, a).width, 1280);
    assert_continuous(&camera(&s, b, a));
    // C shows it again: it resumes at a keyframe.
    s.send(c, view(a_id, 300));
    s.run(2 * SECOND);
    let st = camera(&s, c, a);
    assert!(st.frames > c0 + 30);
    assert_eq!(st.width, 320);
}

#[test]
fn audio_is_untouched_by_layers() {
    let (mut s, a, _b, c) = meeting("room-audio-untouched");
    s.run(2 * SECOND);
    let a_id = s.id(a);
    s.send(c, view(a_id, 0));
    let mic = |s: &Sim| s.report(c).stream(a_id, TrackSource::Mic).unwrap().frames;
    let before = mic(&s);
    s.run(2 * SECOND);
    // 50 audio frames a second, paused video or not.
    assert!(mic(&s) >= before + 95, "{} -> {}", before, mic(&s));
}

#[test]
fn a_layer_the_publisher_starts_late_is_not_stopped_before_it_is_seen() {
    // A browser starts its top layer once its own estimate allows. The SFU
    // offers receivers only layers it has seen; had it told the publisher to
    // stop the unseen one (nobody receives it), it would never start, and
    // nobody could ever be given it.
    let mut s = Sim::new();
    s.delay = Duration::from_millis(20);
    let r = room("room-late-layer");
    let mut late = aparte_bot::BotConfig::new(300_000, s.epoch, sim::link());
    late.top_layer_after = 3 * SECOND;
    let a = s.join_with(&r, late);
    let b = s.join_with(&r, quiet(&s));
    s.run(SECOND);
    s.send(b, view(s.id(a), 1280));
    s.run(2 * SECOND);
    assert_eq!(s.report(a).camera_layers_sent[2], 0, "not started yet");
    assert_eq!(camera(&s, b, a).width, 640, "the best seen so far");
    s.run(3 * SECOND);
    assert!(
        s.report(a).camera_layers_sent[2] > 30,
        "{:?}",
        s.report(a).camera_layers_sent
    );
    assert_eq!(camera(&s, b, a).width, 1280);
    assert_continuous(&camera(&s, b, a));
}
