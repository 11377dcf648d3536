//! [`Bot`]: a [`BotCore`] driven by tokio, a UDP socket and a WebSocket.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aparte_proto::{ClientMsg, ParticipantId, RoomId, TrackSource, parse_server_msg};
use futures_util::{SinkExt, StreamExt};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::{BotConfig, BotCore, BotError, BotOutput, BotReport};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

enum Cmd {
    Report(oneshot::Sender<BotReport>),
    Chat(String, oneshot::Sender<Result<(), BotError>>),
    Signal(ClientMsg),
    Keyframe(ParticipantId, TrackSource, oneshot::Sender<bool>),
    Leave,
}

/// A running bot. Dropping it without [`Bot::leave`] aborts it abruptly, as a
/// crashed browser would.
#[derive(Debug)]
pub struct Bot {
    id: ParticipantId,
    cmd: mpsc::Sender<Cmd>,
    task: JoinHandle<Result<BotReport, BotError>>,
}

impl Bot {
    /// Joins `room` on the server whose signaling endpoint is `ws_url`
    /// (`ws://host:port/ws`), with its signaling and media sockets bound on
    /// `bind_ip`. Returns once the server has welcomed the bot or put it in
    /// the lobby.
    pub async fn join(
        ws_url: &str,
        room: RoomId,
        bind_ip: IpAddr,
        config: BotConfig,
    ) -> anyhow::Result<Bot> {
        let server = ws_url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .context("the signaling URL is not ws://host:port/…")?;
        let server: SocketAddr = tokio::net::lookup_host(server)
            .await?
            .next()
            .context("the signaling host has no address")?;
        let tcp = if server.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        tcp.bind(SocketAddr::new(bind_ip, 0))
            .context("binding the signaling socket")?;
        let stream = tcp
            .connect(server)
            .await
            .context("connecting to signaling")?;
        let (mut ws, _) = tokio_tungstenite::client_async(
            ws_url,
            tokio_tungstenite::MaybeTlsStream::Plain(stream),
        )
        .await
        .context("opening the signaling WebSocket")?;
        let udp = UdpSocket::bind(SocketAddr::new(bind_ip, 0))
            .await
            .context("binding the media socket")?;
        let local = udp.local_addr()?;
        let mut core = BotCore::new(Instant::now(), local, config);
        let join = core.join_msg(room);
        send(&mut ws, &join).await?;
        // Wait for the welcome (or the lobby), so the caller knows the bot's id.
        loop {
            let Some(msg) = ws.next().await else {
                bail!("signaling closed before welcome");
            };
            let Message::Text(text) = msg? else { continue };
            let msg = parse_server_msg(&text).map_err(|e| anyhow::anyhow!("{e}"))?;
            core.handle_signal(Instant::now(), msg)?;
            if core.id().is_some() || core.waiting().is_some() {
                break;
            }
        }
        let id = core
            .id()
            .or(core.waiting())
            .context("welcomed without an id")?;
        let (cmd, cmd_rx) = mpsc::channel(8);
        let task = tokio::spawn(run(core, ws, udp, cmd_rx));
        Ok(Bot { id, cmd, task })
    }

    /// The bot's participant id.
    pub fn id(&self) -> ParticipantId {
        self.id
    }

    /// What the bot received so far. Errors if the bot has stopped.
    pub async fn report(&self) -> anyhow::Result<BotReport> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Report(tx))
            .await
            .map_err(|_| anyhow::anyhow!("bot {} stopped", self.id))?;
        Ok(rx.await?)
    }

    /// Sends a chat message to the meeting, end-to-end encrypted.
    pub async fn send_chat(&self, text: &str) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Chat(text.to_owned(), tx))
            .await
            .map_err(|_| anyhow::anyhow!("bot {} stopped", self.id))?;
        Ok(rx.await??)
    }

    /// Sends a signaling message as this bot (host controls, or probes of
    /// what the server refuses).
    pub async fn signal(&self, msg: ClientMsg) -> anyhow::Result<()> {
        self.cmd
            .send(Cmd::Signal(msg))
            .await
            .map_err(|_| anyhow::anyhow!("bot {} stopped", self.id))
    }

    /// Asks (by RTCP PLI) for a keyframe of `peer`'s `source`, as a
    /// receiver that cannot decode would. False when the bot does not
    /// receive that track.
    pub async fn request_keyframe(
        &self,
        peer: ParticipantId,
        source: TrackSource,
    ) -> anyhow::Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Keyframe(peer, source, tx))
            .await
            .map_err(|_| anyhow::anyhow!("bot {} stopped", self.id))?;
        Ok(rx.await?)
    }

    /// Waits until the bot is admitted from the lobby.
    pub async fn admitted(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        while self.report().await?.id.is_none() {
            if tokio::time::Instant::now() > deadline {
                bail!("bot {} not admitted within {within:?}", self.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits until the media connection is up.
    pub async fn connected(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        while !self.report().await?.connected {
            if tokio::time::Instant::now() > deadline {
                bail!("bot {} not connected within {within:?}", self.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Whether the bot's task has ended (error or server closing it).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Leaves the room and returns the final report.
    pub async fn leave(self) -> anyhow::Result<BotReport> {
        let _ = self.cmd.send(Cmd::Leave).await;
        Ok(self.task.await??)
    }

    /// Stops the bot without a goodbye (its sockets close).
    pub fn kill(self) {
        self.task.abort();
    }

    /// Waits for the bot to end by itself and returns its outcome.
    pub async fn finished(self) -> Result<BotReport, BotError> {
        match self.task.await {
            Ok(r) => r,
            Err(_) => Err(BotError::Disconnected),
        }
    }
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> anyhow::Result<()> {
    ws.send(Message::text(msg.to_json())).await?;
    Ok(())
}

/// What the signaling reader passes on.
enum Incoming {
    Msg(aparte_proto::ServerMsg),
    Unparsable(String),
    Closed,
}

/// Reads the WebSocket in its own task, so the bot's loop waits on a channel
/// instead of polling the socket on every datagram (tungstenite zero-fills its
/// read buffer on each poll).
async fn read_signaling(mut rx: futures_util::stream::SplitStream<Ws>, tx: mpsc::Sender<Incoming>) {
    loop {
        let incoming = match rx.next().await {
            Some(Ok(Message::Text(text))) => match parse_server_msg(&text) {
                Ok(m) => Incoming::Msg(m),
                Err(e) => Incoming::Unparsable(e.to_string()),
            },
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Incoming::Closed,
            Some(Ok(_)) => continue,
        };
        let end = !matches!(incoming, Incoming::Msg(_));
        if tx.send(incoming).await.is_err() || end {
            return;
        }
    }
}

async fn run(
    core: BotCore,
    ws: Ws,
    udp: UdpSocket,
    cmd: mpsc::Receiver<Cmd>,
) -> Result<BotReport, BotError> {
    let (ws_tx, ws_rx) = ws.split();
    let (in_tx, in_rx) = mpsc::channel(64);
    let reader = tokio::spawn(read_signaling(ws_rx, in_tx));
    let result = drive(core, ws_tx, in_rx, udp, cmd).await;
    reader.abort();
    result
}

async fn drive(
    mut core: BotCore,
    mut ws: futures_util::stream::SplitSink<Ws, Message>,
    mut signals: mpsc::Receiver<Incoming>,
    udp: UdpSocket,
    mut cmd: mpsc::Receiver<Cmd>,
) -> Result<BotReport, BotError> {
    let mut buf = vec![0u8; 2048];
    let stubborn = core.config().stubborn;
    let mut signaling = true;
    let timer = tokio::time::sleep_until(tokio::time::Instant::from_std(core.poll_timeout()));
    tokio::pin!(timer);
    loop {
        while let Some(out) = core.poll_output() {
            match out {
                BotOutput::Transmit {
                    destination,
                    contents,
                } => {
                    let _ = udp.send_to(&contents, destination).await;
                }
                BotOutput::Signal(msg) => {
                    if ws.send(Message::text(msg.to_json())).await.is_err() {
                        return Err(BotError::Disconnected);
                    }
                }
            }
        }
        let wake = tokio::time::Instant::from_std(core.poll_timeout());
        if timer.deadline() != wake {
            timer.as_mut().reset(wake);
        }
        tokio::select! {
            incoming = signals.recv(), if signaling => match incoming {
                // A server error ends the bot: it reports what it was told.
                Some(Incoming::Msg(msg)) => core.handle_signal(Instant::now(), msg)?,
                Some(Incoming::Unparsable(e)) => return Err(BotError::Offer(e)),
                // A stubborn bot goes on with its media alone.
                Some(Incoming::Closed) | None if stubborn => signaling = false,
                Some(Incoming::Closed) | None => return Err(BotError::Disconnected),
            },
            r = udp.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    core.handle_datagram(Instant::now(), from, &buf[..n])?;
                }
            }
            () = &mut timer => {
                core.handle_timeout(Instant::now())?;
            }
            c = cmd.recv() => match c {
                Some(Cmd::Report(tx)) => { let _ = tx.send(core.report()); }
                Some(Cmd::Chat(text, tx)) => { let _ = tx.send(core.send_chat(&text)); }
                Some(Cmd::Signal(msg)) => core.send_signal(msg),
                Some(Cmd::Keyframe(peer, source, tx)) => {
                    let _ = tx.send(core.request_keyframe(peer, source));
                }
                Some(Cmd::Leave) | None => {
                    let _ = ws.send(Message::text(ClientMsg::Leave.to_json())).await;
                    let _ = ws.close().await;
                    return Ok(core.report());
                }
            }
        }
    }
}
