//! E2EE timings: join to first decrypted frame, SFrame cost per frame, and
//! a removed member's exposure.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use aparte_bot::{Bot, BotConfig};
use aparte_proto::TrackSource;

use crate::procs::Server;
use crate::{JoinArgs, LOOPBACK, RemovalArgs, commit, date, machine, new_room, record};

/// Join timing: N-1 bots meet; the N-th joins; from its `join` call we take
/// the time to ICE+DTLS connected, to the first decrypted frame of any peer,
/// and to a decrypted frame of every peer.
pub async fn run_join(args: JoinArgs) -> anyhow::Result<()> {
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

async fn join_once(bin: &Path, n: usize) -> anyhow::Result<(f64, f64, f64)> {
    let server = Server::start(bin, None)?;
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
pub fn frames_bench() -> anyhow::Result<String> {
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
        // Every frame is sealed once and opened once: a frame opened twice
        // is a replay, and refused.
        let t = Instant::now();
        let mut sealed = Vec::with_capacity(iters as usize);
        for _ in 0..iters {
            sealed.push(a.media().seal(MediaKind::Video, &frame)?);
        }
        let seal_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
        let t = Instant::now();
        for s in &sealed {
            let opened = b.media().open(0, MediaKind::Video, a.id(), s)?;
            anyhow::ensure!(opened.len() == frame.len());
        }
        let open_us = t.elapsed().as_secs_f64() * 1e6 / f64::from(iters);
        out.push_str(&format!(
            "| {label} | {seal_us:.1} µs | {open_us:.1} µs |\n"
        ));
    }
    Ok(out)
}

/// Exposure after a removal: a bot leaves (its signaling closes); we take the
/// time until every remaining bot entered the next epoch, after which their
/// frames use keys the leaver never had.
pub async fn run_removal(args: RemovalArgs) -> anyhow::Result<()> {
    let mut samples = Vec::new();
    for run in 0..args.runs {
        let server = Server::start(&args.out.server, None)?;
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
