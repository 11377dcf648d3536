//! `aparte-server`: read the configuration, start serving, stop on Ctrl-C.

#![forbid(unsafe_code)]

use aparte_server::config::LogFormat;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = aparte_server::Config::load()?;
    let filter = EnvFilter::try_new(&config.log)
        .map_err(|e| anyhow::anyhow!("the log filter {:?} is not valid: {e}", config.log))?
        .and(aparte_server::LOG_CAP.iter().fold(
            Targets::new().with_default(aparte_server::DEPENDENCY_LOG_CAP),
            |t, target| t.with_target(*target, LevelFilter::TRACE),
        ));
    let layer = match config.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer().boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
    };
    tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .init();
    let server = aparte_server::start(config).await?;
    // Printed whatever the log level: it is the operator's next step.
    let tcp = if server.media_tcp_addrs.is_empty() {
        String::new()
    } else {
        format!(", TCP {}", media_ports(&server.media_tcp_addrs))
    };
    println!(
        "Aparté is ready: open {} in a browser (media on UDP {}{tcp})",
        display_url(server.http_addr, server.tls),
        media_ports(&server.media_addrs)
    );
    if let Some(f) = &server.self_signed_fingerprint {
        println!("Self-signed TLS certificate, SHA-256 fingerprint {f}");
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
        _ = server.wait() => {}
    }
    Ok(())
}

/// `127.0.0.1:10000`, or `127.0.0.1:10000-10001` for consecutive ports.
fn media_ports(addrs: &[std::net::SocketAddr]) -> String {
    let (Some(first), Some(last)) = (addrs.first(), addrs.last()) else {
        return String::from("-");
    };
    let consecutive = addrs
        .windows(2)
        .all(|w| w[0].ip() == w[1].ip() && w[1].port() == w[0].port() + 1);
    if addrs.len() == 1 {
        first.to_string()
    } else if consecutive {
        format!("{first}-{}", last.port())
    } else {
        addrs
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn display_url(addr: std::net::SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("{scheme}://localhost:{}", addr.port())
    } else {
        format!("{scheme}://{addr}")
    }
}
