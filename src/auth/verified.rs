//! The verified-token cache: callers by SHA-256 of their token, each kept no longer than its
//! token's expiry and five minutes; in front of it, each thread's memo of the last few tokens
//! it served.
//!
//! Why not moka, as the other caches: with a token on every request this lookup is on the hot
//! path, and a moka hit also records the read for its admission policy (a channel send, a
//! clock read, periodic housekeeping): about 1 % of the warm read path's CPU, more than the
//! lookup itself. Here a hit is a shard's read lock and one probe. The key is a SHA-256 digest,
//! already uniform, so its own bytes are the hash; only verified tokens are ever inserted, so
//! nobody without a valid token can choose what lands in a shard.

use std::{
    cell::RefCell,
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
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
    /// Tells this cache's memo entries from another's: each cache has its own keys behind it.
    owner: u64,
}

/// Tokens per thread in the memo: a browser's or a backend's requests come with one token for
/// minutes, and a worker thread serves a handful of such callers at a time.
const MEMO_ENTRIES: usize = 4;

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// A token this thread served, with its verified caller.
struct MemoEntry {
    owner: u64,
    token: Box<[u8]>,
    verified: Verified,
}

/// Why a memo: a shared-cache hit costs a SHA-256 of the token (about a quarter of a
/// microsecond) and the shard's read lock, whose counter both workers write; comparing the
/// token with the few this thread served last costs neither. The comparison is constant-time,
/// so how long a wrong token takes to refuse says nothing about the tokens held.
struct Memo {
    entries: [Option<MemoEntry>; MEMO_ENTRIES],
    next: usize,
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
///
/// Why not `subtle`'s `ct_eq`: it puts an optimisation barrier on every byte, about 0.2 µs on a
/// 240-byte token, as much as the SHA-256 the memo saves; here the differences are gathered a
/// word at a time and only the total goes through the barrier.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let word = |bytes: &[u8]| u64::from_ne_bytes(bytes.try_into().expect("eight bytes"));
    let (a_words, b_words) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = a_words
        .remainder()
        .iter()
        .zip(b_words.remainder())
        .fold(0, |diff, (x, y)| diff | u64::from(x ^ y));
    let diff = a_words
        .zip(b_words)
        .fold(tail, |diff, (x, y)| diff | (word(x) ^ word(y)));
    std::hint::black_box(diff) == 0
}

thread_local! {
    static MEMO: RefCell<Memo> = const {
        RefCell::new(Memo {
            entries: [const { None }; MEMO_ENTRIES],
            next: 0,
        })
    };
}

impl VerifiedTokens {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::default()).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The caller of `token` if this thread served it from this cache and it is usable at `now`.
    pub(super) fn recent(&self, token: &str, now: i64) -> Option<Arc<Caller>> {
        MEMO.with_borrow(|memo| {
            memo.entries
                .iter()
                .flatten()
                .find(|entry| {
                    entry.owner == self.owner && same_bytes(&entry.token, token.as_bytes())
                })
                .filter(|entry| entry.verified.usable_at(now))
                .map(|entry| entry.verified.caller.clone())
        })
    }

    /// Puts `token` in this thread's memo, in place of the oldest entry.
    pub(super) fn remember(&self, token: &str, verified: &Verified) {
        MEMO.with_borrow_mut(|memo| {
            let at = memo.next;
            memo.next = (at + 1) % MEMO_ENTRIES;
            memo.entries[at] = Some(MemoEntry {
                owner: self.owner,
                token: token.as_bytes().into(),
                verified: verified.clone(),
            });
        });
    }

    fn shard(&self, digest: &[u8; 32]) -> &RwLock<Shard> {
        // Byte 8 on: independent of the bytes the map hashes by.
        &self.shards[usize::from(digest[8]) % SHARDS]
    }

    /// The entry of a token verified before, while it is usable at `now`.
    pub(super) fn get(&self, digest: &[u8; 32], now: i64) -> Option<Verified> {
        let shard = self
            .shard(digest)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard
            .get(digest)
            .filter(|verified| verified.usable_at(now))
            .cloned()
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

    /// Empties this thread's memo (tests that age an entry of the shared cache).
    #[cfg(test)]
    pub(super) fn forget_recent() {
        MEMO.with_borrow_mut(|memo| memo.entries = [const { None }; MEMO_ENTRIES]);
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
        assert_eq!(
            tokens
                .get(&digest(1), NOW + 30)
                .unwrap()
                .caller
                .sub
                .as_ref(),
            "a"
        );
        assert!(tokens.get(&digest(1), NOW + 31).is_none(), "token expired");
        assert_eq!(
            tokens
                .get(&digest(2), NOW + 59)
                .unwrap()
                .caller
                .sub
                .as_ref(),
            "b"
        );
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
        assert_eq!(
            tokens.get(&lasting, later).unwrap().caller.sub.as_ref(),
            "b"
        );
        assert_eq!(
            tokens.get(&newcomer, later).unwrap().caller.sub.as_ref(),
            "c"
        );
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
        assert_eq!(tokens.get(&first, NOW).unwrap().caller.sub.as_ref(), "x");
        assert_eq!(tokens.get(&second, NOW).unwrap().caller.sub.as_ref(), "y");
    }

    #[test]
    fn same_bytes_is_equality_at_every_length_and_position() {
        for len in 0..40 {
            let a: Vec<u8> = (0..len).map(|n| n as u8).collect();
            assert!(same_bytes(&a, &a.clone()));
            for at in 0..len {
                let mut b = a.clone();
                b[at] ^= 0x80;
                assert!(!same_bytes(&a, &b), "length {len}, byte {at}");
            }
            assert!(!same_bytes(&a, &a[..len.saturating_sub(1)]) || len == 0);
        }
    }

    #[test]
    fn a_token_this_thread_served_is_found_in_the_memo_while_usable() {
        let tokens = VerifiedTokens::new(100);
        let ttl = Duration::from_secs(60);
        tokens.remember("token-a", &Verified::new(caller("a"), NOW + 30, NOW, ttl));
        assert_eq!(&*tokens.recent("token-a", NOW).unwrap().sub, "a");
        assert_eq!(&*tokens.recent("token-a", NOW + 30).unwrap().sub, "a");
        assert!(
            tokens.recent("token-a", NOW + 31).is_none(),
            "token expired"
        );
        assert!(
            tokens.recent("token-b", NOW).is_none(),
            "same length, last byte differs"
        );
        assert!(
            tokens.recent("token-", NOW).is_none(),
            "a prefix is not the token"
        );
        assert!(tokens.recent("token-aa", NOW).is_none());
        // The memo is not the shared cache: nothing was inserted there.
        assert_eq!(tokens.len(), 0);

        tokens.remember("token-c", &Verified::new(caller("c"), NOW + 900, NOW, ttl));
        assert!(tokens.recent("token-c", NOW + 60).is_none(), "ttl over");
    }

    #[test]
    fn the_memo_of_one_cache_is_never_served_by_another() {
        let first = VerifiedTokens::new(100);
        let second = VerifiedTokens::new(100);
        let ttl = Duration::from_secs(60);
        first.remember("token", &Verified::new(caller("a"), NOW + 30, NOW, ttl));
        assert!(first.recent("token", NOW).is_some());
        assert!(second.recent("token", NOW).is_none());
    }

    #[test]
    fn the_memo_keeps_only_the_last_few_tokens_of_its_own_thread() {
        let tokens = VerifiedTokens::new(100);
        let ttl = Duration::from_secs(60);
        for n in 0..=MEMO_ENTRIES {
            let verified = Verified::new(caller(&n.to_string()), NOW + 30, NOW, ttl);
            tokens.remember(&format!("token-{n}"), &verified);
        }
        assert!(
            tokens.recent("token-0", NOW).is_none(),
            "the oldest made room"
        );
        for n in 1..=MEMO_ENTRIES {
            let found = tokens.recent(&format!("token-{n}"), NOW).unwrap();
            assert_eq!(*found.sub, n.to_string());
        }
        std::thread::scope(|scope| {
            scope.spawn(|| assert!(tokens.recent("token-1", NOW).is_none()));
        });
    }
}
