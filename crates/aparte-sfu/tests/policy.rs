//! Lobby, roles, host controls and limits, on the deterministic network.

#![allow(clippy::unwrap_used)]

mod sim;

use std::sync::Arc;
use std::time::Duration;

use aparte_bot::BotConfig;
use aparte_proto::{ClientMsg, ErrorCode, ParticipantId, Role, ServerMsg, TrackSource};
use aparte_sfu::{JoinError, RoomUpdate, SfuConfig};
use sim::{Sim, host_key, link, room};

/// A bot of the simulated meeting, named.
fn named(s: &Sim, name: &str) -> BotConfig {
    let mut c = BotConfig::new(300_000, s.epoch, link());
    c.name = name.into();
    c
}

/// A host that keeps the lobby on.
fn host(s: &Sim, r: &aparte_proto::RoomId) -> BotConfig {
    let mut c = named(s, "Hôte");
    c.key = Some(host_key(r));
    c
}

fn frames(s: &Sim, bot: usize, from: ParticipantId, source: TrackSource) -> u64 {
    s.report(bot).stream(from, source).map_or(0, |st| st.frames)
}

fn errors(s: &Sim, bot: usize) -> Vec<ErrorCode> {
    s.report(bot).control.errors
}

#[test]
fn the_lobby_gives_nothing_until_admitted() {
    let mut s = Sim::new();
    let r = room("lobby-room");
    let h = s.try_join(&r, host(&s, &r), None).unwrap();
    assert_eq!(s.report(h).control.role, Some(Role::Host));
    assert!(
        s.report(h).control.room.unwrap().lobby,
        "lobby is on by default"
    );

    let g = s.try_join(&r, named(&s, "Zoé"), None).unwrap();
    assert!(s.is_waiting(g));
    let gid = s.bots[g].id;
    // The host reads the waiting person's name; the server only relayed it.
    assert_eq!(
        s.report(h).control.lobby,
        vec![(gid, Some("Zoé".to_string()))]
    );
    s.run(Duration::from_secs(2));

    // Everything a participant could ask for is refused while waiting.
    let probes = [
        ClientMsg::Answer { sdp: "v=0".into() },
        ClientMsg::Relay {
            to: None,
            payload: "hello".into(),
        },
        ClientMsg::MlsKeyPackage {
            data: "AAAA".into(),
        },
        ClientMsg::MlsCommit {
            epoch: 0,
            data: "AAAA".into(),
            welcome: None,
            added: vec![],
        },
        ClientMsg::MlsApp {
            data: "AAAA".into(),
            to: vec![],
        },
        ClientMsg::Admit { peer: gid },
        ClientMsg::Mute { peer: None },
        ClientMsg::End,
    ];
    let n = probes.len();
    for p in probes {
        s.send(g, p);
    }
    s.run(Duration::from_secs(1));
    assert_eq!(errors(&s, g), vec![ErrorCode::NotAdmitted; n]);
    let inbox = &s.bots[g].inbox;
    assert!(
        inbox.iter().all(|m| matches!(
            m,
            ServerMsg::Waiting { .. }
                | ServerMsg::Error {
                    code: ErrorCode::NotAdmitted,
                    ..
                }
        )),
        "a waiting person received something of the meeting: {inbox:?}"
    );
    assert_eq!(s.report(g).datagrams_in, 0);
    assert_eq!(s.sfu.members(&r).len(), 1);

    // Admitted: welcomed, keyed into the group, media both ways.
    s.send(h, ClientMsg::Admit { peer: gid });
    s.run(Duration::from_secs(3));
    assert!(!s.is_waiting(g));
    assert_eq!(s.report(g).control.role, Some(Role::Guest));
    assert!(frames(&s, g, s.id(h), TrackSource::Camera) > 10);
    assert!(frames(&s, h, gid, TrackSource::Camera) > 10);
    assert!(s.report(h).control.lobby_done.contains(&(gid, true)));

    // Denied: closed with `denied`, never a member.
    let d = s.try_join(&r, named(&s, "Intrus"), None).unwrap();
    let did = s.bots[d].id;
    s.send(h, ClientMsg::Deny { peer: did });
    assert_eq!(s.bots[d].closed, Some(Some(ErrorCode::Denied)));
    assert!(!s.sfu.members(&r).contains(&did));
    assert!(s.sfu.lobby(&r).is_empty());
}

#[test]
fn guests_cannot_use_host_controls() {
    let mut s = Sim::new();
    let r = room("guest-room");
    let h = s.join(&r);
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(Duration::from_secs(1));
    for msg in [
        ClientMsg::Remove { peer: s.id(b) },
        ClientMsg::Promote { peer: s.id(b) },
        ClientMsg::Mute { peer: None },
        ClientMsg::End,
        ClientMsg::UpdateRoom {
            lobby: None,
            locked: Some(true),
            persistent: None,
            passcode: None,
        },
    ] {
        s.send(a, msg);
    }
    assert_eq!(errors(&s, a), vec![ErrorCode::Forbidden; 5]);
    // Admitting someone not in the lobby names an unknown peer.
    s.send(h, ClientMsg::Admit { peer: s.id(b) });
    assert_eq!(errors(&s, h), vec![ErrorCode::UnknownPeer]);
    assert_eq!(s.sfu.members(&r).len(), 3);
    assert!(s.bots.iter().all(|b| b.closed.is_none()));
}

#[test]
fn a_removed_participant_is_cut_off_and_cannot_come_back() {
    let mut s = Sim::new();
    let r = room("remove-room");
    let h = s.join(&r);
    let a = s.join(&r);
    let c = s.join(&r);
    s.run(Duration::from_secs(3));
    let cid = s.id(c);
    let before = frames(&s, a, cid, TrackSource::Camera);
    assert!(before > 10);
    let seat = s.report(c).control.seat.clone().unwrap();

    s.send(h, ClientMsg::Remove { peer: cid });
    // At once: closed, out of the room, and no frame of it forwarded after.
    assert_eq!(s.bots[c].closed, Some(Some(ErrorCode::Removed)));
    assert!(!s.sfu.members(&r).contains(&cid));
    let at_removal = frames(&s, a, cid, TrackSource::Camera);
    s.bots[c].closed = None; // the removed bot keeps sending, as a hostile one would
    s.run(Duration::from_secs(2));
    assert_eq!(frames(&s, a, cid, TrackSource::Camera), at_removal);
    // The group removed it: the others' next epoch excludes it.
    assert!(!s.report(a).e2ee.members.contains(&cid));
    assert!(s.bots[a].inbox.contains(&ServerMsg::PeerLeft { peer: cid }));

    // Its seat is revoked: a reconnect is refused, even with the lobby off.
    let mut back = named(&s, "again");
    back.seat = Some(seat);
    assert_eq!(s.try_join(&r, back, None), Err(JoinError::Removed));

    // A seat that was not revoked skips the lobby once it is back on.
    let a_seat = s.report(a).control.seat.clone().unwrap();
    s.sfu.update_room(
        s.now,
        s.id(h),
        &RoomUpdate {
            lobby: Some(true),
            ..RoomUpdate::default()
        },
    );
    s.disconnect(a);
    let mut again = named(&s, "a again");
    again.seat = Some(a_seat);
    let a2 = s.try_join(&r, again, None).unwrap();
    assert!(!s.is_waiting(a2));
    s.run(Duration::from_secs(2));
    assert!(frames(&s, a2, s.id(h), TrackSource::Camera) > 10);
}

#[test]
fn moderators_moderate_and_lose_their_key_when_removed() {
    let mut s = Sim::new();
    let r = room("mod-room");
    let h = s.try_join(&r, host(&s, &r), None).unwrap();
    let w = s.try_join(&r, named(&s, "w"), None).unwrap();
    let m = {
        s.send(h, ClientMsg::Admit { peer: s.bots[w].id });
        w
    };
    let mid = s.id(m);
    s.send(h, ClientMsg::Promote { peer: mid });
    let key = s.report(m).control.moderator_key.clone().unwrap();
    assert_eq!(s.report(m).control.role, Some(Role::Moderator));
    assert!(s.bots[h].inbox.contains(&ServerMsg::RoleChanged {
        peer: mid,
        role: Role::Moderator
    }));

    // The moderator sees the lobby and admits from it.
    let g = s.try_join(&r, named(&s, "Guest"), None).unwrap();
    let gid = s.bots[g].id;
    assert_eq!(
        s.report(m).control.lobby.last(),
        Some(&(gid, Some("Guest".to_string())))
    );
    s.send(m, ClientMsg::Admit { peer: gid });
    assert!(!s.is_waiting(g));
    // A moderator cannot remove the host, nor end the meeting.
    s.send(m, ClientMsg::Remove { peer: s.id(h) });
    s.send(m, ClientMsg::End);
    assert_eq!(errors(&s, m), vec![ErrorCode::Forbidden; 2]);

    // Its key lets it back in as moderator, past the lobby.
    s.disconnect(m);
    let mut back = named(&s, "m again");
    back.key = Some(key.clone());
    let m2 = s.try_join(&r, back, None).unwrap();
    assert_eq!(s.report(m2).control.role, Some(Role::Moderator));

    // Removed by the host: the key is revoked, it is a guest in the lobby now.
    s.send(h, ClientMsg::Remove { peer: s.id(m2) });
    let mut third = named(&s, "m third");
    third.key = Some(key);
    let m3 = s.try_join(&r, third, None).unwrap();
    assert!(s.is_waiting(m3));
}

#[test]
fn locked_and_unknown_rooms_answer_alike() {
    let mut s = Sim::new();
    let r = room("lock-room");
    let h = s.join(&r);
    let unknown = room("never-opened");
    let e1 = s.try_join(&unknown, named(&s, "x"), None).unwrap_err();
    s.send(
        h,
        ClientMsg::UpdateRoom {
            lobby: None,
            locked: Some(true),
            persistent: None,
            passcode: None,
        },
    );
    assert!(s.report(h).control.room.unwrap().locked);
    let e2 = s.try_join(&r, named(&s, "y"), None).unwrap_err();
    assert_eq!(e1, JoinError::Unavailable);
    assert_eq!(e1, e2);
    assert_eq!(e1.code(), ErrorCode::RoomUnavailable);
    // The host key still enters a locked room.
    let mut h2 = named(&s, "host, second device");
    h2.key = Some(host_key(&r));
    let second = s.try_join(&r, h2, None).unwrap();
    assert_eq!(s.report(second).control.role, Some(Role::Host));
    assert!(!s.is_waiting(second));
    assert!(s.sfu.members(&r).contains(&s.id(second)));
}

#[test]
fn a_passcode_is_checked_before_the_lobby() {
    let mut s = Sim::new();
    let r = room("code-room");
    // The host keeps the lobby on.
    let h = s.try_join(&r, host(&s, &r), None).unwrap();
    let verifier: Arc<str> = Arc::from("$argon2id$v=19$stand-in");
    s.sfu.update_room(
        s.now,
        s.id(h),
        &RoomUpdate {
            passcode: Some(Some(verifier.clone())),
            ..RoomUpdate::default()
        },
    );
    s.pump();
    assert!(s.report(h).control.room.unwrap().passcode);
    let err = s.try_join(&r, named(&s, "g"), None).unwrap_err();
    assert_eq!(err, JoinError::Passcode(verifier.clone()));
    let mut core =
        aparte_bot::BotCore::new(s.now, "10.9.9.9:1".parse().unwrap(), named(&s, "checked"));
    let mut req = sim::request(core.join_msg(r.clone()), None);
    req.passcode_checked = Some(verifier);
    // Past the passcode, the lobby (on by default) still holds the joiner.
    let Ok(aparte_sfu::Admission::Waiting(id)) = s.sfu.join(s.now, req) else {
        panic!("a checked passcode leads to the lobby, not around it");
    };
    assert_eq!(s.sfu.lobby(&r), vec![id]);
    assert!(!s.sfu.members(&r).contains(&id));
}

#[test]
fn mute_requests_reach_everyone_and_clients_obey() {
    let mut s = Sim::new();
    let r = room("mute-room");
    let h = s.join(&r);
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(Duration::from_secs(2));
    s.send(
        h,
        ClientMsg::Mute {
            peer: Some(s.id(a)),
        },
    );
    for bot in [h, a, b] {
        assert_eq!(
            s.report(bot).control.mute_requests,
            vec![(s.id(h), Some(s.id(a)))]
        );
    }
    assert!(s.report(a).control.muted);
    assert!(!s.report(b).control.muted);
    let audio = frames(&s, b, s.id(a), TrackSource::Mic);
    s.run(Duration::from_secs(1));
    assert!(frames(&s, b, s.id(a), TrackSource::Mic) <= audio + 1);
    s.send(h, ClientMsg::Mute { peer: None });
    assert!(s.report(b).control.muted && s.report(h).control.muted);
}

#[test]
fn ending_the_meeting_closes_everyone_and_frees_everything() {
    let mut s = Sim::new();
    let r = room("end-room");
    let h = s.try_join(&r, host(&s, &r), None).unwrap();
    let g = s.try_join(&r, named(&s, "g"), None).unwrap();
    s.send(h, ClientMsg::Admit { peer: s.bots[g].id });
    let w = s.try_join(&r, named(&s, "waiting"), None).unwrap();
    s.run(Duration::from_secs(1));
    s.send(h, ClientMsg::End);
    for bot in [h, g, w] {
        assert_eq!(s.bots[bot].closed, Some(Some(ErrorCode::MeetingEnded)));
    }
    assert_eq!(s.sfu.room_count(), 0);
    assert_eq!(s.sfu.participant_count(), 0);
    // Nothing was kept: the room was not persistent.
    assert!(s.persisted.is_empty());
    // The room is unknown now: guests cannot get in until the host reopens it.
    assert_eq!(
        s.try_join(&r, named(&s, "late"), None),
        Err(JoinError::Unavailable)
    );
}

#[test]
fn a_persistent_room_keeps_only_its_settings() {
    let mut s = Sim::new();
    let r = room("persist-room");
    let h = s.try_join(&r, host(&s, &r), None).unwrap();
    s.send(
        h,
        ClientMsg::UpdateRoom {
            lobby: None,
            locked: None,
            persistent: Some(true),
            passcode: None,
        },
    );
    let w = s.try_join(&r, named(&s, "m"), None).unwrap();
    s.send(h, ClientMsg::Admit { peer: s.bots[w].id });
    s.send(h, ClientMsg::Promote { peer: s.bots[w].id });
    let key = s.report(w).control.moderator_key.clone().unwrap();
    s.disconnect(w);
    s.disconnect(h);
    assert_eq!(s.sfu.room_count(), 0);
    let (room_id, stored) = s.persisted.last().cloned().unwrap();
    assert_eq!(room_id, r);
    let stored = stored.unwrap();
    assert!(stored.lobby);
    assert_eq!(stored.moderators.len(), 1);

    // Next meeting: a guest waits in the stored lobby even before the host.
    let g = s
        .try_join(&r, named(&s, "early"), Some(stored.clone()))
        .unwrap();
    assert!(s.is_waiting(g));
    let mut m = named(&s, "m back");
    m.key = Some(key);
    let m2 = s.try_join(&r, m, Some(stored)).unwrap();
    assert_eq!(s.report(m2).control.role, Some(Role::Moderator));
    assert_eq!(s.report(m2).control.lobby.len(), 1);

    // Not persistent any more: the record is deleted.
    let mut hk = named(&s, "host back");
    hk.key = Some(host_key(&r));
    let h2 = s.try_join(&r, hk, None).unwrap();
    s.send(
        h2,
        ClientMsg::UpdateRoom {
            lobby: None,
            locked: None,
            persistent: Some(false),
            passcode: None,
        },
    );
    assert_eq!(s.persisted.last().cloned(), Some((r, None)));
}

#[test]
fn the_track_limit_refuses_the_extra_track_only() {
    let mut s = Sim::new();
    let mut config = SfuConfig::new("10.0.0.1:5000".parse().unwrap());
    config.max_tracks_per_participant = 1;
    s.sfu = aparte_sfu::Sfu::new(config);
    let r = room("track-room");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(Duration::from_secs(3));
    // Each bot publishes audio and video: one of them is over the limit.
    for (me, other) in [(a, b), (b, a)] {
        assert_eq!(errors(&s, me), vec![ErrorCode::TooManyTracks]);
        let got = frames(&s, other, s.id(me), TrackSource::Mic)
            + frames(&s, other, s.id(me), TrackSource::Camera);
        assert!(got > 10, "the first track still flows");
        assert!(
            frames(&s, other, s.id(me), TrackSource::Mic) == 0
                || frames(&s, other, s.id(me), TrackSource::Camera) == 0
        );
    }
}

#[test]
fn one_network_cannot_fill_the_lobby() {
    let mut s = Sim::new();
    let r = room("lobby-per-network");
    let _h = s.try_join(&r, host(&s, &r), None).unwrap();
    let crowd: std::net::IpAddr = "192.0.2.1".parse().unwrap();
    let other: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let per_network = SfuConfig::new("127.0.0.1:1".parse().unwrap()).max_lobby_per_network;
    let ask = |s: &mut Sim, net| {
        let req = aparte_sfu::JoinRequest::new(r.clone()).from_network(net);
        s.sfu.join(s.now, req)
    };
    for _ in 0..per_network {
        assert!(matches!(
            ask(&mut s, crowd),
            Ok(aparte_sfu::Admission::Waiting(_))
        ));
    }
    assert_eq!(ask(&mut s, crowd), Err(JoinError::RoomFull));
    // Someone from another network still gets a place.
    assert!(matches!(
        ask(&mut s, other),
        Ok(aparte_sfu::Admission::Waiting(_))
    ));
    assert_eq!(s.sfu.lobby(&r).len(), per_network + 1);
}

#[test]
fn a_member_cannot_flood_the_others_with_application_messages() {
    let mut s = Sim::new();
    let r = room("app-flood");
    let a = s.join(&r);
    let b = s.join(&r);
    let c = s.join(&r);
    s.run(Duration::from_secs(3));
    assert_eq!(s.report(b).e2ee.members.len(), 3, "all in the group");
    let big = "A".repeat(aparte_proto::MAX_APP_BYTES);
    let copies = |s: &Sim, bot: usize| {
        s.bots[bot]
            .inbox
            .iter()
            .filter(|m| matches!(m, ServerMsg::MlsApp { data, .. } if data.len() == big.len()))
            .count()
    };
    // 100 messages of 32 KiB within one second: 3.2 MB.
    for _ in 0..100 {
        s.send(
            a,
            ClientMsg::MlsApp {
                data: big.clone(),
                to: vec![],
            },
        );
        s.run(Duration::from_millis(10));
    }
    let (burst, rate) = (256 * 1024, 64 * 1024);
    let most = (burst + rate) / big.len() + 1;
    for bot in [b, c] {
        let got = copies(&s, bot);
        assert!(
            (burst / big.len()..=most).contains(&got),
            "{got} copies reached a member"
        );
    }
    assert!(errors(&s, a).contains(&ErrorCode::RateLimited));
    // The budget refills: a small message a second later goes through.
    s.run(Duration::from_secs(1));
    let before = copies(&s, b);
    s.send(
        a,
        ClientMsg::MlsApp {
            data: big.clone(),
            to: vec![],
        },
    );
    assert_eq!(copies(&s, b), before + 1);
    // Nobody was dropped, and media goes on.
    assert!(s.bots.iter().all(|bot| bot.closed.is_none()));
    let a_id = s.id(a);
    let f = frames(&s, b, a_id, TrackSource::Camera);
    s.run(Duration::from_secs(1));
    assert!(frames(&s, b, a_id, TrackSource::Camera) > f + 20);
}

/// A waiter's name is sealed for its own id: a server that shows one
/// waiter's sealed name on another's request gets it shown as unreadable,
/// never under the wrong person.
#[test]
fn a_name_moved_to_another_waiter_does_not_open() {
    let mut s = Sim::new();
    let r = room("swapped-names");
    let h = s.try_join(&r, host(&s, &r), None).unwrap();
    let a = s.try_join(&r, named(&s, "Alice"), None).unwrap();
    let b = s.try_join(&r, named(&s, "Bob"), None).unwrap();
    let (a_id, b_id) = (s.bots[a].id, s.bots[b].id);
    assert_eq!(
        s.report(h).control.lobby,
        vec![(a_id, Some("Alice".into())), (b_id, Some("Bob".into()))]
    );
    // The server, played here, sends Alice's sealed name as Bob's.
    let alice_sealed = s.bots[h]
        .inbox
        .iter()
        .find_map(|m| match m {
            ServerMsg::LobbyRequest {
                peer,
                name: Some(n),
            } if *peer == a_id => Some(n.clone()),
            _ => None,
        })
        .unwrap();
    let now = s.now;
    s.bots[h]
        .core
        .handle_signal(
            now,
            ServerMsg::LobbyRequest {
                peer: b_id,
                name: Some(alice_sealed),
            },
        )
        .unwrap();
    assert_eq!(
        s.report(h).control.lobby,
        vec![(a_id, Some("Alice".into())), (b_id, None)]
    );
    // A waiter gives its name once; a second is refused.
    s.send(
        b,
        ClientMsg::LobbyName {
            name: "AAAAAAAA".into(),
        },
    );
    assert!(errors(&s, b).contains(&ErrorCode::Forbidden));
}
