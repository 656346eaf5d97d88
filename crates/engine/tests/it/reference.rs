//! A deliberately naive reference engine: hash sets of borrowers per title.

use std::collections::{BTreeMap, HashMap, HashSet};

use engine::{EngineParams, Related, ScoredPair, score_weighted};
use loans::{Loans, Pseudonym};

/// FNV-1a-64 of the title id bytes then SplitMix64's finaliser, written out
/// again from the documented definition so the test pins the definition, not
/// the code: the cap's tie-break among titles last borrowed in one month.
pub fn tie_key(title_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in title_id.as_bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The documented decay weight of a gap of `gap` months, in units of 2^16:
/// round(2^16 * gamma^gap), the power taken by repeated multiplication.
pub fn decay(gamma: f64, gap: i32) -> u64 {
    let mut p = 1.0f64;
    for _ in 0..gap {
        p *= gamma;
    }
    (p * 65536.0).round() as u64
}

/// Each borrower's capped set: distinct titles, each with the month index
/// they last borrowed it, the `cap` most recent kept (ties by tie key, then id).
pub fn capped_sets(loans: &Loans, cap: u32) -> HashMap<Pseudonym, BTreeMap<u32, i32>> {
    let mut sets: HashMap<Pseudonym, BTreeMap<u32, i32>> = HashMap::new();
    for ((p, &t), m) in loans.row_pseudonyms().zip(&loans.titles).zip(&loans.months) {
        let month = sets.entry(p).or_default().entry(t).or_insert(m.index());
        *month = (*month).max(m.index());
    }
    for set in sets.values_mut() {
        if set.len() > cap as usize {
            let mut keyed: Vec<(i32, u64, &str, u32)> = set
                .iter()
                .map(|(&t, &m)| {
                    let id = loans.title_ids[t as usize].as_str();
                    (-m, tie_key(id), id, t)
                })
                .collect();
            keyed.sort();
            let kept: HashSet<u32> = keyed[..cap as usize].iter().map(|k| k.3).collect();
            set.retain(|t, _| kept.contains(t));
        }
    }
    sets
}

/// Each title's borrowers among the capped sets.
fn holders(
    sets: &HashMap<Pseudonym, BTreeMap<u32, i32>>,
    titles: usize,
) -> Vec<HashSet<Pseudonym>> {
    let mut holders: Vec<HashSet<Pseudonym>> = vec![HashSet::new(); titles];
    for (p, set) in sets {
        for &t in set.keys() {
            holders[t as usize].insert(*p);
        }
    }
    holders
}

/// The relations `build` must return, computed the slow, obvious way.
pub fn reference(loans: &Loans, params: &EngineParams) -> Related {
    let sets = capped_sets(loans, params.max_titles_per_borrower);
    let titles = loans.title_ids.len();
    let holders = holders(&sets, titles);
    let borrowers = sets.len() as u64;
    let mut by_a: Vec<(String, Vec<ScoredPair>)> = Vec::new();
    for a in 0..titles {
        let mut list = Vec::new();
        for b in 0..titles {
            if a == b || loans.work_ids[a] == loans.work_ids[b] {
                continue;
            }
            let both: Vec<&Pseudonym> = holders[a].intersection(&holders[b]).collect();
            let support = both.len() as u32;
            if support < params.min_support {
                continue;
            }
            let weight: u64 = both
                .iter()
                .map(|p| {
                    let set = &sets[*p];
                    let gap = (set[&(a as u32)] - set[&(b as u32)]).abs();
                    decay(params.time_decay, gap)
                })
                .sum();
            list.push(ScoredPair {
                a: a as u32,
                b: b as u32,
                support,
                score: score_weighted(
                    params.measure,
                    weight as f64 / 65536.0,
                    holders[a].len() as u64,
                    holders[b].len() as u64,
                    borrowers,
                ),
            });
        }
        list.sort_by(|x, y| {
            y.score
                .partial_cmp(&x.score)
                .expect("scores are finite")
                .then(y.support.cmp(&x.support))
                .then_with(|| loans.title_ids[x.b as usize].cmp(&loans.title_ids[y.b as usize]))
        });
        list.truncate(params.max_related as usize);
        by_a.push((loans.title_ids[a].clone(), list));
    }
    by_a.sort_by(|x, y| x.0.cmp(&y.0));
    Related {
        title_ids: loans.title_ids.clone(),
        borrowers,
        pairs: by_a.into_iter().flat_map(|(_, l)| l).collect(),
    }
}

/// What k and the cap held back, counted the slow, obvious way:
/// (capped borrowers, capped borrower-title entries, titles below k, pairs below k).
// Used by the engine's tests only (the cli's tests include this file too).
#[allow(dead_code)]
pub fn reference_withheld(loans: &Loans, params: &EngineParams) -> (u64, u64, u64, u64) {
    let mut full: HashMap<Pseudonym, HashSet<u32>> = HashMap::new();
    for (p, &t) in loans.row_pseudonyms().zip(&loans.titles) {
        full.entry(p).or_default().insert(t);
    }
    let cap = params.max_titles_per_borrower as usize;
    let capped = full.values().filter(|s| s.len() > cap).count() as u64;
    let dropped = full
        .values()
        .map(|s| s.len().saturating_sub(cap) as u64)
        .sum();
    let sets = capped_sets(loans, params.max_titles_per_borrower);
    let titles = loans.title_ids.len();
    let holders = holders(&sets, titles);
    let k = params.min_support as usize;
    let titles_below_k = holders
        .iter()
        .filter(|h| !h.is_empty() && h.len() < k)
        .count() as u64;
    let mut pairs_below_k = 0;
    for a in 0..titles {
        for b in a + 1..titles {
            if loans.work_ids[a] == loans.work_ids[b]
                || holders[a].len() < k
                || holders[b].len() < k
            {
                continue;
            }
            let both = holders[a].intersection(&holders[b]).count();
            if both > 0 && both < k {
                pairs_below_k += 1;
            }
        }
    }
    (capped, dropped, titles_below_k, pairs_below_k)
}
