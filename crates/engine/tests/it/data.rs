//! Test inputs: proptest strategies for small loans and a seeded generator of
//! large, skewed ones.

use engine::EngineParams;
use loans::{LoanMonth, Loans, Pseudonym};
use pipeline::Measure;
use proptest::prelude::*;

pub const MEASURES: [Measure; 5] = [
    Measure::Llr,
    Measure::Jaccard,
    Measure::Cosine,
    Measure::Lift,
    Measure::Count,
];

pub fn month(m: u32) -> LoanMonth {
    LoanMonth::new(2024, m).expect("valid month")
}

/// Loans from `(borrower byte, title id)` rows; every title is its own work.
pub fn loans_from(rows: &[(u8, &str)]) -> Loans {
    let mut loans = Loans::default();
    let mut pseudonyms = Vec::with_capacity(rows.len());
    for &(p, t) in rows {
        let idx = match loans.title_ids.iter().position(|x| x == t) {
            Some(i) => i,
            None => {
                loans.title_ids.push(t.to_owned());
                loans.work_ids.push(t.to_owned());
                loans.title_ids.len() - 1
            }
        };
        pseudonyms.push(Pseudonym([p; 16]));
        loans.titles.push(idx as u32);
        loans.months.push(month(1));
    }
    loans.set_row_pseudonyms(&pseudonyms);
    loans
}

/// Small random loans: a shuffled dictionary of short distinct ids, some
/// titles sharing a work, a few borrowers with repeat loans.
pub fn arb_loans() -> impl Strategy<Value = Loans> {
    (1usize..10, 1usize..12)
        .prop_flat_map(|(titles, borrowers)| {
            (
                prop::collection::btree_set("[a-d]{1,3}", titles)
                    .prop_map(|s| s.into_iter().collect::<Vec<_>>())
                    .prop_shuffle(),
                prop::collection::vec(0u8..3, titles),
                prop::collection::vec(any::<[u8; 16]>(), borrowers),
                prop::collection::vec((0..borrowers, 0..titles, 1u32..=12), 0..80),
            )
        })
        .prop_map(|(title_ids, groups, pseudonyms, rows)| {
            let work_ids = title_ids
                .iter()
                .zip(&groups)
                .map(|(t, &g)| {
                    if g == 0 {
                        t.clone()
                    } else {
                        format!("work {g}")
                    }
                })
                .collect();
            // Shrinking can draw one pseudonym for two borrowers: they are
            // then one borrower, as in the store.
            let row_pseudonyms: Vec<Pseudonym> =
                rows.iter().map(|r| Pseudonym(pseudonyms[r.0])).collect();
            Loans::from_rows(
                &row_pseudonyms,
                rows.iter().map(|r| r.1 as u32).collect(),
                rows.iter().map(|r| month(r.2)).collect(),
                title_ids,
                work_ids,
            )
        })
}

/// Decays the properties run with: none, the default, a slow and a steep one.
pub const DECAYS: [f64; 4] = [1.0, 0.1, 0.7, 0.001];

pub fn arb_params() -> impl Strategy<Value = EngineParams> {
    (0usize..5, 2u32..4, 1u32..7, 0usize..4, 1u32..5).prop_map(|(m, k, cap, d, n)| EngineParams {
        measure: MEASURES[m],
        min_support: k,
        max_titles_per_borrower: cap,
        time_decay: DECAYS[d],
        max_related: n,
    })
}

/// SplitMix64, a tiny seeded generator so large inputs need no extra crate.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }
}

/// Roughly `rows` loans with library-like skew: power-law title popularity,
/// borrowers who mostly stay in one of 64 "genres", an exponential number of
/// loans per borrower with a 1% tail of very heavy borrowers, repeat loans,
/// and every tenth title a second edition of the one before.
pub fn synthetic(rows: usize, titles: usize, seed: u64) -> Loans {
    let mut rng = Rng::new(seed);
    let title_ids: Vec<String> = (0..titles).map(|t| format!("bib{t:08}")).collect();
    let work_ids = (0..titles)
        .map(|t| {
            let w = if t % 10 == 9 { t - 1 } else { t };
            format!("work{w:08}")
        })
        .collect();
    let genres = 64;
    let per_genre = titles.div_ceil(genres);
    let mut loans = Loans {
        borrowers: Vec::with_capacity(rows),
        borrower_pseudonyms: Vec::new(),
        titles: Vec::with_capacity(rows),
        months: Vec::with_capacity(rows),
        title_ids,
        work_ids,
    };
    let mut borrower = 0u64;
    while loans.len() < rows {
        borrower += 1;
        let mut p = [0u8; 16];
        p[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        p[8..].copy_from_slice(&borrower.to_le_bytes());
        // The counter makes every pseudonym distinct.
        let index = loans.borrower_pseudonyms.len() as u32;
        loans.borrower_pseudonyms.push(Pseudonym(p));
        let genre = rng.below(genres);
        let count = if rng.unit() < 0.01 {
            300 + rng.below(1200)
        } else {
            1 + (-rng.unit().max(1e-12).ln() * 18.0) as usize
        };
        for _ in 0..count.min(rows - loans.len()) {
            // u^3 puts most of the mass on low ranks: a few bestsellers.
            let skew = rng.unit().powi(3);
            let t = if rng.unit() < 0.8 {
                let base = genre * per_genre;
                (base + (skew * per_genre as f64) as usize).min(titles - 1)
            } else {
                (skew * titles as f64) as usize
            };
            loans.borrowers.push(index);
            loans.titles.push(t as u32);
            loans.months.push(month(1 + rng.below(12) as u32));
        }
    }
    loans
}
