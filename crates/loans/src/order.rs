//! Rows in title order, and the repeated loans found in it.
//!
//! The extractor (after its merge) and the store (at ingest) both put one
//! month's rows in title order to find repeated loans: a repeat of a
//! borrower's loan of a title sits in that title's run of rows, after the
//! loan it repeats, instead of anywhere in the month (a lookup in a table of
//! all the month's loans, a cache miss a row). The store then writes its data
//! files in that order too.

/// Rows (indices into a set of loan columns) in title order, row order
/// within a title, each with its title and borrower index alongside: read
/// once, while the rows are put in order, and then in order by every later
/// pass, instead of at random places of the loan columns (a cache miss each)
/// by each pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TitleOrder {
    /// The rows.
    pub rows: Vec<u32>,
    /// Each row's title index.
    pub titles: Vec<u32>,
    /// Each row's borrower index.
    pub borrowers: Vec<u32>,
}

impl TitleOrder {
    /// `rows` as they are (whatever their order), with their titles and
    /// borrowers from the columns `titles` and `borrowers`.
    pub fn of(rows: Vec<u32>, titles: &[u32], borrowers: &[u32]) -> TitleOrder {
        let mut out = TitleOrder {
            rows,
            ..TitleOrder::default()
        };
        out.carry(titles, borrowers);
        out
    }

    /// Fills the title and borrower of each row from the columns, reusing
    /// the vectors.
    fn carry(&mut self, titles: &[u32], borrowers: &[u32]) {
        let TitleOrder {
            rows,
            titles: t,
            borrowers: b,
        } = self;
        t.clear();
        t.extend(rows.iter().map(|&row| titles[row as usize]));
        b.clear();
        b.extend(rows.iter().map(|&row| borrowers[row as usize]));
    }

    /// The `count` rows `rows` in title order (by title index, then by row),
    /// with their titles and borrowers from the columns `titles` and
    /// `borrowers`, whose titles are below `title_count`.
    ///
    /// Rows that come in ascending order get a stable counting sort by title,
    /// carrying both columns along: one pass over the rows and one over the
    /// titles (a comparison sort took a tenth of ingest's time). When the
    /// titles far outnumber the rows (a sparse month), or the rows come in
    /// another order, it sorts by comparison. Ascending rows already in
    /// title order (a batch the extractor put in that order) are taken as
    /// they are, after one pass that checks it.
    pub fn sort(
        rows: impl Iterator<Item = u32> + Clone,
        count: usize,
        titles: &[u32],
        borrowers: &[u32],
        title_count: usize,
    ) -> TitleOrder {
        let mut out = TitleOrder::default();
        out.sort_into(rows, count, titles, borrowers, title_count, &mut Vec::new());
        out
    }

    /// [`TitleOrder::sort`] into this order's vectors, and `starts` for the
    /// counting sort's title offsets, all reused from call to call: the
    /// extractor sorts month after month, and fresh vectors for each (the
    /// offsets are one per title of the whole batch) were half of its page
    /// faults, each a page the kernel zeroes.
    pub fn sort_into(
        &mut self,
        rows: impl Iterator<Item = u32> + Clone,
        count: usize,
        titles: &[u32],
        borrowers: &[u32],
        title_count: usize,
        starts: &mut Vec<u32>,
    ) {
        let ascending = rows.clone().is_sorted();
        if ascending && rows.clone().map(|r| titles[r as usize]).is_sorted() {
            self.set(rows, titles, borrowers);
            return;
        }
        if title_count > 4 * count || !ascending {
            let mut keyed: Vec<(u32, u32)> = rows.map(|r| (titles[r as usize], r)).collect();
            keyed.sort_unstable();
            self.set(keyed.into_iter().map(|(_, r)| r), titles, borrowers);
            return;
        }
        // starts[t]: where title t's rows begin in the sorted order (row
        // counts fit in u32, the bound of every loan column).
        starts.clear();
        starts.resize(title_count + 1, 0);
        for r in rows.clone() {
            starts[titles[r as usize] as usize + 1] += 1;
        }
        for t in 0..title_count {
            starts[t + 1] += starts[t];
        }
        for column in [&mut self.rows, &mut self.titles, &mut self.borrowers] {
            column.clear();
            column.resize(count, 0);
        }
        for r in rows {
            let t = titles[r as usize];
            let slot = &mut starts[t as usize];
            let at = *slot as usize;
            self.rows[at] = r;
            self.titles[at] = t;
            self.borrowers[at] = borrowers[r as usize];
            *slot += 1;
        }
    }

    /// Replaces the rows with `rows` as they are ([`TitleOrder::of`]),
    /// reusing the vectors.
    fn set(&mut self, rows: impl Iterator<Item = u32>, titles: &[u32], borrowers: &[u32]) {
        self.rows.clear();
        self.rows.extend(rows);
        self.carry(titles, borrowers);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there is no row.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Calls `repeat(i)` for every position `i` whose borrower an earlier
    /// row of its title's run holds: in title order, the repeated loans of
    /// rows of one month.
    pub fn repeats(&self, mut repeat: impl FnMut(usize)) {
        let mut scratch = RunScratch::default();
        let mut start = 0;
        for run in self.titles.chunk_by(|a, b| a == b) {
            let end = start + run.len();
            repeats_in_run(&self.borrowers[start..end], &mut scratch, |i| {
                repeat(start + i)
            });
            start = end;
        }
    }

    /// Keeps the rows `keep` says yes to (given row, title and borrower),
    /// in order.
    pub fn retain(&mut self, mut keep: impl FnMut(u32, u32, u32) -> bool) {
        let mut at = 0;
        for i in 0..self.rows.len() {
            let (r, t, b) = (self.rows[i], self.titles[i], self.borrowers[i]);
            if keep(r, t, b) {
                self.rows[at] = r;
                self.titles[at] = t;
                self.borrowers[at] = b;
                at += 1;
            }
        }
        self.rows.truncate(at);
        self.titles.truncate(at);
        self.borrowers.truncate(at);
    }
}

impl crate::Loans {
    /// `rows` of these loans in title order ([`TitleOrder::sort`]).
    pub fn in_title_order(&self, rows: &[u32]) -> TitleOrder {
        TitleOrder::sort(
            rows.iter().copied(),
            rows.len(),
            &self.titles,
            &self.borrowers,
            self.title_ids.len(),
        )
    }

    /// `rows` of these loans as they are, with their titles and borrowers
    /// ([`TitleOrder::of`]).
    pub fn carried(&self, rows: Vec<u32>) -> TitleOrder {
        TitleOrder::of(rows, &self.titles, &self.borrowers)
    }
}

/// Finds the repeated loans in one title's run of rows (in file order,
/// each row given by its borrower index): calls `repeat(i)` for every row
/// `i` of the run whose borrower an earlier row of the run holds.
///
/// Runs are a handful of rows, so most are checked against the rows before
/// them; a bestseller's long run with the set in `scratch`, reused from run
/// to run.
fn repeats_in_run(borrowers: &[u32], scratch: &mut RunScratch, mut repeat: impl FnMut(usize)) {
    const SHORT: usize = 16;
    if borrowers.len() <= SHORT {
        for (i, b) in borrowers.iter().enumerate() {
            if borrowers[..i].contains(b) {
                repeat(i);
            }
        }
    } else {
        scratch.0.clear();
        for (i, &b) in borrowers.iter().enumerate() {
            if !scratch.0.insert(b) {
                repeat(i);
            }
        }
    }
}

/// The reusable set of [`repeats_in_run`].
#[derive(Default)]
struct RunScratch(hashbrown::HashSet<u32>);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn repeats_in_run_are_the_rows_whose_borrower_came_before(
            runs in prop::collection::vec(prop::collection::vec(0u32..24, 0..60), 1..5),
        ) {
            // Runs of up to 16 rows and longer ones, one scratch set for all.
            let mut scratch = RunScratch::default();
            for run in &runs {
                let mut got = Vec::new();
                repeats_in_run(run, &mut scratch, |i| got.push(i));
                let want: Vec<usize> =
                    (0..run.len()).filter(|&i| run[..i].contains(&run[i])).collect();
                prop_assert_eq!(got, want);
            }
        }

        /// One order and one offsets vector reused over several sorts (of
        /// different sizes, paths and title counts) give what fresh ones give.
        #[test]
        fn sorting_into_reused_vectors_equals_a_fresh_sort(
            inputs in prop::collection::vec(
                (prop::collection::vec((0u32..40, 0u32..6), 0..120), any::<bool>(), 0usize..200),
                1..5,
            ),
        ) {
            let mut order = TitleOrder::default();
            let mut starts = Vec::new();
            for (cols, shuffle, extra_titles) in inputs {
                let titles: Vec<u32> = cols.iter().map(|c| c.0).collect();
                let borrowers: Vec<u32> = cols.iter().map(|c| c.1).collect();
                let mut rows: Vec<u32> = (0..cols.len() as u32).collect();
                if shuffle {
                    rows.reverse();
                }
                let title_count = 40 + extra_titles;
                order.sort_into(
                    rows.iter().copied(), rows.len(), &titles, &borrowers, title_count, &mut starts,
                );
                let fresh = TitleOrder::sort(
                    rows.iter().copied(), rows.len(), &titles, &borrowers, title_count,
                );
                prop_assert_eq!(&order, &fresh);
            }
        }

        /// Both sort paths (a dense and a sparse dictionary, rows in and
        /// out of order) give the rows ordered by (title, row), with their
        /// own titles and borrowers; the repeats are the positions whose
        /// (title, borrower) an earlier position holds.
        #[test]
        fn sort_orders_by_title_then_row_and_finds_the_repeats(
            cols in prop::collection::vec((0u32..12, 0u32..5), 1..80),
            extra_titles in prop_oneof![Just(0usize), Just(1000usize)],
            pick in prop::collection::vec(any::<bool>(), 80),
            shuffle in any::<bool>(),
            few in any::<bool>(),
            in_title_order in any::<bool>(),
        ) {
            // Two titles make runs longer than 16 rows (the set path).
            let mut titles: Vec<u32> =
                cols.iter().map(|c| if few { c.0 % 2 } else { c.0 }).collect();
            if in_title_order {
                // Rows that need no sort (as the extractor writes batches).
                titles.sort_unstable();
            }
            let borrowers: Vec<u32> = cols.iter().map(|c| c.1).collect();
            let mut rows: Vec<u32> = (0..cols.len() as u32).filter(|&r| pick[r as usize]).collect();
            if shuffle {
                rows.reverse();
            }
            let order = TitleOrder::sort(
                rows.iter().copied(), rows.len(), &titles, &borrowers, 12 + extra_titles,
            );
            let mut expected = rows.clone();
            expected.sort_unstable_by_key(|&r| (titles[r as usize], r));
            prop_assert_eq!(&order, &TitleOrder::of(expected.clone(), &titles, &borrowers));
            let mut got = Vec::new();
            order.repeats(|i| got.push(i));
            let want: Vec<usize> = (0..expected.len())
                .filter(|&i| {
                    let key = |j: usize| (order.titles[j], order.borrowers[j]);
                    (0..i).any(|j| key(j) == key(i))
                })
                .collect();
            prop_assert_eq!(got, want);
        }
    }
}
