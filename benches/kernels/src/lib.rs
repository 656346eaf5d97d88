//! Inputs for the `kernels` micro-benchmarks and the pair totals that
//! `benches/national.sh` checks the peers against.
//!
//! Everything here goes through the crates' public APIs only, so the
//! benchmarks measure what the pipeline calls and keep compiling as the
//! internals change.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use engine::{Related, ScoredPair};
use loans::LoanMonth;

/// Seed of every benchmark input, as in `benches/lib.sh`.
pub const SEED: u64 = 7;

/// Unordered title pairs and the sum of their supports: the peers' checksum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairTotals {
    /// Unordered pairs with support >= k.
    pub pairs: u64,
    /// Sum of the pairs' distinct-borrower counts.
    pub support_sum: u64,
}

/// Folds directed relations into unordered pair totals; `None` unless every
/// relation has its reverse with the same support (true when no top-N cut
/// applied, which the totals need to be comparable).
pub fn unordered_totals(related: &Related) -> Option<PairTotals> {
    let support: HashMap<(u32, u32), u32> = related
        .pairs
        .iter()
        .map(|p| ((p.a, p.b), p.support))
        .collect();
    if support.len() != related.pairs.len() {
        return None;
    }
    let mut totals = PairTotals {
        pairs: 0,
        support_sum: 0,
    };
    for p in &related.pairs {
        if support.get(&(p.b, p.a)) != Some(&p.support) {
            return None;
        }
        if p.a < p.b {
            totals.pairs += 1;
            totals.support_sum += u64::from(p.support);
        }
    }
    Some(totals)
}

/// The first month of generated loans (`--first-month 2024-11`).
pub fn first_month() -> LoanMonth {
    LoanMonth::new(2024, 11).expect("2024-11 is a valid month")
}

/// Writes `loans` synthetic loans over 24 months (the benchmark's shape) to `out`.
pub fn write_synthetic_loans(loans: u64, out: impl Write) -> synth::SynthStats {
    let params = synth::SynthParams::for_loans(loans, SEED, first_month(), 24);
    synth::write_loans_csv(&params, out).expect("the benchmark's parameters are valid")
}

/// A pipeline reading `csv` with every stateful path under `dir` (only the
/// source settings matter to the benchmarks).
pub fn pipeline_for(csv: &Path, dir: &Path) -> pipeline::Pipeline {
    let text = format!(
        "[library]\nid = \"bench-library\"\n\
         [keys]\npseudonym = \"pseudonym.key\"\ntransfer = \"transfer.key\"\n\
         [source]\npath = {csv:?}\n\
         [transfer]\noutbox = \"outbox\"\n[store]\npath = \"store\"\n\
         [engine]\nwindow_end = \"2026-10\"\n[export]\npath = \"published\"\n"
    );
    pipeline::Pipeline::parse(&text, &dir.join("pipeline.toml"), dir)
        .expect("the benchmark's pipeline is valid")
}

/// Synthetic ranked relations: `titles` ISBN-like titles, each related to the
/// next `per_title` titles (cyclically) with falling scores, in the order
/// `publish::export` expects.
pub fn synthetic_related(titles: u32, per_title: u32) -> Related {
    let title_ids = (0..titles)
        .map(|i| format!("978{:010}", u64::from(i) * 7919 % 10_000_000_000))
        .collect::<Vec<_>>();
    let mut order: Vec<u32> = (0..titles).collect();
    order.sort_by(|&x, &y| title_ids[x as usize].cmp(&title_ids[y as usize]));
    let mut pairs = Vec::with_capacity(titles as usize * per_title as usize);
    for a in order {
        for r in 1..=per_title.min(titles.saturating_sub(1)) {
            pairs.push(ScoredPair {
                a,
                b: (a + r) % titles,
                support: 5 + per_title - r,
                score: 100.0 / f64::from(r),
            });
        }
    }
    Related {
        title_ids,
        borrowers: u64::from(titles) * 10,
        pairs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(a: u32, b: u32, support: u32) -> ScoredPair {
        ScoredPair {
            a,
            b,
            support,
            score: 1.0,
        }
    }

    fn related(pairs: Vec<ScoredPair>) -> Related {
        Related {
            title_ids: vec!["a".into(), "b".into(), "c".into()],
            borrowers: 10,
            pairs,
        }
    }

    #[test]
    fn symmetric_relations_fold_into_pairs() {
        let r = related(vec![
            pair(0, 1, 7),
            pair(0, 2, 5),
            pair(1, 0, 7),
            pair(2, 0, 5),
        ]);
        assert_eq!(
            unordered_totals(&r),
            Some(PairTotals {
                pairs: 2,
                support_sum: 12
            })
        );
    }

    #[test]
    fn a_missing_or_different_reverse_is_refused() {
        assert_eq!(unordered_totals(&related(vec![pair(0, 1, 7)])), None);
        assert_eq!(
            unordered_totals(&related(vec![pair(0, 1, 7), pair(1, 0, 6)])),
            None
        );
    }

    #[test]
    fn synthetic_related_exports() {
        let r = synthetic_related(50, 20);
        assert_eq!(r.pairs.len(), 50 * 20);
        let dir = tempfile::tempdir().unwrap();
        let meta = publish::ExportMeta {
            window_first: first_month(),
            window_last: first_month(),
            measure: pipeline::Measure::Llr,
            min_support: 5,
            max_titles_per_borrower: 100,
            time_decay: 1.0,
            max_related: 20,
            layout: pipeline::FeedLayout::Titles,
        };
        let out = publish::export(&r, &meta, dir.path(), &publish::Forbidden::new()).unwrap();
        assert!(
            matches!(
                out,
                publish::ExportOutcome::Published {
                    titles: 50,
                    pairs: 1000,
                    ..
                }
            ),
            "{out:?}"
        );
    }
}
