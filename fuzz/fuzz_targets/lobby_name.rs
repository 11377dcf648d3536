//! The sealed lobby name, as a host's page opens it: arbitrary text (base64
//! or not) for a room. Nothing may panic; a name sealed with the link opens
//! to itself (cut at 256 bytes) for its room and waiter, and not for
//! another room or another waiter.

#![no_main]

use aparte_e2ee::LinkSecret;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let link = LinkSecret::from_bytes([8; 16]);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Arbitrary text (the seeds are real sealed names, which open).
    let _ = link.open_lobby_name("fuzz-room", 7, text);
    // A real name (the input itself) opens in its room only.
    let nonce = [data.len() as u8; 12];
    let sealed = link.seal_lobby_name("fuzz-room", 7, text, nonce);
    // Names are cut at 256 bytes, on a character boundary.
    let opened = link
        .open_lobby_name("fuzz-room", 7, &sealed)
        .expect("opens");
    assert!(text.starts_with(&opened) && opened.len() <= 256);
    if text.len() <= 256 {
        assert_eq!(opened, text);
    }
    assert_eq!(link.open_lobby_name("other-room", 7, &sealed), None);
    assert_eq!(
        link.open_lobby_name("fuzz-room", 8, &sealed),
        None,
        "another waiter's"
    );
});
