//! Slows down password guessing, per account and per client address, in this process.
//!
//! After `limit` failures within the window, each further failure locks the account (or
//! address) for a delay that doubles, from one second up to the window: an attacker
//! gets a handful of guesses per quarter hour while a user who mistyped waits seconds.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

const FIRST_LOCK: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Failures {
    count: u32,
    first_at: Instant,
    locked_until: Option<Instant>,
    /// Set once the burst has been reported, so one attack raises one incident.
    reported: bool,
}

/// What the guard says about a failed attempt.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FailureVerdict {
    /// This failure completed a burst (the account's or the address's limit was reached):
    /// report a security incident.
    pub burst: bool,
}

/// Failure counters for accounts (lowercased emails) and addresses.
pub struct LoginGuard {
    per_account: u32,
    per_address: u32,
    window: Duration,
    accounts: Mutex<HashMap<String, Failures>>,
    addresses: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginGuard {
    /// A guard allowing `per_account` / `per_address` failures per `window` before locking.
    pub fn new(per_account: u32, per_address: u32, window: Duration) -> Self {
        Self {
            per_account: per_account.max(1),
            per_address: per_address.max(1),
            window,
            accounts: Mutex::default(),
            addresses: Mutex::default(),
        }
    }

    /// `Err(retry_after)` while the account or the address is locked.
    pub fn check(&self, email: &str, address: IpAddr) -> Result<(), Duration> {
        let address = network_of(address);
        let now = Instant::now();
        let wait_account = remaining_lock(&self.accounts, email, now, self.window);
        let wait_address = remaining_lock(&self.addresses, &address, now, self.window);
        match wait_account.max(wait_address) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a wrong password (or unknown account) for both the account and the address.
    pub fn record_failure(&self, email: &str, address: IpAddr) -> FailureVerdict {
        let address = network_of(address);
        let now = Instant::now();
        let account = add_failure(
            &self.accounts,
            email.to_owned(),
            self.per_account,
            now,
            self.window,
        );
        let address = add_failure(&self.addresses, address, self.per_address, now, self.window);
        FailureVerdict {
            burst: account || address,
        }
    }

    /// A correct password clears the account's failures (not the address's: an attacker
    /// could otherwise reset its counter with an account of its own).
    pub fn record_success(&self, email: &str) {
        lock(&self.accounts).remove(email);
    }
}

/// An IPv6 client controls its whole /64, so that is what counts as one address.
pub fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

fn lock<K>(map: &Mutex<HashMap<K, Failures>>) -> std::sync::MutexGuard<'_, HashMap<K, Failures>> {
    map.lock().unwrap_or_else(|e| e.into_inner())
}

fn remaining_lock<K, Q>(
    map: &Mutex<HashMap<K, Failures>>,
    key: &Q,
    now: Instant,
    window: Duration,
) -> Option<Duration>
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    let mut map = lock(map);
    let entry = map.get(key)?;
    if now.duration_since(entry.first_at) > window
        && entry.locked_until.is_none_or(|until| until <= now)
    {
        map.remove(key);
        return None;
    }
    entry
        .locked_until
        .filter(|until| *until > now)
        .map(|until| until - now)
}

/// Returns true when this failure reached the limit for the first time in the window.
fn add_failure<K: std::hash::Hash + Eq>(
    map: &Mutex<HashMap<K, Failures>>,
    key: K,
    limit: u32,
    now: Instant,
    window: Duration,
) -> bool {
    let mut map = lock(map);
    // Keep the table bounded under a spray of random emails: drop stale entries first.
    if map.len() > 100_000 {
        map.retain(|_, f| now.duration_since(f.first_at) <= window);
    }
    let entry = map.entry(key).or_insert(Failures {
        count: 0,
        first_at: now,
        locked_until: None,
        reported: false,
    });
    if now.duration_since(entry.first_at) > window {
        *entry = Failures {
            count: 0,
            first_at: now,
            locked_until: None,
            reported: false,
        };
    }
    entry.count += 1;
    if entry.count < limit {
        return false;
    }
    let doublings = (entry.count - limit).min(20);
    let delay = (FIRST_LOCK * 2u32.pow(doublings)).min(window);
    entry.locked_until = Some(now + delay);
    let first_report = !entry.reported;
    entry.reported = true;
    first_report
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn an_account_locks_after_its_limit_and_reports_once() {
        let guard = LoginGuard::new(3, 100, Duration::from_secs(900));
        assert!(!guard.record_failure("a@x", HOME).burst);
        assert!(!guard.record_failure("a@x", HOME).burst);
        assert!(guard.check("a@x", HOME).is_ok());
        assert!(guard.record_failure("a@x", HOME).burst);
        let wait = guard.check("a@x", OTHER).unwrap_err();
        assert!(wait <= FIRST_LOCK && wait > Duration::ZERO);
        assert!(
            guard.check("b@x", HOME).is_ok(),
            "other accounts are not locked"
        );
        assert!(!guard.record_failure("a@x", HOME).burst, "reported once");
        assert!(
            guard.check("a@x", HOME).unwrap_err() > FIRST_LOCK,
            "the lock doubles"
        );
    }

    #[test]
    fn an_address_locks_across_accounts_and_success_does_not_reset_it() {
        let guard = LoginGuard::new(100, 3, Duration::from_secs(900));
        guard.record_failure("a@x", HOME);
        guard.record_failure("b@x", HOME);
        guard.record_success("b@x");
        assert!(guard.record_failure("c@x", HOME).burst);
        assert!(guard.check("d@x", HOME).is_err());
        assert!(guard.check("d@x", OTHER).is_ok());
    }

    #[test]
    fn an_ipv6_network_counts_as_one_address() {
        let guard = LoginGuard::new(100, 2, Duration::from_secs(900));
        guard.record_failure("a@x", "2001:db8::1".parse().unwrap());
        assert!(
            guard
                .record_failure("b@x", "2001:db8::ffff:2".parse().unwrap())
                .burst
        );
        assert!(guard.check("c@x", "2001:db8::3".parse().unwrap()).is_err());
        assert!(guard
            .check("c@x", "2001:db8:0:1::3".parse().unwrap())
            .is_ok());
    }

    #[test]
    fn success_clears_the_account() {
        let guard = LoginGuard::new(2, 100, Duration::from_secs(900));
        guard.record_failure("a@x", HOME);
        guard.record_success("a@x");
        assert!(!guard.record_failure("a@x", HOME).burst);
        assert!(guard.check("a@x", HOME).is_ok());
    }
}
