//! Distinct-borrower title co-occurrence counts and association scores.
//!
//! [`build`] turns the loans of one scoring window into ranked "borrowers who
//! borrowed this also borrowed" relations: for every title, the titles that at
//! least `k` distinct borrowers also borrowed, scored by a chosen [`Measure`]
//! over their time-weighted co-borrowing and cut to the best `N`. Only title
//! indices, counts and scores leave this crate. Borrowers are told apart by
//! their index into the loans' pseudonym dictionary, which holds each
//! pseudonym once; the pseudonyms themselves are never read (so the output
//! does not depend on the key they were made with) and never appear in an
//! output or an error.
//!
//! It runs in two stages that can be reproduced separately: [`count`] makes
//! the plain per-pair statistics ([`PairTable`]: distinct-borrower support,
//! time-weighted co-borrowing, title totals), and [`rank`] scores and ranks
//! them. [`build`] is the two in a row.
//!
//! The algorithm (CSR incidence, its transpose and a Gustavson-style parallel
//! pair count) and its memory use are described in `docs/design.md`.

mod index;
mod kernel;
mod measure;

use std::collections::HashMap;

use loans::{Loans, LoansError};
use pipeline::{EngineSettings, MIN_SUPPORT_FLOOR, Measure};
use rayon::prelude::*;

pub use measure::{llr, score, score_weighted};

/// The fixed-point unit of [`PairStats::weight`]: one borrower who borrowed
/// both titles in the same month.
pub const WEIGHT_ONE: u64 = 1 << 16;

use index::{BorrowerIndex, DROPPED};

/// Parameters of one engine run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineParams {
    /// Association measure used to score and rank pairs.
    pub measure: Measure,
    /// Minimum distinct borrowers of a pair (k, at least 2).
    pub min_support: u32,
    /// Most distinct titles one borrower contributes, their most recent (the cap, at least 1).
    pub max_titles_per_borrower: u32,
    /// Time decay gamma in (0, 1]: a borrower's co-borrowing of two titles
    /// weighs gamma^(months between their loans of the two); 1 is no decay.
    pub time_decay: f64,
    /// Most related titles kept per title (N, at least 1).
    pub max_related: u32,
}

impl From<&EngineSettings> for EngineParams {
    fn from(s: &EngineSettings) -> Self {
        EngineParams {
            measure: s.measure,
            min_support: s.min_support,
            max_titles_per_borrower: s.max_titles_per_borrower,
            time_decay: s.time_decay,
            max_related: s.max_related,
        }
    }
}

impl EngineParams {
    /// Checks the parameters' ranges and that the measure is implemented.
    pub fn validate(&self) -> Result<(), EngineError> {
        if self.min_support < MIN_SUPPORT_FLOOR {
            return Err(EngineError::MinSupport {
                got: self.min_support,
                floor: MIN_SUPPORT_FLOOR,
            });
        }
        if self.max_titles_per_borrower == 0 {
            return Err(EngineError::ZeroCap);
        }
        if !(self.time_decay > 0.0 && self.time_decay <= 1.0) {
            return Err(EngineError::TimeDecay);
        }
        if self.max_related == 0 {
            return Err(EngineError::ZeroMaxRelated);
        }
        if measure::try_score(self.measure, 1.0, 1, 1, 1).is_none() {
            return Err(EngineError::UnsupportedMeasure(self.measure));
        }
        Ok(())
    }
}

/// One published relation: title `a` -> related title `b`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoredPair {
    /// The title the relation is for, an index into [`Related::title_ids`].
    pub a: u32,
    /// The related title, an index into [`Related::title_ids`].
    pub b: u32,
    /// Distinct borrowers whose capped title sets hold both `a` and `b`.
    pub support: u32,
    /// Score of the pair under the run's measure (of its time-weighted co-borrowing).
    pub score: f64,
}

/// The ranked relations of one scoring window.
#[derive(Clone, Debug, PartialEq)]
pub struct Related {
    /// Title dictionary for [`ScoredPair::a`] and [`ScoredPair::b`] (the input's title ids).
    pub title_ids: Vec<String>,
    /// Distinct borrowers in the input (the table total of LLR).
    pub borrowers: u64,
    /// Relations sorted by `title_ids[a]` (byte order), then rank; at most `max_related` per `a`.
    pub pairs: Vec<ScoredPair>,
}

/// Errors from [`build`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The loan columns do not fit together.
    #[error("invalid loans")]
    InvalidLoans(#[from] LoansError),
    /// The minimum support is below the floor that keeps a pair from singling out one borrower.
    #[error("min_support must be at least {floor}, got {got}")]
    MinSupport {
        /// The value given.
        got: u32,
        /// The smallest value accepted.
        floor: u32,
    },
    /// The per-borrower cap is zero.
    #[error("max_titles_per_borrower must be at least 1")]
    ZeroCap,
    /// The time decay is not in (0, 1].
    #[error("time_decay must be greater than 0 and at most 1")]
    TimeDecay,
    /// The number of related titles per title is zero.
    #[error("max_related must be at least 1")]
    ZeroMaxRelated,
    /// The measure is newer than this engine.
    #[error("measure {} is not supported by this engine", .0.name())]
    UnsupportedMeasure(Measure),
    /// More titles than 32-bit indices can address.
    #[error("more than {} titles in the dictionary", u32::MAX)]
    TooManyTitles,
    /// More distinct borrower-title entries in the window than 32-bit
    /// places can address.
    #[error("more than {} distinct borrower-title entries in the window", u32::MAX)]
    TooManyEntries,
}

/// The per-pair statistics of one unordered title pair: the plain table
/// that [`count`] makes and [`rank`] scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairStats {
    /// One title, an index into [`PairTable::title_ids`].
    pub a: u32,
    /// The other title (of another work).
    pub b: u32,
    /// Distinct borrowers whose capped title sets hold both (at least k).
    pub support: u32,
    /// Time-weighted co-borrowing: the sum over those borrowers of
    /// `decay(|month a - month b|)`, in units of [`WEIGHT_ONE`] (see [`decay_table`]).
    pub weight: u64,
}

/// The counting stage's output: everything the scores are a function of.
#[derive(Clone, Debug, PartialEq)]
pub struct PairTable {
    /// Title dictionary (the input's title ids).
    pub title_ids: Vec<String>,
    /// Distinct borrowers in the input.
    pub borrowers: u64,
    /// Distinct borrowers of each title in their capped sets (n_a).
    pub title_borrowers: Vec<u32>,
    /// Every unordered pair of titles of different works with support at
    /// least k, once, in no particular order.
    pub pairs: Vec<PairStats>,
    /// What k and the cap held back: counts only.
    pub withheld: Withheld,
}

/// What the privacy rules held back in one run, for the operator's private
/// records (the run log): counts only, none of which changes the output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Withheld {
    /// Borrowers with more distinct titles than `max_titles_per_borrower`.
    pub capped_borrowers: u64,
    /// Borrower-title entries the cap left out (each such borrower's titles
    /// beyond the cap).
    pub capped_titles: u64,
    /// Titles with at least one but fewer than k (capped) borrowers: in no pair.
    pub titles_below_k: u64,
    /// Unordered pairs of titles of different works, each title with at
    /// least k borrowers, that 1 to k - 1 borrowers hold together.
    pub pairs_below_k: u64,
}

/// The decay weights by month gap, in units of [`WEIGHT_ONE`]: entry g is
/// `round(2^16 * gamma^g)`, gamma^g taken as g successive multiplications in
/// binary64 (so every platform computes the same integers), for g up to
/// `max_gap` and only while it is above zero; a gap past the table weighs 0.
pub fn decay_table(gamma: f64, max_gap: u32) -> Vec<u32> {
    let mut table = vec![WEIGHT_ONE as u32];
    let mut power = 1.0f64;
    for _ in 0..max_gap {
        power *= gamma;
        // In [0, 2^16]: gamma is in (0, 1].
        let q = (power * WEIGHT_ONE as f64).round() as u32;
        if q == 0 {
            break;
        }
        table.push(q);
    }
    table
}

/// Scores the loans of one window: `loans` holds exactly that window (the caller scans the store for it).
///
/// [`count`] then [`rank`]. The result does not depend on the rayon thread
/// count, the row order, the dictionary order or the pseudonyms' key.
pub fn build(loans: &Loans, params: &EngineParams) -> Result<Related, EngineError> {
    Ok(build_with_stats(loans, params)?.0)
}

/// [`build`], also returning what k and the cap held back.
pub fn build_with_stats(
    loans: &Loans,
    params: &EngineParams,
) -> Result<(Related, Withheld), EngineError> {
    let table = count(loans, params)?;
    let withheld = table.withheld;
    Ok((rank(table, params), withheld))
}

/// The counting stage: the per-pair statistics of the window's loans.
///
/// Each entry of the pseudonym dictionary is one borrower, with the set of
/// distinct titles they borrowed, each at the last month they borrowed it,
/// cut to their `max_titles_per_borrower` most recent titles (ties by a hash
/// of the title id, then the id). For every pair of titles of different works held by at
/// least `min_support` of these sets it records the support, the
/// time-weighted co-borrowing and, for every title, its borrowers.
pub fn count(loans: &Loans, params: &EngineParams) -> Result<PairTable, EngineError> {
    count_packed(loans, params, true)
}

/// [`count`], with the kernel's items packed in 32 bits where they fit
/// if `narrow`, else always in 64 (the same table either way).
fn count_packed(
    loans: &Loans,
    params: &EngineParams,
    narrow: bool,
) -> Result<PairTable, EngineError> {
    params.validate()?;
    loans.validate()?;
    let titles = loans.title_ids.len();
    if titles > u32::MAX as usize {
        return Err(EngineError::TooManyTitles);
    }
    let k = params.min_support;

    let mut index = BorrowerIndex::build(loans, params.max_titles_per_borrower);
    let borrowers = index.borrowers;
    let (capped_borrowers, capped_titles) = (index.capped_borrowers, index.capped_titles);
    let mut decay = decay_table(params.time_decay, index.last_month);
    // Zeros up to the largest gap two of the sets' months can have, so the
    // kernel's lookup is always in the table: whether a gap is past its
    // end was a branch taken at random.
    decay.resize(index.last_month as usize + 1, 0);
    let title_borrowers = std::mem::take(&mut index.title_borrowers);
    // Only titles with at least k borrowers can be in a pair: the kernel sees
    // just those, renamed 0..F by ascending popularity. Each pair is counted
    // from its lower name, so a bestseller with many borrowers scans only the
    // few titles more popular than itself (tasks stay even), and the
    // accumulator's hot entries share cache lines at the top of a small array.
    let mut frequent: Vec<u32> = (0..titles as u32)
        .filter(|&t| title_borrowers[t as usize] >= k)
        .collect();
    frequent.sort_unstable_by_key(|&t| (title_borrowers[t as usize], t));
    let mut new_of_old = vec![DROPPED; titles];
    for (new, &old) in frequent.iter().enumerate() {
        new_of_old[old as usize] = new as u32;
    }
    let lists = index.relabel(&new_of_old, frequent.len(), narrow);
    drop(new_of_old);
    let all_works = dense_work_ids(&loans.work_ids);
    let works: Vec<u32> = frequent.iter().map(|&t| all_works[t as usize]).collect();
    drop(all_works);
    let below_k = std::sync::atomic::AtomicU64::new(0);
    let half = match lists {
        index::Lists::Narrow(sets, shift) => {
            count_sets(&sets, shift, frequent.len(), &works, k, &decay, &below_k)?
        }
        index::Lists::Wide(sets) => {
            count_sets(&sets, 32, frequent.len(), &works, k, &decay, &below_k)?
        }
    };
    let mut pairs = Vec::with_capacity(half.iter().map(Vec::len).sum());
    for (a, list) in half.into_iter().enumerate() {
        for (b, support, weight) in list {
            pairs.push(PairStats {
                a: frequent[a],
                b: frequent[b as usize],
                support,
                weight,
            });
        }
    }
    let titles_below_k = title_borrowers.iter().filter(|&&n| n > 0 && n < k).count() as u64;
    Ok(PairTable {
        title_ids: loans.title_ids.clone(),
        borrowers,
        title_borrowers,
        pairs,
        withheld: Withheld {
            capped_borrowers,
            capped_titles,
            titles_below_k,
            pairs_below_k: below_k.into_inner(),
        },
    })
}

/// The pair kernel over sets of items packed with `shift` bits of month,
/// through their transpose by place.
fn count_sets<T: kernel::Item>(
    sets: &index::Csr<T>,
    shift: u32,
    titles: usize,
    works: &[u32],
    k: u32,
    decay: &[u32],
    below_k: &std::sync::atomic::AtomicU64,
) -> Result<Vec<Vec<kernel::Counted>>, EngineError> {
    // Borrowers left with one title make no pairs: leave them out of the transpose.
    let holders = sets
        .transpose_places(titles, 2, |x| (x.into() >> shift) as u32)
        .ok_or(EngineError::TooManyEntries)?;
    Ok(kernel::count_pairs(
        &sets.items,
        shift,
        &holders,
        works,
        k,
        decay,
        below_k,
    ))
}

/// The scoring stage: scores every pair of `table` in both directions with
/// `params.measure` over its time-weighted co-borrowing (weight / [`WEIGHT_ONE`]
/// borrowers) and the title totals, ranks each title's related titles (score,
/// then support, descending, then related title id ascending) and keeps the
/// best `max_related`. Uses `measure` and `max_related` of `params` only.
pub fn rank(table: PairTable, params: &EngineParams) -> Related {
    let PairTable {
        title_ids,
        borrowers,
        title_borrowers,
        pairs,
        ..
    } = table;
    let titles = title_ids.len();
    // Independent: the dictionary's sort beside the pairs' placement.
    let ((offsets, neighbours), order) = rayon::join(
        || symmetrize(titles, &pairs),
        || dictionary_order(&title_ids),
    );
    drop(pairs);
    let mut rank = vec![0u32; titles];
    for (r, &t) in order.iter().enumerate() {
        // r < titles <= u32::MAX, checked by `count`.
        rank[t as usize] = r as u32;
    }
    let max_related = params.max_related as usize;
    let scorer = measure::Scorer::new(params.measure, borrowers, &title_borrowers);
    let ranked: Vec<Vec<ScoredPair>> = (0..titles)
        .into_par_iter()
        .with_max_len(256)
        .map(|a| {
            let list = &neighbours[offsets[a]..offsets[a + 1]];
            // `a` fits u32: the dictionary length was checked by `count`.
            let a = a as u32;
            let mut scored: Vec<ScoredPair> = list
                .iter()
                .map(|&(b, support, weight)| ScoredPair {
                    a,
                    b,
                    support,
                    // Exact: a division by a power of two.
                    score: scorer.score(a, b, weight as f64 / WEIGHT_ONE as f64),
                })
                .collect();
            // Related titles are distinct, so this is a total order and the
            // unstable sorts below are deterministic.
            let by_rank = |x: &ScoredPair, y: &ScoredPair| {
                y.score
                    .total_cmp(&x.score)
                    .then(y.support.cmp(&x.support))
                    .then(rank[x.b as usize].cmp(&rank[y.b as usize]))
            };
            if scored.len() > max_related {
                scored.select_nth_unstable_by(max_related - 1, by_rank);
                scored.truncate(max_related);
                // Held until all titles are ranked: keep only what is published.
                scored.shrink_to_fit();
            }
            scored.sort_unstable_by(by_rank);
            scored
        })
        .collect();
    drop(neighbours);

    let mut pairs = Vec::with_capacity(ranked.iter().map(Vec::len).sum());
    for &a in &order {
        pairs.extend_from_slice(&ranked[a as usize]);
    }
    Related {
        title_ids,
        borrowers,
        pairs,
    }
}

/// Dense ids for the work of each title, so the kernel compares integers.
fn dense_work_ids(work_ids: &[String]) -> Vec<u32> {
    let mut ids: HashMap<&str, u32> = HashMap::with_capacity(work_ids.len());
    work_ids
        .iter()
        .map(|w| {
            let next = ids.len() as u32;
            *ids.entry(w.as_str()).or_insert(next)
        })
        .collect()
}

/// Title indices sorted by title id bytes.
fn dictionary_order(title_ids: &[String]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..title_ids.len() as u32).collect();
    // Ids are unique (validated), so the unstable sort is deterministic.
    order.par_sort_unstable_by(|&x, &y| title_ids[x as usize].cmp(&title_ids[y as usize]));
    order
}

/// Both directions of every counted pair, grouped by title in CSR form:
/// `neighbours[offsets[a]..offsets[a + 1]]` holds `(b, support, weight)`,
/// in the order of `pairs` (pair `i`'s two entries come from sources `2i`
/// and `2i + 1`). Placed by [`index::scatter`]: one thread's random writes
/// were a second of a 100M-loan run with the other core idle.
fn symmetrize(titles: usize, pairs: &[PairStats]) -> (Vec<usize>, Vec<(u32, u32, u64)>) {
    let offsets = index::offsets_of(titles, pairs.len(), |rows, counts| {
        for p in &pairs[rows] {
            counts[p.a as usize] += 1;
            counts[p.b as usize] += 1;
        }
    });
    let neighbours = index::scatter(
        &offsets,
        || {
            pairs
                .iter()
                .enumerate()
                .flat_map(|(i, p)| [(p.a, 2 * i), (p.b, 2 * i + 1)])
        },
        |s| {
            let p = &pairs[s / 2];
            if s % 2 == 0 {
                (p.b, p.support, p.weight)
            } else {
                (p.a, p.support, p.weight)
            }
        },
    );
    (offsets, neighbours)
}

#[cfg(test)]
mod tests {
    use super::*;
    use loans::{LoanMonth, Pseudonym};

    /// Random loans: `titles` titles (every third sharing the work of the
    /// one before), `borrowers` borrowers, months drawn from `span` months
    /// from January 2000.
    fn loans(seed: u64, titles: u32, borrowers: u32, rows: usize, span: u32) -> Loans {
        let mut state = seed;
        let mut next = |n: u32| {
            state = index::splitmix64(state);
            (state % u64::from(n)) as u32
        };
        let mut loans = Loans {
            title_ids: (0..titles).map(|t| format!("t{t}")).collect(),
            work_ids: (0..titles)
                .map(|t| format!("w{}", if t % 3 == 2 { t - 1 } else { t }))
                .collect(),
            ..Loans::default()
        };
        let mut pseudonyms = Vec::new();
        for _ in 0..rows {
            let b = next(borrowers);
            let mut p = [7u8; 16];
            p[..4].copy_from_slice(&b.to_le_bytes());
            pseudonyms.push(Pseudonym(p));
            // Squared: a few popular titles.
            let t = next(titles);
            loans.titles.push(t * t / titles);
            let m = next(span);
            loans
                .months
                .push(LoanMonth::new(2000 + (m / 12) as i32, 1 + m % 12).unwrap());
        }
        loans.set_row_pseudonyms(&pseudonyms);
        loans
    }

    /// Items packed in 32 bits (title above as many bits as the months
    /// need, none for one month) count exactly what 64-bit items count.
    #[test]
    fn narrow_items_count_what_wide_items_count() {
        for (seed, span) in [(1, 1), (2, 2), (3, 13), (4, 120), (5, 1000), (6, 7)] {
            let loans = loans(seed, 60, 300, 4000, span);
            for (k, cap, decay) in [(2, 2000, 0.1), (3, 7, 1.0), (5, 30, 0.5)] {
                let params = EngineParams {
                    measure: Measure::Jaccard,
                    min_support: k,
                    max_titles_per_borrower: cap,
                    time_decay: decay,
                    max_related: 20,
                };
                let narrow = count_packed(&loans, &params, true).unwrap();
                let wide = count_packed(&loans, &params, false).unwrap();
                assert!(!narrow.pairs.is_empty(), "seed {seed}: no pairs to compare");
                assert_eq!(narrow, wide, "seed {seed}, span {span}, k {k}");
            }
        }
    }
}
