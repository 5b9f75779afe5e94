//! Slows down password guessing: each failed login from an address waits
//! longer before its error is sent (100 ms, doubling up to 5 s), and a
//! successful login from the address starts it over.
//!
//! Like PostgreSQL's `auth_delay`, the delay is spent before answering, so a
//! client cannot learn the outcome sooner by hanging up early; unlike it,
//! the delay grows, so a single client trying passwords one after another
//! gets only a handful per minute.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Delay after the first failure; each further one doubles it.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay: long enough to make guessing slow, short enough that
/// a user who mistyped is not locked out.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// An address that has not failed for this long starts over.
const FORGET_AFTER: Duration = Duration::from_secs(10 * 60);
/// Bound on the addresses remembered, so many sources cannot grow the map
/// without limit; past it the address that failed longest ago is forgotten.
const MAX_TRACKED: usize = 10_000;

#[derive(Default)]
pub struct LoginThrottle {
    /// Failures per source address: (consecutive failures, the last one).
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
}

impl LoginThrottle {
    /// Records a failed login from `addr`; returns how long to wait before
    /// answering it.
    pub fn failed(&self, addr: IpAddr) -> Duration {
        self.failed_at(addr, Instant::now())
    }

    /// A successful login: the address starts over.
    pub fn succeeded(&self, addr: IpAddr) {
        self.lock().remove(&addr);
    }

    fn failed_at(&self, addr: IpAddr, now: Instant) -> Duration {
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED && !failures.contains_key(&addr) {
            failures.retain(|_, (_, last)| now.duration_since(*last) < FORGET_AFTER);
            if failures.len() >= MAX_TRACKED {
                let oldest = failures.iter().min_by_key(|(_, (_, last))| *last).map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
        }
        let entry = failures.entry(addr).or_insert((0, now));
        if now.duration_since(entry.1) >= FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let doublings = (entry.0 - 1).min(16);
        FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
    }

    /// The map holds counters only: a panic elsewhere cannot leave it
    /// half-updated, so a poisoned lock is still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, (u32, Instant)>> {
        self.failures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn delays_double_per_address_up_to_the_cap() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        let delays: Vec<u128> = (0..8).map(|_| throttle.failed_at(A, now).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(throttle.failed_at(B, now), FIRST_DELAY, "another address is not slowed");
    }

    #[test]
    fn success_and_time_start_over() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        throttle.failed_at(A, now);
        throttle.failed_at(A, now);
        throttle.succeeded(A);
        assert_eq!(throttle.failed_at(A, now), FIRST_DELAY);
        throttle.failed_at(A, now);
        assert_eq!(throttle.failed_at(A, now + FORGET_AFTER), FIRST_DELAY);
    }

    #[test]
    fn the_map_stays_bounded() {
        let throttle = LoginThrottle::default();
        let now = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            throttle.failed_at(IpAddr::V4(i.into()), now + Duration::from_millis(i.into()));
        }
        assert!(throttle.lock().len() <= MAX_TRACKED);
    }
}
