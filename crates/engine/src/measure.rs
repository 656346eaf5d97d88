//! Association measures over a 2x2 contingency table of distinct borrowers.

use pipeline::Measure;
use rayon::prelude::*;

/// Mahout's unnormalised Shannon entropy `xLogX(sum) - sum(xLogX(x))` with
/// `xLogX(0) = 0`.
///
/// It is evaluated as the mathematically equal `sum(x * ln(sum / x))`: the
/// literal form subtracts terms like `100000 * ln(100000)` from each other and
/// loses about ten significant bits to cancellation (it gives
/// 27.725887222397787 for `llr(10, 0, 0, 10)` where the exact value is
/// `40 ln 2 = 27.7258872223978124`), while this form is correctly rounded there
/// and at least as accurate on Mahout's other test tables.
fn entropy<const N: usize>(xs: [u64; N]) -> f64 {
    let sum = xs.iter().fold(0u64, |s, &x| s.saturating_add(x)) as f64;
    xs.iter()
        .filter(|&&x| x > 0)
        .map(|&x| {
            let x = x as f64;
            x * (sum / x).ln()
        })
        .sum()
}

/// Dunning's log-likelihood ratio of a 2x2 table, as Apache Mahout's `LogLikelihood.logLikelihoodRatio`.
///
/// `k11` counts events with both A and B, `k12` A without B, `k21` B without
/// A and `k22` neither. The ratio is two-sided: it is large for any strong
/// departure from independence. Sums saturate instead of overflowing.
pub fn llr(k11: u64, k12: u64, k21: u64, k22: u64) -> f64 {
    let row = entropy([k11.saturating_add(k12), k21.saturating_add(k22)]);
    let column = entropy([k11.saturating_add(k21), k12.saturating_add(k22)]);
    let matrix = entropy([k11, k12, k21, k22]);
    combine(row, column, matrix)
}

/// The ratio from its three entropies, with Mahout's guard.
fn combine(row: f64, column: f64, matrix: f64) -> f64 {
    // A negative difference is floating-point round-off.
    if row + column < matrix {
        0.0
    } else {
        2.0 * (row + column - matrix)
    }
}

/// [`entropy`] of non-negative reals; equal bit for bit to it on integers below 2^53.
fn entropy_f<const N: usize>(xs: [f64; N]) -> f64 {
    let sum: f64 = xs.iter().sum();
    xs.iter()
        .filter(|&&x| x > 0.0)
        .map(|&x| x * (sum / x).ln())
        .sum()
}

/// The score of a title pair under `measure`, from the borrowers of both (`both`), of each title (`a`, `b`) and in total.
///
/// Inputs are expected to be consistent (`both <= a`, `both <= b`,
/// `a + b - both <= borrowers`); differences saturate at zero otherwise. A
/// ratio whose denominator is zero scores 0. A measure this version does not
/// know (the enum is non-exhaustive) scores NaN; [`crate::build`] rejects it
/// up front with [`crate::EngineError::UnsupportedMeasure`].
pub fn score(measure: Measure, both: u64, a: u64, b: u64, borrowers: u64) -> f64 {
    score_weighted(measure, both as f64, a, b, borrowers)
}

/// [`score`] with a real co-borrowing `both` in place of the count: the
/// time-weighted co-borrowing of a pair (`docs/design.md`, "Measures").
/// Equal bit for bit to [`score`] when `both` is an integer.
pub fn score_weighted(measure: Measure, both: f64, a: u64, b: u64, borrowers: u64) -> f64 {
    try_score(measure, both, a, b, borrowers).unwrap_or(f64::NAN)
}

/// [`score_weighted`], or `None` for a measure this crate does not implement.
pub(crate) fn try_score(
    measure: Measure,
    both: f64,
    a: u64,
    b: u64,
    borrowers: u64,
) -> Option<f64> {
    let ratio = |num: f64, den: f64| if den == 0.0 { 0.0 } else { num / den };
    let k11 = both;
    let (na, nb) = (a as f64, b as f64);
    Some(match measure {
        Measure::Llr => {
            let row = entropy([a, borrowers.saturating_sub(a)]);
            let column = entropy([b, borrowers.saturating_sub(b)]);
            combine(row, column, matrix_entropy(k11, na, nb, borrowers as f64))
        }
        Measure::Jaccard => ratio(k11, (na + nb - k11).max(0.0)),
        Measure::Cosine => ratio(k11, (na * nb).sqrt()),
        Measure::Lift => ratio(k11 * borrowers as f64, na * nb),
        Measure::Count => k11,
        _ => return None,
    })
}

/// LLR's matrix entropy H(k11, k12, k21, k22) with k11 = `both`, k12 = a - k11,
/// k21 = b - k11, k22 = N - a - b + k11, differences saturating at zero.
fn matrix_entropy(both: f64, a: f64, b: f64, borrowers: f64) -> f64 {
    let k12 = (a - both).max(0.0);
    let k21 = (b - both).max(0.0);
    let k22 = (borrowers - (a + b - both).max(0.0)).max(0.0);
    entropy_f([both, k12, k21, k22])
}

/// Scores the pairs of one run, caching what depends on one title only.
pub(crate) struct Scorer<'a> {
    measure: Measure,
    borrowers: u64,
    /// Distinct borrowers of each title.
    title_borrowers: &'a [u32],
    /// For LLR, each title's row (or column) entropy; empty otherwise.
    margins: Vec<f64>,
}

impl<'a> Scorer<'a> {
    /// A scorer for `measure` over titles with the given borrower counts.
    pub fn new(measure: Measure, borrowers: u64, title_borrowers: &'a [u32]) -> Self {
        // LLR's row entropy is entropy(n_a, N - n_a) and its column entropy
        // entropy(n_b, N - n_b): computing them once per title saves half of
        // the logarithms, and gives bit-identical results to `llr` because the
        // arguments are the same integers.
        let margins = if measure == Measure::Llr {
            title_borrowers
                .par_iter()
                .map(|&n| {
                    let n = u64::from(n);
                    entropy([n, borrowers.saturating_sub(n)])
                })
                .collect()
        } else {
            Vec::new()
        };
        Scorer {
            measure,
            borrowers,
            title_borrowers,
            margins,
        }
    }

    /// The score of titles `a` and `b` with co-borrowing `both` (the
    /// time-weighted sum, in borrowers); equal to [`score_weighted`] on the
    /// same values.
    pub fn score(&self, a: u32, b: u32, both: f64) -> f64 {
        let n_a = u64::from(self.title_borrowers[a as usize]);
        let n_b = u64::from(self.title_borrowers[b as usize]);
        if self.measure == Measure::Llr {
            let matrix = matrix_entropy(both, n_a as f64, n_b as f64, self.borrowers as f64);
            combine(self.margins[a as usize], self.margins[b as usize], matrix)
        } else {
            score_weighted(self.measure, both, n_a, n_b, self.borrowers)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(actual: f64, expected: f64, tolerance: f64) -> bool {
        (actual - expected).abs() <= tolerance
    }

    // Values from Mahout's LogLikelihoodTest.testLogLikelihood; the first two
    // are 4 ln 2 and 40 ln 2 correctly rounded.
    #[test]
    fn llr_reproduces_mahout_test_values() {
        assert_eq!(llr(1, 0, 0, 1), 2.772588722239781);
        assert_eq!(llr(10, 0, 0, 10), 27.725887222397812);
        assert!(close(llr(5, 1995, 0, 100_000), 39.33052, 1e-5));
        assert!(close(llr(1000, 1995, 1000, 100_000), 4730.737, 1e-3));
        assert!(close(llr(1000, 1000, 1000, 100_000), 5734.343, 1e-3));
        assert!(close(llr(1000, 1000, 1000, 99_000), 5714.932, 1e-3));
    }

    #[test]
    fn llr_matches_mahout_literal_form_closely() {
        // Mahout's literal evaluation order, to show the two forms agree to
        // rounding error on a spread of tables.
        fn x_log_x(x: u64) -> f64 {
            if x == 0 {
                0.0
            } else {
                x as f64 * (x as f64).ln()
            }
        }
        fn literal(k11: u64, k12: u64, k21: u64, k22: u64) -> f64 {
            let e2 = |a: u64, b: u64| x_log_x(a + b) - x_log_x(a) - x_log_x(b);
            let row = e2(k11 + k12, k21 + k22);
            let col = e2(k11 + k21, k12 + k22);
            let mat = x_log_x(k11 + k12 + k21 + k22)
                - x_log_x(k11)
                - x_log_x(k12)
                - x_log_x(k21)
                - x_log_x(k22);
            if row + col < mat {
                0.0
            } else {
                2.0 * (row + col - mat)
            }
        }
        for t in [
            (3, 0, 1, 0),
            (7, 93, 40, 9860),
            (120, 3000, 2500, 900_000),
            (1, 1, 1, 1),
        ] {
            let (a, b) = (llr(t.0, t.1, t.2, t.3), literal(t.0, t.1, t.2, t.3));
            assert!((a - b).abs() <= 1e-9 * a.max(1.0), "{t:?}: {a} vs {b}");
        }
    }

    #[test]
    fn scorer_caches_llr_margins_without_changing_bits() {
        let n = [4u32, 5, 9, 1];
        let scorer = Scorer::new(Measure::Llr, 12, &n);
        for (a, b, both) in [(0u32, 1u32, 2u32), (1, 2, 5), (2, 0, 3), (3, 2, 1)] {
            let expected = score(
                Measure::Llr,
                u64::from(both),
                u64::from(n[a as usize]),
                u64::from(n[b as usize]),
                12,
            );
            assert_eq!(
                scorer.score(a, b, f64::from(both)).to_bits(),
                expected.to_bits()
            );
        }
    }

    #[test]
    fn weighted_scores_equal_counted_scores_on_integers() {
        for m in [
            Measure::Llr,
            Measure::Jaccard,
            Measure::Cosine,
            Measure::Lift,
            Measure::Count,
        ] {
            for (both, a, b, n) in [(2u64, 4u64, 5u64, 10u64), (7, 100, 40, 9999), (0, 3, 3, 3)] {
                assert_eq!(
                    score_weighted(m, both as f64, a, b, n).to_bits(),
                    score(m, both, a, b, n).to_bits()
                );
            }
            // The integer LLR as Mahout computes it, bit for bit.
            if m == Measure::Llr {
                assert_eq!(score(m, 7, 100, 40, 9999), llr(7, 93, 33, 9866));
            }
        }
        // A half-weighted pair scores between the unweighted scores of its floor and ceiling.
        let half = score_weighted(Measure::Jaccard, 2.5, 4, 5, 10);
        assert!(
            score(Measure::Jaccard, 2, 4, 5, 10) < half
                && half < score(Measure::Jaccard, 3, 4, 5, 10)
        );
    }

    #[test]
    fn llr_of_independent_counts_is_zero() {
        // Rows and columns proportional: no information, exactly or by the guard.
        assert!(llr(10, 20, 30, 60).abs() < 1e-9);
        assert_eq!(llr(0, 0, 0, 0), 0.0);
    }

    #[test]
    fn measures_follow_their_formulas() {
        // both = 2, n_a = 4, n_b = 5, borrowers = 10.
        assert_eq!(score(Measure::Count, 2, 4, 5, 10), 2.0);
        assert_eq!(score(Measure::Jaccard, 2, 4, 5, 10), 2.0 / 7.0);
        assert_eq!(score(Measure::Cosine, 2, 4, 5, 10), 2.0 / 20f64.sqrt());
        assert_eq!(score(Measure::Lift, 2, 4, 5, 10), 1.0);
        assert_eq!(score(Measure::Llr, 2, 4, 5, 10), llr(2, 2, 3, 3));
    }

    #[test]
    fn zero_denominators_score_zero() {
        for m in [Measure::Jaccard, Measure::Cosine, Measure::Lift] {
            assert_eq!(score(m, 0, 0, 0, 0), 0.0);
        }
    }

    proptest! {
        #[test]
        fn llr_is_non_negative_and_symmetric(k11 in 0u64..5000, k12 in 0u64..5000, k21 in 0u64..5000, k22 in 0u64..50_000) {
            let v = llr(k11, k12, k21, k22);
            prop_assert!(v >= 0.0 && v.is_finite());
            // Transposing the table swaps rows and columns.
            let t = llr(k11, k21, k12, k22);
            prop_assert!((v - t).abs() <= 1e-9 * v.max(1.0));
        }

        #[test]
        fn bounded_measures_stay_in_unit_interval(n_a in 1u64..1000, n_b in 1u64..1000, frac in 0.0f64..=1.0, extra in 0u64..1000) {
            let both = ((n_a.min(n_b) as f64) * frac) as u64;
            let borrowers = n_a + n_b - both + extra;
            for m in [Measure::Jaccard, Measure::Cosine] {
                let s = score(m, both, n_a, n_b, borrowers);
                prop_assert!((0.0..=1.0).contains(&s), "{m:?} gave {s}");
            }
            prop_assert!(score(Measure::Jaccard, both, n_a, n_b, borrowers) <= score(Measure::Cosine, both, n_a, n_b, borrowers) + 1e-12);
        }
    }
}
