//! Per-credential token buckets (an API key's, a user's) kept in this process.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use uuid::Uuid;

/// The outcome of taking one token, with what the `RateLimit-*` headers report.
#[derive(Clone, Copy, Debug)]
pub struct RateDecision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the bucket is full again (or, when refused, until one token is back).
    pub reset_secs: u64,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets, one per API key or user: capacity = the per-minute limit, refilled evenly.
#[derive(Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<Uuid, Bucket>>,
}

impl RateLimiter {
    /// Takes one token from `key`'s bucket if there is one.
    pub fn check(&self, key: Uuid, per_minute: u32) -> RateDecision {
        self.check_at(key, per_minute, Instant::now())
    }

    fn check_at(&self, key: Uuid, per_minute: u32, now: Instant) -> RateDecision {
        let capacity = f64::from(per_minute.max(1));
        let per_second = capacity / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        let allowed = bucket.tokens >= 1.0;
        if allowed {
            bucket.tokens -= 1.0;
        }
        let reset = if allowed {
            (capacity - bucket.tokens) / per_second
        } else {
            (1.0 - bucket.tokens) / per_second
        };
        RateDecision {
            allowed,
            limit: per_minute,
            remaining: bucket.tokens.floor() as u32,
            reset_secs: Duration::from_secs_f64(reset.max(0.0)).as_secs_f64().ceil() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_capacity_and_refills_over_time() {
        let limiter = RateLimiter::default();
        let key = Uuid::now_v7();
        let start = Instant::now();
        for i in 0..3 {
            let d = limiter.check_at(key, 3, start);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 2 - i);
        }
        let refused = limiter.check_at(key, 3, start);
        assert!(!refused.allowed);
        assert_eq!(refused.reset_secs, 20, "one token per 20 s at 3/min");
        assert!(
            limiter
                .check_at(key, 3, start + Duration::from_secs(20))
                .allowed
        );
        assert!(
            !limiter
                .check_at(key, 3, start + Duration::from_secs(20))
                .allowed
        );
    }

    #[test]
    fn keys_have_separate_buckets() {
        let limiter = RateLimiter::default();
        let now = Instant::now();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        assert!(limiter.check_at(a, 1, now).allowed);
        assert!(!limiter.check_at(a, 1, now).allowed);
        assert!(limiter.check_at(b, 1, now).allowed);
    }
}
