//! Helpers shared by the server's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

pub mod binary;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aparte_bot::{Bot, BotConfig};
use aparte_proto::{ParticipantId, RoomId, Token, TrackSource};
use aparte_server::{Config, ServerHandle};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub async fn server() -> ServerHandle {
    aparte_server::start(Config::ephemeral()).await.unwrap()
}

/// The link secret of the test meetings.
pub fn link() -> aparte_e2ee::LinkSecret {
    aparte_e2ee::LinkSecret::from_bytes([5; 16])
}

/// Host keys of the rooms [`room`] made, so a test's first bot can open them.
static HOST_KEYS: Mutex<Vec<(RoomId, Token)>> = Mutex::new(Vec::new());

/// The room whose host key is derived from `name` (rooms exist only as the
/// hash of a host key).
pub fn room(name: &str) -> RoomId {
    let mut bytes = [b'.'; 32];
    for (b, c) in bytes.iter_mut().zip(name.bytes()) {
        *b = c;
    }
    let key = aparte_proto::keys::token_from_bytes(bytes);
    let id = aparte_proto::room_for_host_key(&key);
    HOST_KEYS.lock().unwrap().push((id.clone(), key));
    id
}

/// The host key of a room made by [`room`].
pub fn host_key(room: &RoomId) -> Token {
    let keys = HOST_KEYS.lock().unwrap();
    keys.iter()
        .find(|(r, _)| r == room)
        .map(|(_, k)| k.clone())
        .expect("rooms come from room()")
}

/// A bot's configuration named `name`; the host of `room` (lobby off) when
/// `host` is set.
pub fn config(room: &RoomId, name: &str, host: bool, bps: u32, epoch: Instant) -> BotConfig {
    let mut config = BotConfig::new(bps, epoch, link());
    config.name = name.to_owned();
    if host {
        config = config.hosting(host_key(room));
    }
    config
}

/// `n` bots publishing `bps` of video and audio join `room`, all at once.
pub async fn bots(
    server: &ServerHandle,
    room: &RoomId,
    n: usize,
    bps: u32,
    epoch: Instant,
) -> Vec<Bot> {
    let url = server.ws_url();
    // The host opens the room and turns its lobby off; the others then walk in.
    let host = Bot::join(
        &url,
        room.clone(),
        LOOPBACK,
        config(room, &format!("{room}-bot-0"), true, bps, epoch),
    )
    .await
    .unwrap();
    let joins = (1..n).map(|i| {
        let config = config(room, &format!("{room}-bot-{i}"), false, bps, epoch);
        Bot::join(&url, room.clone(), LOOPBACK, config)
    });
    let mut bots = vec![host];
    bots.extend(
        futures_util::future::join_all(joins)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap(),
    );
    for b in &bots {
        b.connected(Duration::from_secs(10)).await.unwrap();
    }
    bots
}

/// Frames `bot` received so far of `peer`'s `source`.
pub async fn frames(bot: &Bot, peer: ParticipantId, source: TrackSource) -> u64 {
    bot.report()
        .await
        .unwrap()
        .stream(peer, source)
        .map_or(0, |s| s.frames)
}

/// `host` sets the room's passcode; true once its room says it has one
/// (within 5 s).
pub async fn set_passcode(host: &Bot, passcode: &str) -> bool {
    host.signal(aparte_proto::ClientMsg::UpdateRoom {
        lobby: None,
        locked: None,
        persistent: None,
        passcode: Some(passcode.to_owned()),
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(5), || async {
        host.report()
            .await
            .unwrap()
            .control
            .room
            .is_some_and(|s| s.passcode)
    })
    .await
}

/// Waits until `cond` holds, checking every 50 ms, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond().await
}

/// A scripted signaling client, speaking raw JSON.
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens a signaling connection from `from` (a loopback address) without
/// joining anything.
pub async fn raw_ws(server: &ServerHandle, from: IpAddr) -> Ws {
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.bind(std::net::SocketAddr::new(from, 0)).unwrap();
    let stream = tcp.connect(server.http_addr).await.unwrap();
    let (ws, _) = tokio_tungstenite::client_async(
        server.ws_url(),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    ws
}

/// Sends one text message.
pub async fn send(ws: &mut Ws, text: &str) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        text.to_owned(),
    ))
    .await
    .unwrap();
}

/// The next server message within `within`; `None` on silence or close.
pub async fn recv(ws: &mut Ws, within: Duration) -> Option<aparte_proto::ServerMsg> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let m = tokio::time::timeout_at(deadline, ws.next()).await.ok()??;
        match m {
            Ok(Message::Text(t)) => return Some(aparte_proto::parse_server_msg(&t).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Whether the server closes `ws` within `within` (a close frame, the end of
/// the stream, or a reset), as opposed to staying silent.
pub async fn closed(ws: &mut Ws, within: Duration) -> bool {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// Sends `text` and returns the first error code the server answers with,
/// skipping other messages.
pub async fn error_for(ws: &mut Ws, text: &str) -> (aparte_proto::ErrorCode, String) {
    send(ws, text).await;
    loop {
        match recv(ws, Duration::from_secs(5)).await {
            Some(aparte_proto::ServerMsg::Error { code, message }) => return (code, message),
            Some(_) => {}
            None => panic!("no error answered {text}"),
        }
    }
}

/// The join message for `room`, with `extra` fields (`,"key":"…"`).
pub fn join_json(room: &RoomId, extra: &str) -> String {
    format!(r#"{{"v":1,"type":"join","room":"{room}"{extra}}}"#)
}

/// The `lobby_name` message of waiter `you` in `room`: `name` sealed under
/// the test link for that waiter.
pub fn lobby_name_json(room: &RoomId, you: ParticipantId, name: &str) -> String {
    let sealed = link().seal_lobby_name(room.as_str(), you.0, name, [9; 12]);
    format!(r#"{{"v":1,"type":"lobby_name","name":"{sealed}"}}"#)
}

/// The server error a bot's join or run ended with.
pub fn server_error(e: &anyhow::Error) -> Option<aparte_proto::ErrorCode> {
    match e.downcast_ref::<aparte_bot::BotError>() {
        Some(aparte_bot::BotError::Server(code, _)) => Some(*code),
        _ => None,
    }
}

/// Waits until `bot`'s frames from `peer`'s `source` rise by `by` within 3 s.
pub async fn flowing(bot: &Bot, peer: ParticipantId, source: TrackSource, by: u64) -> bool {
    let f = frames(bot, peer, source).await;
    eventually(Duration::from_secs(3), || async {
        frames(bot, peer, source).await >= f + by
    })
    .await
}
