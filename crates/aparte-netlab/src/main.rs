//! A network link for tests, in userspace: two TUN devices, one in this
//! host's network namespace and one moved into a test namespace, with this
//! process between them. Each direction has its own rate cap (a bottleneck
//! with a tail-drop queue), one-way delay and random loss, and UDP can be
//! dropped both ways (a network that allows only TCP).
//!
//! The kernels the tests run on may lack `sch_netem` (this one does: `tc
//! qdisc add … netem` answers "unknown qdisc kind"), so the impairments are
//! applied here, the way userspace emulators such as Mahimahi do. The
//! browsers and the server still talk through their real kernel stacks.
//!
//! ```text
//! aparte-netlab --ns NAME --host-ip 10.77.0.1 --ns-ip 10.77.0.2
//! ```
//!
//! Creates the namespace if needed, brings the link up and prints `ready`.
//! Then reads commands on stdin, one per line, and answers `ok` or `error …`:
//!
//! - `down rate=300000 delay=50 loss=0.03 queue=30000`: towards the
//!   namespace (rate in bits per second, 0 for none; delay in ms; loss as a
//!   fraction; queue in bytes, default 200 ms at the rate); `up …` the other
//!   way, `both …` both;
//! - `udp block` / `udp pass`;
//! - `clear`: no impairment;
//! - `stats`: packets carried and dropped each way.
//!
//! Exits when stdin closes; the TUN devices go with the process.

use std::io::{BufRead, Write};
use std::process::Command;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rand::Rng;
use tun_tap::{Iface, Mode};

/// How one direction of the link behaves.
#[derive(Debug, Clone, Copy, Default)]
struct Shape {
    /// Bits per second; 0 for no cap.
    rate: u64,
    delay: Duration,
    loss: f64,
    /// Most bytes waiting at the bottleneck; 0 for 200 ms at the rate.
    queue: u64,
}

/// One direction's state.
#[derive(Debug, Default)]
struct Direction {
    shape: Shape,
    /// When the bottleneck is free again.
    free_at: Option<Instant>,
    carried: u64,
    lost: u64,
    queue_drops: u64,
    blocked: u64,
}

#[derive(Debug, Default)]
struct Link {
    /// [down, up].
    dirs: [Direction; 2],
    block_udp: bool,
}

const DOWN: usize = 0;
const UP: usize = 1;

impl Link {
    /// When a packet of `len` bytes that arrives now leaves the far end, or
    /// `None` if it is dropped.
    fn schedule(&mut self, dir: usize, packet: &[u8], now: Instant) -> Option<Instant> {
        let block = self.block_udp && is_udp(packet);
        let d = &mut self.dirs[dir];
        if block {
            d.blocked += 1;
            return None;
        }
        if d.shape.loss > 0.0 && rand::rng().random::<f64>() < d.shape.loss {
            d.lost += 1;
            return None;
        }
        let mut leaves = now;
        if d.shape.rate > 0 {
            let start = d.free_at.map_or(now, |f| f.max(now));
            let waiting = start.saturating_duration_since(now);
            let queue = if d.shape.queue > 0 {
                d.shape.queue
            } else {
                (d.shape.rate / 8 / 5).max(3000)
            };
            let queued_bytes = waiting.as_secs_f64() * d.shape.rate as f64 / 8.0;
            if queued_bytes + packet.len() as f64 > queue as f64 {
                d.queue_drops += 1;
                return None;
            }
            let send = Duration::from_secs_f64(packet.len() as f64 * 8.0 / d.shape.rate as f64);
            leaves = start + send;
            d.free_at = Some(leaves);
        }
        d.carried += 1;
        Some(leaves + d.shape.delay)
    }
}

/// Whether an IP packet carries UDP.
fn is_udp(packet: &[u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) => packet.get(9) == Some(&17),
        Some(6) => packet.get(6) == Some(&17),
        _ => false,
    }
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

fn ip(args: &[&str]) -> Result<()> {
    run(Command::new("ip").args(args))
}

fn ip_in(ns: &str, args: &[&str]) -> Result<()> {
    run(Command::new("ip")
        .args(["netns", "exec", ns, "ip"])
        .args(args))
}

struct Args {
    ns: String,
    host_ip: String,
    ns_ip: String,
}

fn args() -> Result<Args> {
    let mut ns = None;
    let mut host_ip = None;
    let mut ns_ip = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = it.next().context("a value after each option")?;
        match a.as_str() {
            "--ns" => ns = Some(v),
            "--host-ip" => host_ip = Some(v),
            "--ns-ip" => ns_ip = Some(v),
            _ => bail!("unknown option {a}"),
        }
    }
    Ok(Args {
        ns: ns.context("--ns")?,
        host_ip: host_ip.context("--host-ip")?,
        ns_ip: ns_ip.context("--ns-ip")?,
    })
}

/// Moves packets read from `from` to `to` through direction `dir`.
fn carry(from: Arc<Iface>, link: Arc<Mutex<Link>>, dir: usize, out: Sender<(Instant, Vec<u8>)>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok(n) = from.recv(&mut buf) else { return };
        let now = Instant::now();
        let when = link
            .lock()
            .ok()
            .and_then(|mut l| l.schedule(dir, &buf[..n], now));
        if let Some(when) = when {
            if out.send((when, buf[..n].to_vec())).is_err() {
                return;
            }
        }
    }
}

/// Delivers packets when their time comes (times only grow per direction).
fn deliver(to: Arc<Iface>, queue: Receiver<(Instant, Vec<u8>)>) {
    for (when, packet) in queue {
        let wait = when.saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            thread::sleep(wait);
        }
        let _ = to.send(&packet);
    }
}

fn parse_shape(words: &[&str]) -> Result<Shape> {
    let mut s = Shape::default();
    for w in words {
        let (k, v) = w.split_once('=').context("key=value")?;
        match k {
            "rate" => s.rate = v.parse()?,
            "delay" => s.delay = Duration::from_millis(v.parse()?),
            "loss" => s.loss = v.parse()?,
            "queue" => s.queue = v.parse()?,
            _ => bail!("unknown setting {k}"),
        }
    }
    Ok(s)
}

fn command(link: &Mutex<Link>, line: &str) -> Result<String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let mut l = link.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    match words.as_slice() {
        ["down", rest @ ..] => l.dirs[DOWN].shape = parse_shape(rest)?,
        ["up", rest @ ..] => l.dirs[UP].shape = parse_shape(rest)?,
        ["both", rest @ ..] => {
            let s = parse_shape(rest)?;
            l.dirs[DOWN].shape = s;
            l.dirs[UP].shape = s;
        }
        ["udp", "block"] => l.block_udp = true,
        ["udp", "pass"] => l.block_udp = false,
        ["clear"] => {
            l.block_udp = false;
            for d in &mut l.dirs {
                d.shape = Shape::default();
                d.free_at = None;
            }
        }
        ["stats"] => {
            let f = |d: &Direction| {
                format!(
                    "carried={} lost={} queue_drops={} blocked={}",
                    d.carried, d.lost, d.queue_drops, d.blocked
                )
            };
            return Ok(format!(
                "ok down {} up {}",
                f(&l.dirs[DOWN]),
                f(&l.dirs[UP])
            ));
        }
        _ => bail!("unknown command"),
    }
    Ok("ok".into())
}

fn main() -> Result<()> {
    let a = args()?;
    // Interface names: at most 15 bytes.
    let tag: String =
        a.ns.chars()
            .filter(char::is_ascii_alphanumeric)
            .take(10)
            .collect();
    let (host_dev, ns_dev) = (format!("{tag}-h"), format!("{tag}-n"));
    if !std::path::Path::new("/var/run/netns").join(&a.ns).exists() {
        ip(&["netns", "add", &a.ns])?;
    }
    let host = Arc::new(Iface::without_packet_info(&host_dev, Mode::Tun).context("TUN")?);
    let inner = Arc::new(Iface::without_packet_info(&ns_dev, Mode::Tun).context("TUN")?);
    // The device moves; the open descriptor stays attached to it.
    ip(&["link", "set", "dev", &ns_dev, "netns", &a.ns])?;
    ip(&[
        "addr", "add", &a.host_ip, "peer", &a.ns_ip, "dev", &host_dev,
    ])?;
    ip(&["link", "set", &host_dev, "up"])?;
    ip_in(
        &a.ns,
        &["addr", "add", &a.ns_ip, "peer", &a.host_ip, "dev", &ns_dev],
    )?;
    ip_in(&a.ns, &["link", "set", &ns_dev, "up"])?;
    ip_in(&a.ns, &["link", "set", "lo", "up"])?;

    let link = Arc::new(Mutex::new(Link::default()));
    for (from, to, dir) in [(&host, &inner, DOWN), (&inner, &host, UP)] {
        let (tx, rx) = channel();
        let (from, to, l) = (from.clone(), to.clone(), link.clone());
        thread::spawn(move || carry(from, l, dir, tx));
        thread::spawn(move || deliver(to, rx));
    }
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready")?;
    stdout.flush()?;
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let answer = command(&link, &line).unwrap_or_else(|e| format!("error {e}"));
        writeln!(stdout, "{answer}")?;
        stdout.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp() -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17];
        p.resize(100, 0);
        p
    }

    #[test]
    fn a_capped_direction_spaces_packets_and_drops_past_its_queue() {
        let mut l = Link::default();
        l.dirs[DOWN].shape = Shape {
            rate: 80_000,
            delay: Duration::from_millis(10),
            loss: 0.0,
            queue: 1000,
        };
        let t0 = Instant::now();
        let p = udp();
        // 100 bytes at 80 kbit/s: 10 ms each, then 10 ms of delay.
        assert_eq!(
            l.schedule(DOWN, &p, t0),
            Some(t0 + Duration::from_millis(20))
        );
        assert_eq!(
            l.schedule(DOWN, &p, t0),
            Some(t0 + Duration::from_millis(30))
        );
        for _ in 0..8 {
            l.schedule(DOWN, &p, t0);
        }
        assert_eq!(l.schedule(DOWN, &p, t0), None, "queue full");
        assert_eq!(l.dirs[DOWN].queue_drops, 1);
        // The other direction is untouched.
        assert_eq!(l.schedule(UP, &p, t0), Some(t0));
    }

    #[test]
    fn udp_can_be_blocked_and_loss_drops_a_share() {
        let mut l = Link::default();
        let t0 = Instant::now();
        l.block_udp = true;
        assert_eq!(l.schedule(UP, &udp(), t0), None);
        let mut tcp = udp();
        tcp[9] = 6;
        assert!(l.schedule(UP, &tcp, t0).is_some());
        l.block_udp = false;
        l.dirs[UP].shape.loss = 0.5;
        let passed = (0..1000)
            .filter(|_| l.schedule(UP, &udp(), t0).is_some())
            .count();
        assert!((400..600).contains(&passed), "{passed}");
    }
}
