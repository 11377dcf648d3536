//! The media loop: one task owns the UDP socket and the SFU core, and is the
//! only place that touches either. Signaling connections talk to it through
//! [`MediaCmd`]s and hear back through their [`ConnEvent`] channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aparte_proto::{ClientMsg, ErrorCode, ParticipantId, RoomId, ServerMsg};
use aparte_sfu::Protocol;
use aparte_sfu::{
    Admission, JoinError, JoinRequest, Output, RoomUpdate, Sfu, SfuConfig, StoredRoom,
};
use tokio::io::Interest;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::tcp::{self, Connections, TcpEvent};
use crate::udp;

/// Batches read in one go before the loop looks at anything else.
const RECV_ROUNDS: usize = 4;

/// How long TCP accepts pause after one fails.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Datagrams kept waiting for a full socket buffer before they are shed.
const MAX_QUEUED: usize = 16_384;

/// A request from a signaling connection to the media loop.
#[derive(Debug)]
pub enum MediaCmd {
    /// Join a room (or its lobby); `conn` receives everything for the new
    /// participant.
    Join {
        /// The join, checked as far as the connection could.
        req: JoinRequest,
        /// Where the participant's messages go.
        conn: ConnTx,
        /// Where the join landed, or why it was refused.
        reply: oneshot::Sender<Result<Admission, JoinError>>,
    },
    /// A settings change whose passcode (if any) the connection hashed.
    Update {
        /// Who asks.
        from: ParticipantId,
        /// The change.
        update: RoomUpdate,
    },
    /// A message from a joined participant.
    Message {
        /// Who sent it.
        from: ParticipantId,
        /// What.
        msg: ClientMsg,
    },
    /// The participant's connection closed.
    Leave {
        /// Who.
        who: ParticipantId,
    },
}

/// What the media loop tells a signaling connection.
#[derive(Debug)]
pub enum ConnEvent {
    /// Send this message.
    Msg(ServerMsg),
    /// Close the connection, after an error with this code if there is one.
    Close(Option<ErrorCode>),
}

/// Messages queued towards one client before it counts as too slow.
pub const CONN_QUEUE: usize = 1024;

/// Bytes queued towards one client before it counts as too slow. Counted
/// with [`ServerMsg::wire_len`]; the largest message (an offer for a full
/// room, a Welcome) is well under it.
pub const CONN_QUEUE_BYTES: usize = 4 * 1024 * 1024;

/// The media loop's end of a connection's queue, bounded in messages and in
/// bytes: a client that does not read is dropped, not allowed to grow memory.
#[derive(Debug, Clone)]
pub struct ConnTx {
    tx: mpsc::Sender<(ConnEvent, usize)>,
    queued: Arc<AtomicUsize>,
}

/// The connection's end of its queue.
#[derive(Debug)]
pub struct ConnRx {
    rx: mpsc::Receiver<(ConnEvent, usize)>,
    queued: Arc<AtomicUsize>,
}

/// A new connection queue.
pub fn conn_queue() -> (ConnTx, ConnRx) {
    let (tx, rx) = mpsc::channel(CONN_QUEUE);
    let queued = Arc::new(AtomicUsize::new(0));
    (
        ConnTx {
            tx,
            queued: queued.clone(),
        },
        ConnRx { rx, queued },
    )
}

impl ConnTx {
    /// Queues `msg`. False when the client is too slow (its queue is full, in
    /// messages or in bytes) or gone; the message is then not queued.
    pub fn send(&self, msg: ServerMsg) -> bool {
        let len = msg.wire_len();
        if self.queued.fetch_add(len, Ordering::Relaxed) + len > CONN_QUEUE_BYTES {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            return false;
        }
        match self.tx.try_send((ConnEvent::Msg(msg), len)) {
            Ok(()) => true,
            Err(_) => {
                self.queued.fetch_sub(len, Ordering::Relaxed);
                false
            }
        }
    }

    /// Asks the connection to close (after an error with `code`). A client
    /// too slow to take even this is closed when the last sender goes.
    pub fn close(&self, code: Option<ErrorCode>) {
        let _ = self.tx.try_send((ConnEvent::Close(code), 0));
    }

    /// Bytes queued and not yet taken by the connection.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl ConnRx {
    /// The next event; `None` once every sender is gone and the queue empty.
    pub async fn recv(&mut self) -> Option<ConnEvent> {
        let (ev, len) = self.rx.recv().await?;
        self.queued.fetch_sub(len, Ordering::Relaxed);
        Some(ev)
    }
}

/// Where the media loop sends persistent rooms' settings to be stored.
pub type PersistTx = std::sync::mpsc::Sender<(RoomId, Option<StoredRoom>)>;

/// Starts the media loop on its own thread (with a single-threaded runtime:
/// the loop is one task, and its batch buffers stay on that thread). It runs
/// until `stop` fires or every command sender is gone.
pub fn spawn(
    udp: std::net::UdpSocket,
    tcp: Option<std::net::TcpListener>,
    config: SfuConfig,
    tap: Option<aparte_sfu::Tap>,
    cmds: mpsc::Receiver<MediaCmd>,
    persist: PersistTx,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    match udp::enlarge_buffers(&udp, udp::SOCKET_BUFFER) {
        Ok(granted) if granted < udp::SOCKET_BUFFER => tracing::info!(
            granted,
            "media socket buffer below the {} bytes asked; raise net.core.rmem_max and wmem_max \
             (docs/operations.md)",
            udp::SOCKET_BUFFER
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(%e, "media socket buffer not enlarged"),
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("aparte-media".into())
        .spawn(move || {
            runtime.block_on(async move {
                let udp = match UdpSocket::from_std(udp) {
                    Ok(u) => u,
                    Err(e) => {
                        tracing::error!(%e, "media socket unusable; media disabled");
                        return;
                    }
                };
                let tcp = tcp.and_then(|t| match TcpListener::from_std(t) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        tracing::error!(%e, "media TCP listener unusable; media over UDP only");
                        None
                    }
                });
                tokio::select! {
                    () = run(udp, tcp, config, tap, cmds, persist) => {}
                    _ = stop => {}
                }
            });
        })?;
    Ok(())
}

/// Runs the media loop until every command sender is gone.
async fn run(
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    config: SfuConfig,
    tap: Option<aparte_sfu::Tap>,
    mut cmds: mpsc::Receiver<MediaCmd>,
    persist: PersistTx,
) {
    // str0m matches a datagram's destination against its local candidates, so
    // a socket bound to 0.0.0.0 reports the first candidate address.
    let local = match (udp.local_addr(), config.candidates.first()) {
        (Ok(a), _) if !a.ip().is_unspecified() => a,
        (_, Some(&c)) => c,
        _ => {
            warn!("media socket has no usable address; media disabled");
            return;
        }
    };
    // The same for TCP: frames come from connections to the TCP candidate.
    let tcp_local = match (
        tcp.as_ref().map(TcpListener::local_addr),
        config.tcp_candidates.first(),
    ) {
        (Some(Ok(a)), _) if !a.ip().is_unspecified() => Some(a),
        (Some(_), Some(&c)) => Some(c),
        _ => None,
    };
    let mut sfu = Sfu::new(config);
    if let Some(tap) = tap {
        sfu.set_tap(tap);
    }
    let mut conns: HashMap<ParticipantId, ConnTx> = HashMap::new();
    let mut rx = udp::Receiver::default();
    let mut tx = udp::Sender::default();
    let mut tcp_conns = Connections::default();
    // After a failed accept (out of descriptors, most likely), none is tried
    // for a moment: the listener would report the same failure at once and
    // the loop would spin.
    let mut accept_after: Option<Instant> = None;
    let (tcp_events_tx, mut tcp_events) = mpsc::channel::<TcpEvent>(tcp::IN_FRAMES);
    info!(media = %local, tcp = ?tcp_local, "media loop started");

    loop {
        flush(&mut sfu, &mut tx, &mut tcp_conns, &mut conns, &persist);
        write_out(&udp, &mut tx);
        let wake = sfu
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        let wake = accept_after.map_or(wake, |t| wake.min(t));
        let blocked = tx.pending() > 0;
        let accepting = tcp.is_some() && accept_after.is_none_or(|t| Instant::now() >= t);
        tokio::select! {
            r = udp.readable() => {
                if let Err(e) = r {
                    warn!(%e, "udp socket failed");
                    continue;
                }
                // Drain what is queued, a batch per system call, before
                // looking at timers; then go out to send what it produced.
                for _ in 0..RECV_ROUNDS {
                    match udp.try_io(Interest::READABLE, || rx.recv(&udp)) {
                        Ok(n) => {
                            let now = Instant::now();
                            for i in 0..n {
                                if let Some((source, data)) = rx.get(i) {
                                    sfu.handle_datagram(now, source, local, data);
                                }
                            }
                            if n < udp::BATCH {
                                break;
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            // ICMP errors surface here; they concern one peer.
                            tracing::debug!(%e, "udp receive failed");
                            break;
                        }
                    }
                }
            }
            r = udp.writable(), if blocked => {
                if r.is_err() {
                    continue;
                }
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                handle_cmd(&mut sfu, &mut conns, cmd);
            }
            accepted = async { tcp.as_ref()?.accept().await.ok() }, if accepting => {
                match accepted {
                    Some((stream, peer)) => {
                        accept_after = None;
                        tcp_conns.accept(stream, peer, tcp_events_tx.clone());
                    }
                    None => {
                        warn!("media TCP accept failed; pausing accepts for 100 ms");
                        accept_after = Some(Instant::now() + ACCEPT_PAUSE);
                    }
                }
            }
            event = tcp_events.recv() => {
                let now = Instant::now();
                let mut event = event;
                // Take what queued meanwhile before going out to send.
                for _ in 0..udp::BATCH {
                    match event.take() {
                        Some(TcpEvent::Frame { peer, data }) => {
                            if let Some(local) = tcp_local {
                                sfu.handle_tcp_frame(now, peer, local, &data);
                            }
                        }
                        Some(TcpEvent::Closed { peer }) => tcp_conns.closed(peer),
                        None => break,
                    }
                    event = tcp_events.try_recv().ok();
                }
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                sfu.handle_timeout(Instant::now());
            }
        }
    }
}

/// Writes what is queued, as far as the socket takes it now.
fn write_out(udp: &UdpSocket, tx: &mut udp::Sender) {
    if tx.pending() == 0 {
        return;
    }
    match udp.try_io(Interest::WRITABLE, || tx.flush(udp)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            if tx.pending() > MAX_QUEUED {
                // The kernel is not draining: shed the backlog as a full
                // network would, rather than grow.
                let shed = tx.clear();
                warn!(
                    datagrams = shed,
                    "media socket not draining; backlog dropped"
                );
            }
        }
        Err(e) => tracing::debug!(%e, "udp send failed"),
    }
}

fn handle_cmd(sfu: &mut Sfu, conns: &mut HashMap<ParticipantId, ConnTx>, cmd: MediaCmd) {
    let now = Instant::now();
    match cmd {
        MediaCmd::Join { req, conn, reply } => match sfu.join(now, req) {
            Ok(admission) => {
                let id = admission.id();
                conns.insert(id, conn);
                if reply.send(Ok(admission)).is_err() {
                    // The connection went away while joining.
                    conns.remove(&id);
                    sfu.leave(now, id);
                }
            }
            Err(e) => {
                let _ = reply.send(Err(e));
            }
        },
        MediaCmd::Update { from, update } => sfu.update_room(now, from, &update),
        MediaCmd::Message { from, msg } => sfu.handle_message(now, from, msg),
        MediaCmd::Leave { who } => {
            conns.remove(&who);
            sfu.leave(now, who);
        }
    }
}

/// Carries out everything the SFU asked for; datagrams go to `tx`, or to
/// their TCP connection.
fn flush(
    sfu: &mut Sfu,
    tx: &mut udp::Sender,
    tcp: &mut Connections,
    conns: &mut HashMap<ParticipantId, ConnTx>,
    persist: &PersistTx,
) {
    let mut slow = Vec::new();
    loop {
        while let Some(out) = sfu.poll_output() {
            match out {
                Output::Transmit {
                    proto: Protocol::Tcp,
                    destination,
                    contents,
                    ..
                } => tcp.send(destination, contents),
                Output::Transmit {
                    destination,
                    contents,
                    ..
                } => tx.push(destination, contents),
                Output::Signal { to, msg } => {
                    if let Some(conn) = conns.get(&to) {
                        if !conn.send(msg) {
                            // A connection that cannot keep up with signaling
                            // is dropped rather than allowed to grow memory.
                            slow.push(to);
                        }
                    }
                }
                Output::Close { who, code } => {
                    if let Some(conn) = conns.remove(&who) {
                        conn.close(code);
                    }
                }
                Output::Persist { room, stored } => {
                    // The storage thread writes in order; a stopped one
                    // only costs persistence, never the meeting.
                    let _ = persist.send((room, stored));
                }
            }
        }
        if slow.is_empty() {
            return;
        }
        let now = Instant::now();
        for who in slow.drain(..) {
            if let Some(conn) = conns.remove(&who) {
                warn!(
                    participant = %who,
                    queued_bytes = conn.queued_bytes(),
                    "signaling connection too slow; removed"
                );
                conn.close(Some(ErrorCode::Internal));
                sfu.leave(now, who);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client that does not read: its queue refuses once its bytes reach
    /// the bound (long before its message count does), and takes again once
    /// the connection has taken what was queued.
    #[tokio::test]
    async fn a_queue_refuses_past_its_bytes_and_recovers() {
        let (tx, mut rx) = conn_queue();
        let big = || ServerMsg::MlsWelcome {
            data: "A".repeat(200 * 1024),
        };
        let mut queued = 0;
        while tx.send(big()) {
            queued += 1;
            assert!(queued < CONN_QUEUE, "never refused");
        }
        assert_eq!(queued, CONN_QUEUE_BYTES / big().wire_len());
        assert!(tx.queued_bytes() <= CONN_QUEUE_BYTES);
        for _ in 0..queued {
            assert!(matches!(rx.recv().await, Some(ConnEvent::Msg(_))));
        }
        assert_eq!(tx.queued_bytes(), 0);
        assert!(tx.send(big()), "room again once read");
    }
}
