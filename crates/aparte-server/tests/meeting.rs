//! The real server on ephemeral ports with real bots: media flows within a
//! room, never across rooms, and stops both ways when a bot leaves.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use aparte_proto::TrackSource;
use common::{bots, eventually, frames, room, server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_at_once_and_a_leave() {
    let server = server().await;
    let epoch = Instant::now();
    let (ra, rb) = (room("integration-a"), room("integration-b"));
    let (a, b) = tokio::join!(
        bots(&server, &ra, 5, 250_000, epoch),
        bots(&server, &rb, 3, 250_000, epoch)
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    for (group, other) in [(&a, &b), (&b, &a)] {
        for me in group.iter() {
            let rep = me.report().await.unwrap();
            assert!(rep.all_intact(), "{rep:?}");
            for peer in group.iter().filter(|p| p.id() != me.id()) {
                for source in [TrackSource::Camera, TrackSource::Mic] {
                    let s = rep.stream(peer.id(), source).unwrap_or_else(|| {
                        panic!("{} got no {source:?} of {}", me.id(), peer.id())
                    });
                    assert!(s.frames >= 30, "{} of {}: {s:?}", me.id(), peer.id());
                    assert!(s.intact());
                }
            }
            for stranger in other.iter() {
                assert!(
                    rep.streams.iter().all(|s| s.peer != stranger.id()),
                    "{} received {} of another room",
                    me.id(),
                    stranger.id()
                );
            }
            assert_eq!(rep.streams.len(), 2 * (group.len() - 1));
        }
    }

    // One bot of room a leaves.
    let mut a = a;
    let leaver = a.pop().unwrap();
    let gone = leaver.id();
    let final_report = leaver.leave().await.unwrap();
    assert!(final_report.all_intact(), "{:?}", final_report.streams);
    let received_by_leaver: u64 = final_report.streams.iter().map(|s| s.frames).sum();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before: Vec<u64> =
        futures_util::future::join_all(a.iter().map(|b| frames(b, gone, TrackSource::Camera)))
            .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (bot, before) in a.iter().zip(before) {
        assert_eq!(
            frames(bot, gone, TrackSource::Camera).await,
            before,
            "frames of a bot that left"
        );
        // The remaining bots still exchange media.
        let peer = a.iter().find(|p| p.id() != bot.id()).unwrap().id();
        let f = frames(bot, peer, TrackSource::Camera).await;
        assert!(
            eventually(Duration::from_secs(2), || async {
                frames(bot, peer, TrackSource::Camera).await > f + 10
            })
            .await
        );
    }
    assert!(received_by_leaver > 0);

    for bot in a.into_iter().chain(b) {
        let report = bot.leave().await.unwrap();
        assert!(report.all_intact(), "{:?}", report.streams);
    }
    server.stop().await;
}

/// Rooms on different media threads: each thread has its own port, media
/// flows in each room, and participant ids never repeat across threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_spread_over_media_threads() {
    let config = aparte_server::Config {
        media_threads: 2,
        ..aparte_server::Config::ephemeral()
    };
    let server = aparte_server::start(config).await.unwrap();
    assert_eq!(server.media_addrs.len(), 2);
    assert_ne!(server.media_addrs[0].port(), server.media_addrs[1].port());
    // One room on each thread.
    let mut on = [None, None];
    for i in 0.. {
        let r = room(&format!("threads-{i}"));
        let t = aparte_server::media_thread_of(&r, 2);
        on[t].get_or_insert(r);
        if on.iter().all(Option::is_some) {
            break;
        }
    }
    let [Some(r0), Some(r1)] = on else {
        unreachable!()
    };
    let epoch = Instant::now();
    let (a, b) = tokio::join!(
        bots(&server, &r0, 3, 250_000, epoch),
        bots(&server, &r1, 3, 250_000, epoch)
    );
    let mut ids: Vec<_> = a.iter().chain(&b).map(|b| b.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6, "participant ids repeat across media threads");
    for group in [&a, &b] {
        for me in group.iter() {
            for peer in group.iter().filter(|p| p.id() != me.id()) {
                let f = frames(me, peer.id(), TrackSource::Camera).await;
                assert!(
                    eventually(Duration::from_secs(10), || async {
                        frames(me, peer.id(), TrackSource::Camera).await > f + 30
                    })
                    .await,
                    "{} gets no video of {}",
                    me.id(),
                    peer.id()
                );
            }
        }
    }
    for bot in a.into_iter().chain(b) {
        let report = bot.leave().await.unwrap();
        assert!(report.all_intact(), "{:?}", report.streams);
    }
    server.stop().await;
}
