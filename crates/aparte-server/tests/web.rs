//! The hardened web surface of the real server: security headers on every
//! route, no inline script, a WebSocket refused from another origin, and TLS
//! both from certificate files and self-signed (pinned by its fingerprint),
//! with HSTS and WebSocket signaling over it.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use aparte_server::Config;
use aparte_server::config::Tls;
use common::*;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::rustls;

/// One HTTP/1.1 GET over `stream`: (status, lowercase headers, body).
async fn get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A TLS peer may close without close_notify: what was read counts.
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The headers every response must carry, whatever the route.
fn assert_hardened(path: &str, headers: &[(String, String)], tls: bool) {
    let csp =
        header(headers, "content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
    for part in [
        "default-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(part), "{path}: CSP lacks {part}: {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
    assert!(!csp.contains("'unsafe-eval'"), "{path}: {csp}");
    assert_eq!(
        header(headers, "referrer-policy"),
        Some("no-referrer"),
        "{path}"
    );
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{path}"
    );
    let pp = header(headers, "permissions-policy").unwrap_or_else(|| panic!("{path}"));
    assert!(pp.contains("geolocation=()"), "{path}: {pp}");
    let hsts = header(headers, "strict-transport-security");
    if tls {
        assert!(
            hsts.is_some_and(|v| v.contains("max-age=")),
            "{path}: no HSTS over TLS"
        );
    } else {
        assert_eq!(hsts, None, "{path}: HSTS over plain HTTP means nothing");
    }
}

const ROUTES: &[(&str, u16)] = &[
    ("/", 200),
    ("/m/AAAAAAAAAAAAAAAA", 200),
    ("/privacy", 200),
    ("/js/app.js", 200),
    ("/css/app.css", 200),
    ("/wasm/aparte_e2ee_wasm_bg.wasm", 200),
    ("/no/such/file", 404),
    // Not a WebSocket handshake.
    ("/ws", 400),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_carries_the_security_headers() {
    let server = server().await;
    let host = server.http_addr.to_string();
    for &(path, status) in ROUTES {
        let tcp = tokio::net::TcpStream::connect(server.http_addr)
            .await
            .unwrap();
        let (got, headers, body) = get(tcp, &host, path).await;
        assert_eq!(got, status, "{path}");
        assert_hardened(path, &headers, false);
        if path == "/" {
            // No inline script or handler anywhere in the page: the CSP would
            // block it, and the page must not need it.
            let page = String::from_utf8(body).unwrap();
            for tag in page.split("<script").skip(1) {
                let open = &tag[..tag.find('>').unwrap()];
                assert!(open.contains("src="), "inline script: <script{open}>");
                assert!(tag[tag.find('>').unwrap() + 1..].starts_with("</script>"));
            }
            assert!(!page.contains(" onclick="), "inline handler");
            assert!(!page.contains("javascript:"));
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_origin_websocket_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let server = server().await;
    let attempt = |origin: Option<String>| {
        let mut req = server.ws_url().into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Ok(_) => 101,
        Err(e) => panic!("the handshake failed otherwise: {e}"),
    };
    assert_eq!(
        status(attempt(Some("http://evil.example".into())).await),
        403
    );
    // A look-alike of the server's own origin is another origin: refused by
    // the Origin check itself (403), not by a failure of some other kind.
    let port = server.http_addr.port();
    let lookalike = format!("http://127.0.0.1.evil.example:{port}");
    assert_eq!(status(attempt(Some(lookalike)).await), 403);
    let other_port = format!("http://127.0.0.1:{}", port.wrapping_add(1));
    assert_eq!(status(attempt(Some(other_port)).await), 403);
    // The page's own origin, and clients that send none (bots), pass.
    let own = format!("http://{}", server.http_addr);
    assert!(attempt(Some(own)).await.is_ok());
    assert!(attempt(None).await.is_ok());
    server.stop().await;
}

/// Accepts exactly the certificate whose SHA-256 is `pin` (for the test's
/// self-signed certificates; a browser would ask its user instead).
#[derive(Debug)]
struct Pinned {
    pin: Vec<u8>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if Sha256::digest(end_entity.as_ref()).as_slice() == self.pin.as_slice() {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "certificate does not match the pin".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

async fn tls_connect(
    server: &aparte_server::ServerHandle,
    pin: Vec<u8>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned { pin, provider }))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// HTTPS with HSTS on every route, and signaling over wss.
async fn check_tls(server: aparte_server::ServerHandle, pin: Vec<u8>) {
    assert!(server.tls);
    assert!(server.ws_url().starts_with("wss://"));
    let host = format!("localhost:{}", server.http_addr.port());
    for &(path, status) in ROUTES {
        let tls = tls_connect(&server, pin.clone()).await;
        let (got, headers, _) = get(tls, &host, path).await;
        assert_eq!(got, status, "{path}");
        assert_hardened(path, &headers, true);
    }
    let tls = tls_connect(&server, pin.clone()).await;
    let url = format!("wss://{host}/ws");
    let (mut ws, _) = tokio_tungstenite::client_async(url, tls).await.unwrap();
    use futures_util::{SinkExt, StreamExt};
    ws.send(tokio_tungstenite::tungstenite::Message::text(
        r#"{"v":1,"type":"leave"}"#,
    ))
    .await
    .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        answer.to_text().unwrap().contains("not_joined"),
        "{answer:?}"
    );
    // A wrong pin is refused: the client really checks what it was given.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            pin: vec![0; 32],
            provider,
        }))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.http_addr)
        .await
        .unwrap();
    assert!(
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .is_err()
    );
    server.stop().await;
}

fn unhex(s: &str) -> Vec<u8> {
    s.split(':')
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_self_signed() {
    let mut c = Config::ephemeral();
    c.tls = Tls::SelfSigned;
    let server = aparte_server::start(c).await.unwrap();
    let pin = unhex(server.self_signed_fingerprint.as_deref().unwrap());
    check_tls(server, pin).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_from_certificate_files() {
    let dir = std::env::temp_dir().join(format!("aparte-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    let mut c = Config::ephemeral();
    c.tls = Tls::Files { cert, key };
    let server = aparte_server::start(c).await.unwrap();
    assert_eq!(server.self_signed_fingerprint, None);
    let pin = Sha256::digest(made.cert.der()).to_vec();
    check_tls(server, pin).await;
    let _ = std::fs::remove_dir_all(dir);
}
