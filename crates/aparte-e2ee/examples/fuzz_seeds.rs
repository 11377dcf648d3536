//! Writes the seed inputs of the E2EE fuzz targets: real MLS messages (a key
//! package, a commit, a Welcome, an application message) for `mls_process`,
//! sealed audio and video frames for `sframe_open`, sealed lobby names for
//! `lobby_name`. The seeds are kept in the repository; run this again when a
//! format changes:
//!
//! ```text
//! cargo run -p aparte-e2ee --example fuzz_seeds -- fuzz/corpus
//! ```

use std::path::Path;

use aparte_e2ee::{LinkSecret, MediaKeys, MediaKind, Member};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus".into());
    let out = Path::new(&out);
    let write = |target: &str, name: &str, bytes: &[u8]| -> std::io::Result<()> {
        let dir = out.join(target);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(name), bytes)
    };

    // MLS: a group of two, then a third joins; a message to the group.
    let link = LinkSecret::from_bytes([4; 16]);
    let mut a = Member::new(1, link.clone(), 1000)?;
    a.create_group(0, b"seed-group")?;
    let mut b = Member::new(2, link.clone(), 1000)?;
    let req = b.join_request()?;
    write("mls_process", "key_package", &req.key_package)?;
    let kp = a.verify_join_request(2, &req)?;
    let commit = a.commit(vec![kp], &[])?;
    a.commit_accepted(10)?;
    write("mls_process", "commit", &commit.message)?;
    let welcome = commit.welcome.ok_or("a commit that adds has a Welcome")?;
    write("mls_process", "welcome", &welcome)?;
    b.process(10, &welcome)?;
    let app = a.seal_app(br#"{"t":"chat","text":"seed"}"#)?;
    write("mls_process", "application", &app)?;
    let removal = a.commit(Vec::new(), &[2])?;
    write("mls_process", "removal", &removal.message)?;

    // SFrame: the fuzz target's fixed key; first byte picks kind and mode.
    let mut keys = MediaKeys::fixed_for_benchmarks(&[6; 16])?;
    let vp8_key = [
        0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 7, 7, 7,
    ];
    let vp8_delta = [0x31, 0x00, 0x00, 5, 5, 5, 5];
    let opus = [0xfc, 0xff, 0xfe, 1, 2, 3];
    for (name, kind, frame) in [
        ("video_key", MediaKind::Video, &vp8_key[..]),
        ("video_delta", MediaKind::Video, &vp8_delta[..]),
        ("audio", MediaKind::Audio, &opus[..]),
    ] {
        let sealed = keys.seal(kind, frame)?;
        let mode = if kind == MediaKind::Video { 1u8 } else { 0 };
        write(
            "sframe_open",
            &format!("{name}_sealed"),
            &[&[mode][..], &sealed].concat(),
        )?;
        write(
            "sframe_open",
            &format!("{name}_plain"),
            &[&[mode | 2][..], frame].concat(),
        )?;
    }

    // Lobby names sealed with the fuzz target's link, for its room.
    let lobby = LinkSecret::from_bytes([8; 16]);
    for (i, name) in ["Amélie", "李雷", ""].iter().enumerate() {
        let sealed = lobby.seal_lobby_name("fuzz-room", 7, name, [i as u8; 12]);
        write("lobby_name", &format!("name_{i}"), sealed.as_bytes())?;
    }
    println!("seeds written under {}", out.display());
    Ok(())
}
