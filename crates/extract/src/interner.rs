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
//! Keys of one to sixteen ASCII digits (ISBNs, numeric card numbers and
//! barcodes: nearly every title id and, in many exports, every borrower id)
//! take a second table, of 12-byte slots holding the digits packed as
//! nibbles ([`digits`]): half the cache footprint of a 24-byte slot, and a
//! lookup hashes and compares one word instead of a byte string.
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

/// The length recorded in a slot's tail for a key longer than [`INLINE`],
/// which is compared in the arena.
const LONG: u8 = u8::MAX;

/// A table slot: the key's index and, for a short key, the key itself
/// (zero-padded, so that equal keys have equal slots) as two words and a
/// tail holding bytes 16 to 18 and the length. Words built from whole-word
/// loads and compared in registers: a key copied byte-wise into an array and
/// read back as vectors stalled on the copy (a sixth of interning).
#[derive(Clone, Copy)]
struct Slot {
    words: [u64; 2],
    /// Bytes 16-18 of the key in the low three bytes, its length (or
    /// [`LONG`]) in the high one.
    tail: u32,
    index: u32,
}

/// The contents of key `k`'s slot without its index: `(words, tail)`.
fn slot_key(k: &[u8]) -> ([u64; 2], u32) {
    if k.len() > INLINE {
        return ([0, 0], u32::from(LONG) << 24);
    }
    let (a, rest) = k.split_at(k.len().min(8));
    let (b, c) = rest.split_at(rest.len().min(8));
    // `c` is at most three bytes; `k.len()` at most INLINE: the casts keep
    // every bit.
    ([load(a), load(b)], load(c) as u32 | (k.len() as u32) << 24)
}

impl Slot {
    /// Whether the key is longer than [`INLINE`] and kept in the arena only.
    fn is_long(&self) -> bool {
        self.tail >> 24 == u32::from(LONG)
    }
}

/// A key of digits in a table slot: its packed digits ([`digits`]) as two
/// halves (so the slot is 12 bytes, not a `u64`'s 16) and its index.
#[derive(Clone, Copy)]
struct NumberSlot {
    digits: [u32; 2],
    index: u32,
}

impl NumberSlot {
    fn digits(&self) -> u64 {
        u64::from(self.digits[0]) | u64::from(self.digits[1]) << 32
    }
}

/// Each byte's high bit.
const HIGH: u64 = 0x8080_8080_8080_8080;

/// The 1 to 8 bytes of `part` as a little-endian word, the bytes past its
/// end zero. Whole-word loads, some overlapping: copying the bytes into a
/// buffer and loading that stalls the load until the copy's smaller stores
/// retire (a fifth of extraction's interning when measured).
pub(crate) fn load(part: &[u8]) -> u64 {
    let n = part.len();
    if let Some(w) = part.first_chunk::<8>() {
        return u64::from_le_bytes(*w);
    }
    if let (Some(lo), Some(hi)) = (part.first_chunk::<4>(), part.last_chunk::<4>()) {
        // Bytes 0-3 and n-4..n; the overlap holds the same bytes twice.
        return u64::from(u32::from_le_bytes(*lo))
            | u64::from(u32::from_le_bytes(*hi)) << (8 * (n - 4));
    }
    match part {
        [] => 0,
        // One to three bytes: the first, the middle and the last.
        _ => {
            let at = |i: usize| u64::from(part[i]) << (8 * i);
            at(0) | at(n / 2) | at(n - 1)
        }
    }
}

/// Up to eight bytes of ASCII digits as nibbles, the first in the lowest:
/// digit `d` as `d + 1`, so that no digit is a zero nibble; `None` if a byte
/// is not a digit. Eight bytes at a time (SWAR).
fn pack_digits(part: &[u8]) -> Option<u64> {
    // The bytes past the end read as '0' for the check, 0 in the result.
    let used = u64::MAX >> (8 * (8 - part.len()));
    let x = load(part) | (0x3030_3030_3030_3030 & !used);
    // A byte below '0' sets its high bit in `x - '0'`, one above '9' in
    // `x + 0x46`, one above 0x7f in `x`. A borrow or carry only starts at
    // such a byte, so the lowest one is always seen.
    let below = x.wrapping_sub(0x3030_3030_3030_3030);
    let above = x.wrapping_add(0x4646_4646_4646_4646);
    if (x | below | above) & HIGH != 0 {
        return None;
    }
    // Digits as 1..=10, the padding as 0; then the low nibble of each byte
    // moved next to its neighbours'.
    let mut v = x.wrapping_sub(0x2f2f_2f2f_2f2f_2f2f) & used;
    v = (v | v >> 4) & 0x00ff_00ff_00ff_00ff;
    v = (v | v >> 8) & 0x0000_ffff_0000_ffff;
    Some((v | v >> 16) & 0xffff_ffff)
}

/// A key of one to sixteen ASCII digits as one word, leading zeros kept:
/// digit `i` in nibble `i` as its value plus one, zero nibbles after the
/// last. Distinct keys get distinct words (the first zero nibble gives the
/// length). `None` for any other key.
fn digits(k: &[u8]) -> Option<u64> {
    match k.len() {
        1..=8 => pack_digits(k),
        9..=16 => {
            let (low, high) = k.split_at(8);
            Some(pack_digits(low)? | pack_digits(high)? << 32)
        }
        _ => None,
    }
}

/// An append-only set of byte strings; index `i` is the `i`-th distinct key.
#[derive(Default)]
pub(crate) struct Interner {
    table: HashTable<Slot>,
    /// The keys of digits only ([`digits`]).
    numbers: HashTable<NumberSlot>,
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
    if s.is_long() {
        hasher.hash_one(key(arena, ends, s.index))
    } else {
        hasher.hash_one((s.words, s.tail))
    }
}

impl Interner {
    /// An empty set of secret keys: no copy survives a growth, and
    /// [`Interner::wipe`] clears the rest.
    pub(crate) fn secret() -> Self {
        Interner {
            secret: true,
            ..Interner::default()
        }
    }

    /// Number of distinct keys.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Number of distinct keys of digits only.
    #[cfg(test)]
    pub(crate) fn numbers(&self) -> usize {
        self.numbers.len()
    }

    /// Index of `k`, added at the end if it is new.
    pub(crate) fn intern(&mut self, k: &[u8]) -> u32 {
        if self.secret && self.arena.capacity() - self.arena.len() < k.len() {
            self.grow_secret_arena(k.len());
        }
        match digits(k) {
            Some(number) => self.intern_number(k, number),
            None => self.intern_bytes(k),
        }
    }

    /// [`Interner::intern`] for key `k` of digits, packed as `number`.
    fn intern_number(&mut self, k: &[u8], number: u64) -> u32 {
        // `entry` grows a full table even for a key it holds, so a secret
        // table that is full grows first, here.
        if self.secret && self.numbers.len() == self.numbers.capacity() {
            self.grow_secret_numbers();
        }
        let Interner {
            numbers,
            arena,
            ends,
            hasher,
            ..
        } = self;
        let hash = hasher.hash_one(number);
        let eq = |s: &NumberSlot| s.digits() == number;
        let rehash = |s: &NumberSlot| hasher.hash_one(s.digits());
        match numbers.entry(hash, eq, rehash) {
            Entry::Occupied(e) => e.get().index,
            Entry::Vacant(v) => {
                let index = append(arena, ends, k);
                // The halves of the word: the casts keep the bits meant.
                let digits = [number as u32, (number >> 32) as u32];
                v.insert(NumberSlot { digits, index });
                index
            }
        }
    }

    /// [`Interner::intern`] for a key that is not all digits.
    fn intern_bytes(&mut self, k: &[u8]) -> u32 {
        if self.secret && self.table.len() == self.table.capacity() {
            self.grow_secret_table();
        }
        let Interner {
            table,
            arena,
            ends,
            hasher,
            ..
        } = self;
        // A short key is hashed and compared as its whole padded slot, a
        // fixed-size comparison the compiler inlines, rather than by a
        // memcmp call.
        let (words, tail) = slot_key(k);
        let long = k.len() > INLINE;
        let hash = if long {
            hasher.hash_one(k)
        } else {
            hasher.hash_one((words, tail))
        };
        let eq = |s: &Slot| {
            if long {
                s.is_long() && key(arena, ends, s.index) == k
            } else {
                s.words == words && s.tail == tail
            }
        };
        let rehash = |s: &Slot| slot_hash(hasher, arena, ends, s);
        match table.entry(hash, eq, rehash) {
            Entry::Occupied(e) => e.get().index,
            Entry::Vacant(v) => {
                let index = append(arena, ends, k);
                v.insert(Slot { words, tail, index });
                index
            }
        }
    }

    /// Moves a secret table to one twice as large, wiping the old slots.
    #[cold]
    fn grow_secret_table(&mut self) {
        let larger = doubled(&self.table, |s| {
            slot_hash(&self.hasher, &self.arena, &self.ends, s)
        });
        wipe_slots(&mut std::mem::replace(&mut self.table, larger));
    }

    /// Moves a secret table of numbers to one twice as large, wiping the old
    /// slots.
    #[cold]
    fn grow_secret_numbers(&mut self) {
        let larger = doubled(&self.numbers, |s| self.hasher.hash_one(s.digits()));
        wipe_numbers(&mut std::mem::replace(&mut self.numbers, larger));
    }

    /// Moves a secret arena to one with room for `more` bytes (at least
    /// twice as large), wiping the old one.
    #[cold]
    fn grow_secret_arena(&mut self, more: usize) {
        let want = (self.arena.len() + more).max(2 * self.arena.capacity());
        grow_wiping(&mut self.arena, want);
    }

    /// The keys in index order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        (0..self.ends.len() as u32).map(|i| key(&self.arena, &self.ends, i))
    }

    /// Key `index`.
    pub(crate) fn get(&self, index: u32) -> &[u8] {
        key(&self.arena, &self.ends, index)
    }

    /// Overwrites the keys with zeros (for secret keys, before dropping).
    pub(crate) fn wipe(&mut self) {
        self.arena.zeroize();
        wipe_slots(&mut self.table);
        wipe_numbers(&mut self.numbers);
    }
}

/// Adds key `k` at the end of the arena and returns its index.
fn append(arena: &mut Vec<u8>, ends: &mut Vec<usize>, k: &[u8]) -> u32 {
    // Fits: the caller bounds the input size so that counts fit in u32.
    let index = ends.len() as u32;
    arena.extend_from_slice(k);
    ends.push(arena.len());
    index
}

/// A table twice as large (at least 16) holding `table`'s slots.
fn doubled<T: Copy>(table: &HashTable<T>, hash: impl Fn(&T) -> u64) -> HashTable<T> {
    let mut larger = HashTable::with_capacity((2 * table.capacity()).max(16));
    for s in table.iter() {
        larger.insert_unique(hash(s), *s, &hash);
    }
    larger
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
        s.words.zeroize();
        s.tail.zeroize();
    }
}

/// Overwrites the packed digits of `table`'s slots with zeros.
fn wipe_numbers(table: &mut HashTable<NumberSlot>) {
    for s in table.iter_mut() {
        s.digits.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn numbers_keys_by_first_appearance(
            keys in prop::collection::vec(
                "[a-c]{0,3}|[a-c]{18,21}|[a-c]{24,31}|[0-2]{1,3}|[0-9]{7,18}|[0-9]{1,9}[/:a]",
                0..300,
            ),
        ) {
            // A secret set grows by hand (from no room at all), the other
            // as hashbrown and Vec do.
            for mut interner in [Interner::default(), Interner::secret()] {
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

    proptest! {
        #[test]
        fn digit_words_are_distinct_for_distinct_keys(
            a in "[0-9]{1,16}|[0-9]{0,15}[^0-9][0-9]{0,8}",
            b in "[0-9]{1,16}",
        ) {
            prop_assert_eq!(digits(a.as_bytes()).is_some(), a.bytes().all(|c| c.is_ascii_digit()));
            if a != b && let Some(x) = digits(a.as_bytes()) {
                prop_assert_ne!(Some(x), digits(b.as_bytes()));
            }
        }
    }

    #[test]
    fn loads_take_every_byte_of_short_parts() {
        let bytes = *b"\x01\x02\x03\x04\x05\x06\x07\x08";
        for n in 0..=8 {
            let mut want = [0u8; 8];
            want[..n].copy_from_slice(&bytes[..n]);
            assert_eq!(load(&bytes[..n]), u64::from_le_bytes(want), "{n} bytes");
        }
    }

    #[test]
    fn digit_words_pack_nibbles_and_refuse_other_keys() {
        assert_eq!(digits(b"0"), Some(0x1));
        assert_eq!(digits(b"09"), Some(0xa1));
        assert_eq!(digits(b"9780306406157"), Some(0x0008_6271_5714_198a));
        assert_eq!(digits(b"1234567890123456"), Some(0x7654_321a_9876_5432));
        // Leading zeros are kept: "7", "07" and "007" are three keys.
        let sevens: Vec<_> = [&b"7"[..], b"07", b"007"].map(digits).into();
        assert_eq!(sevens, [Some(0x8), Some(0x81), Some(0x811)]);
        for other in [
            &b""[..],
            b"12345678901234567",
            b"12/4",
            b"12:4",
            b"-1",
            b"1 2",
            b"1\xd9",
            b"\x00",
        ] {
            assert_eq!(digits(other), None, "{other:?}");
        }
    }

    #[test]
    fn digits_and_other_keys_share_one_numbering() {
        for mut interner in [Interner::default(), Interner::secret()] {
            let keys = [&b"123"[..], b"x", b"0123", b"123", b"x", b"9780306406157"];
            let got: Vec<u32> = keys.iter().map(|k| interner.intern(k)).collect();
            assert_eq!(got, [0, 1, 2, 0, 1, 3]);
            assert_eq!((interner.len(), interner.numbers()), (4, 3));
            let stored: Vec<&[u8]> = interner.iter().collect();
            assert_eq!(stored, [&b"123"[..], b"x", b"0123", b"9780306406157"]);
        }
    }

    #[test]
    fn wipe_clears_the_packed_digits_too() {
        let mut interner = Interner::secret();
        for k in [&b"4711"[..], b"A4711"] {
            interner.intern(k);
        }
        interner.wipe();
        assert!(interner.numbers.iter().all(|s| s.digits == [0, 0]));
        assert!(
            interner
                .table
                .iter()
                .all(|s| s.words == [0, 0] && s.tail == 0)
        );
        assert!(interner.arena.iter().all(|&b| b == 0));
    }
}
