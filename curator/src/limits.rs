//! Per-client rate limiting of the writes.
//!
//! A token bucket per client address: `per_minute` tokens refill evenly over a
//! minute, up to `burst`; each write (`POST /v1/slots`, `/v1/bindings`, a
//! reveal, a release, a revocation) takes one. (The cap on a client's
//! requests in progress is `mazu_service::http::PerClient`.) IPv6 clients are keyed by their /64 prefix (one host usually
//! owns a whole /64, so per-address buckets would be trivial to evade). The
//! table is pruned of idle (full) buckets when it grows, so memory stays
//! bounded by the number of recently active clients.
//!
//! The global limits (body size, concurrency, load shedding, timeout) are
//! tower layers assembled in [`crate::api::app`].

use core::net::IpAddr;
use core::time::Duration;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use mazu_service::http::client_key;

/// Prune idle buckets when the table holds more than this many clients.
const PRUNE_THRESHOLD: usize = 10_000;

/// A per-client token bucket limiter.
#[derive(Debug)]
pub struct RateLimiter {
    /// Tokens added per second.
    rate: f64,
    /// Bucket size.
    burst: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    /// A limiter allowing `per_minute` requests per minute per client with
    /// bursts of `burst`. `per_minute == 0` disables limiting.
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(per_minute) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether limiting is on.
    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Takes a token for `client` at `now`, or says how long until one is
    /// available.
    pub fn check(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        let key = client_key(client);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() > PRUNE_THRESHOLD {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| b.refilled(now, rate, burst) < burst);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.tokens = bucket.refilled(now, self.rate, self.burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.rate;
            Err(Duration::from_secs_f64(wait))
        }
    }
}

impl Bucket {
    fn refilled(&self, now: Instant, rate: f64, burst: f64) -> f64 {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        (self.tokens + elapsed * rate).min(burst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_the_rate() {
        let limiter = RateLimiter::new(60, 3);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check(ip, t0).unwrap();
        }
        let wait = limiter.check(ip, t0).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::from_millis(900));
        // Another client is unaffected.
        limiter.check("10.0.0.2".parse().unwrap(), t0).unwrap();
        // One second later one more token is there, not two.
        let t1 = t0 + Duration::from_secs(1);
        limiter.check(ip, t1).unwrap();
        assert!(limiter.check(ip, t1).is_err());
    }

    #[test]
    fn ipv6_keyed_by_prefix() {
        let limiter = RateLimiter::new(60, 1);
        let t0 = Instant::now();
        limiter.check("2001:db8::1".parse().unwrap(), t0).unwrap();
        assert!(limiter.check("2001:db8::2".parse().unwrap(), t0).is_err());
        limiter
            .check("2001:db8:0:1::1".parse().unwrap(), t0)
            .unwrap();
        // v4-mapped v6 is the v4 address.
        limiter.check("10.1.1.1".parse().unwrap(), t0).unwrap();
        assert!(
            limiter
                .check("::ffff:10.1.1.1".parse().unwrap(), t0)
                .is_err()
        );
    }

    #[test]
    fn zero_disables() {
        let limiter = RateLimiter::new(0, 1);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..100 {
            limiter.check(ip, Instant::now()).unwrap();
        }
    }

    #[test]
    fn table_is_pruned() {
        let limiter = RateLimiter::new(600, 1);
        let t0 = Instant::now();
        for i in 0..(PRUNE_THRESHOLD as u32 + 10) {
            limiter.check(IpAddr::from(i.to_be_bytes()), t0).unwrap();
        }
        // Much later every bucket is full again, and the next check prunes.
        limiter
            .check("1.2.3.4".parse().unwrap(), t0 + Duration::from_secs(60))
            .unwrap();
        assert!(limiter.buckets.lock().unwrap().len() < 10);
    }
}
