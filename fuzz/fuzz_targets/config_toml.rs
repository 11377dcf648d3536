//! The TOML configuration file: any text either gives a configuration that
//! passes the server's own checks, or a clear error. Nothing may panic.

#![no_main]

use aparte_server::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(c) = Config::from_toml(text) {
        assert!((1..=64).contains(&c.media_threads));
        assert!(c.max_participants >= 1 && c.max_connections >= 1);
        assert!(c.idle_timeout.as_secs() >= 1);
        for n in &c.public_names {
            assert!(!n.is_empty() && !n.contains(':') && !n.contains('/'));
        }
    }
});
