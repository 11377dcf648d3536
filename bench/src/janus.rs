//! Janus 1.1.2 VideoRoom beside Aparté: the Janus process (Debian's `janus`
//! package, configured here for loopback only) and a small adapter that drives
//! the same bots ([`BotCore`]) through Janus's WebSocket API.
//!
//! Janus wants a publisher's offer and gives each subscriber an offer, one
//! peer connection per direction: a participant that publishes and receives is
//! two bot cores (a publisher and a subscriber), each with its own Janus
//! session and UDP socket. There is no MLS group in Janus, so the bots seal and
//! open frames with fixed SFrame keys ([`BotConfig::fixed_media_key`]): the
//! per-frame work in the bots is the same as in an Aparté meeting.
//!
//! Janus never gathers ICE candidates on a loopback interface, so it is given
//! one non-loopback address, `ip`, that must exist only inside a network
//! namespace made for the run (`bench/run` makes it: a veth pair with both ends
//! inside). Its bots bind the same address; the traffic never leaves the
//! namespace and is routed locally, as Aparté's is on loopback.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use aparte_bot::{BotConfig, BotCore, BotError, BotOutput, BotReport};
use aparte_proto::{ParticipantId, TrackSource};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::procs::Proc;

/// Where Debian's package puts Janus's plugins.
const LIB: &str = "/usr/lib/x86_64-linux-gnu/janus";
/// How often a session is kept alive (Janus drops it after 60 s of silence).
const KEEPALIVE: Duration = Duration::from_secs(20);

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A Janus process listening on loopback only, with only the VideoRoom plugin
/// and the WebSocket transport loaded; everything else at the package's defaults.
#[derive(Debug)]
pub struct Janus {
    pub proc: Proc,
    pub ws_url: String,
    /// The address Janus and its bots exchange media on.
    pub ip: IpAddr,
    dir: PathBuf,
}

impl Janus {
    pub fn start(ip: IpAddr) -> anyhow::Result<Janus> {
        let bin = "/usr/bin/janus";
        ensure!(
            std::path::Path::new(bin).exists(),
            "Janus is not installed: `apt-get install janus` (bench/run does it when it can)"
        );
        ensure!(
            !ip.is_loopback() && std::net::UdpSocket::bind((ip, 0)).is_ok(),
            "Janus needs a non-loopback address ({ip}) that exists only in a network namespace \
             made for the run; run the benchmark through bench/run, which makes one"
        );
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("aparte-bench-janus-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let plugins = [
            "audiobridge",
            "duktape",
            "echotest",
            "lua",
            "nosip",
            "recordplay",
            "sip",
        ]
        .iter()
        .chain(&["streaming", "textroom", "videocall", "voicemail"])
        .map(|p| format!("libjanus_{p}.so"))
        .collect::<Vec<_>>()
        .join(",");
        let transports = ["http", "mqtt", "nanomsg", "pfunix", "rabbitmq"]
            .map(|t| format!("libjanus_{t}.so"))
            .join(",");
        let main = format!(
            "general: {{\n  configs_folder = \"{dir}\"\n  plugins_folder = \"{LIB}/plugins\"\n  \
             transports_folder = \"{LIB}/transports\"\n  events_folder = \"{LIB}/events\"\n  \
             loggers_folder = \"{LIB}/loggers\"\n  debug_level = 2\n  server_name = \"aparte-bench\"\n}}\n\
             media: {{\n  rtp_port_range = \"20000-29999\"\n}}\n\
             nat: {{\n  ice_enforce_list = \"{ip}\"\n}}\n\
             plugins: {{\n  disable = \"{plugins}\"\n}}\n\
             transports: {{\n  disable = \"{transports}\"\n}}\n\
             loggers: {{\n  disable = \"libjanus_jsonlog.so\"\n}}\n\
             events: {{\n  broadcast = false\n}}\n",
            dir = dir.display()
        );
        std::fs::write(dir.join("janus.jcfg"), main)?;
        std::fs::write(
            dir.join("janus.transport.websockets.jcfg"),
            format!(
                "general: {{\n  ws = true\n  ws_port = {port}\n  ws_ip = \"127.0.0.1\"\n  wss = false\n}}\n\
                 admin: {{\n  admin_ws = false\n  admin_wss = false\n}}\n"
            ),
        )?;
        std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
        let mut cmd = Command::new(bin);
        cmd.arg("-C")
            .arg(dir.join("janus.jcfg"))
            .arg("-F")
            .arg(&dir)
            .arg("--disable-colors");
        // Its banner and the plugins it skips are noise; warnings and errors are shown.
        let (proc, _) = Proc::start_quiet(cmd, "janus", |l| {
            (l.contains("[ERR]") || l.contains("[WARN]")) && !l.contains("has been disabled")
        })?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while std::net::TcpStream::connect(addr).is_err() {
            ensure!(Instant::now() < deadline, "Janus did not listen on {addr}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Janus {
            proc,
            ws_url: format!("ws://{addr}"),
            ip,
            dir,
        })
    }

    /// Creates a VideoRoom room for Opus and VP8, open to `publishers`.
    pub async fn create_room(&self, room: u64, publishers: usize) -> anyhow::Result<()> {
        let mut s = Signal::open(&self.ws_url).await?;
        let r = s
            .message(
                json!({
                    "request": "create", "room": room, "publishers": publishers.max(1),
                    "audiocodec": "opus", "videocodec": "vp8", "bitrate": 0,
                    "notify_joining": false,
                }),
                None,
            )
            .await?;
        ensure!(
            r["plugindata"]["data"]["videoroom"] == "created",
            "Janus did not create the room: {r}"
        );
        Ok(())
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One Janus session with one VideoRoom handle over a WebSocket.
struct Signal {
    ws: Ws,
    session: u64,
    handle: u64,
    next: u64,
}

impl Signal {
    async fn open(url: &str) -> anyhow::Result<Signal> {
        let mut req = url.into_client_request()?;
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "janus-protocol".parse()?);
        let (ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .context("connecting to Janus")?;
        let mut s = Signal {
            ws,
            session: 0,
            handle: 0,
            next: 0,
        };
        let r = s.request(json!({ "janus": "create" })).await?;
        s.session = r["data"]["id"].as_u64().context("no session id")?;
        let r = s
            .request(json!({ "janus": "attach", "plugin": "janus.plugin.videoroom" }))
            .await?;
        s.handle = r["data"]["id"].as_u64().context("no handle id")?;
        Ok(s)
    }

    /// Sends a request and waits for its answer (acks skipped; other events ignored).
    async fn request(&mut self, msg: Value) -> anyhow::Result<Value> {
        self.send_and_wait(msg, false).await
    }

    /// Sends a request; with `ack_answers`, Janus's ack is the whole answer.
    async fn send_and_wait(&mut self, mut msg: Value, ack_answers: bool) -> anyhow::Result<Value> {
        self.next += 1;
        let tx = self.next.to_string();
        msg["transaction"] = json!(tx);
        if self.session != 0 {
            msg["session_id"] = json!(self.session);
        }
        if self.handle != 0 {
            msg["handle_id"] = json!(self.handle);
        }
        self.ws.send(Message::text(msg.to_string())).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("Janus did not answer within 30 s")?;
            let Some(m) = next else {
                bail!("Janus closed the WebSocket")
            };
            let Message::Text(text) = m? else { continue };
            let v: Value = serde_json::from_str(&text)?;
            if v["transaction"].as_str() != Some(&tx) {
                continue;
            }
            match v["janus"].as_str() {
                Some("ack") if !ack_answers => continue,
                Some("error") => bail!("Janus error: {}", v["error"]),
                _ => {
                    if let Some(e) = v["plugindata"]["data"].get("error") {
                        bail!("VideoRoom error: {e}");
                    }
                    return Ok(v);
                }
            }
        }
    }

    /// A VideoRoom request, with an SDP when it carries one.
    async fn message(&mut self, body: Value, jsep: Option<Value>) -> anyhow::Result<Value> {
        let mut msg = json!({ "janus": "message", "body": body });
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        self.request(msg).await
    }

    /// Tells Janus the bot has no more candidates than those in its SDP.
    async fn candidates_done(&mut self) -> anyhow::Result<()> {
        self.send_and_wait(
            json!({ "janus": "trickle", "candidate": { "completed": true } }),
            true,
        )
        .await
        .map(drop)
    }
}

enum Cmd {
    Report(oneshot::Sender<BotReport>),
}

/// One bot core on one Janus handle: a publisher or a subscriber.
pub struct JanusPeer {
    cmd: mpsc::Sender<Cmd>,
    task: JoinHandle<Result<(), BotError>>,
}

impl JanusPeer {
    /// Publishes as feed `id` in `room`: camera and microphone as `config` says.
    pub async fn publish(
        janus: &Janus,
        room: u64,
        id: ParticipantId,
        config: BotConfig,
    ) -> anyhow::Result<JanusPeer> {
        let (mut sig, udp, mut core) = Self::setup(janus, config).await?;
        core.set_id(id);
        let joined = sig
            .message(
                json!({ "request": "join", "ptype": "publisher", "room": room, "id": id.0 }),
                None,
            )
            .await?;
        ensure!(
            joined["plugindata"]["data"]["videoroom"] == "joined",
            "publisher not joined: {joined}"
        );
        let offer = core.publish_offer()?;
        let r = sig
            .message(
                json!({ "request": "publish" }),
                Some(json!({ "type": "offer", "sdp": offer })),
            )
            .await?;
        let answer = r["jsep"]["sdp"].as_str().context("no answer from Janus")?;
        if std::env::var_os("APARTE_BENCH_SDP").is_some() {
            eprintln!("offer:\n{offer}\nanswer:\n{answer}");
        }
        core.accept_answer(Instant::now(), answer)?;
        sig.candidates_done().await?;
        Ok(Self::spawn(core, sig, udp))
    }

    /// Subscribes (as participant `id`) to the camera and microphone of every feed in `feeds`.
    pub async fn subscribe(
        janus: &Janus,
        room: u64,
        id: ParticipantId,
        feeds: &[ParticipantId],
        config: BotConfig,
    ) -> anyhow::Result<JanusPeer> {
        let (mut sig, udp, mut core) = Self::setup(janus, config).await?;
        core.set_id(id);
        let streams: Vec<Value> = feeds.iter().map(|f| json!({ "feed": f.0 })).collect();
        let join =
            json!({ "request": "join", "ptype": "subscriber", "room": room, "streams": streams });
        // A publisher whose connection our side already sees up can still be
        // a moment away from being listed by Janus: ask again, briefly.
        let mut tries = 0;
        let r = loop {
            match sig.message(join.clone(), None).await {
                Err(e) if tries < 10 && e.to_string().contains("No such feed") => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => break r?,
            }
        };
        let offer = r["jsep"]["sdp"].as_str().context("no offer from Janus")?;
        let tracks: Vec<(String, ParticipantId, TrackSource)> = r["plugindata"]["data"]["streams"]
            .as_array()
            .context("no streams in Janus's offer")?
            .iter()
            .filter_map(|s| {
                let source = match s["type"].as_str()? {
                    "video" => TrackSource::Camera,
                    "audio" => TrackSource::Mic,
                    _ => return None,
                };
                Some((
                    s["mid"].as_str()?.to_owned(),
                    ParticipantId(s["feed_id"].as_u64()?),
                    source,
                ))
            })
            .collect();
        let answer = core.answer_offer(Instant::now(), offer, tracks)?;
        sig.message(
            json!({ "request": "start" }),
            Some(json!({ "type": "answer", "sdp": answer })),
        )
        .await?;
        sig.candidates_done().await?;
        Ok(Self::spawn(core, sig, udp))
    }

    async fn setup(
        janus: &Janus,
        config: BotConfig,
    ) -> anyhow::Result<(Signal, UdpSocket, BotCore)> {
        let sig = Signal::open(&janus.ws_url).await?;
        let udp = UdpSocket::bind((janus.ip, 0)).await?;
        let core = BotCore::new(Instant::now(), udp.local_addr()?, config);
        Ok((sig, udp, core))
    }

    fn spawn(core: BotCore, sig: Signal, udp: UdpSocket) -> JanusPeer {
        let (cmd, rx) = mpsc::channel(8);
        JanusPeer {
            cmd,
            task: tokio::spawn(run(core, sig, udp, rx)),
        }
    }

    /// Waits until ICE and DTLS are up.
    pub async fn connected(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while !self.report().await?.connected {
            ensure!(
                Instant::now() < deadline,
                "Janus bot not connected within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// What the bot received and sent so far.
    pub async fn report(&self) -> anyhow::Result<BotReport> {
        let (tx, rx) = oneshot::channel();
        if self.cmd.send(Cmd::Report(tx)).await.is_err() {
            bail!("Janus bot stopped");
        }
        Ok(rx.await?)
    }

    pub fn kill(self) {
        self.task.abort();
    }
}

/// The bot's loop: media in and out, timers, Janus keep-alives.
async fn run(
    mut core: BotCore,
    mut sig: Signal,
    udp: UdpSocket,
    mut cmd: mpsc::Receiver<Cmd>,
) -> Result<(), BotError> {
    let mut buf = vec![0u8; 2048];
    let mut keepalive = tokio::time::interval(KEEPALIVE);
    loop {
        while let Some(out) = core.poll_output() {
            if let BotOutput::Transmit {
                destination,
                contents,
            } = out
            {
                let _ = udp.send_to(&contents, destination).await;
            }
        }
        let wake = tokio::time::Instant::from_std(core.poll_timeout());
        tokio::select! {
            m = sig.ws.next() => match m {
                Some(Ok(_)) => {}
                _ => return Err(BotError::Disconnected),
            },
            r = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    core.handle_datagram(Instant::now(), from, &buf[..n])?;
                }
            }
            _ = tokio::time::sleep_until(wake) => core.handle_timeout(Instant::now())?,
            _ = keepalive.tick() => {
                let ping = json!({ "janus": "keepalive", "session_id": sig.session, "transaction": "k" });
                if sig.ws.send(Message::text(ping.to_string())).await.is_err() {
                    return Err(BotError::Disconnected);
                }
            }
            c = cmd.recv() => match c {
                Some(Cmd::Report(tx)) => { let _ = tx.send(core.report()); }
                None => return Ok(()),
            },
        }
    }
}
