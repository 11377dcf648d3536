//! One participant's MLS state: its identity, its group, and the checks it
//! applies to every change before accepting it.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls::schedule::{ExternalPsk, PreSharedKeyId, Psk};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;

use crate::link::LinkSecret;
use crate::media::MediaKeys;
use crate::{E2eeError, SecurityCode};

/// The MLS cipher suite: X25519, AES-128-GCM, SHA-256, Ed25519.
pub const MLS_SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;

/// Id of the external PSK derived from the link secret.
const LINK_PSK_ID: &[u8] = b"aparte/link/v1";

/// Leaf node extension (private-use range) carrying the link proof: the join
/// MAC over the participant id and the leaf's signature key. Every leaf of a
/// group carries one, the creator's included, and keeps it through updates
/// (openmls copies a leaf's extensions into its new leaf node on commit).
const JOIN_MAC_EXTENSION: u16 = 0xff0a;

/// What a joiner publishes: its key package, whose leaf carries the link proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// TLS-serialized MLS KeyPackage.
    pub key_package: Vec<u8>,
}

/// A commit this member made, for the delivery service to order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The epoch the commit applies to (it creates `epoch + 1`).
    pub epoch: u64,
    /// The TLS-serialized MLS commit message, for every member.
    pub message: Vec<u8>,
    /// The TLS-serialized Welcome, for the members it adds.
    pub welcome: Option<Vec<u8>>,
}

/// What an incoming message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// This member joined the group from a Welcome.
    Joined {
        /// The epoch joined.
        epoch: u64,
    },
    /// A commit moved the group to a new epoch.
    NewEpoch {
        /// The new epoch.
        epoch: u64,
        /// Participants the commit added.
        added: Vec<u64>,
        /// Participants the commit removed.
        removed: Vec<u64>,
    },
    /// A commit removed this member: it holds no key any more.
    Removed,
    /// An application message, authenticated as sent by `sender`.
    Application {
        /// The sending participant.
        sender: u64,
        /// The plaintext.
        data: Vec<u8>,
    },
    /// A message this member can ignore (a proposal, or a message of an epoch it
    /// already left).
    Ignored,
}

/// One participant of an end-to-end encrypted meeting.
pub struct Member {
    id: u64,
    link: LinkSecret,
    provider: OpenMlsRustCrypto,
    signer: SignatureKeyPair,
    credential: CredentialWithKey,
    group: Option<MlsGroup>,
    media: MediaKeys,
    /// The group id a Welcome must name, when known (the meeting's:
    /// [`LinkSecret::group_id`]).
    expected_group: Option<Vec<u8>>,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.id)
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

fn mls<E: std::fmt::Display>(e: E) -> E2eeError {
    E2eeError::Mls(e.to_string())
}

/// Leaf capabilities: defaults, plus the link proof's leaf node extension.
fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        None,
        Some(&[ExtensionType::Unknown(JOIN_MAC_EXTENSION)]),
        None,
        None,
    )
}

/// The participant id a credential names, if it is one of ours.
fn participant_of(credential: &Credential) -> Option<u64> {
    let bytes: [u8; 8] = credential.serialized_content().try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

/// Whether `leaf` proves the link: its credential names a participant and its
/// extension holds that participant's join MAC over the leaf's signature key.
fn leaf_proves_link(link: &LinkSecret, leaf: &LeafNode) -> Result<(), E2eeError> {
    let who = participant_of(leaf.credential())
        .ok_or(E2eeError::Refused("credential is not a participant id"))?;
    let tag = leaf
        .extensions()
        .unknown(JOIN_MAC_EXTENSION)
        .map(|u| u.0.as_slice())
        .ok_or(E2eeError::Refused("a leaf has no link proof"))?;
    if link.verify_join_mac(who, leaf.signature_key().as_slice(), tag) {
        Ok(())
    } else {
        Err(E2eeError::Refused("a leaf's link proof is wrong"))
    }
}

impl Member {
    /// A participant with server-given id `id` holding the meeting link's
    /// secret. `grace_ms` is how long old epochs' media keys stay accepted.
    pub fn new(id: u64, link: LinkSecret, grace_ms: u64) -> Result<Self, E2eeError> {
        let provider = OpenMlsRustCrypto::default();
        let signer = SignatureKeyPair::new(MLS_SUITE.signature_algorithm()).map_err(mls)?;
        signer.store(provider.storage()).map_err(mls)?;
        let credential = CredentialWithKey {
            credential: BasicCredential::new(id.to_be_bytes().to_vec()).into(),
            signature_key: signer.to_public_vec().into(),
        };
        // The link PSK is in the store, so a Welcome that needs it can be
        // processed; a joiner without the link cannot.
        let psk_id = PreSharedKeyId::new(
            MLS_SUITE,
            provider.rand(),
            Psk::External(ExternalPsk::new(LINK_PSK_ID.to_vec())),
        )
        .map_err(mls)?;
        psk_id.store(&provider, &link.psk()).map_err(mls)?;
        Ok(Member {
            id,
            link,
            provider,
            signer,
            credential,
            group: None,
            media: MediaKeys::new(grace_ms),
            expected_group: None,
        })
    }

    /// Joins only a group with this id from now on (and creates groups with
    /// it): the meeting's, [`LinkSecret::group_id`] of its room.
    pub fn expect_group_id(&mut self, group_id: &[u8]) {
        self.expected_group = Some(group_id.to_vec());
    }

    /// This participant's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The current epoch, once in a group.
    pub fn epoch(&self) -> Option<u64> {
        self.group.as_ref().map(|g| g.epoch().as_u64())
    }

    /// Whether this member is in a group and can send.
    pub fn is_ready(&self) -> bool {
        self.group.as_ref().is_some_and(MlsGroup::is_active)
    }

    /// Whether a commit of this member awaits the delivery service's verdict.
    pub fn has_pending_commit(&self) -> bool {
        self.group
            .as_ref()
            .is_some_and(|g| g.pending_commit().is_some())
    }

    /// The participant ids the current keys cover, in leaf order.
    pub fn members(&self) -> Vec<u64> {
        self.group
            .as_ref()
            .map(|g| {
                g.members()
                    .filter_map(|m| participant_of(&m.credential))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// This member's own leaf index.
    pub fn own_leaf(&self) -> Option<u32> {
        self.group.as_ref().map(|g| g.own_leaf_index().u32())
    }

    /// The media keys (seal and open frames).
    pub fn media(&mut self) -> &mut MediaKeys {
        &mut self.media
    }

    /// The code every member of this epoch sees, to compare out of band.
    pub fn security_code(&self) -> Option<SecurityCode> {
        self.group
            .as_ref()
            .map(|g| SecurityCode::from_authenticator(g.epoch_authenticator().as_slice()))
    }

    /// This member's link proof, as a leaf node extension.
    fn link_proof(&self) -> Result<Extensions<LeafNode>, E2eeError> {
        // The MAC binds the participant id to the signature key that signs the
        // leaf: a ghost cannot reuse a genuine member's MAC without that
        // member's private key, and cannot make its own without the link.
        let mac = self
            .link
            .join_mac(self.id, self.credential.signature_key.as_slice());
        Extensions::single(Extension::Unknown(
            JOIN_MAC_EXTENSION,
            UnknownExtension(mac.to_vec()),
        ))
        .map_err(mls)
    }

    /// Starts a new group (the first participant of a meeting).
    pub fn create_group(&mut self, now_ms: u64, group_id: &[u8]) -> Result<(), E2eeError> {
        let config = MlsGroupCreateConfig::builder()
            .ciphersuite(MLS_SUITE)
            .capabilities(capabilities())
            .with_leaf_node_extensions(self.link_proof()?)
            .map_err(mls)?
            .use_ratchet_tree_extension(true)
            .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(1)
            .build();
        let group = MlsGroup::new_with_group_id(
            &self.provider,
            &self.signer,
            &config,
            GroupId::from_slice(group_id),
            self.credential.clone(),
        )
        .map_err(mls)?;
        self.group = Some(group);
        self.rekey(now_ms)
    }

    /// A key package for joining, whose leaf proves the link.
    pub fn join_request(&self) -> Result<JoinRequest, E2eeError> {
        let bundle = KeyPackage::builder()
            .leaf_node_capabilities(capabilities())
            .leaf_node_extensions(self.link_proof()?)
            .build(
                MLS_SUITE,
                &self.provider,
                &self.signer,
                self.credential.clone(),
            )
            .map_err(mls)?;
        let key_package = bundle.key_package().tls_serialize_detached().map_err(mls)?;
        Ok(JoinRequest { key_package })
    }

    /// Checks a join request from participant `from`: a valid key package of
    /// our suite, naming `from`, carrying a join MAC made with the link.
    pub fn verify_join_request(
        &self,
        from: u64,
        req: &JoinRequest,
    ) -> Result<KeyPackage, E2eeError> {
        let kp = KeyPackageIn::tls_deserialize_exact(req.key_package.as_slice())
            .map_err(|_| E2eeError::Malformed)?
            .validate(self.provider.crypto(), ProtocolVersion::Mls10)
            .map_err(mls)?;
        if kp.ciphersuite() != MLS_SUITE {
            return Err(E2eeError::Refused("key package of another cipher suite"));
        }
        if participant_of(kp.leaf_node().credential()) != Some(from) {
            return Err(E2eeError::Refused("key package names someone else"));
        }
        leaf_proves_link(&self.link, kp.leaf_node())?;
        Ok(kp)
    }

    /// Commits adding `adds` (already verified) and removing the participants
    /// `removes`. The commit stays pending until the delivery service orders it:
    /// call [`Member::commit_accepted`] or [`Member::commit_rejected`].
    pub fn commit(&mut self, adds: Vec<KeyPackage>, removes: &[u64]) -> Result<Commit, E2eeError> {
        let group = self.group.as_mut().ok_or(E2eeError::NotInGroup)?;
        if group.pending_commit().is_some() {
            return Err(E2eeError::CommitPending);
        }
        let leaves: Vec<LeafNodeIndex> = group
            .members()
            .filter(|m| participant_of(&m.credential).is_some_and(|p| removes.contains(&p)))
            .map(|m| m.index)
            .collect();
        let has_adds = !adds.is_empty();
        let epoch = group.epoch().as_u64();
        let mut builder = group
            .commit_builder()
            .propose_adds(adds)
            .propose_removals(leaves);
        if has_adds {
            let psk = PreSharedKeyId::new(
                MLS_SUITE,
                self.provider.rand(),
                Psk::External(ExternalPsk::new(LINK_PSK_ID.to_vec())),
            )
            .map_err(mls)?;
            builder = builder.add_proposal(Proposal::PreSharedKey(Box::new(
                PreSharedKeyProposal::new(psk),
            )));
        }
        let bundle = builder
            .load_psks(self.provider.storage())
            .map_err(mls)?
            .build(
                self.provider.rand(),
                self.provider.crypto(),
                &self.signer,
                |_| true,
            )
            .map_err(mls)?
            .stage_commit(&self.provider)
            .map_err(mls)?;
        let (commit, welcome, _) = bundle.into_messages();
        Ok(Commit {
            epoch,
            message: commit.tls_serialize_detached().map_err(mls)?,
            welcome: welcome
                .map(|w| w.tls_serialize_detached())
                .transpose()
                .map_err(mls)?,
        })
    }

    /// The delivery service ordered this member's pending commit: apply it.
    pub fn commit_accepted(&mut self, now_ms: u64) -> Result<Incoming, E2eeError> {
        let group = self.group.as_mut().ok_or(E2eeError::NotInGroup)?;
        let staged = group.pending_commit().ok_or(E2eeError::NoPendingCommit)?;
        let added = staged
            .add_proposals()
            .filter_map(|a| participant_of(a.add_proposal().key_package().leaf_node().credential()))
            .collect();
        let removed = removed_ids(group, staged);
        group.merge_pending_commit(&self.provider).map_err(mls)?;
        self.rekey(now_ms)?;
        Ok(Incoming::NewEpoch {
            epoch: self.epoch().unwrap_or_default(),
            added,
            removed,
        })
    }

    /// Another commit won the epoch: drop this member's pending one.
    pub fn commit_rejected(&mut self) -> Result<(), E2eeError> {
        let group = self.group.as_mut().ok_or(E2eeError::NotInGroup)?;
        group
            .clear_pending_commit(self.provider.storage())
            .map_err(mls)
    }

    /// Processes a message the delivery service relayed: a Welcome (to join),
    /// a commit of another member, or an application message.
    pub fn process(&mut self, now_ms: u64, bytes: &[u8]) -> Result<Incoming, E2eeError> {
        let msg = MlsMessageIn::tls_deserialize_exact(bytes).map_err(|_| E2eeError::Malformed)?;
        match msg.extract() {
            MlsMessageBodyIn::Welcome(welcome) => self.join_from_welcome(now_ms, welcome),
            MlsMessageBodyIn::PrivateMessage(m) => self.process_protocol(now_ms, m.into()),
            MlsMessageBodyIn::PublicMessage(m) => self.process_protocol(now_ms, m.into()),
            _ => Err(E2eeError::Malformed),
        }
    }

    fn join_from_welcome(&mut self, now_ms: u64, welcome: Welcome) -> Result<Incoming, E2eeError> {
        if self.group.is_some() {
            return Ok(Incoming::Ignored);
        }
        let config = MlsGroupJoinConfig::builder()
            .use_ratchet_tree_extension(true)
            .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
            .max_past_epochs(1)
            .build();
        let processed =
            ProcessedWelcome::new_from_welcome(&self.provider, &config, welcome).map_err(mls)?;
        // The group must be bound to the link: the Welcome's key schedule
        // mixes in the link PSK (which a server without the link cannot
        // know, and whose value a wrong one would make the Welcome fail to
        // open). A group the server built itself carries no such PSK, and its
        // members could all show matching security codes with the server's
        // own member: refused (issue 17, group substitution).
        let bound = processed
            .psks()
            .iter()
            .any(|p| matches!(p.psk(), Psk::External(e) if e.psk_id() == LINK_PSK_ID));
        if !bound {
            return Err(E2eeError::Refused("group not bound to the meeting link"));
        }
        let staged = processed
            .into_staged_welcome(&self.provider, None)
            .map_err(mls)?;
        // And it must be this meeting's group: its id is derived from the
        // link and the room, so neither a group the server made nor one of
        // another room has it.
        if self
            .expected_group
            .as_deref()
            .is_some_and(|id| staged.group_context().group_id().as_slice() != id)
        {
            return Err(E2eeError::Refused("group of another meeting"));
        }
        let group = staged.into_group(&self.provider).map_err(mls)?;
        // Every leaf of the group we join must prove the link, the creator's
        // included: a member who never proved it (let in by a modified client,
        // or the server's own) would otherwise get the media keys.
        let tree = group.public_group();
        let proven = group.members().try_for_each(|m| {
            let leaf = tree.leaf(m.index).ok_or(E2eeError::Malformed)?;
            leaf_proves_link(&self.link, leaf)
        });
        if let Err(e) = proven {
            // Forget the refused group's state in the store.
            let mut group = group;
            let _ = group.delete(self.provider.storage());
            return Err(e);
        }
        self.group = Some(group);
        self.rekey(now_ms)?;
        Ok(Incoming::Joined {
            epoch: self.epoch().unwrap_or_default(),
        })
    }

    fn process_protocol(
        &mut self,
        now_ms: u64,
        msg: ProtocolMessage,
    ) -> Result<Incoming, E2eeError> {
        let group = self.group.as_mut().ok_or(E2eeError::NotInGroup)?;
        let epoch = group.epoch();
        if msg.epoch() < epoch && msg.content_type() == ContentType::Commit {
            return Ok(Incoming::Ignored);
        }
        // A commit of another member for our epoch means ours lost the race.
        if msg.content_type() == ContentType::Commit && group.pending_commit().is_some() {
            group
                .clear_pending_commit(self.provider.storage())
                .map_err(mls)?;
        }
        let processed = group.process_message(&self.provider, msg).map_err(mls)?;
        let sender = match processed.sender() {
            Sender::Member(leaf) => group.member(*leaf).and_then(participant_of),
            _ => None,
        };
        match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(app) => Ok(Incoming::Application {
                sender: sender.ok_or(E2eeError::Refused("application message of a non-member"))?,
                data: app.into_bytes(),
            }),
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                // Refuse any Add that does not prove the link, and any commit
                // that adds without the link PSK: a member who lacks the link
                // must never be let in, whoever committed it.
                let mut added = Vec::new();
                for add in staged.add_proposals() {
                    let kp = add.add_proposal().key_package();
                    leaf_proves_link(&self.link, kp.leaf_node())?;
                    added.extend(participant_of(kp.leaf_node().credential()));
                }
                // A committer's new leaf (its update path) must still prove
                // the link: its proof may not be dropped or its key swapped.
                if let Some(leaf) = staged.update_path_leaf_node() {
                    leaf_proves_link(&self.link, leaf)?;
                }
                let group = self.group.as_mut().ok_or(E2eeError::NotInGroup)?;
                if !added.is_empty() && !has_link_psk(&staged) {
                    return Err(E2eeError::Refused(
                        "commit adds members without the link PSK",
                    ));
                }
                let removed = removed_ids(group, &staged);
                let self_removed = staged.self_removed();
                group
                    .merge_staged_commit(&self.provider, *staged)
                    .map_err(mls)?;
                if self_removed {
                    self.group = None;
                    self.media.clear();
                    return Ok(Incoming::Removed);
                }
                self.rekey(now_ms)?;
                Ok(Incoming::NewEpoch {
                    epoch: self.epoch().unwrap_or_default(),
                    added,
                    removed,
                })
            }
            _ => Ok(Incoming::Ignored),
        }
    }

    /// Encrypts and signs an application message for the group.
    pub fn seal_app(&mut self, data: &[u8]) -> Result<Vec<u8>, E2eeError> {
        let group = self.group.as_mut().ok_or(E2eeError::NotInGroup)?;
        let msg = group
            .create_message(&self.provider, &self.signer, data)
            .map_err(mls)?;
        msg.tls_serialize_detached().map_err(mls)
    }

    fn rekey(&mut self, now_ms: u64) -> Result<(), E2eeError> {
        let group = self.group.as_ref().ok_or(E2eeError::NotInGroup)?;
        let own = group.own_leaf_index().u32();
        // Each other leaf's key is tied to the participant its credential
        // names: a frame it opens is shown only on that participant's tile.
        // A leaf without a participant id gets no key.
        let others: Vec<(u32, u64)> = group
            .members()
            .filter(|m| m.index.u32() != own)
            .filter_map(|m| Some((m.index.u32(), participant_of(&m.credential)?)))
            .collect();
        let exporter = Exporter {
            group,
            provider: &self.provider,
        };
        self.media
            .rekey(now_ms, &exporter, group.epoch().as_u64(), own, others)
            .map_err(|e| E2eeError::Mls(e.to_string()))
    }
}

/// Whether the commit carries an external PSK. The only external PSK in a
/// member's store is the link PSK, and openmls refuses a commit whose PSKs it
/// cannot load, so an external PSK in a commit that processed is the link's.
fn has_link_psk(staged: &StagedCommit) -> bool {
    const EXTERNAL: u8 = 1; // PSKType external (RFC 9420 §8.4)
    staged.psk_proposals().any(|p| {
        p.psk_proposal()
            .tls_serialize_detached()
            .is_ok_and(|b| b.first() == Some(&EXTERNAL))
    })
}

fn removed_ids(group: &MlsGroup, staged: &StagedCommit) -> Vec<u64> {
    staged
        .remove_proposals()
        .filter_map(|r| {
            group
                .member(r.remove_proposal().removed())
                .and_then(participant_of)
        })
        .collect()
}

/// The MLS exporter as SFrame's key derivation wants it.
struct Exporter<'a> {
    group: &'a MlsGroup,
    provider: &'a OpenMlsRustCrypto,
}

impl sframe::mls::MlsExporter for Exporter<'_> {
    type BaseKey = Vec<u8>;
    type Error = E2eeError;

    fn export_secret(&self, label: &str, context: &[u8], len: usize) -> Result<Vec<u8>, E2eeError> {
        self.group
            .export_secret(self.provider.crypto(), label, context, len)
            .map_err(mls)
    }
}
