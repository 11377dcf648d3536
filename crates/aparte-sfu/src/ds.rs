//! The MLS delivery service of one room: it orders commits (the first for an
//! epoch wins), relays key packages, Welcomes and application messages, and
//! knows who is in the group — never what anything says. Every payload is
//! opaque base64 to it.

use aparte_proto::{ErrorCode, ParticipantId, ServerMsg};

/// What the delivery service wants sent.
pub(crate) type Sends = Vec<(ParticipantId, ServerMsg)>;

/// Delivery-service state of one room.
#[derive(Debug, Default)]
pub(crate) struct Ds {
    /// The group's current epoch, once someone started it.
    epoch: Option<u64>,
    /// Participants in the group, in the order they entered it.
    members: Vec<ParticipantId>,
    /// Key packages of participants waiting to be added.
    pending: Vec<(ParticipantId, String)>,
}

impl Ds {
    /// A participant entered the room: it starts the group if nobody is in one.
    pub fn joined(&mut self, who: ParticipantId) -> bool {
        if self.members.is_empty() {
            self.start(who);
            true
        } else {
            false
        }
    }

    fn start(&mut self, who: ParticipantId) {
        self.members = vec![who];
        self.epoch = Some(0);
        self.pending.retain(|(p, _)| *p != who);
    }

    /// A participant left the room.
    pub fn left(&mut self, who: ParticipantId, remaining: &[ParticipantId]) -> Sends {
        self.pending.retain(|(p, _)| *p != who);
        self.members.retain(|&p| p != who);
        let mut out = Sends::new();
        if self.members.is_empty() {
            // The group is gone with its last member: the earliest remaining
            // participant starts a new one and gets the waiting key packages.
            if let Some(&next) = remaining.first() {
                self.start(next);
                out.push((next, ServerMsg::MlsCreateGroup));
                for (from, data) in &self.pending {
                    out.push((
                        next,
                        ServerMsg::MlsJoinRequest {
                            from: *from,
                            data: data.clone(),
                        },
                    ));
                }
            } else {
                *self = Ds::default();
            }
        }
        out
    }

    /// A participant outside the group publishes its key package.
    pub fn key_package(&mut self, from: ParticipantId, data: String) -> Result<Sends, ErrorCode> {
        if self.members.contains(&from) {
            return Err(ErrorCode::AlreadyJoined);
        }
        self.pending.retain(|(p, _)| *p != from);
        self.pending.push((from, data.clone()));
        Ok(self
            .members
            .iter()
            .map(|&m| {
                (
                    m,
                    ServerMsg::MlsJoinRequest {
                        from,
                        data: data.clone(),
                    },
                )
            })
            .collect())
    }

    /// A member's commit for `epoch`: accepted if it is the first for the
    /// current epoch, else refused to its author (who has by then received the
    /// winner, since messages to one participant keep their order).
    pub fn commit(
        &mut self,
        from: ParticipantId,
        epoch: u64,
        data: String,
        welcome: Option<String>,
        added: &[ParticipantId],
    ) -> Result<Sends, ErrorCode> {
        if !self.members.contains(&from) {
            return Err(ErrorCode::NotInGroup);
        }
        if self.epoch != Some(epoch) {
            return Ok(vec![(
                from,
                ServerMsg::MlsCommitResult {
                    epoch,
                    accepted: false,
                },
            )]);
        }
        self.epoch = Some(epoch + 1);
        let mut out: Sends = self
            .members
            .iter()
            .filter(|&&m| m != from)
            .map(|&m| {
                (
                    m,
                    ServerMsg::MlsCommit {
                        from,
                        epoch,
                        data: data.clone(),
                    },
                )
            })
            .collect();
        out.push((
            from,
            ServerMsg::MlsCommitResult {
                epoch,
                accepted: true,
            },
        ));
        if let Some(welcome) = welcome {
            for &p in added {
                let Some(i) = self.pending.iter().position(|(q, _)| *q == p) else {
                    continue;
                };
                self.pending.remove(i);
                self.members.push(p);
                out.push((
                    p,
                    ServerMsg::MlsWelcome {
                        data: welcome.clone(),
                    },
                ));
                // The newcomer can commit the adds still waiting if others cannot.
                for (q, kp) in &self.pending {
                    out.push((
                        p,
                        ServerMsg::MlsJoinRequest {
                            from: *q,
                            data: kp.clone(),
                        },
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A member's application message, for every other member or, when `to`
    /// names some, for those of them in the group.
    pub fn app(
        &self,
        from: ParticipantId,
        data: String,
        to: &[ParticipantId],
    ) -> Result<Sends, ErrorCode> {
        if !self.members.contains(&from) {
            return Err(ErrorCode::NotInGroup);
        }
        let mut to = to.to_vec();
        to.sort_unstable();
        Ok(self
            .members
            .iter()
            .filter(|&&m| m != from && (to.is_empty() || to.binary_search(&m).is_ok()))
            .map(|&m| {
                (
                    m,
                    ServerMsg::MlsApp {
                        from,
                        data: data.clone(),
                    },
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: ParticipantId = ParticipantId(1);
    const B: ParticipantId = ParticipantId(2);
    const C: ParticipantId = ParticipantId(3);

    #[test]
    fn first_commit_of_an_epoch_wins() {
        let mut ds = Ds::default();
        assert!(ds.joined(A));
        assert!(!ds.joined(B));
        assert!(!ds.joined(C));
        let to_a = ds.key_package(B, "kb".into()).expect("ok");
        assert_eq!(to_a.len(), 1);
        let out = ds
            .commit(A, 0, "c0".into(), Some("w".into()), &[B])
            .expect("ok");
        assert!(out.contains(&(
            A,
            ServerMsg::MlsCommitResult {
                epoch: 0,
                accepted: true
            }
        )));
        assert!(out.contains(&(B, ServerMsg::MlsWelcome { data: "w".into() })));
        // B (now a member) and A race for epoch 1: A wins, B loses.
        ds.key_package(C, "kc".into()).expect("ok");
        let win = ds.commit(A, 1, "c1".into(), None, &[]).expect("ok");
        assert!(win.contains(&(
            B,
            ServerMsg::MlsCommit {
                from: A,
                epoch: 1,
                data: "c1".into()
            }
        )));
        let lose = ds.commit(B, 1, "c1b".into(), None, &[]).expect("ok");
        assert_eq!(
            lose,
            vec![(
                B,
                ServerMsg::MlsCommitResult {
                    epoch: 1,
                    accepted: false
                }
            )]
        );
        assert_eq!(
            ds.commit(C, 2, "x".into(), None, &[]),
            Err(ErrorCode::NotInGroup)
        );
        assert_eq!(ds.app(C, "x".into(), &[]), Err(ErrorCode::NotInGroup));
    }

    #[test]
    fn application_messages_go_to_everyone_or_to_those_named() {
        const D: ParticipantId = ParticipantId(4);
        let mut ds = Ds::default();
        ds.joined(A);
        ds.members.extend([B, C]);
        let to = |out: Sends| out.into_iter().map(|(p, _)| p).collect::<Vec<_>>();
        assert_eq!(to(ds.app(A, "x".into(), &[]).expect("ok")), vec![B, C]);
        // Only those named, never the sender, never someone outside the group.
        assert_eq!(to(ds.app(A, "x".into(), &[C, A, D]).expect("ok")), vec![C]);
        assert_eq!(to(ds.app(A, "x".into(), &[D]).expect("ok")), Vec::new());
    }

    #[test]
    fn last_member_leaving_hands_the_group_on() {
        let mut ds = Ds::default();
        ds.joined(A);
        ds.joined(B);
        ds.key_package(B, "kb".into()).expect("ok");
        ds.joined(C);
        ds.key_package(C, "kc".into()).expect("ok");
        let out = ds.left(A, &[B, C]);
        assert_eq!(out[0], (B, ServerMsg::MlsCreateGroup));
        assert_eq!(
            out[1],
            (
                B,
                ServerMsg::MlsJoinRequest {
                    from: C,
                    data: "kc".into()
                }
            )
        );
        assert_eq!(out.len(), 2);
        assert!(ds.commit(B, 0, "c".into(), Some("w".into()), &[C]).is_ok());
    }
}
