//! The malicious-server harness: the real SFU core and real bots (str0m peers
//! holding real MLS sessions and SFrame keys), with the test playing a server
//! that lies. It rewrites, withholds or forges signaling on its way to a bot
//! ([`Sim::to_client`]), ignores what a bot asks ([`Sim::from_client`]), and
//! rewrites media payloads before they are forwarded (a tap on the SFU). One
//! test per attack of the threat model in docs/e2ee.md, each asserting what the
//! honest members do.

#![allow(clippy::unwrap_used)]

mod sim;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aparte_bot::StreamReport;
use aparte_e2ee::b64;
use aparte_proto::{ClientMsg, ParticipantId, ServerMsg, TrackSource};
use aparte_sfu::TapEvent;
use sim::{Sim, room};

const SECOND: Duration = Duration::from_secs(1);

fn stream(s: &Sim, bot: usize, peer: usize, source: TrackSource) -> StreamReport {
    s.report(bot)
        .stream(s.id(peer), source)
        .cloned()
        .unwrap_or_else(|| panic!("bot {bot} has no {source:?} stream of bot {peer}"))
}

/// The bot's E2EE layer refused something for `why`.
fn assert_refused(rep: &aparte_bot::BotReport, why: &str) {
    assert!(
        rep.e2ee.refusals.iter().any(|r| r.contains(why)),
        "no refusal for {why:?}: {:?}",
        rep.e2ee.refusals
    );
}

/// Frames `bot` opened of `peer`'s microphone and camera.
fn opened(s: &Sim, bot: usize, peer: usize) -> u64 {
    [TrackSource::Mic, TrackSource::Camera]
        .into_iter()
        .filter_map(|src| s.report(bot).stream(s.id(peer), src).map(|st| st.frames))
        .sum()
}

/// A group the server made itself, from the joiner's published key package:
/// one member of the server's own (participant 99), no link PSK. Returns the
/// Welcome, base64.
fn rogue_welcome(key_package_b64: &str) -> String {
    use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
    use openmls::prelude::{
        BasicCredential, CredentialWithKey, KeyPackageIn, MlsGroup, MlsGroupCreateConfig,
        OpenMlsProvider as _, ProtocolVersion, SignatureScheme,
    };
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let signer = openmls_basic_credential::SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    signer.store(provider.storage()).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(99u64.to_be_bytes().to_vec()).into(),
        signature_key: signer.to_public_vec().into(),
    };
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(aparte_e2ee::MLS_SUITE)
        .use_ratchet_tree_extension(true)
        .build();
    let mut group = MlsGroup::new(&provider, &signer, &config, credential).unwrap();
    let kp = KeyPackageIn::tls_deserialize_exact(b64::decode(key_package_b64).unwrap().as_slice())
        .unwrap()
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    let (_, welcome, _) = group.add_members(&provider, &signer, &[kp]).unwrap();
    group.merge_pending_commit(&provider).unwrap();
    b64::encode(&welcome.tls_serialize_detached().unwrap())
}

/// The server keeps B's key package from the host, builds its own group with
/// it (no link PSK, a member of its own) and welcomes B into that. B refuses:
/// no group, no media keys, no security code that could match the server's
/// member's; it sends nothing (fail closed) and opens nothing of the host's.
#[test]
fn a_group_the_server_made_without_the_link_is_refused() {
    let mut s = Sim::new();
    let r = room("hostile-rogue-group");
    let a = s.join(&r);
    s.run(SECOND);
    let kept: Rc<RefCell<Option<String>>> = Rc::default();
    let sink = kept.clone();
    s.from_client = Some(Box::new(move |_, msg| match msg {
        ClientMsg::MlsKeyPackage { data } => {
            *sink.borrow_mut() = Some(data.clone());
            false
        }
        _ => true,
    }));
    let b = s.join(&r);
    s.run(SECOND);
    let kp = kept.borrow().clone().expect("B published its key package");
    s.deliver(
        b,
        ServerMsg::MlsWelcome {
            data: rogue_welcome(&kp),
        },
    );
    s.run(3 * SECOND);

    let rep = s.report(b);
    assert!(rep.connected, "B's media connection is up");
    assert_eq!(rep.e2ee.epoch, None, "B joined no group");
    assert_eq!(rep.e2ee.security_code, None, "no code to match anyone's");
    assert_refused(&rep, "not bound to the meeting link");
    assert!(
        rep.e2ee.frames_not_sent > 100,
        "B sends nothing it cannot seal"
    );
    assert_eq!(opened(&s, b, a), 0, "B opens nothing of A's");
    assert!(
        stream(&s, b, a, TrackSource::Mic).undecryptable > 50,
        "A's frames reached B, and stayed sealed"
    );
    assert_eq!(s.report(a).e2ee.members, vec![s.id(a)], "A's group is A's");
}

/// The server sends B's key package to the host of another room (one that,
/// here, uses the same link secret), and the Welcome that host made back to
/// B. The group id names the room: B refuses it and holds no keys.
#[test]
fn a_welcome_into_another_rooms_group_is_refused() {
    let mut s = Sim::new();
    let r1 = room("hostile-room-one");
    let r2 = room("hostile-room-two");
    let a1 = s.join(&r1);
    let a2 = s.join(&r2);
    s.run(SECOND);
    let kept: Rc<RefCell<Vec<(ParticipantId, ClientMsg)>>> = Rc::default();
    let sink = kept.clone();
    s.from_client = Some(Box::new(move |from, msg| match msg {
        ClientMsg::MlsKeyPackage { .. } | ClientMsg::MlsCommit { .. } => {
            sink.borrow_mut().push((from, msg.clone()));
            false
        }
        _ => true,
    }));
    let b = s.join(&r1);
    s.run(SECOND);
    let (b_id, a2_id) = (s.id(b), s.id(a2));
    let kp = kept
        .borrow()
        .iter()
        .find_map(|(from, m)| match m {
            ClientMsg::MlsKeyPackage { data } if *from == b_id => Some(data.clone()),
            _ => None,
        })
        .unwrap();
    s.deliver(
        a2,
        ServerMsg::MlsJoinRequest {
            from: b_id,
            data: kp,
        },
    );
    s.run(SECOND);
    let welcome = kept
        .borrow()
        .iter()
        .find_map(|(from, m)| match m {
            ClientMsg::MlsCommit { welcome, .. } if *from == a2_id => welcome.clone(),
            _ => None,
        })
        .expect("room two's host added B");
    s.deliver(b, ServerMsg::MlsWelcome { data: welcome });
    s.run(2 * SECOND);

    let rep = s.report(b);
    assert_eq!(rep.e2ee.epoch, None, "B joined no group");
    assert_refused(&rep, "group of another meeting");
    assert_eq!(opened(&s, b, a1), 0);
    assert!(rep.e2ee.frames_not_sent > 50);
}

/// For C, the server swaps the labels of A's and B's tracks in every offer:
/// A's camera arrives on B's tile and B's on A's. Every such frame is refused
/// as relabelled (it opens only with the other member's key), none is shown;
/// A and B, whose offers are honest, see each other and C.
#[test]
fn tracks_the_server_relabels_are_dropped_and_counted() {
    let mut s = Sim::new();
    let r = room("hostile-relabel");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(SECOND);
    let (a_id, b_id) = (s.id(a), s.id(b));
    let c_index = s.bots.len();
    let mut c_id = None;
    s.to_client = Some(Box::new(move |to, mut msg| {
        if let ServerMsg::Welcome { you, .. } = &msg {
            if c_id.is_none() && *you != a_id && *you != b_id {
                c_id = Some(*you);
            }
        }
        if let (ServerMsg::Offer { tracks, .. }, Some(c)) = (&mut msg, c_id) {
            if to == c {
                for t in tracks.iter_mut() {
                    if t.peer == a_id {
                        t.peer = b_id;
                    } else if t.peer == b_id {
                        t.peer = a_id;
                    }
                }
            }
        }
        vec![msg]
    }));
    let c = s.join(&r);
    assert_eq!(c, c_index);
    s.run(4 * SECOND);

    for peer in [a, b] {
        for src in [TrackSource::Mic, TrackSource::Camera] {
            let st = stream(&s, c, peer, src);
            assert_eq!(st.frames, 0, "C showed a frame under the wrong name");
            assert!(st.relabelled > 20, "{src:?} of {peer}: {st:?}");
        }
    }
    // The attack touched C's offers only: everyone else sees everyone.
    for (me, other) in [(a, b), (b, a), (a, c), (b, c)] {
        assert!(opened(&s, me, other) > 100, "{me} sees {other}");
        assert!(s.report(me).all_intact());
    }
}

/// The server replays A's audio: from its 51st packet, every tenth packet's
/// payload is replaced by the one five packets before it (a frame B already
/// opened, re-sent in a fresh RTP packet the transport accepts). B refuses
/// each replay and counts it: exactly as many as the server made.
#[test]
fn frames_the_server_replays_are_dropped_and_counted() {
    let mut s = Sim::new();
    let r = room("hostile-replay");
    let a = s.join(&r);
    let b = s.join(&r);
    s.run(SECOND);
    let a_id = s.id(a);
    let replays = Arc::new(Mutex::new((0u64, Vec::<Arc<[u8]>>::new(), 0u64)));
    let state = replays.clone();
    s.sfu.set_tap(Box::new(move |ev| {
        if let TapEvent::Packet {
            from,
            source: TrackSource::Mic,
            payload,
        } = ev
        {
            if from != a_id {
                return;
            }
            let (seen, recent, made) = &mut *state.lock().unwrap();
            *seen += 1;
            recent.push(payload.clone());
            if *seen > 50 && *seen % 10 == 0 {
                *payload = recent[recent.len() - 6].clone();
                *made += 1;
            }
        }
    }));
    s.run(4 * SECOND);
    let made = replays.lock().unwrap().2;
    let st = stream(&s, b, a, TrackSource::Mic);
    assert!(made > 10, "the server replayed {made} frames");
    assert_eq!(st.replayed, made, "{st:?}");
    assert_eq!(st.corrupt, 0);
    assert_eq!(st.undecryptable, 0);
    assert!(st.frames > 150);
}

/// The host removes C; the server ignores the removal (C stays connected and
/// keeps receiving media), never says C left, and withholds the removal
/// commit from C. The host committed the removal itself: nothing A or B send
/// from then on opens for C, while A and B still see each other.
#[test]
fn a_removal_the_server_ignores_still_cuts_the_removed_member_off() {
    let mut s = Sim::new();
    let r = room("hostile-removal");
    let a = s.join(&r);
    let b = s.join(&r);
    let c = s.join(&r);
    s.run(3 * SECOND);
    assert!(opened(&s, c, a) > 50 && opened(&s, c, b) > 50);
    let c_id = s.id(c);
    s.from_client = Some(Box::new(|_, msg| !matches!(msg, ClientMsg::Remove { .. })));
    s.to_client = Some(Box::new(move |to, msg| match msg {
        ServerMsg::MlsCommit { .. } if to == c_id => vec![],
        ServerMsg::PeerLeft { .. } => vec![],
        other => vec![other],
    }));
    s.bots[a].core.send_signal(ClientMsg::Remove { peer: c_id });
    s.pump();
    s.run(SECOND / 10);
    let a_members = s.report(a).e2ee.members;
    assert_eq!(a_members, vec![s.id(a), s.id(b)], "A committed the removal");
    let (from_a, from_b) = (opened(&s, c, a), opened(&s, c, b));
    s.run(3 * SECOND);
    assert_eq!(
        opened(&s, c, a),
        from_a,
        "C opened A's frames after its removal"
    );
    assert_eq!(
        opened(&s, c, b),
        from_b,
        "C opened B's frames after its removal"
    );
    assert!(stream(&s, c, a, TrackSource::Mic).undecryptable > 100);
    assert!(!s.report(c).e2ee.removed, "C was never told");
    assert_eq!(s.report(b).e2ee.members, a_members);
    let before = opened(&s, a, b);
    s.run(SECOND);
    assert!(opened(&s, a, b) > before + 50, "A and B still meet");
}

/// D joins; the server withholds the commit that adds D from C. C stays in
/// the old epoch and keeps sealing with its key; once the others' grace for
/// that epoch ends, each of them counts C's frames as "behind" (what the page
/// shows on C's tile) and opens none, while the rest of the meeting goes on.
#[test]
fn a_sender_the_server_keeps_behind_is_shown_behind() {
    let mut s = Sim::new();
    let r = room("hostile-behind");
    let a = s.join(&r);
    let b = s.join(&r);
    let c = s.join(&r);
    s.run(3 * SECOND);
    let c_id = s.id(c);
    s.to_client = Some(Box::new(move |to, msg| match msg {
        ServerMsg::MlsCommit { .. } if to == c_id => vec![],
        other => vec![other],
    }));
    let d = s.join(&r);
    s.run(SECOND / 2);
    let epoch_c = s.report(c).e2ee.epoch;
    assert!(s.report(a).e2ee.epoch > epoch_c, "C missed the commit");
    s.run(SECOND);
    let mut before: HashMap<usize, u64> = HashMap::new();
    for me in [a, b, d] {
        before.insert(me, opened(&s, me, c));
    }
    s.run(2 * SECOND);
    for me in [a, b, d] {
        assert_eq!(
            opened(&s, me, c),
            before[&me],
            "{me} opened C's stale frames"
        );
        let st = stream(&s, me, c, TrackSource::Mic);
        assert!(st.behind > 50, "{me}: {st:?}");
    }
    let ab = opened(&s, a, b);
    s.run(SECOND);
    assert!(opened(&s, a, b) > ab + 50, "the meeting goes on");
    assert!(opened(&s, d, a) > 50, "D meets A");
}
