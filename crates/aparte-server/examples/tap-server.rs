//! The real server with a tap, for browser tests only: it watches every frame
//! payload the SFU forwards (after SRTP) and every signaling message, and
//! writes to `--out` how many it saw and which of the `--needle` strings
//! (names, chat text, the link secret) appeared in any of them. The shipped
//! binary has no tap; this example exists so tests can prove the server is blind.
//!
//! With `--swap-tracks` it also lies: in every offer to the third participant
//! to be welcomed, the first two participants' tracks carry each other's
//! names (the page would show Alice's camera on Bob's tile). Browser tests use
//! it to prove the pages refuse such frames rather than show them.

use std::sync::{Arc, Mutex};

use anyhow::Context;
use aparte_proto::{ParticipantId, ServerMsg};
use aparte_sfu::TapEvent;

/// The lie of `--swap-tracks`: participants in the order they were
/// welcomed; the third one's offers name the first two the wrong way round.
#[derive(Default)]
struct Swap {
    welcomed: Vec<ParticipantId>,
}

impl Swap {
    fn rewrite(&mut self, to: ParticipantId, msg: &mut ServerMsg) {
        match msg {
            ServerMsg::Welcome { you, .. } if !self.welcomed.contains(you) => {
                self.welcomed.push(*you);
            }
            ServerMsg::Offer { tracks, .. } => {
                let [a, b, victim, ..] = self.welcomed[..] else {
                    return;
                };
                if to != victim {
                    return;
                }
                for t in tracks.iter_mut() {
                    if t.peer == a {
                        t.peer = b;
                    } else if t.peer == b {
                        t.peer = a;
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct Seen {
    packets: u64,
    signaling: u64,
    mls_app: u64,
    hits: Vec<String>,
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut out = None;
    let mut needles = Vec::new();
    let mut swap = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--out" => out = args.next(),
            "--needle" => needles.extend(args.next()),
            "--swap-tracks" => swap = Some(Swap::default()),
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let out = out.context("--out FILE is required")?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sink = seen.clone();
    let tap: aparte_sfu::Tap = Box::new(move |ev| {
        let mut s = sink.lock().unwrap_or_else(|e| e.into_inner());
        let (bytes, label): (Vec<u8>, &str) = match ev {
            TapEvent::Packet { payload, .. } => {
                s.packets += 1;
                (payload.to_vec(), "media packet")
            }
            TapEvent::FromClient(m) => {
                s.signaling += 1;
                let j = m.to_json();
                if j.contains("\"mls_app\"") {
                    s.mls_app += 1;
                }
                (j.into_bytes(), "signaling")
            }
            TapEvent::ToClient { to, msg } => {
                if let Some(swap) = &mut swap {
                    swap.rewrite(to, msg);
                }
                s.signaling += 1;
                (msg.to_json().into_bytes(), "signaling")
            }
        };
        for n in &needles {
            if find(&bytes, n.as_bytes()) {
                s.hits.push(format!("{label}: {n}"));
            }
        }
    });
    let mut config = aparte_server::Config::ephemeral();
    config.max_participants = 20;
    let server = aparte_server::start_with_tap(config, Some(tap)).await?;
    println!(
        "Aparté is ready: open http://localhost:{} in a browser",
        server.http_addr.port()
    );
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let s = seen.lock().unwrap_or_else(|e| e.into_inner());
        let hits: Vec<String> = s.hits.iter().map(|h| format!("{h:?}")).collect();
        let report = format!(
            "{{\"packets\":{},\"signaling\":{},\"mls_app\":{},\"hits\":[{}]}}",
            s.packets,
            s.signaling,
            s.mls_app,
            hits.join(",")
        );
        std::fs::write(&out, report)?;
    }
}
