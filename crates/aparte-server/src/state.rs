//! What every connection shares: the media loops, the store, the running
//! configuration, the limits kept per network and per room, and the argon2
//! workers. Used by the HTTP handlers and the signaling connections alike.

use std::net::IpAddr;
use std::time::Duration;

use aparte_proto::{ParticipantId, RoomId};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::limits::RateLimiter;
use crate::media::MediaCmd;
use crate::passcode::Passcodes;
use crate::storage::Storage;

/// What every connection shares: the media loop, the store, the limits.
#[derive(Debug)]
pub struct Shared {
    /// The media loops, one per media thread.
    media: Vec<mpsc::Sender<MediaCmd>>,
    /// Persistent rooms.
    pub storage: Storage,
    /// The running configuration.
    pub config: Config,
    /// Join attempts per client network ([`crate::limits::network_of`]).
    pub join_limiter: RateLimiter<IpAddr>,
    /// Passcode guesses per room.
    pub passcode_by_room: RateLimiter<RoomId>,
    /// Passcode guesses per client network.
    pub passcode_by_addr: RateLimiter<IpAddr>,
    /// Passcode changes per room.
    pub passcode_sets_by_room: RateLimiter<RoomId>,
    /// Passcode changes per client network.
    pub passcode_sets_by_addr: RateLimiter<IpAddr>,
    /// Floods per client network: a network whose connections were closed
    /// for flooding this often in a minute gets no new WebSocket until the
    /// minute is over.
    pub flood_strikes: RateLimiter<IpAddr>,
    /// Rooms made persistent per client network.
    pub persist_by_addr: RateLimiter<IpAddr>,
    /// The argon2 workers.
    pub passcodes: Passcodes,
}

/// Flooding connections one network may have closed per minute before it
/// is refused new WebSockets for the rest of the minute.
pub const FLOODS_PER_MINUTE: u32 = 3;

/// Rooms one network may make persistent per hour.
pub const PERSIST_PER_HOUR: u32 = 20;

/// Passcode changes allowed per room, and per network, per minute.
pub const PASSCODE_SETS_PER_MINUTE: u32 = 10;

impl Shared {
    /// State for a server with this configuration and these services.
    pub fn new(config: Config, media: Vec<mpsc::Sender<MediaCmd>>, storage: Storage) -> Self {
        assert!(!media.is_empty(), "a server has at least one media loop");
        let minute = Duration::from_secs(60);
        Shared {
            media,
            storage,
            join_limiter: RateLimiter::new(config.join_rate, minute),
            passcode_by_room: RateLimiter::new(config.passcode_rate, minute),
            passcode_by_addr: RateLimiter::new(config.passcode_rate, minute),
            passcode_sets_by_room: RateLimiter::new(PASSCODE_SETS_PER_MINUTE, minute),
            passcode_sets_by_addr: RateLimiter::new(PASSCODE_SETS_PER_MINUTE, minute),
            persist_by_addr: RateLimiter::new(PERSIST_PER_HOUR, Duration::from_secs(3600)),
            flood_strikes: RateLimiter::new(FLOODS_PER_MINUTE, minute),
            passcodes: Passcodes::start(),
            config,
        }
    }

    /// The media loop that runs `room` ([`crate::media_thread_of`]).
    pub fn media_for_room(&self, room: &RoomId) -> &mpsc::Sender<MediaCmd> {
        &self.media[crate::media_thread_of(room, self.media.len())]
    }

    /// The media loop of participant `id`: media thread *i* of *n* gives
    /// out ids congruent to i + 1 modulo n (`SfuConfig::first_id`, `id_step`).
    pub fn media_of(&self, id: ParticipantId) -> &mpsc::Sender<MediaCmd> {
        &self.media[(id.0.saturating_sub(1) % self.media.len() as u64) as usize]
    }

    pub(crate) fn tls(&self) -> bool {
        self.config.tls != crate::config::Tls::Off
    }
}
