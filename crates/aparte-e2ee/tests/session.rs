//! Sessions driven message by message in the order the delivery service
//! produces, including the interleavings a loaded server really produces:
//! a fallback committer winning the epoch while the first committer's verdict
//! is still on its way.

#![allow(clippy::unwrap_used)]

use aparte_e2ee::{FALLBACK_COMMIT_MS, LinkSecret, Session, SessionEvent, SessionOut};

const ROOM: &str = "room-under-test";

fn session(id: u64) -> Session {
    Session::new(id, LinkSecret::from_bytes([7; 16]), 1000, ROOM).unwrap()
}

fn key_package(s: &mut Session) -> Vec<u8> {
    s.start(0, false).unwrap();
    match s.poll_output() {
        Some(SessionOut::KeyPackage(kp)) => kp,
        other => panic!("expected a key package, got {other:?}"),
    }
}

struct Staged {
    epoch: u64,
    message: Vec<u8>,
    welcome: Option<Vec<u8>>,
}

fn commit_out(s: &mut Session) -> Option<Staged> {
    loop {
        match s.poll_output()? {
            SessionOut::Commit {
                epoch,
                message,
                welcome,
                ..
            } => {
                return Some(Staged {
                    epoch,
                    message,
                    welcome,
                });
            }
            SessionOut::App { .. } | SessionOut::KeyPackage(_) => {}
        }
    }
}

fn refusals(s: &mut Session) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(e) = s.poll_event() {
        if let SessionEvent::Refused { reason, .. } = e {
            out.push(reason);
        }
    }
    out
}

/// A (1) creates the group and adds B (2).
fn a_and_b() -> (Session, Session) {
    let mut a = session(1);
    a.start(0, true).unwrap();
    let mut b = session(2);
    let kp_b = key_package(&mut b);
    a.join_request(0, 2, kp_b);
    let first = commit_out(&mut a).unwrap();
    a.commit_result(0, first.epoch, true);
    b.welcome(0, &first.welcome.unwrap()).unwrap();
    same_group(&[&a, &b]);
    (a, b)
}

/// C (3) asks to join the group of A (1) and B (2), at 10 ms: A commits,
/// B follows, C is welcomed.
fn add_c(a: &mut Session, b: &mut Session) -> Session {
    let mut c = session(3);
    let kp_c = key_package(&mut c);
    a.join_request(10, 3, kp_c.clone());
    b.join_request(10, 3, kp_c);
    let commit = commit_out(a).unwrap();
    a.commit_result(10, commit.epoch, true);
    b.commit(10, 1, &commit.message);
    c.welcome(10, &commit.welcome.unwrap()).unwrap();
    c
}

fn same_group(all: &[&Session]) {
    let first = all[0];
    for s in all {
        assert_eq!(s.epoch(), first.epoch(), "epochs differ");
        assert_eq!(
            s.security_code(),
            first.security_code(),
            "same epoch, different keys: the group forked"
        );
    }
}

/// The first committer (A) loses epoch 1 to the fallback committer (B),
/// processes B's commit, stages its next commit for epoch 2 — and only then
/// gets the refusal of its epoch-1 commit. That stale refusal must not drop the
/// epoch-2 commit the service is about to accept, or A re-stages a different
/// one and applies *that* when the acceptance arrives: a fork at epoch 3.
#[test]
fn a_stale_refusal_does_not_touch_the_next_commit() {
    let (mut a, mut b) = a_and_b();

    // C asks to join: A (rank 0) commits at once, B (rank 1) after its delay.
    let mut c = session(3);
    let kp_c = key_package(&mut c);
    a.join_request(10, 3, kp_c.clone());
    let lost = commit_out(&mut a).unwrap();
    b.join_request(10, 3, kp_c);
    assert!(commit_out(&mut b).is_none());
    b.handle_timeout(10 + FALLBACK_COMMIT_MS);
    let won = commit_out(&mut b).unwrap();
    assert_eq!(lost.epoch, won.epoch);

    // The service took B's first: B's verdict, the commit to A, the Welcome to C.
    b.commit_result(3000, won.epoch, true);
    a.commit(3000, 2, &won.message);
    c.welcome(3000, &won.welcome.unwrap()).unwrap();
    same_group(&[&a, &b, &c]);

    // D asks to join; A stages a commit for the next epoch before the
    // refusal of its lost commit reaches it.
    let mut d = session(4);
    let kp_d = key_package(&mut d);
    a.join_request(3010, 4, kp_d.clone());
    b.join_request(3010, 4, kp_d.clone());
    c.join_request(3010, 4, kp_d);
    let next = commit_out(&mut a).unwrap();
    a.commit_result(3020, lost.epoch, false);
    assert!(
        commit_out(&mut a).is_none(),
        "a stale refusal made A stage another commit"
    );

    // The service accepts A's commit for the next epoch.
    a.commit_result(3030, next.epoch, true);
    b.commit(3030, 1, &next.message);
    c.commit(3030, 1, &next.message);
    d.welcome(3030, &next.welcome.unwrap()).unwrap();
    for s in [&mut a, &mut b, &mut c, &mut d] {
        assert_eq!(refusals(s), Vec::<String>::new());
    }
    same_group(&[&a, &b, &c, &d]);
    assert_eq!(a.members(), vec![1, 2, 3, 4]);
}

/// A verdict for a commit a member does not hold is reported, never applied.
#[test]
fn an_acceptance_for_an_unknown_commit_is_refused() {
    let mut a = session(1);
    a.start(0, true).unwrap();
    let before = a.security_code();
    a.commit_result(0, 0, true);
    assert_eq!(refusals(&mut a).len(), 1);
    assert_eq!(a.epoch(), Some(0));
    assert_eq!(a.security_code(), before);
}

fn joined_of_last_epoch(s: &mut Session) -> Option<Vec<u64>> {
    let mut last = None;
    while let Some(e) = s.poll_event() {
        if let SessionEvent::Epoch { joined, .. } = e {
            last = Some(joined);
        }
    }
    last
}

/// Each epoch event names who is new to this member: everyone else in its
/// first epoch, then only those added since, and nobody after a removal.
#[test]
fn epochs_say_who_joined_since_the_last() {
    let mut a = session(1);
    a.start(0, true).unwrap();
    assert_eq!(joined_of_last_epoch(&mut a), Some(vec![]));
    let mut b = session(2);
    let kp_b = key_package(&mut b);
    a.join_request(0, 2, kp_b);
    let c1 = commit_out(&mut a).unwrap();
    a.commit_result(0, c1.epoch, true);
    b.welcome(0, &c1.welcome.unwrap()).unwrap();
    assert_eq!(joined_of_last_epoch(&mut a), Some(vec![2]));
    assert_eq!(joined_of_last_epoch(&mut b), Some(vec![1]));

    let mut c = add_c(&mut a, &mut b);
    assert_eq!(joined_of_last_epoch(&mut a), Some(vec![3]));
    assert_eq!(joined_of_last_epoch(&mut b), Some(vec![3]));
    let mut first = joined_of_last_epoch(&mut c).unwrap();
    first.sort_unstable();
    assert_eq!(first, vec![1, 2]);

    // B leaves: a new epoch nobody needs to be told about.
    a.peer_left(20, 2);
    c.peer_left(20, 2);
    let c3 = commit_out(&mut a).unwrap();
    a.commit_result(20, c3.epoch, true);
    c.commit(20, 1, &c3.message);
    assert_eq!(joined_of_last_epoch(&mut a), Some(vec![]));
    assert_eq!(joined_of_last_epoch(&mut c), Some(vec![]));
    same_group(&[&a, &c]);
}

/// A host removes C; the server (played here) hides it: C stays connected,
/// and nobody is told that C left. The remover commits the removal itself at
/// once, though it is not the member whose turn it is: after that commit,
/// nothing the others seal opens for C.
#[test]
fn the_remover_commits_a_removal_the_server_hides() {
    use aparte_e2ee::{FrameError, MediaKind};
    let (mut a, mut b) = a_and_b();
    let mut c = add_c(&mut a, &mut b);
    same_group(&[&a, &b, &c]);

    // B (rank 1: not first to commit) removes C; no peer_left ever comes.
    b.remove(20, 3);
    let removal = commit_out(&mut b).expect("the remover commits at once");
    b.commit_result(20, removal.epoch, true);
    a.commit(20, 2, &removal.message);
    same_group(&[&a, &b]);
    assert_eq!(a.members(), vec![1, 2]);
    // C never got the commit: what A and B seal now does not open for it.
    let frame = [0xfc, 1, 2, 3];
    for (s, from) in [(&mut a, 1), (&mut b, 2)] {
        let sealed = s.media().seal(MediaKind::Audio, &frame).unwrap();
        assert_eq!(
            c.media().open(1020, MediaKind::Audio, from, &sealed),
            Err(FrameError::NoKey)
        );
    }
}
