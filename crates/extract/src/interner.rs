//! Distinct byte strings numbered in order of first appearance.
//!
//! This is the hot loop of extraction (two lookups per row), and on large
//! inputs its cost is cache misses. So keys of up to [`INLINE`] bytes (card
//! numbers, ISBNs, most catalogue ids) are stored in the table slot itself:
//! a lookup touches one slot, with no second miss to fetch the key, and the
//! hash is recomputed from the slot when the table grows. All keys are also
//! appended to one arena, which keeps them in index order without an
//! allocation per key.
//!
//! A set of secret keys (raw borrower ids) grows by hand: `hashbrown` and
//! `Vec` free what they outgrow without overwriting it, which would leave
//! copies of ids in freed memory.

use std::hash::BuildHasher;

use hashbrown::hash_table::Entry;
use hashbrown::{DefaultHashBuilder, HashTable};
use zeroize::Zeroize;

/// Longest key stored inline (an ISBN-13, a 14-digit barcode); makes a
/// slot 24 bytes. Slots of 32 bytes (27 inline) made the tables a third
/// larger, and extraction 3-6 % slower in CPU at 10M and 100M loans
/// (alternated pairs, session 9 of issue 15).
const INLINE: usize = 19;

/// `Slot::len` of a key longer than [`INLINE`], compared in the arena.
const LONG: u8 = u8::MAX;

/// A table slot: the key's index and, for a short key, the key itself
/// (zero-padded, so that equal keys have equal slots).
#[derive(Clone, Copy)]
struct Slot {
    index: u32,
    len: u8,
    bytes: [u8; INLINE],
}

impl Slot {
    /// The slot contents of key `k` (without its index): its `len` and, for
    /// a short key, its zero-padded bytes.
    fn of(k: &[u8]) -> (u8, [u8; INLINE]) {
        let mut bytes = [0u8; INLINE];
        match bytes.get_mut(..k.len()) {
            Some(prefix) => {
                prefix.copy_from_slice(k);
                // k.len() <= INLINE < LONG.
                (k.len() as u8, bytes)
            }
            None => (LONG, bytes),
        }
    }
}

/// An append-only set of byte strings; index `i` is the `i`-th distinct key.
#[derive(Default)]
pub(crate) struct Interner {
    table: HashTable<Slot>,
    arena: Vec<u8>,
    /// End offset in `arena` of each key; key `i` starts where `i - 1` ends.
    ends: Vec<usize>,
    hasher: DefaultHashBuilder,
    /// The keys are secret: the table and arena a growth leaves behind are
    /// overwritten with zeros before they are freed.
    secret: bool,
}

fn key<'k>(arena: &'k [u8], ends: &[usize], index: u32) -> &'k [u8] {
    let i = index as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &arena[start..ends[i]]
}

/// The hash of the key in slot `s`: from the slot itself, or from the
/// arena for a long key.
fn slot_hash(hasher: &DefaultHashBuilder, arena: &[u8], ends: &[usize], s: &Slot) -> u64 {
    if s.len == LONG {
        hasher.hash_one(key(arena, ends, s.index))
    } else {
        hasher.hash_one(&s.bytes[..usize::from(s.len)])
    }
}

impl Interner {
    /// An empty set with room for `keys` keys of about `bytes` bytes in all.
    pub(crate) fn with_capacity(keys: usize, bytes: usize) -> Self {
        Interner {
            table: HashTable::with_capacity(keys),
            arena: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(keys),
            hasher: DefaultHashBuilder::default(),
            secret: false,
        }
    }

    /// [`Interner::with_capacity`] for secret keys: no copy survives a
    /// growth, and [`Interner::wipe`] clears the rest.
    pub(crate) fn secret_with_capacity(keys: usize, bytes: usize) -> Self {
        Interner {
            secret: true,
            ..Interner::with_capacity(keys, bytes)
        }
    }

    /// Bytes of all keys.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.len()
    }

    /// Number of distinct keys.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Index of `k`, added at the end if it is new.
    pub(crate) fn intern(&mut self, k: &[u8]) -> u32 {
        // `entry` grows a full table even for a key it holds, so a secret
        // table that is full grows first, here.
        if self.secret && self.table.len() == self.table.capacity() {
            self.grow_secret_table();
        }
        if self.secret && self.arena.capacity() - self.arena.len() < k.len() {
            self.grow_secret_arena(k.len());
        }
        let Interner {
            table,
            arena,
            ends,
            hasher,
            ..
        } = self;
        let hash = hasher.hash_one(k);
        // A short key is compared as its whole padded slot, a fixed-size
        // comparison the compiler inlines, rather than by a memcmp call.
        let (len, bytes) = Slot::of(k);
        let eq = |s: &Slot| {
            if len == LONG {
                s.len == LONG && key(arena, ends, s.index) == k
            } else {
                s.len == len && s.bytes == bytes
            }
        };
        let rehash = |s: &Slot| slot_hash(hasher, arena, ends, s);
        match table.entry(hash, eq, rehash) {
            Entry::Occupied(e) => e.get().index,
            Entry::Vacant(v) => {
                // Fits: the caller bounds the input size so that counts fit in u32.
                let index = ends.len() as u32;
                arena.extend_from_slice(k);
                ends.push(arena.len());
                v.insert(Slot { index, len, bytes });
                index
            }
        }
    }

    /// Moves a secret table to one twice as large, wiping the old slots.
    #[cold]
    fn grow_secret_table(&mut self) {
        let rehash = |s: &Slot| slot_hash(&self.hasher, &self.arena, &self.ends, s);
        let mut larger = HashTable::with_capacity((2 * self.table.capacity()).max(16));
        for s in self.table.iter() {
            larger.insert_unique(rehash(s), *s, rehash);
        }
        wipe_slots(&mut std::mem::replace(&mut self.table, larger));
    }

    /// Moves a secret arena to one with room for `more` bytes (at least
    /// twice as large), wiping the old one.
    #[cold]
    fn grow_secret_arena(&mut self, more: usize) {
        let want = (self.arena.len() + more).max(2 * self.arena.capacity());
        grow_wiping(&mut self.arena, want);
    }

    /// The keys in index order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        (0..self.ends.len() as u32).map(|i| key(&self.arena, &self.ends, i))
    }

    /// Adds the keys of `other` in their order and returns the index each of
    /// them has here.
    pub(crate) fn absorb(&mut self, other: &Interner) -> Vec<u32> {
        other.iter().map(|k| self.intern(k)).collect()
    }

    /// Overwrites the keys with zeros (for secret keys, before dropping).
    pub(crate) fn wipe(&mut self) {
        self.arena.zeroize();
        wipe_slots(&mut self.table);
    }
}

/// Moves the bytes of `v` to a new buffer with room for `capacity` bytes
/// and wipes the old one, which a reallocation would free as it is.
pub(crate) fn grow_wiping(v: &mut Vec<u8>, capacity: usize) {
    let mut larger = Vec::with_capacity(capacity);
    larger.extend_from_slice(v);
    std::mem::replace(v, larger).zeroize();
}

/// Overwrites the inline keys of `table`'s slots with zeros (the table is
/// dropped without its slots being read again).
fn wipe_slots(table: &mut HashTable<Slot>) {
    for s in table.iter_mut() {
        s.bytes.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn numbers_keys_by_first_appearance(
            keys in prop::collection::vec("[a-c]{0,3}|[a-c]{18,21}|[a-c]{24,31}", 0..300),
        ) {
            // A secret set grows by hand (from no room at all), the other
            // as hashbrown and Vec do.
            for mut interner in [Interner::default(), Interner::secret_with_capacity(0, 0)] {
                let mut order: Vec<&str> = Vec::new();
                for k in &keys {
                    let expected = order.iter().position(|o| o == k).unwrap_or(order.len());
                    if expected == order.len() {
                        order.push(k);
                    }
                    prop_assert_eq!(interner.intern(k.as_bytes()) as usize, expected);
                }
                let stored: Vec<&[u8]> = interner.iter().collect();
                let order: Vec<&[u8]> = order.iter().map(|o| o.as_bytes()).collect();
                prop_assert_eq!(stored, order);
            }
        }
    }

    #[test]
    fn absorb_maps_indexes_and_keeps_first_appearance() {
        let mut a = Interner::default();
        for k in ["x", "y"] {
            a.intern(k.as_bytes());
        }
        let mut b = Interner::default();
        for k in ["z", "", "y", "a key that is longer than the inline part"] {
            b.intern(k.as_bytes());
        }
        assert_eq!(a.absorb(&b), [2, 3, 1, 4]);
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            [
                &b"x"[..],
                b"y",
                b"z",
                b"",
                b"a key that is longer than the inline part"
            ]
        );
    }
}
