//! `Member::process` with arbitrary bytes as the delivery service would
//! relay them (a Welcome, a commit, an application message), to a member in
//! a group and to one waiting to join. Nothing may panic; a member in a
//! group stays in it (bytes from nobody cannot take it out), and a waiting
//! member joins nothing without a Welcome made for it with the link.

#![no_main]

use std::sync::Mutex;

use aparte_e2ee::{Incoming, LinkSecret, Member};
use libfuzzer_sys::fuzz_target;

struct Pair {
    inside: Member,
    outside: Member,
}

static PAIR: Mutex<Option<Pair>> = Mutex::new(None);

fn pair() -> Pair {
    let link = LinkSecret::from_bytes([4; 16]);
    let mut inside = Member::new(1, link.clone(), 1000).expect("member");
    inside.create_group(0, b"fuzz-group").expect("group");
    let outside = Member::new(2, link, 1000).expect("member");
    Pair { inside, outside }
}

fuzz_target!(|data: &[u8]| {
    let mut guard = PAIR.lock().unwrap_or_else(|e| e.into_inner());
    let p = guard.get_or_insert_with(pair);
    let epoch = p.inside.epoch();
    let _ = p.inside.process(1, data);
    assert!(p.inside.is_ready(), "still in its group");
    assert_eq!(p.inside.members(), vec![1], "nobody added by stray bytes");
    assert_eq!(p.inside.epoch(), epoch, "no epoch from stray bytes");
    if let Ok(Incoming::Joined { .. }) = p.outside.process(1, data) {
        panic!("joined a group from fuzzed bytes");
    }
});
