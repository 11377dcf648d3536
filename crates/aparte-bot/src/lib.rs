//! A headless Aparté participant for integration tests, load tests and benchmarks.
//!
//! A bot joins a room through the same WebSocket signaling as a browser,
//! answers the server's SDP offers with a real str0m peer connection (full ICE,
//! DTLS-SRTP), publishes synthetic audio and video frames at a chosen bitrate
//! and frame rate, and receives every other participant's tracks. Each frame
//! carries its publisher, source, sequence number, send time and a checksum
//! ([`payload`]), so a bot proves what it received: intact, from the announced
//! sender, in order, and how late ([`BotReport`]).
//!
//! [`BotCore`] is the sans-IO part (usable in deterministic simulations with
//! the SFU core); [`Bot`] runs it on tokio with a UDP socket and a WebSocket.

#![forbid(unsafe_code)]

mod core;
pub mod payload;
mod report;
mod runtime;

pub use crate::core::{BotConfig, BotCore, BotError, BotOutput};
pub use report::{BotReport, ControlReport, E2eeReport, StreamReport};
pub use runtime::Bot;

// A bot joins rooms of any size an operator may configure: every member of
// the largest must have a media key id (its MLS leaf must fit). The e2ee
// crate's tests show a member at the last leaf gets keys; this makes a
// larger room limit fail the build instead of leaving members keyless.
const _: () = assert!(aparte_proto::MAX_PARTICIPANTS_PER_ROOM <= aparte_e2ee::MAX_LEAVES as usize);
