//! One WebSocket signaling connection: parses what the client sends into
//! typed messages (answering refusals with typed errors), applies the limits
//! that need no room state (message rate, join attempts per address, wrong
//! passcodes), does the work that must stay off the media loop (loading a
//! persistent room, argon2), and passes the rest to the media loop.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use aparte_proto::{ClientMsg, ErrorCode, ParticipantId, Role, ServerMsg, parse_client_msg};
use aparte_sfu::{Admission, JoinError, JoinRequest, RoomUpdate};
use axum::extract::ws::{Message, WebSocket};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use crate::http::Shared;
use crate::limits::Bucket;
use crate::media::{ConnEvent, MediaCmd};

/// Messages queued towards one client before it counts as too slow.
const CONN_QUEUE: usize = 256;

/// One connection's state.
struct Conn {
    shared: Arc<Shared>,
    ip: IpAddr,
    tx: mpsc::Sender<ConnEvent>,
    /// The participant (admitted or waiting) behind this connection.
    me: Option<ParticipantId>,
    /// Its role, as the server last told it.
    role: Role,
    bucket: Bucket,
    /// When the client was last told it is sending too fast.
    limited_notice: Option<Instant>,
}

/// Serves one signaling connection until it closes.
pub async fn connection(mut socket: WebSocket, shared: Arc<Shared>, ip: IpAddr) {
    let (tx, mut rx) = mpsc::channel::<ConnEvent>(CONN_QUEUE);
    info!(
        client = %shared.config.show_address(ip),
        "signaling connection opened"
    );
    let burst = f64::from(shared.config.message_rate) * 2.0;
    let mut conn = Conn {
        shared,
        ip,
        tx,
        me: None,
        role: Role::Guest,
        bucket: Bucket::full(burst, Instant::now()),
        limited_notice: None,
    };
    loop {
        tokio::select! {
            m = socket.recv() => {
                let text = match m {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Binary(_))) => {
                        let e = ServerMsg::error(ErrorCode::BadMessage, "binary messages are not part of the protocol");
                        if send(&mut socket, &e).await.is_err() { break }
                        continue;
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => continue,
                };
                let reply = if conn.over_rate() {
                    conn.rate_notice()
                } else {
                    match parse_client_msg(text.as_str()) {
                        Err(e) => Some(ServerMsg::error(e.code, e.detail)),
                        Ok(msg) => conn.handle(msg).await,
                    }
                };
                if let Some(reply) = reply {
                    if send(&mut socket, &reply).await.is_err() { break }
                }
            }
            ev = rx.recv() => match ev {
                Some(ConnEvent::Msg(m)) => {
                    conn.observe(&m);
                    if send(&mut socket, &m).await.is_err() { break }
                }
                Some(ConnEvent::Close(code)) => {
                    // The media loop already removed the participant.
                    conn.me = None;
                    if let Some(code) = code {
                        let _ = send(&mut socket, &ServerMsg::error(code, close_reason(code))).await;
                    }
                    let _ = socket.send(Message::Close(None)).await;
                    break;
                }
                None => break,
            },
        }
    }
    if let Some(who) = conn.me {
        let _ = conn
            .shared
            .media_of(who)
            .send(MediaCmd::Leave { who })
            .await;
    }
}

impl Conn {
    fn over_rate(&mut self) -> bool {
        let rate = f64::from(self.shared.config.message_rate);
        !self.bucket.take(Instant::now(), rate, rate * 2.0)
    }

    /// One `rate_limited` error per second at most: a flood of messages must
    /// not become a flood of replies.
    fn rate_notice(&mut self) -> Option<ServerMsg> {
        let now = Instant::now();
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
                    name,
                },
                None,
            ) => {
                let req = JoinRequest {
                    room,
                    key,
                    seat,
                    name,
                    passcode_checked: None,
                    stored: None,
                };
                self.join(req, passcode).await
            }
            (
                ClientMsg::UpdateRoom {
                    lobby,
                    locked,
                    persistent,
                    passcode: Some(passcode),
                },
                Some(from),
            ) => {
                if self.role != Role::Host {
                    return Some(ServerMsg::error(
                        ErrorCode::Forbidden,
                        "only the host sets the passcode",
                    ));
                }
                let verifier = if passcode.is_empty() {
                    None
                } else {
                    match tokio::task::spawn_blocking(move || crate::passcode::hash(&passcode))
                        .await
                    {
                        Ok(Ok(v)) => Some(v),
                        _ => return Some(internal()),
                    }
                };
                let update = RoomUpdate {
                    lobby,
                    locked,
                    persistent,
                    passcode: Some(verifier),
                };
                self.to_media(from, MediaCmd::Update { from, update }).await
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
        if !self.shared.join_limiter.allow(&self.ip, now) {
            return Some(ServerMsg::error(
                ErrorCode::RateLimited,
                "too many join attempts from your network; wait a minute",
            ));
        }
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
                conn: self.tx.clone(),
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
            let now = Instant::now();
            let s = &self.shared;
            if !s.passcode_by_room.would_allow(&req.room, now)
                || !s.passcode_by_addr.would_allow(&self.ip, now)
            {
                return Some(ServerMsg::error(
                    ErrorCode::RateLimited,
                    "too many wrong passcodes; wait a minute",
                ));
            }
            let v = verifier.clone();
            let ok = tokio::task::spawn_blocking(move || crate::passcode::verify(&given, &v))
                .await
                .unwrap_or(false);
            if !ok {
                s.passcode_by_room.allow(&req.room, now);
                s.passcode_by_addr.allow(&self.ip, now);
                return Some(ServerMsg::error(
                    ErrorCode::WrongPasscode,
                    close_reason(ErrorCode::WrongPasscode),
                ));
            }
            req.passcode_checked = Some(verifier);
        }
        // The passcode changed between the two rounds.
        Some(ServerMsg::error(
            ErrorCode::PasscodeRequired,
            close_reason(ErrorCode::PasscodeRequired),
        ))
    }
}

fn internal() -> ServerMsg {
    ServerMsg::error(ErrorCode::Internal, "the media service is unavailable")
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
        _ => "the server closed the connection",
    }
}

async fn send(socket: &mut WebSocket, msg: &ServerMsg) -> Result<(), axum::Error> {
    socket.send(Message::Text(msg.to_json().into())).await
}
