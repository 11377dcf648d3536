//! Server configuration: command-line flags, each with an environment variable.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use clap::Parser;

/// Aparté: end-to-end encrypted video meetings on your own server.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
pub struct Config {
    /// Address for HTTP and WebSocket signaling. Use 0.0.0.0:8080 to serve a LAN.
    #[arg(long, env = "APARTE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the UDP media socket (one port for every participant).
    #[arg(long, env = "APARTE_MEDIA_LISTEN", default_value = "127.0.0.1:10000")]
    pub media_listen: SocketAddr,

    /// Address browsers are told to send media to (ICE host candidate). Repeat
    /// for several. Defaults to the media listen address, or 127.0.0.1 when
    /// that is unspecified (0.0.0.0).
    #[arg(
        long = "media-address",
        env = "APARTE_MEDIA_ADDRESS",
        value_delimiter = ','
    )]
    pub media_addresses: Vec<IpAddr>,

    /// Most participants in one room.
    #[arg(long, env = "APARTE_MAX_PARTICIPANTS", default_value_t = aparte_proto::MAX_PARTICIPANTS_PER_ROOM)]
    pub max_participants: usize,
}

impl Config {
    /// A configuration for tests: everything on loopback, ephemeral ports.
    pub fn ephemeral() -> Self {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Config {
            listen: SocketAddr::new(lo, 0),
            media_listen: SocketAddr::new(lo, 0),
            media_addresses: Vec::new(),
            max_participants: aparte_proto::MAX_PARTICIPANTS_PER_ROOM,
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
}
