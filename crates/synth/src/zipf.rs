//! Zipf-Mandelbrot sampling by inverting a continuous CDF in O(1).

/// Samples ranks in `[0, n)` with weight about `(rank + q)^-s`.
///
/// The continuous density `(x + q)^-s` on `[0, n)` has a closed-form inverse
/// CDF, so sampling needs no table: memory stays constant however many
/// borrowers or titles there are, and the head keeps the discrete Zipf shape
/// closely enough for synthetic data.
#[derive(Clone, Debug)]
pub(crate) struct Zipf {
    n: u32,
    q: f64,
    /// `1 / (1 - s)`, or `None` for `s == 1` where the CDF is logarithmic.
    inv: Option<f64>,
    /// Transformed lower end of the support.
    lo: f64,
    /// Transformed width of the support.
    width: f64,
}

impl Zipf {
    /// A sampler over `n >= 1` ranks with exponent `s > 0` and offset `q > 0`.
    pub(crate) fn new(n: u32, s: f64, q: f64) -> Self {
        debug_assert!(n >= 1 && s > 0.0 && q > 0.0);
        let top = f64::from(n) + q;
        if (s - 1.0).abs() < 1e-9 {
            let lo = q.ln();
            Zipf {
                n,
                q,
                inv: None,
                lo,
                width: top.ln() - lo,
            }
        } else {
            let e = 1.0 - s;
            let lo = q.powf(e);
            Zipf {
                n,
                q,
                inv: Some(1.0 / e),
                lo,
                width: top.powf(e) - lo,
            }
        }
    }

    /// The rank for a uniform `u` in `[0, 1)`.
    pub(crate) fn rank(&self, u: f64) -> u32 {
        let t = self.lo + u * self.width;
        let x = match self.inv {
            None => t.exp(),
            Some(inv) => t.powf(inv),
        } - self.q;
        // `as` saturates, so rounding just below zero lands on rank 0.
        (x as u32).min(self.n - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn histogram(z: &Zipf, n: usize, draws: u32) -> Vec<u32> {
        let mut h = vec![0u32; n];
        for k in 0..draws {
            h[z.rank((f64::from(k) + 0.5) / f64::from(draws)) as usize] += 1;
        }
        h
    }

    #[test]
    fn harmonic_case_matches_the_log_cdf() {
        // With s = 1 and q = 1, rank 0 covers ln 2 / ln (n + 1) of the mass.
        let z = Zipf::new(100, 1.0, 1.0);
        let h = histogram(&z, 100, 100_000);
        let expected = 2f64.ln() / 101f64.ln();
        assert!((f64::from(h[0]) / 100_000.0 - expected).abs() < 0.002);
        assert!(h.windows(2).all(|w| w[0] >= w[1]), "weights must decrease");
    }

    #[test]
    fn general_case_is_decreasing_and_covers_every_rank() {
        let z = Zipf::new(50, 0.7, 1.0);
        let h = histogram(&z, 50, 200_000);
        assert!(h.iter().all(|&c| c > 0));
        assert!(h.windows(2).all(|w| w[0] >= w[1]));
        // Flatter than s = 1: the head holds less.
        let z1 = Zipf::new(50, 1.0, 1.0);
        assert!(histogram(&z1, 50, 200_000)[0] > h[0]);
    }

    #[test]
    fn a_single_rank_is_always_zero() {
        let z = Zipf::new(1, 1.3, 0.5);
        assert_eq!(z.rank(0.0), 0);
        assert_eq!(z.rank(0.999_999), 0);
    }

    proptest! {
        #[test]
        fn ranks_stay_in_range(n in 1u32..5_000_000, s in 0.3f64..2.0, q in 0.1f64..1000.0, u in 0f64..1.0) {
            prop_assert!(Zipf::new(n, s, q).rank(u) < n);
        }
    }
}
