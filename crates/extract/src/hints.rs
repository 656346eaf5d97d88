//! Hints for a source that does not read as configured, shared by the
//! extractor's errors and `alsoborrowed check`: the encoding under which the
//! header matches, the common date pattern that parses the dates, and a
//! sample of the first rows.
//!
//! Nothing here hands out a borrower id: a [`Sample`] keeps only the shapes
//! of the ids (kind of characters and length) and how many of them are also
//! title ids; the raw ids it reads are wiped when it returns.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use pipeline::{Encoding, Format, Source};
use zeroize::{Zeroize as _, Zeroizing};

use crate::date::DateParser;
use crate::{ExtractError, ExtractInput, RejectReason};

/// Rows [`sample`] reads by default.
pub const SAMPLE_ROWS: usize = 1000;

/// Most bytes [`sample`] reads, whatever the number of rows.
const MAX_SAMPLE_BYTES: usize = 4 << 20;

/// A date format the detector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownDateFormat {
    /// How people call it (`dd.mm.yyyy`).
    pub name: &'static str,
    /// The `source.date_format` value that reads it.
    pub setting: &'static str,
}

const fn known(name: &'static str, setting: &'static str) -> KnownDateFormat {
    KnownDateFormat { name, setting }
}

/// The date formats the detector tries, in order of preference: when two
/// parse the same dates (`03/05/2024`), the earlier one is named and the
/// other given as the alternative.
pub const KNOWN_DATE_FORMATS: &[KnownDateFormat] = &[
    known("ISO date or timestamp (Koha, Evergreen, FOLIO)", "iso"),
    known("dd.mm.yyyy", "%d.%m.%Y"),
    known("dd.mm.yyyy hh:mm", "%d.%m.%Y %H:%M"),
    known("dd.mm.yyyy hh:mm:ss", "%d.%m.%Y %H:%M:%S"),
    known("dd/mm/yyyy", "%d/%m/%Y"),
    known("dd/mm/yyyy hh:mm", "%d/%m/%Y %H:%M"),
    known("dd/mm/yyyy hh:mm:ss", "%d/%m/%Y %H:%M:%S"),
    known("mm/dd/yyyy", "%m/%d/%Y"),
    known("mm/dd/yyyy hh:mm", "%m/%d/%Y %H:%M"),
    known("mm/dd/yyyy hh:mm:ss", "%m/%d/%Y %H:%M:%S"),
    known("mm/dd/yyyy hh:mm AM/PM", "%m/%d/%Y %I:%M %p"),
    known("dd-mm-yyyy", "%d-%m-%Y"),
    known("dd-mm-yyyy hh:mm:ss", "%d-%m-%Y %H:%M:%S"),
    known("yyyy/mm/dd", "%Y/%m/%d"),
    known("yyyy/mm/dd hh:mm:ss", "%Y/%m/%d %H:%M:%S"),
    known("yyyy.mm.dd", "%Y.%m.%d"),
    known("yyyymmdd", "%Y%m%d"),
];

/// Which known format parses a set of date fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateDetection {
    /// The format parsing the most fields (the first in
    /// [`KNOWN_DATE_FORMATS`] on a tie).
    pub format: KnownDateFormat,
    /// Fields it parses.
    pub parsed: usize,
    /// Non-empty fields tried.
    pub total: usize,
    /// Another format parsing exactly the same fields (`dd/mm/yyyy` and
    /// `mm/dd/yyyy` when no day is above 12).
    pub ambiguous_with: Option<KnownDateFormat>,
}

/// The known format that parses the most of `fields` (trimmed, empty ones
/// skipped), or `None` when none parses any.
pub fn detect_date_format<'a>(fields: impl IntoIterator<Item = &'a str>) -> Option<DateDetection> {
    let fields: Vec<&str> = fields
        .into_iter()
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .collect();
    let mut best: Option<(KnownDateFormat, Vec<bool>, usize)> = None;
    let mut ambiguous_with = None;
    for format in KNOWN_DATE_FORMATS {
        let parser = DateParser::new(format.setting, jiff::tz::TimeZone::UTC);
        let hits: Vec<bool> = fields.iter().map(|f| parser.parse(f).is_some()).collect();
        let parsed = hits.iter().filter(|&&h| h).count();
        if parsed == 0 {
            continue;
        }
        let current = best.as_ref().map(|(_, h, n)| (*n, *h == hits));
        match current {
            Some((n, same)) if parsed == n => {
                if same && ambiguous_with.is_none() {
                    ambiguous_with = Some(*format);
                }
            }
            Some((n, _)) if parsed < n => {}
            _ => {
                best = Some((*format, hits, parsed));
                ambiguous_with = None;
            }
        }
    }
    best.map(|(format, _, parsed)| DateDetection {
        format,
        parsed,
        total: fields.len(),
        ambiguous_with,
    })
}

/// Whether `setting` (a `source.date_format` value) parses `field`.
pub fn date_format_parses(setting: &str, field: &str) -> bool {
    DateParser::new(setting, jiff::tz::TimeZone::UTC)
        .parse(field.trim())
        .is_some()
}

/// What to tell about dates that the configured `date_format` does not
/// parse: the pattern tried and, when a known one parses them, the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DateHint {
    /// The configured `source.date_format`.
    pub configured: String,
    /// What a known format makes of the same dates.
    pub detected: Option<DateDetection>,
}

impl fmt::Display for DateHint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "source.date_format {:?} does not parse the dates",
            self.configured
        )?;
        match &self.detected {
            Some(d) => {
                write!(
                    f,
                    "; fix: set source.date_format = {:?} in the pipeline file ({} parses {} of {} sampled dates",
                    d.format.setting, d.format.name, d.parsed, d.total
                )?;
                if let Some(other) = d.ambiguous_with {
                    write!(
                        f,
                        "; so does {:?} ({}): check which the export uses",
                        other.setting, other.name
                    )?;
                }
                f.write_str(")")
            }
            None => f.write_str(
                "; no common format parses them either: write their pattern in \
                 source.date_format (docs/configuration.md)",
            ),
        }
    }
}

/// The encoding a fix names, as the pipeline file spells it.
fn setting(encoding: Encoding) -> &'static str {
    encoding.name()
}

/// A fix naming the encoding to set, for display after an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodingFix(pub Encoding);

impl fmt::Display for EncodingFix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fix: set source.encoding = {:?} in the pipeline file",
            setting(self.0)
        )
    }
}

/// Whether `raw` is UTF-8, allowing a character cut off at its end.
fn is_utf8(raw: &[u8]) -> bool {
    match std::str::from_utf8(raw) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    }
}

/// The encoding to set when the first bytes of a text export do not read
/// as `configured`: Windows-1252 for bytes that are not UTF-8, UTF-8 for a
/// single-byte setting and bytes that are UTF-8 with non-ASCII characters.
/// `None` when the bytes fit the setting.
pub fn encoding_fix(configured: Encoding, raw: &[u8]) -> Option<Encoding> {
    let raw = crate::strip_bom(raw);
    match configured {
        Encoding::Utf8 => (!is_utf8(raw)).then_some(Encoding::Windows1252),
        _ => (raw.iter().any(|b| !b.is_ascii()) && is_utf8(raw)).then_some(Encoding::Utf8),
    }
}

/// `raw` decoded as `encoding`; `None` for bytes that are not UTF-8 when
/// `encoding` is UTF-8.
fn decode(encoding: Encoding, raw: &[u8]) -> Option<String> {
    match encoding {
        Encoding::Utf8 => std::str::from_utf8(raw).ok().map(str::to_owned),
        Encoding::Iso88591 => Some(raw.iter().map(|&b| char::from(b)).collect()),
        _ => Some(
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(raw)
                .0
                .into_owned(),
        ),
    }
}

/// The names of a header line read with `delimiter`, trimmed.
fn header_names(line: &str, delimiter: u8) -> Vec<String> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(line.as_bytes());
    let mut record = csv::StringRecord::new();
    match reader.read_record(&mut record) {
        Ok(true) => record.iter().map(|n| n.trim().to_owned()).collect(),
        _ => Vec::new(),
    }
}

/// Whether `names` hold every configured column.
fn has_columns(source: &Source, names: &[String]) -> bool {
    let c = &source.columns;
    [&c.borrower_id, &c.title_id, &c.loan_date]
        .iter()
        .all(|w| names.iter().any(|n| n == w.trim()))
}

/// The encoding, other than the configured one, under which the header
/// line `raw` (undecoded, the file's first line) holds every configured
/// column; Windows-1252 is preferred to Latin-1.
pub fn header_encoding_fix(source: &Source, raw: &[u8]) -> Option<Encoding> {
    let raw = crate::strip_bom(raw);
    let line = raw.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    [Encoding::Utf8, Encoding::Windows1252, Encoding::Iso88591]
        .into_iter()
        .filter(|&e| e != source.encoding)
        .find(|&e| {
            decode(e, line)
                .is_some_and(|text| has_columns(source, &header_names(&text, source.delimiter())))
        })
}

/// Reads up to `max` bytes from the start of `path`, in a buffer wiped
/// when dropped (it may hold borrower ids).
fn head(path: &Path, max: usize) -> std::io::Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(max.min(1 << 20)));
    file.take(max as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Whether the source is a delimited text file.
fn is_delimited(format: Format) -> bool {
    matches!(format, Format::Csv | Format::Tsv | Format::Semicolon)
}

/// Adds the hints this module can give to an extraction error: the
/// encoding under which a mismatched header matches, and, when no row is
/// valid, the encoding or date format that would read them. Errors of
/// other kinds, and any failure to read the hints, leave `err` as it is.
pub(crate) fn add_hints(input: &ExtractInput<'_>, err: ExtractError) -> ExtractError {
    let path = input.input.unwrap_or(&input.source.path);
    match err {
        ExtractError::HeaderMismatch {
            path: p,
            missing,
            found,
            encoding_fix: None,
        } if is_delimited(input.source.format) => {
            let encoding_fix = head(path, 1 << 20)
                .ok()
                .and_then(|raw| header_encoding_fix(input.source, &raw));
            ExtractError::HeaderMismatch {
                path: p,
                missing,
                found,
                encoding_fix,
            }
        }
        ExtractError::NoValidRows {
            path: p,
            report,
            mut hints,
        } if !input.source.format.is_database() && input.source.format != Format::Parquet => {
            let rejected = |r: RejectReason| report.rejected.get(&r).map_or(0, |x| x.count);
            if rejected(RejectReason::InvalidUtf8) > 0 && hints.encoding.is_none() {
                hints.encoding = head(path, MAX_SAMPLE_BYTES)
                    .ok()
                    .and_then(|raw| encoding_fix(input.source.encoding, &raw))
                    .map(EncodingFix);
            }
            if rejected(RejectReason::UnparseableDate) > 0
                && hints.dates.is_none()
                && let Ok(Some(s)) = sample(input, SAMPLE_ROWS)
                && s.dates_parsed < s.dates_total
            {
                hints.dates = Some(DateHint {
                    configured: input.source.date_format.clone(),
                    detected: s.date_detection,
                });
            }
            ExtractError::NoValidRows {
                path: p,
                report,
                hints,
            }
        }
        other => other,
    }
}

/// Hints attached to [`ExtractError::NoValidRows`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hints {
    /// The encoding that reads the file, when it is not the configured one.
    pub encoding: Option<EncodingFix>,
    /// Why the dates do not parse and which format does.
    pub dates: Option<DateHint>,
}

impl fmt::Display for Hints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(e) = &self.encoding {
            write!(f, "; the file is not in the configured encoding: {e}")?;
        }
        if let Some(d) = &self.dates {
            write!(f, "; {d}")?;
        }
        Ok(())
    }
}

/// The kind of characters of a borrower id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum IdKind {
    /// ASCII digits only.
    Digits,
    /// ASCII letters only.
    Letters,
    /// ASCII letters and digits.
    LettersAndDigits,
    /// Anything else (punctuation, spaces, non-ASCII).
    Mixed,
}

impl IdKind {
    fn of(id: &str) -> IdKind {
        let digits = id.bytes().all(|b| b.is_ascii_digit());
        let letters = id.bytes().all(|b| b.is_ascii_alphabetic());
        let alnum = id.bytes().all(|b| b.is_ascii_alphanumeric());
        match (digits, letters, alnum) {
            (true, _, _) => IdKind::Digits,
            (_, true, _) => IdKind::Letters,
            (_, _, true) => IdKind::LettersAndDigits,
            _ => IdKind::Mixed,
        }
    }

    /// Lower-case words naming the kind.
    pub fn as_str(self) -> &'static str {
        match self {
            IdKind::Digits => "digits",
            IdKind::Letters => "letters",
            IdKind::LettersAndDigits => "letters and digits",
            IdKind::Mixed => "other characters",
        }
    }
}

/// The shape of some borrower ids: their kind and range of lengths; never
/// a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdShape {
    /// Kind of characters.
    pub kind: IdKind,
    /// Shortest, in characters.
    pub min_len: usize,
    /// Longest, in characters.
    pub max_len: usize,
    /// Distinct ids of this kind in the sample.
    pub count: u64,
}

impl fmt::Display for IdShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, ", self.kind.as_str())?;
        if self.min_len == self.max_len {
            write!(f, "{} chars", self.min_len)?;
        } else {
            write!(f, "{}-{} chars", self.min_len, self.max_len)?;
        }
        write!(f, " ({} ids)", self.count)
    }
}

/// What the first rows of a file source show, for `alsoborrowed check`.
/// Holds header names, titles and dates, never a borrower id.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Sample {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_bytes: u64,
    /// Bytes of the header and the rows sampled.
    pub sample_bytes: u64,
    /// Data rows sampled.
    pub rows: u64,
    /// Whether the whole file was sampled.
    pub whole_file: bool,
    /// The header's names (text formats), or `None` when withheld because
    /// no configured column is among them (the first line may be data).
    pub header: Option<Vec<String>>,
    /// Configured columns (or NDJSON paths) not found.
    pub missing: Vec<String>,
    /// The encoding that reads the file, when the configured one does not.
    pub encoding_fix: Option<Encoding>,
    /// Whether the sample holds non-ASCII text (so the encoding matters).
    pub non_ascii: bool,
    /// Rows whose number of fields differs from the header's.
    pub wrong_width: u64,
    /// Up to three example titles (none that is also a borrower id).
    pub example_titles: Vec<String>,
    /// Up to three example date fields.
    pub example_dates: Vec<String>,
    /// Non-empty date fields.
    pub dates_total: usize,
    /// Of them, parsed by the configured `date_format`.
    pub dates_parsed: usize,
    /// The known format that parses the most of them.
    pub date_detection: Option<DateDetection>,
    /// Shapes of the distinct borrower ids, by kind.
    pub id_shapes: Vec<IdShape>,
    /// Distinct borrower ids in the sample.
    pub distinct_borrowers: u64,
    /// Distinct titles in the sample.
    pub distinct_titles: u64,
    /// Distinct borrower ids that are also title ids of the sample.
    pub ids_as_titles: u64,
    /// Rows with an empty borrower id, title or date.
    pub empty_fields: u64,
    /// Dates that parse but are after today (rejected by extract).
    pub future_dates: u64,
}

impl Sample {
    /// The estimated number of data rows of the whole file, from the mean
    /// size of the sampled rows.
    pub fn estimated_rows(&self) -> u64 {
        if self.whole_file || self.rows == 0 || self.sample_bytes == 0 {
            return self.rows;
        }
        let per_row = self.sample_bytes as f64 / self.rows as f64;
        (self.file_bytes as f64 / per_row).round() as u64
    }
}

/// Reads the first `max_rows` data rows of a file source (CSV, TSV,
/// semicolon-separated or NDJSON) and describes them; `None` for Parquet
/// and database sources, which are not sampled.
pub fn sample(input: &ExtractInput<'_>, max_rows: usize) -> Result<Option<Sample>, ExtractError> {
    if !is_delimited(input.source.format) && input.source.format != Format::Ndjson {
        return Ok(None);
    }
    let path = input.input.unwrap_or(&input.source.path);
    let io = |source| ExtractError::Io {
        path: path.to_owned(),
        source,
    };
    let file_bytes = std::fs::metadata(path).map_err(io)?.len();
    let raw = head(path, MAX_SAMPLE_BYTES).map_err(io)?;
    let whole = (raw.len() as u64) == file_bytes;
    // Cut after the line that ends the sample (the header plus max_rows),
    // or after the last whole line read.
    let cut = memchr::memchr_iter(b'\n', &raw)
        .nth(max_rows)
        .map(|i| i + 1)
        .or_else(|| {
            if whole {
                Some(raw.len())
            } else {
                memchr::memrchr(b'\n', &raw).map(|i| i + 1)
            }
        })
        .unwrap_or(raw.len());
    let raw_sample = &raw[..cut];
    let mut s = Sample {
        path: path.to_owned(),
        file_bytes,
        sample_bytes: cut as u64,
        whole_file: whole && cut == raw.len(),
        non_ascii: raw_sample.iter().any(|b| !b.is_ascii()),
        ..Sample::default()
    };
    let source = input.source;
    let mut acc = Accumulator::new(source, input.today);
    match source.format {
        Format::Ndjson => {
            s.encoding_fix = (!is_utf8(raw_sample)).then_some(Encoding::Windows1252);
            sample_ndjson(raw_sample, source, &mut acc, &mut s);
        }
        f if is_delimited(f) => {
            s.encoding_fix = encoding_fix(source.encoding, raw_sample);
            let text = Zeroizing::new(match source.encoding {
                Encoding::Utf8 => {
                    String::from_utf8_lossy(crate::strip_bom(raw_sample)).into_owned()
                }
                e => decode(e, raw_sample).unwrap_or_default(),
            });
            sample_delimited(&text, raw_sample, source, &mut acc, &mut s);
        }
        _ => return Ok(None),
    }
    acc.finish(&mut s);
    Ok(Some(s))
}

/// Collects the three fields of each sampled row; the ids are wiped when
/// it is dropped.
struct Accumulator {
    borrowers: Zeroizing<Vec<String>>,
    titles: Vec<String>,
    dates: Vec<String>,
    parser: DateParser,
    today: jiff::civil::Date,
    empty: u64,
}

impl Accumulator {
    fn new(source: &Source, today: jiff::civil::Date) -> Self {
        Accumulator {
            borrowers: Zeroizing::new(Vec::new()),
            titles: Vec::new(),
            dates: Vec::new(),
            parser: DateParser::new(&source.date_format, source.time_zone()),
            today,
            empty: 0,
        }
    }

    fn push(&mut self, borrower: &str, title: &str, date: &str) {
        let (b, t, d) = (borrower.trim(), title.trim(), date.trim());
        if b.is_empty() || t.is_empty() || d.is_empty() {
            self.empty += 1;
        }
        if !b.is_empty() {
            self.borrowers.push(b.to_ascii_uppercase());
        }
        if !t.is_empty() {
            self.titles.push(t.to_owned());
        }
        if !d.is_empty() {
            self.dates.push(d.to_owned());
        }
    }

    fn finish(mut self, s: &mut Sample) {
        s.empty_fields = self.empty;
        self.borrowers.sort_unstable();
        self.borrowers.dedup();
        s.distinct_borrowers = self.borrowers.len() as u64;
        let ids: HashSet<&str> = self.borrowers.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        for t in &self.titles {
            if seen.insert(t.as_str()) && s.example_titles.len() < 3 && !ids.contains(t.as_str()) {
                s.example_titles.push(t.clone());
            }
        }
        s.distinct_titles = seen.len() as u64;
        s.ids_as_titles = seen.iter().filter(|t| ids.contains(**t)).count() as u64;
        let mut shapes: BTreeMap<IdKind, IdShape> = BTreeMap::new();
        for id in self.borrowers.iter() {
            let kind = IdKind::of(id);
            let len = id.chars().count();
            let shape = shapes.entry(kind).or_insert(IdShape {
                kind,
                min_len: len,
                max_len: len,
                count: 0,
            });
            shape.min_len = shape.min_len.min(len);
            shape.max_len = shape.max_len.max(len);
            shape.count += 1;
        }
        s.id_shapes = shapes.into_values().collect();
        // Only fields that read as dates are shown: a date column mapped
        // to the wrong column must not print its values.
        let detected = detect_date_format(self.dates.iter().map(String::as_str));
        let known = detected
            .as_ref()
            .map(|d| DateParser::new(d.format.setting, jiff::tz::TimeZone::UTC));
        for d in &self.dates {
            let is_date = self.parser.parse(d).is_some()
                || known.as_ref().is_some_and(|k| k.parse(d).is_some());
            if s.example_dates.len() < 3
                && is_date
                && !ids.contains(d.as_str())
                && !s.example_dates.contains(d)
            {
                s.example_dates.push(d.clone());
            }
        }
        s.dates_total = self.dates.len();
        let days: Vec<jiff::civil::Date> = self
            .dates
            .iter()
            .filter_map(|d| self.parser.parse(d))
            .collect();
        s.dates_parsed = days.len();
        s.future_dates = days.iter().filter(|&&d| d > self.today).count() as u64;
        s.date_detection = detected;
    }
}

/// Samples a delimited text (already decoded); `raw` is the undecoded
/// sample, for the header's encoding hint.
fn sample_delimited(
    text: &str,
    raw: &[u8],
    source: &Source,
    acc: &mut Accumulator,
    s: &mut Sample,
) {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(source.delimiter())
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    // Best effort: the text is wiped, the csv reader's record buffer is not.
    let mut record = csv::StringRecord::new();
    if !matches!(reader.read_record(&mut record), Ok(true)) {
        return;
    }
    let names: Vec<String> = record.iter().map(|n| n.trim().to_owned()).collect();
    let c = &source.columns;
    let wanted = [&c.borrower_id, &c.title_id, &c.loan_date];
    let found = wanted.map(|w| names.iter().position(|n| n == w.trim()));
    s.missing = wanted
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(w, _)| (*w).clone())
        .collect();
    s.header = found.iter().any(Option::is_some).then(|| names.clone());
    let [Some(b), Some(t), Some(d)] = found else {
        if let Some(e) = header_encoding_fix(source, raw) {
            s.encoding_fix = Some(e);
        }
        return;
    };
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => {
                s.wrong_width += 1;
                continue;
            }
        }
        if record.len() == 1 && record.get(0).is_some_and(|f| f.trim().is_empty()) {
            continue;
        }
        s.rows += 1;
        if record.len() != names.len() {
            s.wrong_width += 1;
            continue;
        }
        let field = |i| record.get(i).unwrap_or_default();
        acc.push(field(b), field(t), field(d));
    }
}

/// Samples NDJSON lines, fields named by dotted paths.
fn sample_ndjson(raw: &[u8], source: &Source, acc: &mut Accumulator, s: &mut Sample) {
    let c = &source.columns;
    let wanted = [&c.borrower_id, &c.title_id, &c.loan_date];
    let mut seen = [false; 3];
    let mut id = Zeroizing::new(String::new());
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        s.rows += 1;
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(line) else {
            s.wrong_width += 1;
            continue;
        };
        let mut fields: [String; 3] = Default::default();
        for (i, w) in wanted.iter().enumerate() {
            id.clear();
            match crate::ndjson::lookup(&value, w) {
                Some(serde_json::Value::String(v)) => id.push_str(v),
                Some(serde_json::Value::Number(n)) => {
                    let _ = write!(&mut *id, "{n}");
                }
                _ => {}
            }
            if !id.is_empty() {
                seen[i] = true;
            }
            fields[i] = std::mem::take(&mut *id);
        }
        acc.push(&fields[0], &fields[1], &fields[2]);
        fields[0].zeroize();
    }
    s.missing = wanted
        .iter()
        .zip(seen)
        .filter(|(_, f)| !f)
        .map(|(w, _)| (*w).clone())
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn each_known_format_is_recognized_on_typical_dates() {
        let cases = [
            ("2024-05-03", "iso"),
            ("2024-05-03 14:22:10", "iso"),
            ("2024-05-31 18:30:00-04", "iso"),
            ("2024-05-31T22:30:00.000+00:00", "iso"),
            ("2024-05-31T21:59:59.999Z", "iso"),
            ("31.05.2024", "%d.%m.%Y"),
            ("31.05.2024 14:22", "%d.%m.%Y %H:%M"),
            ("31/05/2024", "%d/%m/%Y"),
            ("05/31/2024", "%m/%d/%Y"),
            ("05/31/2024 02:22 PM", "%m/%d/%Y %I:%M %p"),
            ("31-05-2024", "%d-%m-%Y"),
            ("2024/05/31", "%Y/%m/%d"),
            ("20240531", "%Y%m%d"),
        ];
        for (field, want) in cases {
            let d = detect_date_format([field]).unwrap_or_else(|| panic!("{field}"));
            assert_eq!(d.format.setting, want, "{field}");
            assert_eq!((d.parsed, d.total), (1, 1));
        }
        assert_eq!(detect_date_format(["not a date", "", "  "]), None);
    }

    #[test]
    fn configuration_md_lists_every_known_format() {
        let doc = include_str!("../../../docs/configuration.md");
        for f in KNOWN_DATE_FORMATS {
            assert!(doc.contains(&format!("`{:?}`", f.setting)), "{}", f.setting);
        }
    }

    #[test]
    fn day_and_month_order_is_ambiguous_until_a_day_is_above_twelve() {
        let d = detect_date_format(["03/05/2024", "04/06/2024"]).unwrap();
        assert_eq!(d.format.setting, "%d/%m/%Y");
        assert_eq!(d.ambiguous_with.map(|f| f.setting), Some("%m/%d/%Y"));
        let d = detect_date_format(["03/05/2024", "04/26/2024"]).unwrap();
        assert_eq!(d.format.setting, "%m/%d/%Y");
        assert_eq!(d.ambiguous_with, None);
        assert_eq!(d.parsed, 2);
    }

    #[test]
    fn the_hint_names_the_tried_pattern_and_the_fix() {
        let hint = DateHint {
            configured: "iso".into(),
            detected: detect_date_format(["31.12.2024"]),
        };
        let text = hint.to_string();
        assert!(text.contains("source.date_format \"iso\""), "{text}");
        assert!(
            text.contains("fix: set source.date_format = \"%d.%m.%Y\""),
            "{text}"
        );
    }

    fn source(extra: &str) -> Source {
        crate::tests::source(extra)
    }

    #[test]
    fn a_windows_1252_header_read_as_utf8_names_the_encoding() {
        let src = source(
            "format = \"semicolon\"\n[source.columns]\nborrower_id = \"Lånernummer\"\n\
             title_id = \"Titel\"\nloan_date = \"Udlånsdato\"",
        );
        let raw = b"L\xE5nernummer;Titel;Udl\xE5nsdato\r\n1;T;01.02.2024\r\n";
        assert_eq!(header_encoding_fix(&src, raw), Some(Encoding::Windows1252));
        assert_eq!(
            encoding_fix(Encoding::Utf8, raw),
            Some(Encoding::Windows1252)
        );
        // Read as configured, it already matches: no other encoding is named
        // unless it too matches (it does not: the bytes are not UTF-8).
        let utf8 = "Lånernummer;Titel;Udlånsdato\n".as_bytes();
        assert_eq!(header_encoding_fix(&src, utf8), None);
        let latin = source(
            "format = \"semicolon\"\nencoding = \"iso-8859-1\"\n[source.columns]\n\
             borrower_id = \"Lånernummer\"\ntitle_id = \"Titel\"\nloan_date = \"Udlånsdato\"",
        );
        assert_eq!(header_encoding_fix(&latin, utf8), Some(Encoding::Utf8));
        assert_eq!(encoding_fix(Encoding::Iso88591, utf8), Some(Encoding::Utf8));
        assert_eq!(encoding_fix(Encoding::Iso88591, raw), None);
        assert_eq!(
            EncodingFix(Encoding::Windows1252).to_string(),
            "fix: set source.encoding = \"windows-1252\" in the pipeline file"
        );
    }

    #[test]
    fn shapes_say_kind_and_length_only() {
        let shape = IdShape {
            kind: IdKind::of("4711"),
            min_len: 4,
            max_len: 4,
            count: 1,
        };
        assert_eq!(shape.to_string(), "digits, 4 chars (1 ids)");
        assert_eq!(IdKind::of("U1"), IdKind::LettersAndDigits);
        assert_eq!(IdKind::of("A"), IdKind::Letters);
        assert_eq!(IdKind::of("card-1"), IdKind::Mixed);
    }

    #[test]
    fn a_sample_shows_shapes_titles_and_dates_but_no_borrower_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("loans.csv");
        let mut text = String::from("borrower_id,title_id,loan_date\n");
        // Ids of every shape; borrower 7 is also a title id; a row of the
        // wrong width and one without a date.
        for (i, id) in ["1", "7", "4711", "A", "U1", "CARD00012345"]
            .iter()
            .enumerate()
        {
            text.push_str(&format!("{id},Bog {i},0{}.05.2024\n", i + 1));
        }
        text.push_str("u1,7,01.06.2024\nA,Bog 1\n5000,Bog 2,\n");
        std::fs::write(&path, &text).unwrap();
        let src = source("date_format = \"%d.%m.%Y\"");
        let input = ExtractInput {
            source: &src,
            works: None,
            input: Some(&path),
            today: jiff::civil::date(2024, 6, 15),
        };
        let s = sample(&input, SAMPLE_ROWS).unwrap().unwrap();
        assert!(s.whole_file);
        assert_eq!((s.rows, s.wrong_width, s.empty_fields), (9, 1, 1));
        assert_eq!(s.distinct_borrowers, 7);
        assert_eq!(s.ids_as_titles, 1);
        assert_eq!(s.example_titles, ["Bog 0", "Bog 1", "Bog 2"]);
        assert_eq!(s.example_dates, ["01.05.2024", "02.05.2024", "03.05.2024"]);
        assert_eq!((s.dates_parsed, s.dates_total), (7, 7));
        assert_eq!(s.future_dates, 0);
        let shapes: Vec<String> = s.id_shapes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shapes,
            [
                "digits, 1-4 chars (4 ids)",
                "letters, 1 chars (1 ids)",
                "letters and digits, 2-12 chars (2 ids)"
            ]
        );
        let shown = format!("{s:?}").replace(&path.display().to_string(), "PATH");
        for id in ["4711", "CARD00012345", "U1", "5000"] {
            assert!(!shown.contains(id), "{id} in {shown}");
        }
        let later = ExtractInput {
            today: jiff::civil::date(2024, 5, 2),
            ..input
        };
        assert_eq!(
            sample(&later, SAMPLE_ROWS).unwrap().unwrap().future_dates,
            5
        );
        // Only the first rows are read when asked.
        let s = sample(&input, 2).unwrap().unwrap();
        assert_eq!(s.rows, 2);
        assert!(!s.whole_file);
    }

    /// A date rendered in one of the known formats.
    fn render(format: &KnownDateFormat, dt: jiff::civil::DateTime) -> String {
        if format.setting == "iso" {
            return dt.strftime("%Y-%m-%d %H:%M:%S").to_string();
        }
        dt.strftime(format.setting).to_string()
    }

    proptest! {
        #[test]
        fn a_generated_date_in_each_known_format_is_recognized_as_it(
            year in 1990i16..2040,
            month in 1i8..=12,
            day in 1i8..=28,
            hour in 0i8..24,
            minute in 0i8..60,
            second in 0i8..60,
            which in 0usize..KNOWN_DATE_FORMATS.len(),
        ) {
            let format = &KNOWN_DATE_FORMATS[which];
            let dt = jiff::civil::date(year, month, day).at(hour, minute, second, 0);
            let field = render(format, dt);
            let d = detect_date_format([field.as_str()]).unwrap();
            // The format itself reads the day, and the detector names it, or
            // names the format before it that reads the field as well and
            // gives this one as the alternative (dd/mm before mm/dd when
            // the day is at most 12).
            let own = DateParser::new(format.setting, jiff::tz::TimeZone::UTC);
            prop_assert_eq!(own.parse(&field), Some(dt.date()), "{}", field);
            if d.format == *format {
                prop_assert_eq!((d.parsed, d.total), (1, 1));
            } else {
                prop_assert_eq!(d.ambiguous_with, Some(*format), "{} as {}", field, d.format.setting);
            }
        }
    }
}
