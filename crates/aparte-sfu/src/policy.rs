//! Who may enter a room and what each participant may do: roles, the lobby,
//! the lock, the passcode, seats and their revocation. Pure bookkeeping; the
//! SFU applies the decisions.
//!
//! Every capability is kept as a [`KeyHash`]: the host key's (fixed when the
//! room opens, and derived from the same key as the room id), the moderator
//! keys' (issued on promotion) and the seats' (issued on admission, revoked on
//! removal). Nothing here outlives the meeting unless the host made the room
//! persistent, and then only [`StoredRoom`].

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use aparte_proto::{
    ErrorCode, KeyHash, KeyPurpose, ParticipantId, Role, RoomId, RoomState, Token,
    room_for_host_key,
};

/// A room's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomSettings {
    /// Joiners without a capability wait in the lobby.
    pub lobby: bool,
    /// Nobody without a capability may enter, not even the lobby.
    pub locked: bool,
    /// The argon2 verifier (PHC string) of the passcode, when there is one.
    pub passcode: Option<Arc<str>>,
    /// The settings are stored and outlive the meeting.
    pub persistent: bool,
}

impl Default for RoomSettings {
    /// Lobby on, unlocked, no passcode, not persistent.
    fn default() -> Self {
        RoomSettings {
            lobby: true,
            locked: false,
            passcode: None,
            persistent: false,
        }
    }
}

impl RoomSettings {
    /// What participants are told.
    pub fn state(&self) -> RoomState {
        RoomState {
            lobby: self.lobby,
            locked: self.locked,
            passcode: self.passcode.is_some(),
            persistent: self.persistent,
        }
    }
}

/// What a persistent room keeps between meetings: hashes and settings only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRoom {
    /// The host key's hash.
    pub host: KeyHash,
    /// The moderator keys' hashes.
    pub moderators: Vec<KeyHash>,
    /// Whether the lobby is on.
    pub lobby: bool,
    /// The passcode verifier.
    pub passcode: Option<Arc<str>>,
}

/// A join as the SFU sees it, after the server checked what needs IO or CPU.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// The room.
    pub room: RoomId,
    /// A host or moderator key.
    pub key: Option<Token>,
    /// A seat from an earlier admission.
    pub seat: Option<Token>,
    /// The verifier the join's passcode was found to match, if it was checked.
    pub passcode_checked: Option<Arc<str>>,
    /// The room's stored settings, when the caller found them.
    pub stored: Option<StoredRoom>,
    /// The network the join comes from (an IPv4 address, an IPv6 /64), for
    /// limits per network; kept in memory only while it waits in a lobby.
    pub network: Option<IpAddr>,
}

impl JoinRequest {
    /// A join of `room` with no capability.
    pub fn new(room: RoomId) -> Self {
        JoinRequest {
            room,
            key: None,
            seat: None,
            passcode_checked: None,
            stored: None,
            network: None,
        }
    }

    /// The same join, presenting `key`.
    pub fn with_key(mut self, key: Token) -> Self {
        self.key = Some(key);
        self
    }

    /// The same join, from `network`.
    pub fn from_network(mut self, network: IpAddr) -> Self {
        self.network = Some(network);
        self
    }

    /// The same join, presenting `seat`.
    pub fn with_seat(mut self, seat: Token) -> Self {
        self.seat = Some(seat);
        self
    }
}

/// Where a join landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// In the meeting.
    Admitted(ParticipantId),
    /// In the lobby.
    Waiting(ParticipantId),
}

impl Admission {
    /// The participant id either way.
    pub fn id(self) -> ParticipantId {
        match self {
            Admission::Admitted(id) | Admission::Waiting(id) => id,
        }
    }
}

/// Why a join was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The room (or its lobby) is at its limit.
    #[error("room is full")]
    RoomFull,
    /// No such room, or it is locked: the two are told apart to nobody.
    #[error("room unavailable")]
    Unavailable,
    /// The room has a passcode and the join was not checked against this
    /// verifier: check the passcode, then join again with
    /// [`JoinRequest::passcode_checked`] set.
    #[error("passcode required")]
    Passcode(Arc<str>),
    /// The seat presented was revoked by a removal.
    #[error("removed from this meeting")]
    Removed,
}

impl JoinError {
    /// The code sent to the client.
    pub fn code(&self) -> ErrorCode {
        match self {
            JoinError::RoomFull => ErrorCode::RoomFull,
            JoinError::Unavailable => ErrorCode::RoomUnavailable,
            JoinError::Passcode(_) => ErrorCode::PasscodeRequired,
            JoinError::Removed => ErrorCode::Removed,
        }
    }
}

/// A change of settings. `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomUpdate {
    /// Lobby on or off (moderators may change it).
    pub lobby: Option<bool>,
    /// Locked or not (moderators may change it).
    pub locked: Option<bool>,
    /// Persistent or not (host only).
    pub persistent: Option<bool>,
    /// A new passcode verifier, or `Some(None)` to remove it (host only).
    pub passcode: Option<Option<Arc<str>>>,
}

/// Someone in the lobby.
#[derive(Debug, Clone)]
pub(crate) struct Waiter {
    pub id: ParticipantId,
    pub name: Option<String>,
    /// The network it came from, for the lobby's places per network.
    pub network: Option<IpAddr>,
}

/// How a join passes the gate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Straight in with this role; `replaces` is the old connection of the
    /// same seat, which the reconnect takes over.
    Admit {
        role: Role,
        replaces: Option<ParticipantId>,
    },
    /// Into the lobby.
    Wait,
}

/// Admission state of one room.
#[derive(Debug)]
pub(crate) struct Policy {
    host: KeyHash,
    moderators: Vec<KeyHash>,
    pub settings: RoomSettings,
    pub roles: HashMap<ParticipantId, Role>,
    mod_key_of: HashMap<ParticipantId, KeyHash>,
    /// Valid seats and who holds each now.
    seats: HashMap<KeyHash, Option<ParticipantId>>,
    seat_of: HashMap<ParticipantId, KeyHash>,
    revoked: HashSet<KeyHash>,
    pub waiting: Vec<Waiter>,
}

impl Policy {
    /// Opens a room for a join, if the join may open it: with the host key
    /// the room id derives from, or from stored settings.
    pub fn open(req: &JoinRequest) -> Option<Policy> {
        let stored = req.stored.clone();
        let host = match (&req.key, &stored) {
            (Some(key), _) if room_for_host_key(key) == req.room => {
                KeyHash::of(KeyPurpose::Host, key)
            }
            (_, Some(s)) => s.host,
            _ => return None,
        };
        let mut p = Policy {
            host,
            moderators: Vec::new(),
            settings: RoomSettings::default(),
            roles: HashMap::new(),
            mod_key_of: HashMap::new(),
            seats: HashMap::new(),
            seat_of: HashMap::new(),
            revoked: HashSet::new(),
            waiting: Vec::new(),
        };
        if let Some(s) = stored.filter(|s| s.host == host) {
            p.moderators = s.moderators;
            p.settings.lobby = s.lobby;
            p.settings.passcode = s.passcode;
            p.settings.persistent = true;
        }
        Some(p)
    }

    /// Decides where a join goes.
    pub fn gate(&self, req: &JoinRequest) -> Result<Gate, JoinError> {
        let role = match &req.key {
            Some(k) if KeyHash::of(KeyPurpose::Host, k) == self.host => Role::Host,
            Some(k)
                if self
                    .moderators
                    .contains(&KeyHash::of(KeyPurpose::Moderator, k)) =>
            {
                Role::Moderator
            }
            // A wrong key is no key: nothing tells its holder it was wrong.
            _ => Role::Guest,
        };
        let seat = req.seat.as_ref().map(|s| KeyHash::of(KeyPurpose::Seat, s));
        if let Some(seat) = seat {
            if self.revoked.contains(&seat) && role == Role::Guest {
                return Err(JoinError::Removed);
            }
            if let Some(holder) = self.seats.get(&seat) {
                let role = role.max(
                    holder
                        .and_then(|h| self.roles.get(&h).copied())
                        .unwrap_or(Role::Guest),
                );
                return Ok(Gate::Admit {
                    role,
                    replaces: *holder,
                });
            }
        }
        if role != Role::Guest {
            return Ok(Gate::Admit {
                role,
                replaces: None,
            });
        }
        if self.settings.locked {
            return Err(JoinError::Unavailable);
        }
        if let Some(v) = &self.settings.passcode {
            if req.passcode_checked.as_ref() != Some(v) {
                return Err(JoinError::Passcode(v.clone()));
            }
        }
        if self.settings.lobby {
            Ok(Gate::Wait)
        } else {
            Ok(Gate::Admit {
                role: Role::Guest,
                replaces: None,
            })
        }
    }

    /// Records an admission and issues its seat (hash kept, token returned).
    pub fn admitted(&mut self, id: ParticipantId, role: Role, key: Option<&Token>, seat: Token) {
        self.roles.insert(id, role);
        if role == Role::Moderator {
            if let Some(k) = key {
                self.mod_key_of
                    .insert(id, KeyHash::of(KeyPurpose::Moderator, k));
            }
        }
        let h = KeyHash::of(KeyPurpose::Seat, &seat);
        self.seats.insert(h, Some(id));
        if let Some(old) = self.seat_of.insert(id, h) {
            self.seats.remove(&old);
        }
    }

    /// Drops a seat presented on a reconnect: the reconnect gets a new one.
    pub fn retire_seat(&mut self, seat: &Token) {
        self.seats.remove(&KeyHash::of(KeyPurpose::Seat, seat));
    }

    /// A participant left: its seat stays valid for a reconnect.
    pub fn left(&mut self, id: ParticipantId) {
        self.roles.remove(&id);
        self.mod_key_of.remove(&id);
        if let Some(h) = self.seat_of.remove(&id) {
            if let Some(holder) = self.seats.get_mut(&h) {
                *holder = None;
            }
        }
        self.waiting.retain(|w| w.id != id);
    }

    /// A participant was removed: its seat and moderator key are revoked.
    /// Returns whether the stored settings changed.
    pub fn revoke(&mut self, id: ParticipantId) -> bool {
        if let Some(h) = self.seat_of.get(&id) {
            self.seats.remove(h);
            self.revoked.insert(*h);
        }
        let mut changed = false;
        if let Some(k) = self.mod_key_of.get(&id) {
            let before = self.moderators.len();
            self.moderators.retain(|m| m != k);
            changed = self.moderators.len() != before;
        }
        self.left(id);
        changed
    }

    /// Makes `id` a moderator with the key `key`.
    pub fn promote(&mut self, id: ParticipantId, key: &Token) {
        let h = KeyHash::of(KeyPurpose::Moderator, key);
        self.moderators.push(h);
        self.mod_key_of.insert(id, h);
        self.roles.insert(id, Role::Moderator);
    }

    /// The role of an admitted participant.
    pub fn role(&self, id: ParticipantId) -> Option<Role> {
        self.roles.get(&id).copied()
    }

    /// Hosts and moderators present: who hears about the lobby.
    pub fn moderators_present(&self) -> impl Iterator<Item = ParticipantId> + '_ {
        self.roles
            .iter()
            .filter(|(_, r)| r.moderates())
            .map(|(&id, _)| id)
    }

    /// What a persistent room stores.
    pub fn stored(&self) -> StoredRoom {
        StoredRoom {
            host: self.host,
            moderators: self.moderators.clone(),
            lobby: self.settings.lobby,
            passcode: self.settings.passcode.clone(),
        }
    }

    /// Applies an update by `by`; returns an error code when `by` may not.
    pub fn update(&mut self, by: Role, u: &RoomUpdate) -> Result<(), ErrorCode> {
        let host_only = u.persistent.is_some() || u.passcode.is_some();
        if !by.moderates() || (host_only && by != Role::Host) {
            return Err(ErrorCode::Forbidden);
        }
        if let Some(v) = u.lobby {
            self.settings.lobby = v;
        }
        if let Some(v) = u.locked {
            self.settings.locked = v;
        }
        if let Some(v) = u.persistent {
            self.settings.persistent = v;
        }
        if let Some(v) = &u.passcode {
            self.settings.passcode = v.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(b: u8) -> Token {
        aparte_proto::keys::token_from_bytes([b; 32])
    }

    fn opened(host: &Token) -> (RoomId, Policy) {
        let room = room_for_host_key(host);
        let req = JoinRequest::new(room.clone()).with_key(host.clone());
        let p = Policy::open(&req).expect("the host key opens its room");
        (room, p)
    }

    #[test]
    fn only_the_host_key_opens_its_room() {
        let host = token(1);
        let room = room_for_host_key(&host);
        assert!(Policy::open(&JoinRequest::new(room.clone())).is_none());
        let other = room_for_host_key(&token(2));
        assert!(Policy::open(&JoinRequest::new(other).with_key(host.clone())).is_none());
        assert!(Policy::open(&JoinRequest::new(room).with_key(host)).is_some());
    }

    #[test]
    fn gate_orders_capabilities_lock_passcode_lobby() {
        let host = token(1);
        let (room, mut p) = opened(&host);
        let guest = JoinRequest::new(room.clone());
        assert_eq!(p.gate(&guest), Ok(Gate::Wait));
        let as_host = JoinRequest::new(room.clone()).with_key(host.clone());
        assert_eq!(
            p.gate(&as_host),
            Ok(Gate::Admit {
                role: Role::Host,
                replaces: None
            })
        );
        // A wrong key is a guest.
        let wrong = JoinRequest::new(room.clone()).with_key(token(9));
        assert_eq!(p.gate(&wrong), Ok(Gate::Wait));

        p.settings.locked = true;
        assert_eq!(p.gate(&guest), Err(JoinError::Unavailable));
        assert!(matches!(p.gate(&as_host), Ok(Gate::Admit { .. })));
        p.settings.locked = false;

        let v: Arc<str> = Arc::from("$argon2id$verifier");
        p.settings.passcode = Some(v.clone());
        assert_eq!(p.gate(&guest), Err(JoinError::Passcode(v.clone())));
        let mut checked = guest.clone();
        checked.passcode_checked = Some(v);
        assert_eq!(p.gate(&checked), Ok(Gate::Wait));
        p.settings.lobby = false;
        assert_eq!(
            p.gate(&checked),
            Ok(Gate::Admit {
                role: Role::Guest,
                replaces: None
            })
        );
    }

    #[test]
    fn seats_skip_the_lobby_until_revoked() {
        let (room, mut p) = opened(&token(1));
        let seat = token(5);
        p.admitted(ParticipantId(7), Role::Guest, None, seat.clone());
        let back = JoinRequest::new(room.clone()).with_seat(seat.clone());
        assert_eq!(
            p.gate(&back),
            Ok(Gate::Admit {
                role: Role::Guest,
                replaces: Some(ParticipantId(7))
            })
        );
        p.settings.locked = true;
        assert!(matches!(p.gate(&back), Ok(Gate::Admit { .. })));
        p.revoke(ParticipantId(7));
        assert_eq!(p.gate(&back), Err(JoinError::Removed));
    }

    #[test]
    fn removing_a_moderator_revokes_its_key() {
        let (room, mut p) = opened(&token(1));
        let key = token(3);
        p.admitted(ParticipantId(2), Role::Guest, None, token(4));
        p.promote(ParticipantId(2), &key);
        assert_eq!(p.stored().moderators.len(), 1);
        let as_mod = JoinRequest::new(room.clone()).with_key(key.clone());
        assert!(matches!(
            p.gate(&as_mod),
            Ok(Gate::Admit {
                role: Role::Moderator,
                ..
            })
        ));
        assert!(p.revoke(ParticipantId(2)));
        assert_eq!(p.gate(&as_mod), Ok(Gate::Wait));
        assert!(p.stored().moderators.is_empty());
    }

    #[test]
    fn updates_need_the_right_role() {
        let (_, mut p) = opened(&token(1));
        let lock = RoomUpdate {
            locked: Some(true),
            ..RoomUpdate::default()
        };
        assert_eq!(p.update(Role::Guest, &lock), Err(ErrorCode::Forbidden));
        assert_eq!(p.update(Role::Moderator, &lock), Ok(()));
        let persist = RoomUpdate {
            persistent: Some(true),
            ..RoomUpdate::default()
        };
        assert_eq!(
            p.update(Role::Moderator, &persist),
            Err(ErrorCode::Forbidden)
        );
        assert_eq!(p.update(Role::Host, &persist), Ok(()));
        assert!(p.settings.persistent && p.settings.locked);
    }
}
