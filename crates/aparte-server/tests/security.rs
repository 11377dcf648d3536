//! Secure by default, against the real server: the lobby cannot be bypassed,
//! a removed participant is cut off and stays out, and every limit trips with
//! its error code while the room goes on working for everyone else.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use aparte_bot::Bot;
use aparte_proto::{ClientMsg, ErrorCode, ServerMsg, TrackSource};
use aparte_server::Config;
use common::*;

/// Frames of `peer`'s camera that `bot` opened, and those it could not.
async fn stream_of(bot: &Bot, peer: aparte_proto::ParticipantId) -> (u64, u64) {
    let rep = bot.report().await.unwrap();
    rep.stream(peer, TrackSource::Camera)
        .map_or((0, 0), |s| (s.frames, s.undecryptable))
}

/// Another loopback address: "another network" for per-address limits.
const ELSEWHERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn server_with(f: impl FnOnce(&mut Config)) -> aparte_server::ServerHandle {
    let mut c = Config::ephemeral();
    f(&mut c);
    aparte_server::start(c).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lobby_cannot_be_bypassed() {
    let server = server().await;
    let epoch = Instant::now();
    let r = room("lobby-bypass");
    let mut hc = config(&r, "Host", true, 250_000, epoch);
    hc.open_room = false; // the lobby stays on
    let host = Bot::join(&server.ws_url(), r.clone(), LOOPBACK, hc)
        .await
        .unwrap();
    host.connected(Duration::from_secs(10)).await.unwrap();

    let mut ws = raw_ws(&server, LOOPBACK).await;
    send(&mut ws, &join_json(&r, "")).await;
    let Some(ServerMsg::Waiting { you }) = recv(&mut ws, Duration::from_secs(5)).await else {
        panic!("a joiner waits in the lobby");
    };
    // Its name, sealed for its own id: the host reads it.
    send(&mut ws, &lobby_name_json(&r, you, "Mallory")).await;
    let h = host.id().0;
    let probes = [
        // Media: answering an offer is how a participant takes tracks.
        r#"{"v":1,"type":"answer","sdp":"v=0\r\n"}"#.to_owned(),
        // Chat and names travel as MLS application messages or relays.
        r#"{"v":1,"type":"mls_app","data":"AAAA"}"#.to_owned(),
        r#"{"v":1,"type":"relay","payload":"hello"}"#.to_owned(),
        format!(r#"{{"v":1,"type":"relay","to":{h},"payload":"hello"}}"#),
        // The group: asking in, or committing.
        r#"{"v":1,"type":"mls_key_package","data":"AAAA"}"#.to_owned(),
        r#"{"v":1,"type":"mls_commit","epoch":1,"data":"AAAA"}"#.to_owned(),
        // Host controls, from the lobby.
        format!(r#"{{"v":1,"type":"admit","peer":{}}}"#, you.0),
        format!(r#"{{"v":1,"type":"remove","peer":{h}}}"#),
        r#"{"v":1,"type":"mute"}"#.to_owned(),
        r#"{"v":1,"type":"update_room","lobby":false}"#.to_owned(),
        r#"{"v":1,"type":"end"}"#.to_owned(),
    ];
    for p in &probes {
        send(&mut ws, p).await;
        match recv(&mut ws, Duration::from_secs(5)).await {
            Some(ServerMsg::Error { code, .. }) => {
                assert_eq!(code, ErrorCode::NotAdmitted, "{p}");
            }
            other => panic!("{p} answered with {other:?}"),
        }
    }
    // Nothing else ever reached the waiting connection: no welcome, roster,
    // offer, peer event or MLS message.
    assert_eq!(recv(&mut ws, Duration::from_secs(1)).await, None);

    let rep = host.report().await.unwrap();
    assert_eq!(rep.control.lobby, vec![(you, Some("Mallory".to_owned()))]);
    assert!(
        rep.control.room.unwrap().lobby,
        "the lobby is still on after the attempts"
    );
    assert_eq!(rep.e2ee.members, vec![host.id()], "nobody joined the group");
    assert!(rep.streams.is_empty());

    // Denied: told so, and the connection closes.
    host.signal(ClientMsg::Deny { peer: you }).await.unwrap();
    match recv(&mut ws, Duration::from_secs(5)).await {
        Some(ServerMsg::Error { code, .. }) => assert_eq!(code, ErrorCode::Denied),
        other => panic!("denial answered with {other:?}"),
    }
    assert!(closed(&mut ws, Duration::from_secs(5)).await, "closed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_participant_is_cut_off_and_stays_out() {
    let server = server().await;
    let epoch = Instant::now();
    let r = room("removal");
    let bots = bots(&server, &r, 2, 250_000, epoch).await;
    // The one to be removed is hostile: it goes on publishing after the
    // server removes it, so the test shows the server cuts it off rather
    // than the client stopping by itself.
    let mut cc = config(&r, "C", false, 250_000, epoch);
    cc.stubborn = true;
    let c = Bot::join(&server.ws_url(), r.clone(), LOOPBACK, cc)
        .await
        .unwrap();
    c.connected(Duration::from_secs(10)).await.unwrap();
    let (host, b) = (&bots[0], &bots[1]);
    let c_id = c.id();
    assert!(flowing(b, c_id, TrackSource::Camera, 20).await);
    let seat = c.report().await.unwrap().control.seat.unwrap();

    host.signal(ClientMsg::Remove { peer: c_id }).await.unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            c.report()
                .await
                .unwrap()
                .control
                .errors
                .contains(&ErrorCode::Removed)
        })
        .await,
        "told it was removed"
    );
    // It still publishes; nothing of it reaches the others any more.
    let sent = c.report().await.unwrap().sent_frames;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (before, undecryptable) = stream_of(b, c_id).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        c.report().await.unwrap().sent_frames > sent + 20,
        "the removed bot kept publishing"
    );
    assert_eq!(stream_of(b, c_id).await, (before, undecryptable));
    c.kill();
    // The group removed it: the others' keys no longer cover it.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let m = b.report().await.unwrap().e2ee.members;
            m.len() == 2 && !m.contains(&c_id)
        })
        .await
    );

    // Reconnecting with its (revoked) seat is refused.
    let mut again = config(&r, "C again", false, 250_000, epoch);
    again.seat = Some(seat);
    let Err(e) = Bot::join(&server.ws_url(), r.clone(), LOOPBACK, again).await else {
        panic!("a revoked seat is refused");
    };
    assert_eq!(server_error(&e), Some(ErrorCode::Removed));

    // The others go on.
    assert!(flowing(b, host.id(), TrackSource::Camera, 15).await);
    assert!(flowing(host, b.id(), TrackSource::Camera, 15).await);
    for bot in bots {
        assert!(bot.leave().await.unwrap().all_intact());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_refuses_the_next_one_only() {
    let server = server_with(|c| c.max_participants = 3).await;
    let epoch = Instant::now();
    let r = room("full");
    let bots = bots(&server, &r, 3, 250_000, epoch).await;
    let extra = config(&r, "fourth", false, 250_000, epoch);
    let Err(e) = Bot::join(&server.ws_url(), r.clone(), LOOPBACK, extra).await else {
        panic!("the fourth is refused");
    };
    assert_eq!(server_error(&e), Some(ErrorCode::RoomFull));
    assert!(flowing(&bots[0], bots[2].id(), TrackSource::Camera, 15).await);
    assert!(flowing(&bots[2], bots[1].id(), TrackSource::Mic, 15).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_track_limit_refuses_the_extra_track_only() {
    let server = server_with(|c| c.max_tracks = 1).await;
    let r = room("tracks");
    let bots = bots(&server, &r, 2, 250_000, Instant::now()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (me, other) in [(&bots[0], &bots[1]), (&bots[1], &bots[0])] {
        let rep = me.report().await.unwrap();
        assert!(
            rep.control.errors.contains(&ErrorCode::TooManyTracks),
            "{:?}",
            rep.control.errors
        );
        let mic = frames(other, me.id(), TrackSource::Mic).await;
        let cam = frames(other, me.id(), TrackSource::Camera).await;
        assert!(mic + cam > 10, "one track flows");
        assert!(mic == 0 || cam == 0, "the other does not ({mic}, {cam})");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_size_and_rate_limits_answer_and_the_room_goes_on() {
    let server = server_with(|c| c.message_rate = 10).await;
    let r = room("rates");
    let bots = bots(&server, &r, 2, 250_000, Instant::now()).await;
    let mut ws = raw_ws(&server, LOOPBACK).await;
    send(&mut ws, &join_json(&r, "")).await;
    assert!(matches!(
        recv(&mut ws, Duration::from_secs(5)).await,
        Some(ServerMsg::Welcome { .. })
    ));
    // Too large for the protocol.
    let big = format!(
        r#"{{"v":1,"type":"relay","payload":"{}"}}"#,
        "x".repeat(70_000)
    );
    assert_eq!(error_for(&mut ws, &big).await.0, ErrorCode::TooLarge);
    // A burst: 35 messages at once against 10/s (bursts of 20). Past the
    // burst they are dropped; 15 dropped is not yet a flood that closes the
    // connection (the abuse tests show that one).
    for _ in 0..35 {
        send(
            &mut ws,
            r#"{"v":1,"type":"relay","to":999999,"payload":"x"}"#,
        )
        .await;
    }
    let mut codes = Vec::new();
    while let Some(m) = recv(&mut ws, Duration::from_millis(500)).await {
        if let ServerMsg::Error { code, .. } = m {
            codes.push(code);
        }
    }
    let limited = codes
        .iter()
        .filter(|&&c| c == ErrorCode::RateLimited)
        .count();
    let answered = codes
        .iter()
        .filter(|&&c| c == ErrorCode::UnknownPeer)
        .count();
    assert!(limited >= 1, "{codes:?}");
    assert!(
        answered <= 25,
        "most of the flood was dropped: {answered} answered"
    );
    // The room never noticed, and the connection recovers after a pause.
    assert!(flowing(&bots[0], bots[1].id(), TrackSource::Camera, 15).await);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let again = error_for(
        &mut ws,
        r#"{"v":1,"type":"relay","to":999999,"payload":"x"}"#,
    )
    .await;
    assert_eq!(again.0, ErrorCode::UnknownPeer);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_attempts_are_limited_per_address() {
    let server = server_with(|c| c.join_rate = 5).await;
    let epoch = Instant::now();
    let nowhere = room("never-opened");
    for i in 0..6 {
        let mut ws = raw_ws(&server, ELSEWHERE).await;
        let (code, _) = error_for(&mut ws, &join_json(&nowhere, "")).await;
        let want = if i < 5 {
            ErrorCode::RoomUnavailable
        } else {
            ErrorCode::RateLimited
        };
        assert_eq!(code, want, "attempt {i}");
    }
    // Another address is not affected.
    let r = room("per-address");
    let bots = bots(&server, &r, 2, 250_000, epoch).await;
    assert!(flowing(&bots[1], bots[0].id(), TrackSource::Camera, 15).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcodes_are_checked_and_guessing_is_limited() {
    let server = server_with(|c| c.passcode_rate = 3).await;
    let epoch = Instant::now();
    let r = room("passcode");
    let bots = bots(&server, &r, 1, 250_000, epoch).await;
    let host = &bots[0];
    assert!(set_passcode(host, "open sesame").await);
    // No passcode, then the right one.
    let mut ws = raw_ws(&server, ELSEWHERE).await;
    let (code, _) = error_for(&mut ws, &join_json(&r, "")).await;
    assert_eq!(code, ErrorCode::PasscodeRequired);
    let mut guest = config(&r, "guest", false, 250_000, epoch);
    guest.passcode = Some("open sesame".to_owned());
    let guest = Bot::join(&server.ws_url(), r.clone(), LOOPBACK, guest)
        .await
        .unwrap();
    guest.connected(Duration::from_secs(10)).await.unwrap();
    // Guessing: three wrong answers, then no more tries.
    for i in 0..4 {
        let mut ws = raw_ws(&server, ELSEWHERE).await;
        let (code, _) = error_for(
            &mut ws,
            &join_json(&r, &format!(r#","passcode":"guess {i}""#)),
        )
        .await;
        let want = if i < 3 {
            ErrorCode::WrongPasscode
        } else {
            ErrorCode::RateLimited
        };
        assert_eq!(code, want, "guess {i}");
    }
    assert!(flowing(&guest, host.id(), TrackSource::Camera, 15).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_room_answers_like_an_unknown_one() {
    let server = server().await;
    let r = room("locked");
    let bots = bots(&server, &r, 2, 250_000, Instant::now()).await;
    let mut ws = raw_ws(&server, LOOPBACK).await;
    let unknown = error_for(&mut ws, &join_json(&room("no-such-room"), "")).await;
    bots[0]
        .signal(ClientMsg::UpdateRoom {
            lobby: None,
            locked: Some(true),
            persistent: None,
            passcode: None,
        })
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || async {
            bots[1]
                .report()
                .await
                .unwrap()
                .control
                .room
                .is_some_and(|s| s.locked)
        })
        .await
    );
    let mut ws = raw_ws(&server, LOOPBACK).await;
    let locked = error_for(&mut ws, &join_json(&r, "")).await;
    assert_eq!(unknown.0, ErrorCode::RoomUnavailable);
    assert_eq!(locked, unknown, "same code, same words");
    assert!(flowing(&bots[1], bots[0].id(), TrackSource::Camera, 15).await);
    server.stop().await;
}
