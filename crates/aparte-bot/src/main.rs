//! `aparte-bot`: join a meeting as a headless participant, publish synthetic
//! media, and print what was received from everyone else.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use aparte_bot::{Bot, BotConfig};
use aparte_proto::RoomId;
use clap::Parser;

/// A headless Aparté participant.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Signaling URL of the server.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    server: String,
    /// Room to join (the ROOM of a /m/ROOM#SECRET link).
    #[arg(long)]
    room: String,
    /// The link's secret (the SECRET after '#'): without it the bot cannot
    /// join the meeting's end-to-end encrypted group.
    #[arg(long)]
    secret: String,
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
    let room = RoomId::parse(&args.room).context("room id")?;
    let link = aparte_e2ee::LinkSecret::parse(&args.secret).context("link secret")?;
    let mut config = BotConfig::new(args.video_kbps * 1000, Instant::now(), link);
    config.name = args.name.clone();
    config.fps = args.fps;
    config.audio = !args.no_audio;
    let bot = Bot::join(&args.server, room, args.bind, config).await?;
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
            "from {} ({}) {:<12} frames {:>6} lost {:>4} late {:>3} corrupt {:>3} wrong-sender {:>3} undecryptable {:>3}",
            s.peer,
            report.e2ee.name_of(s.peer).unwrap_or_default(),
            s.source.as_str(),
            s.frames,
            s.lost,
            s.out_of_order,
            s.corrupt,
            s.wrong_sender,
            s.undecryptable,
        );
    }
    if !report.all_intact() {
        anyhow::bail!("some frames arrived damaged, misattributed or out of order");
    }
    Ok(())
}
