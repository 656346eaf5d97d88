//! Integration tests of the engine's public API.

mod data;
mod reference;

mod bench;
mod determinism;
mod examples;
mod properties;

use engine::Related;

/// The output keyed by title id strings, with scores as bits, so outputs of
/// differently ordered dictionaries compare byte for byte.
pub fn canonical(r: &Related) -> Vec<(String, String, u32, u64)> {
    r.pairs
        .iter()
        .map(|p| {
            (
                r.title_ids[p.a as usize].clone(),
                r.title_ids[p.b as usize].clone(),
                p.support,
                p.score.to_bits(),
            )
        })
        .collect()
}

/// Checks the invariants every output has: sorted by title id then rank,
/// support at least k, at most N per title, no pair within one work.
pub fn check_invariants(loans: &loans::Loans, params: &engine::EngineParams, r: &Related) {
    let mut per_a = std::collections::HashMap::<u32, u32>::new();
    for w in r.pairs.windows(2) {
        let (x, y) = (&w[0], &w[1]);
        let (xa, ya) = (&r.title_ids[x.a as usize], &r.title_ids[y.a as usize]);
        assert!(xa <= ya, "pairs not sorted by title id");
        if xa == ya {
            let ranked = x.score > y.score
                || (x.score == y.score
                    && (x.support > y.support
                        || (x.support == y.support
                            && r.title_ids[x.b as usize] < r.title_ids[y.b as usize])));
            assert!(ranked, "pairs of one title not ranked");
        }
    }
    for p in &r.pairs {
        assert!(p.support >= params.min_support);
        assert_ne!(p.a, p.b);
        assert_ne!(loans.work_ids[p.a as usize], loans.work_ids[p.b as usize]);
        *per_a.entry(p.a).or_default() += 1;
    }
    assert!(per_a.values().all(|&n| n <= params.max_related));
}
