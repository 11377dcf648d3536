//! The attackers of the hostile-load scenario (issue 16), each from its own
//! loopback addresses so that per-network limits apply to them and not to
//! the meeting beside them:
//!
//! - flooders: WebSockets that send pings and junk text as fast as the
//!   socket takes them, never reading, and reconnect whenever closed;
//! - idlers: WebSockets that open and then do nothing, reopened when the
//!   server closes them;
//! - a lobby filler: one address joining a lobby over and over.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use aparte_proto::RoomId;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// What the attackers did, counted.
#[derive(Debug, Default)]
pub struct Counts {
    /// Frames the flooders wrote.
    pub flood_frames: AtomicU64,
    /// Connections the flooders opened (each one the server closed, but the last).
    pub flood_connections: AtomicU64,
    /// Connections the idlers opened.
    pub idle_connections: AtomicU64,
    /// Connections refused (503 or closed before the handshake finished).
    pub refused: AtomicU64,
    /// Lobby places the filler got, and joins refused with an error.
    pub lobby_places: AtomicU64,
    pub lobby_refusals: AtomicU64,
}

/// The attackers, running until [`Attackers::stop`].
pub struct Attackers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    pub counts: Arc<Counts>,
}

impl Attackers {
    /// Starts `flooders` flooding connections, `idlers` idle ones and one
    /// lobby filler of `lobby_room`, against the server at `ws_url`.
    pub fn start(ws_url: &str, flooders: usize, idlers: usize, lobby_room: RoomId) -> Attackers {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let mut tasks = Vec::new();
        for i in 0..flooders {
            // One network per flooder.
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 5, i as u8 + 1));
            tasks.push(tokio::spawn(flood(
                ws_url.to_owned(),
                from,
                stop.clone(),
                counts.clone(),
            )));
        }
        for i in 0..idlers {
            // 50 per network, under the default 64 connections per network.
            let from = IpAddr::V4(Ipv4Addr::new(127, 0, 6, (i / 50) as u8 + 1));
            tasks.push(tokio::spawn(idle(
                ws_url.to_owned(),
                from,
                stop.clone(),
                counts.clone(),
            )));
        }
        tasks.push(tokio::spawn(fill_lobby(
            ws_url.to_owned(),
            lobby_room,
            stop.clone(),
            counts.clone(),
        )));
        Attackers {
            stop,
            tasks,
            counts,
        }
    }

    /// Stops every attacker and waits for them.
    pub async fn stop(self) -> Arc<Counts> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = tokio::time::timeout(Duration::from_secs(3), t).await;
        }
        self.counts
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

async fn connect(ws_url: &str, from: IpAddr) -> anyhow::Result<Ws> {
    let addr: SocketAddr = ws_url
        .trim_start_matches("ws://")
        .trim_end_matches("/ws")
        .parse()?;
    let tcp = tokio::net::TcpSocket::new_v4()?;
    tcp.bind(SocketAddr::new(from, 0))?;
    let stream = tokio::time::timeout(Duration::from_secs(2), tcp.connect(addr)).await??;
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(2),
        tokio_tungstenite::client_async(ws_url, stream),
    )
    .await??;
    Ok(ws)
}

async fn flood(ws_url: String, from: IpAddr, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(ws) = connect(&ws_url, from).await else {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        counts.flood_connections.fetch_add(1, Ordering::Relaxed);
        let (mut tx, _rx) = ws.split();
        let junk = r#"{"v":1,"type":"mls_app","data":"AAAA"}"#;
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let m = if n % 2 == 0 {
                Message::Ping(vec![0u8; 125].into())
            } else {
                Message::text(junk)
            };
            // Fed without waiting for a flush: as fast as the socket takes it.
            let sent = tokio::time::timeout(Duration::from_millis(500), tx.feed(m)).await;
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
            n += 1;
            if n % 64 == 0 && tx.flush().await.is_err() {
                break;
            }
        }
        counts.flood_frames.fetch_add(n, Ordering::Relaxed);
    }
}

async fn idle(ws_url: String, from: IpAddr, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut ws) = connect(&ws_url, from).await else {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        counts.idle_connections.fetch_add(1, Ordering::Relaxed);
        // Hold it, reading only to notice the server closing it.
        while !stop.load(Ordering::Relaxed) {
            let heard = tokio::time::timeout(Duration::from_millis(200), ws.next()).await;
            if let Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) = heard {
                break;
            }
        }
    }
}

async fn fill_lobby(ws_url: String, room: RoomId, stop: Arc<AtomicBool>, counts: Arc<Counts>) {
    let from = IpAddr::V4(Ipv4Addr::new(127, 0, 7, 1));
    let mut held = Vec::new();
    let join = format!(r#"{{"v":1,"type":"join","room":"{room}"}}"#);
    while !stop.load(Ordering::Relaxed) {
        // Keep up to 60 joins open, as a crowd from one address would.
        if held.len() >= 60 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            held.retain(|w: &Ws| w.get_ref().peer_addr().is_ok());
            continue;
        }
        let Ok(mut ws) = connect(&ws_url, from).await else {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        if ws.send(Message::text(join.clone())).await.is_err() {
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(2), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.contains("\"waiting\"") => {
                counts.lobby_places.fetch_add(1, Ordering::Relaxed);
                held.push(ws);
            }
            _ => {
                counts.lobby_refusals.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
