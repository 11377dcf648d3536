//! Deterministic simulations of E2EE meetings: members join, leave and commit
//! concurrently through a scripted delivery service that, like the real one,
//! orders commits and lets the first for an epoch win. Also: forward secrecy,
//! post-removal secrecy with its grace, and a malicious server injecting a ghost.

#![allow(clippy::unwrap_used)]

use aparte_e2ee::{Commit, E2eeError, FrameError, Incoming, LinkSecret, MediaKind, Member};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{KeyPackageIn, OpenMlsProvider as _, ProtocolVersion};

const GRACE_MS: u64 = 1000;

fn link() -> LinkSecret {
    LinkSecret::from_bytes([42; 16])
}

/// A meeting: members in join order, a delivery service epoch, a clock.
struct Meeting {
    members: Vec<Member>,
    ds_epoch: u64,
    now: u64,
}

impl Meeting {
    fn start(first: u64) -> Self {
        let mut m = Member::new(first, link(), GRACE_MS).unwrap();
        m.create_group(0, b"room-under-test").unwrap();
        Meeting {
            ds_epoch: m.epoch().unwrap(),
            members: vec![m],
            now: 0,
        }
    }

    fn idx(&self, id: u64) -> usize {
        self.members.iter().position(|m| m.id() == id).unwrap()
    }

    /// The member that commits on everyone's behalf: the lowest leaf.
    fn committer(&self, except: &[u64]) -> usize {
        (0..self.members.len())
            .filter(|&i| !except.contains(&self.members[i].id()))
            .min_by_key(|&i| self.members[i].own_leaf())
            .unwrap()
    }

    /// The delivery service: the first commit for the current epoch wins and
    /// reaches everyone in order; any other is refused to its author.
    fn deliver(&mut self, from: usize, commit: &Commit) -> bool {
        if commit.epoch != self.ds_epoch {
            // The winner already reached this member, which dropped its pending
            // commit while processing it; the refusal finds nothing to drop.
            let r = self.members[from].commit_rejected();
            assert!(r.is_ok() || matches!(r, Err(E2eeError::Mls(_))));
            return false;
        }
        self.ds_epoch += 1;
        for (i, m) in self.members.iter_mut().enumerate() {
            let r = if i == from {
                m.commit_accepted(self.now)
            } else {
                m.process(self.now, &commit.message)
            };
            let r = r.unwrap();
            assert!(
                matches!(r, Incoming::NewEpoch { .. } | Incoming::Removed),
                "{r:?}"
            );
        }
        true
    }

    fn add(&mut self, id: u64) {
        let joiner = Member::new(id, link(), GRACE_MS).unwrap();
        let req = joiner.join_request().unwrap();
        let c = self.committer(&[]);
        let kp = self.members[c].verify_join_request(id, &req).unwrap();
        let commit = self.members[c].commit(vec![kp], &[]).unwrap();
        assert!(self.deliver(c, &commit));
        self.welcome(joiner, &commit);
    }

    fn welcome(&mut self, mut joiner: Member, commit: &Commit) {
        let r = joiner
            .process(self.now, commit.welcome.as_ref().unwrap())
            .unwrap();
        assert!(matches!(r, Incoming::Joined { .. }));
        self.members.push(joiner);
    }

    /// Removes `id`; returns the removed member (which processed its removal).
    fn remove(&mut self, id: u64) -> Member {
        let c = self.committer(&[id]);
        let commit = self.members[c].commit(vec![], &[id]).unwrap();
        assert!(self.deliver(c, &commit));
        let i = self.idx(id);
        self.members.remove(i)
    }

    fn assert_converged(&self) {
        let first = &self.members[0];
        for m in &self.members {
            assert_eq!(m.epoch(), first.epoch(), "member {} epoch", m.id());
            assert_eq!(m.members(), first.members(), "member {} roster", m.id());
            assert_eq!(
                m.security_code(),
                first.security_code(),
                "member {} code",
                m.id()
            );
        }
        let mut roster = first.members();
        roster.sort_unstable();
        let mut ids: Vec<u64> = self.members.iter().map(Member::id).collect();
        ids.sort_unstable();
        assert_eq!(roster, ids, "the roster is exactly the members");
    }
}

fn frame(kind: MediaKind, seq: u8) -> Vec<u8> {
    let first = if kind == MediaKind::Video { 0x11 } else { 0xfc };
    let mut f = vec![first];
    f.extend((0..200u16).map(|i| (i as u8).wrapping_mul(seq)));
    f
}

#[test]
fn joins_and_leaves_converge_with_a_new_code_each_time() {
    let mut m = Meeting::start(1);
    let mut codes = vec![m.members[0].security_code().unwrap()];
    for id in [2, 3, 4] {
        m.add(id);
        m.assert_converged();
        codes.push(m.members[0].security_code().unwrap());
    }
    m.remove(3);
    m.assert_converged();
    codes.push(m.members[0].security_code().unwrap());
    m.add(5);
    m.assert_converged();
    codes.push(m.members[0].security_code().unwrap());
    let distinct: std::collections::HashSet<_> = codes.iter().map(|c| c.digits.clone()).collect();
    assert_eq!(
        distinct.len(),
        codes.len(),
        "every membership change changes the code"
    );
    let mut roster = m.members[0].members();
    roster.sort_unstable();
    assert_eq!(roster, [1, 2, 4, 5]);
}

#[test]
fn concurrent_commits_first_wins_and_the_loser_recovers() {
    let mut m = Meeting::start(1);
    for id in [2, 3, 4] {
        m.add(id);
    }
    let epoch = m.ds_epoch;
    // Two joiners arrive at once and two members each commit one of them.
    let j10 = Member::new(10, link(), GRACE_MS).unwrap();
    let j11 = Member::new(11, link(), GRACE_MS).unwrap();
    let (a, b) = (m.idx(1), m.idx(2));
    let kp10 = m.members[a]
        .verify_join_request(10, &j10.join_request().unwrap())
        .unwrap();
    let req11 = j11.join_request().unwrap();
    let kp11 = m.members[b].verify_join_request(11, &req11).unwrap();
    let ca = m.members[a].commit(vec![kp10], &[]).unwrap();
    let cb = m.members[b].commit(vec![kp11], &[4]).unwrap();
    assert_eq!((ca.epoch, cb.epoch), (epoch, epoch));
    assert!(m.deliver(a, &ca), "first commit of the epoch wins");
    assert!(
        !m.members[b].has_pending_commit(),
        "the loser dropped its commit on seeing the winner"
    );
    assert!(!m.deliver(b, &cb), "second commit of the epoch loses");
    m.welcome(j10, &ca);
    m.assert_converged();
    // The loser redoes its change in the new epoch.
    let b = m.idx(2);
    let kp11 = m.members[b].verify_join_request(11, &req11).unwrap();
    let retry = m.members[b].commit(vec![kp11], &[4]).unwrap();
    assert!(m.deliver(b, &retry));
    m.welcome(j11, &retry);
    m.members.retain(|x| x.id() != 4);
    m.assert_converged();
    let mut roster = m.members[0].members();
    roster.sort_unstable();
    assert_eq!(roster, [1, 2, 3, 10, 11]);
}

#[test]
fn a_joiner_cannot_open_frames_sent_before_it_joined() {
    let mut m = Meeting::start(1);
    m.add(2);
    let before = m.members[0]
        .media()
        .seal(MediaKind::Video, &frame(MediaKind::Video, 1))
        .unwrap();
    m.add(3);
    let joiner = m.idx(3);
    assert_eq!(
        m.members[joiner]
            .media()
            .open(m.now, MediaKind::Video, 1, &before),
        Err(FrameError::Behind),
        "no key: the frame is of an epoch before the joiner's"
    );
    // An old member still opens it (in flight when the epoch changed).
    assert_eq!(
        m.members[1]
            .media()
            .open(m.now, MediaKind::Video, 1, &before)
            .unwrap(),
        frame(MediaKind::Video, 1)
    );
    // And the joiner opens what is sent now.
    let after = m.members[0]
        .media()
        .seal(MediaKind::Audio, &frame(MediaKind::Audio, 2))
        .unwrap();
    assert_eq!(
        m.members[joiner]
            .media()
            .open(m.now, MediaKind::Audio, 1, &after)
            .unwrap(),
        frame(MediaKind::Audio, 2)
    );
}

#[test]
fn a_removed_member_cannot_open_later_frames_and_the_grace_is_bounded() {
    let mut m = Meeting::start(1);
    m.add(2);
    m.add(3);
    // Member 3 keeps a copy of its state as it was before the removal: a
    // malicious leaver that ignores the commit removing it.
    let in_flight = m.members[0]
        .media()
        .seal(MediaKind::Video, &frame(MediaKind::Video, 7))
        .unwrap();
    let sealed_old_epoch_by_2 = m.members[1]
        .media()
        .seal(MediaKind::Video, &frame(MediaKind::Video, 8))
        .unwrap();
    m.now = 10_000;
    let mut removed = m.remove(3);
    assert!(
        !removed.is_ready(),
        "the removed member processed its removal and holds no key"
    );
    let after = m.members[0]
        .media()
        .seal(MediaKind::Video, &frame(MediaKind::Video, 9))
        .unwrap();
    assert_eq!(
        removed.media().open(m.now, MediaKind::Video, 1, &after),
        Err(FrameError::NoKey)
    );
    assert_eq!(
        removed.media().seal(MediaKind::Video, b"x"),
        Err(FrameError::NotReady)
    );

    // Remaining members open frames of the old epoch within the grace, not after.
    assert!(
        m.members[1]
            .media()
            .open(m.now + GRACE_MS - 1, MediaKind::Video, 1, &in_flight)
            .is_ok()
    );
    assert!(
        m.members[0]
            .media()
            .open(
                m.now + GRACE_MS / 2,
                MediaKind::Video,
                2,
                &sealed_old_epoch_by_2
            )
            .is_ok()
    );
    assert_eq!(
        m.members[1]
            .media()
            .open(m.now + GRACE_MS, MediaKind::Video, 1, &in_flight),
        Err(FrameError::Behind),
        "the old epoch's key is gone after the grace"
    );
}

#[test]
fn a_leaver_that_ignores_its_removal_still_cannot_read_the_next_epoch() {
    let mut m = Meeting::start(1);
    m.add(2);
    m.add(3);
    // Take member 3 out before the commit reaches it: it keeps its old keys.
    let i = m.idx(3);
    let mut stale = m.members.remove(i);
    let c = m.committer(&[]);
    let commit = m.members[c].commit(vec![], &[3]).unwrap();
    assert!(m.deliver(c, &commit));
    let after = m.members[1]
        .media()
        .seal(MediaKind::Video, &frame(MediaKind::Video, 3))
        .unwrap();
    assert_eq!(
        stale.media().open(m.now, MediaKind::Video, 2, &after),
        Err(FrameError::NoKey)
    );
    let chat = m.members[0].seal_app(b"after you left").unwrap();
    assert!(
        stale.process(m.now, &chat).is_err(),
        "next epoch's chat is unreadable too"
    );
}

#[test]
fn a_ghost_injected_by_the_server_never_gets_keys() {
    let mut m = Meeting::start(1);
    m.add(2);
    // The server makes up participant 99, who never had the link.
    let ghost = Member::new(99, LinkSecret::from_bytes([7; 16]), GRACE_MS).unwrap();
    let ghost_req = ghost.join_request().unwrap();
    assert!(matches!(
        m.members[0].verify_join_request(99, &ghost_req),
        Err(E2eeError::Refused(_))
    ));
    // Or replays a genuine joiner's key package under another id.
    let genuine = Member::new(5, link(), GRACE_MS).unwrap();
    let genuine_req = genuine.join_request().unwrap();
    assert!(matches!(
        m.members[0].verify_join_request(99, &genuine_req),
        Err(E2eeError::Refused(_))
    ));

    // Even a member that skipped the check and committed the ghost cannot let it in:
    // the other honest members refuse the commit, and the Welcome needs the link PSK.
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let ghost_kp = KeyPackageIn::tls_deserialize_exact(ghost_req.key_package.as_slice())
        .unwrap()
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    let rogue = m.members[0].commit(vec![ghost_kp], &[]).unwrap();
    let honest = m.idx(2);
    let refused = m.members[honest].process(m.now, &rogue.message);
    assert!(matches!(refused, Err(E2eeError::Refused(_))), "{refused:?}");
    let mut ghost = ghost;
    let w = ghost.process(m.now, rogue.welcome.as_ref().unwrap());
    match w {
        // The ghost's store holds a link PSK of its own (from its own, wrong,
        // link): the welcome secret it derives differs, so the group info does
        // not decrypt. Without any PSK it would fail to load one instead.
        Err(E2eeError::Mls(e)) => {
            let e = e.to_lowercase();
            assert!(
                e.contains("decryption failed") || e.contains("psk"),
                "fails for lack of the link PSK: {e}"
            );
        }
        other => panic!("the ghost must not join: {other:?}"),
    }
    assert!(!ghost.is_ready());
    // The honest member still holds the old epoch; the ghost opens nothing of it.
    let f = m.members[honest]
        .media()
        .seal(MediaKind::Audio, &frame(MediaKind::Audio, 1))
        .unwrap();
    assert_eq!(
        ghost.media().open(m.now, MediaKind::Audio, 2, &f),
        Err(FrameError::NoKey)
    );
    let chat = m.members[honest].seal_app(b"secret").unwrap();
    assert!(ghost.process(m.now, &chat).is_err());
}

#[test]
fn names_and_chat_are_signed_application_messages() {
    let mut m = Meeting::start(1);
    m.add(2);
    m.add(3);
    let msg = m.members[0].seal_app(br#"{"name":"Alice"}"#).unwrap();
    for i in [1, 2] {
        assert_eq!(
            m.members[i].process(m.now, &msg).unwrap(),
            Incoming::Application {
                sender: 1,
                data: br#"{"name":"Alice"}"#.to_vec()
            }
        );
    }
    let mut tampered = m.members[1].seal_app(b"hello").unwrap();
    let n = tampered.len();
    tampered[n - 5] ^= 0x40;
    assert!(m.members[2].process(m.now, &tampered).is_err());
    assert!(m.members[0].process(m.now, b"not mls at all").is_err());
}

/// Group substitution (issue 17): a server with no link secret builds a group
/// of its own (one member it controls, no link PSK), adds an honest joiner's
/// published key package, and sends it the Welcome. The joiner refuses it:
/// the Welcome does not carry the link PSK. Without that check it joined, and
/// its security code matched the server's member's.
#[test]
fn a_welcome_into_a_group_without_the_link_psk_is_refused() {
    use openmls::prelude::tls_codec::Serialize as _;
    use openmls::prelude::{
        BasicCredential, CredentialWithKey, MlsGroup, MlsGroupCreateConfig, SignatureScheme,
    };
    use openmls_basic_credential::SignatureKeyPair;

    let mut joiner = Member::new(5, link(), GRACE_MS).unwrap();
    let published = joiner.join_request().unwrap();

    // The server's own member and group.
    let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
    let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
    signer.store(provider.storage()).unwrap();
    let credential = CredentialWithKey {
        credential: BasicCredential::new(99u64.to_be_bytes().to_vec()).into(),
        signature_key: signer.to_public_vec().into(),
    };
    let config = MlsGroupCreateConfig::builder()
        .ciphersuite(aparte_e2ee::MLS_SUITE)
        .use_ratchet_tree_extension(true)
        .build();
    let mut group = MlsGroup::new(&provider, &signer, &config, credential).unwrap();
    let kp = KeyPackageIn::tls_deserialize_exact(published.key_package.as_slice())
        .unwrap()
        .validate(provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
    let (_, welcome, _) = group.add_members(&provider, &signer, &[kp]).unwrap();
    group.merge_pending_commit(&provider).unwrap();
    let welcome = welcome.tls_serialize_detached().unwrap();

    let outcome = joiner.process(0, &welcome);
    assert!(
        matches!(outcome, Err(E2eeError::Refused(_))),
        "the joiner refuses a group not bound to the link: {outcome:?}"
    );
    assert!(!joiner.is_ready(), "no group, so no media keys");
    assert_eq!(joiner.security_code(), None, "no code to match anyone's");
}

/// The group id is the meeting's (derived from the link and the room): a
/// Welcome into another room's group, even one built with the link, is
/// refused by a joiner that expects its own room's.
#[test]
fn a_welcome_into_another_rooms_group_is_refused() {
    let room_a = link().group_id("room-a");
    let room_b = link().group_id("room-b");
    assert_ne!(room_a, room_b);
    let mut creator = Member::new(1, link(), GRACE_MS).unwrap();
    creator.create_group(0, &room_a).unwrap();
    let add = |creator: &mut Member, joiner: &Member, id| {
        let kp = creator
            .verify_join_request(id, &joiner.join_request().unwrap())
            .unwrap();
        let c = creator.commit(vec![kp], &[]).unwrap();
        creator.commit_accepted(0).unwrap();
        c.welcome.unwrap()
    };
    let mut stranger = Member::new(2, link(), GRACE_MS).unwrap();
    stranger.expect_group_id(&room_b);
    let w = add(&mut creator, &stranger, 2);
    let outcome = stranger.process(0, &w);
    assert!(
        matches!(outcome, Err(E2eeError::Refused(_))),
        "a group of another room: {outcome:?}"
    );
    assert!(!stranger.is_ready());
    let mut guest = Member::new(3, link(), GRACE_MS).unwrap();
    guest.expect_group_id(&room_a);
    let w = add(&mut creator, &guest, 3);
    assert!(matches!(guest.process(0, &w), Ok(Incoming::Joined { .. })));
}

/// A member built with raw openmls, as a modified client or the server's own
/// would be: it knows the link (the PSK and the group id are right) but puts
/// in its leaf whatever link proof it likes, or none.
struct Raw {
    provider: openmls_rust_crypto::OpenMlsRustCrypto,
    signer: openmls_basic_credential::SignatureKeyPair,
    group: openmls::prelude::MlsGroup,
}

/// What a raw member puts in its leaf, given its signature key.
type ProofOf = fn(&[u8]) -> Option<[u8; 32]>;

fn link_psk_id(
    provider: &openmls_rust_crypto::OpenMlsRustCrypto,
) -> openmls::schedule::PreSharedKeyId {
    use openmls::schedule::{ExternalPsk, PreSharedKeyId, Psk};
    PreSharedKeyId::new(
        aparte_e2ee::MLS_SUITE,
        provider.rand(),
        Psk::External(ExternalPsk::new(b"aparte/link/v1".to_vec())),
    )
    .unwrap()
}

fn proof_extensions(
    proof: Option<[u8; 32]>,
) -> openmls::prelude::Extensions<openmls::prelude::LeafNode> {
    use openmls::prelude::*;
    match proof {
        Some(mac) => {
            Extensions::single(Extension::Unknown(0xff0a, UnknownExtension(mac.to_vec()))).unwrap()
        }
        None => Extensions::empty(),
    }
}

impl Raw {
    /// Creates the room's group as participant `id`, its leaf carrying what
    /// `proof` makes of its signature key.
    fn create(id: u64, room: &str, proof: ProofOf) -> Raw {
        use openmls::prelude::*;
        let provider = openmls_rust_crypto::OpenMlsRustCrypto::default();
        let signer =
            openmls_basic_credential::SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
        signer.store(provider.storage()).unwrap();
        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.to_be_bytes().to_vec()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        link_psk_id(&provider)
            .store(&provider, &link().psk())
            .unwrap();
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(aparte_e2ee::MLS_SUITE)
            .capabilities(Capabilities::new(
                None,
                None,
                Some(&[ExtensionType::Unknown(0xff0a)]),
                None,
                None,
            ))
            .with_leaf_node_extensions(proof_extensions(proof(&signer.to_public_vec())))
            .unwrap()
            .use_ratchet_tree_extension(true)
            .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .build();
        let group = MlsGroup::new_with_group_id(
            &provider,
            &signer,
            &config,
            GroupId::from_slice(&link().group_id(room)),
            credential,
        )
        .unwrap();
        Raw {
            provider,
            signer,
            group,
        }
    }

    /// Adds `joiner` with the link PSK, as an honest committer does; returns
    /// the Welcome.
    fn add(&mut self, joiner: &Member) -> Vec<u8> {
        use openmls::prelude::tls_codec::Serialize as _;
        use openmls::prelude::*;
        let kp = KeyPackageIn::tls_deserialize_exact(
            joiner.join_request().unwrap().key_package.as_slice(),
        )
        .unwrap()
        .validate(self.provider.crypto(), ProtocolVersion::Mls10)
        .unwrap();
        let psk = PreSharedKeyProposal::new(link_psk_id(&self.provider));
        let bundle = self
            .group
            .commit_builder()
            .propose_adds(vec![kp])
            .add_proposal(Proposal::PreSharedKey(Box::new(psk)))
            .load_psks(self.provider.storage())
            .unwrap()
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .unwrap()
            .stage_commit(&self.provider)
            .unwrap();
        self.group.merge_pending_commit(&self.provider).unwrap();
        let (_, welcome, _) = bundle.into_messages();
        welcome.unwrap().tls_serialize_detached().unwrap()
    }

    /// Commits an update of its own leaf, whose extensions become `proof`'s.
    fn update(&mut self, proof: Option<[u8; 32]>) -> Vec<u8> {
        use openmls::prelude::tls_codec::Serialize as _;
        use openmls::prelude::*;
        let params = LeafNodeParameters::builder()
            .with_extensions(proof_extensions(proof))
            .build();
        let bundle = self
            .group
            .self_update(&self.provider, &self.signer, params)
            .unwrap();
        self.group.merge_pending_commit(&self.provider).unwrap();
        bundle.into_commit().tls_serialize_detached().unwrap()
    }
}

const PROOF_ROOM: &str = "room-proofs";

/// The raw creator is participant 9.
fn true_proof(sig: &[u8]) -> Option<[u8; 32]> {
    Some(link().join_mac(9, sig))
}

/// Every leaf must prove the link, the creator's included. A group with the
/// link PSK and the room's id whose creator's leaf has no proof, or a proof
/// made for another participant or another key, is refused; the same group
/// with a true proof is joined (so what is refused is the proof alone).
#[test]
fn a_group_with_a_member_without_a_link_proof_is_refused() {
    let cases: [(&str, ProofOf); 4] = [
        ("no proof", |_| None),
        ("another participant's", |sig| {
            Some(link().join_mac(99, sig))
        }),
        ("another key's", |_| Some(link().join_mac(9, &[7; 32]))),
        ("a true proof", true_proof),
    ];
    for (case, proof) in cases {
        let mut creator = Raw::create(9, PROOF_ROOM, proof);
        let mut joiner = Member::new(5, link(), GRACE_MS).unwrap();
        joiner.expect_group_id(&link().group_id(PROOF_ROOM));
        let welcome = creator.add(&joiner);
        let outcome = joiner.process(0, &welcome);
        if case == "a true proof" {
            assert!(
                matches!(outcome, Ok(Incoming::Joined { .. })),
                "{outcome:?}"
            );
            assert!(joiner.is_ready());
        } else {
            assert!(
                matches!(outcome, Err(E2eeError::Refused(_))),
                "{case}: {outcome:?}"
            );
            assert!(!joiner.is_ready(), "{case}: no keys");
            assert_eq!(joiner.security_code(), None);
        }
    }
}

/// A member whose commit updates its own leaf must keep a true proof in it:
/// an update that drops the proof is refused and its epoch never entered;
/// one that keeps it is taken.
#[test]
fn a_commit_that_drops_the_committers_link_proof_is_refused() {
    let mut creator = Raw::create(9, PROOF_ROOM, true_proof);
    let mut member = Member::new(5, link(), GRACE_MS).unwrap();
    member.expect_group_id(&link().group_id(PROOF_ROOM));
    let welcome = creator.add(&member);
    assert!(matches!(
        member.process(0, &welcome),
        Ok(Incoming::Joined { .. })
    ));
    let epoch = member.epoch();
    let sig = creator.signer.to_public_vec();

    let kept = creator.update(true_proof(&sig));
    assert!(matches!(
        member.process(0, &kept),
        Ok(Incoming::NewEpoch { .. })
    ));
    let epoch_after = member.epoch();
    assert!(epoch_after > epoch);

    let dropped = creator.update(None);
    let outcome = member.process(0, &dropped);
    assert!(matches!(outcome, Err(E2eeError::Refused(_))), "{outcome:?}");
    assert_eq!(
        member.epoch(),
        epoch_after,
        "the refused epoch was not entered"
    );
}
