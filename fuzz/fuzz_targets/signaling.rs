//! The signaling parser against arbitrary input: it never panics, and what
//! it accepts survives a round trip (what the server would re-send is what
//! it understood). Server messages are parsed too: bots and tools read them.

#![no_main]

use aparte_proto::{parse_client_msg, parse_server_msg};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(msg) = parse_client_msg(text) {
        let again = parse_client_msg(&msg.to_json()).expect("a parsed message re-parses");
        assert_eq!(again, msg);
    }
    if let Ok(msg) = parse_server_msg(text) {
        let json = msg.to_json();
        assert_eq!(parse_server_msg(&json).ok(), Some(msg));
    }
});
