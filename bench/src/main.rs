//! `aparte-bench`: runs benchmark scenarios against the real server binary on
//! loopback, with bots as participants, beside a raw UDP relay that marks the
//! machine's ceiling, and prints (and optionally records) the figures. Speed
//! is measured here, never asserted by tests.
//!
//! The server and the relay run as their own processes so their CPU time can
//! be read from `/proc/PID/stat` apart from the bots' (which share this
//! process).

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Command;

use aparte_proto::{RoomId, Token};
use clap::Parser;

mod e2ee;
mod hostile;
mod janus;
mod procs;
mod relay;
mod room;
mod suite;

const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[derive(Debug, Parser)]
#[command(about = "Aparté benchmarks on loopback")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, clap::Subcommand)]
enum Scenario {
    /// Every load scenario, Aparté beside the raw relay, as one table.
    All(suite::SuiteArgs),
    /// Time from join to first decrypted remote frame, against ICE+DTLS connect time.
    Join(JoinArgs),
    /// Native SFrame seal/open cost per 720p-sized frame.
    Frames,
    /// After a participant leaves, how long until every remaining member
    /// seals with the next epoch's keys (the removed member's exposure).
    Removal(RemovalArgs),
    /// The raw UDP relay process (started by the benchmark itself).
    #[command(hide = true)]
    RelayServe,
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

fn main() -> anyhow::Result<()> {
    let scenario = Cli::parse().scenario;
    if let Scenario::RelayServe = scenario {
        // Its own single-threaded runtime, like the server's media loop.
        return relay::serve();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match scenario {
            Scenario::All(args) => suite::run(args).await,
            Scenario::Join(args) => e2ee::run_join(args).await,
            Scenario::Removal(args) => e2ee::run_removal(args).await,
            Scenario::Frames => {
                let table = e2ee::frames_bench()?;
                println!("{table}");
                Ok(())
            }
            Scenario::RelayServe => relay::serve(),
        }
    })
}

/// A fresh room and its host key (a room exists only as a host key's hash).
fn new_room() -> (RoomId, Token) {
    let key = aparte_proto::keys::token_from_bytes(rand::random());
    (aparte_proto::room_for_host_key(&key), key)
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
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} cores, {cpu}, Linux {}", kernel.trim())
}
