//! TLS with rustls: a certificate chain and key from PEM files, or a
//! self-signed certificate made at start for a LAN.

use std::net::SocketAddr;

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use sha2::{Digest, Sha256};

use crate::config::{Config, Tls};

/// What the HTTP server needs to speak TLS.
#[derive(Debug)]
pub struct Loaded {
    /// The rustls configuration.
    pub config: RustlsConfig,
    /// SHA-256 fingerprint (hex, colon-separated) of a self-signed certificate.
    pub fingerprint: Option<String>,
}

/// Loads or makes the certificate the configuration asks for.
pub async fn load(config: &Config, listen: SocketAddr) -> anyhow::Result<Option<Loaded>> {
    // One process-wide provider; a second install (tests start several
    // servers) is refused harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match &config.tls {
        Tls::Off => Ok(None),
        Tls::Files { cert, key } => {
            let rustls = RustlsConfig::from_pem_chain_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "loading the TLS certificate {} and key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            Ok(Some(Loaded {
                config: rustls,
                fingerprint: None,
            }))
        }
        Tls::SelfSigned => {
            let mut names = vec![String::from("localhost")];
            let ips = config
                .media_addresses
                .iter()
                .copied()
                .chain(std::iter::once(listen.ip()))
                .filter(|ip| !ip.is_unspecified());
            names.extend(ips.map(|ip| ip.to_string()));
            names.dedup();
            let made = rcgen::generate_simple_self_signed(names)
                .context("making a self-signed certificate")?;
            let der = made.cert.der().to_vec();
            let fingerprint = Sha256::digest(&der)
                .iter()
                .map(|b| format!("{b:02X}"))
                .collect::<Vec<_>>()
                .join(":");
            let rustls = RustlsConfig::from_pem(
                made.cert.pem().into_bytes(),
                made.signing_key.serialize_pem().into_bytes(),
            )
            .await
            .context("loading the self-signed certificate")?;
            Ok(Some(Loaded {
                config: rustls,
                fingerprint: Some(fingerprint),
            }))
        }
    }
}
