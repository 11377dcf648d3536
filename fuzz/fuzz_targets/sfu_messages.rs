//! Sequences of signaling from scripted clients into the SFU core: joins
//! (host, guests, lobby), any parsed client message from any of them, leaves
//! and the passing of time, in the order the input says. Nothing may panic,
//! and the core's own invariants hold after every step: nobody is both in a
//! room and in its lobby, and a freed room has nobody left in it.
//!
//! Input: lines. The first byte of a line is the operation, the second the
//! participant it concerns; the rest is a client message's JSON.

#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use aparte_proto::{ParticipantId, RoomId, Token, keys, parse_client_msg, room_for_host_key};
use aparte_sfu::{JoinRequest, Sfu, SfuConfig};
use libfuzzer_sys::fuzz_target;

fn rooms() -> [(RoomId, Token); 2] {
    [1u8, 2].map(|n| {
        let key: Token = keys::token_from_bytes([n; 32]);
        (room_for_host_key(&key), key)
    })
}

fuzz_target!(|data: &[u8]| {
    let local = SocketAddr::from(([127, 0, 0, 1], 10000));
    let mut config = SfuConfig::new(local);
    config.max_participants_per_room = 4;
    config.max_lobby = 3;
    config.max_lobby_per_network = 2;
    let mut sfu = Sfu::new(config);
    let mut now = Instant::now();
    let rooms = rooms();
    let mut ids: Vec<ParticipantId> = Vec::new();
    for line in data.split(|&b| b == b'\n').take(64) {
        let (Some(&op), Some(&who)) = (line.first(), line.get(1)) else {
            continue;
        };
        let pick = |ids: &[ParticipantId]| ids.get(usize::from(who) % ids.len().max(1)).copied();
        let (room, key) = &rooms[usize::from(who) % 2];
        match op % 6 {
            0 => {
                let mut req = JoinRequest::new(room.clone());
                if who & 4 != 0 {
                    req = req.with_key(key.clone());
                }
                if who & 8 != 0 {
                    req = req.from_network(std::net::IpAddr::from([192, 0, 2, who & 3]));
                }
                if let Ok(a) = sfu.join(now, req) {
                    ids.push(a.id());
                }
            }
            1 | 2 => {
                let (Some(id), Ok(text)) = (pick(&ids), std::str::from_utf8(&line[2..])) else {
                    continue;
                };
                if let Ok(msg) = parse_client_msg(text) {
                    sfu.handle_message(now, id, msg);
                }
            }
            3 => {
                if let Some(id) = pick(&ids) {
                    sfu.leave(now, id);
                }
            }
            4 => {
                now += Duration::from_millis(u64::from(who) * 100);
                sfu.handle_timeout(now);
            }
            _ => {
                // A message from an id the server never gave out.
                if let Ok(msg) = parse_client_msg(std::str::from_utf8(&line[2..]).unwrap_or("")) {
                    sfu.handle_message(now, ParticipantId(u64::from(who) + 7), msg);
                }
            }
        }
        while sfu.poll_output().is_some() {}
        for (room, _) in &rooms {
            let members = sfu.members(room);
            let lobby = sfu.lobby(room);
            assert!(members.iter().all(|m| !lobby.contains(m)));
            assert!(members.len() <= 4 && lobby.len() <= 3);
            if sfu.room_settings(room).is_none() {
                assert!(members.is_empty() && lobby.is_empty());
            }
        }
    }
});
