//! TLS with rustls: a certificate chain and key from PEM files, or a
//! self-signed certificate for a LAN, made once and kept in the data
//! directory so that its fingerprint stays the same across restarts.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::config::{Config, Tls};

/// File names of the self-signed certificate in the data directory: the
/// certificate, its key (0600), and the names it was made for.
const SELF_CERT: &str = "tls-self-signed.pem";
const SELF_KEY: &str = "tls-self-signed.key";
const SELF_NAMES: &str = "tls-self-signed.names";

/// What the HTTP server needs to speak TLS.
#[derive(Debug)]
pub struct Loaded {
    /// The rustls configuration (HTTP/1.1 only: signaling is a WebSocket).
    pub config: Arc<rustls::ServerConfig>,
    /// SHA-256 fingerprint (hex, colon-separated) of a self-signed certificate.
    pub fingerprint: Option<String>,
}

/// Loads or makes the certificate the configuration asks for.
pub fn load(config: &Config, listen: SocketAddr) -> anyhow::Result<Option<Loaded>> {
    let (chain, key, fingerprint) = match &config.tls {
        Tls::Off => return Ok(None),
        Tls::Files { cert, key } => {
            let read =
                |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let (chain, key) = parse(&read(cert)?, &read(key)?).with_context(|| {
                format!(
                    "loading the TLS certificate {} and key {}",
                    cert.display(),
                    key.display()
                )
            })?;
            (chain, key, None)
        }
        Tls::SelfSigned => {
            let (chain, key) = self_signed(config, listen)?;
            let fingerprint = chain.first().map(|c| {
                Sha256::digest(c.as_ref())
                    .iter()
                    .map(|b| format!("{b:02X}"))
                    .collect::<Vec<_>>()
                    .join(":")
            });
            (chain, key, fingerprint)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not go together")?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Loaded {
        config: Arc::new(server),
        fingerprint,
    }))
}

fn parse(
    cert: &[u8],
    key: &[u8],
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate file is not PEM")?;
    anyhow::ensure!(
        !chain.is_empty(),
        "the certificate file holds no certificate"
    );
    let key = PrivateKeyDer::from_pem_slice(key).context("the key file holds no private key")?;
    Ok((chain, key))
}

/// The self-signed certificate in the data directory, made (or made again,
/// when the names it must cover changed) if needed.
fn self_signed(
    config: &Config,
    listen: SocketAddr,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let mut names = vec![String::from("localhost")];
    names.extend(config.public_names.iter().cloned());
    let ips = config
        .media_addresses
        .iter()
        .copied()
        .chain(std::iter::once(listen.ip()))
        .filter(|ip| !ip.is_unspecified())
        .map(|ip: IpAddr| ip.to_string());
    names.extend(ips);
    names.sort();
    names.dedup();
    let wanted = names.join("\n");

    let dir = &config.data_dir;
    let (cert_path, key_path, names_path) = (
        dir.join(SELF_CERT),
        dir.join(SELF_KEY),
        dir.join(SELF_NAMES),
    );
    let kept = std::fs::read_to_string(&names_path).ok();
    if kept.as_deref() == Some(wanted.as_str()) {
        if let (Ok(cert), Ok(key)) = (std::fs::read(&cert_path), std::fs::read(&key_path)) {
            return parse(&cert, &key).context("the kept self-signed certificate is unreadable");
        }
    }
    let made =
        rcgen::generate_simple_self_signed(names).context("making a self-signed certificate")?;
    let cert_pem = made.cert.pem();
    let key_pem = made.signing_key.serialize_pem();
    crate::storage::private_dir(dir)?;
    crate::storage::write_private(&key_path, key_pem.as_bytes())?;
    crate::storage::write_private(&cert_path, cert_pem.as_bytes())?;
    crate::storage::write_private(&names_path, wanted.as_bytes())?;
    parse(cert_pem.as_bytes(), key_pem.as_bytes())
}
