//! One room of bots on a system under test — a fresh Aparté server or a fresh
//! Janus — seen the same way by the scenarios: members with an id and a
//! report, and the process whose CPU and memory are measured.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aparte_bot::{Bot, BotConfig, BotReport};
use aparte_e2ee::LinkSecret;
use aparte_proto::{ParticipantId, RoomId};

use crate::janus::{Janus, JanusPeer};
use crate::procs::{Proc, Server};
use crate::{LOOPBACK, new_room};

/// What a scenario's bots are configured by: the run's clock and link.
pub trait Config: Fn(Instant, LinkSecret) -> BotConfig {}
impl<F: Fn(Instant, LinkSecret) -> BotConfig> Config for F {}

/// Joins that are started together.
const JOIN_BATCH: usize = 10;
/// How long a batch of joins may take to connect.
const CONNECT_WITHIN: Duration = Duration::from_secs(60);

/// Where the systems under test come from.
#[derive(Debug, Clone)]
pub struct Systems {
    /// Aparté's server binary.
    pub server: PathBuf,
    /// The address Janus exchanges media on (see [`crate::janus`]).
    pub janus_ip: IpAddr,
    /// Aparté's media threads, when not the server's default.
    pub media_threads: Option<usize>,
}

/// The SFUs compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Aparte,
    Janus,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Aparte => "Aparté",
            System::Janus => "Janus 1.1.2",
        }
    }
}

/// A participant, however the system connects it.
pub enum Member {
    Aparte(Bot),
    /// Janus: a publisher and a subscriber connection, either optional.
    Janus {
        id: ParticipantId,
        publisher: Option<JanusPeer>,
        subscriber: Option<JanusPeer>,
    },
}

impl Member {
    pub fn id(&self) -> ParticipantId {
        match self {
            Member::Aparte(b) => b.id(),
            Member::Janus { id, .. } => *id,
        }
    }

    /// One report for the participant: what it published, what it received.
    pub async fn report(&self) -> anyhow::Result<BotReport> {
        match self {
            Member::Aparte(b) => b.report().await,
            Member::Janus {
                id,
                publisher,
                subscriber,
            } => {
                let mut r = match subscriber {
                    Some(s) => s.report().await?,
                    None => BotReport::default(),
                };
                r.id = Some(*id);
                if let Some(p) = publisher {
                    let p = p.report().await?;
                    r.sent_frames = p.sent_frames;
                    r.datagrams_in += p.datagrams_in;
                    r.connected = p.connected && (subscriber.is_none() || r.connected);
                }
                Ok(r)
            }
        }
    }

    fn kill(self) {
        match self {
            Member::Aparte(b) => b.kill(),
            Member::Janus {
                publisher,
                subscriber,
                ..
            } => {
                publisher
                    .into_iter()
                    .chain(subscriber)
                    .for_each(JanusPeer::kill);
            }
        }
    }
}

/// The system under test, with the room the bots are in.
pub enum Sut {
    Aparte {
        server: Server,
        room: RoomId,
        link: LinkSecret,
    },
    Janus {
        janus: Janus,
        room: u64,
        /// Who publishes (fixed when the room opens).
        feeds: Vec<ParticipantId>,
        /// The SFrame secret every Janus bot seals and opens with.
        key: [u8; 16],
    },
}

/// Bots of one room on a fresh system.
pub struct Room {
    pub sut: Sut,
    pub epoch: Instant,
    pub members: Vec<Member>,
    /// Which room of the server each member is in, when [`Room::add_room`]
    /// opened more than one (members past its end are in the first).
    pub room_of: Vec<usize>,
}

impl Room {
    /// A fresh system with `publishers` participants configured by `config`
    /// (each receives the others). On Janus the publishers are fixed here;
    /// [`Room::add`] adds receivers.
    pub async fn open(
        system: System,
        on: &Systems,
        publishers: usize,
        config: impl Config,
    ) -> anyhow::Result<Room> {
        let epoch = Instant::now();
        let link = LinkSecret::from_bytes(rand::random());
        match system {
            System::Aparte => {
                let server = Server::start(&on.server, on.media_threads)?;
                let (room, key) = new_room();
                let host = config(epoch, link.clone()).hosting(key);
                let bot = Bot::join(&server.ws_url, room.clone(), LOOPBACK, host).await?;
                bot.connected(Duration::from_secs(30)).await?;
                let mut r = Room {
                    sut: Sut::Aparte { server, room, link },
                    epoch,
                    members: vec![Member::Aparte(bot)],
                    room_of: Vec::new(),
                };
                r.add(publishers.saturating_sub(1), config).await?;
                Ok(r)
            }
            System::Janus => {
                let janus = Janus::start(on.janus_ip)?;
                let room = 1000;
                janus.create_room(room, publishers).await?;
                let key: [u8; 16] = rand::random();
                let feeds: Vec<ParticipantId> =
                    (1..=publishers as u64).map(ParticipantId).collect();
                let j = &janus;
                let mut pubs = Vec::new();
                for batch in feeds.chunks(JOIN_BATCH) {
                    let joins = batch.iter().map(|&id| {
                        let c = janus_config(&config, epoch, key);
                        JanusPeer::publish(j, room, id, c)
                    });
                    for p in futures_util::future::join_all(joins).await {
                        pubs.push(p?);
                    }
                }
                // Janus lists a feed for subscribers only once its media is up.
                for p in &pubs {
                    p.connected(CONNECT_WITHIN).await?;
                }
                let mut subs = Vec::new();
                if feeds.len() > 1 {
                    for batch in feeds.chunks(JOIN_BATCH) {
                        let joins = batch.iter().map(|&id| {
                            let others: Vec<ParticipantId> =
                                feeds.iter().copied().filter(|&f| f != id).collect();
                            let c = janus_config(&config, epoch, key);
                            async move { JanusPeer::subscribe(j, room, id, &others, c).await }
                        });
                        for s in futures_util::future::join_all(joins).await {
                            subs.push(Some(s?));
                        }
                    }
                } else {
                    subs.resize_with(pubs.len(), || None);
                }
                let members = feeds
                    .iter()
                    .zip(pubs)
                    .zip(subs)
                    .map(|((&id, p), s)| Member::Janus {
                        id,
                        publisher: Some(p),
                        subscriber: s,
                    })
                    .collect();
                let r = Room {
                    sut: Sut::Janus {
                        janus,
                        room,
                        feeds,
                        key,
                    },
                    epoch,
                    members,
                    room_of: Vec::new(),
                };
                r.connected(0).await?;
                Ok(r)
            }
        }
    }

    /// The measured process.
    pub fn proc(&self) -> &Proc {
        match &self.sut {
            Sut::Aparte { server, .. } => &server.proc,
            Sut::Janus { janus, .. } => &janus.proc,
        }
    }

    /// Adds `n` participants configured by `config`, [`JOIN_BATCH`] joins at a
    /// time, and waits until all are connected. On Janus they only receive.
    pub async fn add(&mut self, n: usize, config: impl Config) -> anyhow::Result<()> {
        let first_new = self.members.len();
        let mut left = n;
        while left > 0 {
            let k = left.min(JOIN_BATCH);
            left -= k;
            let next_id = self.members.len() as u64 + 1;
            match &self.sut {
                Sut::Aparte { server, room, link } => {
                    let joins = (0..k).map(|_| {
                        Bot::join(
                            &server.ws_url,
                            room.clone(),
                            LOOPBACK,
                            config(self.epoch, link.clone()),
                        )
                    });
                    for b in futures_util::future::join_all(joins).await {
                        self.members.push(Member::Aparte(b?));
                    }
                }
                Sut::Janus {
                    janus,
                    room,
                    feeds,
                    key,
                } => {
                    let joins = (0..k as u64).map(|i| {
                        let id = ParticipantId(next_id + i);
                        let c = janus_config(&config, self.epoch, *key);
                        JanusPeer::subscribe(janus, *room, id, feeds, c)
                    });
                    let ids = (0..k as u64).map(|i| ParticipantId(next_id + i));
                    for (id, s) in ids.zip(futures_util::future::join_all(joins).await) {
                        self.members.push(Member::Janus {
                            id,
                            publisher: None,
                            subscriber: Some(s?),
                        });
                    }
                }
            }
        }
        let r = self.connected(first_new).await;
        if r.is_err() {
            self.explain_stopped().await;
        }
        r
    }

    /// Prints why bots that ended by themselves did (the first three), and
    /// removes them from the room.
    pub async fn explain_stopped(&mut self) {
        let stopped: Vec<usize> = (0..self.members.len())
            .filter(|&i| matches!(&self.members[i], Member::Aparte(b) if b.is_finished()))
            .collect();
        if !stopped.is_empty() {
            eprintln!("{} bots stopped", stopped.len());
        }
        for (k, i) in stopped.into_iter().rev().enumerate() {
            if let Member::Aparte(b) = self.members.remove(i) {
                let id = b.id();
                let why = b.finished().await.err();
                if k < 3 {
                    eprintln!("bot {id} stopped: {why:?}");
                }
            }
        }
    }

    /// Aparté only: opens one more room of `size` on the same server, everyone
    /// configured by `config` (the first joiner hosts it).
    pub async fn add_room(&mut self, size: usize, config: impl Config) -> anyhow::Result<()> {
        let Sut::Aparte { server, .. } = &self.sut else {
            anyhow::bail!("more rooms on one server: Aparté only");
        };
        let index = self.room_of.iter().max().map_or(1, |m| m + 1);
        let link = LinkSecret::from_bytes(rand::random());
        let (room, key) = new_room();
        let host = config(self.epoch, link.clone()).hosting(key);
        let host = Bot::join(&server.ws_url, room.clone(), LOOPBACK, host).await?;
        host.connected(Duration::from_secs(30)).await?;
        let first_new = self.members.len();
        self.room_of.resize(first_new, 0);
        self.members.push(Member::Aparte(host));
        let mut left = size.saturating_sub(1);
        while left > 0 {
            let k = left.min(JOIN_BATCH);
            left -= k;
            let joins = (0..k).map(|_| {
                let c = config(self.epoch, link.clone());
                Bot::join(&server.ws_url, room.clone(), LOOPBACK, c)
            });
            for b in futures_util::future::join_all(joins).await {
                self.members.push(Member::Aparte(b?));
            }
        }
        self.room_of.resize(self.members.len(), index);
        self.connected(first_new).await
    }

    /// Which room member `i` is in.
    pub fn room_index(&self, i: usize) -> usize {
        self.room_of.get(i).copied().unwrap_or(0)
    }

    /// Waits until members from index `from` on have their media connected.
    async fn connected(&self, from: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + CONNECT_WITHIN;
        for m in &self.members[from..] {
            while !m.report().await?.connected {
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "participant {} not connected within {CONNECT_WITHIN:?}",
                    m.id()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    pub fn close(self) {
        for m in self.members {
            m.kill();
        }
    }
}

/// A Janus bot: the scenario's configuration with fixed SFrame keys (Janus
/// has no MLS delivery service; the link is unused).
fn janus_config(config: &impl Config, epoch: Instant, key: [u8; 16]) -> BotConfig {
    BotConfig {
        fixed_media_key: Some(key),
        ..config(epoch, LinkSecret::from_bytes([0; 16]))
    }
}
