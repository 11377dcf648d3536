//! Token buckets: per connection (signaling messages) and per key (join
//! attempts per address, wrong passcodes per room and per address).
//!
//! Addresses are kept only in memory, only as long as their bucket is not
//! full again, and never logged.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One token bucket.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens.
    pub fn full(burst: f64, now: Instant) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Refills at `rate` tokens per second up to `burst`, then takes one if
    /// there is one.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * rate >= burst
    }
}

/// Token buckets by key, each refilling `per_period` tokens per `period`.
#[derive(Debug)]
pub struct RateLimiter<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

/// Keys tracked before full buckets are swept out.
const SWEEP_AT: usize = 4096;

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// `per_period` events per `period`, in bursts of up to `per_period`.
    pub fn new(per_period: u32, period: Duration) -> Self {
        let burst = f64::from(per_period.max(1));
        RateLimiter {
            rate: burst / period.as_secs_f64(),
            burst,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may act now (and counts it).
    pub fn allow(&self, key: &K, now: Instant) -> bool {
        let Ok(mut map) = self.buckets.lock() else {
            return false;
        };
        if map.len() >= SWEEP_AT {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, b| !b.is_full(now, rate, burst));
        }
        map.entry(key.clone())
            .or_insert_with(|| Bucket::full(self.burst, now))
            .take(now, self.rate, self.burst)
    }

    /// Whether `key` has a token left, without taking it.
    pub fn would_allow(&self, key: &K, now: Instant) -> bool {
        let Ok(mut map) = self.buckets.lock() else {
            return false;
        };
        match map.get_mut(key) {
            None => true,
            Some(b) => {
                let mut probe = *b;
                probe.take(now, self.rate, self.burst)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refills() {
        let l = RateLimiter::new(3, Duration::from_secs(60));
        let t = Instant::now();
        assert!(l.allow(&1, t) && l.allow(&1, t) && l.allow(&1, t));
        assert!(!l.allow(&1, t));
        assert!(l.allow(&2, t), "keys are separate");
        assert!(!l.would_allow(&1, t + Duration::from_secs(10)));
        assert!(l.allow(&1, t + Duration::from_secs(21)));
    }
}
