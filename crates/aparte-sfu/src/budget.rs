//! Byte budgets: how much one participant may have the server copy to the
//! others. Every application message, key package and relay is copied to
//! every member, so a participant that sends large ones fast fills everyone
//! else's queue; the budget stops it at the source, with `rate_limited`, long
//! before any honest receiver counts as too slow. Commits have a budget of
//! their own, larger: a commit adding many members carries their key
//! packages, and its Welcome the whole ratchet tree.

use std::time::Instant;

/// Application messages, key packages and relays: bytes per second.
pub const APP_RATE: f64 = 64.0 * 1024.0;
/// Application messages, key packages and relays: largest burst, in bytes.
pub const APP_BURST: f64 = 256.0 * 1024.0;
/// Commits and their Welcomes: bytes per second.
pub const COMMIT_RATE: f64 = 512.0 * 1024.0;
/// Commits and their Welcomes: largest burst, in bytes (a few commits
/// adding a crowd to a large group).
pub const COMMIT_BURST: f64 = 4.0 * 1024.0 * 1024.0;

/// The budgets of one participant.
#[derive(Debug, Clone)]
pub(crate) struct Budget {
    app: Tokens,
    commit: Tokens,
}

#[derive(Debug, Clone, Copy)]
struct Tokens {
    tokens: f64,
    last: Instant,
}

impl Tokens {
    fn take(&mut self, now: Instant, rate: f64, burst: f64, n: usize) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        let n = n as f64;
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

impl Budget {
    /// Full budgets.
    pub fn new(now: Instant) -> Self {
        Budget {
            app: Tokens {
                tokens: APP_BURST,
                last: now,
            },
            commit: Tokens {
                tokens: COMMIT_BURST,
                last: now,
            },
        }
    }

    /// Spends `bytes` of the application budget, if there are that many.
    pub fn app(&mut self, now: Instant, bytes: usize) -> bool {
        self.app.take(now, APP_RATE, APP_BURST, bytes)
    }

    /// Spends `bytes` of the commit budget, if there are that many.
    pub fn commit(&mut self, now: Instant, bytes: usize) -> bool {
        self.commit.take(now, COMMIT_RATE, COMMIT_BURST, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_the_rate() {
        let t = Instant::now();
        let mut b = Budget::new(t);
        assert!(b.app(t, APP_BURST as usize));
        assert!(!b.app(t, 1), "spent");
        assert!(b.commit(t, 1000), "separate budgets");
        let later = t + Duration::from_secs(1);
        assert!(b.app(later, APP_RATE as usize));
        assert!(!b.app(later, 1024));
    }
}
