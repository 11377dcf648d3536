//! Hostile signaling: every bad message gets a typed error on its own socket,
//! and the participants of the room it joined are unaffected.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use aparte_proto::{ErrorCode, ServerMsg, TrackSource, parse_server_msg};
use common::{bots, eventually, frames, room, server};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Sends `msg` and returns the first error the server answers with, skipping
/// other messages (welcome, offers, peer events).
async fn error_for(ws: &mut Ws, msg: Message) -> ErrorCode {
    ws.send(msg).await.unwrap();
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("an answer within 5 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = m {
            if let ServerMsg::Error { code, .. } = parse_server_msg(&t).unwrap() {
                return code;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_message_gets_a_typed_error() {
    let server = server().await;
    let r = room("bad-input-room");
    let honest = bots(&server, &r, 2, 250_000, Instant::now()).await;
    let (a, b) = (&honest[0], &honest[1]);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url())
        .await
        .unwrap();
    let t = |s: &str| Message::text(s.to_owned());
    assert_eq!(
        error_for(&mut ws, t(r#"{"v":1,"type":"answer","sdp":"v=0"}"#)).await,
        ErrorCode::NotJoined
    );
    assert_eq!(
        error_for(&mut ws, t("{this is not json")).await,
        ErrorCode::BadMessage
    );
    assert_eq!(
        error_for(&mut ws, t(r#"{"v":1,"type":"teleport"}"#)).await,
        ErrorCode::UnknownType
    );
    assert_eq!(
        error_for(&mut ws, t(r#"{"v":9,"type":"leave"}"#)).await,
        ErrorCode::UnsupportedVersion
    );
    assert_eq!(
        error_for(&mut ws, t(r#"{"v":1,"type":"join","room":"../etc"}"#)).await,
        ErrorCode::InvalidField
    );
    let big = format!(
        r#"{{"v":1,"type":"answer","sdp":"{}"}}"#,
        "x".repeat(300_000)
    );
    assert_eq!(error_for(&mut ws, t(&big)).await, ErrorCode::TooLarge);
    assert_eq!(
        error_for(&mut ws, Message::binary(vec![1u8, 2, 3])).await,
        ErrorCode::BadMessage
    );

    // Join the honest bots' room, then misbehave inside it.
    ws.send(t(&format!(r#"{{"v":1,"type":"join","room":"{r}"}}"#)))
        .await
        .unwrap();
    assert_eq!(
        error_for(&mut ws, t(r#"{"v":1,"type":"answer","sdp":"garbage"}"#)).await,
        ErrorCode::InvalidSdp
    );
    assert_eq!(
        error_for(
            &mut ws,
            t(&format!(r#"{{"v":1,"type":"join","room":"{r}"}}"#))
        )
        .await,
        ErrorCode::AlreadyJoined
    );
    assert_eq!(
        error_for(
            &mut ws,
            t(r#"{"v":1,"type":"relay","to":123456,"payload":"x"}"#)
        )
        .await,
        ErrorCode::UnknownPeer
    );
    let big_relay = format!(
        r#"{{"v":1,"type":"relay","payload":"{}"}}"#,
        "x".repeat(20_000)
    );
    assert_eq!(error_for(&mut ws, t(&big_relay)).await, ErrorCode::TooLarge);

    // The honest bots never noticed.
    for (me, peer) in [(a, b), (b, a)] {
        let f = frames(me, peer.id(), TrackSource::Camera).await;
        assert!(
            eventually(Duration::from_secs(2), || async {
                frames(me, peer.id(), TrackSource::Camera).await > f + 15
            })
            .await,
            "media between honest bots keeps flowing"
        );
        let rep = me.report().await.unwrap();
        assert!(rep.all_intact());
        assert!(!me.is_finished());
    }

    // A message beyond the transport limit closes only that connection.
    let huge = "x".repeat(2 * 1024 * 1024);
    let _ = ws.send(t(&huge)).await;
    // Closed with "message too big" (1009), not left open or reset.
    let code = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("closed within 5 s");
    assert_eq!(
        code,
        Some(tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Size)
    );
    let f = frames(a, b.id(), TrackSource::Camera).await;
    assert!(
        eventually(Duration::from_secs(2), || async {
            frames(a, b.id(), TrackSource::Camera).await > f + 15
        })
        .await
    );
    server.stop().await;
}
