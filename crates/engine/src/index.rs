//! Borrower-by-title incidence in compressed sparse row (CSR) form.

use std::sync::atomic::{AtomicU64, Ordering};

use loans::Loans;
use rayon::prelude::*;

/// Lists of items grouped by a dense key, in CSR form.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Csr<T = u32> {
    /// `offsets[g]..offsets[g + 1]` is the range of group `g` in `items`.
    pub offsets: Vec<usize>,
    /// Items of all groups, back to back.
    pub items: Vec<T>,
}

impl<T: Copy + Default + Send + Sync> Csr<T> {
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Items of group `g`.
    pub fn group(&self, g: usize) -> &[T] {
        &self.items[self.offsets[g]..self.offsets[g + 1]]
    }

    /// Builds the CSR of `groups` groups from the `(keys[i], value(i))`
    /// pairs, keeping the input order within each group.
    fn from_pairs(groups: usize, keys: &[u32], value: impl Fn(usize) -> T + Sync) -> Csr<T> {
        let offsets = offsets_of(groups, keys.len(), |rows, counts| {
            for &k in &keys[rows] {
                counts[k as usize] += 1;
            }
        });
        let items = scatter(
            &offsets,
            || keys.iter().enumerate().map(|(i, &k)| (k, i)),
            value,
        );
        Csr { offsets, items }
    }

    /// Rewrites every group in parallel: `f(g, items, scratch)` edits group
    /// `g` in place (with a reusable scratch buffer) and returns how many
    /// leading items to keep; the kept items are then packed together.
    fn retain_groups<F>(&mut self, f: F)
    where
        F: Fn(usize, &mut [T], &mut Vec<(u64, T)>) -> usize + Sync,
    {
        // Batches of whole groups with roughly BATCH items each: enough work to
        // amortise scheduling, small enough for heavy groups to balance.
        const BATCH: usize = 1 << 15;
        let groups = self.groups();
        let mut lens = vec![0usize; groups];
        {
            let mut batches = Vec::new();
            let mut items: &mut [T] = &mut self.items;
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
}

impl<T: Copy + Send + Sync> Csr<T> {
    /// The transpose by place: for each title `t` below `titles`, one
    /// `(start, end)` per group holding an item of title `t` (ascending by
    /// group), where `items[start..end]` are the items after it in that
    /// group. Only groups with at least `min_len` items take part; `None` if
    /// the items do not fit 32-bit places.
    ///
    /// For the pair kernel: a title's borrowers' later titles are read
    /// from these ranges directly, with no lookup of the borrower's offsets
    /// (a cache miss each) and no search for the title in its list.
    pub fn transpose_places(
        &self,
        titles: usize,
        min_len: usize,
        title: impl Fn(T) -> u32 + Sync,
    ) -> Option<Csr<(u32, u32)>> {
        u32::try_from(self.items.len()).ok()?;
        let offsets = offsets_of(titles, self.offsets.len() - 1, |groups, counts| {
            for g in groups {
                let group = &self.items[self.offsets[g]..self.offsets[g + 1]];
                if group.len() >= min_len {
                    for &x in group {
                        counts[title(x) as usize] += 1;
                    }
                }
            }
        });
        let title = &title;
        let items = scatter(
            &offsets,
            || {
                self.offsets
                    .windows(2)
                    .filter(|w| w[1] - w[0] >= min_len)
                    .flat_map(|w| {
                        let end = w[1] as u32;
                        (w[0]..w[1]).map(move |i| (title(self.items[i]), (i as u32 + 1, end)))
                    })
            },
            // Checked above: every place is below 2^32.
            |place| place,
        );
        Some(Csr { offsets, items })
    }
}

/// The most tasks [`scatter`] cuts the groups into: each task reads the whole
/// input, so more would cost more in reading than they save in writing.
const SCATTER_TASKS: usize = 4;

/// The items of a CSR whose group boundaries are `offsets`, placed by a
/// counting sort's scatter: `input()` yields every item's `(key, source)`
/// in input order, the item is `value(source)`, and each lands after the
/// earlier items of its group.
///
/// The scatter's writes land at random, a cache miss each, and were one
/// thread's work while the other core idled (a tenth of the engine's time
/// at 10M loans). So the groups are cut into up to [`SCATTER_TASKS`] ranges
/// of about equal item counts, each owning its slice of the items: every
/// task reads the whole input in order and writes only its own groups'
/// items, so the result is the one-thread result, whatever the thread count.
pub(crate) fn scatter<T, S, I>(
    offsets: &[usize],
    input: impl Fn() -> I + Sync,
    value: impl Fn(S) -> T + Sync,
) -> Vec<T>
where
    T: Copy + Default + Send,
    I: Iterator<Item = (u32, S)>,
{
    let groups = offsets.len() - 1;
    let total = offsets[groups];
    let tasks = rayon::current_num_threads().clamp(1, SCATTER_TASKS);
    // Group ranges cut where the running item count passes each task's share.
    let mut bounds = vec![0usize];
    for k in 1..tasks {
        let at = offsets.partition_point(|&o| o < total * k / tasks);
        if at > *bounds.last().unwrap_or(&0) && at < groups {
            bounds.push(at);
        }
    }
    bounds.push(groups);
    let mut items = vec![T::default(); total];
    let mut parts = Vec::with_capacity(bounds.len() - 1);
    let mut rest: &mut [T] = &mut items;
    for w in bounds.windows(2) {
        let (first, end) = (w[0], w[1]);
        let (part, next) = std::mem::take(&mut rest).split_at_mut(offsets[end] - offsets[first]);
        parts.push((first, end, part));
        rest = next;
    }
    parts.into_par_iter().for_each(|(first, end, part)| {
        let base = offsets[first];
        let mut cursor: Vec<usize> = offsets[first..end].iter().map(|&o| o - base).collect();
        for (key, source) in input() {
            let key = key as usize;
            if (first..end).contains(&key) {
                let c = &mut cursor[key - first];
                part[*c] = value(source);
                *c += 1;
            }
        }
    });
    items
}

/// Counts in parallel: `count(range, counts)` adds the input rows in
/// `range` (of `0..rows`) into a table of `bins` zeros, and the tables are
/// summed. One range a thread, so the tables cost `bins` counters a thread;
/// the counting's random increments were one thread's work while the other
/// core idled (about a sixth of the index build at 100M loans).
pub(crate) fn histogram<C>(
    bins: usize,
    rows: usize,
    count: impl Fn(std::ops::Range<usize>, &mut [C]) + Sync,
) -> Vec<C>
where
    C: Copy + Default + Send + Sync + std::ops::AddAssign,
{
    let threads = rayon::current_num_threads().max(1);
    let part = rows.div_ceil(threads).max(1);
    let mut tables: Vec<Vec<C>> = (0..rows.div_ceil(part))
        .into_par_iter()
        .map(|i| {
            let mut counts = vec![C::default(); bins];
            count(i * part..((i + 1) * part).min(rows), &mut counts);
            counts
        })
        .collect();
    let Some(mut total) = tables.pop() else {
        return vec![C::default(); bins];
    };
    for t in &tables {
        total
            .par_chunks_mut(1 << 16)
            .zip(t.par_chunks(1 << 16))
            .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b));
    }
    total
}

/// The `bins + 1` offsets of a CSR whose group sizes [`histogram`] counts
/// with `count`: group `g` is `offsets[g]..offsets[g + 1]`.
pub(crate) fn offsets_of(
    bins: usize,
    rows: usize,
    count: impl Fn(std::ops::Range<usize>, &mut [usize]) + Sync,
) -> Vec<usize> {
    let counts = histogram(bins, rows, count);
    let mut offsets = Vec::with_capacity(bins + 1);
    offsets.push(0);
    let mut sum = 0;
    offsets.extend(counts.iter().map(|&c| {
        sum += c;
        sum
    }));
    offsets
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

/// The tie-break of the cap among titles a borrower last borrowed in the same
/// month: FNV-1a-64 over the title id bytes, then SplitMix64's finaliser.
/// Depends on nothing but those bytes (not on the pseudonym, so not on the
/// key), and spreads titles evenly, so no range of ids is favoured.
pub(crate) fn tie_key(title_id: &str) -> u64 {
    splitmix64(fnv1a(&[title_id.as_bytes()]))
}

/// A borrower's title and the month they last borrowed it (months since the
/// input's first month), packed into one sortable word: title in the high half.
fn pack(title: u32, month: u32) -> u64 {
    (u64::from(title) << 32) | u64::from(month)
}

fn title_of(item: u64) -> u32 {
    (item >> 32) as u32
}

fn month_of(item: u64) -> u32 {
    item as u32
}

/// Per-borrower title sets after de-duplication and the cap.
#[derive(Debug)]
pub(crate) struct BorrowerIndex {
    /// Distinct borrowers in the input.
    pub borrowers: u64,
    /// Title sets by dense borrower id, each sorted ascending by title, each
    /// title packed with the month the borrower last borrowed it.
    sets: Csr<u64>,
    /// Distinct (capped) borrowers of each title.
    pub title_borrowers: Vec<u32>,
    /// The latest month in the input, relative to its first.
    pub last_month: u32,
    /// Borrowers with more distinct titles than the cap.
    pub capped_borrowers: u64,
    /// Borrower-title entries the cap left out.
    pub capped_titles: u64,
}

impl BorrowerIndex {
    /// Groups rows by borrower, de-duplicates each borrower's titles (keeping
    /// the latest month of each) and keeps at most `cap` of them: the most
    /// recently borrowed, ties broken by [`tie_key`] and then title id bytes.
    pub fn build(loans: &Loans, cap: u32) -> BorrowerIndex {
        // The loans' borrower indices are dense ids already (the dictionary
        // holds each pseudonym once, checked by `Loans::validate`); a
        // dictionary entry without rows in the window is an empty set.
        let ids = &loans.borrowers;
        let groups = loans.borrower_pseudonyms.len();
        let first = loans.months.iter().map(|m| m.index()).min().unwrap_or(0);
        let months = &loans.months;
        let titles = &loans.titles;
        // Month indices lie within years 1..=9999, so the difference fits u32.
        let mut sets = Csr::from_pairs(groups, ids, |i| {
            pack(titles[i], (months[i].index() - first) as u32)
        });
        let borrowers = sets.offsets.windows(2).filter(|w| w[0] < w[1]).count();
        let cap = cap as usize;
        let title_ids = &loans.title_ids;
        let (capped_borrowers, capped_titles) = (AtomicU64::new(0), AtomicU64::new(0));
        sets.retain_groups(|_, items, scratch| {
            items.sort_unstable();
            let len = dedup_latest(items);
            if len <= cap {
                return len;
            }
            capped_borrowers.fetch_add(1, Ordering::Relaxed);
            capped_titles.fetch_add((len - cap) as u64, Ordering::Relaxed);
            scratch.clear();
            scratch.extend(
                items[..len]
                    .iter()
                    .map(|&x| (tie_key(&title_ids[title_of(x) as usize]), x)),
            );
            // Latest month first; then the tie key; title ids are unique, so
            // this is a total order and the kept set never depends on how
            // ties fall.
            let by_recency = |x: &(u64, u64), y: &(u64, u64)| {
                month_of(y.1)
                    .cmp(&month_of(x.1))
                    .then(x.0.cmp(&y.0))
                    .then_with(|| {
                        title_ids[title_of(x.1) as usize].cmp(&title_ids[title_of(y.1) as usize])
                    })
            };
            scratch.select_nth_unstable_by(cap - 1, by_recency);
            for (slot, &(_, x)) in items.iter_mut().zip(&scratch[..cap]) {
                *slot = x;
            }
            items[..cap].sort_unstable();
            cap
        });
        // Below 2^32 each: a title's borrowers are distinct `u32` ids.
        let title_borrowers = histogram(
            title_ids.len(),
            sets.items.len(),
            |rows, counts: &mut [u32]| {
                for &x in &sets.items[rows] {
                    counts[title_of(x) as usize] += 1;
                }
            },
        );
        let last_month = sets
            .items
            .par_iter()
            .map(|&x| month_of(x))
            .max()
            .unwrap_or(0);
        BorrowerIndex {
            borrowers: borrowers as u64,
            sets,
            title_borrowers,
            last_month,
            capped_borrowers: capped_borrowers.into_inner(),
            capped_titles: capped_titles.into_inner(),
        }
    }

    /// Renames every title `t` in the sets to `new_of_old[t]` (below
    /// `titles`), dropping those mapped to [`DROPPED`], sorts each set by the
    /// new names, and packs each title with its month as narrowly as they
    /// fit ([`Lists`]); only [`Lists::Wide`] if `narrow` is false.
    pub fn relabel(mut self, new_of_old: &[u32], titles: usize, narrow: bool) -> Lists {
        self.sets.retain_groups(|_, items, _| {
            let mut w = 0;
            for r in 0..items.len() {
                let t = new_of_old[title_of(items[r]) as usize];
                if t != DROPPED {
                    items[w] = pack(t, month_of(items[r]));
                    w += 1;
                }
            }
            items[..w].sort_unstable();
            w
        });
        // Bits for every month up to the last (none when there is one month).
        let shift = u32::BITS - self.last_month.leading_zeros();
        if !narrow || (titles as u64) << shift > 1 << 32 {
            return Lists::Wide(self.sets);
        }
        // Title and month fit 32 bits together (checked above), and the
        // sets stay sorted: a set holds each title once.
        let items = self
            .sets
            .items
            .par_iter()
            .map(|&x| (title_of(x) << shift) | month_of(x))
            .collect();
        Lists::Narrow(
            Csr {
                offsets: std::mem::take(&mut self.sets.offsets),
                items,
            },
            shift,
        )
    }
}

/// The sets after [`BorrowerIndex::relabel`], each sorted by title: title
/// and month packed in one word, as the pair kernel reads them.
pub(crate) enum Lists {
    /// The title above `shift` bits of month: 4 bytes an item.
    Narrow(Csr<u32>, u32),
    /// The title in the high half, the month in the low: for more titles or
    /// months than fit 32 bits together.
    Wide(Csr<u64>),
}

/// Marks a title left out by [`BorrowerIndex::relabel`].
pub(crate) const DROPPED: u32 = u32::MAX;

/// Keeps one item per title of a sorted packed list, the one with the latest
/// month (the last of each run), in place; returns the new length.
fn dedup_latest(xs: &mut [u64]) -> usize {
    let mut w = 0;
    for r in 0..xs.len() {
        if w > 0 && title_of(xs[w - 1]) == title_of(xs[r]) {
            xs[w - 1] = xs[r];
        } else {
            xs[w] = xs[r];
            w += 1;
        }
    }
    w
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
    fn histogram_equals_one_threads_count_whatever_the_pool() {
        let keys: Vec<u32> = (0..10_007u32)
            .map(|i| splitmix64(u64::from(i)) as u32 % 97)
            .collect();
        for threads in [1, 2, 3, 8] {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            for rows in [0, 1, 5, keys.len()] {
                let got = pool.install(|| {
                    histogram(100, rows, |range, counts: &mut [usize]| {
                        for &k in &keys[range] {
                            counts[k as usize] += 1;
                        }
                    })
                });
                let mut w = vec![0usize; 100];
                for &k in &keys[..rows] {
                    w[k as usize] += 1;
                }
                assert_eq!(got, w, "{threads} threads, {rows} rows");
            }
        }
    }

    #[test]
    fn transpose_inverts_groups() {
        let values = [5, 1, 0, 1];
        let csr = Csr::from_pairs(3, &[2, 0, 2, 1], |i| values[i]);
        assert_eq!(csr.group(0), [1]);
        assert_eq!(csr.group(1), [1]);
        assert_eq!(csr.group(2), [5, 0]);
        // Items [1 | 1 | 5, 0]: each value's holders, as the places after
        // it in their group and the group's end.
        let t = csr.transpose_places(6, 1, |t| t).unwrap();
        assert_eq!(t.group(0), [(4, 4)]);
        assert_eq!(t.group(1), [(1, 1), (2, 2)]);
        assert_eq!(t.group(5), [(3, 4)]);
        let t = csr.transpose_places(6, 2, |t| t).unwrap();
        assert_eq!(t.group(1), [] as [(u32, u32); 0]);
        assert_eq!(t.group(5), [(3, 4)]);
    }

    /// The one-thread counting sort the parallel scatter must reproduce.
    fn naive_from_pairs(groups: usize, keys: &[u32]) -> Csr<u64> {
        let mut lists = vec![Vec::new(); groups];
        for (i, &k) in keys.iter().enumerate() {
            lists[k as usize].push(i as u64 * 7 + 1);
        }
        let mut offsets = vec![0];
        for l in &lists {
            offsets.push(offsets.last().unwrap() + l.len());
        }
        Csr {
            offsets,
            items: lists.concat(),
        }
    }

    proptest::proptest! {
        /// Building and transposing give the one-thread result, in input
        /// order within each group, at any thread count (1 to 5 threads:
        /// one scatter task, and up to `SCATTER_TASKS`, with groups empty,
        /// heavy or absent at the cuts).
        #[test]
        fn parallel_scatter_equals_one_thread(
            groups in 1usize..40,
            raw in proptest::collection::vec((0u32..40, 0u32..3), 0..300),
            threads in 1usize..6,
            min_len in 1usize..4,
        ) {
            // Every third key drawn from a small range, so some groups are heavy.
            let keys: Vec<u32> = raw
                .iter()
                .map(|&(k, heavy)| if heavy == 0 { k % 3 % groups as u32 } else { k % groups as u32 })
                .collect();
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let (csr, t) = pool.install(|| {
                let csr = Csr::from_pairs(groups, &keys, |i| i as u64 * 7 + 1);
                let titles = Csr::from_pairs(groups, &keys, |i| (i % 45) as u32);
                (csr, titles.transpose_places(45, min_len, |t| t).unwrap())
            });
            proptest::prop_assert_eq!(&csr, &naive_from_pairs(groups, &keys));
            // The transpose, naively: for each item value, the groups holding
            // it, ascending, each as the place after the item and the group's end.
            let titles = Csr::from_pairs(groups, &keys, |i| (i % 45) as u32);
            let mut want = vec![Vec::new(); 45];
            for g in 0..groups {
                let (start, end) = (titles.offsets[g], titles.offsets[g + 1]);
                if end - start >= min_len {
                    for i in start..end {
                        want[titles.items[i] as usize].push((i as u32 + 1, end as u32));
                    }
                }
            }
            for (v, holders) in want.iter().enumerate() {
                proptest::prop_assert_eq!(t.group(v), holders.as_slice());
            }
        }
    }

    #[test]
    fn retain_groups_packs_kept_items() {
        let values = [
            pack(3, 1),
            pack(3, 0),
            pack(4, 2),
            pack(9, 0),
            pack(8, 5),
            pack(9, 7),
        ];
        let mut csr = Csr::from_pairs(3, &[0, 0, 1, 2, 2, 2], |i| values[i]);
        csr.retain_groups(|_, xs, _| {
            xs.sort_unstable();
            dedup_latest(xs)
        });
        assert_eq!(csr.offsets, [0, 1, 2, 4]);
        assert_eq!(csr.items, [pack(3, 1), pack(4, 2), pack(8, 5), pack(9, 7)]);
    }
}
