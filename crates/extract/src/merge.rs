//! Merging parsed chunks, in file order, into one extraction: their keys
//! numbered into global dictionaries ([`crate::keys`]), repeated loans
//! merged, rejections summed, then each distinct borrower pseudonymized
//! once.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicU32;

use jiff::civil::Date;
use loans::{LoanMonth, Loans};
use pseudonym::Pseudonymizer;
use rayon::prelude::*;

use crate::borrower::Borrowers;
use crate::keys::{Batch, Dictionary};
use crate::parse::{Chunk, KeyBuffers};
use crate::{ExtractReport, MAX_REJECTED_ROWS, RejectReason, Rejections};

/// Most loans one extraction keeps: row and dictionary indexes are `u32`.
pub const MAX_LOANS: u64 = u32::MAX as u64;

/// More than [`MAX_LOANS`] loans would be kept.
#[derive(Debug)]
pub(crate) struct TooManyLoans;

/// The loans of the chunks absorbed so far; repeated loans are among them
/// until [`Assembler::finish`] drops them. Rows hold the dictionaries'
/// provisional codes until then too ([`crate::keys`]).
pub(crate) struct Assembler {
    borrowers: Borrowers,
    titles: Dictionary,
    /// Per kept row: borrower code.
    row_borrowers: Vec<u32>,
    /// Per kept row: title code.
    row_titles: Vec<u32>,
    /// Per kept row: month.
    months: Vec<LoanMonth>,
    /// Rows kept so far, those of ids-only chunks included.
    kept: u64,
    /// A block's codes, as numbered (reused).
    codes: [Vec<AtomicU32>; 2],
    rejected: BTreeMap<RejectReason, Rejections>,
    rows_read: u64,
    newest: Option<Date>,
}

impl Default for Assembler {
    fn default() -> Self {
        Assembler {
            borrowers: Borrowers::default(),
            titles: Dictionary::new(false),
            row_borrowers: Vec::new(),
            row_titles: Vec::new(),
            months: Vec::new(),
            kept: 0,
            codes: Default::default(),
            rejected: BTreeMap::new(),
            rows_read: 0,
            newest: None,
        }
    }
}

impl Assembler {
    /// Data rows absorbed so far.
    pub(crate) fn rows_read(&self) -> u64 {
        self.rows_read
    }

    /// Makes room for about `rows` more loans at once, sparing the repeated
    /// rehashing and copying of growth by doubling.
    pub(crate) fn reserve(&mut self, rows: usize) {
        let rows = rows.min(MAX_LOANS as usize);
        self.row_borrowers.reserve(rows);
        self.row_titles.reserve(rows);
        self.months.reserve(rows);
    }

    /// Adds the next chunk in file order, wiping its raw ids.
    pub(crate) fn absorb(&mut self, chunk: Chunk) -> Result<(), TooManyLoans> {
        self.absorb_all(vec![chunk]).map(drop)
    }

    /// Adds the next chunks in file order: numbers their keys, the
    /// partitions of both dictionaries in parallel, and returns their key
    /// buffers, emptied (raw ids wiped), for the next block's chunks.
    pub(crate) fn absorb_all(
        &mut self,
        chunks: Vec<Chunk>,
    ) -> Result<Vec<KeyBuffers>, TooManyLoans> {
        let mut rows = 0usize;
        let mut ids_only = false;
        for chunk in &chunks {
            self.rows_read += chunk.rows_read;
            for (reason, r) in RejectReason::ALL.into_iter().zip(&chunk.rejects) {
                if r.count == 0 {
                    continue;
                }
                let total = self.rejected.entry(reason).or_default();
                total.count += r.count;
                let room = MAX_REJECTED_ROWS.saturating_sub(total.rows.len());
                total
                    .rows
                    .extend(r.rows.iter().take(room).map(|l| l + chunk.base_line));
            }
            if chunk.newest > self.newest {
                self.newest = chunk.newest;
            }
            rows += chunk.months.len();
            ids_only |= chunk.ids_only;
        }
        // Counted with the repeats, which `finish` drops: row indexes must
        // fit in u32 until then.
        if self.months.len() as u64 + rows as u64 > MAX_LOANS {
            return Err(TooManyLoans);
        }
        let [borrower_codes, title_codes] = &mut self.codes;
        for codes in [&mut *borrower_codes, &mut *title_codes] {
            codes.clear();
            codes.resize_with(rows, AtomicU32::default);
        }
        let mut buffers = Vec::with_capacity(chunks.len());
        let mut placed = Vec::with_capacity(chunks.len());
        let (mut first_row, mut out_row) = (self.kept, 0);
        for chunk in chunks {
            placed.push((first_row, out_row));
            first_row += u64::from(chunk.kept);
            out_row += chunk.months.len();
            self.months.extend_from_slice(&chunk.months);
            buffers.push(chunk.keys);
        }
        self.kept = first_row;
        let (mut borrower_batches, mut title_batches) = (Vec::new(), Vec::new());
        for (keys, &(first_row, out_row)) in buffers.iter_mut().zip(&placed) {
            let KeyBuffers { borrowers, titles } = keys;
            borrower_batches.push(Batch {
                keys: borrowers.keys(),
                first_row,
                out_row,
            });
            title_batches.push(Batch {
                keys: titles,
                first_row,
                out_row,
            });
        }
        // An ids-only chunk keeps no rows: its ids are numbered, not stored.
        let borrower_out = (!ids_only).then_some(borrower_codes.as_slice());
        let (borrowers, titles) = (&mut self.borrowers, &mut self.titles);
        let (b, t) = rayon::join(
            || {
                borrowers
                    .dictionary()
                    .number(&mut borrower_batches, borrower_out)
            },
            || titles.number(&mut title_batches, Some(title_codes)),
        );
        b.and(t).map_err(|_| TooManyLoans)?;
        drop((borrower_batches, title_batches));
        if !ids_only {
            self.row_borrowers
                .extend(borrower_codes.iter_mut().map(|c| *c.get_mut()));
            self.row_titles
                .extend(title_codes.iter_mut().map(|c| *c.get_mut()));
        }
        Ok(buffers)
    }

    /// Lends the distinct canonical ids of the kept rows to `audit`; they
    /// are wiped on return.
    pub(crate) fn lend<R>(self, audit: impl FnOnce(&mut dyn Iterator<Item = &[u8]>) -> R) -> R {
        let Assembler { borrowers, .. } = self;
        borrowers.lend(audit)
    }

    /// Pseudonymizes each distinct borrower once, after lending the raw ids
    /// to `audit`, and builds the loan columns and the report.
    pub(crate) fn finish(
        self,
        path: &Path,
        pseudonymizer: &Pseudonymizer,
        audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
    ) -> (Loans, ExtractReport) {
        let Assembler {
            borrowers,
            titles,
            mut row_borrowers,
            mut row_titles,
            mut months,
            rejected,
            rows_read,
            newest,
            ..
        } = self;
        // The final numbering, first appearance, replaces the codes.
        let (borrower_order, title_order) = rayon::join(|| borrowers.order(), || titles.order());
        rayon::join(
            || borrower_order.renumber(&mut row_borrowers),
            || title_order.renumber(&mut row_titles),
        );
        let distinct_borrowers = borrower_order.len() as u64;
        let title_count = title_order.len();
        // Independent: the repeats are dropped (in parallel, on the pool)
        // while this thread lends the raw ids to `audit`, which is one
        // thread's work, and the pool pseudonymizes them.
        let (duplicates, borrower_pseudonyms) = std::thread::scope(|s| {
            let repeats = s.spawn(|| {
                drop_repeats(
                    &mut row_borrowers,
                    &mut row_titles,
                    &mut months,
                    title_count,
                )
            });
            // Distinct canonical ids, so distinct pseudonyms: the final
            // numbering is the loans' borrower dictionary as it is.
            let pseudonyms = borrowers.pseudonymize(&borrower_order, pseudonymizer, audit);
            let duplicates = repeats
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (duplicates, pseudonyms)
        });
        // The batch is sealed from these columns while they are alive, so
        // they should hold no spare capacity at the peak.
        row_titles.shrink_to_fit();
        months.shrink_to_fit();
        row_borrowers.shrink_to_fit();
        // Titles were checked to be UTF-8 when read, so this never replaces.
        let title_ids: Vec<String> = titles
            .keys(&title_order)
            .map(|t| String::from_utf8_lossy(t).into_owned())
            .collect();
        let first_month = months.par_iter().min().copied();
        let last_month = months.par_iter().max().copied();
        let loans = Loans {
            borrowers: row_borrowers,
            borrower_pseudonyms,
            titles: row_titles,
            months,
            work_ids: title_ids.clone(),
            title_ids,
        };
        let report = ExtractReport {
            path: path.to_owned(),
            rows_read,
            rows_kept: loans.len() as u64,
            duplicates,
            distinct_borrowers,
            distinct_titles: loans.title_ids.len() as u64,
            first_month,
            last_month,
            newest_day: newest,
            rejected,
        };
        (loans, report)
    }
}

/// Removes every row whose (borrower, title, month) an earlier row holds
/// and returns how many it removed. `title_count` bounds the title column.
///
/// Rows are grouped by month, and each month's rows put in title order
/// ([`loans::TitleOrder`]): a repeat then sits in its title's run, after
/// the row it repeats. The months are independent, so
/// they are searched in parallel, and every access but the counting sort's
/// scattered writes reads memory in order.
///
/// When each month is one run of rows (an export in date order, either
/// way), the rows kept are left in that title order, month by month: the
/// order the store writes its files in, which spares ingest a sort. Other
/// exports keep file order.
fn drop_repeats(
    borrowers: &mut Vec<u32>,
    titles: &mut Vec<u32>,
    months: &mut Vec<LoanMonth>,
    title_count: usize,
) -> u64 {
    if let Some(runs) = month_runs(months) {
        return order_months_by_title(borrowers, titles, months, &runs, title_count);
    }
    let by_month = MonthRows::of(months);
    let (b, t): (&[u32], &[u32]) = (borrowers, titles);
    let mut repeats: Vec<u32> = (0..by_month.len())
        .into_par_iter()
        .map_init(OrderScratch::default, |scratch, m| {
            month_repeats(by_month.rows(m), b, t, title_count, scratch)
        })
        .flatten_iter()
        .collect();
    drop(by_month);
    if repeats.is_empty() {
        return 0;
    }
    repeats.par_sort_unstable();
    let mut next = repeats.iter().copied().peekable();
    let mut kept = 0;
    for row in 0..borrowers.len() {
        if next.next_if_eq(&(row as u32)).is_some() {
            continue;
        }
        borrowers[kept] = borrowers[row];
        titles[kept] = titles[row];
        months[kept] = months[row];
        kept += 1;
    }
    borrowers.truncate(kept);
    titles.truncate(kept);
    months.truncate(kept);
    repeats.len() as u64
}

/// The lengths of the runs of rows of one month, if no month has two runs;
/// gives up at the first month met again (an export in another order has
/// about as many runs as rows).
fn month_runs(months: &[LoanMonth]) -> Option<Vec<usize>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut runs = Vec::new();
    for run in months.chunk_by(|a, b| a == b) {
        if !seen.insert(run[0]) {
            return None;
        }
        runs.push(run.len());
    }
    Some(runs)
}

/// [`drop_repeats`] for rows whose months are the runs `runs` (lengths, in
/// row order): each run is put in title order where it is, its repeats
/// dropped, in parallel; the kept rows of each run are then moved down to
/// follow those of the run before.
fn order_months_by_title(
    borrowers: &mut Vec<u32>,
    titles: &mut Vec<u32>,
    months: &mut Vec<LoanMonth>,
    runs: &[usize],
    title_count: usize,
) -> u64 {
    let mut parts: Vec<(&mut [u32], &mut [u32])> = Vec::with_capacity(runs.len());
    let (mut b_rest, mut t_rest) = (&mut borrowers[..], &mut titles[..]);
    for &len in runs {
        let (b, b_next) = std::mem::take(&mut b_rest).split_at_mut(len);
        let (t, t_next) = std::mem::take(&mut t_rest).split_at_mut(len);
        parts.push((b, t));
        (b_rest, t_rest) = (b_next, t_next);
    }
    let kept: Vec<usize> = parts
        .into_par_iter()
        .map_init(OrderScratch::default, |scratch, (b, t)| {
            title_order_in_place(b, t, title_count, scratch)
        })
        .collect();
    let (mut at, mut start) = (0, 0);
    for (&len, &k) in runs.iter().zip(&kept) {
        borrowers.copy_within(start..start + k, at);
        titles.copy_within(start..start + k, at);
        months.copy_within(start..start + k, at);
        at += k;
        start += len;
    }
    let dropped = borrowers.len() - at;
    borrowers.truncate(at);
    titles.truncate(at);
    months.truncate(at);
    dropped as u64
}

/// What [`title_order_in_place`] reuses from month to month.
#[derive(Default)]
struct OrderScratch {
    order: loans::TitleOrder,
    starts: Vec<u32>,
    repeat: Vec<bool>,
}

/// Puts the rows of one month (its borrower and title columns) in title
/// order, file order within a title, and keeps the first row of each
/// (borrower, title) at the front; returns how many it kept.
fn title_order_in_place(
    borrowers: &mut [u32],
    titles: &mut [u32],
    title_count: usize,
    scratch: &mut OrderScratch,
) -> usize {
    let n = borrowers.len();
    let OrderScratch {
        order,
        starts,
        repeat,
    } = scratch;
    // Row counts fit in u32 (MAX_LOANS).
    order.sort_into(0..n as u32, n, titles, borrowers, title_count, starts);
    repeat.clear();
    repeat.resize(n, false);
    order.repeats(|i| repeat[i] = true);
    let mut kept = 0;
    for (i, &r) in repeat.iter().enumerate() {
        if !r {
            borrowers[kept] = order.borrowers[i];
            titles[kept] = order.titles[i];
            kept += 1;
        }
    }
    kept
}

/// The rows of each month, in file order. An export in date order holds
/// each month as a few stretches of consecutive rows, kept as ranges;
/// otherwise the rows are listed one by one.
enum MonthRows {
    Stretches(Vec<Vec<std::ops::Range<u32>>>),
    Listed { rows: Vec<u32>, starts: Vec<usize> },
}

impl MonthRows {
    fn of(months: &[LoanMonth]) -> MonthRows {
        let (Some(first), Some(last)) = (
            months.par_iter().min().copied(),
            months.par_iter().max().copied(),
        ) else {
            return MonthRows::Stretches(Vec::new());
        };
        // Valid months, so the span is below 12 * 10_000.
        let span = (last.index() - first.index()) as usize + 1;
        let slot = |m: LoanMonth| (m.index() - first.index()) as usize;
        let stretches = months.chunk_by(|a, b| a == b).count();
        // A range takes two words a stretch, a listed row one.
        if stretches <= months.len() / 2 {
            let mut of_month = vec![Vec::new(); span];
            let mut start = 0u32;
            for run in months.chunk_by(|a, b| a == b) {
                // Row counts fit in u32 (MAX_LOANS).
                let end = start + run.len() as u32;
                of_month[slot(run[0])].push(start..end);
                start = end;
            }
            return MonthRows::Stretches(of_month);
        }
        let mut starts = vec![0usize; span + 1];
        for &m in months {
            starts[slot(m) + 1] += 1;
        }
        for i in 0..span {
            starts[i + 1] += starts[i];
        }
        let mut next = starts.clone();
        let mut rows = vec![0u32; months.len()];
        for (row, &m) in months.iter().enumerate() {
            let at = &mut next[slot(m)];
            rows[*at] = row as u32;
            *at += 1;
        }
        MonthRows::Listed { rows, starts }
    }

    /// Months in the span, empty ones included.
    fn len(&self) -> usize {
        match self {
            MonthRows::Stretches(of_month) => of_month.len(),
            MonthRows::Listed { starts, .. } => starts.len() - 1,
        }
    }

    /// Month `m`'s rows in file order (and their count).
    fn rows(&self, m: usize) -> (impl Iterator<Item = u32> + Clone + '_, usize) {
        let (stretches, listed): (&[std::ops::Range<u32>], &[u32]) = match self {
            MonthRows::Stretches(of_month) => (&of_month[m], &[]),
            MonthRows::Listed { rows, starts } => (&[], &rows[starts[m]..starts[m + 1]]),
        };
        let count = listed.len() + stretches.iter().map(ExactSizeIterator::len).sum::<usize>();
        let rows = stretches
            .iter()
            .cloned()
            .flatten()
            .chain(listed.iter().copied());
        (rows, count)
    }
}

/// The rows of one month (given in file order, with their count) that
/// repeat an earlier row's borrower and title.
fn month_repeats(
    (rows, count): (impl Iterator<Item = u32> + Clone, usize),
    borrowers: &[u32],
    titles: &[u32],
    title_count: usize,
    scratch: &mut OrderScratch,
) -> Vec<u32> {
    let OrderScratch { order, starts, .. } = scratch;
    order.sort_into(rows, count, titles, borrowers, title_count, starts);
    let mut repeats = Vec::new();
    order.repeats(|i| repeats.push(order.rows[i]));
    repeats
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition: each (borrower, title, month) at its first row.
    fn first_of_each(rows: &[(u32, u32, LoanMonth)]) -> Vec<(u32, u32, LoanMonth)> {
        let mut seen = std::collections::HashSet::new();
        rows.iter().copied().filter(|r| seen.insert(*r)).collect()
    }

    fn month(i: i32) -> LoanMonth {
        LoanMonth::new(2024, 1).unwrap().plus(i).unwrap()
    }

    proptest! {
        #[test]
        fn drop_repeats_keeps_the_first_of_each_loan_in_order(
            rows in prop::collection::vec((0u32..30, 0u32..40, 0i32..4), 0..600),
            titles in prop_oneof![Just(3u32), Just(40u32)],
            by_date in 0..3,
            extra_titles in prop_oneof![Just(0usize), Just(10_000usize)],
        ) {
            // In date order, oldest or newest first (each month one run of
            // rows), or not (rows listed per month); a dictionary small
            // enough for the counting sort or too large for it; runs of a
            // title's rows of a few rows (40 titles) and of more than 16
            // (3 titles).
            let mut rows: Vec<(u32, u32, LoanMonth)> =
                rows.into_iter().map(|(b, t, m)| (b, t % titles, month(m))).collect();
            match by_date {
                1 => rows.sort_by_key(|r| r.2),
                2 => rows.sort_by_key(|r| std::cmp::Reverse(r.2)),
                _ => {}
            }
            let mut want = first_of_each(&rows);
            // Months that are one run each: the kept rows in title order
            // within each month (stable, so file order within a title).
            let mut run_of_month = Vec::new();
            for r in &rows {
                if run_of_month.last() != Some(&r.2) {
                    run_of_month.push(r.2);
                }
            }
            let one_run_each = run_of_month.len()
                == run_of_month.iter().collect::<std::collections::HashSet<_>>().len();
            if one_run_each {
                let run = |m: &LoanMonth| run_of_month.iter().position(|x| x == m);
                want.sort_by_key(|r| (run(&r.2), r.1));
            }
            let mut b: Vec<u32> = rows.iter().map(|r| r.0).collect();
            let mut t: Vec<u32> = rows.iter().map(|r| r.1).collect();
            let mut m: Vec<LoanMonth> = rows.iter().map(|r| r.2).collect();
            let dropped = drop_repeats(&mut b, &mut t, &mut m, titles as usize + extra_titles);
            let got: Vec<_> = b.iter().zip(&t).zip(&m).map(|((&b, &t), &m)| (b, t, m)).collect();
            prop_assert_eq!(dropped as usize, rows.len() - want.len());
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn months_are_stretches_in_date_order_and_listed_otherwise() {
        let sorted = [month(0), month(0), month(2), month(2), month(2)];
        let m = MonthRows::of(&sorted);
        assert!(matches!(m, MonthRows::Stretches(_)));
        assert_eq!(m.len(), 3);
        let rows = |m: &MonthRows, i| {
            let (rows, n) = m.rows(i);
            let rows: Vec<u32> = rows.collect();
            assert_eq!(rows.len(), n);
            rows
        };
        assert_eq!(rows(&m, 0), [0, 1]);
        assert!(rows(&m, 1).is_empty());
        assert_eq!(rows(&m, 2), [2, 3, 4]);
        let mixed = [month(1), month(0), month(1), month(0)];
        let m = MonthRows::of(&mixed);
        assert!(matches!(m, MonthRows::Listed { .. }));
        assert_eq!(rows(&m, 0), [1, 3]);
        assert_eq!(rows(&m, 1), [0, 2]);
        assert!(matches!(MonthRows::of(&[]), MonthRows::Stretches(ref v) if v.is_empty()));
    }
}
