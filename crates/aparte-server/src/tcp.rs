//! Media over TCP (ICE-TCP, RFC 6544) for networks that block UDP.
//!
//! Each media thread listens on a TCP port beside its UDP one and offers it
//! as a passive ICE candidate. A browser that cannot use UDP connects there
//! and sends its STUN, DTLS and SRTP datagrams as RFC 4571 frames: a 16-bit
//! length, then the datagram. Each connection is a task on the media thread
//! that cuts the stream into frames for the media loop, which hands them to
//! the same sans-IO core as UDP datagrams ([`aparte_sfu::Sfu::handle_tcp_frame`]),
//! and writes back the frames the core sends to that connection.
//!
//! Every resource a stranger can make the server hold is bounded: frames
//! (at most [`MAX_FRAME`] bytes), connections per thread and per network,
//! the frames queued each way, and the time a connection may stay silent.
//! Media is loss-tolerant: a frame that finds its queue full is dropped,
//! never waited for, so one slow connection holds up no one.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::limits::network_of;

/// Largest frame taken: a datagram is at most a path MTU (STUN, DTLS
/// records and SRTP packets all stay under it); a length above this ends
/// the connection.
pub const MAX_FRAME: usize = 4096;
/// Connections per media thread.
pub const MAX_CONNECTIONS: usize = 1024;
/// Connections per network (IPv4 address or IPv6 /64) per media thread.
pub const MAX_PER_NETWORK: usize = 16;
/// A connection that sends no frame for this long is closed (ICE consent
/// checks come every few seconds on a live one).
pub const IDLE: Duration = Duration::from_secs(30);
/// Frames queued towards one connection; past it, frames are dropped.
const OUT_FRAMES: usize = 512;
/// Frames queued from every connection of a thread towards its media loop.
pub const IN_FRAMES: usize = 4096;

/// What a connection task tells the media loop.
#[derive(Debug)]
pub enum TcpEvent {
    /// A frame's datagram.
    Frame {
        /// The connection's remote address.
        peer: SocketAddr,
        /// The datagram.
        data: Vec<u8>,
    },
    /// The connection is gone.
    Closed {
        /// Its remote address.
        peer: SocketAddr,
    },
}

/// The media loop's side of its TCP connections.
#[derive(Debug, Default)]
pub struct Connections {
    out: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    per_network: HashMap<IpAddr, usize>,
    /// Frames dropped because a connection's queue was full.
    pub dropped: u64,
}

impl Connections {
    /// Takes a new connection, or refuses it (dropped) at a limit.
    pub fn accept(&mut self, stream: TcpStream, peer: SocketAddr, events: mpsc::Sender<TcpEvent>) {
        let network = network_of(peer.ip());
        let here = self.per_network.get(&network).copied().unwrap_or(0);
        if self.out.len() >= MAX_CONNECTIONS || here >= MAX_PER_NETWORK {
            tracing::debug!("media TCP connection refused: at a limit");
            return;
        }
        let _ = stream.set_nodelay(true);
        let (tx, rx) = mpsc::channel(OUT_FRAMES);
        self.out.insert(peer, tx);
        self.per_network.insert(network, here + 1);
        tokio::spawn(connection(stream, peer, events, rx));
    }

    /// Queues `data` as a frame to the connection from `peer`.
    pub fn send(&mut self, peer: SocketAddr, data: Vec<u8>) {
        let Some(tx) = self.out.get(&peer) else {
            return;
        };
        if data.len() > MAX_FRAME || tx.try_send(data).is_err() {
            self.dropped += 1;
        }
    }

    /// Forgets a closed connection.
    pub fn closed(&mut self, peer: SocketAddr) {
        if self.out.remove(&peer).is_some() {
            let network = network_of(peer.ip());
            if let Some(n) = self.per_network.get_mut(&network) {
                *n -= 1;
                if *n == 0 {
                    self.per_network.remove(&network);
                }
            }
        }
    }

    /// Open connections.
    pub fn len(&self) -> usize {
        self.out.len()
    }

    /// Whether none is open.
    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }
}

/// Runs one connection: frames in to the media loop, frames out to the
/// socket, until either side ends, a frame is malformed, or it goes idle.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    events: mpsc::Sender<TcpEvent>,
    mut out: mpsc::Receiver<Vec<u8>>,
) {
    let (mut read, mut write) = stream.into_split();
    let reader = async {
        let mut data = vec![0u8; MAX_FRAME];
        loop {
            let mut len = [0u8; 2];
            match tokio::time::timeout(IDLE, read.read_exact(&mut len)).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let len = usize::from(u16::from_be_bytes(len));
            if len == 0 || len > MAX_FRAME {
                return;
            }
            match tokio::time::timeout(IDLE, read.read_exact(&mut data[..len])).await {
                Ok(Ok(_)) => {}
                _ => return,
            }
            let frame = TcpEvent::Frame {
                peer,
                data: data[..len].to_vec(),
            };
            // A full loop queue drops the frame, as a full UDP buffer would.
            if let Err(mpsc::error::TrySendError::Closed(_)) = events.try_send(frame) {
                return;
            }
        }
    };
    let writer = async {
        let mut buf = Vec::with_capacity(MAX_FRAME + 2);
        while let Some(frame) = out.recv().await {
            buf.clear();
            buf.extend_from_slice(&(frame.len() as u16).to_be_bytes());
            buf.extend_from_slice(&frame);
            // Frames that queued meanwhile go in the same write.
            while buf.len() < 64 * 1024 {
                let Ok(more) = out.try_recv() else { break };
                buf.extend_from_slice(&(more.len() as u16).to_be_bytes());
                buf.extend_from_slice(&more);
            }
            if write.write_all(&buf).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = reader => {}
        () = writer => {}
    }
    let _ = events.send(TcpEvent::Closed { peer }).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, peer) = l.accept().await.unwrap();
        (client, server, peer)
    }

    #[tokio::test]
    async fn frames_both_ways_and_a_bad_length_closes() {
        let (mut client, server, peer) = pair().await;
        let (events_tx, mut events) = mpsc::channel(16);
        let mut conns = Connections::default();
        conns.accept(server, peer, events_tx);
        assert_eq!(conns.len(), 1);
        // Two frames in one write, the second split across two.
        client.write_all(&[0, 3, 1, 2, 3, 0, 2, 9]).await.unwrap();
        client.write_all(&[8]).await.unwrap();
        for want in [vec![1, 2, 3], vec![9, 8]] {
            match events.recv().await {
                Some(TcpEvent::Frame { data, .. }) => assert_eq!(data, want),
                other => panic!("{other:?}"),
            }
        }
        conns.send(peer, vec![7, 7]);
        let mut got = [0u8; 4];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [0, 2, 7, 7]);
        // A frame longer than any datagram ends the connection.
        client.write_all(&[0xff, 0xff]).await.unwrap();
        assert!(matches!(events.recv().await, Some(TcpEvent::Closed { .. })));
        conns.closed(peer);
        assert_eq!(conns.len(), 0);
        let mut rest = Vec::new();
        assert_eq!(client.read_to_end(&mut rest).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn one_network_holds_a_bounded_number_of_connections() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (events_tx, _events) = mpsc::channel(16);
        let mut conns = Connections::default();
        let mut clients = Vec::new();
        for _ in 0..MAX_PER_NETWORK + 3 {
            clients.push(TcpStream::connect(l.local_addr().unwrap()).await.unwrap());
            let (server, peer) = l.accept().await.unwrap();
            conns.accept(server, peer, events_tx.clone());
        }
        assert_eq!(conns.len(), MAX_PER_NETWORK);
    }
}
