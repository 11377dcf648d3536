//! Host controls: the lobby (enter, admit, deny, leave), removal,
//! promotion, mute requests, room settings and the end of a meeting. Who may
//! do what is decided by `policy.rs`; this module carries the decisions out
//! and tells everyone concerned.

use std::time::Instant;

use aparte_proto::{ErrorCode, ParticipantId, Role, RoomId, ServerMsg};
use tracing::info;

use crate::policy::Waiter;
use crate::{Output, RoomUpdate, Sfu};

impl Sfu {
    /// Changes a room's settings on behalf of `from` (whose role is checked).
    /// A passcode arrives here as its argon2 verifier.
    pub fn update_room(&mut self, now: Instant, from: ParticipantId, update: &RoomUpdate) {
        if self.waiting.contains_key(&from) {
            self.refuse(from, ErrorCode::NotAdmitted, "waiting in the lobby");
        } else if self.participants.contains_key(&from) {
            self.apply_update(now, from, update);
        }
        self.settle(now);
    }

    pub(crate) fn apply_update(&mut self, now: Instant, from: ParticipantId, update: &RoomUpdate) {
        let Some(room) = self.participants.get(&from).map(|p| p.room.clone()) else {
            return;
        };
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let role = r.policy.role(from).unwrap_or(Role::Guest);
        let was_persistent = r.policy.settings.persistent;
        if let Err(code) = r.policy.update(role, update) {
            self.refuse(from, code, "only the host (or a moderator) may change this");
            return;
        }
        let state = r.policy.settings.state();
        let persist = match (was_persistent, state.persistent) {
            (_, true) => Some(Some(r.policy.stored())),
            (true, false) => Some(None),
            (false, false) => None,
        };
        for &m in &r.members {
            self.out.push_back(Output::Signal {
                to: m,
                msg: ServerMsg::RoomUpdated { room: state },
            });
        }
        if let Some(stored) = persist {
            self.out.push_back(Output::Persist {
                room: room.clone(),
                stored,
            });
        }
        if update.lobby == Some(false) {
            // Turning the lobby off lets in whoever waits.
            let waiting: Vec<ParticipantId> = r.policy.waiting.iter().map(|w| w.id).collect();
            for w in waiting {
                let _ = self.decide(now, &room, w, true);
            }
        }
        info!(participant = %from, "room settings changed");
    }

    /// Runs a host control for `from` if its role is at least `need`.
    pub(crate) fn control(
        &mut self,
        from: ParticipantId,
        need: Role,
        act: impl FnOnce(&mut Self, &RoomId) -> Result<(), ErrorCode>,
    ) {
        let Some(room) = self.participants.get(&from).map(|p| p.room.clone()) else {
            return;
        };
        let role = self
            .rooms
            .get(&room)
            .and_then(|r| r.policy.role(from))
            .unwrap_or(Role::Guest);
        let result = if role >= need {
            act(self, &room)
        } else {
            Err(ErrorCode::Forbidden)
        };
        if let Err(code) = result {
            let text = match code {
                ErrorCode::Forbidden => "your role does not allow this",
                ErrorCode::UnknownPeer => "no such participant here",
                ErrorCode::RoomFull => "the room is full",
                _ => "refused",
            };
            self.refuse(from, code, text);
        }
    }

    /// Admits or denies someone waiting in `room`'s lobby.
    pub(crate) fn decide(
        &mut self,
        now: Instant,
        room: &RoomId,
        peer: ParticipantId,
        admit: bool,
    ) -> Result<(), ErrorCode> {
        let Some(r) = self.rooms.get(room) else {
            return Err(ErrorCode::UnknownPeer);
        };
        if !r.policy.waiting.iter().any(|w| w.id == peer) {
            return Err(ErrorCode::UnknownPeer);
        }
        if admit && r.members.len() >= self.config.max_participants_per_room {
            return Err(ErrorCode::RoomFull);
        }
        if admit {
            self.leave_lobby(peer, None, true);
            self.admit(now, peer, room.clone(), Role::Guest, None);
        } else {
            self.leave_lobby(peer, Some(ErrorCode::Denied), false);
        }
        Ok(())
    }

    /// A waiter's sealed name (once): kept for moderators who arrive later,
    /// and shown to those present. It is sealed for this waiter's id, so a
    /// name the server moved to another waiter does not open.
    pub(crate) fn lobby_name(&mut self, id: ParticipantId, name: String) {
        let Some(room) = self.waiting.get(&id).cloned() else {
            return;
        };
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        let Some(w) = r.policy.waiting.iter_mut().find(|w| w.id == id) else {
            return;
        };
        if w.name.is_some() {
            self.refuse(id, ErrorCode::Forbidden, "the name was already given");
            return;
        }
        w.name = Some(name.clone());
        for m in r.policy.moderators_present() {
            self.out.push_back(Output::Signal {
                to: m,
                msg: ServerMsg::LobbyRequest {
                    peer: id,
                    name: Some(name.clone()),
                },
            });
        }
    }

    pub(crate) fn enter_lobby(
        &mut self,
        id: ParticipantId,
        room: RoomId,
        network: Option<std::net::IpAddr>,
    ) {
        let Some(r) = self.rooms.get_mut(&room) else {
            return;
        };
        r.policy.waiting.push(Waiter {
            id,
            name: None,
            network,
        });
        for m in r.policy.moderators_present() {
            self.out.push_back(Output::Signal {
                to: m,
                msg: ServerMsg::LobbyRequest {
                    peer: id,
                    name: None,
                },
            });
        }
        self.waiting.insert(id, room);
        self.out.push_back(Output::Signal {
            to: id,
            msg: ServerMsg::Waiting { you: id },
        });
        info!(participant = %id, "waiting in the lobby");
    }

    /// Tells a host or moderator who waits in the lobby now.
    pub(crate) fn send_lobby(&mut self, to: ParticipantId, room: &RoomId) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        for w in &r.policy.waiting {
            self.out.push_back(Output::Signal {
                to,
                msg: ServerMsg::LobbyRequest {
                    peer: w.id,
                    name: w.name.clone(),
                },
            });
        }
    }

    /// Takes `id` out of its lobby, telling the room's moderators; closes its
    /// connection with `close` when it is not admitted.
    pub(crate) fn leave_lobby(
        &mut self,
        id: ParticipantId,
        close: Option<ErrorCode>,
        admitted: bool,
    ) {
        let Some(room) = self.waiting.remove(&id) else {
            return;
        };
        if let Some(r) = self.rooms.get_mut(&room) {
            r.policy.waiting.retain(|w| w.id != id);
            for m in r.policy.moderators_present() {
                self.out.push_back(Output::Signal {
                    to: m,
                    msg: ServerMsg::LobbyDone { peer: id, admitted },
                });
            }
        }
        if !admitted {
            info!(participant = %id, code = close.map(ErrorCode::as_str), "left the lobby");
            self.out.push_back(Output::Close {
                who: id,
                code: close,
            });
            self.free_if_empty(&room);
        }
    }

    /// Removes `peer` on behalf of `by`: a moderator may remove guests, the
    /// host anyone but itself.
    pub(crate) fn remove_by(
        &mut self,
        by: ParticipantId,
        room: &RoomId,
        peer: ParticipantId,
    ) -> Result<(), ErrorCode> {
        let Some(r) = self.rooms.get(room) else {
            return Err(ErrorCode::UnknownPeer);
        };
        let (Some(by_role), Some(target)) = (r.policy.role(by), r.policy.role(peer)) else {
            return Err(ErrorCode::UnknownPeer);
        };
        if peer == by || target >= by_role {
            return Err(ErrorCode::Forbidden);
        }
        self.doomed.push((peer, Some(ErrorCode::Removed)));
        Ok(())
    }

    pub(crate) fn promote(&mut self, room: &RoomId, peer: ParticipantId) -> Result<(), ErrorCode> {
        let key = self.token();
        let Some(r) = self.rooms.get_mut(room) else {
            return Err(ErrorCode::UnknownPeer);
        };
        if r.policy.role(peer) != Some(Role::Guest) {
            return Err(ErrorCode::UnknownPeer);
        }
        r.policy.promote(peer, &key);
        for &m in &r.members {
            self.out.push_back(Output::Signal {
                to: m,
                msg: ServerMsg::RoleChanged {
                    peer,
                    role: Role::Moderator,
                },
            });
        }
        self.out.push_back(Output::Signal {
            to: peer,
            msg: ServerMsg::ModeratorKey { key },
        });
        if r.policy.settings.persistent {
            self.out.push_back(Output::Persist {
                room: room.clone(),
                stored: Some(r.policy.stored()),
            });
        }
        self.send_lobby(peer, room);
        Ok(())
    }

    pub(crate) fn ask_mute(
        &mut self,
        by: ParticipantId,
        room: &RoomId,
        peer: Option<ParticipantId>,
    ) -> Result<(), ErrorCode> {
        let Some(r) = self.rooms.get(room) else {
            return Err(ErrorCode::UnknownPeer);
        };
        if peer.is_some_and(|p| !r.members.contains(&p)) {
            return Err(ErrorCode::UnknownPeer);
        }
        for &m in &r.members {
            self.out.push_back(Output::Signal {
                to: m,
                msg: ServerMsg::MuteRequested { by, peer },
            });
        }
        Ok(())
    }

    /// Ends the meeting in `room` for everyone, lobby included.
    pub(crate) fn end(&mut self, room: &RoomId) {
        let Some(r) = self.rooms.get(room) else {
            return;
        };
        info!(members = r.members.len(), "meeting ended by its host");
        let waiting: Vec<ParticipantId> = r.policy.waiting.iter().map(|w| w.id).collect();
        for &m in &r.members {
            self.doomed.push((m, Some(ErrorCode::MeetingEnded)));
        }
        for w in waiting {
            self.leave_lobby(w, Some(ErrorCode::MeetingEnded), false);
        }
    }
}
