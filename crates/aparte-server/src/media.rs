//! The media loop: one task owns the UDP socket and the SFU core, and is the
//! only place that touches either. Signaling connections talk to it through
//! [`MediaCmd`]s and hear back through their [`ConnEvent`] channel.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aparte_proto::{ClientMsg, ErrorCode, ParticipantId, RoomId, ServerMsg};
use aparte_sfu::{
    Admission, JoinError, JoinRequest, Output, RoomUpdate, Sfu, SfuConfig, StoredRoom,
};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

/// Datagrams read in one go before the loop looks at anything else.
const RECV_BATCH: usize = 64;

/// A request from a signaling connection to the media loop.
#[derive(Debug)]
pub enum MediaCmd {
    /// Join a room (or its lobby); `conn` receives everything for the new
    /// participant.
    Join {
        /// The join, checked as far as the connection could.
        req: JoinRequest,
        /// Where the participant's messages go.
        conn: mpsc::Sender<ConnEvent>,
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

/// Where the media loop sends persistent rooms' settings to be stored.
pub type PersistTx = std::sync::mpsc::Sender<(RoomId, Option<StoredRoom>)>;

/// Runs the media loop until every command sender is gone.
pub async fn run(
    udp: UdpSocket,
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
    let mut sfu = Sfu::new(config);
    if let Some(tap) = tap {
        sfu.set_tap(tap);
    }
    let mut conns: HashMap<ParticipantId, mpsc::Sender<ConnEvent>> = HashMap::new();
    let mut buf = vec![0u8; 2048];
    info!(media = %local, "media loop started");

    loop {
        flush(&mut sfu, &udp, &mut conns, &persist).await;
        let wake = sfu
            .poll_timeout()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        tokio::select! {
            r = udp.recv_from(&mut buf) => {
                match r {
                    Ok((n, source)) => sfu.handle_datagram(Instant::now(), source, local, &buf[..n]),
                    Err(e) => warn!(%e, "udp receive failed"),
                }
                // Drain what else is queued before looking at timers.
                for _ in 0..RECV_BATCH {
                    match udp.try_recv_from(&mut buf) {
                        Ok((n, source)) => {
                            sfu.handle_datagram(Instant::now(), source, local, &buf[..n]);
                        }
                        Err(_) => break,
                    }
                }
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { return };
                handle_cmd(&mut sfu, &mut conns, cmd);
            }
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {
                sfu.handle_timeout(Instant::now());
            }
        }
    }
}

fn handle_cmd(
    sfu: &mut Sfu,
    conns: &mut HashMap<ParticipantId, mpsc::Sender<ConnEvent>>,
    cmd: MediaCmd,
) {
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

/// Carries out everything the SFU asked for.
async fn flush(
    sfu: &mut Sfu,
    udp: &UdpSocket,
    conns: &mut HashMap<ParticipantId, mpsc::Sender<ConnEvent>>,
    persist: &PersistTx,
) {
    let mut slow = Vec::new();
    loop {
        while let Some(out) = sfu.poll_output() {
            match out {
                Output::Transmit {
                    destination,
                    contents,
                    ..
                } => {
                    if let Err(e) = udp.send_to(&contents, destination).await {
                        tracing::debug!(%e, "udp send failed");
                    }
                }
                Output::Signal { to, msg } => {
                    if let Some(conn) = conns.get(&to) {
                        if conn.try_send(ConnEvent::Msg(msg)).is_err() {
                            // A connection that cannot keep up with signaling
                            // is dropped rather than allowed to grow memory.
                            slow.push(to);
                        }
                    }
                }
                Output::Close { who, code } => {
                    if let Some(conn) = conns.remove(&who) {
                        let _ = conn.try_send(ConnEvent::Close(code));
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
                warn!(participant = %who, "signaling connection too slow; removed");
                let _ = conn.try_send(ConnEvent::Close(Some(ErrorCode::Internal)));
                sfu.leave(now, who);
            }
        }
    }
}
