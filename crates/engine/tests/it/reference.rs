//! A deliberately naive reference engine: hash sets of borrowers per title.

use std::collections::{BTreeSet, HashMap, HashSet};

use engine::{EngineParams, Related, ScoredPair, score};
use loans::{Loans, Pseudonym};

/// FNV-1a-64 then SplitMix64's finaliser, written out again from the
/// documented definition so the test pins the definition, not the code.
pub fn cap_key(p: &Pseudonym, title_id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in p.0.iter().chain(title_id.as_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Each borrower's capped set of distinct title indices.
pub fn capped_sets(loans: &Loans, cap: u32) -> HashMap<Pseudonym, BTreeSet<u32>> {
    let mut sets: HashMap<Pseudonym, BTreeSet<u32>> = HashMap::new();
    for (p, &t) in loans.pseudonyms.iter().zip(&loans.titles) {
        sets.entry(*p).or_default().insert(t);
    }
    for (p, set) in sets.iter_mut() {
        if set.len() > cap as usize {
            let mut keyed: Vec<(u64, &str, u32)> = set
                .iter()
                .map(|&t| {
                    let id = loans.title_ids[t as usize].as_str();
                    (cap_key(p, id), id, t)
                })
                .collect();
            keyed.sort();
            *set = keyed[..cap as usize].iter().map(|&(_, _, t)| t).collect();
        }
    }
    sets
}

/// The relations `build` must return, computed the slow, obvious way.
pub fn reference(loans: &Loans, params: &EngineParams) -> Related {
    let sets = capped_sets(loans, params.max_titles_per_borrower);
    let titles = loans.title_ids.len();
    let mut holders: Vec<HashSet<Pseudonym>> = vec![HashSet::new(); titles];
    for (p, set) in &sets {
        for &t in set {
            holders[t as usize].insert(*p);
        }
    }
    let borrowers = sets.len() as u64;
    let mut by_a: Vec<(String, Vec<ScoredPair>)> = Vec::new();
    for a in 0..titles {
        let mut list = Vec::new();
        for b in 0..titles {
            if a == b || loans.work_ids[a] == loans.work_ids[b] {
                continue;
            }
            let support = holders[a].intersection(&holders[b]).count() as u32;
            if support < params.min_support {
                continue;
            }
            list.push(ScoredPair {
                a: a as u32,
                b: b as u32,
                support,
                score: score(
                    params.measure,
                    u64::from(support),
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
