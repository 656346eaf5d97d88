//! Dictionaries numbered in hash partitions, in parallel.
//!
//! Parsing puts each kept row's key (a canonical borrower id, a title) into
//! one of [`PARTS`] partitions by a hash of the key ([`Keys`], one set per
//! piece of a block). A [`Dictionary`] then numbers every partition's keys
//! in file order with an [`Interner`] of its own, the partitions in
//! parallel: a block is numbered with no sequential step. Before, each
//! piece had its own tables, merged in file order into one global table on
//! one thread: half
//! of extraction's CPU time at 100M loans, and its critical path (the
//! `dictionaries` kernel and `benches/RESULTS.md`, issue 15).
//!
//! A key's number is provisional (its partition and its index there) until
//! [`Dictionary::order`] sorts the keys by the first row that holds them:
//! the final numbering is first appearance in the file, whatever the
//! partitions' hash, the pieces or the number of threads.
//!
//! Secret keys (raw borrower ids) are wiped as soon as they are numbered,
//! and no buffer that held one is freed or reused without being wiped.

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use rayon::prelude::*;
use zeroize::Zeroize;

use crate::interner::{Interner, grow_wiping, load};

/// Bits of a provisional code that name the partition.
const PART_BITS: u32 = 6;
/// Number of partitions: in the `dictionaries` kernel (one thread, the
/// whole column at once), 256 and 1,024 were slower than 64.
const PARTS: usize = 1 << PART_BITS;
/// Most keys one partition numbers: the index fills a code's other bits.
/// A partition holds about a 64th of the keys, so this is reached only
/// with some 4 billion distinct keys, more rows than an extraction keeps.
const MAX_PART_KEYS: usize = 1 << (32 - PART_BITS);
/// Longest key copied into its entry; longer ones go to an arena.
const INLINE: usize = 16;

/// One row's key in its partition.
#[derive(Clone, Copy, Default)]
struct Entry {
    /// A key of up to [`INLINE`] bytes, zero-padded, as two little-endian
    /// words; for a longer key, its offset in [`Keys::long`] in the first.
    words: [u64; 2],
    len: u32,
    /// The row's index among its chunk's kept rows.
    row: u32,
}

impl zeroize::DefaultIsZeroes for Entry {}

impl Entry {
    /// The key's bytes: from the entry, copied to `buf`, or from `long`.
    fn key<'a>(&self, long: &'a [u8], buf: &'a mut [u8; INLINE]) -> &'a [u8] {
        let len = self.len as usize;
        if len <= INLINE {
            let (a, b) = buf.split_at_mut(8);
            a.copy_from_slice(&self.words[0].to_le_bytes());
            b.copy_from_slice(&self.words[1].to_le_bytes());
            &buf[..len]
        } else {
            // An offset this process wrote, below the arena's length.
            let start = self.words[0] as usize;
            &long[start..start + len]
        }
    }
}

/// Multipliers of the partition hash (odd, from the golden ratio and a
/// SplitMix64 constant).
const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xbf58_476d_1ce4_e5b9;

/// The partition of a short key, from its words and length: two
/// multiply-xorshift rounds, whose top bits depend on every input bit.
fn short_part(words: [u64; 2], len: usize) -> usize {
    let a = (words[0] ^ len as u64).wrapping_mul(K1);
    let b = (words[1] ^ a.rotate_left(29)).wrapping_mul(K2);
    (b >> (64 - PART_BITS)) as usize
}

/// The partition of a key longer than [`INLINE`].
fn long_part(k: &[u8]) -> usize {
    let mut h = (k.len() as u64).wrapping_mul(K2);
    for word in k.chunks(8) {
        h = (h.rotate_left(29) ^ load(word)).wrapping_mul(K1);
    }
    (h >> (64 - PART_BITS)) as usize
}

/// One chunk's keys, row by row, in their partitions; reused from block
/// to block, so that its buffers are not faulted in again.
pub(crate) struct Keys {
    parts: Vec<Vec<Entry>>,
    /// Keys longer than [`INLINE`], end to end.
    long: Vec<u8>,
    /// Secret keys: growth and clearing wipe what held them.
    secret: bool,
}

impl Keys {
    /// Empty partitions, for secret keys if `secret`.
    pub(crate) fn new(secret: bool) -> Self {
        Keys {
            parts: (0..PARTS).map(|_| Vec::new()).collect(),
            long: Vec::new(),
            secret,
        }
    }

    /// Adds key `k` of the chunk's kept row `row`.
    pub(crate) fn push(&mut self, k: &[u8], row: u32) {
        let (words, part) = if k.len() <= INLINE {
            let (a, b) = k.split_at(k.len().min(8));
            let words = [load(a), load(b)];
            (words, short_part(words, k.len()))
        } else {
            if self.secret && self.long.capacity() - self.long.len() < k.len() {
                let want = (self.long.len() + k.len()).max(2 * self.long.capacity());
                grow_wiping(&mut self.long, want);
            }
            let at = self.long.len() as u64;
            self.long.extend_from_slice(k);
            ([at, 0], long_part(k))
        };
        let entries = &mut self.parts[part];
        if self.secret && entries.len() == entries.capacity() {
            grow_entries(entries);
        }
        // A key is a field of a line, far shorter than 4 GiB.
        let len = k.len() as u32;
        entries.push(Entry { words, len, row });
    }

    /// Number of keys held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.parts.iter().map(Vec::len).sum()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        if self.secret {
            // Spare capacity never holds a key (growth and clearing wipe),
            // so the entries in use are all there is to wipe.
            for entries in &mut self.parts {
                entries.as_mut_slice().zeroize();
            }
            self.long.as_mut_slice().zeroize();
        }
    }
}

/// Moves secret entries to a buffer twice as large, wiping the old one,
/// which a reallocation would free as it is.
#[cold]
fn grow_entries(entries: &mut Vec<Entry>) {
    let mut larger = Vec::with_capacity((2 * entries.capacity()).max(64));
    larger.extend_from_slice(entries);
    std::mem::replace(entries, larger).zeroize();
}

/// More keys in one partition than a code can number.
#[derive(Debug)]
pub(crate) struct TooManyKeys;

/// A chunk's keys to number, and where its rows are.
pub(crate) struct Batch<'a> {
    /// The keys; cleared (and wiped, if secret) once numbered.
    pub(crate) keys: &'a mut Keys,
    /// Position of the chunk's first kept row among all kept rows so far:
    /// keys are ordered by the position of their first row.
    pub(crate) first_row: u64,
    /// Index of the chunk's first row in the codes written.
    pub(crate) out_row: usize,
}

/// One batch's entries of one partition.
struct Slice<'a> {
    entries: &'a mut Vec<Entry>,
    long: &'a [u8],
    first_row: u64,
    out_row: usize,
}

/// One partition of a dictionary: its keys numbered by first appearance,
/// and the position of each one's first row.
struct Part {
    interner: Interner,
    firsts: Vec<u64>,
}

/// The distinct keys of an extraction, in partitions, each key numbered
/// provisionally by a code: its index in its partition, shifted, and the
/// partition.
pub(crate) struct Dictionary {
    parts: Vec<Part>,
    secret: bool,
}

impl Dictionary {
    /// An empty dictionary, for secret keys if `secret`.
    pub(crate) fn new(secret: bool) -> Self {
        let interner = || match secret {
            true => Interner::secret(),
            false => Interner::default(),
        };
        Dictionary {
            parts: (0..PARTS)
                .map(|_| Part {
                    interner: interner(),
                    firsts: Vec::new(),
                })
                .collect(),
            secret,
        }
    }

    /// Numbers the keys of `batches` (consecutive chunks in file order), the
    /// partitions in parallel, and clears the batches' keys. With `out`,
    /// the code of row `r` of a batch is stored at `out[out_row + r]`.
    pub(crate) fn number(
        &mut self,
        batches: &mut [Batch<'_>],
        out: Option<&[AtomicU32]>,
    ) -> Result<(), TooManyKeys> {
        let secret = self.secret;
        // Each partition's entry lists, one per batch, in file order.
        let mut lists: Vec<Vec<Slice<'_>>> = (0..PARTS)
            .map(|_| Vec::with_capacity(batches.len()))
            .collect();
        for batch in batches.iter_mut() {
            let Keys { parts, long, .. } = &mut *batch.keys;
            for (list, entries) in lists.iter_mut().zip(parts.iter_mut()) {
                list.push(Slice {
                    entries,
                    long,
                    first_row: batch.first_row,
                    out_row: batch.out_row,
                });
            }
        }
        let full = self
            .parts
            .par_iter_mut()
            .zip(lists)
            .enumerate()
            .map(|(p, (part, list))| {
                let mut buf = [0u8; INLINE];
                for Slice {
                    entries,
                    long,
                    first_row,
                    out_row,
                } in list
                {
                    for e in entries.iter() {
                        let known = part.interner.len();
                        let index = part.interner.intern(e.key(long, &mut buf));
                        if index as usize == known {
                            part.firsts.push(first_row + u64::from(e.row));
                        }
                        if let Some(out) = out {
                            // `p` < PARTS; an index too large is refused below.
                            out[out_row + e.row as usize]
                                .store(index << PART_BITS | p as u32, Relaxed);
                        }
                    }
                    // Wiped while still in cache.
                    if secret {
                        entries.as_mut_slice().zeroize();
                    }
                    entries.clear();
                }
                buf.zeroize();
                part.interner.len() > MAX_PART_KEYS
            })
            .reduce(|| false, |a, b| a || b);
        for batch in batches.iter_mut() {
            if secret {
                batch.keys.long.as_mut_slice().zeroize();
            }
            batch.keys.long.clear();
        }
        if full { Err(TooManyKeys) } else { Ok(()) }
    }

    /// The final numbering: every key by the first row that holds it.
    pub(crate) fn order(&self) -> Order {
        let mut firsts: Vec<(u64, u32)> = self
            .parts
            .iter()
            .enumerate()
            .flat_map(|(p, part)| {
                // Indexes below MAX_PART_KEYS (`number` refuses more).
                (part.firsts.iter().enumerate())
                    .map(move |(i, &first)| (first, (i as u32) << PART_BITS | p as u32))
            })
            .collect();
        // A row holds one key: the first rows are distinct.
        firsts.par_sort_unstable();
        let codes: Vec<u32> = firsts.into_iter().map(|(_, code)| code).collect();
        let mut bases = Vec::with_capacity(PARTS);
        let mut total = 0;
        for part in &self.parts {
            bases.push(total);
            total += part.interner.len();
        }
        let mut numbers = vec![0u32; total];
        for (n, &code) in codes.iter().enumerate() {
            // Fewer keys than rows, and row counts fit in u32.
            numbers[bases[part_of(code)] + index_of(code)] = n as u32;
        }
        Order {
            codes,
            bases,
            numbers,
        }
    }

    /// The key of provisional code `code`.
    fn key(&self, code: u32) -> &[u8] {
        self.parts[part_of(code)]
            .interner
            .get(index_of(code) as u32)
    }

    /// The keys in the final order.
    pub(crate) fn keys<'a>(
        &'a self,
        order: &'a Order,
    ) -> impl ExactSizeIterator<Item = &'a [u8]> + 'a {
        order.codes.iter().map(|&code| self.key(code))
    }
}

impl Drop for Dictionary {
    fn drop(&mut self) {
        if self.secret {
            for part in &mut self.parts {
                part.interner.wipe();
            }
        }
    }
}

fn part_of(code: u32) -> usize {
    (code & (PARTS as u32 - 1)) as usize
}

fn index_of(code: u32) -> usize {
    (code >> PART_BITS) as usize
}

/// A dictionary's final numbering: keys in order of first appearance.
pub(crate) struct Order {
    /// Provisional codes in the final order.
    codes: Vec<u32>,
    /// Where each partition's numbers start in `numbers`.
    bases: Vec<usize>,
    /// The final number of each provisional code, partition by partition.
    numbers: Vec<u32>,
}

impl Order {
    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.codes.len()
    }

    /// Replaces the provisional codes of `column` by final numbers.
    pub(crate) fn renumber(&self, column: &mut [u32]) {
        column.par_chunks_mut(1 << 16).for_each(|rows| {
            for code in rows {
                *code = self.numbers[self.bases[part_of(*code)] + index_of(*code)];
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Numbers `chunks` of keys (a row each) through partitions in
    /// batches of `per_batch` chunks; returns the rows' final numbers and
    /// the keys in order.
    fn numbered(
        chunks: &[Vec<String>],
        per_batch: usize,
        secret: bool,
    ) -> (Vec<u32>, Vec<Vec<u8>>) {
        let mut dict = Dictionary::new(secret);
        let mut column = Vec::new();
        let mut first_row = 0u64;
        for group in chunks.chunks(per_batch.max(1)) {
            let mut keys: Vec<Keys> = group
                .iter()
                .map(|rows| {
                    let mut k = Keys::new(secret);
                    for (r, key) in rows.iter().enumerate() {
                        k.push(key.as_bytes(), r as u32);
                    }
                    assert_eq!(k.len(), rows.len());
                    k
                })
                .collect();
            let rows: usize = group.iter().map(Vec::len).sum();
            let out: Vec<AtomicU32> = (0..rows).map(|_| AtomicU32::new(u32::MAX)).collect();
            let mut batches = Vec::new();
            let mut out_row = 0;
            for (k, rows) in keys.iter_mut().zip(group) {
                batches.push(Batch {
                    keys: k,
                    first_row,
                    out_row,
                });
                first_row += rows.len() as u64;
                out_row += rows.len();
            }
            dict.number(&mut batches, Some(&out)).unwrap();
            assert!(keys.iter().all(|k| k.len() == 0 && k.long.is_empty()));
            column.extend(out.iter().map(|a| a.load(Relaxed)));
        }
        let order = dict.order();
        order.renumber(&mut column);
        let keys = dict.keys(&order).map(<[u8]>::to_vec).collect();
        (column, keys)
    }

    proptest! {
        #[test]
        fn numbering_is_first_appearance_however_the_rows_are_cut(
            chunks in prop::collection::vec(
                prop::collection::vec(
                    "[a-c]{0,3}|[a-c]{15,18}|[a-c]{24,40}|[0-9]{1,18}",
                    0..40,
                ),
                0..8,
            ),
            per_batch in 1usize..4,
            secret in any::<bool>(),
        ) {
            let all: Vec<&String> = chunks.iter().flatten().collect();
            let mut order: Vec<&String> = Vec::new();
            let expected: Vec<u32> = all
                .iter()
                .map(|k| match order.iter().position(|o| o == k) {
                    Some(i) => i as u32,
                    None => {
                        order.push(k);
                        order.len() as u32 - 1
                    }
                })
                .collect();
            let (column, keys) = numbered(&chunks, per_batch, secret);
            prop_assert_eq!(column, expected);
            let order: Vec<Vec<u8>> = order.iter().map(|k| k.as_bytes().to_vec()).collect();
            prop_assert_eq!(keys, order);
        }
    }

    #[test]
    fn keys_spread_over_the_partitions() {
        // Card numbers in sequence, the shape of many exports.
        let mut counts = [0usize; PARTS];
        for n in 0..64_000u32 {
            let k = format!("{:08}", 20_000_000 + n);
            let (a, b) = k.as_bytes().split_at(8);
            counts[short_part([load(a), load(b)], k.len())] += 1;
        }
        let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
        assert!(*min > 700 && *max < 1300, "{min}..{max}");
    }
}
