//! The load scenarios of `bench/run`: fan-out (stepped to the limit), meeting,
//! audio room, join storm and idle memory on Aparté, and the fan-out on the
//! raw UDP relay at the same sizes, printed as one table.

use std::time::{Duration, Instant};

use anyhow::Context;
use aparte_bot::{Bot, BotConfig, BotReport, StreamReport};
use aparte_proto::{ParticipantId, TrackSource};

use crate::procs::Relay;
use crate::relay::RelayRun;
use crate::room::{Config, Member, Room, Sut, System, Systems};
use crate::{Common, LOOPBACK, commit, date, machine, record};

/// A step fails beyond this frame loss, percent.
const MAX_LOSS_PCT: f64 = 1.0;
/// A step fails beyond this p99 latency, ms.
const MAX_P99_MS: f64 = 50.0;
/// Warm-up after everyone is connected, before measuring.
const WARM_UP: Duration = Duration::from_secs(3);

#[derive(Debug, clap::Args)]
pub struct SuiteArgs {
    /// Receiver counts the fan-out steps through until a step fails.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "25,50,100,150,200,250,300,350,400"
    )]
    steps: Vec<usize>,
    /// Seconds measured per step.
    #[arg(long, default_value_t = 8)]
    seconds: u64,
    /// Fan-out publisher's video bitrate, bits per second.
    #[arg(long, default_value_t = 1_500_000)]
    video_bps: u32,
    /// Meeting sizes (everyone publishes 500 kbps video + audio).
    #[arg(long, value_delimiter = ',', default_value = "10,20")]
    meeting: Vec<usize>,
    /// Rooms on one server for the many-rooms scenario (each N×N at 500 kbps).
    #[arg(long, default_value_t = 4)]
    rooms: usize,
    /// Participants per room in the many-rooms scenario.
    #[arg(long, default_value_t = 8)]
    room_size: usize,
    /// Media threads of the Aparté server (default: the server's own, one per core).
    #[arg(long)]
    media_threads: Option<usize>,
    /// Audio room: speakers.
    #[arg(long, default_value_t = 10)]
    speakers: usize,
    /// Audio room: listeners.
    #[arg(long, default_value_t = 50)]
    listeners: usize,
    /// Join storm: bots joining within one second.
    #[arg(long, default_value_t = 50)]
    storm: usize,
    /// Idle participants for the memory figure.
    #[arg(long, default_value_t = 50)]
    idle: usize,
    /// Scenarios to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "fanout,meeting,audio,rooms,storm,idle,hostile"
    )]
    only: Vec<String>,
    /// SFUs to run (the raw relay always runs with the fan-out).
    #[arg(long, value_delimiter = ',', default_value = "aparte,janus")]
    systems: Vec<String>,
    /// The address Janus exchanges media on: non-loopback, inside the run's
    /// own network namespace (bench/run makes it).
    #[arg(long, default_value = "10.77.0.1")]
    janus_ip: std::net::IpAddr,
    #[command(flatten)]
    out: Common,
}

impl SuiteArgs {
    fn systems_run(&self) -> anyhow::Result<Vec<System>> {
        self.systems
            .iter()
            .map(|s| match s.as_str() {
                "aparte" => Ok(System::Aparte),
                "janus" => Ok(System::Janus),
                other => Err(anyhow::anyhow!("unknown system {other:?} (aparte, janus)")),
            })
            .collect()
    }

    fn systems(&self) -> Systems {
        Systems {
            server: self.out.server.clone(),
            janus_ip: self.janus_ip,
            media_threads: self.media_threads,
        }
    }
}

/// One measured window, labelled.
#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    system: &'static str,
    participants: String,
    m: Measured,
}

impl Row {
    fn passes(&self) -> bool {
        self.m.loss_pct <= MAX_LOSS_PCT && self.m.p99_ms <= MAX_P99_MS
    }
}

pub async fn run(args: SuiteArgs) -> anyhow::Result<()> {
    let on = |s: &str| args.only.iter().any(|o| o == s);
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut failed: Vec<String> = Vec::new();

    let systems = args.systems_run()?;
    if on("fanout") {
        let mut max = Vec::new();
        for &system in &systems {
            match fanout_steps(&args, system).await {
                Ok((steps, n)) => {
                    rows.extend(steps);
                    max.push((system, n));
                }
                Err(e) => failed.push(format!("fan-out on {}: {e:#}", system.name())),
            }
        }
        let max_of = |s: System| max.iter().find(|m| m.0 == s).map(|m| m.1);
        let listed: Vec<String> = max
            .iter()
            .map(|(s, n)| format!("{} **{n}**", s.name()))
            .collect();
        let mut note = format!(
            "Fan-out max N (loss ≤ {MAX_LOSS_PCT}% and p99 ≤ {MAX_P99_MS} ms): {}",
            listed.join(", ")
        );
        if let (Some(a), Some(j)) = (max_of(System::Aparte), max_of(System::Janus)) {
            note.push_str(&format!(
                "; Aparté / Janus = **{}**",
                ratio(a as f64, j as f64)
            ));
        }
        notes.push(note + ".");
        // Half of Aparté's max N (or of the one system run).
        let reference = max.first().map_or(1, |m| m.1).max(1);
        let half = (reference / 2).max(1);
        let mut at_half = Vec::new();
        for &system in &systems {
            match fanout_once(&args, system, half, "fan-out, half load").await {
                Ok(row) => at_half.push((system, row)),
                Err(e) => failed.push(format!("fan-out at half load on {}: {e:#}", system.name())),
            }
        }
        let raw = relay_fanout(&args, half).await?;
        let raw_max = relay_fanout(&args, reference).await?;
        let cpu = |r: &Row| r.m.user_us + r.m.sys_us;
        let each: Vec<String> = at_half
            .iter()
            .map(|(s, r)| {
                format!(
                    "{} {:.1} µs/pkt = **{}** the relay's, p99 {:.1} ms = **{}** the relay's, \
                     **{:.0} receivers per core** at {} kbit/s",
                    s.name(),
                    cpu(r),
                    ratio(cpu(r), cpu(&raw)),
                    r.m.p99_ms,
                    ratio(r.m.p99_ms, raw.m.p99_ms),
                    receivers_per_core(r, half),
                    args.video_bps / 1000
                )
            })
            .collect();
        notes.push(format!(
            "At half load ({half} receivers), against the raw relay ({:.1} µs/pkt, p99 {:.1} ms): {}.",
            cpu(&raw),
            raw.m.p99_ms,
            each.join("; ")
        ));
        rows.extend(at_half.into_iter().map(|(_, r)| r));
        rows.extend([raw, raw_max]);
    }
    // A scenario that fails is named in the table's notes and fails the
    // command once the rest has run and been recorded.
    let mut keep = |what: String, r: anyhow::Result<Row>| match r {
        Ok(row) => rows.push(row),
        Err(e) => failed.push(format!("{what}: {e:#}")),
    };
    for &system in &systems {
        if on("meeting") {
            for &n in &args.meeting {
                let what = format!("meeting {n}×{n} on {}", system.name());
                keep(what, meeting(&args, system, n).await);
            }
        }
        if on("audio") {
            let what = format!("audio room on {}", system.name());
            keep(what, audio_room(&args, system).await);
        }
    }
    if on("rooms") && systems.contains(&System::Aparte) {
        keep("many rooms".to_owned(), many_rooms(&args).await);
    }
    let mut keep_note = |what: &str, r: anyhow::Result<String>| match r {
        Ok(note) => notes.push(note),
        Err(e) => failed.push(format!("{what}: {e:#}")),
    };
    if on("storm") {
        keep_note("join storm", join_storm(&args).await);
    }
    if on("idle") {
        keep_note("idle memory", idle_memory(&args).await);
    }
    if on("hostile") {
        match hostile_load(&args).await {
            Ok((pair, note)) => {
                rows.extend(pair);
                notes.push(note);
            }
            Err(e) => failed.push(format!("hostile load: {e:#}")),
        }
    }
    notes.extend(failed.iter().map(|f| format!("**Failed**: {f}.")));
    let table = render(&args, &rows, &notes);
    println!("\n{table}");
    record(args.out.record.as_ref(), &table)?;
    anyhow::ensure!(failed.is_empty(), "{} scenarios failed", failed.len());
    Ok(())
}

/// What one window measured.
#[derive(Debug, Clone)]
struct Measured {
    packets_per_s: f64,
    loss_pct: f64,
    user_us: f64,
    sys_us: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_mb: f64,
    /// Datagrams the kernel dropped for a full socket receive buffer, in the
    /// whole namespace (server, relay or bots) during the window.
    udp_drops: u64,
}

impl Measured {
    fn row(self, scenario: &str, system: &'static str, participants: String) -> Row {
        Row {
            scenario: scenario.to_owned(),
            system,
            participants,
            m: self,
        }
    }
}

async fn reports(members: &[Member]) -> anyhow::Result<Vec<BotReport>> {
    futures_util::future::join_all(members.iter().map(Member::report))
        .await
        .into_iter()
        .collect()
}

/// Waits for the room to settle (E2EE group, bandwidth estimates), then measures a window.
async fn settle_and_measure(
    room: &Room,
    seconds: u64,
    latency_source: TrackSource,
) -> anyhow::Result<Measured> {
    every_stream_flowing(room, latency_source).await?;
    group_settled(room).await?;
    tokio::time::sleep(WARM_UP).await;
    measure(room, seconds, latency_source).await
}

/// Waits until the E2EE group of every room is quiet: all members at one
/// epoch, and no epoch change or group message for a second. After joins,
/// every member processes each commit and announces its name to the new
/// epoch (an MLS message every other member opens): with a few hundred bots
/// on the server's two cores that is seconds of the bots' CPU, which would
/// fall into the window as latency of every stream at once. Janus rooms
/// (fixed keys, no group) are quiet at once.
async fn group_settled(room: &Room) -> anyhow::Result<()> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let state = |reports: &[BotReport]| -> Vec<(usize, Option<u64>, usize)> {
        reports
            .iter()
            .enumerate()
            .map(|(i, r)| (room.room_index(i), r.e2ee.epoch, r.e2ee.messages.len()))
            .collect()
    };
    let mut last = state(&reports(&room.members).await?);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = state(&reports(&room.members).await?);
        let one_epoch_per_room = now.iter().all(|(room_a, epoch_a, _)| {
            now.iter()
                .filter(|(room_b, _, _)| room_b == room_a)
                .all(|(_, epoch_b, _)| epoch_b == epoch_a)
        });
        if one_epoch_per_room && now == last {
            let waited = started.elapsed();
            if waited > Duration::from_secs(2) {
                eprintln!("E2EE group settled after {:.1} s", waited.as_secs_f64());
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            eprintln!("E2EE group still busy after 60 s; measuring anyway");
            return Ok(());
        }
        last = now;
    }
}

/// A receiver and its stream of a publisher, if it has one yet.
type Waiting<'a> = (&'a BotReport, Option<&'a StreamReport>);

/// Waits until every member gets frames of `source` from every publishing
/// member: a receiver's first frames wait for a keyframe and for the track to
/// be offered, which under load can take seconds and must not fall into a
/// measured window as latency.
async fn every_stream_flowing(room: &Room, source: TrackSource) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let reports = reports(&room.members).await?;
        let publishers: Vec<(usize, ParticipantId)> = reports
            .iter()
            .enumerate()
            .filter(|(_, r)| r.sent_frames > 0)
            .filter_map(|(i, r)| Some((i, r.id?)))
            .collect();
        let waiting: Vec<Waiting> = reports
            .iter()
            .enumerate()
            .flat_map(|r| publishers.iter().map(move |&p| (r, p)))
            .filter(|((i, _), (j, _))| i != j && room.room_index(*i) == room.room_index(*j))
            .map(|((_, r), (_, p))| (r, r.stream(p, source)))
            .filter(|(_, s)| s.is_none_or(|s| s.frames == 0))
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let count = |f: &dyn Fn(&Waiting) -> bool| waiting.iter().filter(|w| f(w)).count();
            eprintln!(
                "{} receiving streams still without frames after 60 s; measuring anyway \
                 (their receivers: {} not connected, {} without group keys, {} without \
                 the track offered, {} with only undecryptable frames)",
                waiting.len(),
                count(&|(r, _)| !r.connected),
                count(&|(r, _)| r.e2ee.epoch.is_none()),
                count(&|(_, s)| s.is_none()),
                count(&|(_, s)| s.is_some_and(|s| s.undecryptable > 0)),
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One window over every bot of a room: datagrams the bots received from the
/// server, frames delivered against frames published (each receiver should
/// get every frame of every other publisher), latency of `latency_source`
/// frames, and the server's CPU time per datagram.
async fn measure(
    room: &Room,
    seconds: u64,
    latency_source: TrackSource,
) -> anyhow::Result<Measured> {
    let (server, bots) = (room.proc(), &room.members);
    let before = reports(bots).await?;
    let d0 = udp_receive_drops();
    let u0 = server.usage()?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = reports(bots).await?;
    let d1 = udp_receive_drops();
    let u1 = server.usage()?;
    let elapsed = t0.elapsed().as_secs_f64();

    let ids: Vec<ParticipantId> = bots.iter().map(Member::id).collect();
    let sent: Vec<u64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| a.sent_frames - b.sent_frames)
        .collect();
    let (mut packets, mut expected, mut delivered) = (0u64, 0u64, 0u64);
    let mut latencies: Vec<u32> = Vec::new();
    // (receiver, publisher, frames later than the p99 limit, worst µs)
    let mut tails: Vec<(ParticipantId, ParticipantId, usize, u32)> = Vec::new();
    let mut streams = 0;
    for (r, (b, a)) in before.iter().zip(&after).enumerate() {
        packets += a.datagrams_in - b.datagrams_in;
        for (p, &pid) in ids.iter().enumerate() {
            if p == r || sent[p] == 0 || room.room_index(p) != room.room_index(r) {
                continue;
            }
            streams += 1;
            expected += sent[p];
            for source in [TrackSource::Camera, TrackSource::Mic] {
                let Some(sa) = a.stream(pid, source) else {
                    continue;
                };
                let sb = b.stream(pid, source);
                delivered += sa.frames - sb.map_or(0, |s| s.frames);
                if source == latency_source {
                    let from = sb.map_or(0, |s| s.latency_us.len());
                    let window = &sa.latency_us[from..];
                    latencies.extend_from_slice(window);
                    let late = window
                        .iter()
                        .filter(|&&l| f64::from(l) > MAX_P99_MS * 1000.0)
                        .count();
                    if late > 0 {
                        let worst = window.iter().copied().max().unwrap_or(0);
                        tails.push((ids[r], pid, late, worst));
                    }
                }
            }
        }
    }
    latencies.sort_unstable();
    let loss = loss_pct(expected, delivered);
    if loss > MAX_LOSS_PCT {
        diagnose(&after);
    }
    if !tails.is_empty() {
        // Says whether late frames hit every receiver (the server or the
        // publisher stalled) or a few (those receivers' paths).
        tails.sort_by_key(|t| std::cmp::Reverse(t.2));
        let late: usize = tails.iter().map(|t| t.2).sum();
        eprintln!(
            "tail: {late} frames later than {MAX_P99_MS} ms at {} of {} receiving streams; worst (receiver, publisher, late frames, max µs): {:?}",
            tails.len(),
            streams,
            &tails[..tails.len().min(5)]
        );
    }
    let packets_f = packets.max(1) as f64;
    Ok(Measured {
        packets_per_s: packets as f64 / elapsed,
        loss_pct: loss,
        user_us: (u1.user_s - u0.user_s) * 1e6 / packets_f,
        sys_us: (u1.sys_s - u0.sys_s) * 1e6 / packets_f,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        rss_mb: u1.rss_mb,
        udp_drops: d1.saturating_sub(d0),
    })
}

/// `RcvbufErrors` of `/proc/net/snmp`: UDP datagrams dropped because a
/// socket's receive buffer was full, counted for the network namespace.
fn udp_receive_drops() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Says where frames went missing: epochs, undecryptable frames, refusals.
fn diagnose(reports: &[BotReport]) {
    let mut epochs = std::collections::BTreeMap::<Option<u64>, usize>::new();
    for r in reports {
        *epochs.entry(r.e2ee.epoch).or_default() += 1;
    }
    let undecryptable: u64 = reports
        .iter()
        .flat_map(|r| &r.streams)
        .map(|s| s.undecryptable)
        .sum();
    let mut codes = std::collections::BTreeMap::<(Option<u64>, String), usize>::new();
    for r in reports {
        let code = r.e2ee.security_code.clone().unwrap_or_default();
        *codes
            .entry((r.e2ee.epoch, code[..code.len().min(5)].to_owned()))
            .or_default() += 1;
    }
    let not_sent: u64 = reports.iter().map(|r| r.e2ee.frames_not_sent).sum();
    let refusals: Vec<&String> = reports
        .iter()
        .flat_map(|r| &r.e2ee.refusals)
        .take(3)
        .collect();
    eprintln!(
        "loss: bots per epoch {epochs:?}; undecryptable frames {undecryptable}; frames not sent {not_sent}; \
         security codes (epoch, first digits) {codes:?}; first refusals {refusals:?}; first bot {:?} epoch {:?}",
        reports.first().and_then(|r| r.id),
        reports.first().and_then(|r| r.e2ee.epoch)
    );
}

/// How many receivers of the fan-out's stream one core could serve: a
/// second of CPU over what one receiver's packets cost (CPU per forwarded
/// packet times each receiver's packet rate, as measured in `row`).
fn receivers_per_core(row: &Row, receivers: usize) -> f64 {
    let us = row.m.user_us + row.m.sys_us;
    let per_receiver = row.m.packets_per_s / receivers.max(1) as f64;
    if us <= 0.0 || per_receiver <= 0.0 {
        return 0.0;
    }
    1e6 / (us * per_receiver)
}

/// `a / b` as "2.5×", or "∞" when `b` is zero.
fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.1}×", a / b)
    } else {
        "∞".to_owned()
    }
}

fn loss_pct(expected: u64, delivered: u64) -> f64 {
    if expected == 0 {
        return 100.0;
    }
    (100.0 * (1.0 - delivered as f64 / expected as f64)).max(0.0)
}

/// `p`-th percentile of sorted µs samples, in ms (NaN when there are none).
fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn publisher(video_bps: u32) -> impl Config + Copy {
    move |epoch, link| BotConfig::new(video_bps, epoch, link)
}

/// Fan-out on one fresh system: receivers are added step by step to the same
/// room until a step fails. Returns the rows and the largest passing N.
async fn fanout_steps(args: &SuiteArgs, system: System) -> anyhow::Result<(Vec<Row>, usize)> {
    let mut room = Room::open(system, &args.systems(), 1, publisher(args.video_bps)).await?;
    let mut rows = Vec::new();
    let mut max_n = 0;
    for &n in &args.steps {
        let have = room.members.len() - 1;
        if n > have {
            if let Err(e) = room.add(n - have, BotConfig::receive_only).await {
                eprintln!(
                    "fan-out ({}): joining {n} receivers failed: {e:#}",
                    system.name()
                );
                break;
            }
        }
        // A bot that ends during a step (the server closed it, its session
        // failed) fails the step, not the suite.
        let mut row = match settle_and_measure(&room, args.seconds, TrackSource::Camera).await {
            Ok(m) => m.row("fan-out", system.name(), n.to_string()),
            Err(e) => {
                eprintln!("fan-out ({}) at {n}: {e:#}", system.name());
                room.explain_stopped().await;
                break;
            }
        };
        eprintln!("{row:?}");
        if !row.passes() {
            // At the edge one window can catch a burst (a bot's socket
            // overflowing while the cores are saturated, then a 2 s wait for
            // a resend): a step fails only if a second window fails too.
            rows.push(row);
            row = match measure(&room, args.seconds, TrackSource::Camera).await {
                Ok(m) => m.row("fan-out (again)", system.name(), n.to_string()),
                Err(e) => {
                    eprintln!("fan-out ({}) at {n}: {e:#}", system.name());
                    room.explain_stopped().await;
                    break;
                }
            };
            eprintln!("{row:?}");
        }
        let pass = row.passes();
        rows.push(row);
        if !pass {
            break;
        }
        max_n = n;
    }
    room.close();
    Ok((rows, max_n))
}

/// One fan-out size on a fresh system.
async fn fanout_once(
    args: &SuiteArgs,
    system: System,
    n: usize,
    label: &str,
) -> anyhow::Result<Row> {
    let mut room = Room::open(system, &args.systems(), 1, publisher(args.video_bps)).await?;
    room.add(n, BotConfig::receive_only).await?;
    let row = settle_and_measure(&room, args.seconds, TrackSource::Camera)
        .await?
        .row(label, system.name(), n.to_string());
    eprintln!("{row:?}");
    room.close();
    Ok(row)
}

/// The same fan-out through the raw relay.
async fn relay_fanout(args: &SuiteArgs, n: usize) -> anyhow::Result<Row> {
    let relay = Relay::start()?;
    let epoch = Instant::now();
    let run = RelayRun::start(relay.addr, n, args.video_bps, epoch).await?;
    tokio::time::sleep(WARM_UP).await;
    let (before, sent0) = run.snapshot().await;
    let d0 = udp_receive_drops();
    let u0 = relay.proc.usage()?;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let (after, sent1) = run.snapshot().await;
    let d1 = udp_receive_drops();
    let u1 = relay.proc.usage()?;
    let elapsed = t0.elapsed().as_secs_f64();
    run.stop();
    let (mut packets, mut delivered) = (0u64, 0u64);
    let mut latencies = Vec::new();
    for (b, a) in before.iter().zip(&after) {
        packets += a.packets - b.packets;
        delivered += a.frames - b.frames;
        latencies.extend_from_slice(&a.latency_us[b.latency_us.len()..]);
    }
    latencies.sort_unstable();
    let packets_f = packets.max(1) as f64;
    let row = Measured {
        packets_per_s: packets as f64 / elapsed,
        loss_pct: loss_pct((sent1 - sent0) * n as u64, delivered),
        user_us: (u1.user_s - u0.user_s) * 1e6 / packets_f,
        sys_us: (u1.sys_s - u0.sys_s) * 1e6 / packets_f,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        rss_mb: u1.rss_mb,
        udp_drops: d1.saturating_sub(d0),
    }
    .row("fan-out", "raw relay", n.to_string());
    eprintln!("{row:?}");
    Ok(row)
}

/// N×N: everyone publishes 500 kbps video and audio and receives everyone.
async fn meeting(args: &SuiteArgs, system: System, n: usize) -> anyhow::Result<Row> {
    let room = Room::open(system, &args.systems(), n, publisher(500_000)).await?;
    let row = settle_and_measure(&room, args.seconds, TrackSource::Camera)
        .await?
        .row("meeting 500 kbps", system.name(), format!("{n}×{n}"));
    eprintln!("{row:?}");
    room.close();
    Ok(row)
}

/// Several N×N rooms at 500 kbps on one Aparté server: the rooms spread over
/// its media threads.
async fn many_rooms(args: &SuiteArgs) -> anyhow::Result<Row> {
    let config = publisher(500_000);
    let mut room = Room::open(System::Aparte, &args.systems(), args.room_size, config).await?;
    for _ in 1..args.rooms {
        room.add_room(args.room_size, config).await?;
    }
    let n = args.room_size;
    let row = settle_and_measure(&room, args.seconds, TrackSource::Camera)
        .await?
        .row(
            "rooms 500 kbps",
            System::Aparte.name(),
            format!("{} × {n}×{n}", args.rooms),
        );
    eprintln!("{row:?}");
    room.close();
    Ok(row)
}

/// Speakers publish audio only; listeners receive.
async fn audio_room(args: &SuiteArgs, system: System) -> anyhow::Result<Row> {
    let speaker = |epoch, link| BotConfig {
        video_bps: 0,
        ..BotConfig::new(0, epoch, link)
    };
    let mut room = Room::open(system, &args.systems(), args.speakers, speaker).await?;
    room.add(args.listeners, BotConfig::receive_only).await?;
    let row = settle_and_measure(&room, args.seconds, TrackSource::Mic)
        .await?
        .row(
            "audio room",
            system.name(),
            format!("{} → {}", args.speakers, args.listeners),
        );
    eprintln!("{row:?}");
    room.close();
    Ok(row)
}

/// `storm` bots join within one second a room where one bot publishes; each
/// is timed from its join call to its first decrypted frame of the publisher.
async fn join_storm(args: &SuiteArgs) -> anyhow::Result<String> {
    let room = Room::open(
        System::Aparte,
        &args.systems(),
        1,
        publisher(args.video_bps),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let host = room.members[0].id();
    let Sut::Aparte {
        server,
        room: room_id,
        link,
    } = &room.sut
    else {
        anyhow::bail!("the join storm runs on Aparté");
    };
    let spacing = Duration::from_secs(1) / args.storm.max(1) as u32;
    let tasks: Vec<_> = (0..args.storm)
        .map(|i| {
            let (url, id, epoch, link) = (
                server.ws_url.clone(),
                room_id.clone(),
                room.epoch,
                link.clone(),
            );
            tokio::spawn(async move {
                tokio::time::sleep(spacing * i as u32).await;
                let t0 = Instant::now();
                let bot =
                    Bot::join(&url, id, LOOPBACK, BotConfig::receive_only(epoch, link)).await?;
                let deadline = t0 + Duration::from_secs(20);
                loop {
                    let rep = bot.report().await?;
                    if rep
                        .stream(host, TrackSource::Camera)
                        .is_some_and(|s| s.first_us.is_some())
                    {
                        let ms = t0.elapsed().as_secs_f64() * 1000.0;
                        return Ok::<_, anyhow::Error>((ms, bot));
                    }
                    anyhow::ensure!(Instant::now() < deadline, "no frame within 20 s");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    let mut times = Vec::new();
    let mut failures = Vec::new();
    let mut bots = Vec::new();
    for t in tasks {
        match t.await.context("storm task")? {
            Ok((ms, bot)) => {
                times.push((ms * 1000.0) as u32);
                bots.push(bot);
            }
            Err(e) => failures.push(format!("{e:#}")),
        }
    }
    times.sort_unstable();
    for b in bots {
        b.kill();
    }
    room.close();
    if let Some(f) = failures.first() {
        eprintln!("join storm: first failure: {f}");
    }
    Ok(format!(
        "Join storm: {} bots joining within 1 s a room with one 1.5 Mbps publisher (Aparté): time from join call to \
         first decrypted frame p50 **{:.0} ms**, p95 **{:.0} ms**; failures {}.",
        args.storm,
        percentile(&times, 0.50),
        percentile(&times, 0.95),
        failures.len()
    ))
}

/// A 10×10 meeting at 500 kbps measured alone, then again on the same server
/// while 20 flooding connections, 200 idle ones and a lobby-filling address
/// attack it (`hostile.rs`): its loss and p99, the server's CPU and peak
/// memory, side by side.
async fn hostile_load(args: &SuiteArgs) -> anyhow::Result<([Row; 2], String)> {
    const MEETING: usize = 10;
    let (flooders, idlers) = (20, 200);
    let room = Room::open(System::Aparte, &args.systems(), MEETING, publisher(500_000)).await?;
    let Sut::Aparte { server, link, .. } = &room.sut else {
        anyhow::bail!("the hostile load runs on Aparté");
    };
    let (url, pid) = (server.ws_url.clone(), room.proc().pid());
    let size = format!("{MEETING}×{MEETING}");
    let cpu_pct = |u0: crate::procs::Usage, u1: crate::procs::Usage, s: f64| {
        100.0 * ((u1.user_s - u0.user_s) + (u1.sys_s - u0.sys_s)) / s
    };

    let quiet = settle_and_measure(&room, args.seconds, TrackSource::Camera)
        .await?
        .row("hostile: meeting alone", "Aparté", size.clone());
    // The server's CPU share over a window of its own (settle_and_measure
    // waits for the group before its window).
    let u0 = room.proc().usage()?;
    let t0 = Instant::now();
    let quiet_again = measure(&room, args.seconds, TrackSource::Camera).await?;
    let quiet_cpu = cpu_pct(u0, room.proc().usage()?, t0.elapsed().as_secs_f64());
    let quiet_peak = crate::procs::peak_rss_mb(pid)?;
    eprintln!("{quiet:?}");

    // A second room with its lobby on, for the lobby filler.
    let (lobby_room, key) = crate::new_room();
    let mut host = BotConfig::receive_only(room.epoch, link.clone()).hosting(key);
    host.open_room = false;
    let lobby_host = Bot::join(&url, lobby_room.clone(), LOOPBACK, host).await?;
    let attackers = crate::hostile::Attackers::start(&url, flooders, idlers, lobby_room);
    tokio::time::sleep(WARM_UP).await;
    let u0 = room.proc().usage()?;
    let t0 = Instant::now();
    let attacked = measure(&room, args.seconds, TrackSource::Camera)
        .await?
        .row("hostile: meeting beside attackers", "Aparté", size);
    let attacked_cpu = cpu_pct(u0, room.proc().usage()?, t0.elapsed().as_secs_f64());
    let counts = attackers.stop().await;
    let peak = crate::procs::peak_rss_mb(pid)?;
    lobby_host.kill();
    eprintln!("{attacked:?}");
    room.close();
    let c = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    let note = format!(
        "Hostile load (Aparté, one run): a {MEETING}×{MEETING} meeting at 500 kbps alone: loss {:.2}%, \
         p99 **{:.1} ms**, server CPU {quiet_cpu:.0}% of a core, peak RSS {quiet_peak:.0} MB (a second quiet \
         window: p99 {:.1} ms). Beside {flooders} flooding connections (pings and junk as fast as the socket \
         takes them, never reading, reconnecting when closed; each from its own address), {idlers} idle \
         WebSockets (reopened when closed) and an address filling a lobby: loss {:.2}%, p99 **{:.1} ms**, \
         server CPU {attacked_cpu:.0}%, peak RSS **{peak:.0} MB**. The attackers wrote {} frames on {} \
         flooding connections (each closed by the server), opened {} idle connections and were refused {} \
         connections (429 after three floods a minute, 503 past a connection limit); the lobby filler got {} \
         places and {} refusals. The attackers run in the bench process beside the bots, on the same two \
         cores.",
        quiet.m.loss_pct,
        quiet.m.p99_ms,
        quiet_again.p99_ms,
        attacked.m.loss_pct,
        attacked.m.p99_ms,
        c(&counts.flood_frames),
        c(&counts.flood_connections),
        c(&counts.idle_connections),
        c(&counts.refused),
        c(&counts.lobby_places),
        c(&counts.lobby_refusals),
    );
    Ok(([quiet, attacked], note))
}

/// Server memory per connected participant that sends and receives no media.
async fn idle_memory(args: &SuiteArgs) -> anyhow::Result<String> {
    let mut room = Room::open(System::Aparte, &args.systems(), 1, BotConfig::receive_only).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let r0 = room.proc().usage()?.rss_mb;
    room.add(args.idle, BotConfig::receive_only).await?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r1 = room.proc().usage()?.rss_mb;
    room.close();
    Ok(format!(
        "Memory per idle participant (Aparté, {} connected, in the MLS group, no media): **{:.0} KB** of server RSS \
         ({:.0} MB → {:.0} MB).",
        args.idle,
        (r1 - r0) * 1000.0 / args.idle as f64,
        r0,
        r1
    ))
}

fn render(args: &SuiteArgs, rows: &[Row], notes: &[String]) -> String {
    let mut s = format!(
        "### Benchmark suite, {}, commit {}\n\nMachine: {}. `bench/run` (`aparte-bench all --seconds {}`). Bots and \
         relay clients share the bench process; the system under test runs in its own process. Loss is frames \
         delivered against frames published; latency is a frame's send stamp to its arrival at the receiving bot \
         (both bot stacks included); CPU is the server's (or relay's) over the window per datagram the receivers \
         got. UDP drops are datagrams the kernel dropped on a full socket receive buffer in the run's network \
         namespace (server, relay or bots) during the window.\n\n\
         | scenario | system | participants | forwarded pkt/s | loss | user µs/pkt | sys µs/pkt | p50 | p99 | RSS | UDP drops |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        date(),
        commit(),
        machine(),
        args.seconds
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {} | {} | {:.0} | {:.2}% | {:.1} | {:.1} | {:.1} ms | {:.1} ms | {:.0} MB | {} |\n",
            r.scenario,
            r.system,
            r.participants,
            r.m.packets_per_s,
            r.m.loss_pct,
            r.m.user_us,
            r.m.sys_us,
            r.m.p50_ms,
            r.m.p99_ms,
            r.m.rss_mb,
            r.m.udp_drops
        ));
    }
    s.push('\n');
    for n in notes {
        s.push_str(&format!("- {n}\n"));
    }
    s
}
