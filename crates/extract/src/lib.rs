//! Reads a circulation export, pseudonymizes borrower ids and keeps only what
//! mining needs: pseudonym, title (and its work) and loan month.
//!
//! Architecture invariant: this is the only crate in which raw borrower ids
//! exist. They are read from the file into memory, canonicalized (trimmed,
//! ASCII-uppercased), pseudonymized once per distinct id and then dropped; the
//! file buffer and the final id stores are zeroized (best effort: buffers
//! freed while a table grows, and the csv crate's internal buffers on the
//! quoted-file path, are not). Nothing public carries an id: errors and the
//! [`ExtractReport`] name files, row numbers, reasons and column names, never
//! a field value. [`lend_borrower_ids`] and [`extract_and_lend`] lend ids to a
//! leak check's forbidden set for the duration of a call, nothing else.
//!
//! Sources: CSV and TSV files (parsed in parallel pieces), NDJSON files and,
//! with the cargo features `postgres` and `mysql`, one read-only query of an
//! ILS database. Whatever the source, every record passes the same check in
//! the record sink (`records`) and the same assembly.

mod borrower;
mod date;
#[cfg(any(feature = "postgres", feature = "mysql"))]
mod db;
mod interner;
mod ndjson;
mod parse;
mod records;
mod titles;
mod works;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use loans::{LoanMonth, Loans};
use pseudonym::Pseudonymizer;
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::borrower::BorrowerInterner;
use crate::date::DateParser;
use crate::interner::Interner;
use crate::parse::{Chunk, Layout};

/// Most row numbers kept per reject reason in the report.
pub const MAX_REJECTED_ROWS: usize = 20;

/// Largest input one extraction reads (8 GiB); it keeps every per-run count
/// within `u32` and the in-memory file within reason.
pub const MAX_INPUT_BYTES: u64 = 8 << 30;

/// Smallest piece of a quote-free file parsed as one parallel task.
const MIN_PIECE: usize = 64 << 10;

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
    /// Kept rows in file order; titles in order of first appearance.
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
    /// Rows kept.
    pub rows_kept: u64,
    /// Distinct canonical borrower ids among kept rows.
    pub distinct_borrowers: u64,
    /// Distinct titles among kept rows.
    pub distinct_titles: u64,
    /// Earliest loan month kept.
    pub first_month: Option<LoanMonth>,
    /// Latest loan month kept.
    pub last_month: Option<LoanMonth>,
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
    pub const ALL: [RejectReason; 9] = [
        RejectReason::WrongColumnCount,
        RejectReason::InvalidUtf8,
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
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error(
        "{path}: {bytes} bytes is more than the 8 GiB one extraction reads, split the export by period"
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// The file has no header or no data row.
    #[error("{path}: no data rows")]
    EmptyFile {
        /// The file.
        path: PathBuf,
    },
    /// The header lacks a configured column.
    #[error("{path}: header lacks column(s) {}; {}", .missing.join(", "), FoundColumns(.found))]
    HeaderMismatch {
        /// The file.
        path: PathBuf,
        /// Configured column names not in the header.
        missing: Vec<String>,
        /// The header's names, or `None` when withheld because no configured
        /// name matched: the first line may then be a data row, not a header.
        found: Option<Vec<String>>,
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
    #[error("{path}: none of the {} data rows is valid: {}", .report.rows_read, RejectionSummary(&.report.rejected))]
    NoValidRows {
        /// The file.
        path: PathBuf,
        /// What was rejected and why.
        report: Box<ExtractReport>,
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

/// Reads the whole input file; it holds every borrower id, so it is wiped
/// when dropped.
fn read_input(input: &ExtractInput<'_>) -> Result<(PathBuf, Zeroizing<Vec<u8>>), ExtractError> {
    let path = input.input.unwrap_or(&input.source.path);
    let io = |source| ExtractError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = std::fs::metadata(path).map_err(io)?.len();
    if bytes > MAX_INPUT_BYTES {
        return Err(ExtractError::TooLarge {
            path: path.to_owned(),
            bytes,
        });
    }
    let data = Zeroizing::new(std::fs::read(path).map_err(io)?);
    Ok((path.to_owned(), data))
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
    if let Some(sink) = read_records(input)? {
        return Ok(sink.lend(audit));
    }
    let (path, data) = read_input(input)?;
    let chunks = parse_chunks(
        &path,
        &data,
        input.source,
        input.today,
        How::parallel(data.len()),
    )?;
    let mut all = BorrowerInterner::default();
    for chunk in &chunks {
        all.absorb(&chunk.borrowers);
    }
    drop(chunks);
    Ok(all.lend(audit))
}

/// Reads the export, keeps valid rows with pseudonymized borrowers, and
/// reports what was rejected.
///
/// Output is deterministic: rows in file order, titles in order of first
/// appearance, whatever the number of threads of the current rayon pool.
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
    let (mut loans, mut report) = match read_records(input)? {
        Some(sink) => sink.finish(pseudonymizer, audit)?,
        None => {
            let (path, data) = read_input(input)?;
            let how = How::parallel(data.len());
            extract_bytes(
                &path,
                &data,
                input.source,
                input.today,
                pseudonymizer,
                how,
                audit,
            )?
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

/// How rows are parsed.
#[derive(Debug, Clone, Copy)]
enum How {
    /// In pieces of about `piece` bytes in parallel when the data holds no
    /// quote, else sequentially.
    Parallel {
        /// Target piece size in bytes.
        piece: usize,
    },
    /// Always sequentially with the csv crate, to test both paths alike.
    #[cfg(test)]
    Sequential,
}

impl How {
    /// Parallel parsing of `len` bytes in two pieces per thread: each piece
    /// has its own dictionaries, merged sequentially, so more pieces than
    /// needed for load balance only add merge work.
    fn parallel(len: usize) -> How {
        let threads = rayon::current_num_threads().max(1);
        How::Parallel {
            piece: (len / (2 * threads)).max(MIN_PIECE),
        }
    }
}

/// Parses a whole in-memory export (with an optional byte order mark).
fn extract_bytes(
    path: &Path,
    data: &[u8],
    source: &pipeline::Source,
    today: jiff::civil::Date,
    pseudonymizer: &Pseudonymizer,
    how: How,
    audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
) -> Result<(Loans, ExtractReport), ExtractError> {
    let chunks = parse_chunks(path, data, source, today, how)?;
    let (loans, report) = assemble(path, chunks, pseudonymizer, audit);
    check_outcome(path, loans, report)
}

/// Fails an extraction that read no row or kept none.
fn check_outcome(
    path: &Path,
    loans: Loans,
    report: ExtractReport,
) -> Result<(Loans, ExtractReport), ExtractError> {
    if report.rows_read == 0 {
        return Err(ExtractError::EmptyFile {
            path: path.to_owned(),
        });
    }
    if report.rows_kept == 0 {
        return Err(ExtractError::NoValidRows {
            path: path.to_owned(),
            report: Box::new(report),
        });
    }
    Ok((loans, report))
}

/// Splits the export into parsed chunks with chunk-local dictionaries.
fn parse_chunks(
    path: &Path,
    data: &[u8],
    source: &pipeline::Source,
    today: jiff::civil::Date,
    how: How,
) -> Result<Vec<Chunk>, ExtractError> {
    let data = strip_bom(data);
    if data.len() as u64 > MAX_INPUT_BYTES {
        return Err(ExtractError::TooLarge {
            path: path.to_owned(),
            bytes: data.len() as u64,
        });
    }
    let delimiter = source.delimiter();
    let dates = DateParser::new(&source.date_format);
    let empty = || ExtractError::EmptyFile {
        path: path.to_owned(),
    };
    let malformed = |line| ExtractError::Malformed {
        path: path.to_owned(),
        line,
    };

    Ok(match how {
        How::Parallel { piece } if parse::fast_path_applies(data) => {
            let header = parse::fast_header(data, delimiter).ok_or_else(empty)?;
            let layout = layout(path, source, &header.names, dates, today)?;
            parse::parse_fast(header.body, header.body_line, &layout, piece.max(1))
        }
        _ => {
            let mut reader = parse::csv_reader(data, delimiter);
            let mut record = csv::ByteRecord::new();
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => return Err(empty()),
                Err(_) => return Err(malformed(parse::record_line(data, reader.position()))),
            }
            let names: Vec<&[u8]> = record.iter().collect();
            let layout = layout(path, source, &names, dates, today)?;
            vec![parse::parse_csv(data, &mut reader, &layout).map_err(malformed)?]
        }
    })
}

/// Finds the configured columns among the header names.
fn layout(
    path: &Path,
    source: &pipeline::Source,
    names: &[&[u8]],
    dates: DateParser,
    today: jiff::civil::Date,
) -> Result<Layout, ExtractError> {
    let names: Vec<String> = names
        .iter()
        .map(|n| String::from_utf8_lossy(n).trim().to_owned())
        .collect();
    let c = &source.columns;
    let wanted = [&c.borrower_id, &c.title_id, &c.loan_date];
    let found = wanted.map(|w| names.iter().position(|n| n == w.trim()));
    if let [Some(b), Some(t), Some(d)] = found {
        return Ok(Layout {
            delimiter: source.delimiter(),
            width: names.len(),
            columns: [b, t, d],
            dates,
            today,
        });
    }
    let missing = wanted
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(w, _)| (*w).clone())
        .collect();
    let any_found = found.iter().any(Option::is_some);
    Err(ExtractError::HeaderMismatch {
        path: path.to_owned(),
        missing,
        found: any_found.then_some(names),
    })
}

/// Merges chunk dictionaries in file order, pseudonymizes each distinct
/// borrower once, and builds the columns and the report.
fn assemble(
    path: &Path,
    chunks: Vec<Chunk>,
    pseudonymizer: &Pseudonymizer,
    audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
) -> (Loans, ExtractReport) {
    let mut borrowers = BorrowerInterner::default();
    let mut titles = Interner::default();
    let mut rejected: BTreeMap<RejectReason, Rejections> = BTreeMap::new();
    let mut rows_read = 0u64;
    let mut parts = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        rows_read += chunk.rows_read;
        for (reason, r) in RejectReason::ALL.into_iter().zip(&chunk.rejects) {
            if r.count == 0 {
                continue;
            }
            let total = rejected.entry(reason).or_default();
            total.count += r.count;
            let room = MAX_REJECTED_ROWS.saturating_sub(total.rows.len());
            total
                .rows
                .extend(r.rows.iter().take(room).map(|l| l + chunk.base_line));
        }
        let borrower_map = borrowers.absorb(&chunk.borrowers);
        let title_map = titles.absorb(&chunk.titles);
        // The chunk's raw ids are wiped here, as soon as they are merged.
        let Chunk {
            row_borrowers,
            row_titles,
            months,
            ..
        } = chunk;
        parts.push((borrower_map, title_map, row_borrowers, row_titles, months));
    }
    let distinct_borrowers = borrowers.len() as u64;
    let pseudonyms = borrowers.pseudonymize(pseudonymizer, audit);

    let total: usize = parts.iter().map(|p| p.2.len()).sum();
    let mut loans = Loans {
        pseudonyms: Vec::with_capacity(total),
        titles: Vec::with_capacity(total),
        months: Vec::with_capacity(total),
        title_ids: Vec::new(),
        work_ids: Vec::new(),
    };
    for (borrower_map, title_map, row_borrowers, row_titles, months) in parts {
        loans.pseudonyms.par_extend(
            row_borrowers
                .par_iter()
                .map(|&b| pseudonyms[borrower_map[b as usize] as usize]),
        );
        loans
            .titles
            .par_extend(row_titles.par_iter().map(|&t| title_map[t as usize]));
        loans.months.extend_from_slice(&months);
    }
    // Titles were checked to be UTF-8 when read, so this never replaces.
    loans.title_ids = titles
        .iter()
        .map(|t| String::from_utf8_lossy(t).into_owned())
        .collect();
    loans.work_ids = loans.title_ids.clone();

    let first_month = loans.months.par_iter().min().copied();
    let last_month = loans.months.par_iter().max().copied();
    let report = ExtractReport {
        path: path.to_owned(),
        rows_read,
        rows_kept: total as u64,
        distinct_borrowers,
        distinct_titles: loans.title_ids.len() as u64,
        first_month,
        last_month,
        rejected,
    };
    (loans, report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    pub(crate) fn source(extra: &str) -> pipeline::Source {
        let toml = format!(
            "[library]\nid = \"X\"\n[keys]\npseudonym = \"p\"\ntransfer = \"t\"\n\
             [source]\npath = \"loans.csv\"\n{extra}\n[transfer]\noutbox = \"o\"\n\
             [store]\npath = \"s\"\n[export]\npath = \"e\"\n"
        );
        pipeline::Pipeline::parse(&toml, Path::new("t.toml"), Path::new("/"))
            .unwrap()
            .source
    }

    fn pseudonymizer() -> Pseudonymizer {
        Pseudonymizer::new(&keys::SecretKey::from_bytes([7; 32]), "X", "test")
    }

    fn run(data: &[u8], how: How) -> Result<(Loans, ExtractReport), ExtractError> {
        extract_bytes(
            Path::new("loans.csv"),
            data,
            &source(""),
            date(2024, 6, 15),
            &pseudonymizer(),
            how,
            &mut |_| {},
        )
    }

    #[test]
    fn pieces_of_any_size_give_the_same_output_as_the_csv_reader() {
        let mut data = String::from("\u{feff}borrower_id,title_id,loan_date\r\n");
        for i in 0..300 {
            let line = match i % 7 {
                0 => format!("id{},t{},2024-0{}-01", i % 13, i % 11, 1 + i % 5),
                1 => format!(" ID{} ,t{} ,2023-12-31T10:00", i % 13, i % 17),
                2 => "\r".to_owned(),
                3 => format!("x{i},,2024-01-01"),
                4 => format!("x{i},t1,2024-07-01"),
                5 => format!("x{i},t1"),
                _ => format!("B{},t{},2024-02-30", i % 3, i % 4),
            };
            data.push_str(&line);
            data.push('\n');
        }
        let sequential = run(data.as_bytes(), How::Sequential).unwrap();
        sequential.0.validate().unwrap();
        assert_eq!(sequential.1.rows_read, 300 - 300 / 7 - 1);
        for piece in [1, 7, 64, 1000, 1 << 20] {
            assert_eq!(
                run(data.as_bytes(), How::Parallel { piece }).unwrap(),
                sequential
            );
        }
    }

    #[test]
    fn csv_path_numbers_rows_by_starting_line() {
        let data =
            b"borrower_id,title_id,loan_date\na,\"t,1\nstill t\",2024-01-01\nb,,2024-01-01\n";
        let (loans, report) = run(data, How::Parallel { piece: 1 }).unwrap();
        assert_eq!(loans.title_ids, ["t,1\nstill t"]);
        assert_eq!(report.rejected[&RejectReason::MissingTitle].rows, [4]);
    }

    #[test]
    fn header_without_data_is_an_empty_file() {
        for how in [How::Sequential, How::Parallel { piece: 8 }] {
            for data in [
                &b""[..],
                b"\xEF\xBB\xBF",
                b"\n\n",
                b"borrower_id,title_id,loan_date\n\r\n",
            ] {
                assert!(matches!(
                    run(data, how),
                    Err(ExtractError::EmptyFile { .. })
                ));
            }
        }
    }

    #[test]
    fn reject_rows_are_capped_but_counted() {
        let mut data = String::from("borrower_id,title_id,loan_date\na,t,2024-01-01\n");
        for _ in 0..50 {
            data.push_str("a,t\n");
        }
        let (_, report) = run(data.as_bytes(), How::Parallel { piece: 16 }).unwrap();
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

    fn line() -> impl Strategy<Value = String> {
        let id = prop::sample::select(vec!["ab1", " AB1", "aB1\t", "", " ", "Z9", "z9", "\u{a0}q"]);
        let title = prop::sample::select(vec!["t1", " t1 ", "", "t2", "T2", "é"]);
        let date = prop::sample::select(vec![
            "2024-01-05",
            "2024-06-15 09:00",
            "2024-06-16",
            "",
            "2024-02-30",
            "05.01.2024",
            "1999-12-31T00:00:00Z",
        ]);
        let extra = prop::sample::select(vec!["", ",x", ",,"]);
        let end = prop::sample::select(vec!["\n", "\r\n", "\n\n"]);
        (id, title, date, extra, end).prop_map(|(i, t, d, x, e)| format!("{i},{t},{d}{x}{e}"))
    }

    proptest! {
        #[test]
        fn parallel_and_sequential_paths_agree(
            lines in prop::collection::vec(line(), 0..60),
            piece in 1usize..200,
            bom in any::<bool>(),
        ) {
            let mut data = String::new();
            if bom {
                data.push('\u{feff}');
            }
            data.push_str("title_id,borrower_id,loan_date\n");
            data.extend(lines);
            let sequential = run(data.as_bytes(), How::Sequential);
            let parallel = run(data.as_bytes(), How::Parallel { piece });
            match (sequential, parallel) {
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
