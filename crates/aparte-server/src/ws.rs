//! One WebSocket signaling connection: parses what the client sends into
//! typed messages (answering refusals with typed errors), passes them to the
//! media loop, and writes back what the media loop says.

use aparte_proto::{ClientMsg, ErrorCode, ParticipantId, ServerMsg, parse_client_msg};
use axum::extract::ws::{Message, WebSocket};
use tokio::sync::{mpsc, oneshot};

use crate::media::{ConnEvent, MediaCmd};

/// Messages queued towards one client before it counts as too slow.
const CONN_QUEUE: usize = 256;

/// Serves one signaling connection until it closes.
pub async fn connection(mut socket: WebSocket, media: mpsc::Sender<MediaCmd>) {
    let (tx, mut rx) = mpsc::channel::<ConnEvent>(CONN_QUEUE);
    let mut me: Option<ParticipantId> = None;
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
                let reply = match parse_client_msg(text.as_str()) {
                    Err(e) => Some(ServerMsg::error(e.code, e.detail)),
                    Ok(msg) => handle(msg, &mut me, &tx, &media).await,
                };
                if let Some(reply) = reply {
                    if send(&mut socket, &reply).await.is_err() { break }
                }
            }
            ev = rx.recv() => match ev {
                Some(ConnEvent::Msg(m)) => {
                    if send(&mut socket, &m).await.is_err() { break }
                }
                Some(ConnEvent::Close(code)) => {
                    // The media loop already removed the participant.
                    me = None;
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
    if let Some(who) = me {
        let _ = media.send(MediaCmd::Leave { who }).await;
    }
}

/// Handles one parsed message; returns an immediate reply, if any.
async fn handle(
    msg: ClientMsg,
    me: &mut Option<ParticipantId>,
    tx: &mpsc::Sender<ConnEvent>,
    media: &mpsc::Sender<MediaCmd>,
) -> Option<ServerMsg> {
    let unavailable = || ServerMsg::error(ErrorCode::Internal, "the media service is unavailable");
    match (msg, *me) {
        (ClientMsg::Join { room }, None) => {
            let (reply, answer) = oneshot::channel();
            let cmd = MediaCmd::Join {
                room,
                conn: tx.clone(),
                reply,
            };
            if media.send(cmd).await.is_err() {
                return Some(unavailable());
            }
            match answer.await {
                Ok(Ok(id)) => {
                    *me = Some(id);
                    None
                }
                Ok(Err(code)) => Some(ServerMsg::error(code, close_reason(code))),
                Err(_) => Some(unavailable()),
            }
        }
        (msg, Some(from)) => {
            if media.send(MediaCmd::Message { from, msg }).await.is_err() {
                return Some(unavailable());
            }
            None
        }
        (_, None) => Some(ServerMsg::error(
            ErrorCode::NotJoined,
            "join a room before anything else",
        )),
    }
}

fn close_reason(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::RoomFull => "the room is full",
        ErrorCode::ConnectionLost => "the media connection was lost",
        ErrorCode::InvalidSdp => "the answer did not match the offer",
        _ => "the server closed the connection",
    }
}

async fn send(socket: &mut WebSocket, msg: &ServerMsg) -> Result<(), axum::Error> {
    socket.send(Message::Text(msg.to_json().into())).await
}
