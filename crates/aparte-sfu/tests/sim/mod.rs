//! A deterministic network for the SFU core: one [`Sfu`], any number of
//! [`BotCore`] peers (real str0m peer connections), no sockets, simulated time.
//! Datagrams and signaling messages are delivered in order, instantly or,
//! for datagrams, after a fixed one-way [`Sim::delay`]; a bot can be cut off the network to simulate a vanished browser, or lose
//! every n-th datagram of its link to simulate a lossy network.
//!
//! The server can also be made hostile: [`Sim::to_client`] rewrites, drops or
//! adds signaling messages on their way to a bot, [`Sim::from_client`] keeps
//! a bot's message from the SFU, and a tap on the SFU ([`Sfu::set_tap`])
//! rewrites media payloads before they are forwarded.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aparte_bot::{BotConfig, BotCore, BotOutput, BotReport};
use aparte_proto::{ClientMsg, ErrorCode, ParticipantId, RoomId, ServerMsg, Token};
use aparte_sfu::{JoinError, JoinRequest, Output, Sfu, SfuConfig, StoredRoom};

pub struct SimBot {
    pub core: BotCore,
    pub addr: SocketAddr,
    pub id: ParticipantId,
    /// Messages the server sent this bot, in order.
    pub inbox: Vec<ServerMsg>,
    /// Set when the server closed this bot's connection.
    pub closed: Option<Option<ErrorCode>>,
    /// When false, the bot's datagrams are dropped both ways.
    pub online: bool,
    /// When false, signaling messages from this bot are held back (to keep an
    /// offer unanswered); the bot still receives.
    pub answering: bool,
    /// When set to n, every n-th datagram to and from this bot is dropped.
    pub lose_every: Option<u64>,
    /// Datagrams this bot's link carried, both ways.
    carried: u64,
}

impl SimBot {
    /// Whether the link delivers its next datagram (counting it).
    fn delivers(&mut self) -> bool {
        if !self.online {
            return false;
        }
        self.carried += 1;
        self.lose_every.is_none_or(|n| self.carried % n != 0)
    }
}

/// Which way a datagram in flight goes.
#[derive(Debug, Clone, Copy)]
enum Leg {
    /// From the SFU to a bot's address.
    Down(SocketAddr),
    /// From a bot (index) to the SFU.
    Up(usize),
}

pub struct Sim {
    pub sfu: Sfu,
    pub bots: Vec<SimBot>,
    pub now: Instant,
    pub epoch: Instant,
    /// One-way delay of every datagram (0: delivered at once).
    pub delay: Duration,
    /// Datagrams on their way, in the order they arrive.
    in_flight: VecDeque<(Instant, Leg, Vec<u8>)>,
    server: SocketAddr,
    next_port: u16,
    /// What the SFU asked to store, in order.
    pub persisted: Vec<(RoomId, Option<StoredRoom>)>,
    /// A hostile server's hand on messages to bots.
    pub to_client: Option<ToClient>,
    /// A hostile server's hand on messages from bots.
    pub from_client: Option<FromClient>,
    /// When set, every datagram the SFU sends or takes in is noted here.
    pub trace: Option<Vec<Traced>>,
}

/// One datagram that passed the SFU, as [`Sim::trace`] notes it.
#[derive(Debug, Clone, Copy)]
pub struct Traced {
    pub at: Instant,
    /// Sent to this bot (else received from it).
    pub to_bot: bool,
    pub bot: usize,
    /// An RTP packet (else RTCP, STUN or DTLS; RFC 5761 and RFC 7983).
    pub rtp: bool,
    /// An RTP packet's payload type (0 for other datagrams).
    pub pt: u8,
}

impl Traced {
    fn new(at: Instant, to_bot: bool, bot: usize, contents: &[u8]) -> Self {
        let rtp = contents.len() >= 12
            && (128..=191).contains(&contents[0])
            && !(192..=223).contains(&contents[1]);
        Traced {
            at,
            to_bot,
            bot,
            rtp,
            pt: if rtp { contents[1] & 0x7f } else { 0 },
        }
    }
}

/// What a hostile server does to a message for participant `to`: the
/// messages that reach it instead (none to drop it).
pub type ToClient = Box<dyn FnMut(ParticipantId, ServerMsg) -> Vec<ServerMsg>>;

/// Whether the SFU gets a message participant `from` sent (false: the server
/// ignores it).
pub type FromClient = Box<dyn FnMut(ParticipantId, &ClientMsg) -> bool>;

/// The link secret every simulated meeting uses.
pub fn link() -> aparte_e2ee::LinkSecret {
    aparte_e2ee::LinkSecret::from_bytes([9; 16])
}

/// Host keys of the rooms tests named, by room id.
static HOST_KEYS: Mutex<Vec<(RoomId, Token)>> = Mutex::new(Vec::new());

/// The room a test calls `name`: its id derives from a host key made from the
/// name, as a real room's id derives from its host's key.
pub fn room(name: &str) -> RoomId {
    let mut bytes = [b'.'; 32];
    for (b, c) in bytes.iter_mut().zip(name.bytes()) {
        *b = c;
    }
    let key = aparte_proto::keys::token_from_bytes(bytes);
    let id = aparte_proto::room_for_host_key(&key);
    HOST_KEYS.lock().unwrap().push((id.clone(), key));
    id
}

/// The host key of a room made by [`room`].
pub fn host_key(room: &RoomId) -> Token {
    let keys = HOST_KEYS.lock().unwrap();
    keys.iter()
        .find(|(r, _)| r == room)
        .map(|(_, k)| k.clone())
        .expect("rooms come from room()")
}

/// The join request a bot's join message makes.
pub fn request(msg: ClientMsg, stored: Option<StoredRoom>) -> JoinRequest {
    let ClientMsg::Join {
        room, key, seat, ..
    } = msg
    else {
        panic!("not a join");
    };
    JoinRequest {
        room,
        key,
        seat,
        passcode_checked: None,
        stored,
        network: None,
    }
}

impl Sim {
    pub fn new() -> Self {
        let server = SocketAddr::from((Ipv4Addr::new(10, 0, 0, 1), 5000));
        let now = Instant::now();
        Sim {
            sfu: Sfu::new(SfuConfig::new(server)),
            bots: Vec::new(),
            now,
            epoch: now,
            delay: Duration::ZERO,
            in_flight: VecDeque::new(),
            server,
            next_port: 40000,
            persisted: Vec::new(),
            to_client: None,
            from_client: None,
            trace: None,
        }
    }

    /// A bot publishing 300 kbps video and audio joins `room`; returns its index.
    pub fn join(&mut self, room: &RoomId) -> usize {
        let config = BotConfig::new(300_000, self.epoch, link());
        self.join_with(room, config)
    }

    /// A bot joins `room`. The first bot of a room that is not running is
    /// its host and turns the lobby off, so later bots walk in.
    pub fn join_with(&mut self, room: &RoomId, mut config: BotConfig) -> usize {
        if self.sfu.room_settings(room).is_none() && config.key.is_none() {
            config = config.hosting(host_key(room));
        }
        self.try_join(room, config, None).unwrap()
    }

    /// A bot sends its join as it is; the SFU may refuse it.
    pub fn try_join(
        &mut self,
        room: &RoomId,
        config: BotConfig,
        stored: Option<StoredRoom>,
    ) -> Result<usize, JoinError> {
        let addr = SocketAddr::from((Ipv4Addr::new(10, 0, 1, 1), self.next_port));
        self.next_port += 1;
        let mut core = BotCore::new(self.now, addr, config);
        let req = request(core.join_msg(room.clone()), stored);
        let id = self.sfu.join(self.now, req)?.id();
        self.bots.push(SimBot {
            core,
            addr,
            id,
            inbox: Vec::new(),
            closed: None,
            online: true,
            answering: true,
            lose_every: None,
            carried: 0,
        });
        self.pump();
        Ok(self.bots.len() - 1)
    }

    /// Whether `bot` waits in a lobby.
    pub fn is_waiting(&self, bot: usize) -> bool {
        self.bots[bot].core.waiting().is_some() && self.bots[bot].core.id().is_none()
    }

    pub fn id(&self, bot: usize) -> ParticipantId {
        self.bots[bot].id
    }

    pub fn report(&self, bot: usize) -> BotReport {
        self.bots[bot].core.report()
    }

    /// Sends a message as `bot`, as its signaling connection would.
    pub fn send(&mut self, bot: usize, msg: ClientMsg) {
        let id = self.bots[bot].id;
        self.sfu.handle_message(self.now, id, msg);
        self.pump();
    }

    /// Delivers `msg` to `bot` as if the server sent it (a hostile server's
    /// own message).
    pub fn deliver(&mut self, bot: usize, msg: ServerMsg) {
        let b = &mut self.bots[bot];
        b.inbox.push(msg.clone());
        let _ = b.core.handle_signal(self.now, msg);
        self.pump();
    }

    /// The bot's signaling connection closes.
    pub fn disconnect(&mut self, bot: usize) {
        let id = self.bots[bot].id;
        self.bots[bot].online = false;
        self.sfu.leave(self.now, id);
        self.pump();
    }

    /// Runs the network for `d` of simulated time.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            let mut next = self.sfu.poll_timeout().unwrap_or(end);
            if let Some(&(at, _, _)) = self.in_flight.front() {
                next = next.min(at);
            }
            for b in self.bots.iter().filter(|b| b.closed.is_none()) {
                next = next.min(b.core.poll_timeout());
            }
            // At least 1 ms per step keeps the loop finite; no timer here needs finer.
            self.now = next.max(self.now + Duration::from_millis(1)).min(end);
            self.sfu.handle_timeout(self.now);
            for i in 0..self.bots.len() {
                if self.bots[i].closed.is_none() {
                    let _ = self.bots[i].core.handle_timeout(self.now);
                }
            }
            self.pump();
        }
    }

    /// Delivers everything in flight until nothing moves.
    pub fn pump(&mut self) {
        let by_id: HashMap<ParticipantId, usize> = self
            .bots
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id, i))
            .collect();
        let by_addr: HashMap<SocketAddr, usize> = self
            .bots
            .iter()
            .enumerate()
            .map(|(i, b)| (b.addr, i))
            .collect();
        loop {
            let mut moved = false;
            while self.in_flight.front().is_some_and(|f| f.0 <= self.now) {
                let Some((_, leg, contents)) = self.in_flight.pop_front() else {
                    break;
                };
                moved = true;
                self.arrive(leg, &contents, &by_addr);
            }
            while let Some(out) = self.sfu.poll_output() {
                moved = true;
                match out {
                    Output::Transmit {
                        destination,
                        contents,
                        ..
                    } => self.send_datagram(Leg::Down(destination), contents, &by_addr),
                    Output::Signal { to, msg } => {
                        let Some(&i) = by_id.get(&to) else { continue };
                        let msgs = match &mut self.to_client {
                            Some(hostile) => hostile(to, msg),
                            None => vec![msg],
                        };
                        let b = &mut self.bots[i];
                        for msg in msgs {
                            if b.closed.is_none() {
                                b.inbox.push(msg.clone());
                                let _ = b.core.handle_signal(self.now, msg);
                            }
                        }
                    }
                    Output::Close { who, code } => {
                        if let Some(&i) = by_id.get(&who) {
                            self.bots[i].closed = Some(code);
                        }
                    }
                    Output::Persist { room, stored } => self.persisted.push((room, stored)),
                }
            }
            for i in 0..self.bots.len() {
                if !self.bots[i].answering {
                    continue;
                }
                while let Some(out) = self.bots[i].core.poll_output() {
                    moved = true;
                    let b = &mut self.bots[i];
                    if b.closed.is_some() {
                        continue;
                    }
                    match out {
                        BotOutput::Transmit { contents, .. } => {
                            self.send_datagram(Leg::Up(i), contents, &by_addr);
                        }
                        BotOutput::Signal(msg) => {
                            let passes = self
                                .from_client
                                .as_mut()
                                .is_none_or(|hostile| hostile(b.id, &msg));
                            if b.online && passes {
                                self.sfu.handle_message(self.now, b.id, msg);
                            }
                        }
                    }
                }
            }
            if !moved {
                return;
            }
        }
    }
}

impl Sim {
    /// Puts a datagram on the network: delivered now, or after the delay.
    fn send_datagram(&mut self, leg: Leg, contents: Vec<u8>, by_addr: &HashMap<SocketAddr, usize>) {
        if let (Some(trace), Leg::Down(to)) = (&mut self.trace, leg) {
            if let Some(&bot) = by_addr.get(&to) {
                trace.push(Traced::new(self.now, true, bot, &contents));
            }
        }
        if self.delay.is_zero() {
            self.arrive(leg, &contents, by_addr);
        } else {
            self.in_flight
                .push_back((self.now + self.delay, leg, contents));
        }
    }

    /// A datagram reaches the end of its leg (or is lost there).
    fn arrive(&mut self, leg: Leg, contents: &[u8], by_addr: &HashMap<SocketAddr, usize>) {
        match leg {
            Leg::Down(destination) => {
                let Some(&i) = by_addr.get(&destination) else {
                    return;
                };
                let b = &mut self.bots[i];
                if b.closed.is_none() && b.delivers() {
                    let _ = b.core.handle_datagram(self.now, self.server, contents);
                }
            }
            Leg::Up(i) => {
                let b = &mut self.bots[i];
                if b.closed.is_none() && b.delivers() {
                    let addr = b.addr;
                    if let Some(trace) = &mut self.trace {
                        trace.push(Traced::new(self.now, false, i, contents));
                    }
                    self.sfu
                        .handle_datagram(self.now, addr, self.server, contents);
                }
            }
        }
    }
}
