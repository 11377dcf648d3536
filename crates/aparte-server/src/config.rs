//! Server configuration, from (highest first) command-line flags, environment
//! variables (`APARTE_*`), a TOML file (`--config`), and the defaults below.
//! `aparte-server --help` lists every setting with its default.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use serde::Deserialize;

/// How client addresses may appear in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum AddressLogging {
    /// Never (the default).
    #[default]
    None,
    /// Truncated to the network: /24 for IPv4, /48 for IPv6.
    Truncated,
}

/// The shape of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable `key=value` lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Command-line flags. Every flag also reads an environment variable, and
/// every one may be set in the TOML file under the same name with `_` for `-`.
#[derive(Debug, Clone, Default, Parser, Deserialize)]
#[command(
    version,
    about = "Aparté: end-to-end encrypted video meetings on your own server.",
    after_help = "Settings come from flags, then APARTE_* environment variables, then the \
                  --config TOML file, then the defaults shown. See docs/operations.md."
)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub struct Args {
    /// TOML configuration file.
    #[arg(long, env = "APARTE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address for HTTP(S) and WebSocket signaling; 0.0.0.0:8443 serves a LAN.
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "APARTE_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Address of the first UDP media socket. Each media thread has its own
    /// port, this one and the next ones (10000, 10001, …; port 0: any).
    /// [default: 127.0.0.1:10000]
    #[arg(long, env = "APARTE_MEDIA_LISTEN")]
    pub media_listen: Option<SocketAddr>,

    /// Address of the first media TCP listener, for browsers on networks
    /// that block UDP (ICE-TCP, RFC 6544): one port per media thread, as
    /// for UDP (443 suits a LAN whose web server is elsewhere).
    /// [default: the media listen address, over TCP]
    #[arg(long, env = "APARTE_MEDIA_TCP_LISTEN")]
    pub media_tcp_listen: Option<SocketAddr>,

    /// Do not offer media over TCP.
    #[arg(long, env = "APARTE_NO_MEDIA_TCP")]
    #[serde(default)]
    pub no_media_tcp: bool,

    /// TURN server URLs given to browsers for networks that allow neither
    /// UDP nor TCP to the media ports (e.g. turns:turn.example.org:443?transport=tcp);
    /// repeat or comma-separate. Needs `turn_secret`. See docs/operations.md.
    #[arg(long = "turn-url", env = "APARTE_TURN_URL", value_delimiter = ',')]
    #[serde(default)]
    pub turn_url: Vec<String>,

    /// The secret shared with the TURN server (coturn's static-auth-secret):
    /// browsers get credentials made from it that expire after 12 hours.
    #[arg(long, env = "APARTE_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,

    /// Media threads (1 to 64): rooms are spread over them, a room stays on
    /// one. [default: the number of cores, at most 8]
    #[arg(long, env = "APARTE_MEDIA_THREADS")]
    pub media_threads: Option<usize>,

    /// Address browsers send media to (ICE host candidate); repeat or
    /// comma-separate for several. [default: the media listen address, or
    /// 127.0.0.1 when that is 0.0.0.0]
    #[arg(
        long = "media-address",
        env = "APARTE_MEDIA_ADDRESS",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub media_address: Vec<IpAddr>,

    /// Most participants in one room (1 to 500). [default: 100]
    #[arg(long, env = "APARTE_MAX_PARTICIPANTS")]
    pub max_participants: Option<usize>,

    /// Most tracks one participant publishes at once (1 to 4: microphone,
    /// camera, screen, screen audio). [default: 4]
    #[arg(long, env = "APARTE_MAX_TRACKS")]
    pub max_tracks: Option<usize>,

    /// Most people waiting in one room's lobby. [default: 50]
    #[arg(long, env = "APARTE_MAX_LOBBY")]
    pub max_lobby: Option<usize>,

    /// Most people from one network (an IPv4 address, an IPv6 /64) waiting
    /// in one room's lobby; raise it where many join through one NAT.
    /// [default: 10]
    #[arg(long, env = "APARTE_MAX_LOBBY_PER_ADDRESS")]
    pub max_lobby_per_address: Option<usize>,

    /// Most open connections (HTTP and WebSocket) at once. [default: 4096]
    #[arg(long, env = "APARTE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Most open connections from one network (an IPv4 address, an IPv6
    /// /64). [default: 64]
    #[arg(long, env = "APARTE_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,

    /// Seconds a connection may stay idle: to send its HTTP headers, to
    /// finish a TLS handshake, to join after opening a WebSocket, between
    /// two HTTP requests. A WebSocket silent for three times this (not even
    /// answering pings) is closed. [default: 20]
    #[arg(long, env = "APARTE_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,

    /// Most persistent rooms the server keeps. [default: 10000]
    #[arg(long, env = "APARTE_MAX_PERSISTENT_ROOMS")]
    pub max_persistent_rooms: Option<usize>,

    /// Host names this server answers to (the Host header), e.g.
    /// meet.example.org; repeat or comma-separate. localhost and IP
    /// addresses are always accepted. Any other name is refused, which
    /// stops DNS-rebinding attacks.
    #[arg(
        long = "public-name",
        env = "APARTE_PUBLIC_NAME",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub public_name: Vec<String>,

    /// Join attempts allowed per client address per minute. [default: 60]
    #[arg(long, env = "APARTE_JOIN_RATE")]
    pub join_rate: Option<u32>,

    /// Signaling messages allowed per connection per second (bursts of
    /// twice that pass). [default: 50]
    #[arg(long, env = "APARTE_MESSAGE_RATE")]
    pub message_rate: Option<u32>,

    /// Wrong passcodes allowed per room, and per client address, per minute.
    /// [default: 5]
    #[arg(long, env = "APARTE_PASSCODE_RATE")]
    pub passcode_rate: Option<u32>,

    /// Where persistent rooms' settings are stored (SQLite). Nothing is
    /// written there until a host makes a room persistent.
    /// [default: ./aparte-data]
    #[arg(long, env = "APARTE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// Days a persistent room is kept after its last meeting. [default: 90]
    #[arg(long, env = "APARTE_RETENTION_DAYS")]
    pub retention_days: Option<u32>,

    /// TLS certificate chain (PEM). With --tls-key, serves HTTPS.
    #[arg(long, env = "APARTE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM).
    #[arg(long, env = "APARTE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS with a self-signed certificate made at start (for a LAN;
    /// browsers warn once). Its SHA-256 fingerprint is printed.
    #[arg(long, env = "APARTE_TLS_SELF_SIGNED")]
    #[serde(default)]
    pub tls_self_signed: bool,

    /// Origins besides the server's own allowed to open the signaling
    /// WebSocket (e.g. https://meet.example.org behind a proxy).
    #[arg(
        long = "allowed-origin",
        env = "APARTE_ALLOWED_ORIGIN",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub allowed_origin: Vec<String>,

    /// Whether client addresses appear in logs. [default: none]
    #[arg(long, env = "APARTE_LOG_ADDRESSES", value_enum)]
    pub log_addresses: Option<AddressLogging>,

    /// Log line format. [default: text]
    #[arg(long, env = "APARTE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter (tracing syntax, e.g. "info" or "aparte_sfu=debug").
    /// [default: info]
    #[arg(long, env = "APARTE_LOG")]
    pub log: Option<String>,
}

impl Args {
    /// Settings from a TOML file's text; unknown keys are refused.
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

/// TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain HTTP (fine on localhost; browsers elsewhere need HTTPS for
    /// cameras).
    Off,
    /// Certificate chain and key from PEM files.
    Files {
        /// Certificate chain.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
    /// A certificate made at start.
    SelfSigned,
}

/// The resolved configuration.
/// A TURN relay browsers are given credentials for.
#[derive(Clone)]
pub struct Turn {
    /// `turn:`/`turns:` URLs.
    pub urls: Vec<String>,
    /// The secret shared with the TURN server (never printed).
    pub secret: String,
}

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("urls", &self.urls)
            .field("secret", &"…")
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    /// HTTP(S) and WebSocket address.
    pub listen: SocketAddr,
    /// UDP media address of the first media thread.
    pub media_listen: SocketAddr,
    /// TCP media address of the first media thread (`None`: media over UDP
    /// only).
    pub media_tcp_listen: Option<SocketAddr>,
    /// TURN URLs and the secret their credentials are made with.
    pub turn: Option<Turn>,
    /// Media threads, each with its own port.
    pub media_threads: usize,
    /// ICE host candidate addresses (empty: derived from `media_listen`).
    pub media_addresses: Vec<IpAddr>,
    /// Participants per room.
    pub max_participants: usize,
    /// Published tracks per participant.
    pub max_tracks: usize,
    /// Lobby size per room.
    pub max_lobby: usize,
    /// Lobby places per network per room.
    pub max_lobby_per_address: usize,
    /// Open connections, server-wide.
    pub max_connections: usize,
    /// Open connections per network.
    pub max_connections_per_address: usize,
    /// How long a connection may stay idle (see `Args::idle_timeout`).
    pub idle_timeout: std::time::Duration,
    /// Persistent rooms, server-wide.
    pub max_persistent_rooms: usize,
    /// Host names besides localhost and IP addresses (lowercase, no port).
    pub public_names: Vec<String>,
    /// Joins per address per minute.
    pub join_rate: u32,
    /// Messages per connection per second.
    pub message_rate: u32,
    /// Wrong passcodes per room and per address per minute.
    pub passcode_rate: u32,
    /// Where persistent rooms are stored.
    pub data_dir: PathBuf,
    /// Days persistent rooms are kept after their last use.
    pub retention_days: u32,
    /// TLS.
    pub tls: Tls,
    /// Extra WebSocket origins.
    pub allowed_origins: Vec<String>,
    /// Addresses in logs.
    pub log_addresses: AddressLogging,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter.
    pub log: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            media_listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 10000)),
            media_tcp_listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 10000))),
            turn: None,
            media_threads: std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
            media_addresses: Vec::new(),
            max_participants: aparte_proto::DEFAULT_PARTICIPANTS_PER_ROOM,
            max_tracks: aparte_proto::TrackSource::ALL.len(),
            max_lobby: 50,
            max_lobby_per_address: 10,
            max_connections: 4096,
            max_connections_per_address: 64,
            idle_timeout: std::time::Duration::from_secs(20),
            max_persistent_rooms: 10_000,
            public_names: Vec::new(),
            join_rate: 60,
            message_rate: 50,
            passcode_rate: 5,
            data_dir: PathBuf::from("aparte-data"),
            retention_days: 90,
            tls: Tls::Off,
            allowed_origins: Vec::new(),
            log_addresses: AddressLogging::None,
            log_format: LogFormat::Text,
            log: String::from("info"),
        }
    }
}

impl Config {
    /// Reads flags, environment and the TOML file they name.
    pub fn load() -> anyhow::Result<Self> {
        let args = Args::parse();
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading {}", path.display()))?;
                Args::from_toml(&text).with_context(|| format!("parsing {}", path.display()))?
            }
            None => Args::default(),
        };
        Self::merge(args, file)
    }

    /// The configuration a TOML file alone gives (over the defaults).
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Self::merge(Args::default(), Args::from_toml(text)?)
    }

    /// `args` over `file` over the defaults.
    pub fn merge(args: Args, file: Args) -> anyhow::Result<Self> {
        let d = Config::default();
        let tls = match (
            args.tls_cert.or(file.tls_cert),
            args.tls_key.or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Tls::Files { cert, key },
            (None, None) if args.tls_self_signed || file.tls_self_signed => Tls::SelfSigned,
            (None, None) => Tls::Off,
            _ => anyhow::bail!("tls_cert and tls_key go together"),
        };
        let media_listen = args
            .media_listen
            .or(file.media_listen)
            .unwrap_or(d.media_listen);
        let media_tcp_listen = if args.no_media_tcp || file.no_media_tcp {
            None
        } else {
            Some(
                args.media_tcp_listen
                    .or(file.media_tcp_listen)
                    .unwrap_or(media_listen),
            )
        };
        let turn_urls = pick_vec(args.turn_url, file.turn_url);
        let turn = match (turn_urls.is_empty(), args.turn_secret.or(file.turn_secret)) {
            (true, None) => None,
            (false, Some(secret)) => Some(Turn {
                urls: turn_urls,
                secret,
            }),
            _ => anyhow::bail!("turn_url and turn_secret go together"),
        };
        let config = Config {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            media_listen,
            media_tcp_listen,
            turn,
            media_threads: args
                .media_threads
                .or(file.media_threads)
                .unwrap_or(d.media_threads),
            media_addresses: pick_vec(args.media_address, file.media_address),
            max_participants: args
                .max_participants
                .or(file.max_participants)
                .unwrap_or(d.max_participants),
            max_tracks: args.max_tracks.or(file.max_tracks).unwrap_or(d.max_tracks),
            max_lobby: args.max_lobby.or(file.max_lobby).unwrap_or(d.max_lobby),
            max_lobby_per_address: args
                .max_lobby_per_address
                .or(file.max_lobby_per_address)
                .unwrap_or(d.max_lobby_per_address),
            max_connections: args
                .max_connections
                .or(file.max_connections)
                .unwrap_or(d.max_connections),
            max_connections_per_address: args
                .max_connections_per_address
                .or(file.max_connections_per_address)
                .unwrap_or(d.max_connections_per_address),
            idle_timeout: args
                .idle_timeout
                .or(file.idle_timeout)
                .map_or(d.idle_timeout, std::time::Duration::from_secs),
            max_persistent_rooms: args
                .max_persistent_rooms
                .or(file.max_persistent_rooms)
                .unwrap_or(d.max_persistent_rooms),
            public_names: pick_vec(args.public_name, file.public_name)
                .into_iter()
                .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
                .collect(),
            join_rate: args.join_rate.or(file.join_rate).unwrap_or(d.join_rate),
            message_rate: args
                .message_rate
                .or(file.message_rate)
                .unwrap_or(d.message_rate),
            passcode_rate: args
                .passcode_rate
                .or(file.passcode_rate)
                .unwrap_or(d.passcode_rate),
            data_dir: args.data_dir.or(file.data_dir).unwrap_or(d.data_dir),
            retention_days: args
                .retention_days
                .or(file.retention_days)
                .unwrap_or(d.retention_days),
            tls,
            allowed_origins: pick_vec(args.allowed_origin, file.allowed_origin),
            log_addresses: args
                .log_addresses
                .or(file.log_addresses)
                .unwrap_or(d.log_addresses),
            log_format: args.log_format.or(file.log_format).unwrap_or(d.log_format),
            log: args.log.or(file.log).unwrap_or(d.log),
        };
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=aparte_proto::MAX_PARTICIPANTS_PER_ROOM).contains(&self.max_participants),
            "max_participants is 1 to {}",
            aparte_proto::MAX_PARTICIPANTS_PER_ROOM
        );
        anyhow::ensure!(
            (1..=64).contains(&self.media_threads),
            "media_threads is 1 to 64"
        );
        anyhow::ensure!(
            self.media_listen.port() == 0
                || usize::from(self.media_listen.port()) + self.media_threads <= 65536,
            "media_listen's port plus media_threads passes 65535"
        );
        anyhow::ensure!(
            self.media_tcp_listen.is_none_or(
                |t| t.port() == 0 || usize::from(t.port()) + self.media_threads <= 65536
            ),
            "media_tcp_listen's port plus media_threads passes 65535"
        );
        anyhow::ensure!(
            (1..=aparte_proto::TrackSource::ALL.len()).contains(&self.max_tracks),
            "max_tracks is 1 to 4"
        );
        anyhow::ensure!(
            self.join_rate > 0 && self.message_rate > 0 && self.passcode_rate > 0,
            "rates are at least 1"
        );
        anyhow::ensure!(
            self.max_lobby_per_address >= 1
                && self.max_connections >= 1
                && self.max_connections_per_address >= 1,
            "connection and lobby limits are at least 1"
        );
        anyhow::ensure!(
            (1..=3600).contains(&self.idle_timeout.as_secs()),
            "idle_timeout is 1 to 3600 seconds"
        );
        for n in &self.public_names {
            anyhow::ensure!(
                !n.is_empty()
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
                "public name {n:?} is not a host name (no scheme, no port)"
            );
        }
        if let Some(Turn { urls, secret }) = &self.turn {
            for u in urls {
                anyhow::ensure!(
                    u.starts_with("turn:") || u.starts_with("turns:"),
                    "TURN URL {u:?} does not start with turn: or turns:"
                );
            }
            anyhow::ensure!(secret.len() >= 16, "turn_secret is at least 16 characters");
        }
        for o in &self.allowed_origins {
            anyhow::ensure!(
                o.starts_with("https://") || o.starts_with("http://"),
                "allowed origin {o:?} is not http(s)://host[:port]"
            );
        }
        Ok(())
    }

    /// A configuration for tests: everything on loopback, ephemeral ports,
    /// a fresh data directory under the system's temporary directory.
    pub fn ephemeral() -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let n = N.fetch_add(1, Ordering::Relaxed);
        Config {
            listen: SocketAddr::new(lo, 0),
            media_listen: SocketAddr::new(lo, 0),
            media_tcp_listen: Some(SocketAddr::new(lo, 0)),
            data_dir: std::env::temp_dir().join(format!("aparte-test-{}-{n}", std::process::id())),
            ..Config::default()
        }
    }

    /// The ICE host candidates for a media socket bound at `bound`.
    pub fn media_candidates(&self, bound: SocketAddr) -> Vec<SocketAddr> {
        if !self.media_addresses.is_empty() {
            return self
                .media_addresses
                .iter()
                .map(|&ip| SocketAddr::new(ip, bound.port()))
                .collect();
        }
        let ip = if bound.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            bound.ip()
        };
        vec![SocketAddr::new(ip, bound.port())]
    }

    /// How a client address is written in logs under this configuration.
    pub fn show_address(&self, ip: IpAddr) -> String {
        match self.log_addresses {
            AddressLogging::None => String::from("-"),
            AddressLogging::Truncated => match ip {
                IpAddr::V4(v4) => {
                    let [a, b, c, _] = v4.octets();
                    format!("{a}.{b}.{c}.0/24")
                }
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}::/48", s[0], s[1], s[2])
                }
            },
        }
    }
}

/// The flag's list when given, else the file's.
fn pick_vec<T>(args: Vec<T>, file: Vec<T>) -> Vec<T> {
    if args.is_empty() { file } else { args }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_turn_secret_is_never_printed() {
        let t = Turn {
            urls: vec!["turns:turn.example.org:443".into()],
            secret: "do-not-print-this-secret".into(),
        };
        let shown = format!("{t:?}");
        assert!(shown.contains("turn.example.org"));
        assert!(!shown.contains("do-not-print"));
    }

    use super::*;

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file: Args = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nmax_lobby = 7\nretention_days = 30\nlog_addresses = \"truncated\"\n",
        )
        .expect("valid TOML");
        let args = Args::parse_from(["aparte-server", "--max-lobby", "3"]);
        let c = Config::merge(args, file).expect("valid");
        assert_eq!(c.listen, "0.0.0.0:9000".parse().expect("addr"));
        assert_eq!(c.max_lobby, 3);
        assert_eq!(c.retention_days, 30);
        assert_eq!(c.max_participants, 100);
        assert_eq!(c.tls, Tls::Off);
        assert_eq!(
            c.show_address("192.168.7.42".parse().expect("ip")),
            "192.168.7.0/24"
        );
        assert_eq!(
            Config::default().show_address("10.1.2.3".parse().expect("ip")),
            "-"
        );
    }

    #[test]
    fn bad_files_and_values_are_refused() {
        assert!(toml::from_str::<Args>("listn = \"x\"").is_err());
        let args = Args::parse_from(["aparte-server", "--max-tracks", "9"]);
        assert!(Config::merge(args, Args::default()).is_err());
    }
}
