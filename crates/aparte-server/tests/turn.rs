//! The TURN configuration the docs give (deploy/turnserver.conf), on a real
//! coturn (Debian's `coturn` package): a client with valid credentials asks
//! it to relay to loopback, private, shared-address, link-local and cloud
//! metadata addresses and is refused each time (403 Forbidden IP), while a
//! peer the operator allows (the meeting server's media address) is
//! allowed, so the test would see a configuration that refused everything,
//! or nothing. And the Aparté server hands TURN credentials that coturn's
//! scheme accepts to admitted participants only.

#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const SECRET: &str = "test-secret-for-turn";
/// Stands for the Aparté server's public media address.
const MEDIA_ADDRESS: &str = "198.51.100.7";

fn conf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/turnserver.conf")
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// coturn with the documented configuration, on loopback (its TLS listener,
/// which needs a certificate, is off; what is tested is the relay policy).
fn turnserver(dir: &Path, port: u16) -> Child {
    let child = Command::new("turnserver")
        .arg("-c")
        .arg(conf())
        // The meeting server's media address, as an operator sets it.
        .args(["--allowed-peer-ip", MEDIA_ADDRESS])
        .args(["--listening-ip", "127.0.0.1", "--relay-ip", "127.0.0.1"])
        .args(["--listening-port", &port.to_string()])
        .args(["--no-tls", "--no-dtls", "--static-auth-secret", SECRET])
        .args(["--realm", "aparte.test", "--log-file", "stdout"])
        .arg("--pidfile")
        .arg(dir.join("turnserver.pid"))
        .arg("--userdb")
        .arg(dir.join("turndb"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnserver runs (apt-get install coturn)");
    std::thread::sleep(Duration::from_millis(800));
    child
}

/// What coturn's own test client reports when it asks to relay to `peer`.
fn relay_to(port: u16, peer: &str) -> String {
    let out = Command::new("timeout")
        .arg("3")
        .arg("turnutils_uclient")
        .args(["-W", SECRET, "-e", peer, "-r", "34790"])
        .args(["-p", &port.to_string(), "-n", "1", "-m", "1", "127.0.0.1"])
        .output()
        .expect("turnutils_uclient runs (apt-get install coturn)");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

#[test]
fn the_documented_coturn_relays_to_no_inside_address() {
    assert!(conf().exists(), "{} is missing", conf().display());
    let dir = std::env::temp_dir().join(format!("aparte-turn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        ("127.0.0.1", false),
        ("10.1.2.3", false),
        ("172.20.0.1", false),
        ("192.168.1.1", false),
        ("100.64.1.1", false),
        ("169.254.169.254", false),
        // Any other public address: the relay is for the meeting only.
        ("203.0.113.9", false),
        (MEDIA_ADDRESS, true),
    ];
    for (peer, allowed) in cases {
        // A fresh server per peer: allocations the client leaves behind
        // count against the per-user quota.
        let port = free_port();
        let mut server = turnserver(&dir, port);
        let out = relay_to(port, peer);
        let _ = server.kill();
        let _ = server.wait();
        let refused = out.contains("403 (Forbidden IP)");
        if allowed {
            assert!(
                !refused && out.contains("Total connect time"),
                "relaying to {peer} should be allowed:\n{out}"
            );
        } else {
            assert!(refused, "relaying to {peer} should be refused:\n{out}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn admitted_participants_get_turn_credentials_and_waiters_none() {
    use aparte_proto::ServerMsg;
    let mut config = aparte_server::Config::ephemeral();
    let url = "turns:turn.example.org:443?transport=tcp".to_owned();
    config.turn = Some(aparte_server::config::Turn {
        urls: vec![url.clone()],
        secret: SECRET.to_owned(),
    });
    let server = aparte_server::start(config).await.unwrap();
    let room = common::room("room-turn");
    let key = common::host_key(&room);
    let mut host = common::raw_ws(&server, common::LOOPBACK).await;
    let join = common::join_json(&room, &format!(r#","key":"{}""#, key.as_str()));
    common::send(&mut host, &join).await;
    let first = common::recv(&mut host, Duration::from_secs(5)).await;
    let Some(ServerMsg::IceServers { servers }) = first else {
        panic!("TURN servers come first: {first:?}");
    };
    assert_eq!(servers.len(), 1);
    assert_eq!(servers[0].urls, vec![url]);
    // A credential coturn accepts: HMAC-SHA1 of the username, which is the
    // expiry, 12 hours ahead, and names nobody.
    let (expiry, who) = servers[0].username.split_once(':').unwrap();
    let expiry: u64 = expiry.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!((now + 11 * 3600..=now + 12 * 3600 + 5).contains(&expiry));
    assert_eq!(who, "aparte");
    assert_eq!(
        servers[0].credential,
        aparte_server::turn::credential(SECRET, &servers[0].username)
    );
    assert!(matches!(
        common::recv(&mut host, Duration::from_secs(5)).await,
        Some(ServerMsg::Welcome { .. })
    ));
    // Someone in the lobby gets no credentials.
    let mut waiter = common::raw_ws(&server, common::LOOPBACK).await;
    common::send(&mut waiter, &common::join_json(&room, "")).await;
    let first = common::recv(&mut waiter, Duration::from_secs(5)).await;
    assert!(
        matches!(first, Some(ServerMsg::Waiting { .. })),
        "{first:?}"
    );
    assert!(
        common::recv(&mut waiter, Duration::from_millis(500))
            .await
            .is_none()
    );
}
