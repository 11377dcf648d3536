//! Hostile clients against the real binary (issue 16): each test plays one
//! attacker from the audit, and checks the bound it must hit, the error or
//! close code the attacker gets, and a bystander meeting on the same server
//! whose media and signaling keep flowing (its signaling round trip stays
//! within a generous bound). Peak server memory is read from /proc.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use aparte_bot::Bot;
use aparte_proto::{ClientMsg, ErrorCode, RoomId, ServerMsg, TrackSource};
use common::binary::{Server, data_dir, start};
use common::{config, eventually, host_key, join_json, room, set_passcode};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The attacker's address, and the bystanders' (another network).
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 66));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const PROBE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3));

/// Peak server memory allowed through each attack, in MB. The server with a
/// small meeting holds about 16 MB; argon2's two workers add about 40.
const FLOOD_BUDGET_MB: f64 = 64.0;
const PASSCODE_BUDGET_MB: f64 = 128.0;
const FANOUT_BUDGET_MB: f64 = 96.0;

/// A signaling round trip the bystanders must stay within while attacked.
/// Unloaded it is a millisecond or two; the bound is generous because the
/// machine is shared and the attack itself takes CPU.
const ROUND_TRIP_BOUND: Duration = Duration::from_millis(1500);

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A WebSocket to the server from `from`, not joined.
async fn ws_from(server: &Server, from: IpAddr) -> Ws {
    ws_to(Target::of(server), from).await.unwrap()
}

/// Where a server listens, for tasks that cannot borrow it.
#[derive(Debug, Clone)]
struct Target {
    addr: SocketAddr,
    url: String,
}

impl Target {
    fn of(server: &Server) -> Target {
        Target {
            addr: server.http_addr,
            url: server.ws_url.clone(),
        }
    }
}

/// A WebSocket to `to` from `from`, or why not.
async fn ws_to(to: Target, from: IpAddr) -> anyhow::Result<Ws> {
    let tcp = tokio::net::TcpSocket::new_v4()?;
    tcp.bind(SocketAddr::new(from, 0))?;
    let stream = tcp.connect(to.addr).await?;
    let (ws, _) = tokio_tungstenite::client_async(to.url.as_str(), stream).await?;
    Ok(ws)
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text.to_owned())).await.unwrap();
}

/// What the server said next (text parsed, close frame's code), or `None`.
#[derive(Debug, PartialEq)]
enum Heard {
    Msg(ServerMsg),
    Close(Option<CloseCode>),
}

async fn hear(ws: &mut Ws, within: Duration) -> Option<Heard> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match m {
            Ok(Message::Text(t)) => {
                return Some(Heard::Msg(aparte_proto::parse_server_msg(&t).unwrap()));
            }
            Ok(Message::Close(f)) => return Some(Heard::Close(f.map(|f| f.code))),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// The error codes and the close code a connection hears until it closes.
async fn until_closed(ws: &mut Ws, within: Duration) -> (Vec<ErrorCode>, Option<CloseCode>) {
    let mut codes = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match hear(ws, left).await {
            Some(Heard::Msg(ServerMsg::Error { code, .. })) => codes.push(code),
            Some(Heard::Msg(_)) => {}
            Some(Heard::Close(code)) => return (codes, code),
            None => return (codes, None),
        }
    }
}

/// A bystander meeting: a host and a guest, both publishing, lobby off.
struct Bystanders {
    bots: Vec<Bot>,
}

/// A bot named `name` joins `r` from `from`; the host (lobby off) if `host`.
async fn bot(server: &Server, r: &RoomId, from: IpAddr, name: &str, host: bool) -> Bot {
    let c = config(r, name, host, 250_000, Instant::now());
    Bot::join(&server.ws_url, r.clone(), from, c).await.unwrap()
}

impl Bystanders {
    async fn start(server: &Server, name: &str) -> Bystanders {
        let r = room(name);
        let host = bot(server, &r, BYSTANDER, "host", true).await;
        let guest = bot(server, &r, BYSTANDER, "guest", false).await;
        for b in [&host, &guest] {
            b.connected(Duration::from_secs(10)).await.unwrap();
        }
        let b = Bystanders {
            bots: vec![host, guest],
        };
        assert!(b.media_flows().await, "the bystanders' media starts");
        b
    }

    /// Both receive each other's camera, more than 10 frames in 3 s.
    async fn media_flows(&self) -> bool {
        let (a, b) = (&self.bots[0], &self.bots[1]);
        common::flowing(a, b.id(), TrackSource::Camera, 10).await
            && common::flowing(b, a.id(), TrackSource::Camera, 10).await
    }

    /// Neither was removed or stopped.
    async fn still_in(&self) -> bool {
        for b in &self.bots {
            if b.is_finished() || b.report().await.is_err() {
                return false;
            }
        }
        true
    }

    async fn check(&self, server: &Server) {
        assert!(self.still_in().await, "a bystander was removed");
        assert!(self.media_flows().await, "the bystanders' media stalled");
        let rtt = round_trip(server).await;
        assert!(
            rtt < ROUND_TRIP_BOUND,
            "a bystander's signaling round trip took {rtt:?}"
        );
    }
}

/// A signaling round trip from a third address: connect, send a message
/// that needs a join, hear `not_joined`.
async fn round_trip(server: &Server) -> Duration {
    let t = Instant::now();
    let mut ws = ws_from(server, PROBE).await;
    send(&mut ws, r#"{"v":1,"type":"leave"}"#).await;
    match hear(&mut ws, Duration::from_secs(10)).await {
        Some(Heard::Msg(ServerMsg::Error { code, .. })) => {
            assert_eq!(code, ErrorCode::NotJoined)
        }
        other => panic!("the probe heard {other:?}"),
    }
    t.elapsed()
}

/// The WebSocket handshake, written by hand so that the caller decides when
/// (and whether) anything is read.
async fn raw_upgrade(server: &Server, from: IpAddr) -> std::io::Result<TcpStream> {
    let tcp = tokio::net::TcpSocket::new_v4()?;
    tcp.bind(SocketAddr::new(from, 0))?;
    // A small receive buffer: a client that never reads is full at once.
    tcp.set_recv_buffer_size(4096)?;
    let mut s = tcp.connect(server.http_addr).await?;
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        server.http_addr
    );
    s.write_all(req.as_bytes()).await?;
    Ok(s)
}

/// `n` masked ping frames of 125 bytes each (the largest a control frame
/// may carry), back to back.
fn pings(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 131);
    let mask = [0x12, 0x34, 0x56, 0x78];
    for _ in 0..n {
        out.extend_from_slice(&[0x89, 0x80 | 125]);
        out.extend_from_slice(&mask);
        out.extend((0..125).map(|i| b'p' ^ mask[i % 4]));
    }
    out
}

/// Finding 1: a socket that never reads, sending pings as fast as it can
/// for 10 s (reconnecting whenever it is closed). The server closes each
/// flooding connection, its memory stays within a fixed budget, and the
/// bystanders do not notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_from_a_socket_that_never_reads() {
    let dir = data_dir("ping-flood");
    let server = start(&dir, &[]);
    let bystanders = Bystanders::start(&server, "ping-bystanders").await;
    let before = server.rss_mb();
    let flood = pings(512);
    let (mut connections, mut sent) = (0u64, 0u64);
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let Ok(mut s) = raw_upgrade(&server, ATTACKER).await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        connections += 1;
        while Instant::now() < end {
            match tokio::time::timeout(Duration::from_millis(500), s.write_all(&flood)).await {
                Ok(Ok(())) => sent += 512,
                // Closed by the server, or nothing taken for half a second.
                _ => break,
            }
        }
    }
    let peak = server.peak_mb();
    println!(
        "ping flood: {sent} pings on {connections} connections in 10 s; server RSS {before:.1} MB \
         before, peak {peak:.1} MB"
    );
    assert!(connections > 1, "the flooding connection was closed");
    assert!(
        peak < FLOOD_BUDGET_MB,
        "peak RSS {peak:.1} MB, {before:.1} MB before the flood"
    );
    bystanders.check(&server).await;

    // A flooder that reads hears why: rate_limited, then close code 1008.
    // (From another address: the first has flooded too often and is refused
    // new WebSockets for a while, which the next test shows.)
    let mut ws = ws_from(&server, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 67))).await;
    for _ in 0..300 {
        ws.send(Message::Ping(vec![1u8; 125].into())).await.unwrap();
    }
    let (codes, close) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert!(codes.contains(&ErrorCode::RateLimited), "{codes:?}");
    assert_eq!(close, Some(CloseCode::Policy));
    let _ = std::fs::remove_dir_all(dir);
}

/// Finding 7 (last item): 20 flooding connections, each from its own
/// address, sending junk messages and pings as fast as they can for 5 s and
/// reconnecting when closed. Each is closed; after three floods its network
/// is refused new WebSockets (429) for a while; the bystanders' round trip
/// stays within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_flooding_connections_are_closed() {
    let dir = data_dir("twenty-floods");
    let server = start(&dir, &[]);
    let bystanders = Bystanders::start(&server, "flood-bystanders").await;
    let floods = (0..20u8).map(|i| {
        let target = Target::of(&server);
        // A task each: flooders in one task would take turns, and a
        // flooder that waits its turn is no flood.
        tokio::spawn(async move {
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 3, i + 1));
            let (mut connections, mut ended, mut refused) = (0, 0, 0);
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                let Ok(ws) = ws_to(target.clone(), from).await else {
                    // Refused (429) after flooding too often: wait a little.
                    refused += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                connections += 1;
                let (mut tx, mut rx) = ws.split();
                let junk = r#"{"v":1,"type":"mls_app","data":"AAAA"}"#;
                let writer = async {
                    for n in 0u64.. {
                        let m = if n % 2 == 0 {
                            Message::Ping(vec![0u8; 125].into())
                        } else {
                            Message::text(junk)
                        };
                        if tx.feed(m).await.is_err() || (n % 64 == 0 && tx.flush().await.is_err()) {
                            break;
                        }
                    }
                };
                // Read only to see the end: a flooder still writing after
                // the server's close frame may lose it to the reset that
                // closing a socket with unread data sends.
                let reader = async { while let Some(Ok(_)) = rx.next().await {} };
                tokio::select! {
                    () = writer => ended += 1,
                    () = reader => ended += 1,
                    () = tokio::time::sleep_until(end.into()) => {}
                }
            }
            (connections, ended, refused)
        })
    });
    let (results, rtt) = tokio::join!(futures_util::future::join_all(floods), async {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        round_trip(&server).await
    });
    let results: Vec<(usize, usize, usize)> = results.into_iter().map(Result::unwrap).collect();
    let connections: usize = results.iter().map(|r| r.0).sum();
    let ended: usize = results.iter().map(|r| r.1).sum();
    let refused: usize = results.iter().map(|r| r.2).sum();
    println!(
        "20 flooders: {connections} connections in 5 s, {ended} closed by the server, {refused} \
         new connections refused; a bystander's round trip during the flood {rtt:?}"
    );
    // Each flooder is closed, comes back, and after three floods in a minute
    // its network gets no new WebSocket (429) for a while.
    assert!(
        results.iter().all(|&(n, e, r)| n == 3 && e == 3 && r >= 1),
        "every flooder was closed three times, then refused: {results:?}"
    );
    assert!(
        rtt < ROUND_TRIP_BOUND,
        "round trip during the flood {rtt:?}"
    );
    bystanders.check(&server).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Finding 2: 40 concurrent wrong guesses, from one address and then from
/// 40 addresses: at most 5 are checked per minute for the room, whatever the
/// number of sockets or addresses; the others are refused before argon2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcode_guesses_are_counted_before_they_are_checked() {
    let dir = data_dir("guesses");
    let server = start(&dir, &[]);
    let bystanders = Bystanders::start(&server, "guess-bystanders").await;
    let r = room("guessed-room");
    let hc = config(&r, "host", true, 100_000, Instant::now());
    let host = Bot::join(&server.ws_url, r.clone(), BYSTANDER, hc)
        .await
        .unwrap();
    host.connected(Duration::from_secs(10)).await.unwrap();
    assert!(set_passcode(&host, "the right one").await);

    let guess = |from: IpAddr| {
        let (target, r) = (Target::of(&server), r.clone());
        async move {
            let mut ws = ws_to(target, from).await.unwrap();
            send(&mut ws, &join_json(&r, r#","passcode":"wrong guess""#)).await;
            match hear(&mut ws, Duration::from_secs(20)).await {
                Some(Heard::Msg(ServerMsg::Error { code, .. })) => code,
                other => panic!("a guess heard {other:?}"),
            }
        }
    };
    let tally = |codes: &[ErrorCode]| {
        let wrong = codes
            .iter()
            .filter(|&&c| c == ErrorCode::WrongPasscode)
            .count();
        let limited = codes
            .iter()
            .filter(|&&c| matches!(c, ErrorCode::RateLimited | ErrorCode::ServerBusy))
            .count();
        (wrong, limited)
    };
    let one_address: Vec<ErrorCode> =
        futures_util::future::join_all((0..40).map(|_| guess(ATTACKER))).await;
    let (wrong, limited) = tally(&one_address);
    println!("40 concurrent guesses from one address: {wrong} checked, {limited} refused");
    assert!(wrong <= 5, "{one_address:?}");
    assert_eq!(wrong + limited, 40, "{one_address:?}");

    // From 40 addresses: the room's own limit holds (its 5 are spent).
    let many: Vec<ErrorCode> = futures_util::future::join_all(
        (0..40u8).map(|i| guess(IpAddr::V4(Ipv4Addr::new(127, 0, 1, i + 1)))),
    )
    .await;
    let (wrong_many, limited_many) = tally(&many);
    println!(
        "40 concurrent guesses from 40 addresses: {wrong_many} checked, {limited_many} refused"
    );
    assert!(wrong + wrong_many <= 5, "{many:?}");
    assert_eq!(wrong_many + limited_many, 40, "{many:?}");
    bystanders.check(&server).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Finding 3: 20 connections, each the host of a room it made itself,
/// setting passcodes as fast as they can for 5 s. argon2 runs a few at a
/// time; memory stays within a fixed budget; the hosts are refused with
/// `rate_limited` or `server_busy`; the bystanders do not notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_hosts_setting_passcodes_nonstop() {
    let dir = data_dir("passcode-sets");
    let server = start(&dir, &[]);
    let bystanders = Bystanders::start(&server, "set-bystanders").await;
    let before = server.rss_mb();
    let hosts = (0..20u8).map(|i| {
        let target = Target::of(&server);
        // A task each, so that each host sends at its own pace.
        tokio::spawn(async move {
            let r = room(&format!("self-made-{i}"));
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 2, i + 1));
            let ws = ws_to(target, from).await.unwrap();
            let (mut tx, mut rx) = ws.split();
            let key = host_key(&r);
            let join = join_json(&r, &format!(r#","key":"{}""#, key.as_str()));
            tx.send(Message::text(join)).await.unwrap();
            // What the server answers: passcodes set (the room's settings
            // change) and refusals.
            let listen = tokio::spawn(async move {
                let (mut set, mut refused) = (0usize, 0usize);
                while let Ok(Some(Ok(m))) =
                    tokio::time::timeout(Duration::from_secs(3), rx.next()).await
                {
                    let Message::Text(t) = m else { continue };
                    match aparte_proto::parse_server_msg(&t) {
                        Ok(ServerMsg::RoomUpdated { room }) if room.passcode => set += 1,
                        Ok(ServerMsg::Error {
                            code: ErrorCode::RateLimited | ErrorCode::ServerBusy,
                            ..
                        }) => refused += 1,
                        _ => {}
                    }
                }
                (set, refused)
            });
            let mut asked = 0;
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                let set =
                    format!(r#"{{"v":1,"type":"update_room","passcode":"passcode {asked}"}}"#);
                if tx.send(Message::text(set)).await.is_err() {
                    break;
                }
                asked += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let (set, refused) = listen.await.unwrap();
            (asked, set, refused)
        })
    });
    let results: Vec<(usize, usize, usize)> = futures_util::future::join_all(hosts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let peak = server.peak_mb();
    let asked: usize = results.iter().map(|r| r.0).sum();
    let set: usize = results.iter().map(|r| r.1).sum();
    let refused: usize = results.iter().map(|r| r.2).sum();
    println!(
        "20 hosts: {asked} passcode changes asked, {set} made, {refused} refusals heard; server \
         RSS {before:.1} MB before, peak {peak:.1} MB"
    );
    // argon2 ran at most 10 times per host (10 changes a minute per room and
    // per network), and every host was told it was refused.
    assert!(
        results.iter().all(|&(_, s, r)| s <= 10 && r >= 1),
        "per host (asked, set, refusals heard): {results:?}"
    );
    assert!(
        set >= 20,
        "each host could set its passcode at first: {results:?}"
    );
    assert!(
        peak < PASSCODE_BUDGET_MB,
        "peak RSS {peak:.1} MB, {before:.1} MB before"
    );
    bystanders.check(&server).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Finding 4: a member floods the group with application messages at the
/// size limit, a guest outside the group floods key packages, and a guest
/// never reads. The flooders are refused (`too_large` past the size caps,
/// `rate_limited` past their byte budgets), no bystander is removed, and the
/// server's peak memory stays within its budget with the sleeper connected
/// (the byte bound of a connection's queue is `media::tests`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_participant_cannot_get_the_others_removed() {
    let dir = data_dir("fanout");
    let server = start(&dir, &[]);
    let bystanders = Bystanders::start(&server, "fanout-room").await;
    let r: RoomId = room("fanout-room");
    let epoch = Instant::now();
    let flooder = Bot::join(
        &server.ws_url,
        r.clone(),
        ATTACKER,
        config(&r, "flooder", false, 100_000, epoch),
    )
    .await
    .unwrap();
    flooder.connected(Duration::from_secs(10)).await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            flooder.report().await.unwrap().e2ee.members.len() == 3
        })
        .await,
        "the flooder is in the group"
    );
    // A guest that never reads (joins, then only holds its socket).
    let mut sleeper = raw_upgrade(&server, ATTACKER).await.unwrap();
    sleeper
        .write_all(&masked_text(&join_json(&r, "")))
        .await
        .unwrap();
    // A guest outside the group, sending key packages.
    let mut kp = ws_from(&server, ATTACKER).await;
    send(&mut kp, &join_json(&r, "")).await;
    let before = server.rss_mb();

    // Over the size caps: refused as too large.
    let huge = "A".repeat(250 * 1024);
    let mut probe = ws_from(&server, ATTACKER).await;
    send(&mut probe, &join_json(&r, "")).await;
    let over = format!(r#"{{"v":1,"type":"mls_app","data":"{huge}"}}"#);
    send(&mut probe, &over).await;
    let mut heard_too_large = false;
    while let Some(h) = hear(&mut probe, Duration::from_secs(2)).await {
        if let Heard::Msg(ServerMsg::Error { code, .. }) = h {
            heard_too_large |= code == ErrorCode::TooLarge;
            break;
        }
    }
    assert!(
        heard_too_large,
        "a 250 KiB application message is too large"
    );

    // At the caps, 50 a second for 5 s.
    let app = "A".repeat(aparte_proto::MAX_APP_BYTES);
    let package = "A".repeat(aparte_proto::MAX_KEY_PACKAGE_BYTES);
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        flooder
            .signal(ClientMsg::MlsApp {
                data: app.clone(),
                to: vec![],
            })
            .await
            .unwrap();
        send(
            &mut kp,
            &format!(r#"{{"v":1,"type":"mls_key_package","data":"{package}"}}"#),
        )
        .await;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(1), kp.next()).await {}
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = server.peak_mb();
    println!(
        "fan-out flood: server RSS {before:.1} MB before, peak {peak:.1} MB; sleeper queue bound \
         {} MiB",
        aparte_server::media::CONN_QUEUE_BYTES >> 20
    );
    let rep = flooder.report().await.unwrap();
    assert!(
        rep.control.errors.contains(&ErrorCode::RateLimited),
        "the flooder was refused: {:?}",
        rep.control.errors
    );
    assert!(
        peak < FANOUT_BUDGET_MB,
        "peak RSS {peak:.1} MB, {before:.1} before"
    );
    bystanders.check(&server).await;
    drop(sleeper);
    let _ = std::fs::remove_dir_all(dir);
}

/// A masked text frame (clients must mask).
fn masked_text(text: &str) -> Vec<u8> {
    let mask = [0x0a, 0x0b, 0x0c, 0x0d];
    let len = text.len();
    let mut out = vec![0x81];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Finding 5: a receiver asking for keyframes every 50 ms for 10 s does not
/// set the publisher's keyframe rate: one request per 2 s passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_asking_for_keyframes_nonstop() {
    let dir = data_dir("keyframes");
    let server = start(&dir, &[]);
    let bystanders = Bystanders::start(&server, "keyframe-room").await;
    let (publisher, asker) = (&bystanders.bots[0], &bystanders.bots[1]);
    let before = publisher.report().await.unwrap().keyframe_requests_received;
    let end = Instant::now() + Duration::from_secs(10);
    let mut asked = 0;
    while Instant::now() < end {
        assert!(
            asker
                .request_keyframe(publisher.id(), TrackSource::Camera)
                .await
                .unwrap()
        );
        asked += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let relayed = publisher.report().await.unwrap().keyframe_requests_received - before;
    println!("keyframe requests: {asked} asked in 10 s, {relayed} reached the publisher");
    assert!((3..=7).contains(&relayed), "{relayed} relayed of {asked}");
    bystanders.check(&server).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Finding 6: idle TCP connections, partial headers, idle un-joined
/// WebSockets and oversized headers are all closed; connections per address
/// are capped, with 503 past the cap, and another address is unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_crowding_connections_are_closed() {
    let dir = data_dir("timeouts");
    let server = start(
        &dir,
        &["--idle-timeout", "2", "--max-connections-per-address", "16"],
    );
    let bystanders = Bystanders::start(&server, "timeout-room").await;
    let addr = server.http_addr;
    let connect = |from: IpAddr| async move {
        let tcp = tokio::net::TcpSocket::new_v4().unwrap();
        tcp.bind(SocketAddr::new(from, 0)).unwrap();
        tcp.connect(addr).await.unwrap()
    };
    // Reads until the server closes; what it said, and how long it took.
    async fn closed_within(mut s: TcpStream, within: Duration) -> Option<(Duration, String)> {
        let t = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at((t + within).into(), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    return Some((t.elapsed(), String::from_utf8_lossy(&got).into_owned()));
                }
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Err(_) => return None,
            }
        }
    }
    // An idle TCP connection.
    let idle = connect(ATTACKER).await;
    // Half a request head, never finished.
    let mut partial = connect(ATTACKER).await;
    partial
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    // A WebSocket that never joins.
    let mut unjoined = ws_from(&server, ATTACKER).await;
    let (a, b) = tokio::join!(
        closed_within(idle, Duration::from_secs(6)),
        closed_within(partial, Duration::from_secs(6)),
    );
    let (a, b) = (a.expect("idle TCP closed"), b.expect("partial head closed"));
    println!(
        "idle TCP closed after {:?}, partial head after {:?}",
        a.0, b.0
    );
    assert!(b.1.is_empty() || b.1.starts_with("HTTP/1.1 408"), "{}", b.1);
    let (codes, close) = until_closed(&mut unjoined, Duration::from_secs(6)).await;
    assert_eq!(codes, vec![ErrorCode::Timeout]);
    assert_eq!(close, Some(CloseCode::Policy));

    // A 400 KB header: refused (431), and the connection closed.
    let mut big = connect(ATTACKER).await;
    let head = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "b".repeat(400_000)
    );
    let _ = big.write_all(head.as_bytes()).await;
    let (_, answer) = closed_within(big, Duration::from_secs(6))
        .await
        .expect("closed");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:.60}");

    // Connections per address: 16 held open, the 17th refused with 503.
    // (The connections above are gone: closed by the server, and the
    // WebSocket's closing handshake ends when the client goes.)
    drop(unjoined);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = connect(ATTACKER).await;
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(s);
    }
    let extra = connect(ATTACKER).await;
    let (_, answer) = closed_within(extra, Duration::from_secs(3))
        .await
        .expect("closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    // Another address is not affected.
    let mut other = connect(PROBE).await;
    other
        .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    other.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200");
    drop(other);
    bystanders.check(&server).await;
    // Held keep-alive connections are closed once idle.
    for s in held {
        assert!(closed_within(s, Duration::from_secs(6)).await.is_some());
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Finding 7: one address cannot fill a lobby; persistent rooms are capped
/// server-wide (`quota_exceeded`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lobby_places_and_persistent_rooms_are_bounded() {
    let dir = data_dir("capacity");
    let server = start(&dir, &["--max-persistent-rooms", "2"]);
    let bystanders = Bystanders::start(&server, "capacity-bystanders").await;
    let r = room("lobby-fill");
    let mut hc = config(&r, "host", true, 100_000, Instant::now());
    hc.open_room = false;
    let host = Bot::join(&server.ws_url, r.clone(), BYSTANDER, hc)
        .await
        .unwrap();
    host.connected(Duration::from_secs(10)).await.unwrap();
    let mut waiting = Vec::new();
    let mut refused = None;
    for i in 0..20 {
        let mut ws = ws_from(&server, ATTACKER).await;
        send(&mut ws, &join_json(&r, "")).await;
        match hear(&mut ws, Duration::from_secs(5)).await {
            Some(Heard::Msg(ServerMsg::Waiting { .. })) => waiting.push(ws),
            Some(Heard::Msg(ServerMsg::Error { code, .. })) => {
                refused = Some((i, code));
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(refused, Some((10, ErrorCode::RoomFull)));
    // Someone else still gets a place.
    let mut real = ws_from(&server, PROBE).await;
    send(&mut real, &join_json(&r, "")).await;
    assert!(matches!(
        hear(&mut real, Duration::from_secs(5)).await,
        Some(Heard::Msg(ServerMsg::Waiting { .. }))
    ));

    // Persistent rooms: two are kept, the third is refused.
    let mut outcomes = Vec::new();
    for i in 0..3 {
        let r = room(&format!("persist-{i}"));
        let mut ws = ws_from(&server, ATTACKER).await;
        let key = host_key(&r);
        send(
            &mut ws,
            &join_json(&r, &format!(r#","key":"{}""#, key.as_str())),
        )
        .await;
        send(&mut ws, r#"{"v":1,"type":"update_room","persistent":true}"#).await;
        let mut outcome = None;
        while let Some(h) = hear(&mut ws, Duration::from_secs(5)).await {
            match h {
                Heard::Msg(ServerMsg::RoomUpdated { room }) if room.persistent => {
                    outcome = Some(Ok(()));
                    break;
                }
                Heard::Msg(ServerMsg::Error { code, .. }) => {
                    outcome = Some(Err(code));
                    break;
                }
                _ => {}
            }
        }
        outcomes.push(outcome);
        // Leaving ends the meeting; the room's record stays.
        send(&mut ws, r#"{"v":1,"type":"leave"}"#).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        outcomes,
        vec![
            Some(Ok(())),
            Some(Ok(())),
            Some(Err(ErrorCode::QuotaExceeded))
        ]
    );
    bystanders.check(&server).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Finding 8: a request naming a host the server was not configured for is
/// refused (DNS rebinding); IP addresses, localhost and configured names pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_names_are_refused() {
    let dir = data_dir("rebinding");
    let server = start(&dir, &["--public-name", "meet.example.org"]);
    let status = |host: &'static str| {
        let addr = server.http_addr;
        async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let req = format!("GET /ws HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes()).await.unwrap();
            let mut buf = String::new();
            s.read_to_string(&mut buf).await.unwrap();
            buf.split_whitespace().nth(1).unwrap_or("").to_owned()
        }
    };
    assert_eq!(status("attacker.example").await, "421");
    assert_eq!(status("attacker.example:8080").await, "421");
    // /ws without an upgrade is refused by the WebSocket layer (400), not
    // the host check.
    for ok in ["127.0.0.1", "localhost:8080", "meet.example.org"] {
        assert_ne!(status(ok).await, "421", "{ok}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Finding 10: the small items that a hostile reader of the server could
/// use. Participant ids are random; a message over 1 MiB closes with 1009;
/// the self-signed certificate is the same after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_oversized_frames_and_the_certificate() {
    let dir = data_dir("small-items");
    let server = start(&dir, &[]);
    let r = room("ids-room");
    let host = Bot::join(
        &server.ws_url,
        r.clone(),
        BYSTANDER,
        config(&r, "h", true, 100_000, Instant::now()),
    )
    .await
    .unwrap();
    let mut ids = vec![host.id().0];
    for _ in 0..5 {
        let mut ws = ws_from(&server, BYSTANDER).await;
        send(&mut ws, &join_json(&r, "")).await;
        loop {
            match hear(&mut ws, Duration::from_secs(5)).await {
                Some(Heard::Msg(ServerMsg::Welcome { you, .. })) => {
                    ids.push(you.0);
                    break;
                }
                Some(_) => {}
                None => panic!("no welcome"),
            }
        }
    }
    let sorted = ids.windows(2).all(|w| w[0] < w[1]);
    let close_together = ids.windows(2).all(|w| w[0].abs_diff(w[1]) < 1000);
    assert!(!(sorted && close_together), "ids look sequential: {ids:?}");
    assert!(ids.iter().all(|&id| id < 1 << 53), "{ids:?}");

    let mut ws = ws_from(&server, BYSTANDER).await;
    let big = "x".repeat(1024 * 1024 + 10);
    let _ = ws.send(Message::text(big)).await;
    let (_, close) = until_closed(&mut ws, Duration::from_secs(5)).await;
    assert_eq!(close, Some(CloseCode::Size));
    drop(server);

    let tls_dir = data_dir("self-signed");
    let fingerprint = |s: &Server| {
        let out = s.output();
        out.split("fingerprint ")
            .nth(1)
            .map(|f| f.split_whitespace().next().unwrap_or("").to_owned())
            .expect("fingerprint printed")
    };
    let first = start(&tls_dir, &["--tls-self-signed"]);
    let f1 = fingerprint(&first);
    drop(first);
    let second = start(&tls_dir, &["--tls-self-signed"]);
    assert_eq!(
        fingerprint(&second),
        f1,
        "the same certificate after a restart"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tls_dir.join("tls-self-signed.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    drop(second);
    let _ = std::fs::remove_dir_all(tls_dir);
    let _ = std::fs::remove_dir_all(dir);
}
