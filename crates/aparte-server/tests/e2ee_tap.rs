//! A blind server: bots hold a real E2EE meeting (MLS group, SFrame frames,
//! names and chat as MLS application messages) while a tap in the server
//! records the RTP payload of every forwarded packet (after SRTP) and every
//! signaling message. None contains the plaintext marker of the bots' frames
//! (it sits whole in each frame's first packet, 39 bytes in), their
//! names, their chat, or the link secret — and the bots themselves read all of it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aparte_bot::Bot;
use aparte_bot::payload::MARKER;
use aparte_proto::{ParticipantId, TrackSource};
use aparte_sfu::TapEvent;
use common::{LOOPBACK, eventually, frames, link, room};

#[derive(Default)]
struct Recorded {
    packets: Vec<Vec<u8>>,
    signaling: Vec<String>,
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_handles_only_ciphertext() {
    let rec = Arc::new(Mutex::new(Recorded::default()));
    let sink = rec.clone();
    let tap: aparte_sfu::Tap = Box::new(move |ev| {
        let mut r = sink.lock().unwrap();
        match ev {
            TapEvent::Packet { payload, .. } => r.packets.push(payload.to_vec()),
            TapEvent::FromClient(m) => r.signaling.push(m.to_json()),
            TapEvent::ToClient { msg, .. } => r.signaling.push(msg.to_json()),
        }
    });
    let server = aparte_server::start_with_tap(aparte_server::Config::ephemeral(), Some(tap))
        .await
        .unwrap();
    let epoch = Instant::now();
    let r = room("blind-server-room");
    let names = ["Zéphyrine Quillard", "Barnabé Ostrowski", "Ondine Vasseur"];
    let mut bots = Vec::new();
    for (i, name) in names.into_iter().enumerate() {
        let config = common::config(&r, name, i == 0, 250_000, epoch);
        bots.push(
            Bot::join(&server.ws_url(), r.clone(), LOOPBACK, config)
                .await
                .unwrap(),
        );
    }
    for b in &bots {
        b.connected(Duration::from_secs(10)).await.unwrap();
    }
    // Everyone ends up in one group with the same code and reads everyone's name.
    let mut all: Vec<ParticipantId> = bots.iter().map(Bot::id).collect();
    all.sort();
    let converged = eventually(Duration::from_secs(10), || async {
        let mut codes = Vec::new();
        for b in &bots {
            let rep = b.report().await.unwrap();
            let mut members = rep.e2ee.members.clone();
            members.sort();
            if members != all {
                return false;
            }
            codes.push(rep.e2ee.security_code.clone());
        }
        codes.windows(2).all(|w| w[0] == w[1]) && codes[0].is_some()
    })
    .await;
    assert!(converged, "all bots in one group with one security code");

    let chat = "meet me at the blue door at noon";
    bots[0].send_chat(chat).await.unwrap();
    let got_chat = eventually(Duration::from_secs(5), || async {
        for b in &bots[1..] {
            let chats = b.report().await.unwrap().e2ee.chats();
            if !chats
                .iter()
                .any(|(from, t)| *from == bots[0].id() && t == chat)
            {
                return false;
            }
        }
        true
    })
    .await;
    assert!(got_chat, "the chat reached the other bots");
    tokio::time::sleep(Duration::from_secs(2)).await;

    for (i, b) in bots.iter().enumerate() {
        let rep = b.report().await.unwrap();
        assert!(rep.all_intact(), "{rep:?}");
        for (j, other) in bots.iter().enumerate().filter(|&(j, _)| j != i) {
            assert_eq!(rep.e2ee.name_of(other.id()).as_deref(), Some(names[j]));
            // Once: a member announces itself to everyone when it enters the
            // group, then only to those who join after it.
            let announcements = rep
                .e2ee
                .messages
                .iter()
                .filter(|(from, text)| *from == other.id() && text.contains(r#""t":"state""#))
                .count();
            assert_eq!(announcements, 1, "{} heard {}", b.id(), other.id());
            assert!(frames(b, other.id(), TrackSource::Camera).await > 40);
        }
        for s in &rep.streams {
            // Frames in flight across an epoch change may find no key yet.
            assert!(s.undecryptable <= 10, "{s:?}");
        }
    }

    for b in bots {
        b.leave().await.unwrap();
    }
    server.stop().await;

    let rec = rec.lock().unwrap();
    assert!(
        rec.packets.len() > 500,
        "the tap saw the media ({} packets)",
        rec.packets.len()
    );
    assert!(
        rec.signaling.iter().any(|m| m.contains("mls_app")),
        "the tap saw the MLS traffic"
    );
    let secret = link().encode();
    for f in &rec.packets {
        assert!(!contains(f, MARKER), "a media packet is plaintext");
    }
    for m in &rec.signaling {
        for name in names {
            assert!(!m.contains(name), "a name crossed the server in clear: {m}");
        }
        assert!(!m.contains(chat), "chat crossed the server in clear");
        assert!(!m.contains(&secret), "the link secret reached the server");
        assert!(!contains(m.as_bytes(), MARKER));
    }
}
