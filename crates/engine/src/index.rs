//! Borrower-by-title incidence in compressed sparse row (CSR) form.

use std::collections::HashMap;

use loans::{Loans, Pseudonym};
use rayon::prelude::*;

use crate::EngineError;

/// Lists of `u32` items grouped by a dense key, in CSR form.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Csr {
    /// `offsets[g]..offsets[g + 1]` is the range of group `g` in `items`.
    pub offsets: Vec<usize>,
    /// Items of all groups, back to back.
    pub items: Vec<u32>,
}

impl Csr {
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Items of group `g`.
    pub fn group(&self, g: usize) -> &[u32] {
        &self.items[self.offsets[g]..self.offsets[g + 1]]
    }

    /// Builds the CSR of `groups` groups from `(group, item)` pairs given as
    /// parallel slices, keeping the input order within each group.
    fn from_pairs(groups: usize, keys: &[u32], values: &[u32]) -> Csr {
        let mut offsets = vec![0usize; groups + 1];
        for &k in keys {
            offsets[k as usize + 1] += 1;
        }
        prefix_sum(&mut offsets);
        let mut cursor = offsets[..groups].to_vec();
        let mut items = vec![0u32; keys.len()];
        for (&k, &v) in keys.iter().zip(values) {
            let c = &mut cursor[k as usize];
            items[*c] = v;
            *c += 1;
        }
        Csr { offsets, items }
    }

    /// Rewrites every group in parallel: `f(g, items, scratch)` edits group
    /// `g` in place (with a reusable scratch buffer) and returns how many
    /// leading items to keep; the kept items are then packed together.
    fn retain_groups<F>(&mut self, f: F)
    where
        F: Fn(usize, &mut [u32], &mut Vec<(u64, u32)>) -> usize + Sync,
    {
        // Batches of whole groups with roughly BATCH items each: enough work to
        // amortise scheduling, small enough for heavy groups to balance.
        const BATCH: usize = 1 << 15;
        let groups = self.groups();
        let mut lens = vec![0usize; groups];
        {
            let mut batches = Vec::new();
            let mut items: &mut [u32] = &mut self.items;
            let mut lens_rest: &mut [usize] = &mut lens;
            let mut start = 0;
            while start < groups {
                let mut end = start + 1;
                while end < groups && self.offsets[end] - self.offsets[start] < BATCH {
                    end += 1;
                }
                let (chunk, rest) = items.split_at_mut(self.offsets[end] - self.offsets[start]);
                let (lens_chunk, lens_next) = lens_rest.split_at_mut(end - start);
                batches.push((start, chunk, lens_chunk));
                items = rest;
                lens_rest = lens_next;
                start = end;
            }
            let offsets = &self.offsets;
            batches
                .into_par_iter()
                .for_each(|(first, chunk, lens_chunk)| {
                    let mut scratch = Vec::new();
                    let base = offsets[first];
                    for (i, len) in lens_chunk.iter_mut().enumerate() {
                        let g = first + i;
                        let group = &mut chunk[offsets[g] - base..offsets[g + 1] - base];
                        *len = f(g, group, &mut scratch).min(group.len());
                    }
                });
        }
        let mut write = 0;
        for (g, &len) in lens.iter().enumerate() {
            let read = self.offsets[g];
            self.items.copy_within(read..read + len, write);
            self.offsets[g] = write;
            write += len;
        }
        self.offsets[groups] = write;
        self.items.truncate(write);
        // De-duplication, the cap and the frequency filter can drop much of
        // the input; give a large unused tail back.
        if write < self.items.capacity() / 4 * 3 {
            self.items.shrink_to_fit();
        }
    }

    /// The transpose: for each item value below `items_len`, the groups that
    /// hold it, ascending. Only groups with at least `min_len` items take part.
    pub fn transpose(&self, items_len: usize, min_len: usize) -> Csr {
        let mut offsets = vec![0usize; items_len + 1];
        for g in 0..self.groups() {
            let group = self.group(g);
            if group.len() >= min_len {
                for &t in group {
                    offsets[t as usize + 1] += 1;
                }
            }
        }
        prefix_sum(&mut offsets);
        let mut cursor = offsets[..items_len].to_vec();
        let mut items = vec![0u32; offsets[items_len]];
        for g in 0..self.groups() {
            let group = self.group(g);
            if group.len() >= min_len {
                for &t in group {
                    let c = &mut cursor[t as usize];
                    // Group indices fit u32: they are borrower ids.
                    items[*c] = g as u32;
                    *c += 1;
                }
            }
        }
        Csr { offsets, items }
    }
}

fn prefix_sum(counts: &mut [usize]) {
    let mut sum = 0;
    for c in counts {
        sum += *c;
        *c = sum;
    }
}

/// SplitMix64's finaliser: a bijective avalanche mix of 64 bits.
pub(crate) fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a over the concatenation of `parts`.
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    }
    h
}

/// The cap's ranking key of `title_id` for one borrower: FNV-1a-64 over the
/// 16 pseudonym bytes followed by the title id bytes, then SplitMix64's
/// finaliser. Depends on nothing but those bytes, so it is stable across
/// runs, platforms, thread counts, row orders and dictionary orders.
pub(crate) fn cap_key(pseudonym: &Pseudonym, title_id: &str) -> u64 {
    splitmix64(fnv1a(&[pseudonym.as_bytes(), title_id.as_bytes()]))
}

/// Per-borrower title sets after de-duplication and the cap.
#[derive(Debug)]
pub(crate) struct BorrowerIndex {
    /// Distinct borrowers in the input.
    pub borrowers: u64,
    /// Title sets by dense borrower id, each sorted ascending.
    pub sets: Csr,
    /// Distinct (capped) borrowers of each title.
    pub title_borrowers: Vec<u32>,
}

impl BorrowerIndex {
    /// Groups rows by borrower, de-duplicates each borrower's titles and keeps
    /// at most `cap` of them (those with the smallest [`cap_key`]).
    pub fn build(loans: &Loans, cap: u32) -> Result<BorrowerIndex, EngineError> {
        let (ids, pseudonyms) = dense_ids(&loans.pseudonyms)?;
        let mut sets = Csr::from_pairs(pseudonyms.len(), &ids, &loans.titles);
        drop(ids);
        let cap = cap as usize;
        let title_ids = &loans.title_ids;
        sets.retain_groups(|g, titles, scratch| {
            titles.sort_unstable();
            let len = dedup_sorted(titles);
            if len <= cap {
                return len;
            }
            let p = &pseudonyms[g];
            scratch.clear();
            scratch.extend(
                titles[..len]
                    .iter()
                    .map(|&t| (cap_key(p, &title_ids[t as usize]), t)),
            );
            // Title ids are unique, so (key, id) is a total order and the kept
            // set never depends on how ties between equal keys fall.
            let by_key = |x: &(u64, u32), y: &(u64, u32)| {
                x.0.cmp(&y.0)
                    .then_with(|| title_ids[x.1 as usize].cmp(&title_ids[y.1 as usize]))
            };
            scratch.select_nth_unstable_by(cap - 1, by_key);
            for (slot, &(_, t)) in titles.iter_mut().zip(&scratch[..cap]) {
                *slot = t;
            }
            titles[..cap].sort_unstable();
            cap
        });
        let mut title_borrowers = vec![0u32; title_ids.len()];
        for &t in &sets.items {
            title_borrowers[t as usize] += 1;
        }
        Ok(BorrowerIndex {
            borrowers: pseudonyms.len() as u64,
            sets,
            title_borrowers,
        })
    }

    /// Renames every title `t` in the sets to `new_of_old[t]`, dropping those
    /// mapped to [`DROPPED`], and sorts each set by the new names.
    pub fn relabel(&mut self, new_of_old: &[u32]) {
        self.sets.retain_groups(|_, titles, _| {
            let mut w = 0;
            for r in 0..titles.len() {
                let t = new_of_old[titles[r] as usize];
                if t != DROPPED {
                    titles[w] = t;
                    w += 1;
                }
            }
            titles[..w].sort_unstable();
            w
        });
    }
}

/// Marks a title left out by [`BorrowerIndex::relabel`].
pub(crate) const DROPPED: u32 = u32::MAX;

/// Removes consecutive duplicates in place, returning the new length.
fn dedup_sorted(xs: &mut [u32]) -> usize {
    if xs.is_empty() {
        return 0;
    }
    let mut w = 1;
    for r in 1..xs.len() {
        if xs[r] != xs[w - 1] {
            xs[w] = xs[r];
            w += 1;
        }
    }
    w
}

/// Maps every row's pseudonym to a dense borrower id (in order of first
/// appearance) and returns the ids with the distinct pseudonyms by id.
fn dense_ids(pseudonyms: &[Pseudonym]) -> Result<(Vec<u32>, Vec<Pseudonym>), EngineError> {
    let mut map: HashMap<u128, u32, loans::BuildPseudonymHasher> = HashMap::default();
    let mut distinct = Vec::new();
    let mut ids = Vec::with_capacity(pseudonyms.len());
    for p in pseudonyms {
        let next = distinct.len();
        let id = *map.entry(p.as_u128()).or_insert_with(|| {
            distinct.push(*p);
            next as u32
        });
        // Ids index u32 columns; a wrap would silently merge borrowers.
        if distinct.len() > u32::MAX as usize {
            return Err(EngineError::TooManyBorrowers);
        }
        ids.push(id);
    }
    Ok((ids, distinct))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_vectors() {
        // Published FNV-1a 64-bit test vectors.
        assert_eq!(fnv1a(&[b""]), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(&[b"a"]), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(&[b"foobar"]), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a(&[b"foo", b"bar"]), fnv1a(&[b"foobar"]));
    }

    #[test]
    fn splitmix64_matches_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (state advanced by the
        // golden gamma before each mix, as in the reference generator).
        assert_eq!(splitmix64(0), 0xe220_a839_7b1d_cdaf);
        assert_eq!(splitmix64(0x9e37_79b9_7f4a_7c15), 0x6e78_9e6a_a1b9_65f4);
    }

    #[test]
    fn transpose_inverts_groups() {
        let csr = Csr::from_pairs(3, &[2, 0, 2, 1], &[5, 1, 0, 1]);
        assert_eq!(csr.group(0), [1]);
        assert_eq!(csr.group(1), [1]);
        assert_eq!(csr.group(2), [5, 0]);
        let t = csr.transpose(6, 1);
        assert_eq!(t.group(0), [2]);
        assert_eq!(t.group(1), [0, 1]);
        assert_eq!(t.group(5), [2]);
        assert_eq!(csr.transpose(6, 2).group(1), [] as [u32; 0]);
    }

    #[test]
    fn retain_groups_packs_kept_items() {
        let mut csr = Csr::from_pairs(3, &[0, 0, 1, 2, 2, 2], &[3, 3, 4, 9, 8, 9]);
        csr.retain_groups(|_, xs, _| {
            xs.sort_unstable();
            dedup_sorted(xs)
        });
        assert_eq!(csr.offsets, [0, 1, 2, 4]);
        assert_eq!(csr.items, [3, 4, 8, 9]);
    }

    #[test]
    fn dense_ids_follow_first_appearance() {
        let p = |b| Pseudonym([b; 16]);
        let (ids, distinct) = dense_ids(&[p(7), p(3), p(7), p(9)]).unwrap();
        assert_eq!(ids, [0, 1, 0, 2]);
        assert_eq!(distinct, [p(7), p(3), p(9)]);
    }
}
