//! Reads a circulation export, pseudonymizes borrower ids and keeps only what
//! mining needs: pseudonym, title (and its work) and loan month.
//!
//! A text export (CSV, TSV, semicolon-separated; UTF-8, Windows-1252 or
//! Latin-1) is read in bounded blocks that end at line breaks, so a file
//! larger than memory streams through: a quote-free block is split into
//! pieces parsed in parallel, and from the first block with a quote (or a
//! lone carriage return) on, the csv crate's record reader takes over. A
//! Parquet export is read by column name. Chunks are merged in file order,
//! so the output does not depend on block size or thread count.
//!
//! Architecture invariant: this is the only crate in which raw borrower ids
//! exist. They are read from the file block by block, canonicalized (trimmed,
//! ASCII-uppercased), pseudonymized once per distinct id and then dropped; the
//! blocks and the id stores are zeroized (best effort: buffers freed while a
//! hash table grows, and Arrow's buffers on the Parquet path, are not). Nothing public carries an id: errors and the
//! [`ExtractReport`] name files, row numbers, reasons and column names, never
//! a field value. [`lend_borrower_ids`] and [`extract_and_lend`] lend ids to a
//! leak check's forbidden set for the duration of a call, nothing else.
//!
//! Sources: CSV and TSV files (parsed in parallel pieces), NDJSON files and,
//! with the cargo features `postgres` and `mysql`, one read-only query of an
//! ILS database. Whatever the source, every record passes the same check in
//! the record sink (`records`) and the same assembly.

mod borrower;
#[cfg(any(test, feature = "fuzzing"))]
mod check;
mod columnar;
mod date;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod db;
mod hints;
mod interner;
mod keys;
mod merge;
mod ndjson;
mod parse;
mod read;
mod records;
mod separators;
mod titles;
mod works;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use loans::{LoanMonth, Loans};
use pseudonym::Pseudonymizer;

use crate::date::DateParser;
use crate::merge::Assembler;
use crate::parse::{Chunk, CsvRecords, KeyBuffers, Layout};
use crate::read::{Block, Blocks};

pub use crate::hints::{
    DateDetection, DateHint, EncodingFix, Hints, IdKind, IdShape, KNOWN_DATE_FORMATS,
    KnownDateFormat, SAMPLE_ROWS, Sample, date_format_parses, detect_date_format, encoding_fix,
    header_encoding_fix, sample,
};
pub use crate::merge::MAX_LOANS;
pub use crate::read::MAX_LINE_BYTES;

/// Most row numbers kept per reject reason in the report.
pub const MAX_REJECTED_ROWS: usize = 20;

/// Smallest piece of a quote-free block parsed as one parallel task.
const MIN_PIECE: usize = 64 << 10;

/// Pieces of a quote-free block per thread ([`How::piece`]).
const PIECES_PER_THREAD: usize = 4;

/// What to extract and how.
#[derive(Debug, Clone, Copy)]
pub struct ExtractInput<'a> {
    /// The source settings: path, format, column names, date format.
    pub source: &'a pipeline::Source,
    /// The optional title-to-work mapping.
    pub works: Option<&'a pipeline::Works>,
    /// A file to read instead of `source.path`.
    pub input: Option<&'a Path>,
    /// Loans dated after this day are rejected.
    pub today: jiff::civil::Date,
}

/// The pseudonymous loans of one export and a report on reading it.
#[derive(Debug, Clone)]
pub struct Extraction {
    /// Kept rows, in title order month by month when each month is one run
    /// of rows of the file (an export in date order), else in file order;
    /// titles in order of first appearance.
    pub loans: Loans,
    /// Counts and rejections.
    pub report: ExtractReport,
}

/// Counts of what was read, kept and rejected; holds no field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractReport {
    /// The file read.
    pub path: PathBuf,
    /// Data rows read (the header and blank lines are not rows).
    pub rows_read: u64,
    /// Loans kept (after merging repeats): the rows of the batch.
    pub rows_kept: u64,
    /// Valid rows merged into an earlier row with the same borrower, title
    /// and month: they cannot change a distinct-borrower count.
    pub duplicates: u64,
    /// Distinct canonical borrower ids among kept rows.
    pub distinct_borrowers: u64,
    /// Distinct titles among kept rows.
    pub distinct_titles: u64,
    /// Earliest loan month kept.
    pub first_month: Option<LoanMonth>,
    /// Latest loan month kept.
    pub last_month: Option<LoanMonth>,
    /// Latest loan day kept: borrower-loan links up to this day were
    /// transferred.
    pub newest_day: Option<jiff::civil::Date>,
    /// Rejected rows by reason (reasons without rejections are absent).
    pub rejected: BTreeMap<RejectReason, Rejections>,
}

/// Rejected rows of one reason.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rejections {
    /// How many rows.
    pub count: u64,
    /// Line numbers of the first [`MAX_REJECTED_ROWS`] of them, ascending.
    pub rows: Vec<u64>,
}

/// Why a row was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// The row has more or fewer fields than the header.
    WrongColumnCount,
    /// A used field is not valid UTF-8.
    InvalidUtf8,
    /// A used field holds a NUL byte: binary data, or UTF-16 read as UTF-8.
    NulByte,
    /// The borrower id is empty after trimming.
    MissingBorrowerId,
    /// The title is empty after trimming.
    MissingTitle,
    /// The loan date is empty.
    MissingDate,
    /// The loan date does not match the date format or is not a real day.
    UnparseableDate,
    /// The loan date is after today.
    FutureDate,
    /// A record source's record could not be read as one (an NDJSON line
    /// that is not a JSON object, or is too long).
    MalformedRecord,
    /// A used field has a type that cannot be an id or a date (a JSON
    /// array, object, boolean or fraction).
    WrongFieldType,
}

impl RejectReason {
    /// Every reason, in order.
    pub const ALL: [RejectReason; 10] = [
        RejectReason::WrongColumnCount,
        RejectReason::InvalidUtf8,
        RejectReason::NulByte,
        RejectReason::MissingBorrowerId,
        RejectReason::MissingTitle,
        RejectReason::MissingDate,
        RejectReason::UnparseableDate,
        RejectReason::FutureDate,
        RejectReason::MalformedRecord,
        RejectReason::WrongFieldType,
    ];

    /// A few lower-case words naming the reason.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::WrongColumnCount => "wrong column count",
            RejectReason::InvalidUtf8 => "invalid utf-8",
            RejectReason::NulByte => "nul byte",
            RejectReason::MissingBorrowerId => "missing borrower id",
            RejectReason::MissingTitle => "missing title",
            RejectReason::MissingDate => "missing date",
            RejectReason::UnparseableDate => "unparseable date",
            RejectReason::FutureDate => "future date",
            RejectReason::MalformedRecord => "malformed record",
            RejectReason::WrongFieldType => "wrong field type",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ExtractReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: read {} rows, kept {} ({} borrowers, {} titles",
            self.path.display(),
            self.rows_read,
            self.rows_kept,
            self.distinct_borrowers,
            self.distinct_titles
        )?;
        if let (Some(first), Some(last)) = (self.first_month, self.last_month) {
            write!(f, ", {first} to {last}")?;
        }
        f.write_str(")")?;
        if self.duplicates > 0 {
            write!(f, "; merged {} repeated loans", self.duplicates)?;
        }
        if !self.rejected.is_empty() {
            write!(f, "; rejected {}", RejectionSummary(&self.rejected))?;
        }
        Ok(())
    }
}

/// `reason N (rows a, b, ...)` for each reason, comma-separated.
struct RejectionSummary<'a>(&'a BTreeMap<RejectReason, Rejections>);

impl fmt::Display for RejectionSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (reason, r)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{reason} {} (rows ", r.count)?;
            for (j, row) in r.rows.iter().enumerate() {
                if j > 0 {
                    f.write_str(" ")?;
                }
                write!(f, "{row}")?;
            }
            if r.count > r.rows.len() as u64 {
                f.write_str(" ...")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Why an extraction failed; messages name files, rows, reasons and column
/// names, never a field value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExtractError {
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// More than [`MAX_LOANS`] loans would be kept.
    #[error("{path}: more than {} loans, split the export by period", MAX_LOANS)]
    TooManyLoans {
        /// The file.
        path: PathBuf,
    },
    /// A line (or a quoted record) is longer than [`MAX_LINE_BYTES`].
    #[error(
        "{path}: line {line} is longer than {limit} bytes (is the file truncated, binary or in another format?)"
    )]
    LineTooLong {
        /// The file.
        path: PathBuf,
        /// Line where the long line (or record) starts.
        line: u64,
        /// The limit in bytes.
        limit: usize,
    },
    /// The file starts with a byte order mark of another encoding.
    #[error("{path}: starts with a {found} byte order mark, but source.encoding is {declared}")]
    EncodingMismatch {
        /// The file.
        path: PathBuf,
        /// The encoding the byte order mark announces.
        found: &'static str,
        /// The configured encoding.
        declared: &'static str,
    },
    /// A Parquet file could not be read.
    #[error("{path}: {reason}")]
    Parquet {
        /// The file.
        path: PathBuf,
        /// What is wrong (never a field value).
        reason: String,
    },
    /// The file has no header or no data row.
    #[error("{path}: no data rows")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The header lacks a configured column.
    #[error(
        "{path}: header lacks column(s) {}; {}{}",
        .missing.join(", "),
        FoundColumns(.found),
        EncodingNote(.encoding_fix)
    )]
    HeaderMismatch {
        /// The file.
        path: PathBuf,
        /// Configured column names not in the header.
        missing: Vec<String>,
        /// The header's names, or `None` when withheld because no configured
        /// name matched: the first line may then be a data row, not a header.
        found: Option<Vec<String>>,
        /// The encoding under which the header holds every configured
        /// column, when it is not the configured one.
        encoding_fix: Option<pipeline::Encoding>,
    },
    /// The csv reader could not read a record.
    #[error("{path}: malformed record at line {line}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Line where reading failed.
        line: u64,
    },
    /// Data rows exist but none is valid.
    #[error("{path}: none of the {} data rows is valid: {}{hints}", .report.rows_read, RejectionSummary(&.report.rejected))]
    NoValidRows {
        /// The file.
        path: PathBuf,
        /// What was rejected and why.
        report: Box<ExtractReport>,
        /// The encoding or date format that would read the rows.
        hints: Box<Hints>,
    },
    /// The source's format needs a cargo feature this build lacks.
    #[error("this build cannot read {format} sources; build with the cargo feature {format}")]
    NotBuiltIn {
        /// The format's name.
        format: &'static str,
    },
    /// A database could not be queried; the message holds no field value
    /// and no password.
    #[error("{source_name}: {message}")]
    Database {
        /// The database, as `postgres://host:port/name`.
        source_name: String,
        /// What failed.
        message: String,
    },
    /// The title map is malformed.
    #[error("title map {path}, row {row}: {reason}")]
    TitleMap {
        /// The map file.
        path: PathBuf,
        /// Line number of the offending record (1 for the header).
        row: u64,
        /// What is wrong.
        reason: TitleMapProblem,
    },
    /// Lent ids are missing from the title map.
    #[error("title map {path} lacks {count} of the lent ids; is it older than the loans?")]
    UnmappedTitles {
        /// The map file.
        path: PathBuf,
        /// How many lent ids it lacks.
        count: u64,
    },
    /// The works mapping is malformed.
    #[error("works mapping {path}, row {row}: {reason}")]
    Works {
        /// The mapping file.
        path: PathBuf,
        /// Line number of the offending record (1 for the header).
        row: u64,
        /// What is wrong.
        reason: WorksProblem,
    },
}

/// What is wrong with a title map file (`[source.titles]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TitleMapProblem {
    /// The file is empty; a header is required.
    #[error("empty file, a header is required")]
    Empty,
    /// The header lacks a configured column.
    #[error("header lacks column(s) {}; the header has {}", .missing.join(", "), .found.join(", "))]
    MissingColumns {
        /// Configured column names not in the header.
        missing: Vec<String>,
        /// The header's names.
        found: Vec<String>,
    },
    /// The row has more or fewer fields than the header.
    #[error("wrong column count")]
    WrongColumnCount,
    /// A used field is not valid UTF-8.
    #[error("invalid utf-8")]
    InvalidUtf8,
    /// The id the loans name is empty.
    #[error("missing id")]
    MissingId,
    /// The title is empty.
    #[error("missing title")]
    MissingTitle,
    /// A lent id is mapped to two different titles.
    #[error("id mapped to a second title (first mapped at row {first_row})")]
    ConflictingTitle {
        /// Row of the first mapping.
        first_row: u64,
    },
    /// The record could not be read (bad CSV, or an NDJSON line that is not
    /// an object with string or integer fields).
    #[error("malformed record")]
    Malformed,
}

/// Display of the header names found, or why they are withheld.
struct FoundColumns<'a>(&'a Option<Vec<String>>);

impl fmt::Display for FoundColumns<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(names) => write!(f, "the header has {}", names.join(", ")),
            None => f.write_str(
                "no configured column is in the first line, so it may be data and its values \
                 are not shown (is the header missing or the delimiter wrong?)",
            ),
        }
    }
}

/// `; fix: set source.encoding = ...` when an encoding is named.
struct EncodingNote<'a>(&'a Option<pipeline::Encoding>);

impl fmt::Display for EncodingNote<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(e) => write!(f, "; {}", EncodingFix(*e)),
            None => Ok(()),
        }
    }
}

/// What is wrong with a works mapping file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WorksProblem {
    /// The file is empty; a header is required.
    #[error("empty file, a header is required")]
    Empty,
    /// The header lacks a configured column.
    #[error("header lacks column(s) {}; the header has {}", .missing.join(", "), .found.join(", "))]
    MissingColumns {
        /// Configured column names not in the header.
        missing: Vec<String>,
        /// The header's names.
        found: Vec<String>,
    },
    /// The row has more or fewer fields than the header.
    #[error("wrong column count")]
    WrongColumnCount,
    /// A used field is not valid UTF-8.
    #[error("invalid utf-8")]
    InvalidUtf8,
    /// The title is empty after trimming.
    #[error("missing title")]
    MissingTitle,
    /// The work is empty after trimming.
    #[error("missing work")]
    MissingWork,
    /// A title of the loans is mapped to two different works.
    #[error("title mapped to a second work (first mapped at row {first_row})")]
    ConflictingWork {
        /// Line of the first mapping.
        first_row: u64,
    },
    /// The csv reader could not read the record.
    #[error("malformed record")]
    Malformed,
}

/// Drops a UTF-8 byte order mark.
fn strip_bom(data: &[u8]) -> &[u8] {
    data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data)
}

/// Lends the distinct canonical borrower ids of the input to `audit`, for
/// one purpose only: checking on the extractor's host that no output
/// contains them (`alsoborrowed verify` and `export`). The ids are not
/// pseudonymized and are wiped when `audit` returns. Only kept rows
/// contribute: a rejected row's id never reaches anything downstream.
pub fn lend_borrower_ids<R>(
    input: &ExtractInput<'_>,
    audit: impl FnOnce(&mut dyn Iterator<Item = &[u8]>) -> R,
) -> Result<R, ExtractError> {
    lend_ids(input, audit).map_err(|e| hints::add_hints(input, e))
}

fn lend_ids<R>(
    input: &ExtractInput<'_>,
    audit: impl FnOnce(&mut dyn Iterator<Item = &[u8]>) -> R,
) -> Result<R, ExtractError> {
    if let Some(sink) = read_records(input)? {
        return sink.lend(audit);
    }
    let path = input.input.unwrap_or(&input.source.path);
    let how = How {
        ids_only: true,
        ..How::default()
    };
    let asm = read_source(path, input.source, input.today, how)?;
    Ok(asm.lend(audit))
}

/// Reads the export, keeps valid rows with pseudonymized borrowers, merges
/// repeated loans, and reports what was rejected.
///
/// Output is deterministic, whatever the number of threads of the current
/// rayon pool: titles in order of first appearance; rows in title order
/// (file order within a title) month by month when each month is one run
/// of rows, as in an export in date order, else in file order.
pub fn extract(
    input: &ExtractInput<'_>,
    pseudonymizer: &Pseudonymizer,
) -> Result<Extraction, ExtractError> {
    extract_and_lend(input, pseudonymizer, &mut |_| {})
}

/// Like [`extract`], and lends the distinct canonical borrower ids of the kept
/// rows to `audit` just before they are wiped, so a one-host `run` can
/// forbid them in its outputs without reading the file twice (see
/// [`lend_borrower_ids`] for the same purpose on its own).
pub fn extract_and_lend(
    input: &ExtractInput<'_>,
    pseudonymizer: &Pseudonymizer,
    audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
) -> Result<Extraction, ExtractError> {
    extract_inner(input, pseudonymizer, audit).map_err(|e| hints::add_hints(input, e))
}

fn extract_inner(
    input: &ExtractInput<'_>,
    pseudonymizer: &Pseudonymizer,
    audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
) -> Result<Extraction, ExtractError> {
    let (mut loans, mut report) = match read_records(input)? {
        Some(sink) => sink.finish(pseudonymizer, audit)?,
        None => {
            let path = input.input.unwrap_or(&input.source.path);
            let asm = read_source(path, input.source, input.today, How::default())?;
            finish(path, asm, pseudonymizer, audit)?
        }
    };
    if let Some(map) = &input.source.titles {
        titles::apply(map, &mut loans)?;
        report.distinct_titles = loans.title_ids.len() as u64;
    }
    if let Some(works) = input.works {
        if works.query.is_some() {
            db_works(input, works, &loans.title_ids, &mut loans.work_ids)?;
        } else {
            works::apply(works, &loans.title_ids, &mut loans.work_ids)?;
        }
    }
    Ok(Extraction { loans, report })
}

/// Reads a record source (NDJSON or a database) into a sink; `None` for the
/// delimited text formats, which are parsed in pieces instead.
fn read_records(input: &ExtractInput<'_>) -> Result<Option<records::RecordSink>, ExtractError> {
    use pipeline::Format;
    Ok(Some(match input.source.format {
        Format::Ndjson => ndjson::read(input)?,
        #[cfg(feature = "postgres")]
        Format::Postgres => db::postgres::read(input)?,
        #[cfg(feature = "mysql")]
        Format::Mysql => db::mysql::read(input)?,
        format if format.is_database() => {
            return Err(ExtractError::NotBuiltIn {
                format: format_name(format),
            });
        }
        _ => return Ok(None),
    }))
}

/// The name of a format in the pipeline file.
fn format_name(format: pipeline::Format) -> &'static str {
    match format {
        pipeline::Format::Postgres => "postgres",
        pipeline::Format::Mysql => "mysql",
        pipeline::Format::Ndjson => "ndjson",
        _ => "file",
    }
}

/// Applies a `[works]` query of the source database.
#[cfg_attr(
    not(all(feature = "postgres", feature = "mysql")),
    allow(unused_variables)
)]
fn db_works(
    input: &ExtractInput<'_>,
    works: &pipeline::Works,
    title_ids: &[String],
    work_ids: &mut [String],
) -> Result<(), ExtractError> {
    match input.source.format {
        #[cfg(feature = "postgres")]
        pipeline::Format::Postgres => db::postgres::works(input.source, works, title_ids, work_ids),
        #[cfg(feature = "mysql")]
        pipeline::Format::Mysql => db::mysql::works(input.source, works, title_ids, work_ids),
        format => Err(ExtractError::NotBuiltIn {
            format: format_name(format),
        }),
    }
}

/// How a text file is cut up; tests vary both sizes to show they do not
/// change the output.
#[derive(Debug, Clone, Copy)]
struct How {
    /// Bytes read per block.
    block: usize,
    /// Target bytes per parallel piece of a quote-free block; `None` for one
    /// piece per thread.
    piece: Option<usize>,
    /// Only the distinct borrower ids of the kept rows are wanted: titles
    /// are not interned and rows not kept (a text file's leak-check
    /// lending, about half the work of an extraction).
    ids_only: bool,
}

impl Default for How {
    fn default() -> Self {
        How {
            block: read::BLOCK_BYTES,
            piece: None,
            ids_only: false,
        }
    }
}

impl How {
    /// Piece size for a block of `len` bytes: four pieces per thread. A
    /// block's pieces, the numbering of the block before and the next read
    /// end together (one `rayon::join`), so a thread left with the last
    /// large piece keeps the others waiting: with two pieces per thread
    /// the two workers were busy 75-85 % of extraction. Four per thread
    /// took extraction of 10M loans from 1.54 to 1.40 s on 2 cores (five
    /// alternated rounds; eight: 1.49 s), as each piece adds its own key
    /// buffers to number (benches/RESULTS.md, issue 15 session 21).
    fn piece(self, len: usize) -> usize {
        self.piece.unwrap_or_else(|| {
            let threads = rayon::current_num_threads().max(1);
            (len / (PIECES_PER_THREAD * threads)).max(MIN_PIECE)
        })
    }
}

/// Reads the source at `path` in its format into an assembler.
fn read_source(
    path: &Path,
    source: &pipeline::Source,
    today: jiff::civil::Date,
    how: How,
) -> Result<Assembler, ExtractError> {
    let dates = DateParser::new(&source.date_format, source.time_zone());
    if source.format == pipeline::Format::Parquet {
        return columnar::read_parquet(path, source, dates, today);
    }
    let blocks = Blocks::open(path, source.encoding, how.block)?;
    read_text(path, blocks, source, dates, today, how)
}

/// Checks the outcome and pseudonymizes.
fn finish(
    path: &Path,
    asm: Assembler,
    pseudonymizer: &Pseudonymizer,
    audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
) -> Result<(Loans, ExtractReport), ExtractError> {
    if asm.rows_read() == 0 {
        return Err(ExtractError::EmptyFile {
            path: path.to_owned(),
        });
    }
    let (loans, report) = asm.finish(path, pseudonymizer, audit);
    if report.rows_kept == 0 {
        return Err(ExtractError::NoValidRows {
            path: path.to_owned(),
            report: Box::new(report),
            hints: Box::default(),
        });
    }
    Ok((loans, report))
}

/// Reads a text export block by block: quote-free blocks in parallel
/// pieces, everything from the first other block on with the csv crate's
/// record reader. The merge of one block's chunks runs while the next block
/// is parsed and the one after it read.
fn read_text(
    path: &Path,
    mut blocks: Blocks<'_>,
    source: &pipeline::Source,
    dates: DateParser,
    today: jiff::civil::Date,
    how: How,
) -> Result<Assembler, ExtractError> {
    let delimiter = source.delimiter();
    let too_many = |_| ExtractError::TooManyLoans {
        path: path.to_owned(),
    };
    let mut asm = Assembler::default();
    let mut layout: Option<Layout> = None;
    // Line number of the first line of the next block.
    let mut line = 1u64;
    let mut csv: Option<CsvRecords> = None;
    let mut pending: Vec<Chunk> = Vec::new();
    let mut failed: Option<ExtractError> = None;
    let mut reserved = false;
    let total = blocks.len();
    // Pieces of a block have room for as many rows as the largest piece of
    // the one before, and fill the key buffers of the block before that.
    let mut rows = 0usize;
    let mut buffers: Vec<KeyBuffers> = Vec::new();

    // Each block is read while the one before is parsed and merged; the
    // block before that lends its buffer.
    let mut spare = Block::empty();
    let mut next = read_next(&mut blocks, Block::empty(), true)?;
    while let Some((current, fast)) = next.take() {
        let block = current.bytes();
        if csv.is_none() && fast {
            let (body, body_line) = match &layout {
                Some(_) => (block, line),
                None => match parse::fast_header(block, delimiter) {
                    Some(h) => {
                        let found = find_layout(path, source, &h.names, &dates, today)?;
                        layout = Some(found);
                        (h.body, line - 1 + h.body_line)
                    }
                    None => {
                        line += memchr::memchr_iter(b'\n', block).count() as u64;
                        next = read_next(&mut blocks, current, true)?;
                        continue;
                    }
                },
            };
            let Some(l) = &layout else {
                next = read_next(&mut blocks, current, true)?;
                continue;
            };
            let piece = how.piece(body.len()).max(1);
            let previous = std::mem::take(&mut pending);
            let recycled = std::mem::replace(&mut spare, Block::empty());
            let (merged, (chunks, read)) = rayon::join(
                || asm.absorb_all(previous),
                || {
                    rayon::join(
                        || {
                            let (ids_only, spare) = (how.ids_only, &mut buffers);
                            parse::parse_fast(body, body_line, l, piece, rows, spare, ids_only)
                        },
                        || read_next(&mut blocks, recycled, true),
                    )
                },
            );
            rows = chunks.iter().map(|c| c.months.len()).max().unwrap_or(0);
            buffers.extend(merged.map_err(too_many)?);
            if !reserved {
                // Rows of the whole file, extrapolated from the first block.
                reserved = true;
                let rows: u64 = chunks.iter().map(|c| c.months.len() as u64).sum();
                if let (Some(total), Ok(len)) = (total, u64::try_from(block.len()))
                    && len > 0
                {
                    let estimate = total.saturating_mul(rows) / len;
                    asm.reserve(usize::try_from(estimate).unwrap_or(usize::MAX));
                }
            }
            line = body_line + chunks.iter().map(|c| c.newlines).sum::<u64>();
            pending = chunks;
            next = read?;
            spare = current;
            continue;
        }
        asm.absorb_all(std::mem::take(&mut pending))
            .map_err(too_many)?;
        let reader = csv.get_or_insert_with(|| CsvRecords::new(delimiter, line));
        let mut chunk = Chunk::new(0);
        chunk.ids_only = how.ids_only;
        feed(
            path,
            source,
            reader,
            block,
            &mut layout,
            &dates,
            today,
            &mut chunk,
            &mut failed,
        )?;
        asm.absorb(chunk).map_err(too_many)?;
        next = read_next(&mut blocks, current, false)?;
    }
    asm.absorb_all(pending).map_err(too_many)?;
    if let Some(reader) = &mut csv {
        let mut chunk = Chunk::new(0);
        chunk.ids_only = how.ids_only;
        feed(
            path,
            source,
            reader,
            &[],
            &mut layout,
            &dates,
            today,
            &mut chunk,
            &mut failed,
        )?;
        asm.absorb(chunk).map_err(too_many)?;
    }
    if layout.is_none() {
        return Err(ExtractError::EmptyFile {
            path: path.to_owned(),
        });
    }
    Ok(asm)
}

/// The next block (read into `spare`'s buffer) and, if `check`, whether the
/// quote-free fast path applies to it. The check is two scans of the whole
/// block: made here, beside the parse of the block before, rather than on
/// the calling thread between blocks, where both workers waited for it
/// (about 5 ms a block).
fn read_next(
    blocks: &mut Blocks<'_>,
    spare: Block,
    check: bool,
) -> Result<Option<(Block, bool)>, ExtractError> {
    Ok(blocks.next_owned(spare)?.map(|b| {
        let fast = check && parse::fast_path_applies(b.bytes());
        (b, fast)
    }))
}

/// Feeds one block (or the end of the file) to the csv record reader; the
/// first record is the header.
#[allow(clippy::too_many_arguments)]
fn feed(
    path: &Path,
    source: &pipeline::Source,
    reader: &mut CsvRecords,
    block: &[u8],
    layout: &mut Option<Layout>,
    dates: &DateParser,
    today: jiff::civil::Date,
    chunk: &mut Chunk,
    failed: &mut Option<ExtractError>,
) -> Result<(), ExtractError> {
    let fed = reader.feed(block, &mut |line, out, ends| {
        if failed.is_some() {
            return;
        }
        match layout {
            Some(l) => parse::push_record(chunk, l, line, out, ends),
            None => {
                let names: Vec<&[u8]> = (0..ends.len())
                    .map(|i| parse::field(out, ends, i))
                    .collect();
                match find_layout(path, source, &names, dates, today) {
                    Ok(l) => *layout = Some(l),
                    Err(e) => *failed = Some(e),
                }
            }
        }
    });
    if let Some(e) = failed.take() {
        return Err(e);
    }
    fed.map_err(|e| ExtractError::LineTooLong {
        path: path.to_owned(),
        line: e.line,
        limit: parse::MAX_RECORD_BYTES,
    })
}

/// Finds the configured columns among the header names.
fn find_layout(
    path: &Path,
    source: &pipeline::Source,
    names: &[&[u8]],
    dates: &DateParser,
    today: jiff::civil::Date,
) -> Result<Layout, ExtractError> {
    let names: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).trim().to_owned())
        .collect();
    let columns = find_columns(path, source, &names, false)?;
    Ok(Layout {
        delimiter: source.delimiter(),
        width: names.len(),
        columns,
        dates: dates.clone(),
        today,
    })
}

/// The indexes of the configured columns among `names`. `names_are_schema`
/// says the names cannot be field values (a Parquet schema), so they may be
/// shown even when no configured name matches.
fn find_columns(
    path: &Path,
    source: &pipeline::Source,
    names: &[String],
    names_are_schema: bool,
) -> Result<[usize; 3], ExtractError> {
    let c = &source.columns;
    let wanted = [&c.borrower_id, &c.title_id, &c.loan_date];
    let found = wanted.map(|w| names.iter().position(|n| n == w.trim()));
    if let [Some(b), Some(t), Some(d)] = found {
        return Ok([b, t, d]);
    }
    let missing = wanted
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(w, _)| (*w).clone())
        .collect();
    let any_found = names_are_schema || found.iter().any(Option::is_some);
    Err(ExtractError::HeaderMismatch {
        path: path.to_owned(),
        missing,
        found: any_found.then(|| names.to_vec()),
        encoding_fix: None,
    })
}

#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use crate::check::fuzz_paths_agree;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Mode, run_source, stream};
    use jiff::civil::date;
    use proptest::prelude::*;

    pub(crate) fn source(extra: &str) -> pipeline::Source {
        let toml = format!(
            "[library]\nid = \"X\"\n[keys]\npseudonym = \"p\"\ntransfer = \"t\"\n\
             [source]\npath = \"loans.csv\"\ntime_zone = \"Europe/Copenhagen\"\n{extra}\n\
             [transfer]\noutbox = \"o\"\n[store]\npath = \"s\"\n[export]\npath = \"e\"\n"
        );
        pipeline::Pipeline::parse(&toml, Path::new("t.toml"), Path::new("/"))
            .unwrap()
            .source
    }

    fn run(data: &[u8], mode: Mode) -> Result<(Loans, ExtractReport), ExtractError> {
        run_source(data, &source(""), mode)
    }

    #[test]
    fn blocks_and_pieces_of_any_size_give_the_same_output_as_the_csv_reader() {
        let mut data = String::from("\u{feff}borrower_id,title_id,loan_date\r\n");
        for i in 0..300 {
            let line = match i % 7 {
                0 => format!("id{},t{},2024-0{}-01", i % 13, i % 11, 1 + i % 5),
                1 => format!(" ID{} ,t{} ,2023-12-31T10:00", i % 3, i % 2),
                2 => "\r".to_owned(),
                3 => format!("x{i},,2024-01-01"),
                4 => format!("x{i},t1,2024-07-01"),
                5 => format!("x{i},t1"),
                _ => format!("B{},t{},2024-02-30", i % 3, i % 4),
            };
            data.push_str(&line);
            data.push('\n');
        }
        let reference = run(data.as_bytes(), Mode::Reference).unwrap();
        reference.0.validate().unwrap();
        assert_eq!(reference.1.rows_read, 300 - 300 / 7 - 1);
        assert!(reference.1.duplicates > 0);
        for (block, piece) in [(1, 1), (7, 3), (64, 1000), (1000, 64), (1 << 20, 1 << 20)] {
            assert_eq!(
                run(data.as_bytes(), stream(block, piece)).unwrap(),
                reference
            );
        }
        // A quote late in the file switches to the csv path mid-stream.
        data.push_str("\"q1\",\"t,9\",2024-01-01\n");
        let reference = run(data.as_bytes(), Mode::Reference).unwrap();
        assert_eq!(reference.0.title_ids.last().unwrap(), "t,9");
        for (block, piece) in [(1, 1), (100, 7), (1 << 20, 1 << 20)] {
            assert_eq!(
                run(data.as_bytes(), stream(block, piece)).unwrap(),
                reference
            );
        }
    }

    #[test]
    fn csv_path_numbers_rows_by_starting_line() {
        let data =
            b"borrower_id,title_id,loan_date\na,\"t,1\nstill t\",2024-01-01\nb,,2024-01-01\n";
        for mode in [Mode::Reference, stream(1, 1), stream(1 << 20, 8)] {
            let (loans, report) = run(data, mode).unwrap();
            assert_eq!(loans.title_ids, ["t,1\nstill t"]);
            assert_eq!(report.rejected[&RejectReason::MissingTitle].rows, [4]);
        }
    }

    #[test]
    fn header_without_data_is_an_empty_file() {
        for mode in [Mode::Reference, stream(8, 8), stream(1, 1)] {
            for data in [
                &b""[..],
                b"\xEF\xBB\xBF",
                b"\n\n",
                b"borrower_id,title_id,loan_date\n\r\n",
                b"\"borrower_id\",title_id,loan_date\n",
            ] {
                assert!(
                    matches!(run(data, mode), Err(ExtractError::EmptyFile { .. })),
                    "{mode:?} {data:?}"
                );
            }
        }
    }

    #[test]
    fn bom_bytes_after_the_start_are_data_on_every_path() {
        // A fuzz finding: the csv crate's reader dropped these bytes when the
        // streaming csv path started on them (after a line break here).
        for data in [
            &b"\r\xEF\xBB\xBF"[..],
            b"\xEF\xBB\xBF\xEF\xBB\xBFborrower_id,title_id,loan_date\na,t,2024-01-01\n",
            b"\xEF\xBB\xBF\xEF\xBB\xBF\"borrower_id\",title_id,loan_date\na,t,2024-01-01\n",
            b"borrower_id,title_id,loan_date\na,t,2024-01-01\n\xEF\xBB\xBFb,\"t\",2024-01-01\n",
        ] {
            let r = run(data, Mode::Reference).map(|x| x.1);
            for (block, piece) in [(1, 1), (10, 34), (1 << 20, 1 << 20)] {
                let s = run(data, stream(block, piece)).map(|x| x.1);
                assert_eq!(format!("{r:?}"), format!("{s:?}"), "{data:?}");
            }
        }
        let data =
            b"borrower_id,title_id,loan_date\na,t,2024-01-01\n\xEF\xBB\xBFb,\"t\",2024-01-01\n";
        let (_, report) = run(data, stream(1 << 20, 1 << 20)).unwrap();
        assert_eq!(report.distinct_borrowers, 2);
    }

    #[test]
    fn reject_rows_are_capped_but_counted() {
        let mut data = String::from("borrower_id,title_id,loan_date\na,t,2024-01-01\n");
        for _ in 0..50 {
            data.push_str("a,t\n");
        }
        let (_, report) = run(data.as_bytes(), stream(16, 16)).unwrap();
        let r = &report.rejected[&RejectReason::WrongColumnCount];
        assert_eq!(r.count, 50);
        assert_eq!(
            r.rows,
            (3..3 + MAX_REJECTED_ROWS as u64).collect::<Vec<_>>()
        );
        assert!(
            report
                .to_string()
                .contains("wrong column count 50 (rows 3 4 5")
        );
    }

    #[test]
    fn repeated_loans_are_merged_and_counted() {
        let once = "borrower_id,title_id,loan_date\na,t1,2024-01-05\nA ,t1,2024-01-20\n\
                    a,t1,2024-02-01\nb,t1,2024-01-05\na,t2,2024-01-05\n";
        let (loans, report) = run(once.as_bytes(), stream(1 << 20, 1 << 20)).unwrap();
        assert_eq!((report.rows_kept, report.duplicates), (4, 1));
        assert_eq!(loans.len(), 4);
        assert_eq!(report.newest_day, Some(date(2024, 2, 1)));
        assert!(report.to_string().contains("merged 1 repeated loans"));
        // The whole file twice in one file: every second copy is a repeat.
        let body = once.split_once('\n').unwrap().1;
        let twice = format!("{once}{body}");
        for mode in [Mode::Reference, stream(7, 3), stream(1 << 20, 1 << 20)] {
            let (l2, r2) = run(twice.as_bytes(), mode).unwrap();
            assert_eq!((r2.rows_read, r2.rows_kept, r2.duplicates), (10, 4, 6));
            assert_eq!(l2, loans);
        }
    }

    #[test]
    fn semicolons_and_single_byte_encodings() {
        let data = b"borrower_id;title_id;loan_date\r\nb\xE6k;Bl\xE5b\xE6r;03.05.2024\r\n";
        let src =
            source("format = \"semicolon\"\nencoding = \"iso-8859-1\"\ndate_format = \"%d.%m.%Y\"");
        let (loans, _) = run_source(data, &src, stream(1 << 20, 1 << 20)).unwrap();
        assert_eq!(loans.title_ids, ["Blåbær"]);
        let src =
            source("delimiter = \";\"\nencoding = \"windows-1252\"\ndate_format = \"%d.%m.%Y\"");
        let (w, _) = run_source(data, &src, stream(3, 3)).unwrap();
        assert_eq!(w, loans);
        // Declared UTF-8, the Latin-1 bytes are invalid: counted, not kept.
        let src = source("delimiter = \";\"\ndate_format = \"%d.%m.%Y\"");
        match run_source(data, &src, stream(1 << 20, 1 << 20)) {
            Err(ExtractError::NoValidRows { report, .. }) => {
                assert_eq!(report.rejected[&RejectReason::InvalidUtf8].count, 1);
            }
            other => panic!("{:?}", other.map(|x| x.1)),
        }
    }

    fn field() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "ab1",
            " AB1",
            "aB1\t",
            "",
            " ",
            "Z9",
            "z9",
            "\u{a0}q",
            "t1",
            " t1 ",
            "T2",
            "é",
            "\"ab1\"",
            "\"t,1\"",
            "\"t\n2\"",
            "\"\"\"\"",
            "\"x\r\ny\"",
            "a\"b",
            "n\0l",
            "42",
            "0042",
            "12345678901234567",
            "a key longer than sixteen bytes",
        ])
    }

    fn line() -> impl Strategy<Value = String> {
        let date = prop::sample::select(vec![
            "2024-01-05",
            "2024-06-15 09:00",
            "2024-06-16",
            "",
            "2024-02-30",
            "05.01.2024",
            "1999-12-31T00:00:00Z",
            "2024-06-15T23:30:00-02:00",
            "\"2024-03-01\"",
        ]);
        let extra = prop::sample::select(vec!["", ",x", ",,", ",\"a,\nb\""]);
        let end = prop::sample::select(vec!["\n", "\r\n", "\n\n", "\r", "\r\n\r\n"]);
        (field(), field(), date, extra, end, 0u8..4).prop_map(|(i, t, d, x, e, plain)| {
            // Most lines quote-free, so the fast path is exercised too.
            let strip = |s: &str| {
                if plain > 0 {
                    s.replace(['"', '\r'], "")
                } else {
                    s.to_owned()
                }
            };
            // A plain line keeps CRLF ends (the fast path reads them) but
            // no lone CR (which sends its block to the csv reader).
            let e = if plain > 0 && e == "\r" {
                "\n".to_owned()
            } else {
                e.to_owned()
            };
            let e = if e.is_empty() { "\n".to_owned() } else { e };
            format!("{},{},{}{}{e}", strip(i), strip(t), strip(d), strip(x))
        })
    }

    /// The ids a text file lends with `ids_only` (the leak check's reading)
    /// are those a full read keeps, in the same order.
    fn lent(data: &[u8], how: How) -> Result<Vec<Vec<u8>>, String> {
        let src = source("");
        let path = Path::new("loans.csv");
        let blocks = Blocks::new(path, Box::new(data), src.encoding, how.block);
        let dates = DateParser::new(&src.date_format, src.time_zone());
        read_text(path, blocks, &src, dates, date(2024, 6, 15), how)
            .map(|asm| asm.lend(|ids| ids.map(<[u8]>::to_vec).collect()))
            .map_err(|e| e.to_string())
    }

    proptest! {
        #[test]
        fn ids_only_lends_the_ids_a_full_read_keeps(
            lines in prop::collection::vec(line(), 0..60),
            block in 1usize..300,
            piece in 1usize..200,
        ) {
            let mut data = String::from("title_id,borrower_id,loan_date\n");
            data.extend(lines);
            let full = How { block, piece: Some(piece), ids_only: false };
            let ids_only = How { ids_only: true, ..full };
            prop_assert_eq!(lent(data.as_bytes(), ids_only), lent(data.as_bytes(), full));
        }
    }

    proptest! {
        /// Bytes that are not all text (pieces that take the line-by-line
        /// path), NULs, CRLF and delimiters next to each other, numeric and
        /// short ids: the fast path's separator search against the csv crate.
        #[test]
        fn streaming_agrees_on_bytes_that_are_not_all_text(
            parts in prop::collection::vec(
                prop::sample::select(vec![
                    &b"7"[..], b"0042", b"9780306406157", b"ab", b"A\xffb", b"\xc3\xa9", b"\xe6",
                    b"\0", b",", b",,", b"\n", b"\r\n", b"\n\n", b" ", b"2024-01-05",
                    b"2024-06-16 09:00",
                ]),
                0..120,
            ),
            block in 1usize..200,
            piece in 1usize..100,
        ) {
            let mut data = b"borrower_id,title_id,loan_date\n".to_vec();
            for p in parts {
                data.extend_from_slice(p);
            }
            let expected = run(&data, Mode::Reference);
            let streamed = run(&data, stream(block, piece));
            match (expected, streamed) {
                (Ok(s), Ok(p)) => prop_assert_eq!(s, p),
                (Err(ExtractError::NoValidRows { report: s, .. }), Err(ExtractError::NoValidRows { report: p, .. })) => {
                    prop_assert_eq!(s, p);
                }
                (Err(ExtractError::EmptyFile { .. }), Err(ExtractError::EmptyFile { .. })) => {}
                (s, p) => prop_assert!(false, "paths differ: {:?} vs {:?}", s.map(|x| x.1), p.map(|x| x.1)),
            }
        }
    }

    proptest! {
        #[test]
        fn streaming_agrees_with_the_whole_file_csv_reader(
            lines in prop::collection::vec(line(), 0..60),
            block in 1usize..300,
            piece in 1usize..200,
            bom in any::<bool>(),
            unterminated in any::<bool>(),
        ) {
            let mut data = String::new();
            if bom {
                data.push('\u{feff}');
            }
            data.push_str("title_id,borrower_id,loan_date\n");
            data.extend(lines);
            // A last line without its line break.
            if unterminated && data.ends_with('\n') {
                data.pop();
            }
            let expected = run(data.as_bytes(), Mode::Reference);
            let streamed = run(data.as_bytes(), stream(block, piece));
            match (expected, streamed) {
                (Ok(s), Ok(p)) => {
                    s.0.validate().unwrap();
                    prop_assert_eq!(s, p);
                }
                (Err(ExtractError::NoValidRows { report: s, .. }), Err(ExtractError::NoValidRows { report: p, .. })) => {
                    prop_assert_eq!(s, p);
                }
                (Err(ExtractError::EmptyFile { .. }), Err(ExtractError::EmptyFile { .. })) => {}
                (s, p) => prop_assert!(false, "paths differ: {:?} vs {:?}", s.map(|x| x.1), p.map(|x| x.1)),
            }
        }
    }
}
