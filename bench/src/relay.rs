//! The raw UDP relay that marks this machine's ceiling, and its clients.
//!
//! The relay forwards every datagram a publisher sends to every subscriber,
//! with the same batched socket code as the server's media loop
//! (`aparte_server::udp`: recvmmsg, sendmmsg, GSO) on the same kind of
//! single-threaded loop, and nothing else: no ICE, no DTLS, no SRTP, no RTP.
//! The clients send the same schedule of packets as a bot publisher (video
//! frames cut into ≤1200-byte packets at 30 fps, 50 audio frames/s) and the
//! receivers stamp arrival like the bots, so the two paths compare.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aparte_server::udp;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::Mutex;

const SUBSCRIBE: u8 = 1;
const MEDIA: u8 = 2;
/// Media header: kind, flags (1: last packet of a frame, 2: video), frame seq
/// (u32), packet seq (u32), sent µs (u64).
const HEADER: usize = 18;
/// Payload per packet, about what str0m puts in one RTP packet.
const PACKET: usize = 1200;

/// The relay process: binds loopback, prints its address, forwards forever.
pub fn serve() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        // The same socket buffers as the server's media socket.
        udp::enlarge_buffers(&sock, udp::SOCKET_BUFFER)?;
        println!("relay on {}", sock.local_addr()?);
        let mut subscribers: Vec<SocketAddr> = Vec::new();
        let mut rx = udp::Receiver::default();
        let mut tx = udp::Sender::default();
        loop {
            tokio::select! {
                r = sock.readable() => {
                    r?;
                    // Until nothing more is queued (or an ICMP error): then wait again.
                    while let Ok(n) = sock.try_io(Interest::READABLE, || rx.recv(&sock)) {
                        for i in 0..n {
                            let Some((from, data)) = rx.get(i) else { continue };
                            match data.first() {
                                Some(&SUBSCRIBE) if !subscribers.contains(&from) => subscribers.push(from),
                                Some(&MEDIA) => {
                                    for &s in &subscribers {
                                        tx.push(s, data.to_vec());
                                    }
                                }
                                _ => {}
                            }
                        }
                        if n < udp::BATCH {
                            break;
                        }
                    }
                }
                r = sock.writable(), if tx.pending() > 0 => { r?; }
            }
            if tx.pending() > 0 {
                let _ = sock.try_io(Interest::WRITABLE, || tx.flush(&sock));
            }
        }
    })
}

/// What one relay receiver counted.
#[derive(Debug, Clone, Default)]
pub struct RelayStats {
    pub packets: u64,
    pub frames: u64,
    /// Video frame-completion latency (last packet of a frame), µs.
    pub latency_us: Vec<u32>,
}

/// A publisher and N receivers of the relay, in this process.
pub struct RelayRun {
    stats: Vec<Arc<Mutex<RelayStats>>>,
    sent_frames: Arc<std::sync::atomic::AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RelayRun {
    /// Subscribes `n` receivers, then starts one publisher of `video_bps`
    /// video (30 fps) and audio.
    pub async fn start(
        relay: SocketAddr,
        n: usize,
        video_bps: u32,
        epoch: Instant,
    ) -> anyhow::Result<RelayRun> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut stats = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
            sock.send_to(&[SUBSCRIBE], relay).await?;
            let s = Arc::new(Mutex::new(RelayStats::default()));
            stats.push(s.clone());
            tasks.push(tokio::spawn(receive(sock, s, epoch)));
        }
        // Let the subscriptions land before media flows.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sent_frames = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        tasks.push(tokio::spawn(publish(
            sock,
            relay,
            video_bps,
            epoch,
            stop.clone(),
            sent_frames.clone(),
        )));
        Ok(RelayRun {
            stats,
            sent_frames,
            stop,
            tasks,
        })
    }

    /// Every receiver's counts so far, and the frames the publisher sent.
    pub async fn snapshot(&self) -> (Vec<RelayStats>, u64) {
        let mut out = Vec::with_capacity(self.stats.len());
        for s in &self.stats {
            out.push(s.lock().await.clone());
        }
        (out, self.sent_frames.load(Ordering::Relaxed))
    }

    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn receive(sock: UdpSocket, stats: Arc<Mutex<RelayStats>>, epoch: Instant) {
    let mut buf = [0u8; 2048];
    while let Ok(n) = sock.recv(&mut buf).await {
        let now_us = epoch.elapsed().as_micros() as u64;
        if n < HEADER || buf[0] != MEDIA {
            continue;
        }
        let mut s = stats.lock().await;
        s.packets += 1;
        if buf[1] & 1 == 1 {
            s.frames += 1;
        }
        if buf[1] == 3 {
            let sent = u64::from_be_bytes(buf[10..18].try_into().unwrap_or_default());
            if s.latency_us.len() < 100_000 {
                s.latency_us
                    .push(now_us.saturating_sub(sent).min(u64::from(u32::MAX)) as u32);
            }
        }
    }
}

async fn publish(
    sock: UdpSocket,
    relay: SocketAddr,
    video_bps: u32,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    sent_frames: Arc<std::sync::atomic::AtomicU64>,
) {
    let video_frame = (video_bps / 8 / 30) as usize;
    let start = tokio::time::Instant::now();
    let (mut next_video, mut next_audio) = (start, start);
    let (mut frame_seq, mut packet_seq) = (0u32, 0u32);
    let mut buf = vec![0u8; HEADER + PACKET];
    while !stop.load(Ordering::Relaxed) {
        let due = next_video.min(next_audio);
        tokio::time::sleep_until(due).await;
        let (bytes, video) = if next_video <= next_audio {
            next_video += Duration::from_secs(1) / 30;
            (video_frame, true)
        } else {
            next_audio += Duration::from_millis(20);
            (80, false)
        };
        let sent_us = epoch.elapsed().as_micros() as u64;
        let mut left = bytes.max(1);
        while left > 0 {
            let chunk = left.min(PACKET);
            left -= chunk;
            buf[0] = MEDIA;
            buf[1] = u8::from(left == 0) | (u8::from(video) << 1);
            buf[2..6].copy_from_slice(&frame_seq.to_be_bytes());
            buf[6..10].copy_from_slice(&packet_seq.to_be_bytes());
            buf[10..18].copy_from_slice(&sent_us.to_be_bytes());
            let _ = sock.send_to(&buf[..HEADER + chunk], relay).await;
            packet_seq = packet_seq.wrapping_add(1);
        }
        frame_seq = frame_seq.wrapping_add(1);
        sent_frames.fetch_add(1, Ordering::Relaxed);
    }
}
