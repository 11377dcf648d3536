//! Aparté's end-to-end encryption core: MLS (RFC 9420) for the group,
//! SFrame (RFC 9605) for media frames, and the security code. No IO: bytes and
//! the caller's clock (milliseconds) in, bytes out. It builds natively (bots,
//! tests) and for `wasm32-unknown-unknown` (the page, through a thin facade).
//!
//! # The scheme
//!
//! - The meeting link `…/m/ROOM#SECRET` carries a [`LinkSecret`] the server never
//!   sees. From it come an MLS external PSK and a join MAC key.
//! - A joiner publishes a key package whose extension holds a MAC over its
//!   participant id and signature key ([`Member::join_request`]). Members add
//!   only key packages whose MAC verifies, and refuse any commit that adds one
//!   that does not — whoever made it.
//! - Every commit that adds members also carries the link PSK, so a Welcome
//!   is useless to a joiner without the link: it cannot compute the epoch secret.
//! - The server is only the delivery service: it orders commits (the first for an
//!   epoch wins; [`Member::commit_accepted`] / [`Member::commit_rejected`]) and
//!   relays Welcomes and application messages. It holds no group secret.
//! - Every epoch's media keys come from the MLS exporter as RFC 9605 §5.2 says
//!   ([`MediaKeys`]); a join or a leave is a new epoch, so a joiner cannot open
//!   earlier frames and a removed member cannot open later ones. Receivers keep
//!   the previous epoch's keys for a configurable grace, for frames in flight.
//! - Names and chat are MLS application messages, signed by their sender.
//! - The [`SecurityCode`] renders the epoch authenticator for comparison out of band.

#![forbid(unsafe_code)]

pub mod b64;
mod code;
mod link;
mod media;
mod member;
mod session;

pub use code::SecurityCode;
pub use link::{LINK_SECRET_BYTES, LinkSecret};
pub use media::{FrameError, MAX_LEAVES, MediaKeys, MediaKind, SFRAME_SUITE, clear_prefix};
pub use member::{Commit, Incoming, JoinRequest, MLS_SUITE, Member};
pub use openmls::prelude::KeyPackage;
pub use session::{FALLBACK_COMMIT_MS, Session, SessionEvent, SessionOut};

/// Why an E2EE operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum E2eeError {
    /// The link secret is not 16 bytes of base64url.
    #[error("the link secret is malformed")]
    BadLinkSecret,
    /// The bytes are not an MLS message of the expected kind.
    #[error("malformed MLS message")]
    Malformed,
    /// A check of ours refused the message (it names which).
    #[error("refused: {0}")]
    Refused(&'static str),
    /// The operation needs a group and this member has none.
    #[error("not in a group")]
    NotInGroup,
    /// A commit is already waiting for the delivery service.
    #[error("a commit is already pending")]
    CommitPending,
    /// No commit of ours is pending.
    #[error("no pending commit")]
    NoPendingCommit,
    /// openmls refused (the text is openmls's).
    #[error("mls: {0}")]
    Mls(String),
}
