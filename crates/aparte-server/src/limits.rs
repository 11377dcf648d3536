//! Token buckets: per connection (signaling messages and bytes, with the
//! flood rule that closes a connection) and per key (join attempts per
//! network, passcode guesses per room and per network), and the network an
//! address counts for.
//!
//! Addresses are kept only in memory, only as long as their bucket is not
//! full again, and never logged.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The network a client address counts for in every per-address limit: the
/// address itself for IPv4, its /64 for IPv6 (one subscriber usually holds a
/// whole /64, so per-address limits on full IPv6 addresses are no limits).
/// An IPv4-mapped IPv6 address counts as its IPv4 address.
pub fn network_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// What [`Flow::admit`] decides about one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the connection's rate: handle it.
    Pass,
    /// Over the rate: drop it (and tell the client, at most once a second).
    Drop,
    /// Over the rate for long enough to be a flood: close the connection.
    Close,
}

/// Flow control of one connection's incoming messages: a bucket of messages
/// (every frame counts, pings and pongs included) and a bucket of bytes. A
/// message over either is dropped. Dropped messages add to an excess that
/// drains at the message rate; a client that keeps sending at more than
/// twice its rate fills it and is closed: throttling alone would let it keep
/// a core busy reading what is thrown away.
#[derive(Debug, Clone)]
pub struct Flow {
    rate: f64,
    byte_rate: f64,
    msgs: Bucket,
    bytes: Bucket,
    excess: f64,
    last: Instant,
}

impl Flow {
    /// `rate` messages and `byte_rate` bytes per second, in bursts of twice
    /// that.
    pub fn new(rate: u32, byte_rate: u32, now: Instant) -> Self {
        let (rate, byte_rate) = (f64::from(rate.max(1)), f64::from(byte_rate.max(1)));
        Flow {
            rate,
            byte_rate,
            msgs: Bucket::full(rate * 2.0, now),
            bytes: Bucket::full(byte_rate * 2.0, now),
            excess: 0.0,
            last: now,
        }
    }

    /// Counts one message of `len` bytes.
    pub fn admit(&mut self, now: Instant, len: usize) -> Verdict {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.excess = (self.excess - dt * self.rate).max(0.0);
        let ok = self.msgs.take_n(now, self.rate, self.rate * 2.0, 1.0)
            && self
                .bytes
                .take_n(now, self.byte_rate, self.byte_rate * 2.0, len as f64);
        if ok {
            return Verdict::Pass;
        }
        self.excess += 1.0;
        if self.excess > self.rate * 2.0 {
            Verdict::Close
        } else {
            Verdict::Drop
        }
    }
}

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
        self.take_n(now, rate, burst, 1.0)
    }

    /// Refills at `rate` tokens per second up to `burst`, then takes `n` if
    /// there are that many.
    pub fn take_n(&mut self, now: Instant, rate: f64, burst: f64, n: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= n {
            self.tokens -= n;
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

    /// Gives back a token taken by [`RateLimiter::allow`] (an attempt that
    /// turned out not to count, such as the right passcode).
    pub fn refund(&self, key: &K) {
        if let Ok(mut map) = self.buckets.lock() {
            if let Some(b) = map.get_mut(key) {
                b.tokens = (b.tokens + 1.0).min(self.burst);
            }
        }
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
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(network_of(a), network_of(b));
        assert_ne!(network_of(a), network_of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(
            network_of(mapped),
            "192.0.2.7".parse::<IpAddr>().expect("ip")
        );
        let v4: IpAddr = "192.0.2.8".parse().expect("ip");
        assert_eq!(network_of(v4), v4);
    }

    #[test]
    fn a_flood_is_dropped_then_closed_a_fast_client_only_dropped() {
        let t = Instant::now();
        let mut flood = Flow::new(10, 1_000_000, t);
        let verdicts: Vec<Verdict> = (0..100).map(|_| flood.admit(t, 10)).collect();
        assert!(verdicts[..20].iter().all(|v| *v == Verdict::Pass));
        assert_eq!(verdicts[20], Verdict::Drop);
        assert_eq!(verdicts.last(), Some(&Verdict::Close));
        // 15 messages a second against a rate of 10: some dropped, never closed.
        let mut fast = Flow::new(10, 1_000_000, t);
        let mut dropped = 0;
        for i in 0..(15 * 60) {
            let now = t + Duration::from_millis(i * 1000 / 15);
            match fast.admit(now, 10) {
                Verdict::Pass => {}
                Verdict::Drop => dropped += 1,
                Verdict::Close => panic!("closed at message {i}"),
            }
        }
        assert!(dropped > 200, "{dropped}");
        // Bytes count too.
        let mut big = Flow::new(1000, 1000, t);
        assert_eq!(big.admit(t, 1500), Verdict::Pass);
        assert_eq!(big.admit(t, 1500), Verdict::Drop);
    }

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
