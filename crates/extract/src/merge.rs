//! Merging parsed chunks, in file order, into one extraction: global
//! dictionaries, repeated loans merged, rejections summed, then each
//! distinct borrower pseudonymized once.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::path::Path;

use hashbrown::{DefaultHashBuilder, HashTable};
use jiff::civil::Date;
use loans::{LoanMonth, Loans};
use pseudonym::Pseudonymizer;
use rayon::prelude::*;

use crate::borrower::BorrowerInterner;
use crate::interner::Interner;
use crate::parse::Chunk;
use crate::{ExtractReport, MAX_REJECTED_ROWS, RejectReason, Rejections};

/// Most loans one extraction keeps: row and dictionary indexes are `u32`.
pub const MAX_LOANS: u64 = u32::MAX as u64;

/// More than [`MAX_LOANS`] loans would be kept.
#[derive(Debug)]
pub(crate) struct TooManyLoans;

/// The loans of the chunks absorbed so far, with global indexes.
#[derive(Default)]
pub(crate) struct Assembler {
    borrowers: BorrowerInterner,
    titles: Interner,
    /// Per kept loan: global borrower index.
    row_borrowers: Vec<u32>,
    /// Per kept loan: global title index.
    row_titles: Vec<u32>,
    /// Per kept loan: month.
    months: Vec<LoanMonth>,
    /// Kept loans by (borrower, title), one table per month, to find
    /// repeats. Each stores row indexes only (4 bytes a slot); the key is
    /// read from the columns. Exports are mostly in date order, so the rows
    /// being merged hit one month's table, small enough to stay in cache,
    /// where one table of all loans would cost a memory access per row.
    seen: Vec<HashTable<u32>>,
    /// Index in `seen` of each month's table.
    month_table: hashbrown::HashMap<LoanMonth, usize>,
    hasher: DefaultHashBuilder,
    rejected: BTreeMap<RejectReason, Rejections>,
    rows_read: u64,
    duplicates: u64,
    newest: Option<Date>,
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
        let kept = self.row_borrowers.len() as u64 + chunk.row_borrowers.len() as u64;
        if kept > MAX_LOANS {
            return Err(TooManyLoans);
        }
        // The two dictionaries are independent: absorbed side by side, the
        // merge (extraction's one sequential step, its critical path once
        // the dictionaries outgrow the cache) waits for the larger only.
        let (borrowers, titles) = (&mut self.borrowers, &mut self.titles);
        let (borrower_map, title_map) = rayon::join(
            || borrowers.absorb(&chunk.borrowers),
            || titles.absorb(&chunk.titles),
        );
        // The chunk's raw ids are wiped here, as soon as they are merged.
        let Chunk {
            row_borrowers,
            row_titles,
            months,
            ..
        } = chunk;
        self.reserve(row_borrowers.len());
        let Assembler {
            row_borrowers: rb,
            row_titles: rt,
            months: rm,
            seen,
            month_table,
            hasher,
            duplicates,
            ..
        } = self;
        // The table of the month of the previous row: months change rarely.
        let mut current: Option<(LoanMonth, usize)> = None;
        for ((b, t), m) in row_borrowers.iter().zip(&row_titles).zip(&months) {
            let (b, t, m) = (borrower_map[*b as usize], title_map[*t as usize], *m);
            let table = match current {
                Some((month, table)) if month == m => table,
                _ => {
                    let next = seen.len();
                    let table = *month_table.entry(m).or_insert(next);
                    if table == next {
                        // Sized like the month before: months of one export
                        // hold similar numbers of loans.
                        let like = seen.last().map_or(0, HashTable::len);
                        seen.push(HashTable::with_capacity(like));
                    }
                    current = Some((m, table));
                    table
                }
            };
            // Present: pushed above or when its index was recorded.
            let seen = &mut seen[table];
            let hash = hasher.hash_one((b, t));
            let eq = |&i: &u32| {
                let i = i as usize;
                rb[i] == b && rt[i] == t
            };
            if seen.find(hash, eq).is_some() {
                *duplicates += 1;
                continue;
            }
            // Fits: checked against MAX_LOANS above.
            let index = rb.len() as u32;
            seen.insert_unique(hash, index, |&i| key_hash(hasher, rb, rt, i));
            rb.push(b);
            rt.push(t);
            rm.push(m);
        }
        Ok(())
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
            row_borrowers,
            row_titles,
            months,
            seen,
            month_table,
            rejected,
            rows_read,
            duplicates,
            newest,
            ..
        } = self;
        drop(seen);
        drop(month_table);
        // The batch is sealed from these columns while they are alive, so
        // they should hold no spare capacity at the peak.
        let (mut row_titles, mut months) = (row_titles, months);
        row_titles.shrink_to_fit();
        months.shrink_to_fit();
        let distinct_borrowers = borrowers.len() as u64;
        // Distinct canonical ids, so distinct pseudonyms: the interner's
        // numbering is the loans' borrower dictionary as it is.
        let borrower_pseudonyms = borrowers.pseudonymize(pseudonymizer, audit);
        let mut row_borrowers = row_borrowers;
        row_borrowers.shrink_to_fit();
        // Titles were checked to be UTF-8 when read, so this never replaces.
        let title_ids: Vec<String> = titles
            .iter()
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

/// The hash of kept row `i` in its month's table of repeats.
fn key_hash(hasher: &DefaultHashBuilder, b: &[u32], t: &[u32], i: u32) -> u64 {
    let i = i as usize;
    hasher.hash_one((b[i], t[i]))
}
