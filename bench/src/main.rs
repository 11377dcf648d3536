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
use aparte_proto::{RoomId, TrackSource};
use clap::Parser;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Debug, Parser)]
#[command(about = "Aparté benchmarks on loopback")]
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
    /// Server binary.
    #[arg(long, default_value = "target/release/aparte-server")]
    server: PathBuf,
    /// Append the table to this markdown file.
    #[arg(long)]
    record: Option<PathBuf>,
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
    let args = Args::parse();
    let mut rows = Vec::new();
    for &n in &args.receivers {
        let row = fanout(&args, n).await?;
        println!("{row:?}");
        rows.push(row);
    }
    let table = render(&args, &rows);
    println!("\n{table}");
    if let Some(path) = &args.record {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(f, "\n{table}")?;
    }
    Ok(())
}

struct ServerProc {
    child: Child,
    ws_url: String,
}

impl ServerProc {
    fn start(bin: &PathBuf) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--media-listen", "127.0.0.1:0"])
            .args(["--max-participants", "1000"])
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
    let server = ServerProc::start(&args.server)?;
    let epoch = Instant::now();
    let link = aparte_e2ee::LinkSecret::from_bytes([3; 16]);
    let room = RoomId::parse(&format!("bench-fanout-{n}")).map_err(|e| anyhow::anyhow!("{e}"))?;
    let publisher = Bot::join(
        &server.ws_url,
        room.clone(),
        LOOPBACK,
        BotConfig::new(args.video_bps, epoch, link.clone()),
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
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
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
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut s = format!(
        "### Fan-out, {date}, commit {commit}\n\nMachine: {cores} cores, {cpu}. One publisher at {} kbps video (30 fps) + audio, \
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
