//! The verified-token cache: callers by SHA-256 of their token, each kept no longer than its
//! token's expiry and five minutes.
//!
//! Why not moka, as the other caches: with a token on every request this lookup is on the hot
//! path, and a moka hit also records the read for its admission policy (a channel send, a
//! clock read, periodic housekeeping): about 1 % of the warm read path's CPU, more than the
//! lookup itself. Here a hit is a shard's read lock and one probe. The key is a SHA-256 digest,
//! already uniform, so its own bytes are the hash; only verified tokens are ever inserted, so
//! nobody without a valid token can choose what lands in a shard.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{Arc, PoisonError, RwLock},
    time::Duration,
};

use super::Caller;

const SHARDS: usize = 16;

/// A verified caller and how long it may be served.
#[derive(Clone)]
pub(super) struct Verified {
    pub(super) caller: Arc<Caller>,
    /// Unix time after which the token is expired even with the leeway.
    pub(super) valid_until: i64,
    /// Unix time from which the entry is verified again, expired or not.
    pub(super) fresh_until: i64,
}

impl Verified {
    pub(super) fn new(caller: Arc<Caller>, valid_until: i64, now: i64, ttl: Duration) -> Self {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        Self {
            caller,
            valid_until,
            fresh_until: now.saturating_add(ttl),
        }
    }

    fn usable_at(&self, now: i64) -> bool {
        now <= self.valid_until && now < self.fresh_until
    }
}

/// Takes the first eight bytes of the key, which is a digest.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as a length, then its bytes; only the bytes carry the digest.
        for (at, byte) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*byte) << (8 * at);
        }
    }

    fn write_usize(&mut self, _length: usize) {}
}

type Shard = HashMap<[u8; 32], Verified, BuildHasherDefault<DigestHasher>>;

/// At most `capacity` verified callers, in shards so that two requests seldom wait on each
/// other's insert.
pub(super) struct VerifiedTokens {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
}

impl VerifiedTokens {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    fn shard(&self, digest: &[u8; 32]) -> &RwLock<Shard> {
        // Byte 8 on: independent of the bytes the map hashes by.
        &self.shards[usize::from(digest[8]) % SHARDS]
    }

    /// The caller of a token verified before, while the entry is usable at `now`.
    pub(super) fn get(&self, digest: &[u8; 32], now: i64) -> Option<Arc<Caller>> {
        let shard = self
            .shard(digest)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .get(digest)
            .filter(|verified| verified.usable_at(now))
            .map(|verified| verified.caller.clone())
    }

    /// Remembers a verified caller. A full shard first forgets what is no longer usable, then,
    /// if it is still full, an arbitrary entry: that caller's next request is verified again.
    pub(super) fn insert(&self, digest: [u8; 32], verified: Verified, now: i64) {
        let mut shard = self
            .shard(&digest)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if shard.len() >= self.per_shard && !shard.contains_key(&digest) {
            shard.retain(|_, entry| entry.usable_at(now));
            if shard.len() >= self.per_shard
                && let Some(victim) = shard.keys().next().copied()
            {
                shard.remove(&victim);
            }
        }
        shard.insert(digest, verified);
    }

    /// The entry itself, usable or not.
    #[cfg(test)]
    pub(super) fn entry(&self, digest: &[u8; 32]) -> Option<Verified> {
        self.shard(digest)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(digest)
            .cloned()
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    fn digest(n: usize) -> [u8; 32] {
        Sha256::digest(n.to_le_bytes()).into()
    }

    fn caller(sub: &str) -> Arc<Caller> {
        Arc::new(Caller {
            sub: sub.into(),
            ..Caller::anonymous_staff()
        })
    }

    const NOW: i64 = 1_000_000;

    #[test]
    fn an_entry_is_served_until_its_token_expires_or_its_ttl_ends() {
        let tokens = VerifiedTokens::new(100);
        let ttl = Duration::from_secs(60);
        tokens.insert(
            digest(1),
            Verified::new(caller("a"), NOW + 30, NOW, ttl),
            NOW,
        );
        tokens.insert(
            digest(2),
            Verified::new(caller("b"), NOW + 600, NOW, ttl),
            NOW,
        );
        assert_eq!(tokens.get(&digest(1), NOW + 30).unwrap().sub, "a");
        assert!(tokens.get(&digest(1), NOW + 31).is_none(), "token expired");
        assert_eq!(tokens.get(&digest(2), NOW + 59).unwrap().sub, "b");
        assert!(tokens.get(&digest(2), NOW + 60).is_none(), "ttl over");
        assert!(tokens.get(&digest(3), NOW).is_none(), "never inserted");
    }

    /// Digests that land in the same shard.
    fn same_shard(count: usize) -> Vec<[u8; 32]> {
        let first = digest(0);
        (0..)
            .map(digest)
            .filter(|candidate| candidate[8] as usize % SHARDS == first[8] as usize % SHARDS)
            .take(count)
            .collect()
    }

    #[test]
    fn a_full_shard_drops_unusable_entries_before_usable_ones() {
        let tokens = VerifiedTokens::new(2 * SHARDS);
        let ttl = Duration::from_secs(300);
        let [expiring, lasting, newcomer] = same_shard(3).try_into().unwrap();
        tokens.insert(expiring, Verified::new(caller("a"), NOW + 1, NOW, ttl), NOW);
        tokens.insert(
            lasting,
            Verified::new(caller("b"), NOW + 900, NOW, ttl),
            NOW,
        );
        let later = NOW + 10;
        tokens.insert(
            newcomer,
            Verified::new(caller("c"), NOW + 900, later, ttl),
            later,
        );
        assert!(tokens.entry(&expiring).is_none());
        assert_eq!(tokens.get(&lasting, later).unwrap().sub, "b");
        assert_eq!(tokens.get(&newcomer, later).unwrap().sub, "c");
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let tokens = VerifiedTokens::new(64);
        let ttl = Duration::from_secs(300);
        for n in 0..1000 {
            tokens.insert(
                digest(n),
                Verified::new(caller("x"), NOW + 900, NOW, ttl),
                NOW,
            );
            // The newest entry is always kept; an older one made room.
            assert!(tokens.get(&digest(n), NOW).is_some());
            assert!(tokens.len() <= 64, "{} entries", tokens.len());
        }
        assert!(
            tokens.len() > 32,
            "shards fill up: {} entries",
            tokens.len()
        );
    }

    #[test]
    fn the_same_token_verified_again_replaces_its_entry_without_evicting_another() {
        let tokens = VerifiedTokens::new(2 * SHARDS);
        let ttl = Duration::from_secs(300);
        let [first, second] = same_shard(2).try_into().unwrap();
        tokens.insert(first, Verified::new(caller("x"), NOW + 900, NOW, ttl), NOW);
        tokens.insert(second, Verified::new(caller("x"), NOW + 900, NOW, ttl), NOW);
        tokens.insert(second, Verified::new(caller("y"), NOW + 900, NOW, ttl), NOW);
        assert_eq!(tokens.get(&first, NOW).unwrap().sub, "x");
        assert_eq!(tokens.get(&second, NOW).unwrap().sub, "y");
    }
}
