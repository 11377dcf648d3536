//! The Aparté server: the one binary an organisation runs.
//!
//! This crate is the only place with sockets, tasks and the clock. It serves
//! the embedded web client over HTTP ([`http`]), speaks the signaling protocol
//! of `aparte-proto` over WebSockets ([`ws`]), and runs the media loop
//! ([`media`]) that owns the UDP socket and the sans-IO SFU core
//! (`aparte-sfu`), feeding it datagrams, signaling and time, and carrying out
//! what it returns.
//!
//! ```text
//!  browser ──ws──▶ ws::connection ──MediaCmd──▶ media::run (owns Sfu + UDP)
//!          ◀─ws──                 ◀─ConnEvent──
//!          ◀═════════════════ UDP (ICE, DTLS-SRTP) ═════════════════▶
//! ```
//!
//! [`start`] is the library entry point: integration tests start the real
//! server on port 0 with it.

#![forbid(unsafe_code)]

pub mod config;
pub mod http;
pub mod limits;
pub mod media;
pub mod passcode;
pub mod privacy;
pub mod serve;
pub mod state;
pub mod storage;
pub mod tcp;
pub mod tls;
pub mod turn;
pub mod udp;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

pub use config::Config;

/// Crates whose log lines pass at every level the filter asks for: ours,
/// which never log a secret at any level (tests/logs.rs runs a meeting at
/// `trace`).
pub const LOG_CAP: &[&str] = &["aparte_server", "aparte_sfu", "aparte_proto"];

/// The most any other crate may log, whatever the filter says. Their debug
/// and trace lines carry what ours never log: str0m's ICE credentials and
/// client addresses, the WebSocket library's frames (passcodes, keys, seats,
/// room ids), HTTP headers.
pub const DEPENDENCY_LOG_CAP: tracing_subscriber::filter::LevelFilter =
    tracing_subscriber::filter::LevelFilter::INFO;

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// Where HTTP and WebSocket signaling listen.
    pub http_addr: SocketAddr,
    /// Where the UDP media sockets listen, one per media thread.
    pub media_addrs: Vec<SocketAddr>,
    /// The media TCP listeners' addresses, one per media thread (none when
    /// media over TCP is off).
    pub media_tcp_addrs: Vec<SocketAddr>,
    /// Whether signaling is served over TLS.
    pub tls: bool,
    /// SHA-256 of the TLS certificate, when the server made it itself.
    pub self_signed_fingerprint: Option<String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The WebSocket signaling URL.
    pub fn ws_url(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}/ws", self.http_addr)
    }

    /// The base HTTP(S) URL.
    pub fn http_url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server stops (it does not stop by itself).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Binds the sockets and starts serving. Returns once both listen.
pub async fn start(config: Config) -> anyhow::Result<ServerHandle> {
    start_with_tap(config, None).await
}

/// [`start`], with a tap on everything the SFU handles (for tests that prove
/// the server sees only ciphertext; the binary never installs one).
pub async fn start_with_tap(
    config: Config,
    tap: Option<aparte_sfu::Tap>,
) -> anyhow::Result<ServerHandle> {
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding HTTP on {}", config.listen))?;
    let http_addr = listener.local_addr()?;
    let tls = tls::load(&config, http_addr)?;
    let storage = storage::Storage::new(&config.data_dir, config.retention_days);
    let persist = spawn_storage_writer(storage.clone());

    // One media thread per core, each with its own socket, port and share of
    // the rooms. A tap (tests) watches one media loop, so it gets one.
    let threads = if tap.is_some() {
        1
    } else {
        config.media_threads
    };
    let mut tap = tap;
    let mut media_tx = Vec::with_capacity(threads);
    let mut media_stops = Vec::with_capacity(threads);
    let mut media_addrs = Vec::with_capacity(threads);
    let mut media_tcp_addrs = Vec::with_capacity(threads);
    for i in 0..threads {
        let mut bind = config.media_listen;
        if bind.port() != 0 {
            bind.set_port(bind.port() + i as u16);
        }
        let udp = UdpSocket::bind(bind)
            .await
            .with_context(|| format!("binding UDP media on {bind}"))?;
        let addr = udp.local_addr()?;
        media_addrs.push(addr);
        let tcp = match config.media_tcp_listen {
            Some(mut tcp_bind) => {
                if tcp_bind.port() != 0 {
                    tcp_bind.set_port(tcp_bind.port() + i as u16);
                }
                let tcp = std::net::TcpListener::bind(tcp_bind)
                    .with_context(|| format!("binding TCP media on {tcp_bind}"))?;
                tcp.set_nonblocking(true)?;
                media_tcp_addrs.push(tcp.local_addr()?);
                Some(tcp)
            }
            None => None,
        };
        let candidates = config.media_candidates(addr);
        let first = *candidates.first().context("no media candidate address")?;
        let mut sfu_config = aparte_sfu::SfuConfig::new(first);
        sfu_config.candidates = candidates;
        if let Some(t) = &tcp {
            sfu_config.tcp_candidates = config.media_candidates(t.local_addr()?);
        }
        sfu_config.max_participants_per_room = config.max_participants;
        sfu_config.max_tracks_per_participant = config.max_tracks;
        sfu_config.max_lobby = config.max_lobby;
        sfu_config.first_id = i as u64 + 1;
        sfu_config.id_step = threads as u64;
        let (tx, rx) = mpsc::channel(1024);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        media::spawn(
            udp.into_std()?,
            tcp,
            sfu_config,
            tap.take(),
            rx,
            persist.clone(),
            stop_rx,
        )?;
        media_tx.push(tx);
        media_stops.push(stop);
    }
    let retention_task = tokio::spawn(purge_periodically(storage.clone()));
    let shared = Arc::new(state::Shared::new(config, media_tx, storage));
    let bounds = serve::Bounds {
        total: shared.config.max_connections,
        per_network: shared.config.max_connections_per_address,
        idle: shared.config.idle_timeout,
    };
    let app = http::router(shared);
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let fingerprint = tls.as_ref().and_then(|t| t.fingerprint.clone());
    let is_tls = tls.is_some();
    let task = tokio::spawn(async move {
        serve::serve(listener, app, tls.map(|t| t.config), bounds, shutdown_rx).await;
        for stop in media_stops {
            let _ = stop.send(());
        }
        retention_task.abort();
    });
    Ok(ServerHandle {
        http_addr,
        media_addrs,
        media_tcp_addrs,
        tls: is_tls,
        self_signed_fingerprint: fingerprint,
        shutdown: Some(shutdown_tx),
        task,
    })
}

/// A thread that writes persistent rooms in the order the media loop sends
/// them, so the loop never waits for the disk.
/// The media thread (of `threads`) that runs `room`: a room lives on one,
/// chosen by a hash of its (random) id. SipHash with fixed keys, so a room
/// maps to the same thread for the whole life of the process.
pub fn media_thread_of(room: &aparte_proto::RoomId, threads: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    room.as_str().hash(&mut h);
    (h.finish() % threads.max(1) as u64) as usize
}

fn spawn_storage_writer(storage: storage::Storage) -> media::PersistTx {
    let (tx, rx) =
        std::sync::mpsc::channel::<(aparte_proto::RoomId, Option<aparte_sfu::StoredRoom>)>();
    std::thread::spawn(move || {
        for (room, stored) in rx {
            if let Err(e) = storage.save(&room, stored.as_ref()) {
                tracing::warn!(error = %e, "storing a persistent room failed");
            }
        }
    });
    tx
}

/// Deletes persistent rooms past their retention, at start and every hour.
async fn purge_periodically(storage: storage::Storage) {
    loop {
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.purge()).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(rooms = n, "expired persistent rooms deleted"),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention purge failed"),
            _ => {}
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
