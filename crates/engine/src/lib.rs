//! Distinct-borrower title co-occurrence counts and association scores.
//!
//! [`build`] turns the loans of one scoring window into ranked "borrowers who
//! borrowed this also borrowed" relations: for every title, the titles that at
//! least `k` distinct borrowers also borrowed, scored by a chosen [`Measure`]
//! and cut to the best `N`. Only title indices, counts and scores leave this
//! crate; pseudonyms are used to tell borrowers apart and to make the
//! per-borrower cap deterministic, and never appear in an output or an error.
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

pub use measure::{llr, score};

use index::{BorrowerIndex, DROPPED};

/// Parameters of one engine run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EngineParams {
    /// Association measure used to score and rank pairs.
    pub measure: Measure,
    /// Minimum distinct borrowers of a pair (k, at least 2).
    pub min_support: u32,
    /// Most distinct titles one borrower contributes (the cap, at least 1).
    pub max_titles_per_borrower: u32,
    /// Most related titles kept per title (N, at least 1).
    pub max_related: u32,
}

impl From<&EngineSettings> for EngineParams {
    fn from(s: &EngineSettings) -> Self {
        EngineParams {
            measure: s.measure,
            min_support: s.min_support,
            max_titles_per_borrower: s.max_titles_per_borrower,
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
        if self.max_related == 0 {
            return Err(EngineError::ZeroMaxRelated);
        }
        if measure::try_score(self.measure, 1, 1, 1, 1).is_none() {
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
    /// Score of the pair under the run's measure.
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
    /// The number of related titles per title is zero.
    #[error("max_related must be at least 1")]
    ZeroMaxRelated,
    /// The measure is newer than this engine.
    #[error("measure {} is not supported by this engine", .0.name())]
    UnsupportedMeasure(Measure),
    /// More distinct borrowers than 32-bit ids can number.
    #[error("more than {} distinct borrowers", u32::MAX)]
    TooManyBorrowers,
    /// More titles than 32-bit indices can address.
    #[error("more than {} titles in the dictionary", u32::MAX)]
    TooManyTitles,
}

/// Scores the loans of one window: `loans` holds exactly that window (the caller scans the store for it).
///
/// Each distinct pseudonym is one borrower with the set of distinct titles
/// they borrowed, cut to `max_titles_per_borrower` titles chosen by a stable
/// hash of the pseudonym and title id. Pairs of distinct works held by at
/// least `min_support` borrowers are scored with `measure`, ranked per title
/// (score, then support, descending, then related title id ascending) and
/// cut to `max_related`. The result does not depend on the rayon thread
/// count, the row order or the dictionary order.
pub fn build(loans: &Loans, params: &EngineParams) -> Result<Related, EngineError> {
    params.validate()?;
    loans.validate()?;
    let titles = loans.title_ids.len();
    if titles > u32::MAX as usize {
        return Err(EngineError::TooManyTitles);
    }
    let k = params.min_support;

    let mut index = BorrowerIndex::build(loans, params.max_titles_per_borrower)?;
    let borrowers = index.borrowers;
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
    index.relabel(&new_of_old);
    drop(new_of_old);
    // Borrowers left with one title make no pairs: leave them out of the transpose.
    let holders = index.sets.transpose(frequent.len(), 2);
    let all_works = dense_work_ids(&loans.work_ids);
    let works: Vec<u32> = frequent.iter().map(|&t| all_works[t as usize]).collect();
    drop(all_works);
    let half = kernel::count_pairs(&index.sets, &holders, &works, k);
    drop(holders);
    drop(index);

    let (offsets, neighbours) = symmetrize(titles, half, &frequent);
    let order = dictionary_order(&loans.title_ids);
    let mut rank = vec![0u32; titles];
    for (r, &t) in order.iter().enumerate() {
        // r < titles <= u32::MAX, checked above.
        rank[t as usize] = r as u32;
    }
    let max_related = params.max_related as usize;
    let scorer = measure::Scorer::new(params.measure, borrowers, &title_borrowers);
    let ranked: Vec<Vec<ScoredPair>> = (0..titles)
        .into_par_iter()
        .with_max_len(256)
        .map(|a| {
            let list = &neighbours[offsets[a]..offsets[a + 1]];
            // `a` fits u32: the dictionary length was checked above.
            let a = a as u32;
            let mut scored: Vec<ScoredPair> = list
                .iter()
                .map(|&(b, support)| ScoredPair {
                    a,
                    b,
                    support,
                    score: scorer.score(a, b, support),
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
    Ok(Related {
        title_ids: loans.title_ids.clone(),
        borrowers,
        pairs,
    })
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
/// `neighbours[offsets[a]..offsets[a + 1]]` holds `(b, support)`. The kernel's
/// title `i` is the dictionary's title `names[i]`.
fn symmetrize(
    titles: usize,
    half: Vec<Vec<(u32, u32)>>,
    names: &[u32],
) -> (Vec<usize>, Vec<(u32, u32)>) {
    let mut offsets = vec![0usize; titles + 1];
    for (a, list) in half.iter().enumerate() {
        offsets[names[a] as usize + 1] += list.len();
        for &(b, _) in list {
            offsets[names[b as usize] as usize + 1] += 1;
        }
    }
    let mut sum = 0;
    for o in &mut offsets {
        sum += *o;
        *o = sum;
    }
    let mut cursor = offsets[..titles].to_vec();
    let mut neighbours = vec![(0u32, 0u32); sum];
    for (a, list) in half.into_iter().enumerate() {
        let a = names[a];
        for (b, support) in list {
            let b = names[b as usize];
            let ca = &mut cursor[a as usize];
            neighbours[*ca] = (b, support);
            *ca += 1;
            let cb = &mut cursor[b as usize];
            neighbours[*cb] = (a, support);
            *cb += 1;
        }
    }
    (offsets, neighbours)
}
