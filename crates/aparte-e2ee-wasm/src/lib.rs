//! The page's E2EE engine: a thin wasm-bindgen facade over `aparte-e2ee`'s
//! [`Session`]. It runs inside the page's encoded-transform worker, so group
//! secrets and media keys never live on the page's main thread. Messages cross
//! as base64 text and small JSON objects; frames cross as byte arrays.

#![forbid(unsafe_code)]

use aparte_e2ee::{FrameError, LinkSecret, MediaKind, Session, SessionEvent, SessionOut, b64};
use serde_json::json;
use wasm_bindgen::prelude::*;

/// One participant's E2EE engine.
#[wasm_bindgen]
#[derive(Debug)]
pub struct Engine {
    link: LinkSecret,
    grace_ms: u64,
    session: Option<Session>,
}

fn err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

fn kind(video: bool) -> MediaKind {
    if video {
        MediaKind::Video
    } else {
        MediaKind::Audio
    }
}

/// A fresh link secret (base64url), from the browser's CSPRNG.
#[wasm_bindgen(js_name = generateSecret)]
pub fn generate_secret() -> Result<String, JsError> {
    let mut bytes = [0u8; aparte_e2ee::LINK_SECRET_BYTES];
    getrandom::getrandom(&mut bytes).map_err(err)?;
    Ok(LinkSecret::from_bytes(bytes).encode())
}

#[wasm_bindgen]
impl Engine {
    /// An engine for the meeting whose link secret is `secret`.
    #[wasm_bindgen(constructor)]
    pub fn new(secret: &str, grace_ms: f64) -> Result<Engine, JsError> {
        Ok(Engine {
            link: LinkSecret::parse(secret).map_err(err)?,
            grace_ms: grace_ms as u64,
            session: None,
        })
    }

    /// Starts once the server welcomed participant `id` into `room`: the
    /// group is the room's (its id derives from the link and the room).
    pub fn start(
        &mut self,
        now: f64,
        id: f64,
        create_group: bool,
        room: &str,
    ) -> Result<(), JsError> {
        let id = id as u64;
        let mut s = Session::new(id, self.link.clone(), self.grace_ms, room).map_err(err)?;
        s.start(now as u64, create_group).map_err(err)?;
        self.session = Some(s);
        Ok(())
    }

    fn s(&mut self) -> Result<&mut Session, JsError> {
        self.session
            .as_mut()
            .ok_or_else(|| JsError::new("not started"))
    }

    /// This member removes participant `peer` (as host or moderator): the
    /// removal is committed from here at once, not left to the server to
    /// announce.
    pub fn remove(&mut self, now: f64, peer: f64) -> Result<(), JsError> {
        self.s()?.remove(now as u64, peer as u64);
        Ok(())
    }

    /// Handles one delivery-service message (the server's JSON text).
    pub fn signal(&mut self, now: f64, text: &str) -> Result<(), JsError> {
        let now = now as u64;
        let v: serde_json::Value = serde_json::from_str(text).map_err(err)?;
        let from = v["from"].as_u64().unwrap_or(0);
        let data = || {
            v["data"]
                .as_str()
                .and_then(b64::decode)
                .ok_or_else(|| JsError::new("bad data"))
        };
        let s = self.s()?;
        match v["type"].as_str().unwrap_or_default() {
            "mls_join_request" => s.join_request(now, from, data()?),
            "mls_commit" => s.commit(now, from, &data()?),
            "mls_commit_result" => match v["epoch"].as_u64() {
                Some(epoch) => s.commit_result(now, epoch, v["accepted"].as_bool() == Some(true)),
                None => return Err(JsError::new("commit result without epoch")),
            },
            "mls_welcome" => s.welcome(now, &data()?).map_err(err)?,
            "mls_app" => s.app(now, from, &data()?),
            "mls_create_group" => s.create_group(now).map_err(err)?,
            "peer_left" => s.peer_left(now, v["peer"].as_u64().unwrap_or(0)),
            _ => {}
        }
        Ok(())
    }

    /// Sends an application message (names, chat) to the group.
    pub fn send(&mut self, text: &str) -> Result<(), JsError> {
        self.s()?.send(text.as_bytes()).map_err(err)
    }

    /// Sends an application message only members `to` need (this member's
    /// state for those who just joined).
    #[wasm_bindgen(js_name = sendTo)]
    pub fn send_to(&mut self, to: Vec<f64>, text: &str) -> Result<(), JsError> {
        let to: Vec<u64> = to.into_iter().map(|id| id as u64).collect();
        self.s()?.send_to(&to, text.as_bytes()).map_err(err)
    }

    /// Advances time (fallback commits).
    #[wasm_bindgen(js_name = handleTimeout)]
    pub fn handle_timeout(&mut self, now: f64) {
        if let Some(s) = &mut self.session {
            s.handle_timeout(now as u64);
        }
    }

    /// When to call `handleTimeout` next, if anything waits.
    #[wasm_bindgen(js_name = pollTimeout)]
    pub fn poll_timeout(&self) -> Option<f64> {
        self.session.as_ref()?.poll_timeout().map(|t| t as f64)
    }

    /// The next message for the server (JSON, without the protocol version).
    #[wasm_bindgen(js_name = pollOutput)]
    pub fn poll_output(&mut self) -> Option<String> {
        let out = self.session.as_mut()?.poll_output()?;
        let v = match out {
            SessionOut::KeyPackage(kp) => {
                json!({ "type": "mls_key_package", "data": b64::encode(&kp) })
            }
            SessionOut::Commit {
                epoch,
                message,
                welcome,
                added,
            } => json!({
                "type": "mls_commit",
                "epoch": epoch,
                "data": b64::encode(&message),
                "welcome": welcome.map(|w| b64::encode(&w)),
                "added": added,
            }),
            SessionOut::App { message, to } if to.is_empty() => {
                json!({ "type": "mls_app", "data": b64::encode(&message) })
            }
            SessionOut::App { message, to } => {
                json!({ "type": "mls_app", "data": b64::encode(&message), "to": to })
            }
        };
        Some(v.to_string())
    }

    /// The next event for the page (JSON).
    #[wasm_bindgen(js_name = pollEvent)]
    pub fn poll_event(&mut self) -> Option<String> {
        let s = self.session.as_mut()?;
        let ev = s.poll_event()?;
        let v = match ev {
            SessionEvent::Epoch {
                epoch,
                members,
                joined,
            } => {
                let code = s.security_code();
                json!({
                    "type": "epoch",
                    "epoch": epoch,
                    "members": members,
                    "joined": joined,
                    "emoji": code.as_ref().map(|c| c.emoji.clone()),
                    "digits": code.map(|c| c.digits),
                })
            }
            SessionEvent::Message { from, data } => json!({
                "type": "message",
                "from": from,
                "text": String::from_utf8_lossy(&data),
            }),
            SessionEvent::Removed => json!({ "type": "removed" }),
            SessionEvent::Refused { from, reason } => {
                json!({ "type": "refused", "from": from, "reason": reason })
            }
        };
        Some(v.to_string())
    }

    /// Whether keys exist: before this, nothing may be sent.
    #[wasm_bindgen(js_name = isReady)]
    pub fn is_ready(&self) -> bool {
        self.session.as_ref().is_some_and(Session::is_ready)
    }

    /// Seals a display name for the lobby of `room`, as waiter `waiter`
    /// (the id the server gave it, an integer below 2^53), in base64url: the
    /// host reads it, the server does not and cannot show it as another's.
    #[wasm_bindgen(js_name = sealName)]
    pub fn seal_name(&self, room: &str, waiter: f64, name: &str) -> Result<String, JsError> {
        let mut nonce = [0u8; 12];
        getrandom::getrandom(&mut nonce).map_err(err)?;
        Ok(self.link.seal_lobby_name(room, waiter as u64, name, nonce))
    }

    /// Opens a name sealed by [`Engine::seal_name`]; `undefined` when it was
    /// not sealed with this meeting's link for `room` by waiter `waiter`.
    #[wasm_bindgen(js_name = openName)]
    pub fn open_name(&self, room: &str, waiter: f64, sealed: &str) -> Option<String> {
        self.link.open_lobby_name(room, waiter as u64, sealed)
    }

    /// Seals one outgoing frame.
    pub fn seal(&mut self, video: bool, frame: &[u8]) -> Result<Vec<u8>, JsError> {
        self.s()?.media().seal(kind(video), frame).map_err(err)
    }

    /// Opens one incoming frame that came on a track of participant `from`
    /// (an integer below 2^53). Errors if it has no key, fails
    /// authentication, opens only with another member's key than `from`'s
    /// (the message starts with "relabelled"), is a replay ("replayed"), or
    /// was sealed with a key of an epoch this member left ("behind").
    pub fn open(
        &mut self,
        now: f64,
        video: bool,
        from: f64,
        frame: &[u8],
    ) -> Result<Vec<u8>, JsError> {
        self.s()?
            .media()
            .open(now as u64, kind(video), from as u64, frame)
            .map_err(|e| match e {
                FrameError::WrongSender => JsError::new("relabelled"),
                FrameError::Replayed => JsError::new("replayed"),
                FrameError::Behind => JsError::new("behind"),
                other => err(other),
            })
    }
}
