//! Helpers shared by the server's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use aparte_bot::{Bot, BotConfig};
use aparte_proto::{ParticipantId, RoomId, TrackSource};
use aparte_server::{Config, ServerHandle};

pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

pub async fn server() -> ServerHandle {
    aparte_server::start(Config::ephemeral()).await.unwrap()
}

/// The link secret of the test meetings.
pub fn link() -> aparte_e2ee::LinkSecret {
    aparte_e2ee::LinkSecret::from_bytes([5; 16])
}

pub fn room(name: &str) -> RoomId {
    RoomId::parse(name).unwrap()
}

/// `n` bots publishing `bps` of video and audio join `room`, all at once.
pub async fn bots(
    server: &ServerHandle,
    room: &RoomId,
    n: usize,
    bps: u32,
    epoch: Instant,
) -> Vec<Bot> {
    let url = server.ws_url();
    let joins = (0..n).map(|i| {
        let mut config = BotConfig::new(bps, epoch, link());
        config.name = format!("{room}-bot-{i}");
        Bot::join(&url, room.clone(), LOOPBACK, config)
    });
    let bots: Vec<Bot> = futures_util::future::join_all(joins)
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    for b in &bots {
        b.connected(Duration::from_secs(10)).await.unwrap();
    }
    bots
}

/// Frames `bot` received so far of `peer`'s `source`.
pub async fn frames(bot: &Bot, peer: ParticipantId, source: TrackSource) -> u64 {
    bot.report()
        .await
        .unwrap()
        .stream(peer, source)
        .map_or(0, |s| s.frames)
}

/// Waits until `cond` holds, checking every 50 ms, for at most `within`.
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond().await
}
