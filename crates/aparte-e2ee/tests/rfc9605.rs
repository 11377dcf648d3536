//! RFC 9605 Appendix C test vectors for the AES-GCM suites, through the same
//! sframe calls the crate makes: §4.4.2's key and salt from a base key and key
//! id, encryption with metadata, decryption. How the base key and key id come
//! from the MLS group (§5.2) is our code, tested against the RFC's recipe in
//! `media::tests::media_keys_follow_rfc9605_section_5_2`.

#![allow(clippy::unwrap_used)]

use sframe::CipherSuite;
use sframe::frame::{EncryptedFrame, MediaFrame, SingleUseCounter};
use sframe::key::{DecryptionKey, EncryptionKey};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn sframe_vectors() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/rfc9605-sframe.json"
    ))
    .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = doc["sframe"].as_array().unwrap();
    assert_eq!(vectors.len(), 2);
    for v in vectors {
        let suite = match v["cipher_suite"].as_u64().unwrap() {
            4 => CipherSuite::AesGcm128Sha256,
            5 => CipherSuite::AesGcm256Sha512,
            other => panic!("unexpected suite {other}"),
        };
        let kid = v["kid"].as_u64().unwrap();
        let ctr = v["ctr"].as_u64().unwrap();
        let base_key = hex(v["base_key"].as_str().unwrap());
        let metadata = hex(v["metadata"].as_str().unwrap());
        let pt = hex(v["pt"].as_str().unwrap());
        let ct = hex(v["ct"].as_str().unwrap());

        let enc = EncryptionKey::derive_from(suite, kid, &base_key).unwrap();
        let mut counter = SingleUseCounter::new(ctr);
        let frame = MediaFrame::try_with_meta_data(&mut counter, &pt, &metadata).unwrap();
        let sealed = frame.encrypt(&enc).unwrap();
        assert_eq!(
            &sealed.as_ref()[metadata.len()..],
            ct.as_slice(),
            "suite {suite:?} ciphertext"
        );

        let dec = DecryptionKey::derive_from(suite, kid, &base_key).unwrap();
        let opened = EncryptedFrame::try_with_meta_data(&ct, &metadata)
            .unwrap()
            .decrypt(&dec)
            .unwrap();
        assert_eq!(opened.payload(), pt.as_slice());

        // One flipped bit anywhere in the ciphertext or metadata is refused.
        let mut bad = ct.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(
            EncryptedFrame::try_with_meta_data(&bad, &metadata)
                .unwrap()
                .decrypt(&dec)
                .is_err()
        );
        let mut bad_meta = metadata.clone();
        bad_meta[0] ^= 1;
        assert!(
            EncryptedFrame::try_with_meta_data(&ct, &bad_meta)
                .unwrap()
                .decrypt(&dec)
                .is_err()
        );
    }
}
