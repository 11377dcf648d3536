//! `aparte-server`: parse the configuration, start serving, stop on Ctrl-C.

#![forbid(unsafe_code)]

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = aparte_server::Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("APARTE_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let server = aparte_server::start(config).await?;
    // Printed whatever the log level: it is the operator's next step.
    println!(
        "Aparté is ready: open {} in a browser (media on UDP {})",
        display_url(server.http_addr),
        server.media_addr
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("stopping"),
        _ = server.wait() => {}
    }
    Ok(())
}

fn display_url(addr: std::net::SocketAddr) -> String {
    if addr.ip().is_loopback() || addr.ip().is_unspecified() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}
