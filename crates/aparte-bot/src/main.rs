//! `aparte-bot`: join a meeting as a headless participant, publish synthetic
//! media, and print what was received from everyone else.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use aparte_bot::{Bot, BotConfig};
use aparte_proto::{RoomId, Token};
use clap::Parser;

/// A headless Aparté participant.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Signaling URL of the server.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    server: String,
    /// Room to join (the ROOM of a /m/ROOM#SECRET link).
    #[arg(long, required_unless_present = "new")]
    room: Option<String>,
    /// The link's secret (the SECRET after '#'): without it the bot cannot
    /// join the meeting's end-to-end encrypted group.
    #[arg(long, required_unless_present = "new")]
    secret: Option<String>,
    /// Start a new meeting as its host: a host key and link secret are
    /// generated and the meeting's link printed.
    #[arg(long, conflicts_with_all = ["room", "secret", "key"])]
    new: bool,
    /// A host or moderator key of the room (a host key opens the room).
    #[arg(long)]
    key: Option<String>,
    /// The room's passcode, if it has one.
    #[arg(long)]
    passcode: Option<String>,
    /// As host: turn the lobby off so everyone with the link walks in.
    #[arg(long)]
    open: bool,
    /// As host or moderator: admit everyone who waits in the lobby.
    #[arg(long)]
    admit_all: bool,
    /// Display name (sent end-to-end encrypted).
    #[arg(long, default_value = "bot")]
    name: String,
    /// Video bitrate in kbit/s (0: no video).
    #[arg(long, default_value_t = 1500)]
    video_kbps: u32,
    /// Video frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Publish no audio.
    #[arg(long)]
    no_audio: bool,
    /// Seconds to stay before leaving.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Local address of the media socket.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (room, link, key) = if args.new {
        let key = aparte_proto::keys::token_from_bytes(rand::random());
        let link = aparte_e2ee::LinkSecret::from_bytes(rand::random());
        let room = aparte_proto::room_for_host_key(&key);
        println!("meeting link: /m/{room}#{}", link.encode());
        println!("host key (keep it secret): {}", key.as_str());
        (room, link, Some(key))
    } else {
        let room = RoomId::parse(args.room.as_deref().unwrap_or_default()).context("room id")?;
        let link = aparte_e2ee::LinkSecret::parse(args.secret.as_deref().unwrap_or_default())
            .context("link secret")?;
        let key = match args.key.as_deref() {
            Some(k) => Some(Token::parse(k).context("key")?),
            None => None,
        };
        (room, link, key)
    };
    let mut config = BotConfig::new(args.video_kbps * 1000, Instant::now(), link);
    config.name = args.name.clone();
    config.fps = args.fps;
    config.audio = !args.no_audio;
    config.key = key;
    config.passcode = args.passcode.clone();
    config.open_room = args.open;
    config.admit_all = args.admit_all;
    let bot = Bot::join(&args.server, room, args.bind, config).await?;
    if bot.report().await?.id.is_none() {
        println!("waiting in the lobby as {}", bot.id());
        bot.admitted(Duration::from_secs(300)).await?;
    }
    println!("joined as {}", bot.id());
    bot.connected(Duration::from_secs(15)).await?;
    println!("media connected; staying {} s", args.duration);
    tokio::time::sleep(Duration::from_secs(args.duration)).await;
    let report = bot.leave().await?;
    println!(
        "sent {} frames; e2ee epoch {:?}, security code {}",
        report.sent_frames,
        report.e2ee.epoch,
        report.e2ee.security_code.as_deref().unwrap_or("-")
    );
    // Latency is not printed: it needs the sender's clock epoch, which only
    // bots of one process share (see aparte-bench).
    for s in &report.streams {
        println!(
            "from {} ({}) {:<12} frames {:>6} lost {:>4} late {:>3} corrupt {:>3} wrong-sender {:>3} undecryptable {:>3} relabelled {:>3} replayed {:>3} behind {:>3}",
            s.peer,
            report.e2ee.name_of(s.peer).unwrap_or_default(),
            s.source.as_str(),
            s.frames,
            s.lost,
            s.out_of_order,
            s.corrupt,
            s.wrong_sender,
            s.undecryptable,
            s.relabelled,
            s.replayed,
            s.behind,
        );
    }
    if !report.all_intact() {
        anyhow::bail!("some frames arrived damaged, misattributed or out of order");
    }
    Ok(())
}
