//! Pseudonymous loan records: the only data model the mining side sees.
//!
//! Nothing in this crate can hold a raw borrower id. A [`Pseudonym`] is the
//! truncated keyed hash made by the `pseudonym` crate on the extractor's host;
//! titles and works are catalogue identifiers; dates are coarsened to a
//! [`LoanMonth`].
//!
//! Architecture invariant: this crate depends on no other crate of the
//! workspace, so every stage can share it without reaching the extractor.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

mod order;

pub use order::TitleOrder;

/// Length in bytes of a pseudonym: 128 bits of a truncated HMAC-SHA256.
pub const PSEUDONYM_LEN: usize = 16;

/// A borrower's keyed pseudonym (128 bits of HMAC-SHA256).
///
/// Pseudonymous data is still personal data, so `Debug` is redacted and there
/// is no `Display`: a pseudonym never reaches a log or a message by accident.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym(pub [u8; PSEUDONYM_LEN]);

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pseudonym(<redacted>)")
    }
}

impl Pseudonym {
    /// The raw bytes, for storage and hashing.
    pub fn as_bytes(&self) -> &[u8; PSEUDONYM_LEN] {
        &self.0
    }

    /// The pseudonym as one integer, a compact map key (see [`PseudonymHasher`]).
    pub fn as_u128(&self) -> u128 {
        u128::from_le_bytes(self.0)
    }

    /// A stable 64-bit value derived from the pseudonym, for deterministic
    /// choices (e.g. which titles a capped borrower contributes).
    pub fn stable_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_le_bytes(b)
    }
}

/// Hasher for pseudonyms used as `u128` map keys ([`Pseudonym::as_u128`]).
///
/// Pseudonyms are keyed HMAC outputs, so nobody without the key can choose
/// them to collide, and SipHash's flood resistance buys nothing; a SplitMix
/// mix of both halves spreads them evenly at a fraction of the cost, which
/// matters for tens of millions of lookups.
#[derive(Default, Clone, Copy)]
pub struct PseudonymHasher(u64);

/// `BuildHasher` for maps and sets keyed by pseudonyms.
pub type BuildPseudonymHasher = std::hash::BuildHasherDefault<PseudonymHasher>;

impl std::hash::Hasher for PseudonymHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = splitmix64(self.0 ^ u64::from(b));
        }
    }

    fn write_u128(&mut self, x: u128) {
        self.0 = splitmix64(splitmix64(self.0 ^ x as u64) ^ (x >> 64) as u64);
    }
}

// SplitMix64's finaliser: a bijective avalanche mix of 64 bits.
fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A calendar month, the finest date granularity the mining side keeps.
///
/// Stored as months since January of year 0 so that arithmetic and ordering
/// are plain integer operations.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LoanMonth(i32);

/// Error for a month outside `0001-01..=9999-12` or a malformed `YYYY-MM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MonthError {
    /// Year or month out of range.
    #[error("month out of range: year {year}, month {month}")]
    OutOfRange {
        /// The year given.
        year: i32,
        /// The month given (1-based).
        month: u32,
    },
    /// Text that is not of the form `YYYY-MM`.
    #[error("not a month of the form YYYY-MM")]
    Malformed,
}

impl LoanMonth {
    /// The month `year`-`month` (1-based month), years 1 to 9999.
    pub fn new(year: i32, month: u32) -> Result<Self, MonthError> {
        if !(1..=9999).contains(&year) || !(1..=12).contains(&month) {
            return Err(MonthError::OutOfRange { year, month });
        }
        Ok(LoanMonth(year * 12 + (month as i32 - 1)))
    }

    /// Months since January of year 0.
    pub fn index(self) -> i32 {
        self.0
    }

    /// The month with the given index, if it is within years 1 to 9999.
    pub fn from_index(index: i32) -> Result<Self, MonthError> {
        Self::new(index.div_euclid(12), index.rem_euclid(12) as u32 + 1)
    }

    /// Calendar year.
    pub fn year(self) -> i32 {
        self.0.div_euclid(12)
    }

    /// Calendar month, 1 to 12.
    pub fn month(self) -> u32 {
        self.0.rem_euclid(12) as u32 + 1
    }

    /// The month `n` months later (earlier when `n` is negative).
    pub fn plus(self, n: i32) -> Result<Self, MonthError> {
        let index = self.0.checked_add(n).ok_or(MonthError::OutOfRange {
            year: self.year(),
            month: self.month(),
        })?;
        Self::from_index(index)
    }

    /// Days from 1970-01-01 to the first day of this month (Arrow `Date32`).
    pub fn first_day_since_epoch(self) -> i32 {
        days_from_civil(self.year(), self.month(), 1)
    }

    /// The month containing the given day (days since 1970-01-01).
    pub fn from_days_since_epoch(days: i32) -> Result<Self, MonthError> {
        let (y, m, _) = civil_from_days(days);
        Self::new(y, m)
    }
}

// Howard Hinnant's civil-date algorithms: exact for the proleptic Gregorian
// calendar, and small enough not to need a date crate on the mining side.
fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m as i32 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for LoanMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

impl fmt::Debug for LoanMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LoanMonth({self})")
    }
}

impl FromStr for LoanMonth {
    type Err = MonthError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() != 7 || b[4] != b'-' || !b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit) {
            return Err(MonthError::Malformed);
        }
        let year: i32 = s[..4].parse().map_err(|_| MonthError::Malformed)?;
        let month: u32 = s[5..].parse().map_err(|_| MonthError::Malformed)?;
        Self::new(year, month)
    }
}

impl TryFrom<String> for LoanMonth {
    type Error = MonthError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<LoanMonth> for String {
    fn from(m: LoanMonth) -> String {
        m.to_string()
    }
}

/// Pseudonymous loans in columnar form, borrowers and titles
/// dictionary-encoded.
///
/// Row `i` is the loan of borrower `borrower_pseudonyms[borrowers[i]]` of
/// title `title_ids[titles[i]]` in `months[i]`. `work_ids[t]` is the work
/// that title `t` belongs to (equal to the title id when no work mapping was
/// given); titles of one work never recommend each other.
///
/// Each row carries a 4-byte borrower index instead of its 16-byte
/// pseudonym: stages that group, deduplicate or count borrowers compare
/// integers and never hash a pseudonym per row, and a 100M-loan batch is
/// 1.2 GB smaller in memory. Both dictionaries hold each entry once
/// ([`Loans::validate`]), so equal indices are exactly equal pseudonyms; a
/// dictionary may hold entries no row refers to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loans {
    /// Borrower of each row, an index into `borrower_pseudonyms`.
    pub borrowers: Vec<u32>,
    /// Title of each row, an index into `title_ids`.
    pub titles: Vec<u32>,
    /// Loan month of each row.
    pub months: Vec<LoanMonth>,
    /// Borrower dictionary: pseudonyms, each once.
    pub borrower_pseudonyms: Vec<Pseudonym>,
    /// Title dictionary: catalogue identifiers, each once.
    pub title_ids: Vec<String>,
    /// Work of each dictionary title, parallel to `title_ids`.
    pub work_ids: Vec<String>,
}

/// Error for a [`Loans`] value whose columns do not fit together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoansError {
    /// Row columns differ in length.
    #[error("columns differ in length: {borrowers} borrowers, {titles} titles, {months} months")]
    RaggedColumns {
        /// Length of the borrower column.
        borrowers: usize,
        /// Length of the title column.
        titles: usize,
        /// Length of the month column.
        months: usize,
    },
    /// The work column of the dictionary differs in length from the titles.
    #[error("title dictionary has {titles} titles but {works} works")]
    RaggedDictionary {
        /// Dictionary titles.
        titles: usize,
        /// Dictionary works.
        works: usize,
    },
    /// A row refers past the end of the title dictionary.
    #[error("row {row} refers to title {title}, past the dictionary of {len}")]
    TitleOutOfRange {
        /// Row index.
        row: usize,
        /// Title index found.
        title: u32,
        /// Dictionary length.
        len: usize,
    },
    /// A row refers past the end of the borrower dictionary.
    #[error("row {row} refers to borrower {borrower}, past the dictionary of {len}")]
    BorrowerOutOfRange {
        /// Row index.
        row: usize,
        /// Borrower index found.
        borrower: u32,
        /// Dictionary length.
        len: usize,
    },
    /// A title id appears twice in the dictionary.
    #[error("title dictionary holds a title twice")]
    DuplicateTitle,
    /// A pseudonym appears twice in the borrower dictionary: one borrower
    /// would count as two.
    #[error("borrower dictionary holds a pseudonym twice")]
    DuplicatePseudonym,
}

/// The first row of an index column that points past a dictionary of `len`
/// entries, and its index.
fn first_past(column: &[u32], len: usize) -> Option<(usize, u32)> {
    use rayon::prelude::*;
    // Parts of 64 Ki rows on the pool, each judged by its largest index (a
    // loop the compiler vectorizes; a search row by row on the pool paid
    // rayon's bookkeeping for every row), then the faulty part row by row.
    const PART: usize = 1 << 16;
    let part = column
        .par_chunks(PART)
        .position_first(|c| c.iter().copied().max().is_some_and(|m| m as usize >= len))?;
    let rows = &column[part * PART..];
    let at = rows.iter().position(|&i| i as usize >= len)?;
    Some((part * PART + at, rows[at]))
}

/// Whether some value occurs twice in `values`. A set, not a sort: at 100M
/// loans (2M titles, 4M pseudonyms) sorting took twice as long, and every
/// ingest, batch id and engine build validates its loans.
fn holds_twice<T: std::hash::Hash + Eq>(values: impl ExactSizeIterator<Item = T>) -> bool {
    let mut seen = hashbrown::HashSet::with_capacity(values.len());
    let mut values = values;
    !values.all(|v| seen.insert(v))
}

/// A borrower dictionary being built: each pseudonym once, numbered in order
/// of first appearance. The one place where pseudonyms are looked up by
/// value to give them an index (sealed batches of version 1, store files,
/// merged windows).
#[derive(Default)]
pub struct BorrowerNumbering {
    index: std::collections::HashMap<u128, u32, BuildPseudonymHasher>,
    pseudonyms: Vec<Pseudonym>,
}

impl BorrowerNumbering {
    /// Continues a dictionary that holds each pseudonym once: entry `i`
    /// keeps index `i`.
    pub fn continuing(pseudonyms: Vec<Pseudonym>) -> Self {
        let index = pseudonyms
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_u128(), i as u32))
            .collect();
        BorrowerNumbering { index, pseudonyms }
    }

    /// The index of `p`, added at the end if it is new; `None` once 2^32
    /// pseudonyms are numbered.
    pub fn number(&mut self, p: Pseudonym) -> Option<u32> {
        let next = u32::try_from(self.pseudonyms.len()).ok();
        match self.index.entry(p.as_u128()) {
            std::collections::hash_map::Entry::Occupied(e) => Some(*e.get()),
            std::collections::hash_map::Entry::Vacant(e) => {
                let next = next?;
                e.insert(next);
                self.pseudonyms.push(p);
                Some(next)
            }
        }
    }

    /// The dictionary: index `i` is the `i`-th pseudonym numbered.
    pub fn into_pseudonyms(self) -> Vec<Pseudonym> {
        self.pseudonyms
    }
}

/// Numbers the distinct pseudonyms of `rows` in order of first appearance:
/// each row's index, and the dictionary. One hash lookup a row; for loans
/// read from where only per-row pseudonyms exist (sealed batches, files).
/// Fewer than 2^32 rows, so every pseudonym gets an index.
pub fn intern_pseudonyms(rows: &[Pseudonym]) -> (Vec<u32>, Vec<Pseudonym>) {
    let mut numbering = BorrowerNumbering::default();
    let borrowers = rows
        .iter()
        .map(|&p| numbering.number(p).unwrap_or(u32::MAX))
        .collect();
    (borrowers, numbering.into_pseudonyms())
}

impl Loans {
    /// Loans from per-row pseudonyms, numbering the borrowers in order of
    /// first appearance. Fewer than 2^32 rows.
    pub fn from_rows(
        pseudonyms: &[Pseudonym],
        titles: Vec<u32>,
        months: Vec<LoanMonth>,
        title_ids: Vec<String>,
        work_ids: Vec<String>,
    ) -> Loans {
        let (borrowers, borrower_pseudonyms) = intern_pseudonyms(pseudonyms);
        Loans {
            borrowers,
            titles,
            months,
            borrower_pseudonyms,
            title_ids,
            work_ids,
        }
    }

    /// Replaces the borrower column and dictionary by those of per-row
    /// pseudonyms (see [`Loans::from_rows`]).
    pub fn set_row_pseudonyms(&mut self, pseudonyms: &[Pseudonym]) {
        (self.borrowers, self.borrower_pseudonyms) = intern_pseudonyms(pseudonyms);
    }

    /// Number of loan rows.
    pub fn len(&self) -> usize {
        self.borrowers.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.borrowers.is_empty()
    }

    /// The pseudonym of row `row`'s borrower.
    ///
    /// # Panics
    /// If `row` or its borrower index is out of range (see [`Loans::validate`]).
    pub fn pseudonym(&self, row: usize) -> Pseudonym {
        self.borrower_pseudonyms[self.borrowers[row] as usize]
    }

    /// Each row's pseudonym, in row order.
    ///
    /// # Panics
    /// If a borrower index is out of range (see [`Loans::validate`]).
    pub fn row_pseudonyms(&self) -> impl ExactSizeIterator<Item = Pseudonym> + '_ {
        self.borrowers
            .iter()
            .map(|&b| self.borrower_pseudonyms[b as usize])
    }

    /// Checks that the columns fit together (lengths, dictionary references,
    /// unique dictionary entries). Stages call this on data they did not make.
    pub fn validate(&self) -> Result<(), LoansError> {
        let (b, t, m) = (self.borrowers.len(), self.titles.len(), self.months.len());
        if b != t || b != m {
            return Err(LoansError::RaggedColumns {
                borrowers: b,
                titles: t,
                months: m,
            });
        }
        if self.title_ids.len() != self.work_ids.len() {
            return Err(LoansError::RaggedDictionary {
                titles: self.title_ids.len(),
                works: self.work_ids.len(),
            });
        }
        // The four checks side by side (each was one thread's pass, and a
        // run validates its loans at ingest and again at build); the first
        // fault in this order is the one reported.
        let (titles, borrowers) = (self.title_ids.len(), self.borrower_pseudonyms.len());
        let ((title_past, borrower_past), (title_twice, pseudonym_twice)) = rayon::join(
            || {
                rayon::join(
                    || first_past(&self.titles, titles),
                    || first_past(&self.borrowers, borrowers),
                )
            },
            || {
                rayon::join(
                    || holds_twice(self.title_ids.iter().map(String::as_str)),
                    || holds_twice(self.borrower_pseudonyms.iter().map(Pseudonym::as_u128)),
                )
            },
        );
        if let Some((row, title)) = title_past {
            return Err(LoansError::TitleOutOfRange {
                row,
                title,
                len: titles,
            });
        }
        if let Some((row, borrower)) = borrower_past {
            return Err(LoansError::BorrowerOutOfRange {
                row,
                borrower,
                len: borrowers,
            });
        }
        if title_twice {
            return Err(LoansError::DuplicateTitle);
        }
        if pseudonym_twice {
            return Err(LoansError::DuplicatePseudonym);
        }
        Ok(())
    }

    /// Appends the rows of `other`, merging its dictionaries into ours.
    pub fn append(&mut self, other: &Loans) {
        let mut index: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
        for (i, t) in self.title_ids.iter().enumerate() {
            index.insert(t.as_str(), i as u32);
        }
        let mut remap = Vec::with_capacity(other.title_ids.len());
        let mut new_titles = Vec::new();
        for (t, w) in other.title_ids.iter().zip(&other.work_ids) {
            match index.get(t.as_str()) {
                Some(&i) => remap.push(i),
                None => {
                    let i = (self.title_ids.len() + new_titles.len()) as u32;
                    remap.push(i);
                    new_titles.push((t.clone(), w.clone()));
                }
            }
        }
        drop(index);
        for (t, w) in new_titles {
            self.title_ids.push(t);
            self.work_ids.push(w);
        }
        let mut numbering =
            BorrowerNumbering::continuing(std::mem::take(&mut self.borrower_pseudonyms));
        let borrower_remap: Vec<u32> = other
            .borrower_pseudonyms
            .iter()
            .map(|&p| numbering.number(p).unwrap_or(u32::MAX))
            .collect();
        self.borrower_pseudonyms = numbering.into_pseudonyms();
        self.borrowers
            .extend(other.borrowers.iter().map(|&b| borrower_remap[b as usize]));
        self.months.extend_from_slice(&other.months);
        self.titles
            .extend(other.titles.iter().map(|&t| remap[t as usize]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn month_round_trips_through_text() {
        let m: LoanMonth = "2024-02".parse().unwrap();
        assert_eq!((m.year(), m.month()), (2024, 2));
        assert_eq!(m.to_string(), "2024-02");
        assert_eq!(m.plus(-2).unwrap().to_string(), "2023-12");
        assert!(m.plus(i32::MAX).is_err());
        assert!(m.plus(i32::MIN).is_err());
        assert!("2024-13".parse::<LoanMonth>().is_err());
        assert!("2024-1".parse::<LoanMonth>().is_err());
        assert!("０２０24-01".parse::<LoanMonth>().is_err());
    }

    #[test]
    fn epoch_days_match_known_dates() {
        assert_eq!(LoanMonth::new(1970, 1).unwrap().first_day_since_epoch(), 0);
        assert_eq!(
            LoanMonth::new(2000, 3).unwrap().first_day_since_epoch(),
            11_017
        );
        assert_eq!(
            LoanMonth::from_days_since_epoch(11_016)
                .unwrap()
                .to_string(),
            "2000-02"
        );
    }

    #[test]
    fn pseudonym_debug_is_redacted() {
        let p = Pseudonym([0xab; 16]);
        assert_eq!(format!("{p:?}"), "Pseudonym(<redacted>)");
    }

    #[test]
    fn numbering_continues_a_dictionary_in_order_of_first_appearance() {
        let p = |b| Pseudonym([b; 16]);
        let mut n = BorrowerNumbering::continuing(vec![p(5), p(3)]);
        assert_eq!(n.number(p(3)), Some(1));
        assert_eq!(n.number(p(9)), Some(2));
        assert_eq!(n.number(p(5)), Some(0));
        assert_eq!(n.number(p(9)), Some(2));
        assert_eq!(n.into_pseudonyms(), [p(5), p(3), p(9)]);
        assert_eq!(
            intern_pseudonyms(&[p(7), p(3), p(7)]),
            (vec![0, 1, 0], vec![p(7), p(3)])
        );
    }

    #[test]
    fn append_merges_dictionaries() {
        let (p, q) = (Pseudonym([1; 16]), Pseudonym([2; 16]));
        let m = LoanMonth::new(2024, 1).unwrap();
        let mut a = Loans::from_rows(&[p], vec![0], vec![m], vec!["x".into()], vec!["x".into()]);
        let b = Loans::from_rows(
            &[q, p, p],
            vec![1, 0, 1],
            vec![m, m, m],
            vec!["y".into(), "x".into()],
            vec!["y".into(), "x".into()],
        );
        a.append(&b);
        a.validate().unwrap();
        assert_eq!(a.title_ids, ["x", "y"]);
        assert_eq!(a.titles, [0, 0, 1, 0]);
        assert_eq!(a.borrower_pseudonyms, [p, q]);
        assert_eq!(a.borrowers, [0, 1, 0, 0]);
        assert_eq!(a.row_pseudonyms().collect::<Vec<_>>(), [p, q, p, p]);
    }

    #[test]
    fn validate_reports_the_first_fault_first() {
        let m = LoanMonth::new(2024, 1).unwrap();
        let rows = 300_000;
        let pseudonyms: Vec<Pseudonym> = (0..rows)
            .map(|i: u32| {
                let mut p = [0; 16];
                p[..4].copy_from_slice(&(i % 1000).to_le_bytes());
                Pseudonym(p)
            })
            .collect();
        let mut l = Loans::from_rows(
            &pseudonyms,
            (0..rows).map(|i| i % 3).collect(),
            vec![m; rows as usize],
            vec!["a".into(), "b".into(), "c".into()],
            vec!["a".into(), "b".into(), "c".into()],
        );
        l.validate().unwrap();
        // Faults everywhere: titles past the dictionary late and early
        // (the earliest row is named), a borrower past it, a title and a
        // pseudonym twice; taken away one at a time, in the order reported.
        l.titles[250_000] = 7;
        l.titles[123_457] = 5;
        l.borrowers[10] = 5000;
        l.title_ids[2] = "a".into();
        let pseudonym = l.borrower_pseudonyms[3];
        l.borrower_pseudonyms.push(pseudonym);
        assert_eq!(
            l.validate(),
            Err(LoansError::TitleOutOfRange {
                row: 123_457,
                title: 5,
                len: 3
            })
        );
        l.titles[123_457] = 0;
        l.titles[250_000] = 0;
        assert_eq!(
            l.validate(),
            Err(LoansError::BorrowerOutOfRange {
                row: 10,
                borrower: 5000,
                len: 1001
            })
        );
        l.borrowers[10] = 0;
        assert_eq!(l.validate(), Err(LoansError::DuplicateTitle));
        l.title_ids[2] = "c".into();
        assert_eq!(l.validate(), Err(LoansError::DuplicatePseudonym));
        l.borrower_pseudonyms.pop();
        l.validate().unwrap();
    }

    #[test]
    fn validate_refuses_a_pseudonym_twice_and_an_index_past_the_dictionary() {
        let p = Pseudonym([1; 16]);
        let m = LoanMonth::new(2024, 1).unwrap();
        let mut l = Loans::from_rows(
            &[p, p],
            vec![0, 0],
            vec![m, m],
            vec!["x".into()],
            vec!["x".into()],
        );
        l.validate().unwrap();
        assert_eq!(l.borrowers, [0, 0]);
        l.borrower_pseudonyms.push(p);
        assert_eq!(l.validate(), Err(LoansError::DuplicatePseudonym));
        l.borrower_pseudonyms.pop();
        l.borrowers[1] = 1;
        assert!(matches!(
            l.validate(),
            Err(LoansError::BorrowerOutOfRange {
                row: 1,
                borrower: 1,
                len: 1
            })
        ));
    }

    proptest! {
        #[test]
        fn days_and_months_agree(idx in 12i32..(9999 * 12 + 11)) {
            let m = LoanMonth::from_index(idx).unwrap();
            prop_assert_eq!(LoanMonth::from_days_since_epoch(m.first_day_since_epoch()).unwrap(), m);
            // The day before the first month (January of year 1) has no month.
            if idx > 12 {
                prop_assert_eq!(LoanMonth::from_days_since_epoch(m.first_day_since_epoch() - 1).unwrap().plus(1).unwrap(), m);
            } else {
                prop_assert!(LoanMonth::from_days_since_epoch(m.first_day_since_epoch() - 1).is_err());
            }
        }
    }
}
