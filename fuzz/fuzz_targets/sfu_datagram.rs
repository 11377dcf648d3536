//! `Sfu::handle_datagram` with arbitrary datagrams from arbitrary addresses,
//! to a server with a room whose two participants are waiting for ICE: the
//! datagram is matched (or not) against their credentials and fed to str0m.
//! Nothing may panic, and nothing from an unvalidated address is forwarded.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aparte_proto::{Token, keys, room_for_host_key};
use aparte_sfu::{JoinRequest, Output, Sfu, SfuConfig};
use libfuzzer_sys::fuzz_target;

struct World {
    sfu: Sfu,
    start: Instant,
    local: SocketAddr,
}

static WORLD: Mutex<Option<World>> = Mutex::new(None);

fn world() -> World {
    let local = SocketAddr::from(([127, 0, 0, 1], 10000));
    let mut sfu = Sfu::new(SfuConfig::new(local));
    let start = Instant::now();
    let key: Token = keys::token_from_bytes([3; 32]);
    let room = room_for_host_key(&key);
    sfu.join(start, JoinRequest::new(room.clone()).with_key(key))
        .expect("the host opens its room");
    sfu.join(start, JoinRequest::new(room))
        .expect("a guest waits");
    while sfu.poll_output().is_some() {}
    World { sfu, start, local }
}

fuzz_target!(|data: &[u8]| {
    let mut guard = WORLD.lock().unwrap_or_else(|e| e.into_inner());
    let w = guard.get_or_insert_with(world);
    if data.len() < 4 {
        return;
    }
    // The first bytes pick the source address and the time.
    let source = match data[0] % 3 {
        0 => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, data[1])), 40000),
        1 => SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), u16::from(data[1]) << 8),
        _ => SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, data[1], 0, 1)), 5000),
    };
    let now = w.start + Duration::from_millis(u64::from(data[2]) * 10);
    w.sfu.handle_datagram(now, source, w.local, &data[3..]);
    while let Some(out) = w.sfu.poll_output() {
        if let Output::Transmit { destination, .. } = out {
            // Only ICE answers (to a binding request that carried a
            // participant's credentials) ever go back to a new address.
            let _ = destination;
        }
    }
    assert_eq!(w.sfu.stats().packets_out, 0, "no media forwarded");
});
