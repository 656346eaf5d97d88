//! Larger skewed inputs: agreement with the reference and independence from
//! the rayon thread count.

use engine::{EngineParams, Related, build};
use pipeline::Measure;

use crate::data::{MEASURES, synthetic};
use crate::reference::reference;
use crate::{canonical, check_invariants};

fn in_pool(threads: usize, f: impl FnOnce() -> Related + Send) -> Related {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap()
        .install(f)
}

#[test]
fn output_is_identical_for_1_2_and_4_threads() {
    let loans = synthetic(150_000, 3_000, 11);
    for (measure, time_decay) in MEASURES.into_iter().flat_map(|m| [(m, 1.0), (m, 0.1)]) {
        let params = EngineParams {
            measure,
            min_support: 3,
            max_titles_per_borrower: 40,
            time_decay,
            max_related: 10,
        };
        let runs: Vec<Related> = [1, 2, 4]
            .into_iter()
            .map(|t| in_pool(t, || build(&loans, &params).unwrap()))
            .collect();
        assert!(!runs[0].pairs.is_empty());
        let tables: Vec<_> = [1, 2]
            .into_iter()
            .map(|t| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(t)
                    .build()
                    .unwrap()
                    .install(|| engine::count(&loans, &params).unwrap())
            })
            .collect();
        assert_eq!(tables[0], tables[1]);
        check_invariants(&loans, &params, &runs[0]);
        let bits = canonical(&runs[0]);
        for r in &runs[1..] {
            assert_eq!(canonical(r), bits, "{measure:?}");
            assert_eq!(r, &runs[0]);
        }
    }
}

#[test]
fn skewed_input_matches_reference() {
    // Enough rows for several parallel batches and capped heavy borrowers.
    let loans = synthetic(70_000, 100, 5);
    for (measure, time_decay) in [(Measure::Llr, 1.0), (Measure::Jaccard, 0.1)] {
        let params = EngineParams {
            measure,
            min_support: 4,
            max_titles_per_borrower: 25,
            time_decay,
            max_related: 7,
        };
        let fast = in_pool(2, || build(&loans, &params).unwrap());
        assert!(fast.pairs.len() > 100);
        assert_eq!(fast, reference(&loans, &params));
    }
}
