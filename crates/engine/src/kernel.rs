//! Gustavson-style sparse counting of distinct-borrower title pairs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;

use crate::index::Csr;

/// A worker's dense accumulator over all titles plus the titles it touched,
/// so clearing costs the touched count rather than the title count.
///
/// Each title's count and weight share one 64-bit word ([`COUNT_BITS`] of
/// count below the weight), so an increment touches one cache line: with a
/// million frequent titles (100M loans) the accumulator outgrows the L2
/// cache, and two arrays cost two misses an increment. A borrower adds at
/// most [`crate::WEIGHT_ONE`] = 2^16 of weight, so 65,534 borrowers' weights
/// fit the 48 bits many times over; the rare pair held by more than 65,535
/// borrowers keeps counting in `overflow`.
#[derive(Default)]
struct Scratch {
    acc: Vec<u64>,
    touched: Vec<u32>,
    overflow: HashMap<u32, (u32, u64)>,
}

/// Bits of count in an accumulator word; the weight is above them.
const COUNT_BITS: u32 = 16;
/// The count part of an accumulator word, and the count that overflows.
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// One counted pair of the kernel's titles: the related title, its
/// distinct-borrower support and its time-weighted co-borrowing (fixed point,
/// [`crate::WEIGHT_ONE`] is one borrower at a gap of zero months).
pub(crate) type Counted = (u32, u32, u64);

/// Titles per rayon leaf task. Work per title is very skewed (a bestseller's
/// borrowers bring thousands of candidates), so leaves stay small enough for
/// work stealing to even the load out.
const TITLES_PER_TASK: usize = 32;

/// Borrower lists fetched ahead per batch; see [`warm_up`].
const GATHER: usize = 32;

/// A borrower's title packed with the month they last borrowed it: the
/// title above `shift` bits of month, so that a list sorted by item is
/// sorted by title. `u32` when both fit (one array of 4 bytes an item for
/// the kernel to fetch, where a title array and a month array were 8),
/// `u64` with the month in the low half otherwise.
pub(crate) trait Item: Copy + Into<u64> + Send + Sync {}
impl Item for u32 {}
impl Item for u64 {}

/// Reads every cache line of each borrower list in a batch before any is used.
///
/// Each list sits at a random place in memory, so fetching it is a cache
/// miss; walked one by one, each miss waits behind the previous list's
/// data-dependent loop. These loads are independent, so the core overlaps
/// them, and the counting loop that follows finds the lists in cache.
fn warm_up<T: Item>(items: &[T], ranges: &[(u32, u32)]) {
    let per_line = 64 / std::mem::size_of::<T>();
    let mut sum = 0u64;
    for &(start, end) in ranges {
        let (start, end) = (start as usize, end as usize);
        // One read per 64-byte line the list may span.
        for i in (start..end).step_by(per_line) {
            sum ^= items[i].into();
        }
        if start < end {
            sum ^= items[end - 1].into();
        }
    }
    std::hint::black_box(sum);
}

/// For each title `a`, the titles `b > a` of another work that at least
/// `min_support` borrowers hold together with `a`, with that count and the
/// sum over those borrowers of `decay[|month of a - month of b|]` (0 past the
/// table's end), in the order first met.
///
/// `items` holds each borrower's sorted title list, back to back, each
/// title packed with its month above `shift` bits ([`Item`]), and
/// `holders`, for each title, one range of `items` per borrower of it: the
/// titles that borrower holds after it (its transpose by place,
/// [`Csr::transpose_places`]); the item just before the range is the title
/// itself. `works` gives each title's dense work id. Pairs of titles of different
/// works held together by fewer than `min_support` borrowers are added to
/// `below_k` (a count for the operator's records; no output depends on it).
pub(crate) fn count_pairs<T: Item>(
    items: &[T],
    shift: u32,
    holders: &Csr<(u32, u32)>,
    works: &[u32],
    min_support: u32,
    decay: &[u32],
    below_k: &AtomicU64,
) -> Vec<Vec<Counted>> {
    let titles = holders.groups();
    let month_mask = (1u64 << shift) - 1;
    // One scratch per worker of the current pool, allocated on first use: a
    // per-task accumulator would zero #titles counters thousands of times.
    let scratches: Vec<Mutex<Scratch>> = (0..rayon::current_num_threads())
        .map(|_| Mutex::new(Scratch::default()))
        .collect();
    (0..titles)
        .into_par_iter()
        .with_max_len(TITLES_PER_TASK)
        .map(|a| {
            let borrowers = holders.group(a);
            // A title with fewer than k such borrowers makes no pair, but
            // its pairs below k are counted for `below_k` all the same (few
            // borrowers: little work).
            if borrowers.is_empty() {
                return Vec::new();
            }
            let slot = rayon::current_thread_index().unwrap_or(0) % scratches.len();
            // Workers have distinct indices, so the lock is uncontended; no rayon
            // call happens under it, so a worker can never steal a task that
            // waits for its own lock.
            let mut guard = scratches[slot]
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Scratch {
                acc,
                touched,
                overflow,
            } = &mut *guard;
            if acc.len() != titles {
                acc.clear();
                acc.resize(titles, 0);
                // Room for every title: each increment writes its title one
                // past the touched ones and keeps it only if it was new, a
                // store instead of a branch the core cannot predict.
                touched.clear();
                touched.resize(titles + 1, 0);
            }
            let mut n_touched = 0usize;
            for ranges in borrowers.chunks(GATHER) {
                warm_up(items, ranges);
                for &(start, end) in ranges {
                    let (start, end) = (start as usize, end as usize);
                    // The item just before the range is `a` itself.
                    let month_a = (items[start - 1].into() & month_mask) as u32;
                    for &x in &items[start..end] {
                        let x: u64 = x.into();
                        // Below the title count, which fits u32.
                        let b = (x >> shift) as u32;
                        let month_b = (x & month_mask) as u32;
                        let gap = month_a.abs_diff(month_b) as usize;
                        let w = decay.get(gap).copied().unwrap_or(0);
                        let v = &mut acc[b as usize];
                        touched[n_touched] = b;
                        n_touched += usize::from(*v == 0);
                        if *v & COUNT_MASK == COUNT_MASK {
                            let e = overflow.entry(b).or_insert((0, 0));
                            e.0 += 1;
                            e.1 += u64::from(w);
                        } else {
                            // The count stays below the mask, so no carry
                            // reaches the weight; at most 65,534 earlier
                            // borrowers of at most 2^16 each: below 2^48.
                            *v += 1 | (u64::from(w) << COUNT_BITS);
                        }
                    }
                }
            }
            let mut out = Vec::new();
            let mut withheld = 0u64;
            let work = works[a];
            for &b in &touched[..n_touched] {
                let v = std::mem::take(&mut acc[b as usize]);
                // Below 2^16, so it fits.
                let mut c = (v & COUNT_MASK) as u32;
                let mut w = v >> COUNT_BITS;
                if u64::from(c) == COUNT_MASK
                    && let Some((more, more_w)) = overflow.remove(&b)
                {
                    c += more;
                    w += more_w;
                }
                if works[b as usize] != work {
                    if c >= min_support {
                        out.push((b, c, w));
                    } else {
                        withheld += 1;
                    }
                }
            }
            if withheld > 0 {
                below_k.fetch_add(withheld, Ordering::Relaxed);
            }
            out
        })
        .collect()
}
