//! The record sink: the one place where a loan record, from whatever source,
//! is checked, counted and kept.
//!
//! The CSV and TSV parsers feed it through [`Chunk::check`] after splitting
//! lines into fields; record sources (NDJSON lines, database rows) feed it
//! through a [`RecordSink`], which owns a single chunk and finishes through
//! the same assembly as files: the same reject reasons and numbering, the
//! same canonicalization, one pseudonym per distinct borrower, the same
//! zeroization and works mapping. A record source therefore cannot keep a
//! row that a file would reject, or report it differently.

use std::path::PathBuf;

use jiff::civil::Date;
use loans::{LoanMonth, Loans};
use pseudonym::Pseudonymizer;

use crate::date::DateParser;
use crate::merge::Assembler;
use crate::parse::Chunk;
use crate::{ExtractError, ExtractReport, RejectReason};

/// A loan's date as a source gives it.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(
    not(any(feature = "postgres", feature = "mysql")),
    allow(dead_code, reason = "`Invalid` comes from databases only")
)]
pub(crate) enum LoanDate<'a> {
    /// Text in the configured `date_format` (untrimmed, maybe not UTF-8).
    Text(&'a [u8]),
    /// A day the source already typed as a date or timestamp.
    Day(Date),
    /// No value (SQL `NULL`, an absent JSON field).
    Missing,
    /// A value the source typed as a date that is no day (`infinity`).
    Invalid,
    /// A typed value already found to be no usable day, and why.
    Rejected(RejectReason),
}

impl Chunk {
    /// Checks one record's borrower id, title and date, and keeps it or
    /// counts why not. Everything is checked before the id is kept, so a
    /// rejected record never adds a borrower. `line` is chunk-local.
    pub(crate) fn check(
        &mut self,
        line: u64,
        borrower: &[u8],
        title: &[u8],
        date: LoanDate<'_>,
        dates: &DateParser,
        today: Date,
    ) {
        let (Ok(borrower), Ok(title)) = (std::str::from_utf8(borrower), std::str::from_utf8(title))
        else {
            return self.reject(line, RejectReason::InvalidUtf8);
        };
        let date = match date {
            LoanDate::Text(text) => match std::str::from_utf8(text) {
                Ok(text) => text_date(text),
                Err(_) => return self.reject(line, RejectReason::InvalidUtf8),
            },
            LoanDate::Day(day) => Ok(Ok(day)),
            LoanDate::Missing => Ok(Err(RejectReason::MissingDate)),
            LoanDate::Invalid => Ok(Err(RejectReason::UnparseableDate)),
            LoanDate::Rejected(reason) => Ok(Err(reason)),
        };
        self.keep(line, borrower, title, date, true, dates, today);
    }

    /// Like [`Chunk::check`] for a record whose fields are already known to
    /// be UTF-8 text (a line validated as a whole), the date in text; with
    /// `nul_free`, the line was found to hold no NUL byte.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_text(
        &mut self,
        line: u64,
        borrower: &str,
        title: &str,
        date: &str,
        nul_free: bool,
        dates: &DateParser,
        today: Date,
    ) {
        self.keep(
            line,
            borrower,
            title,
            text_date(date),
            !nul_free,
            dates,
            today,
        );
    }

    /// The checks after UTF-8 validation. `date` is `Err` with text still to
    /// parse or `Ok` with a typed day or why there is none; `maybe_nul` is
    /// false when the fields are known to hold no NUL byte.
    #[allow(clippy::too_many_arguments)]
    fn keep(
        &mut self,
        line: u64,
        borrower: &str,
        title: &str,
        date: Result<Result<Date, RejectReason>, &str>,
        maybe_nul: bool,
        dates: &DateParser,
        today: Date,
    ) {
        // A NUL would end the id in C-string tools downstream of an export
        // and is never part of a real card number or title id.
        if maybe_nul && (borrower.contains('\0') || title.contains('\0')) {
            return self.reject(line, RejectReason::NulByte);
        }
        let title = trim(title);
        if trim(borrower).is_empty() {
            return self.reject(line, RejectReason::MissingBorrowerId);
        }
        if title.is_empty() {
            return self.reject(line, RejectReason::MissingTitle);
        }
        let day = match date
            .unwrap_or_else(|text| dates.parse(text).ok_or(RejectReason::UnparseableDate))
        {
            Ok(day) => day,
            Err(reason) => return self.reject(line, reason),
        };
        if day > today {
            return self.reject(line, RejectReason::FutureDate);
        }
        let Ok(month) = LoanMonth::new(i32::from(day.year()), day.month() as u32) else {
            return self.reject(line, RejectReason::UnparseableDate);
        };
        if !self.keys.borrowers.push(borrower, self.kept) {
            return self.reject(line, RejectReason::MissingBorrowerId);
        }
        if self.ids_only {
            self.kept += 1;
            return;
        }
        self.keys.titles.push(title.as_bytes(), self.kept);
        self.kept += 1;
        self.months.push(month);
        if self.newest.is_none_or(|n| n < day) {
            self.newest = Some(day);
        }
    }
}

/// `s` without leading and trailing white space, as `str::trim`; a field
/// that starts and ends with a visible ASCII character (nearly every one) is
/// returned as it is, without decoding its ends (a trim was 3 % of extract).
pub(crate) fn trim(s: &str) -> &str {
    let visible = |b: &u8| (0x21..0x80).contains(b);
    match (s.as_bytes().first(), s.as_bytes().last()) {
        (Some(a), Some(b)) if visible(a) && visible(b) => s,
        _ => s.trim(),
    }
}

/// A text date: `Err` with the trimmed text to parse, or `Ok(Err(..))` when
/// it is blank.
fn text_date(text: &str) -> Result<Result<Date, RejectReason>, &str> {
    match trim(text) {
        "" => Ok(Err(RejectReason::MissingDate)),
        trimmed => Err(trimmed),
    }
}

/// Most records one record source yields: keeps every per-run count within
/// `u32`, as [`crate::MAX_INPUT_BYTES`] does for files.
pub(crate) const MAX_RECORDS: u64 = u32::MAX as u64;

/// Kept records a sink's chunk holds before they are numbered: a chunk
/// keeps each row's keys until then, so a large source is numbered in
/// parts, as a file is in blocks.
const CHUNK_ROWS: u32 = 1 << 16;

/// Collects the records of one source, numbered by the source (line or row
/// number), and turns them into pseudonymous loans.
pub(crate) struct RecordSink {
    label: PathBuf,
    /// The records numbered so far.
    asm: Assembler,
    /// The records since.
    chunk: Chunk,
    /// Whether numbering a chunk failed (too many distinct keys).
    too_many: bool,
    dates: DateParser,
    today: Date,
}

impl RecordSink {
    /// A sink for the source named `label` in reports and errors (a file, or
    /// a database as `postgres://host:port/name`), parsing text dates with
    /// `dates` and rejecting dates after `today`.
    pub(crate) fn new(label: PathBuf, dates: DateParser, today: Date) -> Self {
        RecordSink {
            label,
            asm: Assembler::default(),
            chunk: Chunk::new(0),
            too_many: false,
            dates,
            today,
        }
    }

    /// ISO dates counted in UTC, for tests.
    #[cfg(test)]
    pub(crate) fn utc_iso() -> DateParser {
        DateParser::new("iso", jiff::tz::TimeZone::UTC)
    }

    /// Records seen so far, rejected ones included.
    #[cfg_attr(
        not(any(feature = "postgres", feature = "mysql")),
        allow(dead_code, reason = "used by the database sources")
    )]
    pub(crate) fn records(&self) -> u64 {
        self.asm.rows_read() + self.chunk.rows_read
    }

    /// Whether one more record would exceed [`MAX_RECORDS`].
    pub(crate) fn full(&self) -> bool {
        self.records() >= MAX_RECORDS
    }

    /// Numbers the chunk's records into the assembler.
    fn flush(&mut self) {
        let chunk = std::mem::replace(&mut self.chunk, Chunk::new(0));
        self.too_many |= self.asm.absorb(chunk).is_err();
    }

    /// Checks record number `record` and keeps it or counts why not. An
    /// absent id is passed as empty bytes.
    pub(crate) fn push(&mut self, record: u64, borrower: &[u8], title: &[u8], date: LoanDate<'_>) {
        self.chunk.rows_read += 1;
        let RecordSink {
            chunk,
            dates,
            today,
            ..
        } = self;
        chunk.check(record, borrower, title, date, dates, *today);
        if self.chunk.kept >= CHUNK_ROWS {
            self.flush();
        }
    }

    /// Counts record number `record` as read and rejected for `reason`, for
    /// a record the source could not split into fields.
    pub(crate) fn reject(&mut self, record: u64, reason: RejectReason) {
        self.chunk.rows_read += 1;
        self.chunk.reject(record, reason);
    }

    /// Pseudonymizes the kept records, lending the distinct canonical ids to
    /// `audit` just before they are wiped; fails as a file would when there
    /// was no record or no valid one.
    pub(crate) fn finish(
        mut self,
        pseudonymizer: &Pseudonymizer,
        audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
    ) -> Result<(Loans, ExtractReport), ExtractError> {
        self.flush();
        if self.too_many {
            return Err(ExtractError::TooManyLoans { path: self.label });
        }
        crate::finish(&self.label, self.asm, pseudonymizer, audit)
    }

    /// Lends the distinct canonical ids of the kept records to `audit`, for
    /// a leak check only; they are wiped on return.
    pub(crate) fn lend<R>(
        mut self,
        audit: impl FnOnce(&mut dyn Iterator<Item = &[u8]>) -> R,
    ) -> Result<R, ExtractError> {
        self.flush();
        if self.too_many {
            return Err(ExtractError::TooManyLoans { path: self.label });
        }
        Ok(self.asm.lend(audit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    use crate::check::pseudonymizer;

    /// What the whole-file csv reader makes of `csv`, named and dated as
    /// the sinks of these tests are.
    fn from_csv(csv: &[u8]) -> (Loans, ExtractReport) {
        crate::check::run_source(
            csv,
            &crate::tests::source(""),
            crate::check::Mode::Reference,
        )
        .unwrap()
    }

    /// The same loans through a CSV file and through the sink agree exactly.
    #[test]
    fn records_are_checked_like_csv_rows() {
        let rows: [(&[u8], &[u8], &[u8]); 9] = [
            (b" ab1 ", b"t1", b"2024-01-05"),
            (b"AB1", b" t2 ", b"2024-02-01T10:00"),
            (b"", b"t1", b"2024-01-05"),
            (b"x", b"", b"2024-01-05"),
            (b"x", b"t1", b""),
            (b"x", b"t1", b"2024-02-30"),
            (b"x", b"t1", b"2024-07-01"),
            (b"x\xff", b"t1", b"2024-01-01"),
            (b"Z9", b"t1", b"2023-12-31 23:59"),
        ];
        let mut csv = b"borrower_id,title_id,loan_date\n".to_vec();
        // Named and dated as `check::run_source` names and dates the file.
        let mut sink =
            RecordSink::new("loans.csv".into(), RecordSink::utc_iso(), date(2024, 6, 15));
        for (i, (b, t, d)) in rows.iter().enumerate() {
            for part in [*b, b",", *t, b",", *d, b"\n"] {
                csv.extend_from_slice(part);
            }
            sink.push(i as u64 + 2, b, t, LoanDate::Text(d));
        }
        let from_sink = sink.finish(&pseudonymizer(), &mut |_| {}).unwrap();
        assert_eq!(from_sink, from_csv(&csv));
        assert_eq!(from_sink.1.rows_kept, 3);
        assert_eq!(from_sink.1.distinct_borrowers, 2);
    }

    /// A source larger than a chunk is numbered in parts, with the same
    /// result as a file.
    #[test]
    fn records_beyond_one_chunk_number_as_a_file_does() {
        let rows = 2 * CHUNK_ROWS as usize + 1_000;
        let mut csv = b"borrower_id,title_id,loan_date\n".to_vec();
        let mut sink =
            RecordSink::new("loans.csv".into(), RecordSink::utc_iso(), date(2024, 6, 15));
        for i in 0..rows {
            // Numeric ids of every length, a few long ones, and repeats.
            let b = match i % 5 {
                4 => format!("card-{:030}", i % 3_001),
                _ => format!("{}", (i * 7) % 9_001),
            };
            let (t, d) = (
                format!("t{}", (i * 13) % 777),
                format!("2024-0{}-01", 1 + i % 5),
            );
            csv.extend_from_slice(format!("{b},{t},{d}\n").as_bytes());
            sink.push(
                i as u64 + 2,
                b.as_bytes(),
                t.as_bytes(),
                LoanDate::Text(d.as_bytes()),
            );
        }
        let from_sink = sink.finish(&pseudonymizer(), &mut |_| {}).unwrap();
        assert_eq!(from_sink.1.rows_read, rows as u64);
        assert_eq!(from_sink, from_csv(&csv));
    }

    #[test]
    fn typed_days_and_missing_dates() {
        let mut sink = RecordSink::new(
            "db".into(),
            DateParser::new("%d.%m.%Y", jiff::tz::TimeZone::UTC),
            date(2024, 6, 15),
        );
        sink.push(1, b"a", b"t", LoanDate::Day(date(2024, 3, 1)));
        sink.push(2, b"a", b"t", LoanDate::Missing);
        sink.push(3, b"a", b"t", LoanDate::Day(date(2024, 6, 16)));
        sink.push(4, b"b", b"t", LoanDate::Text(b"01.05.2024"));
        sink.reject(5, RejectReason::MalformedRecord);
        assert_eq!(sink.records(), 5);
        let (loans, report) = sink.finish(&pseudonymizer(), &mut |_| {}).unwrap();
        assert_eq!(loans.months.len(), 2);
        assert_eq!(report.rows_read, 5);
        assert_eq!(report.rejected[&RejectReason::MissingDate].rows, [2]);
        assert_eq!(report.rejected[&RejectReason::FutureDate].rows, [3]);
        assert_eq!(report.rejected[&RejectReason::MalformedRecord].rows, [5]);
        assert_eq!(report.first_month, Some("2024-03".parse().unwrap()));
    }

    #[test]
    fn no_records_or_no_valid_record_fail_as_for_files() {
        let sink = RecordSink::new("db".into(), RecordSink::utc_iso(), date(2024, 6, 15));
        assert!(matches!(
            sink.finish(&pseudonymizer(), &mut |_| {}),
            Err(ExtractError::EmptyFile { .. })
        ));
        let mut sink = RecordSink::new("db".into(), RecordSink::utc_iso(), date(2024, 6, 15));
        sink.push(1, b"", b"t", LoanDate::Missing);
        assert!(matches!(
            sink.finish(&pseudonymizer(), &mut |_| {}),
            Err(ExtractError::NoValidRows { .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn trim_is_str_trim(s in "[ \t\u{a0}\u{3000}\u{1c}a-z0-9\u{e9}]{0,6}") {
            proptest::prop_assert_eq!(trim(&s), s.trim());
        }
    }
}
