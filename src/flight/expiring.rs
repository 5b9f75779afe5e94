//! A map whose entries expire: what Flight SQL clients leave behind. A
//! result stored at GetFlightInfo waits for a DoGet that a client may never
//! send, and a prepared statement waits for a close that a crashed client
//! never sends; without a bound, each of those is memory held forever.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries live `ttl` after their last use, and at most `cap` live at once:
/// inserting past the cap first drops the entry unused the longest.
pub struct Expiring<K, V> {
    entries: Mutex<HashMap<K, (Instant, V)>>,
    ttl: Duration,
    cap: usize,
}

impl<K: Eq + Hash + Clone, V: Clone> Expiring<K, V> {
    pub fn new(ttl: Duration, cap: usize) -> Expiring<K, V> {
        Expiring { entries: Mutex::default(), ttl, cap: cap.max(1) }
    }

    pub fn insert(&self, key: K, value: V) {
        self.insert_at(key, value, Instant::now());
    }

    /// The live entry under `key`, marked as used now.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_at(key, Instant::now())
    }

    /// Applies `change` to the live entry under `key`; false when there is none.
    pub fn update(&self, key: &K, change: impl FnOnce(&mut V)) -> bool {
        self.update_at(key, change, Instant::now())
    }

    /// Takes the live entry under `key` out of the map.
    pub fn take(&self, key: &K) -> Option<V> {
        self.take_at(key, Instant::now())
    }

    // The clock is a parameter below, so that tests need not sleep.

    fn insert_at(&self, key: K, value: V, now: Instant) {
        let mut entries = self.lock();
        entries.retain(|_, (used, _)| now.duration_since(*used) < self.ttl);
        while entries.len() >= self.cap {
            let Some(oldest) = entries.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| k.clone()) else {
                break;
            };
            entries.remove(&oldest);
        }
        entries.insert(key, (now, value));
    }

    fn get_at(&self, key: &K, now: Instant) -> Option<V> {
        let mut entries = self.lock();
        match entries.get_mut(key) {
            Some((used, _)) if now.duration_since(*used) >= self.ttl => {
                entries.remove(key);
                None
            }
            Some((used, value)) => {
                *used = now;
                Some(value.clone())
            }
            None => None,
        }
    }

    fn update_at(&self, key: &K, change: impl FnOnce(&mut V), now: Instant) -> bool {
        let mut entries = self.lock();
        match entries.get_mut(key) {
            Some((used, value)) if now.duration_since(*used) < self.ttl => {
                *used = now;
                change(value);
                true
            }
            _ => false,
        }
    }

    fn take_at(&self, key: &K, now: Instant) -> Option<V> {
        let (used, value) = self.lock().remove(key)?;
        (now.duration_since(used) < self.ttl).then_some(value)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    /// The map holds plain values: a panic elsewhere cannot leave it
    /// half-updated, so a poisoned lock is still usable.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_bounds_entries_that_are_never_fetched() {
        let map = Expiring::new(Duration::from_secs(3600), 100);
        for i in 0..20_000 {
            map.insert(i, vec![0u8; 64]);
        }
        assert_eq!(map.len(), 100);
        assert!(map.get(&19_999).is_some(), "the newest entries stay");
        assert!(map.get(&0).is_none(), "the oldest went first");
    }

    #[test]
    fn entries_expire_after_the_ttl_since_last_use() {
        let map = Expiring::new(Duration::from_secs(60), 10);
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        map.insert_at("a", 1, at(0));
        map.insert_at("b", 2, at(0));
        assert_eq!(map.get_at(&"a", at(40)), Some(1), "use renews an entry");
        assert_eq!(map.get_at(&"a", at(80)), Some(1));
        assert_eq!(map.get_at(&"b", at(80)), None, "an unused entry expires");
        assert!(map.update_at(&"a", |v| *v = 5, at(100)));
        assert!(!map.update_at(&"a", |v| *v = 6, at(200)), "expired by then");
        map.insert_at("c", 3, at(200));
        assert_eq!(map.take_at(&"c", at(210)), Some(3));
        assert_eq!(map.take_at(&"c", at(210)), None, "taken once");
        map.insert_at("d", 4, at(300));
        map.insert_at("e", 5, at(400));
        assert_eq!(map.len(), 1, "an insert sweeps expired entries");
    }
}
