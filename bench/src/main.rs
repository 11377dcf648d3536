//! `aparte-bench`: runs benchmark scenarios against the real server binary on
//! loopback, with bots as participants, and prints (and optionally records)
//! the figures. Speed is measured here, never asserted by tests.
//!
//! The server runs as its own process so its CPU time can be read from
//! `/proc/PID/stat` apart from the bots' (which share this process).

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aparte_bot::{Bot, BotConfig, BotReport};
use aparte_proto::{RoomId, Token, TrackSource};
use clap::Parser;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Debug, Parser)]
#[command(about = "Aparté benchmarks on loopback")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// One publisher to N receivers.
    Fanout(Args),
    /// Time from join to first decrypted remote frame, against ICE+DTLS connect time.
    Join(JoinArgs),
    /// Native SFrame seal/open cost per 720p-sized frame.
    Frames,
    /// After a participant leaves, how long until every remaining member
    /// seals with the next epoch's keys (the removed member's exposure).
    Removal(RemovalArgs),
}

#[derive(Debug, clap::Args)]
struct RemovalArgs {
    /// Participants before the leave.
    #[arg(long, default_value_t = 5)]
    size: usize,
    /// Runs (the median and the worst are reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    #[command(flatten)]
    out: Common,
}

/// Arguments every scenario that runs the server takes.
#[derive(Debug, clap::Args)]
struct Common {
    /// Server binary.
    #[arg(long, default_value = "target/release/aparte-server")]
    server: PathBuf,
    /// Append the table to this markdown file.
    #[arg(long)]
    record: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct JoinArgs {
    /// Meeting sizes (the last participant's join is measured).
    #[arg(long, value_delimiter = ',', default_value = "2,5,10")]
    sizes: Vec<usize>,
    /// Runs per size (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[command(flatten)]
    out: Common,
}

#[derive(Debug, clap::Args)]
struct Args {
    /// Receiver counts of the fan-out scenario.
    #[arg(long, value_delimiter = ',', default_value = "10,50,100")]
    receivers: Vec<usize>,
    /// Publisher video bitrate, bits per second.
    #[arg(long, default_value_t = 1_500_000)]
    video_bps: u32,
    /// Seconds measured per step (after a warm-up).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[command(flatten)]
    out: Common,
}

/// One measured step of the fan-out scenario.
#[derive(Debug)]
struct FanoutRow {
    receivers: usize,
    packets_per_s: f64,
    frame_loss_pct: f64,
    user_us_per_packet: f64,
    sys_us_per_packet: f64,
    p50_ms: f64,
    p99_ms: f64,
    server_rss_mb: f64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Fanout(args) => run_fanout(args).await,
        Scenario::Join(args) => run_join(args).await,
        Scenario::Removal(args) => run_removal(args).await,
        Scenario::Frames => {
            let table = frames_bench()?;
            println!("{table}");
            Ok(())
        }
    }
}

async fn run_fanout(args: Args) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &n in &args.receivers {
        let row = fanout(&args, n).await?;
        println!("{row:?}");
        rows.push(row);
    }
    let table = render(&args, &rows);
    println!("\n{table}");
    record(args.out.record.as_ref(), &table)
}

/// A fresh room and its host key (a room exists only as a host key's hash).
fn new_room() -> (RoomId, Token) {
    let key = aparte_proto::keys::token_from_bytes(rand::random());
    (aparte_proto::room_for_host_key(&key), key)
}

struct ServerProc {
    child: Child,
    ws_url: String,
}

impl ServerProc {
    fn start(bin: &PathBuf) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--media-listen", "127.0.0.1:0"])
            .args(["--max-participants", "1000", "--join-rate", "100000"])
            .arg("--data-dir")
            .arg(std::env::temp_dir().join(format!("aparte-bench-{}", std::process::id())))
            .env("APARTE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (build it with cargo build --release)",
                    bin.display()
                )
            })?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let Some(port) = line
            .split("http://localhost:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        else {
            bail!("unexpected server output: {line}");
        };
        Ok(ServerProc {
            ws_url: format!("ws://127.0.0.1:{port}/ws"),
            child,
        })
    }

    /// (user, system) CPU seconds and resident memory in MB.
    fn usage(&self) -> anyhow::Result<(f64, f64, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which is in parentheses.
        let rest = stat.rsplit_once(')').context("stat format")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        let tick = 100.0; // USER_HZ on Linux
        let utime: f64 = f[11].parse::<f64>()? / tick;
        let stime: f64 = f[12].parse::<f64>()? / tick;
        let rss_pages: f64 = f[21].parse()?;
        Ok((utime, stime, rss_pages * 4096.0 / 1e6))
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn fanout(args: &Args, n: usize) -> anyhow::Result<FanoutRow> {
    let server = ServerProc::start(&args.out.server)?;
    let epoch = Instant::now();
    let link = aparte_e2ee::LinkSecret::from_bytes([3; 16]);
    let (room, key) = new_room();
    let publisher = Bot::join(
        &server.ws_url,
        room.clone(),
        LOOPBACK,
        BotConfig::new(args.video_bps, epoch, link.clone()).hosting(key),
    )
    .await?;
    let mut receivers = Vec::with_capacity(n);
    // Join in batches so the join itself is not the thing measured.
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let joins = chunk.iter().map(|_| {
            Bot::join(
                &server.ws_url,
                room.clone(),
                LOOPBACK,
                BotConfig::receive_only(epoch, link.clone()),
            )
        });
        for b in futures_util::future::join_all(joins).await {
            receivers.push(b?);
        }
    }
    for b in receivers.iter().chain([&publisher]) {
        b.connected(Duration::from_secs(30)).await?;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;

    let before = reports(&receivers).await?;
    let (u0, s0, _) = server.usage()?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let after = reports(&receivers).await?;
    let (u1, s1, rss) = server.usage()?;
    let elapsed = t0.elapsed().as_secs_f64();

    let pub_id = publisher.id();
    let mut packets = 0u64;
    let (mut frames, mut lost) = (0u64, 0u64);
    let mut latencies: Vec<u32> = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        packets += a.datagrams_in - b.datagrams_in;
        for source in [TrackSource::Camera, TrackSource::Mic] {
            let (Some(sb), Some(sa)) = (b.stream(pub_id, source), a.stream(pub_id, source)) else {
                continue;
            };
            frames += sa.frames - sb.frames;
            lost += sa.lost - sb.lost;
            if source == TrackSource::Camera {
                latencies.extend_from_slice(&sa.latency_us[sb.latency_us.len()..]);
            }
        }
    }
    // Receivers that got nothing at all count every expected frame as lost.
    let silent = after
        .iter()
        .filter(|r| r.stream(pub_id, TrackSource::Camera).is_none())
        .count();
    latencies.sort_unstable();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 - 1.0) * p) as usize)
            .map_or(f64::NAN, |&v| f64::from(v) / 1000.0)
    };
    let packets_f = packets.max(1) as f64;
    let row = FanoutRow {
        receivers: n,
        packets_per_s: packets as f64 / elapsed,
        frame_loss_pct: if silent > 0 {
            100.0
        } else {
            100.0 * lost as f64 / (frames + lost).max(1) as f64
        },
        user_us_per_packet: (u1 - u0) * 1e6 / packets_f,
        sys_us_per_packet: (s1 - s0) * 1e6 / packets_f,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        server_rss_mb: rss,
    };
    for b in receivers {
        b.kill();
    }
    publisher.kill();
    Ok(row)
}

async fn reports(bots: &[Bot]) -> anyhow::Result<Vec<BotReport>> {
    let mut out = Vec::with_capacity(bots.len());
    for b in bots {
        out.push(b.report().await?);
    }
    Ok(out)
}

fn render(args: &Args, rows: &[FanoutRow]) -> String {
    let (date, commit, machine) = (date(), commit(), machine());
    let mut s = format!(
        "### Fan-out, {date}, commit {commit}\n\nMachine: {machine}. One publisher at {} kbps video (30 fps) + audio, \
         N receive-only bots in the same process as each other, server in its own process; {} s measured after 3 s warm-up.\n\n\
         | receivers | forwarded pkt/s | frame loss | server user µs/pkt | server sys µs/pkt | video latency p50 | p99 | server RSS |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        args.video_bps / 1000,
        args.seconds
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.0} | {:.2}% | {:.1} | {:.1} | {:.1} ms | {:.1} ms | {:.0} MB |\n",
            r.receivers,
            r.packets_per_s,
            r.frame_loss_pct,
            r.user_us_per_packet,
            r.sys_us_per_packet,
            r.p50_ms,
            r.p99_ms,
            r.server_rss_mb
        ));
    }
    s
}

fn record(path: Option<&PathBuf>, table: &str) -> anyhow::Result<()> {
    if let Some(path) = path {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "\n{table}")?;
    }
    Ok(())
}

/// Join timing: N-1 bots meet; the N-th joins; from its `join` call we take
/// the time to ICE+DTLS connected, to the first decrypted frame of any peer,
/// and to a decrypted frame of every peer.
async fn run_join(args: JoinArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &n in &args.sizes {
        let mut samples = Vec::new();
        for _ in 0..args.runs {
            samples.push(join_once(&args.out.server, n).await?);
        }
        let med = |f: fn(&(f64, f64, f64)) -> f64| {
            let mut v: Vec<f64> = samples.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let row = (n, med(|s| s.0), med(|s| s.1), med(|s| s.2));
        println!("{row:?}");
        rows.push(row);
    }
    let mut t = format!(
        "### Join to first frame, {}, commit {}\n\nMachine: {}. Bots on loopback, E2EE on (MLS add + SFrame); \
         the last of N participants is measured from its join call; median of {} runs. \
         `aparte-bench join --sizes 2,5,10 --runs {}`.\n\n\
         | participants | ICE+DTLS connected | first decrypted frame | frames from every peer |\n|---:|---:|---:|---:|\n",
        date(),
        commit(),
        machine(),
        args.runs,
        args.runs
    );
    for (n, c, f, a) in rows {
        t.push_str(&format!("| {n} | {c:.0} ms | {f:.0} ms | {a:.0} ms |\n"));
    }
    println!("\n{t}");
    record(args.out.record.as_ref(), &t)
}

async fn join_once(bin: &PathBuf, n: usize) -> anyhow::Result<(f64, f64, f64)> {
    let server = ServerProc::start(bin)?;
    let epoch = Instant::now();
    let link = aparte_e2ee::LinkSecret::from_bytes([4; 16]);
    let (room, key) = new_room();
    let config = || BotConfig::new(1_000_000, epoch, link.clone());
    let mut early = Vec::new();
    for i in 0..n - 1 {
        let c = if i == 0 {
            config().hosting(key.clone())
        } else {
            config()
        };
        let b = Bot::join(&server.ws_url, room.clone(), LOOPBACK, c).await?;
        b.connected(Duration::from_secs(20)).await?;
        early.push(b);
    }
    // Let the group settle before the measured join.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t0 = epoch.elapsed().as_micros() as u64;
    let last_config = if n == 1 {
        config().hosting(key)
    } else {
        config()
    };
    let last = Bot::join(&server.ws_url, room.clone(), LOOPBACK, last_config).await?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let rep = last.report().await?;
        let firsts: Vec<u64> = early
            .iter()
            .filter_map(|p| {
                rep.stream(p.id(), TrackSource::Camera)
                    .and_then(|s| s.first_us)
            })
            .collect();
        if firsts.len() == early.len() {
            let ms = |us: u64| us.saturating_sub(t0) as f64 / 1000.0;
            let connected = rep.connected_us.map_or(f64::NAN, ms);
            let first = firsts.iter().copied().min().map_or(f64::NAN, ms);
            let all = firsts.iter().copied().max().map_or(f64::NAN, ms);
            last.kill();
            for b in early {
                b.kill();
            }
            return Ok((connected, first, all));
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the last joiner did not receive every peer within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Native SFrame seal and open of 720p-sized frames (6 KB delta, 60 KB key).
fn frames_bench() -> anyhow::Result<String> {
    use aparte_e2ee::{Incoming, LinkSecret, MediaKind, Member};
    let link = LinkSecret::from_bytes([1; 16]);
    let mut a = Member::new(1, link.clone(), 1000)?;
    a.create_group(0, b"bench")?;
    let mut b = Member::new(2, link, 1000)?;
    let kp = a.verify_join_request(2, &b.join_request()?)?;
    let commit_msg = a.commit(vec![kp], &[])?;
    a.commit_accepted(0)?;
    let welcome = commit_msg.welcome.context("welcome")?;
    anyhow::ensure!(matches!(b.process(0, &welcome)?, Incoming::Joined { .. }));
    let mut out = format!(
        "### SFrame per frame, native, {}, commit {}\n\nMachine: {}. `aparte-bench frames` (release build).\n\n| frame | seal | open |\n|---|---:|---:|\n",
        date(),
        commit(),
        machine()
    );
    for (label, size, iters) in [
        ("720p delta (6 KB)", 6_250usize, 5_000u32),
        ("720p key (60 KB)", 60_000, 1_000),
    ] {
        let mut frame = vec![0x11u8; size];
        if label.contains("key") {
            frame[0] = 0x10;
        }
        let t = Instant::now();
        let mut sealed = Vec::new();
        for _ in 0..iters {
            sealed = a.media().seal(MediaKind::Video, &frame)?;
        }
        let seal_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
        let t = Instant::now();
        for _ in 0..iters {
            let opened = b.media().open(0, MediaKind::Video, &sealed)?;
            anyhow::ensure!(opened.len() == frame.len());
        }
        let open_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
        out.push_str(&format!(
            "| {label} | {seal_us:.1} µs | {open_us:.1} µs |\n"
        ));
    }
    Ok(out)
}

fn commit() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn date() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

/// Exposure after a removal: a bot leaves (its signaling closes); we take the
/// time until every remaining bot entered the next epoch, after which their
/// frames use keys the leaver never had.
async fn run_removal(args: RemovalArgs) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    for run in 0..args.runs {
        let server = ServerProc::start(&args.out.server)?;
        let epoch = Instant::now();
        let link = aparte_e2ee::LinkSecret::from_bytes([6; 16]);
        let (room, key) = new_room();
        let mut bots = Vec::new();
        for i in 0..args.size {
            let mut c = BotConfig::new(500_000, epoch, link.clone());
            if i == 0 {
                c = c.hosting(key.clone());
            }
            let b = Bot::join(&server.ws_url, room.clone(), LOOPBACK, c).await?;
            b.connected(Duration::from_secs(20)).await?;
            bots.push(b);
        }
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let before = bots[0].report().await?.e2ee.epoch.context("in a group")?;
        let leaver = bots.remove(1);
        let t0 = epoch.elapsed().as_micros() as u64;
        leaver.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        let exposure_ms = loop {
            let mut done = Vec::new();
            for b in &bots {
                let rep = b.report().await?;
                if let Some(&(_, at)) = rep.e2ee.epoch_changes.iter().find(|(e, _)| *e > before) {
                    done.push(at);
                }
            }
            if done.len() == bots.len() {
                break done
                    .iter()
                    .max()
                    .map_or(f64::NAN, |&at| at.saturating_sub(t0) as f64 / 1000.0);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "remaining bots did not move on within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        println!("run {run}: {exposure_ms:.1} ms");
        samples.push(exposure_ms);
        for b in bots {
            b.kill();
        }
    }
    samples.sort_by(f64::total_cmp);
    let t = format!(
        "### Exposure after a removal, {}, commit {}\n\nMachine: {}. {} bots, one closes its connection; time until every \
         remaining bot is in the next epoch (its frames then use keys the leaver never had). Receivers still accept the \
         previous epoch's frames for the grace (1000 ms), which lets the remaining members open frames in flight and gives \
         the leaver nothing new. `aparte-bench removal --size {} --runs {}`.\n\n| median | worst of {} |\n|---:|---:|\n| {:.1} ms | {:.1} ms |\n",
        date(),
        commit(),
        machine(),
        args.size,
        args.size,
        args.runs,
        args.runs,
        samples[samples.len() / 2],
        samples[samples.len() - 1]
    );
    println!("\n{t}");
    record(args.out.record.as_ref(), &t)
}
