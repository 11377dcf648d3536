//! The HTTP(S) listener: accepts connections under a server-wide cap and a
//! cap per network, bounds how long a client may take (TLS handshake,
//! request headers, idle keep-alive) and how large its headers may be, then
//! hands each request to the axum router with the client's address.
//!
//! Written out rather than left to `axum::serve`, which has no limit on
//! connections and no timeout: an idle socket, or one that sends half a
//! header, would otherwise stay open (and hold its buffers) forever.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::limits::network_of;

/// Largest request head (request line and headers) read from a client.
/// Browsers send a few KB; hyper's own default is about 400 KB.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Most header lines in one request.
pub const MAX_HEADERS: usize = 64;

/// How the listener bounds its clients.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Open connections, server-wide.
    pub total: usize,
    /// Open connections per network.
    pub per_network: usize,
    /// Time for a TLS handshake, for a request's headers, and between two
    /// requests of one connection.
    pub idle: Duration,
}

/// The slot of the connection a request came on, in its extensions: a
/// WebSocket takes it along, so it counts for as long as it is open.
#[derive(Debug, Clone)]
pub struct ConnSlot(pub Arc<Slot>);

/// Open connections, counted server-wide and per network.
#[derive(Debug, Default)]
pub struct Tracker {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One counted connection; uncounted when dropped. A connection upgraded to
/// a WebSocket keeps its slot (the request carries it, see [`ConnSlot`]).
#[derive(Debug)]
pub struct Slot {
    tracker: Arc<Tracker>,
    net: IpAddr,
}

impl Tracker {
    /// Counts a connection from `net`, unless a bound is reached.
    pub fn enter(self: &Arc<Self>, net: IpAddr, bounds: &Bounds) -> Option<Slot> {
        let mut open = self.open.lock().ok()?;
        let here = open.1.get(&net).copied().unwrap_or(0);
        if open.0 >= bounds.total || here >= bounds.per_network {
            return None;
        }
        open.0 += 1;
        open.1.insert(net, here + 1);
        Some(Slot {
            tracker: self.clone(),
            net,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.open.lock().map_or(0, |o| o.0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.tracker.open.lock() {
            open.0 = open.0.saturating_sub(1);
            if let Some(n) = open.1.get_mut(&self.net) {
                *n -= 1;
                if *n == 0 {
                    open.1.remove(&self.net);
                }
            }
        }
    }
}

/// Serves `app` on `listener` until `stop` fires; then stops accepting and
/// gives open connections a second to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    bounds: Bounds,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let tracker = Arc::new(Tracker::default());
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut refused_notice = None::<std::time::Instant>;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, most likely: wait, do not spin.
                    warn!(%e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let Some(slot) = tracker.enter(network_of(peer.ip()), &bounds) else {
            // Logged at most once a minute, with no address.
            let now = std::time::Instant::now();
            if refused_notice.is_none_or(|t| now.duration_since(t).as_secs() >= 60) {
                refused_notice = Some(now);
                info!(
                    open = tracker.open(),
                    "connection refused: at a connection limit"
                );
            }
            tokio::spawn(refuse(tcp, tls.is_none()));
            continue;
        };
        let app = app.clone();
        let tls = tls.clone();
        let closing = closing.clone();
        let slot = Arc::new(slot);
        tokio::spawn(async move {
            match tls {
                None => connection(TokioIo::new(tcp), app, peer, slot, bounds, closing).await,
                Some(acceptor) => {
                    match tokio::time::timeout(bounds.idle, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let io = TokioIo::new(stream);
                            connection(io, app, peer, slot, bounds, closing).await
                        }
                        Ok(Err(e)) => debug!(%e, "TLS handshake failed"),
                        Err(_) => debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    let _ = closing_tx.send(true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tracker.open() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain-HTTP client over a bound is told so (503) before the close; a TLS
/// one is only closed (an answer would need a handshake).
async fn refuse(mut tcp: TcpStream, plain: bool) {
    if plain {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 5\r\n\
                       content-length: 0\r\nconnection: close\r\n\r\n";
        let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(answer)).await;
    }
}

/// Serves one connection's requests (and the WebSocket it may upgrade to).
async fn connection<I>(
    io: I,
    app: Router,
    peer: SocketAddr,
    slot: Arc<Slot>,
    bounds: Bounds,
    mut closing: tokio::sync::watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(ConnSlot(slot.clone()));
            app.clone().oneshot(req)
        });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(bounds.idle)
        .max_buf_size(MAX_HEAD_BYTES.max(8192))
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    let conn = http.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(%e, "http connection ended");
            }
        }
        _ = closing.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(1), conn).await;
        }
    }
}
