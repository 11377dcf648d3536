//! A participant's E2EE session in a room, driven by the delivery service's
//! messages: it decides when to commit (adds of verified joiners, removals of
//! leavers), recovers when another member's commit wins the epoch, and turns
//! what arrives into events. Sans-IO: the caller passes the time in ms.
//!
//! Who commits: the member with the lowest leaf among those still present
//! commits at once; the member ranked k takes over if the work is still
//! undone after k × [`FALLBACK_COMMIT_MS`] (the first may have vanished). The
//! delivery service lets the first commit of an epoch win, so a race costs one
//! retry, never a fork.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::media::MediaKeys;
use crate::member::{Incoming, JoinRequest, Member};
use crate::{E2eeError, LinkSecret, SecurityCode};

/// How long the member ranked k waits (times k) before committing pending work itself.
pub const FALLBACK_COMMIT_MS: u64 = 2000;

/// Something to send through the delivery service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionOut {
    /// This participant's key package, to be added.
    KeyPackage(Vec<u8>),
    /// A commit for `epoch`.
    Commit {
        /// The epoch it applies to.
        epoch: u64,
        /// The MLS commit.
        message: Vec<u8>,
        /// The Welcome for the added participants.
        welcome: Option<Vec<u8>>,
        /// Who it adds.
        added: Vec<u64>,
    },
    /// An application message for the group.
    App {
        /// The MLS message.
        message: Vec<u8>,
        /// The members the delivery service should pass it to; empty means
        /// every other member. Any member could open it: this only spares
        /// the others a message they do not need.
        to: Vec<u64>,
    },
}

/// Something the participant should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The group changed (or was created or joined): a new epoch and roster.
    Epoch {
        /// The epoch.
        epoch: u64,
        /// Participants the keys now cover, in leaf order.
        members: Vec<u64>,
        /// Those of `members` this member had not seen in its previous
        /// epoch (in its first epoch: every other member). What they need
        /// to learn of this member can go to them alone
        /// ([`Session::send_to`]).
        joined: Vec<u64>,
    },
    /// An application message, authenticated as `from`'s.
    Message {
        /// Sender.
        from: u64,
        /// Plaintext.
        data: Vec<u8>,
    },
    /// This participant was removed from the group.
    Removed,
    /// Something was refused (a join request or message failing our checks).
    Refused {
        /// Who it came from, when known.
        from: Option<u64>,
        /// Why.
        reason: String,
    },
}

/// One participant's E2EE session.
#[derive(Debug)]
pub struct Session {
    member: Member,
    group_id: Vec<u8>,
    joiners: BTreeMap<u64, JoinRequest>,
    departed: BTreeSet<u64>,
    work_since: Option<u64>,
    /// When this member's turn to commit the waiting work comes (its rank
    /// computed once per change, not on every poll).
    work_due: Option<u64>,
    out: VecDeque<SessionOut>,
    events: VecDeque<SessionEvent>,
    /// The roster of the last epoch event, sorted.
    last_roster: Vec<u64>,
    /// A removal this member made waits: it commits at once, not by rank.
    urgent: bool,
}

impl Session {
    /// A session for participant `id` of the meeting in `room`, holding the
    /// link; `grace_ms` as in [`MediaKeys`]. Its group's id is the room's
    /// ([`LinkSecret::group_id`]): it creates groups with it and joins no
    /// other.
    pub fn new(id: u64, link: LinkSecret, grace_ms: u64, room: &str) -> Result<Self, E2eeError> {
        let group_id = link.group_id(room).to_vec();
        let mut member = Member::new(id, link, grace_ms)?;
        member.expect_group_id(&group_id);
        Ok(Session {
            member,
            group_id,
            joiners: BTreeMap::new(),
            departed: BTreeSet::new(),
            work_since: None,
            work_due: None,
            out: VecDeque::new(),
            events: VecDeque::new(),
            last_roster: Vec::new(),
            urgent: false,
        })
    }

    /// Starts: creates the group (the server said nobody is in one) or asks to be added.
    pub fn start(&mut self, now: u64, create_group: bool) -> Result<(), E2eeError> {
        if create_group {
            self.create_group(now)
        } else {
            let req = self.member.join_request()?;
            self.out.push_back(SessionOut::KeyPackage(req.key_package));
            Ok(())
        }
    }

    /// The delivery service says every member left: start a new group.
    pub fn create_group(&mut self, now: u64) -> Result<(), E2eeError> {
        if self.member.is_ready() {
            return Ok(());
        }
        self.member.create_group(now, &self.group_id)?;
        self.epoch_event();
        Ok(())
    }

    /// A participant asks to be added.
    pub fn join_request(&mut self, now: u64, from: u64, key_package: Vec<u8>) {
        self.departed.remove(&from);
        self.joiners.insert(from, JoinRequest { key_package });
        self.maybe_commit(now);
    }

    /// This member removed `who` (a host or moderator's removal): it commits
    /// the removal itself, at once, whatever its rank, instead of waiting for
    /// the server to announce that `who` left. A server that hides the
    /// removal (never sends `peer_left`) cannot keep `who` in the group: the
    /// remover's next frames are sealed for an epoch `who` is not in.
    pub fn remove(&mut self, now: u64, who: u64) {
        if who == self.member.id() {
            return;
        }
        self.joiners.remove(&who);
        self.departed.insert(who);
        self.urgent = true;
        self.maybe_commit(now);
    }

    /// A participant left the room: it must leave the group.
    pub fn peer_left(&mut self, now: u64, who: u64) {
        self.joiners.remove(&who);
        self.departed.insert(who);
        self.maybe_commit(now);
    }

    /// Another member's commit, in the delivery service's order.
    pub fn commit(&mut self, now: u64, from: u64, message: &[u8]) {
        match self.member.process(now, message) {
            Ok(Incoming::NewEpoch { .. }) => self.epoch_event(),
            Ok(Incoming::Removed) => self.events.push_back(SessionEvent::Removed),
            Ok(_) => {}
            Err(e) => self.events.push_back(SessionEvent::Refused {
                from: Some(from),
                reason: e.to_string(),
            }),
        }
        self.maybe_commit(now);
    }

    /// The delivery service's verdict on this participant's commit for `epoch`.
    ///
    /// A verdict can arrive after the winner's commit has already moved this
    /// member on and it has staged its next commit: that verdict is about a
    /// commit it no longer holds and must not touch the new one. Acting on it
    /// would drop (or, worse, apply) a commit the service decides separately —
    /// a silent fork of the group at the same epoch number.
    pub fn commit_result(&mut self, now: u64, epoch: u64, accepted: bool) {
        let ours = self.member.has_pending_commit() && self.member.epoch() == Some(epoch);
        if accepted && ours {
            match self.member.commit_accepted(now) {
                Ok(_) => self.epoch_event(),
                Err(e) => self.events.push_back(SessionEvent::Refused {
                    from: None,
                    reason: e.to_string(),
                }),
            }
        } else if accepted {
            self.events.push_back(SessionEvent::Refused {
                from: None,
                reason: format!(
                    "the service accepted a commit for epoch {epoch} this member does not hold"
                ),
            });
        } else if ours {
            let _ = self.member.commit_rejected();
        }
        self.maybe_commit(now);
    }

    /// The Welcome that adds this participant.
    pub fn welcome(&mut self, now: u64, message: &[u8]) -> Result<(), E2eeError> {
        if let Incoming::Joined { .. } = self.member.process(now, message)? {
            self.epoch_event();
        }
        Ok(())
    }

    /// An application message from `from`.
    pub fn app(&mut self, now: u64, from: u64, message: &[u8]) {
        match self.member.process(now, message) {
            Ok(Incoming::Application { sender, data }) if sender == from => {
                self.events.push_back(SessionEvent::Message { from, data });
            }
            Ok(Incoming::Application { .. }) => self.events.push_back(SessionEvent::Refused {
                from: Some(from),
                reason: "message signed by another member than its relay sender".into(),
            }),
            Ok(_) => {}
            Err(e) => self.events.push_back(SessionEvent::Refused {
                from: Some(from),
                reason: e.to_string(),
            }),
        }
    }

    /// Sends an application message (names, chat) to the group.
    pub fn send(&mut self, data: &[u8]) -> Result<(), E2eeError> {
        self.send_to(&[], data)
    }

    /// Sends an application message that only members `to` need (this
    /// member's name and state for those who just joined); empty `to` is
    /// everyone, as [`Session::send`].
    pub fn send_to(&mut self, to: &[u64], data: &[u8]) -> Result<(), E2eeError> {
        let message = self.member.seal_app(data)?;
        self.out.push_back(SessionOut::App {
            message,
            to: to.to_vec(),
        });
        Ok(())
    }

    /// Advances time: a fallback committer may act.
    pub fn handle_timeout(&mut self, now: u64) {
        self.maybe_commit(now);
    }

    /// When [`Session::handle_timeout`] should next run, if work waits.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.work_due
    }

    /// The next message to send.
    pub fn poll_output(&mut self) -> Option<SessionOut> {
        self.out.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// Media keys: seal outgoing frames, open incoming ones.
    pub fn media(&mut self) -> &mut MediaKeys {
        self.member.media()
    }

    /// Whether this participant holds the group's keys.
    pub fn is_ready(&self) -> bool {
        self.member.is_ready()
    }

    /// Current epoch.
    pub fn epoch(&self) -> Option<u64> {
        self.member.epoch()
    }

    /// Participants the keys cover.
    pub fn members(&self) -> Vec<u64> {
        self.member.members()
    }

    /// The epoch's security code.
    pub fn security_code(&self) -> Option<SecurityCode> {
        self.member.security_code()
    }

    fn epoch_event(&mut self) {
        if let Some(epoch) = self.member.epoch() {
            let members = self.member.members();
            let me = self.member.id();
            let mut roster = members.clone();
            roster.sort_unstable();
            let joined = members
                .iter()
                .copied()
                .filter(|&m| m != me && self.last_roster.binary_search(&m).is_err())
                .collect();
            self.last_roster = roster;
            self.events.push_back(SessionEvent::Epoch {
                epoch,
                members,
                joined,
            });
        }
    }

    /// This member's rank among present members of `roster`, by leaf order.
    fn rank(&self, roster: &[u64]) -> usize {
        let me = self.member.id();
        roster
            .iter()
            .filter(|m| !self.departed.contains(m))
            .position(|&m| m == me)
            .unwrap_or(usize::MAX / 2)
    }

    fn no_work(&mut self) {
        self.work_since = None;
        self.work_due = None;
        self.urgent = false;
    }

    fn maybe_commit(&mut self, now: u64) {
        if !self.member.is_ready() || self.member.has_pending_commit() {
            return;
        }
        if self.joiners.is_empty() && self.departed.is_empty() {
            // Nothing to commit: the common case on every tick, answered
            // without reading the roster (a copy of every member's credential).
            self.no_work();
            return;
        }
        let roster = self.member.members();
        self.joiners.retain(|id, _| !roster.contains(id));
        self.departed.retain(|id| roster.contains(id));
        if self.joiners.is_empty() && self.departed.is_empty() {
            self.no_work();
            return;
        }
        let since = *self.work_since.get_or_insert(now);
        let due = if self.urgent {
            now
        } else {
            since.saturating_add((self.rank(&roster) as u64).saturating_mul(FALLBACK_COMMIT_MS))
        };
        self.work_due = Some(due);
        if now < due {
            return;
        }
        let mut adds = Vec::new();
        let mut added = Vec::new();
        let joiners = std::mem::take(&mut self.joiners);
        for (id, req) in joiners {
            match self.member.verify_join_request(id, &req) {
                Ok(kp) => {
                    adds.push(kp);
                    added.push(id);
                    self.joiners.insert(id, req);
                }
                Err(e) => self.events.push_back(SessionEvent::Refused {
                    from: Some(id),
                    reason: e.to_string(),
                }),
            }
        }
        let removes: Vec<u64> = self.departed.iter().copied().collect();
        if adds.is_empty() && removes.is_empty() {
            self.no_work();
            return;
        }
        self.urgent = false;
        match self.member.commit(adds, &removes) {
            Ok(c) => self.out.push_back(SessionOut::Commit {
                epoch: c.epoch,
                message: c.message,
                welcome: c.welcome,
                added,
            }),
            Err(e) => self.events.push_back(SessionEvent::Refused {
                from: None,
                reason: e.to_string(),
            }),
        }
    }
}
