//! One WebSocket signaling connection: parses what the client sends into
//! typed messages (answering refusals with typed errors), applies the limits
//! that need no room state (messages and bytes per connection, with a close
//! for floods; join attempts per network; passcode guesses and changes; idle
//! and half-open timeouts), does the work that must stay off the media loop
//! (loading a persistent room, argon2 through the passcode pool), and passes
//! the rest to the media loop.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aparte_proto::{
    ClientMsg, ErrorCode, ParticipantId, Role, RoomId, ServerMsg, parse_client_msg,
};
use aparte_sfu::{Admission, JoinError, JoinRequest, RoomUpdate};
use axum::extract::ws::{CloseFrame, Message, WebSocket, close_code};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use crate::limits::{Flow, RateLimiter, Verdict, network_of};
use crate::media::{ConnEvent, ConnTx, MediaCmd, conn_queue};
use crate::state::Shared;

/// Bytes per second a connection may send, in bursts of twice that. A
/// browser's answers, commits and Welcomes stay far below; a client that
/// keeps sending more is flooding.
pub const BYTE_RATE: u32 = 512 * 1024;

/// Frames read out, at most, after the server's close frame.
const CLOSING_FRAMES: usize = 256;

/// One connection's state.
struct Conn {
    shared: Arc<Shared>,
    /// The client's network (its address; an IPv6 address's /64).
    net: IpAddr,
    /// The queue the media loop writes to, until a participant owns it.
    tx: Option<ConnTx>,
    /// The participant (admitted or waiting) behind this connection.
    me: Option<ParticipantId>,
    /// Its room.
    room: Option<RoomId>,
    /// Its role, as the server last told it.
    role: Role,
    flow: Flow,
    /// When the client was last told it is sending too fast.
    limited_notice: Option<Instant>,
}

/// Serves one signaling connection until it closes.
pub async fn connection(mut socket: WebSocket, shared: Arc<Shared>, ip: IpAddr) {
    let (tx, mut rx) = conn_queue();
    info!(
        client = %shared.config.show_address(ip),
        "signaling connection opened"
    );
    let opened = Instant::now();
    let idle = shared.config.idle_timeout;
    // How long one write to the client may take, and how long it may stay
    // silent (pongs included) before it counts as gone.
    let stall = idle * 3;
    let mut conn = Conn {
        flow: Flow::new(shared.config.message_rate, BYTE_RATE, opened),
        shared,
        net: network_of(ip),
        tx: Some(tx),
        me: None,
        room: None,
        role: Role::Guest,
        limited_notice: None,
    };
    let mut heard = opened;
    let mut pinged = opened;
    let mut tick = tokio::time::interval((idle / 4).max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let end = loop {
        tokio::select! {
            m = socket.recv() => {
                let now = Instant::now();
                heard = now;
                let frame = match m {
                    Some(Ok(Message::Text(t))) => Frame::Text(t),
                    Some(Ok(Message::Binary(b))) => Frame::Binary(b.len()),
                    // Control frames count against the rate like any other:
                    // the library answers pings by itself, so a ping flood
                    // would otherwise be free.
                    Some(Ok(Message::Ping(p) | Message::Pong(p))) => Frame::Control(p.len()),
                    Some(Ok(Message::Close(_))) | None => break End::Quiet,
                    Some(Err(e)) => break End::from_error(&e),
                };
                match conn.flow.admit(now, frame.len()) {
                    Verdict::Pass => {}
                    Verdict::Drop => {
                        if let Some(notice) = conn.rate_notice(now) {
                            if send(&mut socket, &notice, stall).await.is_err() { break End::Quiet }
                        }
                        continue;
                    }
                    Verdict::Close => break End::Flood,
                }
                let reply = match frame {
                    Frame::Text(text) => match parse_client_msg(text.as_str()) {
                        Err(e) => Some(ServerMsg::error(e.code, e.detail)),
                        Ok(msg) => conn.handle(msg).await,
                    },
                    Frame::Binary(_) => Some(ServerMsg::error(
                        ErrorCode::BadMessage,
                        "binary messages are not part of the protocol",
                    )),
                    Frame::Control(_) => continue,
                };
                if let Some(reply) = reply {
                    if send(&mut socket, &reply, stall).await.is_err() { break End::Quiet }
                }
            }
            ev = rx.recv() => match ev {
                Some(ConnEvent::Msg(m)) => {
                    conn.observe(&m);
                    // TURN credentials go to admitted participants only (not
                    // to the lobby), just before their welcome and so before
                    // their first offer.
                    if let (ServerMsg::Welcome { .. }, Some(turn)) = (&m, conn.turn_servers()) {
                        if send(&mut socket, &turn, stall).await.is_err() { break End::Quiet }
                    }
                    if send(&mut socket, &m, stall).await.is_err() { break End::Quiet }
                }
                Some(ConnEvent::Close(code)) => {
                    // The media loop already removed the participant.
                    conn.me = None;
                    if let Some(code) = code {
                        let _ = send(&mut socket, &ServerMsg::error(code, close_reason(code)), stall).await;
                    }
                    break End::Normal;
                }
                None => break End::Quiet,
            },
            _ = tick.tick() => {
                let now = Instant::now();
                if conn.me.is_none() && now.duration_since(opened) >= idle {
                    // Nobody joined: a connection that only holds a socket.
                    break End::Timeout;
                }
                if now.duration_since(heard) >= stall {
                    // Not even a pong: the client is gone (half-open).
                    break End::Dead;
                }
                if now.duration_since(pinged) >= idle {
                    pinged = now;
                    if timed(&mut socket, Message::Ping(Default::default()), stall).await.is_err() {
                        break End::Quiet;
                    }
                }
            }
        }
    };
    if end == End::Flood {
        // Counted for the network: one that keeps flooding is refused new
        // connections for a while (see `http::ws_upgrade`).
        conn.shared.flood_strikes.allow(&conn.net, Instant::now());
        info!("flooding signaling connection closed");
    }
    end.finish(&mut socket).await;
    if let Some(who) = conn.me {
        let _ = conn
            .shared
            .media_of(who)
            .send(MediaCmd::Leave { who })
            .await;
    }
}

/// One frame from the client, as flow control counts it.
enum Frame {
    Text(axum::extract::ws::Utf8Bytes),
    Binary(usize),
    Control(usize),
}

impl Frame {
    fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(n) | Frame::Control(n) => *n,
        }
    }
}

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client closed it, or the socket failed: nothing more to say.
    Quiet,
    /// The server ends it (an error was already sent when there was one).
    Normal,
    /// A message over the transport limit: close code 1009.
    TooBig,
    /// A sustained flood: `rate_limited`, close code 1008.
    Flood,
    /// No join in time: `timeout`, close code 1008.
    Timeout,
    /// Nothing heard, not even a pong, for three idle timeouts.
    Dead,
}

impl End {
    fn from_error(e: &axum::Error) -> End {
        let too_big = std::error::Error::source(e)
            .and_then(|s| s.downcast_ref::<tungstenite::Error>())
            .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)));
        if too_big { End::TooBig } else { End::Quiet }
    }

    async fn finish(self, socket: &mut WebSocket) {
        let (code, reason, error) = match self {
            End::Quiet | End::Dead => return,
            End::Normal => (close_code::NORMAL, "", None),
            End::TooBig => (close_code::SIZE, "message too large", None),
            End::Flood => (
                close_code::POLICY,
                "too many messages",
                Some(ErrorCode::RateLimited),
            ),
            End::Timeout => (close_code::POLICY, "idle", Some(ErrorCode::Timeout)),
        };
        // A client that does not read cannot hold this task: the last words
        // are given a moment, then the socket is dropped.
        let grace = Duration::from_secs(1);
        if let Some(code) = error {
            let _ = send(socket, &ServerMsg::error(code, close_reason(code)), grace).await;
        }
        if self != End::Normal {
            debug!(end = ?self, "signaling connection closed by the server");
        }
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        if timed(socket, Message::Close(Some(frame)), grace)
            .await
            .is_err()
        {
            return;
        }
        // The closing handshake: read (and drop) what the client still
        // sends until its own close, for a moment and a few frames. Dropping
        // a socket with unread data resets it, and a reset can lose what was
        // just sent; a flooder that keeps sending is not read for long.
        let _ = tokio::time::timeout(grace, async {
            let mut frames = 0;
            while let Some(Ok(m)) = socket.recv().await {
                frames += 1;
                if matches!(m, Message::Close(_)) || frames >= CLOSING_FRAMES {
                    break;
                }
            }
        })
        .await;
    }
}

impl Conn {
    /// One `rate_limited` error per second at most: a flood of messages must
    /// not become a flood of replies.
    fn rate_notice(&mut self, now: Instant) -> Option<ServerMsg> {
        if self
            .limited_notice
            .is_some_and(|t| now.saturating_duration_since(t).as_secs() < 1)
        {
            return None;
        }
        self.limited_notice = Some(now);
        Some(ServerMsg::error(
            ErrorCode::RateLimited,
            "too many messages: some were dropped",
        ))
    }

    /// The organisation's TURN servers with fresh credentials, when
    /// configured.
    fn turn_servers(&self) -> Option<ServerMsg> {
        let turn = self.shared.config.turn.as_ref()?;
        let server =
            crate::turn::ice_server(&turn.urls, &turn.secret, std::time::SystemTime::now());
        Some(ServerMsg::IceServers {
            servers: vec![server],
        })
    }

    /// Follows this participant's role in what the server tells it.
    fn observe(&mut self, msg: &ServerMsg) {
        match msg {
            ServerMsg::Welcome { you, role, .. } => {
                self.me = Some(*you);
                self.role = *role;
            }
            ServerMsg::RoleChanged { peer, role } if Some(*peer) == self.me => self.role = *role,
            _ => {}
        }
    }

    /// Handles one parsed message; returns an immediate reply, if any.
    async fn handle(&mut self, msg: ClientMsg) -> Option<ServerMsg> {
        match (msg, self.me) {
            (
                ClientMsg::Join {
                    room,
                    key,
                    seat,
                    passcode,
                },
                None,
            ) => {
                let req = JoinRequest {
                    room,
                    key,
                    seat,
                    passcode_checked: None,
                    stored: None,
                    network: Some(self.net),
                };
                self.join(req, passcode).await
            }
            (
                ClientMsg::UpdateRoom {
                    lobby,
                    locked,
                    persistent,
                    passcode,
                },
                Some(from),
            ) => {
                let update = RoomUpdate {
                    lobby,
                    locked,
                    persistent,
                    passcode: None,
                };
                self.update_room(from, update, passcode).await
            }
            (ClientMsg::Join { .. }, Some(_)) => Some(ServerMsg::error(
                ErrorCode::AlreadyJoined,
                "this connection already joined",
            )),
            (msg, Some(from)) => self.to_media(from, MediaCmd::Message { from, msg }).await,
            (_, None) => Some(ServerMsg::error(
                ErrorCode::NotJoined,
                "join a room before anything else",
            )),
        }
    }

    /// A change of the room's settings. The media loop checks roles; what
    /// needs the disk or the CPU is done here first: the quota of persistent
    /// rooms, and a new passcode's verifier (hashed by the pool, at a rate
    /// per room and per network).
    async fn update_room(
        &mut self,
        from: ParticipantId,
        mut update: RoomUpdate,
        passcode: Option<String>,
    ) -> Option<ServerMsg> {
        if update.persistent == Some(true) && self.role == Role::Host {
            if let Err(refusal) = self.persistence_allowed().await {
                return Some(refusal);
            }
        }
        if let Some(passcode) = passcode {
            match self.verifier(passcode).await {
                Ok(v) => update.passcode = Some(v),
                Err(refusal) => return Some(refusal),
            }
        }
        self.to_media(from, MediaCmd::Update { from, update }).await
    }

    /// Whether this host's room may become persistent: it already is, or
    /// the server holds fewer than its maximum and this network has not made
    /// too many rooms persistent lately. (A host key opens one room only, so
    /// a key never holds more than one.)
    async fn persistence_allowed(&self) -> Result<(), ServerMsg> {
        let Some(room) = self.room.clone() else {
            return Err(internal());
        };
        let storage = self.shared.storage.clone();
        let max = self.shared.config.max_persistent_rooms;
        let counted = tokio::task::spawn_blocking(move || {
            Ok::<_, anyhow::Error>((storage.contains(&room)?, storage.count()?))
        })
        .await;
        let Ok(Ok((stored, count))) = counted else {
            return Err(internal());
        };
        if stored {
            return Ok(());
        }
        if count >= max {
            return Err(ServerMsg::error(
                ErrorCode::QuotaExceeded,
                "this server keeps no more persistent rooms",
            ));
        }
        if !self.shared.persist_by_addr.allow(&self.net, Instant::now()) {
            return Err(ServerMsg::error(
                ErrorCode::RateLimited,
                "too many rooms made persistent from your network; try again later",
            ));
        }
        Ok(())
    }

    /// A new passcode's verifier (`None` for the empty passcode: removed).
    async fn verifier(&mut self, passcode: String) -> Result<Option<Arc<str>>, ServerMsg> {
        if self.role != Role::Host {
            return Err(ServerMsg::error(
                ErrorCode::Forbidden,
                "only the host sets the passcode",
            ));
        }
        if passcode.is_empty() {
            return Ok(None);
        }
        let s = &self.shared;
        let Some(room) = self.room.clone() else {
            return Err(internal());
        };
        let (by_net, by_room) = (&s.passcode_sets_by_addr, &s.passcode_sets_by_room);
        if !take_both(by_net, &self.net, by_room, &room) {
            return Err(ServerMsg::error(
                ErrorCode::RateLimited,
                "the passcode was changed too often; wait a minute",
            ));
        }
        match s.passcodes.hash(passcode).await {
            Ok(Some(v)) => Ok(Some(v)),
            Ok(None) => Err(internal()),
            Err(crate::passcode::Busy) => {
                // Not hashed, so not counted.
                by_net.refund(&self.net);
                by_room.refund(&room);
                Err(busy())
            }
        }
    }

    /// Passes `from`'s command to the media loop that runs its room.
    async fn to_media(&self, from: ParticipantId, cmd: MediaCmd) -> Option<ServerMsg> {
        if self.shared.media_of(from).send(cmd).await.is_err() {
            return Some(internal());
        }
        None
    }

    /// Joins: limits, the stored room, the passcode, then the media loop.
    async fn join(&mut self, mut req: JoinRequest, passcode: Option<String>) -> Option<ServerMsg> {
        let now = Instant::now();
        if !self.shared.join_limiter.allow(&self.net, now) {
            return Some(ServerMsg::error(
                ErrorCode::RateLimited,
                "too many join attempts from your network; wait a minute",
            ));
        }
        let Some(tx) = self.tx.clone() else {
            return Some(internal());
        };
        let storage = self.shared.storage.clone();
        let room = req.room.clone();
        req.stored = match tokio::task::spawn_blocking(move || storage.load(&room)).await {
            Ok(Ok(stored)) => stored,
            Ok(Err(e)) => {
                warn!(error = %e, "reading stored rooms failed");
                None
            }
            Err(_) => None,
        };
        // At most two rounds: the second carries the checked passcode.
        for _ in 0..2 {
            let (reply, answer) = oneshot::channel();
            let cmd = MediaCmd::Join {
                req: req.clone(),
                conn: tx.clone(),
                reply,
            };
            if self
                .shared
                .media_for_room(&req.room)
                .send(cmd)
                .await
                .is_err()
            {
                return Some(internal());
            }
            let verifier = match answer.await {
                Ok(Ok(Admission::Admitted(id) | Admission::Waiting(id))) => {
                    self.me = Some(id);
                    self.room = Some(req.room.clone());
                    // The participant owns the queue now: when the media
                    // loop lets go of it, the connection ends.
                    self.tx = None;
                    return None;
                }
                Ok(Err(JoinError::Passcode(v))) => v,
                Ok(Err(e)) => return Some(ServerMsg::error(e.code(), close_reason(e.code()))),
                Err(_) => return Some(internal()),
            };
            let Some(given) = passcode.clone() else {
                return Some(ServerMsg::error(
                    ErrorCode::PasscodeRequired,
                    close_reason(ErrorCode::PasscodeRequired),
                ));
            };
            match self
                .check_passcode(&req.room, given, verifier.clone())
                .await
            {
                Ok(()) => req.passcode_checked = Some(verifier),
                Err(refusal) => return Some(refusal),
            }
        }
        // The passcode changed between the two rounds.
        Some(ServerMsg::error(
            ErrorCode::PasscodeRequired,
            close_reason(ErrorCode::PasscodeRequired),
        ))
    }

    /// Checks a passcode guess. The guess is counted *before* argon2 runs, per
    /// network and per room, so concurrent guesses cannot all slip through a
    /// check made before any of them failed; a right guess is given back.
    async fn check_passcode(
        &self,
        room: &RoomId,
        given: String,
        verifier: Arc<str>,
    ) -> Result<(), ServerMsg> {
        let s = &self.shared;
        if !take_both(&s.passcode_by_addr, &self.net, &s.passcode_by_room, room) {
            return Err(ServerMsg::error(
                ErrorCode::RateLimited,
                "too many wrong passcodes; wait a minute",
            ));
        }
        match s.passcodes.verify(given, verifier).await {
            Ok(true) => {
                s.passcode_by_addr.refund(&self.net);
                s.passcode_by_room.refund(room);
                Ok(())
            }
            Ok(false) => Err(ServerMsg::error(
                ErrorCode::WrongPasscode,
                close_reason(ErrorCode::WrongPasscode),
            )),
            Err(crate::passcode::Busy) => {
                // Not checked, so not counted.
                s.passcode_by_addr.refund(&self.net);
                s.passcode_by_room.refund(room);
                Err(busy())
            }
        }
    }
}

/// Takes a token of the network's limit, then of the room's; the network
/// first, so that a network over its limit spends none of the room's, and the
/// network's is given back when the room's is spent.
fn take_both(
    by_net: &RateLimiter<IpAddr>,
    net: &IpAddr,
    by_room: &RateLimiter<RoomId>,
    room: &RoomId,
) -> bool {
    let now = Instant::now();
    if !by_net.allow(net, now) {
        return false;
    }
    if !by_room.allow(room, now) {
        by_net.refund(net);
        return false;
    }
    true
}

fn internal() -> ServerMsg {
    ServerMsg::error(ErrorCode::Internal, "the media service is unavailable")
}

fn busy() -> ServerMsg {
    ServerMsg::error(ErrorCode::ServerBusy, close_reason(ErrorCode::ServerBusy))
}

fn close_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RoomFull => "the room is full",
        ErrorCode::RoomUnavailable => "this meeting is not open, or it is locked",
        ErrorCode::PasscodeRequired => "this meeting needs a passcode",
        ErrorCode::WrongPasscode => "the passcode is wrong",
        ErrorCode::Removed => "a host removed you from this meeting",
        ErrorCode::Denied => "a host did not let you in",
        ErrorCode::MeetingEnded => "the host ended the meeting",
        ErrorCode::ConnectionLost => "the media connection was lost",
        ErrorCode::InvalidSdp => "the answer did not match the offer",
        ErrorCode::RateLimited => "too many messages: the connection is closed",
        ErrorCode::Timeout => "the connection was idle too long",
        ErrorCode::ServerBusy => "the server is busy; try again in a moment",
        _ => "the server closed the connection",
    }
}

/// Sends one message, giving up after `within`: a client that stops reading
/// must not hold the connection's task (and its memory) forever.
async fn send(socket: &mut WebSocket, msg: &ServerMsg, within: Duration) -> Result<(), ()> {
    timed(socket, Message::Text(msg.to_json().into()), within).await
}

async fn timed(socket: &mut WebSocket, msg: Message, within: Duration) -> Result<(), ()> {
    match tokio::time::timeout(within, socket.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(()),
    }
}
