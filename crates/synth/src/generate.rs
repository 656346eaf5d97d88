//! Chunked loan generation: a plan of fixed-size chunks, month by month, and
//! the pure function that turns one chunk into CSV bytes.

use loans::LoanMonth;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::SynthParams;
use crate::ids::{borrower_id_bytes, put_digits, title_id_bytes};
use crate::model::{BRANCHES, Borrowers, Catalogue, Keys, TASTE};

/// Loans per chunk. Part of the output's definition: each chunk draws from
/// its own random stream, so changing this changes the generated data.
pub(crate) const CHUNK_LOANS: u64 = 1 << 14;

/// Relative loan volume of each calendar month, January first: a summer
/// holiday peak, a quiet December and September.
const SEASON: [u64; 12] = [106, 100, 104, 98, 95, 97, 112, 108, 94, 99, 97, 90];

/// Probability that a loan is a deliberate repeat of a comfort read.
const REPEAT: f64 = 0.03;
/// Probability that a visit goes on to one more loan (geometric visit size).
const VISIT_MORE: f64 = 0.55;
/// Most loans in one visit.
const VISIT_MAX: usize = 8;
/// Probability that a Sunday draw is kept: branches open fewer hours then.
const SUNDAY_KEEP: f64 = 0.3;
/// Probability that a borrower uses their home branch.
const HOME_BRANCH: f64 = 0.9;

/// One chunk of the plan: `len` loans in month `first_month + month_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkSpec {
    /// Position of the chunk in the whole output; selects its random stream.
    pub(crate) index: u64,
    /// Month of every loan of the chunk, counted from the first month.
    pub(crate) month_offset: u32,
    /// Number of loans.
    pub(crate) len: u32,
}

/// Splits the loans over the months by seasonal weight and each month into
/// chunks, lazily, so that planning 100M loans takes no memory.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    loans: u64,
    first_month: LoanMonth,
    months: u32,
    total_weight: u128,
    month: u32,
    weight_before: u128,
    month_len: u64,
    done_in_month: u64,
    next_index: u64,
}

impl Plan {
    /// The plan of valid parameters.
    pub(crate) fn new(params: &SynthParams) -> Self {
        let mut plan = Plan {
            loans: params.loans,
            first_month: params.first_month,
            months: params.months,
            total_weight: 0,
            month: 0,
            weight_before: 0,
            month_len: 0,
            done_in_month: 0,
            next_index: 0,
        };
        plan.total_weight = (0..params.months).map(|m| plan.weight(m)).sum();
        plan.month_len = plan.share(plan.weight(0)) - plan.share(0);
        plan
    }

    fn weight(&self, m: u32) -> u128 {
        let calendar = (self.first_month.month() - 1 + m % 12) % 12;
        u128::from(SEASON[calendar as usize])
    }

    /// Loans in months before the point where `extra` weight has been added
    /// to the months already passed: integer arithmetic, so the monthly counts
    /// add up to exactly the requested total.
    fn share(&self, extra: u128) -> u64 {
        (u128::from(self.loans) * (self.weight_before + extra) / self.total_weight) as u64
    }
}

impl Iterator for Plan {
    type Item = ChunkSpec;

    fn next(&mut self) -> Option<ChunkSpec> {
        while self.month < self.months {
            if self.done_in_month < self.month_len {
                let len = CHUNK_LOANS.min(self.month_len - self.done_in_month);
                self.done_in_month += len;
                let spec = ChunkSpec {
                    index: self.next_index,
                    month_offset: self.month,
                    len: len as u32,
                };
                self.next_index += 1;
                return Some(spec);
            }
            self.weight_before += self.weight(self.month);
            self.month += 1;
            self.done_in_month = 0;
            if self.month < self.months {
                self.month_len = self.share(self.weight(self.month)) - self.share(0);
            }
        }
        None
    }
}

/// One generated loan before formatting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Row {
    /// Day of the month, from 1.
    pub(crate) day: u8,
    /// Index into [`BRANCHES`].
    pub(crate) branch: u8,
    /// Days until the loan is due.
    pub(crate) period: u8,
    /// Borrower index.
    pub(crate) borrower: u32,
    /// Title index.
    pub(crate) title: u32,
}

/// A generated chunk: its CSV lines and the rows they were made from.
#[derive(Clone, Debug)]
pub(crate) struct Chunk {
    pub(crate) csv: Vec<u8>,
    pub(crate) rows: Vec<Row>,
}

/// Everything a chunk needs, shared read-only by the worker threads.
#[derive(Clone, Debug)]
pub(crate) struct Generator {
    pub(crate) keys: Keys,
    pub(crate) catalogue: Catalogue,
    pub(crate) borrowers: Borrowers,
    first_month: LoanMonth,
}

/// Days in a month, by the difference of the first days of it and the next.
fn days_in_month(m: LoanMonth) -> u32 {
    let next = match m.plus(1) {
        Ok(n) => n.first_day_since_epoch(),
        // December of year 9999: the next month is not representable, but
        // every December has 31 days.
        Err(_) => return 31,
    };
    (next - m.first_day_since_epoch()) as u32
}

/// `YYYY-MM-` of a month.
fn month_prefix(m: LoanMonth) -> [u8; 8] {
    let mut p = *b"0000-00-";
    put_digits(&mut p[..4], m.year() as u32);
    put_digits(&mut p[5..7], m.month());
    p
}

impl Generator {
    /// The generator of valid parameters.
    pub(crate) fn new(params: &SynthParams) -> Self {
        let keys = Keys::new(params.seed);
        let catalogue = Catalogue::new(params, &keys);
        let borrowers = Borrowers::new(params, &keys);
        Generator {
            keys,
            catalogue,
            borrowers,
            first_month: params.first_month,
        }
    }

    /// The loans of one chunk, a pure function of the parameters and the
    /// spec, sorted by day like a circulation system's export.
    pub(crate) fn chunk(&self, spec: ChunkSpec) -> Chunk {
        let mut rng = ChaCha8Rng::from_seed(self.keys.chacha);
        rng.set_stream(spec.index);
        let month = self
            .first_month
            .plus(spec.month_offset as i32)
            .expect("validated parameters keep every month in the calendar");
        let dim = days_in_month(month);
        let first_day = month.first_day_since_epoch();
        let len = spec.len as usize;
        let cat = &self.catalogue;
        let mut rows: Vec<Row> = Vec::with_capacity(len);
        while rows.len() < len {
            let borrower = self.borrowers.pick(rng.random());
            let profile = self.borrowers.profile(cat, borrower);
            let day = loop {
                let d = rng.random_range(0..dim);
                // 1970-01-01 was a Thursday, so Sunday is 3 days past the
                // week boundary.
                let sunday = (first_day + d as i32 + 3).rem_euclid(7) == 6;
                if !sunday || rng.random_bool(SUNDAY_KEEP) {
                    break d as u8 + 1;
                }
            };
            let branch = if rng.random_bool(HOME_BRANCH) {
                profile.branch
            } else {
                rng.random_range(0..BRANCHES.len() as u8)
            };
            let mut size = 1;
            while size < VISIT_MAX && rng.random_bool(VISIT_MORE) {
                size += 1;
            }
            let visit = rows.len();
            for _ in 0..size.min(len - visit) {
                let mut title = 0;
                // Nobody takes two copies of one title in a visit; a few
                // redraws make that rare without looping forever on tiny
                // catalogues.
                for _ in 0..4 {
                    title = if rng.random_bool(REPEAT) {
                        profile.comfort_title(cat, rng.random_range(0..2))
                    } else {
                        let genre = if rng.random_bool(TASTE) {
                            profile.favourite(rng.random())
                        } else {
                            cat.pick_genre(rng.random())
                        };
                        cat.pick_title(genre, profile.explorer, rng.random())
                    };
                    if !rows[visit..].iter().any(|r| r.title == title) {
                        break;
                    }
                }
                let period = if rng.random_bool(0.8) { 21 } else { 28 };
                rows.push(Row {
                    day,
                    branch,
                    period,
                    borrower,
                    title,
                });
            }
        }
        // Stable, so the order is defined whatever the sort's algorithm.
        rows.sort_by_key(|r| r.day);
        let csv = self.format(month, dim, &rows);
        Chunk { csv, rows }
    }

    fn format(&self, month: LoanMonth, dim: u32, rows: &[Row]) -> Vec<u8> {
        let prefix = month_prefix(month);
        let next_prefix = month_prefix(
            month
                .plus(1)
                .expect("validated parameters keep the month after the last in the calendar"),
        );
        let mut out = Vec::with_capacity(rows.len() * 64);
        let mut day = *b"00";
        for r in rows {
            out.extend_from_slice(&borrower_id_bytes(self.keys.borrower_id, r.borrower));
            out.push(b',');
            out.extend_from_slice(&title_id_bytes(self.keys.title_id, r.title));
            out.push(b',');
            out.extend_from_slice(&prefix);
            put_digits(&mut day, u32::from(r.day));
            out.extend_from_slice(&day);
            out.push(b',');
            out.extend_from_slice(BRANCHES[r.branch as usize].as_bytes());
            out.push(b',');
            let due = u32::from(r.day) + u32::from(r.period);
            if due > dim {
                out.extend_from_slice(&next_prefix);
                put_digits(&mut day, due - dim);
            } else {
                out.extend_from_slice(&prefix);
                put_digits(&mut day, due);
            }
            out.extend_from_slice(&day);
            out.push(b'\n');
        }
        out
    }
}

/// A fixed-size set of indices, for counting the borrowers and titles used.
#[derive(Clone, Debug)]
pub(crate) struct BitSet(Vec<u64>);

impl BitSet {
    /// An empty set for indices below `n`.
    pub(crate) fn new(n: u32) -> Self {
        BitSet(vec![0; (n as usize).div_ceil(64)])
    }

    /// Adds `i`.
    pub(crate) fn insert(&mut self, i: u32) {
        self.0[i as usize / 64] |= 1 << (i % 64);
    }

    /// Number of indices in the set.
    pub(crate) fn len(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo_params;

    fn month(s: &str) -> LoanMonth {
        s.parse().unwrap()
    }

    #[test]
    fn plan_covers_every_loan_in_month_order() {
        let mut p = demo_params();
        p.loans = 3 * CHUNK_LOANS * 12 + 17;
        p.months = 12;
        let specs: Vec<ChunkSpec> = Plan::new(&p).collect();
        assert_eq!(specs.iter().map(|s| u64::from(s.len)).sum::<u64>(), p.loans);
        assert!(
            specs
                .iter()
                .all(|s| u64::from(s.len) <= CHUNK_LOANS && s.len > 0)
        );
        assert!(
            specs
                .windows(2)
                .all(|w| w[0].month_offset <= w[1].month_offset)
        );
        assert!(specs.iter().enumerate().all(|(i, s)| s.index == i as u64));
        let per_month = |m: u32| -> u64 {
            specs
                .iter()
                .filter(|s| s.month_offset == m)
                .map(|s| u64::from(s.len))
                .sum()
        };
        // November 2024 is offset 0, July 2025 offset 8: the summer peak.
        assert!(per_month(8) > per_month(1), "July should beat December");
    }

    #[test]
    fn plan_of_no_loans_is_empty() {
        let mut p = demo_params();
        p.loans = 0;
        assert_eq!(Plan::new(&p).count(), 0);
    }

    #[test]
    fn month_lengths_and_prefixes() {
        assert_eq!(days_in_month(month("2024-02")), 29);
        assert_eq!(days_in_month(month("2025-02")), 28);
        assert_eq!(days_in_month(month("2025-04")), 30);
        assert_eq!(days_in_month(month("9999-12")), 31);
        assert_eq!(&month_prefix(month("0987-03")), b"0987-03-");
    }

    #[test]
    fn chunks_are_sorted_by_day_and_due_dates_roll_over() {
        let p = demo_params();
        let g = Generator::new(&p);
        let spec = ChunkSpec {
            index: 5,
            month_offset: 3, // February 2025
            len: 2_000,
        };
        let c = g.chunk(spec);
        assert_eq!(c.rows.len(), 2_000);
        assert!(c.rows.windows(2).all(|w| w[0].day <= w[1].day));
        assert!(c.rows.iter().all(|r| (1..=28).contains(&r.day)));
        let text = std::str::from_utf8(&c.csv).unwrap();
        assert_eq!(text.lines().count(), 2_000);
        assert!(
            text.lines()
                .all(|l| l.split(',').nth(2).unwrap().starts_with("2025-02-"))
        );
        assert!(text.lines().any(|l| l.ends_with(",2025-03-25")));
        // The same spec gives the same chunk; another index another one.
        assert_eq!(g.chunk(spec).csv, c.csv);
        assert_ne!(g.chunk(ChunkSpec { index: 6, ..spec }).csv, c.csv);
    }

    #[test]
    fn sundays_are_quieter() {
        let p = demo_params();
        let g = Generator::new(&p);
        // March 2025: Sundays are the 2nd, 9th, 16th, 23rd and 30th.
        let c = g.chunk(ChunkSpec {
            index: 0,
            month_offset: 4,
            len: 10_000,
        });
        let sundays = c.rows.iter().filter(|r| r.day % 7 == 2).count();
        let mondays = c.rows.iter().filter(|r| r.day % 7 == 3).count();
        assert!(sundays * 2 < mondays, "{sundays} vs {mondays}");
    }

    #[test]
    fn bitset_counts_distinct_members() {
        let mut s = BitSet::new(130);
        for i in [0, 1, 64, 129, 1, 64] {
            s.insert(i);
        }
        assert_eq!(s.len(), 4);
    }
}
