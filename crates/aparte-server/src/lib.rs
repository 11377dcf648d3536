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
pub mod media;
pub mod ws;

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

pub use config::Config;

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// Where HTTP and WebSocket signaling listen.
    pub http_addr: SocketAddr,
    /// Where the UDP media socket listens.
    pub media_addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServerHandle {
    /// The WebSocket signaling URL.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.http_addr)
    }

    /// The base HTTP URL.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http_addr)
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
    let udp = UdpSocket::bind(config.media_listen)
        .await
        .with_context(|| format!("binding UDP media on {}", config.media_listen))?;
    let http_addr = listener.local_addr()?;
    let media_addr = udp.local_addr()?;
    let candidates = config.media_candidates(media_addr);
    let first = *candidates.first().context("no media candidate address")?;
    let mut sfu_config = aparte_sfu::SfuConfig::new(first);
    sfu_config.candidates = candidates;
    sfu_config.max_participants_per_room = config.max_participants;

    let (media_tx, media_rx) = mpsc::channel(1024);
    let media_task = tokio::spawn(media::run(udp, sfu_config, tap, media_rx));
    let app = http::router(http::AppState::new(media_tx));
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = shutdown_rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(%e, "http server failed");
        }
        media_task.abort();
    });
    Ok(ServerHandle {
        http_addr,
        media_addr,
        shutdown: Some(shutdown_tx),
        task,
    })
}
