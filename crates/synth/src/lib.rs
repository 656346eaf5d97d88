//! Deterministic synthetic loans with a realistic shape.
//!
//! The generator stands in for a library's circulation export in tests,
//! fixtures and benchmarks, so that no real personal data is ever needed. It
//! writes the loans CSV the extractor reads (`borrower_id,title_id,loan_date,
//! branch,due_date`) and a manifestation-to-work mapping.
//!
//! The shape, documented in `docs/design.md#synthetic-data`: heavy-tailed borrower
//! activity, Zipf title popularity within genres, borrowers with one to three
//! favourite genres (so real co-borrowing structure exists), repeat loans, and
//! seasonal dates.
//!
//! Output is a pure function of [`SynthParams`]: loans are generated in
//! fixed-size chunks, each from its own ChaCha8 stream keyed by the seed and
//! selected by the chunk's index, in parallel with rayon and written in order.
//! The same parameters therefore give byte-identical output whatever the
//! thread count, and memory does not depend on the number of loans.

use std::io::{self, Write};

use loans::LoanMonth;
use rayon::prelude::*;

mod generate;
mod ids;
pub mod ils;
mod model;
mod zipf;

use generate::{BitSet, Generator, Plan};
use ids::{ID_SPACE, borrower_id_bytes, title_id_bytes, work_id_bytes};
use model::{Catalogue, Keys};

/// Header line of the loans CSV.
pub const LOANS_HEADER: &str = "borrower_id,title_id,loan_date,branch,due_date";

/// Header line of the works CSV.
pub const WORKS_HEADER: &str = "title_id,work_id";

/// Most borrowers accepted: keeps the used-borrower bitmap small (12.5 MB).
pub const MAX_BORROWERS: u32 = 100_000_000;

/// Most titles accepted: more than any public library's catalogue.
pub const MAX_TITLES: u32 = 10_000_000;

/// Most genres accepted.
pub const MAX_GENRES: u32 = 10_000;

/// Chunks generated in parallel before they are written: bounds memory.
const CHUNKS_PER_THREAD: usize = 4;

/// The shape of a synthetic data set; the same parameters give the same bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SynthParams {
    /// Seed of every random choice.
    pub seed: u64,
    /// Number of loans to generate.
    pub loans: u64,
    /// Number of registered borrowers; the least active may borrow nothing.
    pub borrowers: u32,
    /// Number of titles in the catalogue; unpopular ones may never be borrowed.
    pub titles: u32,
    /// Month of the first loans.
    pub first_month: LoanMonth,
    /// Number of months covered, the first included.
    pub months: u32,
    /// Number of genres that titles are grouped into.
    pub genres: u32,
}

/// Counts describing a generated loans file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynthStats {
    /// Loan rows written.
    pub loans: u64,
    /// Distinct borrowers with at least one loan.
    pub borrowers_used: u64,
    /// Distinct titles borrowed at least once.
    pub titles_used: u64,
    /// Bytes written, header included.
    pub bytes: u64,
}

/// Error for parameters that cannot be generated, or output that cannot be
/// written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SynthError {
    /// A count that must be positive is zero.
    #[error("{field} must be at least 1")]
    Zero {
        /// Name of the parameter.
        field: &'static str,
    },
    /// A count is above what the generator supports.
    #[error("{field} is {value}, above the maximum of {max}")]
    TooLarge {
        /// Name of the parameter.
        field: &'static str,
        /// The value given.
        value: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// There are more genres than titles, so some genre would be empty.
    #[error("{genres} genres cannot be filled by {titles} titles")]
    MoreGenresThanTitles {
        /// Genres asked for.
        genres: u32,
        /// Titles asked for.
        titles: u32,
    },
    /// The months, or the month after them that due dates spill into, run
    /// past December 9999.
    #[error("{months} months from {first_month} run past the calendar")]
    PastCalendar {
        /// The first month.
        first_month: LoanMonth,
        /// Number of months asked for.
        months: u32,
    },
    /// Writing the output failed.
    #[error("cannot write synthetic data")]
    Write(#[from] io::Error),
}

impl SynthParams {
    /// Sensible shape for a given loan count: about 25 loans per borrower,
    /// 40 per title and 125 titles per genre, clamped to supported sizes and
    /// at least 12 genres.
    pub fn for_loans(loans: u64, seed: u64, first_month: LoanMonth, months: u32) -> SynthParams {
        let clamp = |v: u64, lo: u32, hi: u32| v.clamp(u64::from(lo), u64::from(hi)) as u32;
        let borrowers = clamp(loans / 25, 10, 5_000_000);
        let titles = clamp(loans / 40, 24, 2_000_000);
        SynthParams {
            seed,
            loans,
            borrowers,
            titles,
            first_month,
            months,
            genres: (titles / 125).clamp(12, 48),
        }
    }

    /// Checks the parameters: positive counts within the supported maxima, no
    /// more genres than titles, and every month (plus the next, for due
    /// dates) within the calendar.
    pub fn validate(&self) -> Result<(), SynthError> {
        for (field, value) in [
            ("borrowers", self.borrowers),
            ("titles", self.titles),
            ("months", self.months),
            ("genres", self.genres),
        ] {
            if value == 0 {
                return Err(SynthError::Zero { field });
            }
        }
        for (field, value, max) in [
            ("borrowers", self.borrowers, MAX_BORROWERS),
            ("titles", self.titles, MAX_TITLES),
            ("genres", self.genres, MAX_GENRES),
        ] {
            if value > max {
                return Err(SynthError::TooLarge {
                    field,
                    value: u64::from(value),
                    max: u64::from(max),
                });
            }
        }
        if self.genres > self.titles {
            return Err(SynthError::MoreGenresThanTitles {
                genres: self.genres,
                titles: self.titles,
            });
        }
        let after_last = i32::try_from(self.months)
            .ok()
            .and_then(|m| self.first_month.plus(m).ok());
        if after_last.is_none() {
            return Err(SynthError::PastCalendar {
                first_month: self.first_month,
                months: self.months,
            });
        }
        Ok(())
    }

    /// The last month with loans.
    pub fn last_month(&self) -> Result<LoanMonth, SynthError> {
        self.validate()?;
        Ok(self
            .first_month
            .plus(self.months as i32 - 1)
            .expect("validated months fit the calendar"))
    }
}

/// The parameters of the committed demo data in `fixtures/demo/`: 50,000
/// loans by 2,000 borrowers of 1,500 titles in 12 genres, November 2024 to
/// October 2026, seed 2024.
pub fn demo_params() -> SynthParams {
    SynthParams {
        seed: 2024,
        loans: 50_000,
        borrowers: 2_000,
        titles: 1_500,
        first_month: LoanMonth::new(2024, 11).expect("2024-11 is a valid month"),
        months: 24,
        genres: 12,
    }
}

/// Writes CSV with header `borrower_id,title_id,loan_date,branch,due_date`
/// (the last two are noise that the extractor must drop). Same params =>
/// byte-identical output, whatever the thread count.
///
/// Loans come month by month, sorted by day within each chunk; dates are ISO
/// `YYYY-MM-DD` and never after the last month. Pass a buffered or large-write
/// friendly writer: output arrives in blocks of about a megabyte.
pub fn write_loans_csv<W: Write>(
    params: &SynthParams,
    mut out: W,
) -> Result<SynthStats, SynthError> {
    params.validate()?;
    let generator = Generator::new(params);
    let mut plan = Plan::new(params);
    let mut used_borrowers = BitSet::new(params.borrowers);
    let mut used_titles = BitSet::new(params.titles);
    let mut stats = SynthStats::default();
    let header = format!("{LOANS_HEADER}\n");
    out.write_all(header.as_bytes())?;
    stats.bytes = header.len() as u64;
    let batch = CHUNKS_PER_THREAD * rayon::current_num_threads().max(1);
    loop {
        let specs: Vec<_> = plan.by_ref().take(batch).collect();
        if specs.is_empty() {
            break;
        }
        // Chunks depend only on their spec, so the batch size (which follows
        // the thread count) changes speed and memory, never the bytes.
        let chunks: Vec<_> = specs.into_par_iter().map(|s| generator.chunk(s)).collect();
        for chunk in chunks {
            out.write_all(&chunk.csv)?;
            stats.bytes += chunk.csv.len() as u64;
            stats.loans += chunk.rows.len() as u64;
            for r in &chunk.rows {
                used_borrowers.insert(r.borrower);
                used_titles.insert(r.title);
            }
        }
    }
    out.flush()?;
    stats.borrowers_used = used_borrowers.len();
    stats.titles_used = used_titles.len();
    Ok(stats)
}

/// Writes a manifestation-to-work mapping CSV `title_id,work_id` for every
/// title: about 10% of titles are second editions or translations of a more
/// popular title of the same genre and share its work id. Returns the number
/// of rows written, header excluded.
pub fn write_works_csv<W: Write>(params: &SynthParams, mut out: W) -> Result<u64, SynthError> {
    params.validate()?;
    let keys = Keys::new(params.seed);
    let catalogue = Catalogue::new(params, &keys);
    let mut buf = Vec::with_capacity(1 << 16);
    buf.extend_from_slice(WORKS_HEADER.as_bytes());
    buf.push(b'\n');
    for j in 0..params.titles {
        buf.extend_from_slice(&title_id_bytes(keys.title_id, j));
        buf.push(b',');
        buf.extend_from_slice(&work_id_bytes(keys.work_id, catalogue.work_root(j)));
        buf.push(b'\n');
        if buf.len() >= 1 << 16 {
            out.write_all(&buf)?;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    out.flush()?;
    Ok(u64::from(params.titles))
}

/// The synthetic borrower id of borrower index `i`: `SYN` and nine digits from
/// a keyed bijection of `i`, distinct for distinct `i` below 10^9.
///
/// Index 0 is the most active borrower. Tests use this to check that ids never
/// leak past the extractor.
pub fn borrower_id(params: &SynthParams, i: u32) -> String {
    let b = borrower_id_bytes(Keys::new(params.seed).borrower_id, i);
    String::from_utf8_lossy(&b).into_owned()
}

/// The title id of title index `j`: an ISBN-13 lookalike (`978`, nine digits
/// from a keyed bijection of `j`, a valid check digit), distinct for distinct
/// `j` below 10^9.
pub fn title_id(params: &SynthParams, j: u32) -> String {
    let t = title_id_bytes(Keys::new(params.seed).title_id, j);
    String::from_utf8_lossy(&t).into_owned()
}

/// Largest index for which [`borrower_id`] and [`title_id`] are distinct.
pub const MAX_ID_INDEX: u32 = ID_SPACE - 1;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{HashMap, HashSet};

    #[test]
    fn validation_rejects_each_bad_parameter() {
        let ok = demo_params();
        ok.validate().unwrap();
        let zero = |f: fn(&mut SynthParams)| {
            let mut p = demo_params();
            f(&mut p);
            p.validate().unwrap_err()
        };
        assert!(matches!(
            zero(|p| p.borrowers = 0),
            SynthError::Zero { field: "borrowers" }
        ));
        assert!(matches!(
            zero(|p| p.titles = 0),
            SynthError::Zero { field: "titles" }
        ));
        assert!(matches!(
            zero(|p| p.months = 0),
            SynthError::Zero { field: "months" }
        ));
        assert!(matches!(
            zero(|p| p.genres = 0),
            SynthError::Zero { field: "genres" }
        ));
        assert!(matches!(
            zero(|p| p.titles = MAX_TITLES + 1),
            SynthError::TooLarge {
                field: "titles",
                ..
            }
        ));
        assert!(matches!(
            zero(|p| p.borrowers = u32::MAX),
            SynthError::TooLarge {
                field: "borrowers",
                ..
            }
        ));
        assert!(matches!(
            zero(|p| p.genres = 1_501),
            SynthError::MoreGenresThanTitles {
                genres: 1_501,
                titles: 1_500
            }
        ));
        let late = |months| SynthParams {
            first_month: LoanMonth::new(9999, 1).unwrap(),
            months,
            ..demo_params()
        };
        late(11).validate().unwrap();
        assert!(matches!(
            late(12).validate(),
            Err(SynthError::PastCalendar { months: 12, .. })
        ));
        assert!(matches!(
            late(u32::MAX).validate(),
            Err(SynthError::PastCalendar { .. })
        ));
        assert_eq!(
            zero(|p| p.months = 0).to_string(),
            "months must be at least 1"
        );
    }

    #[test]
    fn invalid_params_write_nothing() {
        let p = SynthParams {
            titles: 0,
            ..demo_params()
        };
        let mut out = Vec::new();
        assert!(write_loans_csv(&p, &mut out).is_err());
        assert!(write_works_csv(&p, &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn for_loans_scales_and_clamps() {
        let m = LoanMonth::new(2024, 1).unwrap();
        let p = SynthParams::for_loans(10_000_000, 1, m, 24);
        assert_eq!((p.borrowers, p.titles, p.genres), (400_000, 250_000, 48));
        p.validate().unwrap();
        let small = SynthParams::for_loans(0, 1, m, 1);
        assert_eq!((small.borrowers, small.titles, small.genres), (10, 24, 12));
        small.validate().unwrap();
        let huge = SynthParams::for_loans(u64::MAX, 1, m, 1);
        assert_eq!((huge.borrowers, huge.titles), (5_000_000, 2_000_000));
        huge.validate().unwrap();
        assert_eq!(SynthParams::for_loans(50_000, 9, m, 3).borrowers, 2_000);
    }

    #[test]
    fn last_month_of_the_demo_is_october_2026() {
        assert_eq!(demo_params().last_month().unwrap().to_string(), "2026-10");
    }

    #[test]
    fn works_file_matches_the_catalogue() {
        let p = demo_params();
        let mut out = Vec::new();
        assert_eq!(write_works_csv(&p, &mut out).unwrap(), 1_500);
        let text = String::from_utf8(out).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some(WORKS_HEADER));
        let rows: Vec<(&str, &str)> = lines.map(|l| l.split_once(',').unwrap()).collect();
        assert_eq!(rows.len(), 1_500);
        for (j, (t, _)) in rows.iter().enumerate() {
            assert_eq!(*t, title_id(&p, j as u32));
        }
        let mut per_work: HashMap<&str, u32> = HashMap::new();
        for (_, w) in &rows {
            assert!(w.len() == 10 && w.starts_with('W'));
            *per_work.entry(w).or_default() += 1;
        }
        let grouped = rows.len() - per_work.len();
        assert!(
            (100..220).contains(&grouped),
            "{grouped} titles share a work"
        );
        assert!(per_work.values().any(|&n| n >= 2));
    }

    /// Within-genre co-borrowing is well above what borrowing independently
    /// of genre would give.
    #[test]
    fn co_borrowing_concentrates_within_genres() {
        let p = demo_params();
        let g = Generator::new(&p);
        let mut titles_of: HashMap<u32, HashSet<u32>> = HashMap::new();
        for spec in Plan::new(&p) {
            for r in g.chunk(spec).rows {
                titles_of.entry(r.borrower).or_default().insert(r.title);
            }
        }
        let mut genre_loans = vec![0f64; p.genres as usize];
        let (mut same, mut cross) = (0u64, 0u64);
        for titles in titles_of.values() {
            let genres: Vec<u32> = titles.iter().map(|&t| g.catalogue.genre_of(t)).collect();
            for (a, &ga) in genres.iter().enumerate() {
                genre_loans[ga as usize] += 1.0;
                for &gb in &genres[a + 1..] {
                    if ga == gb {
                        same += 1;
                    } else {
                        cross += 1;
                    }
                }
            }
        }
        let total: f64 = genre_loans.iter().sum();
        let baseline: f64 = genre_loans.iter().map(|n| (n / total).powi(2)).sum();
        let observed = same as f64 / (same + cross) as f64;
        assert!(
            observed > 2.0 * baseline,
            "same-genre pair share {observed:.3} vs {baseline:.3} by chance"
        );
    }

    #[test]
    fn borrowers_mostly_borrow_their_favourite_genres() {
        let p = demo_params();
        let g = Generator::new(&p);
        let (mut fav, mut all) = (0u32, 0u32);
        for spec in Plan::new(&p).take(6) {
            for r in g.chunk(spec).rows {
                let profile = g.borrowers.profile(&g.catalogue, r.borrower);
                all += 1;
                fav += u32::from(
                    profile
                        .favourites()
                        .contains(&g.catalogue.genre_of(r.title)),
                );
            }
        }
        let share = f64::from(fav) / f64::from(all);
        // 85% by taste plus the popular-genre draws that land on a favourite.
        assert!((0.85..0.95).contains(&share), "favourite share {share:.3}");
    }
}
