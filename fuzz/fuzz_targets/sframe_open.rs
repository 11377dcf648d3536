//! SFrame open with arbitrary frames and key ids: a receiver holding one
//! key opens fuzzed frames of either kind (the clear VP8 prefix is parsed
//! first). Nothing may panic; a frame sealed with the key opens (once) to
//! what was sealed, and the same frame altered at any byte is refused (as
//! forged, or as a replay when the counter is untouched).

#![no_main]

use std::sync::Mutex;

use aparte_e2ee::{MediaKeys, MediaKind};
use libfuzzer_sys::fuzz_target;

static KEYS: Mutex<Option<MediaKeys>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    let mut guard = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    let keys =
        guard.get_or_insert_with(|| MediaKeys::fixed_for_benchmarks(&[6; 16]).expect("fixed keys"));
    let Some((&first, frame)) = data.split_first() else {
        return;
    };
    let kind = if first & 1 == 0 {
        MediaKind::Audio
    } else {
        MediaKind::Video
    };
    if first & 2 == 0 {
        // Arbitrary bytes (the seeds are real sealed frames, which open).
        let _ = keys.open(0, kind, 0, frame);
    } else {
        // A frame sealed with the key, altered at one byte: refused unless
        // the byte is in the clear prefix that the SFU reads (authenticated
        // as associated data, so still refused).
        let Ok(mut sealed) = keys.seal(kind, frame) else {
            return;
        };
        assert_eq!(keys.open(0, kind, 0, &sealed).ok().as_deref(), Some(frame));
        if !sealed.is_empty() {
            let at = usize::from(first >> 2) % sealed.len();
            sealed[at] ^= 0x40;
            assert!(
                keys.open(0, kind, 0, &sealed).is_err(),
                "an altered frame opened"
            );
        }
    }
});
