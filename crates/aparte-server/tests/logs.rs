//! Privacy in operations: the real server binary, with its default
//! configuration, carries a whole bot meeting (lobby with names, a passcode,
//! wrong guesses, a promotion, chat, a mute request, a removal, a persistent
//! room, the end) for bots on another address; then every line it logged, and
//! the database it kept, are searched for the names, the addresses, the chat
//! text, the passcode, the link secret and every capability: none is found.
//! With `--log-format json`, every log line is one JSON object.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use aparte_bot::Bot;
use aparte_proto::{ClientMsg, ErrorCode, RoomId};
use common::binary::{Server, start};
use common::{config, eventually, host_key, link, room, server_error};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
const NAMES: [&str; 3] = ["Zéphyrine Quillard", "Barnabé Ostrowski", "Ondine Vasseur"];
const CHAT: &str = "meet me at the blue door at noon";
const PASSCODE: &str = "correct horse battery";
const WRONG: &str = "incorrect donkey";

async fn join(server: &Server, r: &RoomId, c: aparte_bot::BotConfig) -> anyhow::Result<Bot> {
    Bot::join(&server.ws_url, r.clone(), CLIENT, c).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_reaches_the_logs() {
    let logs = meeting_then_search("log-privacy", &[]).await;
    assert!(
        !logs.contains("DEBUG") && !logs.contains("TRACE"),
        "the default level is info"
    );
}

/// At `trace`, the most any filter can ask for: still nothing personal, no
/// secret and no SDP credential, from our code or a dependency's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_personal_reaches_the_logs_at_trace() {
    let logs = meeting_then_search("log-trace", &["--log", "trace"]).await;
    assert!(
        logs.contains("TRACE") || logs.contains("DEBUG"),
        "the server logged at the level asked"
    );
    for sdp in ["ice-pwd", "ice-ufrag", "a=fingerprint", "a=candidate"] {
        for line in logs.lines() {
            assert!(!line.contains(sdp), "SDP credential logged: {line}");
        }
    }
}

/// Runs a whole meeting against the binary started with `args`, then
/// searches its logs and its database for every secret of the meeting.
/// Returns the logs.
async fn meeting_then_search(room_name: &str, args: &[&str]) -> String {
    let data_dir = std::env::temp_dir().join(format!("aparte-{room_name}-{}", std::process::id()));
    let server = start(&data_dir, args);
    let epoch = Instant::now();
    let r = room(room_name);

    // The host opens the room (lobby on), admits whoever waits, and sets a
    // passcode and persistence.
    let mut hc = config(&r, NAMES[0], true, 250_000, epoch);
    hc.open_room = false;
    hc.admit_all = true;
    let host = join(&server, &r, hc).await.unwrap();
    host.connected(Duration::from_secs(10)).await.unwrap();
    host.signal(ClientMsg::UpdateRoom {
        lobby: None,
        locked: None,
        persistent: Some(true),
        passcode: Some(PASSCODE.to_owned()),
    })
    .await
    .unwrap();
    let has_passcode = || async {
        host.report()
            .await
            .unwrap()
            .control
            .room
            .is_some_and(|s| s.passcode && s.persistent)
    };
    assert!(eventually(Duration::from_secs(5), has_passcode).await);

    // A wrong guess, then two guests through the lobby with the passcode.
    let mut wrong = config(&r, NAMES[2], false, 250_000, epoch);
    wrong.passcode = Some(WRONG.to_owned());
    let Err(e) = join(&server, &r, wrong).await else {
        panic!("a wrong passcode is refused")
    };
    assert_eq!(server_error(&e), Some(ErrorCode::WrongPasscode));
    let mut guests = Vec::new();
    for name in &NAMES[1..] {
        let mut c = config(&r, name, false, 250_000, epoch);
        c.passcode = Some(PASSCODE.to_owned());
        let g = join(&server, &r, c).await.unwrap();
        g.admitted(Duration::from_secs(10)).await.unwrap();
        g.connected(Duration::from_secs(10)).await.unwrap();
        guests.push(g);
    }
    let all = eventually(Duration::from_secs(10), || async {
        let mut ok = true;
        for g in &guests {
            ok &= g.report().await.unwrap().e2ee.members.len() == 3;
        }
        ok
    })
    .await;
    assert!(all, "everyone in the group");

    // The meeting: a promotion, chat, a mute request, a removal, the end.
    host.signal(ClientMsg::Promote {
        peer: guests[0].id(),
    })
    .await
    .unwrap();
    host.send_chat(CHAT).await.unwrap();
    let chatted = eventually(Duration::from_secs(5), || async {
        guests[0]
            .report()
            .await
            .unwrap()
            .e2ee
            .chats()
            .iter()
            .any(|(_, t)| t == CHAT)
    })
    .await;
    assert!(chatted, "the chat arrived");
    host.signal(ClientMsg::Mute { peer: None }).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let g0 = guests[0].report().await.unwrap();
    let g1 = guests[1].report().await.unwrap();
    assert!(g1.control.muted);
    let moderator_key = g0.control.moderator_key.clone().expect("promoted");
    let seats: Vec<String> = [&g0, &g1]
        .iter()
        .map(|rep| rep.control.seat.clone().unwrap().as_str().to_owned())
        .collect();
    host.signal(ClientMsg::Remove {
        peer: guests[1].id(),
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    host.signal(ClientMsg::End).await.unwrap();
    for g in guests {
        let _ = tokio::time::timeout(Duration::from_secs(5), g.finished()).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), host.finished()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let logs = server.logs.lock().unwrap().clone();
    drop(server);
    assert!(
        logs.contains("waiting in the lobby") && logs.contains("joined"),
        "the logs were captured:\n{logs}"
    );
    let mut secrets: Vec<(String, String)> = vec![
        ("chat".into(), CHAT.into()),
        ("passcode".into(), PASSCODE.into()),
        ("wrong passcode".into(), WRONG.into()),
        ("client address".into(), CLIENT.to_string()),
        ("link secret".into(), link().encode()),
        ("host key".into(), host_key(&r).as_str().to_owned()),
        ("moderator key".into(), moderator_key.as_str().to_owned()),
        ("room id".into(), r.as_str().to_owned()),
    ];
    for n in NAMES {
        secrets.push(("name".into(), n.to_owned()));
    }
    for s in seats {
        secrets.push(("seat".into(), s));
    }
    for (what, secret) in &secrets {
        for line in logs.lines() {
            assert!(!line.contains(secret.as_str()), "{what} logged: {line}");
        }
    }

    // What the server kept of the persistent room: hashes and a verifier.
    let db =
        std::fs::read(data_dir.join("aparte.sqlite3")).expect("the persistent room was stored");
    let contains = |needle: &str| db.windows(needle.len()).any(|w| w == needle.as_bytes());
    for (what, secret) in &secrets {
        assert!(!contains(secret), "{what} stored in the database");
    }
    let _ = std::fs::remove_dir_all(&data_dir);
    logs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line() {
    let data_dir = std::env::temp_dir().join(format!("aparte-json-{}", std::process::id()));
    let server = start(&data_dir, &["--log-format", "json"]);
    let r = room("json-logs");
    let host = join(&server, &r, config(&r, "J", true, 100_000, Instant::now()))
        .await
        .unwrap();
    host.connected(Duration::from_secs(10)).await.unwrap();
    host.leave().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let logs = server.logs.lock().unwrap().clone();
    drop(server);
    let events: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| !l.starts_with("Aparté is ready"))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(events.len() >= 3, "{logs}");
    for e in &events {
        assert!(e["timestamp"].is_string() && e["level"].is_string(), "{e}");
        assert!(e["fields"]["message"].is_string(), "{e}");
    }
    assert!(
        events
            .iter()
            .any(|e| e["fields"]["message"] == "signaling connection opened"
                && e["fields"]["client"] == "-"),
        "the client address is a field, and hidden"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}
