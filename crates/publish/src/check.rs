//! The release check: every file of a release, every value in it, is either
//! part of the release format (and equal to what the exporter meant to
//! write) or a title of the input. Anything else is refused, and classified
//! as a borrower id, pseudonym or key material where it is one.
//!
//! Because a correct release holds nothing but format values and input
//! titles, borrower ids never need to be searched for in it: a short numeric
//! or three-letter id can no longer match a score, a count, a shard name or
//! compressed bytes by chance. Pseudonyms and keys, too long to match by
//! chance, are still searched in every raw byte ([`Forbidden::find_raw`]).

use std::borrow::Cow;
use std::fmt;

use alsoborrowed_feed::{
    FEED_DIR, FeedIndex, INDEX_FILE, Layout, SCHEMA_VERSION, SHARDS_DIR, TITLES_DIR, file_stem,
    list_problem, shard_name, shard_problem,
};
use serde::{Deserialize, Serialize};

use crate::files::{CREATED_BY, CSV_HEADER, PARQUET_COLUMNS, undefuse};
use crate::forbidden::{FindingKind, Forbidden};
use crate::{PAIRS_CSV, PAIRS_PARQUET, RELEASE_MANIFEST};

/// Findings kept per file; the rest are counted.
const KEPT_PER_FILE: usize = 20;

/// `release.json`: how a release was made, kept beside the pair files,
/// owner-only and outside the served feed. What the public index no longer
/// says (window, measure, thresholds, counts) lives here for `verify` and
/// for the library's own records.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReleaseManifest {
    /// Version of this file's format, 1.
    pub format: u32,
    /// First month of the scoring window, `YYYY-MM`.
    pub window_first: String,
    /// Last month of the scoring window, `YYYY-MM`.
    pub window_last: String,
    /// Association measure that ranked the lists.
    pub measure: String,
    /// Minimum distinct borrowers per published pair (k).
    pub min_support: u32,
    /// Most titles one borrower contributed.
    pub max_titles_per_borrower: u32,
    /// Weight of co-borrowing per month between two loans (1 = none).
    pub time_decay: f64,
    /// Most related titles per title (N).
    pub max_related: u32,
    /// Feed layout.
    pub layout: Layout,
    /// Shards layout only: `2^shard_bits` shard files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_bits: Option<u32>,
    /// Titles with a list.
    pub titles: u64,
    /// Published directed pairs.
    pub pairs: u64,
}

/// Version of `release.json`'s format.
pub const MANIFEST_FORMAT: u32 = 1;

/// One thing the check found: the file, the kind of value and where in the
/// file, never the value itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    /// Release-relative path; a file name that itself holds a forbidden
    /// value is replaced by `<name withheld>`.
    pub file: String,
    /// What kind of value.
    pub kind: FindingKind,
    /// Where: a field path, a row and column, a Parquet page or a byte offset.
    pub place: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} at {}", self.file, self.kind, self.place)
    }
}

/// What a release must hold, besides titles of the input.
pub(crate) struct Expected<'a> {
    /// Titles of the input: the only free values a release may hold. Looked
    /// up for every title of every file, so hashed with `hashbrown`'s fast
    /// default rather than SipHash (the titles are the library's catalogue
    /// ids, not chosen by a visitor).
    pub titles: &'a hashbrown::HashSet<&'a str>,
    /// The manifest the release was made with.
    pub manifest: &'a ReleaseManifest,
    /// The public index derived from it.
    pub index: &'a FeedIndex,
}

/// The findings in one file, and how many more there were.
#[derive(Default)]
pub(crate) struct FileFindings {
    pub kept: Vec<Finding>,
    pub total: u64,
}

struct Checker<'a> {
    file: String,
    exp: &'a Expected<'a>,
    forbidden: &'a Forbidden,
    out: FileFindings,
}

impl Checker<'_> {
    fn push(&mut self, kind: FindingKind, place: impl FnOnce() -> String) {
        self.out.total += 1;
        if self.out.kept.len() < KEPT_PER_FILE {
            self.out.kept.push(Finding {
                file: self.file.clone(),
                kind,
                place: place(),
            });
        }
    }

    /// A checker of the same file with no findings yet, for a part of the
    /// file checked beside others.
    fn fork(&self) -> Self {
        Checker {
            file: self.file.clone(),
            exp: self.exp,
            forbidden: self.forbidden,
            out: FileFindings::default(),
        }
    }

    /// Takes a part's findings after those found so far.
    fn absorb(&mut self, part: FileFindings) {
        self.out.total += part.total;
        let room = KEPT_PER_FILE.saturating_sub(self.out.kept.len());
        self.out.kept.extend(part.kept.into_iter().take(room));
    }

    /// Checks `parts` of the file in parallel, each with a checker of its
    /// own (`check` says whether its part could be read), and takes their
    /// findings in order, none after the first part that could not be read.
    fn check_parts<P: Send>(
        &mut self,
        parts: Vec<P>,
        check: impl Fn(&mut Checker<'_>, P) -> bool + Sync,
    ) {
        use rayon::prelude::*;

        let checked: Vec<(FileFindings, bool)> = parts
            .into_par_iter()
            .with_max_len(1)
            .map(|part| {
                let mut forked = self.fork();
                let read = check(&mut forked, part);
                (forked.out, read)
            })
            .collect();
        for (found, read) in checked {
            self.absorb(found);
            if !read {
                return;
            }
        }
    }

    /// A value where only a title of the input may stand.
    fn title(&mut self, v: &str, place: impl FnOnce() -> String) {
        if !self.exp.titles.contains(v) {
            self.stray(v.as_bytes(), place);
        }
    }

    /// A value the format does not account for.
    fn stray(&mut self, v: &[u8], place: impl FnOnce() -> String) {
        let kind = self
            .forbidden
            .classify_value(v)
            .unwrap_or(FindingKind::Unexpected);
        self.push(kind, place);
    }

    /// A format value that differs from what was meant: classified by what
    /// it holds.
    fn differs(&mut self, what: &str, found: &str) {
        let place = format!("field {what}");
        self.stray(found.as_bytes(), || place);
    }
}

/// Checks one file of a release: its name, its raw bytes, and every value
/// it holds. `rel` is the release-relative path with `/`.
pub(crate) fn check_file(
    rel: &str,
    bytes: &[u8],
    exp: &Expected<'_>,
    forbidden: &Forbidden,
) -> FileFindings {
    let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let titles_dir = format!("{FEED_DIR}/{TITLES_DIR}");
    let shards_dir = format!("{FEED_DIR}/{SHARDS_DIR}");
    let stem = name.strip_suffix(".json");
    // A name the format accounts for is printed; any other name (or
    // directory) that holds a forbidden value is withheld from messages.
    let accounted = match (dir, stem) {
        ("", _) => [RELEASE_MANIFEST, PAIRS_CSV, PAIRS_PARQUET].contains(&name),
        (d, _) if d == FEED_DIR => name == INDEX_FILE,
        (d, Some(s)) if d == titles_dir => {
            alsoborrowed_feed::title_from_stem(s).is_some_and(|t| exp.titles.contains(t.as_str()))
        }
        (d, Some(s)) if d == shards_dir => exp
            .index
            .shard_bits
            .is_some_and(|bits| shard_named(s, bits).is_some()),
        _ => false,
    };
    let name_value = alsoborrowed_feed::title_from_stem(stem.unwrap_or(name));
    let name_finding = forbidden
        .find_raw(name.as_bytes())
        .map(|(k, _)| k)
        .or_else(|| {
            (!accounted)
                .then(|| forbidden.classify_value(name_value.as_deref().unwrap_or(name).as_bytes()))
                .flatten()
        });
    let withheld = |part: &str, known: bool| {
        forbidden.find_raw(part.as_bytes()).is_some()
            || (!known && forbidden.classify_value(part.as_bytes()).is_some())
    };
    let mut shown: Vec<&str> = dir
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            if withheld(p, [FEED_DIR, TITLES_DIR, SHARDS_DIR].contains(&p)) {
                "<name withheld>"
            } else {
                p
            }
        })
        .collect();
    shown.push(if name_finding.is_some() {
        "<name withheld>"
    } else {
        name
    });
    let file = shown.join("/");
    let mut c = Checker {
        file,
        exp,
        forbidden,
        out: FileFindings {
            kept: Vec::new(),
            total: 0,
        },
    };
    if let Some(kind) = name_finding {
        c.push(kind, || "file name".into());
    }
    if let Some((kind, at)) = forbidden.find_raw(bytes) {
        c.push(kind, || format!("byte offset {at}"));
    }
    match (dir, stem) {
        ("", _) if name == RELEASE_MANIFEST => check_manifest(&mut c, bytes),
        ("", _) if name == PAIRS_CSV => check_csv(&mut c, bytes),
        ("", _) if name == PAIRS_PARQUET => check_parquet(&mut c, bytes),
        (d, _) if d == FEED_DIR && name == INDEX_FILE => check_index(&mut c, bytes),
        (d, Some(stem)) if d == titles_dir && exp.index.layout == Layout::Titles => {
            check_title_file(&mut c, stem, bytes)
        }
        (d, Some(stem)) if d == shards_dir && exp.index.layout == Layout::Shards => {
            check_shard_file(&mut c, stem, bytes)
        }
        _ => {
            c.push(FindingKind::Unexpected, || {
                "a file that is not part of the release format".into()
            });
            // A directory of the path may hold a planted value too.
            for (i, part) in dir.split('/').filter(|p| !p.is_empty()).enumerate() {
                if let Some(kind) = forbidden.classify_value(part.as_bytes()) {
                    c.push(kind, || format!("directory name {}", i + 1));
                }
            }
        }
    }
    c.out
}

fn check_manifest(c: &mut Checker<'_>, bytes: &[u8]) {
    let found: ReleaseManifest = match serde_json::from_slice(bytes) {
        Ok(m) => m,
        Err(e) => return off_format(c, bytes, &e),
    };
    let want = c.exp.manifest;
    if found != *want {
        let f = serde_json::to_value(&found).unwrap_or_default();
        let w = serde_json::to_value(want).unwrap_or_default();
        differing_fields(c, &f, &w);
    }
}

fn check_index(c: &mut Checker<'_>, bytes: &[u8]) {
    let found: FeedIndex = match serde_json::from_slice(bytes) {
        Ok(i) => i,
        Err(e) => return off_format(c, bytes, &e),
    };
    if found != *c.exp.index {
        let f = serde_json::to_value(&found).unwrap_or_default();
        let w = serde_json::to_value(c.exp.index).unwrap_or_default();
        differing_fields(c, &f, &w);
    }
}

/// Reports every field of `found` that differs from `want`, classified by
/// its value.
fn differing_fields(c: &mut Checker<'_>, found: &serde_json::Value, want: &serde_json::Value) {
    let (Some(found), Some(want)) = (found.as_object(), want.as_object()) else {
        return;
    };
    for (key, value) in found {
        if want.get(key) != Some(value) {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            c.differs(key, &text);
        }
    }
    for key in want.keys() {
        if !found.contains_key(key) {
            let place = format!("field {key} (missing)");
            c.push(FindingKind::Unexpected, || place);
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TitleFileIn<'a> {
    schema_version: u32,
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    related: Vec<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardFileIn<'a> {
    schema_version: u32,
    #[serde(borrow)]
    shard: Cow<'a, str>,
    #[serde(borrow)]
    titles: Vec<ShardTitleIn<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardTitleIn<'a> {
    #[serde(borrow)]
    title: Cow<'a, str>,
    #[serde(borrow)]
    related: Vec<Cow<'a, str>>,
}

fn check_version(c: &mut Checker<'_>, found: u32) {
    if found != SCHEMA_VERSION {
        c.differs("schema_version", &found.to_string());
    }
}

/// A title and its list: every entry a title of the input, and the list
/// of the format's shape.
///
/// `at` gives the place's prefix, made only for a finding: a shard holds
/// thousands of lists.
fn check_list(c: &mut Checker<'_>, title: &str, related: &[Cow<'_, str>], at: &dyn Fn() -> String) {
    c.title(title, || format!("{}title", at()));
    for (i, r) in related.iter().enumerate() {
        c.title(r, || format!("{}related[{i}]", at()));
    }
    if let Some(reason) = list_problem(title, related, c.exp.index.max_related) {
        let place = format!("{}related ({reason})", at());
        c.push(FindingKind::Unexpected, || place);
    }
}

fn check_title_file(c: &mut Checker<'_>, stem: &str, bytes: &[u8]) {
    let file: TitleFileIn<'_> = match serde_json::from_slice(bytes) {
        Ok(f) => f,
        Err(e) => return off_format(c, bytes, &e),
    };
    check_version(c, file.schema_version);
    check_list(c, &file.title, &file.related, &String::new);
    if file_stem(&file.title) != stem {
        let title = alsoborrowed_feed::title_from_stem(stem);
        c.stray(title.as_deref().unwrap_or(stem).as_bytes(), || {
            "file name (not the title it holds)".into()
        });
    }
}

/// The shard a file stem names among `2^bits`, if it is one's canonical name.
fn shard_named(stem: &str, bits: u32) -> Option<u32> {
    u32::from_str_radix(stem, 16)
        .ok()
        .filter(|&s| u64::from(s) < 1u64 << bits && shard_name(s, bits) == stem)
}

fn check_shard_file(c: &mut Checker<'_>, stem: &str, bytes: &[u8]) {
    let Some(bits) = c.exp.index.shard_bits else {
        return c.push(FindingKind::Unexpected, || {
            "a shard without shard_bits".into()
        });
    };
    let Some(shard) = shard_named(stem, bits) else {
        return c.stray(stem.as_bytes(), || "file name (not a shard name)".into());
    };
    let file: ShardFileIn<'_> = match serde_json::from_slice(bytes) {
        Ok(f) => f,
        Err(e) => return off_format(c, bytes, &e),
    };
    check_version(c, file.schema_version);
    if file.shard != stem {
        c.differs("shard", &file.shard);
    }
    for (i, t) in file.titles.iter().enumerate() {
        check_list(c, &t.title, &t.related, &|| format!("titles[{i}]."));
    }
    let titles = file.titles.iter().map(|t| t.title.as_ref());
    if let Some(reason) = shard_problem(titles, shard, bits) {
        c.push(FindingKind::Unexpected, || format!("titles ({reason})"));
    }
}

/// A JSON file that does not parse as its format: classifies every string
/// and number in it that is not a title of the input or a known field name,
/// and reports where parsing stopped (line and column only: a serde message
/// can quote an unknown field's name, which may be a planted value).
fn off_format(c: &mut Checker<'_>, bytes: &[u8], e: &serde_json::Error) {
    let (line, column) = (e.line(), e.column());
    c.push(FindingKind::Unexpected, || {
        format!("line {line} column {column} (does not match the feed format)")
    });
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) {
        walk_json(c, &value, &mut String::new());
    }
}

/// Field names of the release's JSON files, shown in places; any other key
/// is shown as `<unknown field>`, never by name.
const KNOWN_FIELDS: [&str; 18] = [
    "schema_version",
    "layout",
    "shard_bits",
    "max_related",
    "updated",
    "title",
    "related",
    "shard",
    "titles",
    "format",
    "window_first",
    "window_last",
    "measure",
    "min_support",
    "max_titles_per_borrower",
    "pairs",
    "score",
    "window",
];

fn walk_json(c: &mut Checker<'_>, v: &serde_json::Value, path: &mut String) {
    use serde_json::Value;
    match v {
        Value::String(s) => {
            if !c.exp.titles.contains(s.as_str())
                && let Some(kind) = c.forbidden.classify_value(s.as_bytes())
            {
                let place = path.clone();
                c.push(kind, || place);
            }
        }
        Value::Number(n) => {
            if let Some(kind) = c.forbidden.classify_value(n.to_string().as_bytes()) {
                let place = path.clone();
                c.push(kind, || place);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk_json(c, item, path);
                path.truncate(len);
            }
        }
        Value::Object(fields) => {
            for (key, item) in fields {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                if KNOWN_FIELDS.contains(&key.as_str()) {
                    path.push_str(key);
                } else {
                    path.push_str("<unknown field>");
                    if let Some(kind) = c.forbidden.classify_value(key.as_bytes()) {
                        let place = path.clone();
                        c.push(kind, || place);
                    }
                }
                walk_json(c, item, path);
                path.truncate(len);
            }
        }
        Value::Bool(_) | Value::Null => {}
    }
}

/// Bytes of `pairs.csv` checked as one part beside the others.
const CSV_PART: usize = 4 << 20;

/// `pairs.csv`: in parts of about [`CSV_PART`] bytes checked in parallel,
/// findings in file order (at 100M loans the file is some 400 MB, a second
/// of one thread at the end of the check).
fn check_csv(c: &mut Checker<'_>, bytes: &[u8]) {
    check_csv_in_parts(c, bytes, CSV_PART);
}

/// [`check_csv`] with parts of about `part_bytes`. Without a quote or a
/// carriage return in the file, every line feed ends a record, so the file
/// is cut after line feeds and each part read by a reader of its own, its
/// rows numbered after the non-empty lines before it (the reader skips
/// empty lines); any other file is read by one reader, since only its
/// state tells whether a line feed is inside a quoted field.
fn check_csv_in_parts(c: &mut Checker<'_>, bytes: &[u8], part_bytes: usize) {
    use rayon::prelude::*;

    if bytes.len() <= part_bytes || memchr::memchr2(b'"', b'\r', bytes).is_some() {
        check_csv_rows(c, bytes, 0, 0);
        return;
    }
    let parts = line_parts(bytes, part_bytes.max(1));
    let records: Vec<u64> = parts.par_iter().map(|&(_, p)| records_in(p)).collect();
    let firsts = records.iter().scan(0u64, |before, n| {
        let first = *before;
        *before += n;
        Some(first)
    });
    let parts: Vec<_> = parts.into_iter().zip(firsts).collect();
    c.check_parts(parts, |c, ((at, part), first)| {
        check_csv_rows(c, part, first, at)
    });
}

/// `bytes` cut after the first line feed at or past every `target` bytes,
/// each part with its offset.
fn line_parts(bytes: &[u8], target: usize) -> Vec<(usize, &[u8])> {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let end = bytes
            .get(start + target..)
            .and_then(|rest| memchr::memchr(b'\n', rest))
            .map_or(bytes.len(), |i| start + target + i + 1);
        parts.push((start, &bytes[start..end]));
        start = end;
    }
    parts
}

/// The records in text without quotes or carriage returns: its non-empty
/// lines.
fn records_in(part: &[u8]) -> u64 {
    let (mut n, mut start) = (0, 0);
    for feed in memchr::memchr_iter(b'\n', part) {
        n += u64::from(feed > start);
        start = feed + 1;
    }
    n + u64::from(start < part.len())
}

/// Checks the CSV records of `bytes`, which follow `first` records of the
/// file and start at byte `at`; false when the text is not valid CSV.
fn check_csv_rows(c: &mut Checker<'_>, bytes: &[u8], first: u64, at: usize) -> bool {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut row = first;
    // Rows come grouped by title_a: each run's title is looked up once
    // (the last title_a, when it was a title of the input).
    let (mut last_a, mut last_a_ok) = (Vec::new(), false);
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => {
                let at = at as u64 + reader.position().byte();
                c.push(FindingKind::Unexpected, || {
                    format!("byte offset {at} (not valid CSV)")
                });
                return false;
            }
        }
        row += 1;
        if row == 1 {
            if record.iter().ne(CSV_HEADER.iter().map(|h| h.as_bytes())) {
                for (i, field) in record.iter().enumerate() {
                    if CSV_HEADER.get(i).map(|h| h.as_bytes()) != Some(field) {
                        c.stray(field, || format!("header, column {}", i + 1));
                    }
                }
            }
            continue;
        }
        for (i, field) in record.iter().enumerate() {
            let place = || format!("row {row}, column {}", i + 1);
            match i {
                0 if last_a_ok && last_a == field => {}
                0 | 1 => {
                    let before = c.out.total;
                    match std::str::from_utf8(field).ok().and_then(undefuse) {
                        Some(title) => c.title(title, place),
                        None => c.stray(field, place),
                    }
                    if i == 0 {
                        last_a_ok = c.out.total == before;
                        last_a.clear();
                        last_a.extend_from_slice(field);
                    }
                }
                2 => {
                    let score = std::str::from_utf8(field)
                        .ok()
                        .and_then(|s| s.parse::<f64>().ok());
                    if !score.is_some_and(f64::is_finite) {
                        c.stray(field, place);
                    }
                }
                _ => c.stray(field, place),
            }
        }
        if record.len() < 3 {
            c.push(FindingKind::Unexpected, || {
                format!("row {row} (too few fields)")
            });
        }
    }
    true
}

fn check_parquet(c: &mut Checker<'_>, bytes: &[u8]) {
    use parquet::basic::Type as Physical;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    let data = bytes::Bytes::copy_from_slice(bytes);
    let reader = match SerializedFileReader::new(data.clone()) {
        Ok(r) => r,
        Err(_) => {
            return c.push(FindingKind::Unexpected, || {
                "footer (not a Parquet file)".into()
            });
        }
    };
    let meta = reader.metadata();
    let file_meta = meta.file_metadata();
    let schema = file_meta.schema_descr();
    let columns_ok = schema.num_columns() == PARQUET_COLUMNS.len()
        && schema
            .columns()
            .iter()
            .zip(PARQUET_COLUMNS)
            .all(|(col, (name, _))| col.name() == name);
    if !columns_ok {
        for col in schema.columns() {
            if !PARQUET_COLUMNS.iter().any(|(n, _)| *n == col.name()) {
                c.stray(col.name().as_bytes(), || "schema, a column name".into());
            }
        }
        c.push(FindingKind::Unexpected, || {
            "schema (not the pairs columns)".into()
        });
        return;
    }
    let types_ok = schema.columns().iter().map(|col| col.physical_type()).eq([
        Physical::BYTE_ARRAY,
        Physical::BYTE_ARRAY,
        Physical::DOUBLE,
    ]);
    if !types_ok {
        c.push(FindingKind::Unexpected, || "schema (column types)".into());
        return;
    }
    if file_meta.created_by() != Some(CREATED_BY) {
        let found = file_meta.created_by().unwrap_or("").to_owned();
        c.stray(found.as_bytes(), || "footer, created_by".into());
    }
    for kv in file_meta.key_value_metadata().into_iter().flatten() {
        c.stray(kv.key.as_bytes(), || {
            "footer, key-value metadata key".into()
        });
        if let Some(v) = &kv.value {
            c.stray(v.as_bytes(), || "footer, key-value metadata value".into());
        }
    }
    // The pages and the decoded rows are independent: checked side by
    // side (the largest file of a release, checked alone at the end on one
    // thread, was the export's tail), their findings in that order. Rows
    // of a file whose pages cannot be read are not reported on.
    let (mut pages, mut rows) = (c.fork(), c.fork());
    let (readable, ()) = rayon::join(
        || check_parquet_pages(&mut pages, &reader),
        || check_parquet_rows(&mut rows, data.clone()),
    );
    c.absorb(pages.out);
    if readable {
        c.absorb(rows.out);
    }
}

/// Every page of every column chunk: no forbidden bytes, and only titles
/// of the input in the title columns' statistics and dictionaries. False
/// when a row group or page cannot be read.
fn check_parquet_pages(
    c: &mut Checker<'_>,
    reader: &parquet::file::reader::SerializedFileReader<bytes::Bytes>,
) -> bool {
    use parquet::column::page::Page;
    use parquet::file::reader::FileReader;

    let meta = reader.metadata();
    for rg in 0..meta.num_row_groups() {
        let Ok(group) = reader.get_row_group(rg) else {
            c.push(FindingKind::Unexpected, || {
                format!("row group {rg} (unreadable)")
            });
            return false;
        };
        for (col, (name, _)) in PARQUET_COLUMNS.iter().enumerate() {
            let is_title = col < 2;
            if let Some(stats) = group.metadata().column(col).statistics() {
                for v in [stats.min_bytes_opt(), stats.max_bytes_opt()]
                    .into_iter()
                    .flatten()
                {
                    stat_value(c, is_title, v, || {
                        format!("row group {rg}, column {name}, statistics")
                    });
                }
            }
            let Ok(pages) = group.get_column_page_reader(col) else {
                c.push(FindingKind::Unexpected, || {
                    format!("row group {rg}, column {name} (unreadable)")
                });
                return false;
            };
            for (p, page) in pages.enumerate() {
                let Ok(page) = page else {
                    c.push(FindingKind::Unexpected, || {
                        format!("row group {rg}, column {name}, page {p} (unreadable)")
                    });
                    return false;
                };
                let place = |what: &str| format!("row group {rg}, column {name}, page {p}{what}");
                if let Some((kind, at)) = c.forbidden.find_raw(page.buffer()) {
                    c.push(kind, || place(&format!(", byte offset {at}")));
                }
                if let Some(stats) = page.statistics() {
                    for v in [stats.min_bytes_opt(), stats.max_bytes_opt()]
                        .into_iter()
                        .flatten()
                    {
                        stat_value(c, is_title, v, || place(", statistics"));
                    }
                }
                if let Page::DictionaryPage {
                    buf, num_values, ..
                } = &page
                {
                    if !is_title {
                        continue;
                    }
                    match plain_byte_arrays(buf, *num_values as usize) {
                        Some(values) => {
                            for (i, v) in values.into_iter().enumerate() {
                                match std::str::from_utf8(v) {
                                    Ok(t) => {
                                        c.title(t, || place(&format!(" (dictionary), value {i}")))
                                    }
                                    Err(_) => {
                                        c.stray(v, || place(&format!(" (dictionary), value {i}")))
                                    }
                                }
                            }
                        }
                        None => c.push(FindingKind::Unexpected, || {
                            place(" (dictionary, not PLAIN)")
                        }),
                    }
                }
            }
        }
    }
    true
}

/// A statistics value: a title of the input in a title column; a score
/// column's statistics are 8-byte doubles, part of the format.
fn stat_value(c: &mut Checker<'_>, is_title: bool, v: &[u8], place: impl FnOnce() -> String) {
    if !is_title {
        return;
    }
    match std::str::from_utf8(v) {
        Ok(t) => c.title(t, place),
        Err(_) => c.stray(v, place),
    }
}

/// The values of a PLAIN-encoded BYTE_ARRAY page: each a 4-byte
/// little-endian length and that many bytes; `None` if the page is not that.
fn plain_byte_arrays(buf: &[u8], n: usize) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(n);
    let mut rest = buf;
    for _ in 0..n {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        out.push(rest.get(4..4 + len)?);
        rest = &rest[4 + len..];
    }
    rest.is_empty().then_some(out)
}

/// Every decoded row value: titles of the input, finite scores. Row
/// groups are decoded and checked in parallel, their findings in file
/// order; none after the first row group that cannot be read.
fn check_parquet_rows(c: &mut Checker<'_>, data: bytes::Bytes) {
    use parquet::arrow::arrow_reader::{
        ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
    };

    let unreadable =
        |c: &mut Checker<'_>| c.push(FindingKind::Unexpected, || "rows (unreadable)".into());
    let Ok(meta) = ArrowReaderMetadata::load(&data, ArrowReaderOptions::default()) else {
        return unreadable(c);
    };
    let groups = meta.metadata().row_groups();
    let first_rows: Vec<usize> = groups
        .iter()
        .scan(0usize, |next, g| {
            let first = *next;
            *next += usize::try_from(g.num_rows()).unwrap_or(0);
            Some(first)
        })
        .collect();
    c.check_parts((0..groups.len()).collect(), |c, rg| {
        let reader = ParquetRecordBatchReaderBuilder::new_with_metadata(data.clone(), meta.clone())
            .with_row_groups(vec![rg])
            .build();
        match reader {
            Ok(r) => check_row_group(c, r, first_rows[rg]),
            Err(_) => {
                unreadable(c);
                false
            }
        }
    });
}

/// The rows of one row group, the first of them row `row` of the file;
/// false when a batch cannot be read.
fn check_row_group(
    c: &mut Checker<'_>,
    reader: parquet::arrow::arrow_reader::ParquetRecordBatchReader,
    mut row: usize,
) -> bool {
    use arrow_array::cast::AsArray;

    for batch in reader {
        let Ok(batch) = batch else {
            c.push(FindingKind::Unexpected, || {
                format!("row {row} (unreadable)")
            });
            return false;
        };
        let (Some(a), Some(b), Some(s)) = (
            batch.column(0).as_string_opt::<i32>(),
            batch.column(1).as_string_opt::<i32>(),
            batch
                .column(2)
                .as_primitive_opt::<arrow_array::types::Float64Type>(),
        ) else {
            c.push(FindingKind::Unexpected, || "rows (column types)".into());
            return false;
        };
        // Rows come grouped by title_a: look each run up once.
        let mut last_a: Option<&str> = None;
        for i in 0..batch.num_rows() {
            let r = row + i;
            if last_a != Some(a.value(i)) {
                c.title(a.value(i), || format!("row {r}, column title_a"));
                last_a = Some(a.value(i));
            }
            c.title(b.value(i), || format!("row {r}, column title_b"));
            if !s.value(i).is_finite() {
                c.push(FindingKind::Unexpected, || format!("row {r}, column score"));
            }
        }
        row += batch.num_rows();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::file::properties::WriterProperties;
    use proptest::prelude::*;

    /// `pairs.parquet` of `title_b`s (title_a `t0`, score 1) in row groups
    /// of `group_rows`.
    fn pairs_file(title_b: &[&str], group_rows: usize) -> bytes::Bytes {
        let n = title_b.len();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["t0"; n])),
            Arc::new(StringArray::from(title_b.to_vec())),
            Arc::new(Float64Array::from(vec![1.0; n])),
        ];
        let batch = RecordBatch::try_new(crate::files::schema(), columns).unwrap();
        let props = WriterProperties::builder()
            .set_max_row_group_row_count(Some(group_rows))
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        bytes::Bytes::from(buf)
    }

    /// Row groups are checked in parallel, and their findings come back in
    /// row order, counted once each, whatever group finishes first.
    /// A manifest of a release of the titles "t0" and "t1".
    fn manifest() -> ReleaseManifest {
        ReleaseManifest {
            format: MANIFEST_FORMAT,
            window_first: "2025-01".into(),
            window_last: "2025-12".into(),
            measure: "jaccard".into(),
            min_support: 5,
            max_titles_per_borrower: 100,
            time_decay: 1.0,
            max_related: 20,
            layout: Layout::Titles,
            shard_bits: None,
            titles: 1,
            pairs: 2500,
        }
    }

    /// Runs `check` on a checker of `file` expecting the titles "t0" and
    /// "t1", with `forbidden`; returns its findings.
    fn findings(
        file: &str,
        forbidden: &Forbidden,
        check: impl FnOnce(&mut Checker<'_>),
    ) -> FileFindings {
        let titles: hashbrown::HashSet<&str> = ["t0", "t1"].into_iter().collect();
        let manifest = manifest();
        let index = crate::feed_index(&manifest);
        let exp = Expected {
            titles: &titles,
            manifest: &manifest,
            index: &index,
        };
        let mut c = Checker {
            file: file.into(),
            exp: &exp,
            forbidden,
            out: FileFindings::default(),
        };
        check(&mut c);
        c.out
    }

    #[test]
    fn parquet_rows_are_checked_by_row_group_in_order() {
        let mut title_b = vec!["t1"; 2500];
        title_b[2100] = "x2";
        title_b[5] = "x1";
        title_b[999] = "x3";
        let forbidden = Forbidden::new();
        for group_rows in [1000, 2500, 7] {
            let out = findings("pairs.parquet", &forbidden, |c| {
                check_parquet_rows(c, pairs_file(&title_b, group_rows))
            });
            let places: Vec<&str> = out.kept.iter().map(|f| f.place.as_str()).collect();
            assert_eq!(
                places,
                [
                    "row 5, column title_b",
                    "row 999, column title_b",
                    "row 2100, column title_b"
                ],
                "{group_rows} rows a group"
            );
            assert_eq!(out.total, 3);
        }
    }

    /// One line of a `pairs.csv` to check: fine, or with a finding.
    fn csv_line() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "t0,t1,0.5",
            "t1,t0,1",
            "x1,t1,0.5",
            "t0,x2,0.5",
            "t0,t1,nan",
            "t0,t1",
            "t0,t1,0.5,extra",
            "",
            "title_a,title_b,score",
        ])
    }

    proptest! {
        /// Parts of every size give the findings of one reader over the
        /// whole file: the same places (row numbers after blank lines
        /// included), in file order, the same total, the first
        /// `KEPT_PER_FILE` kept.
        #[test]
        fn csv_parts_find_what_one_reader_finds(
            lines in proptest::collection::vec(csv_line(), 0..120),
            final_feed in any::<bool>(),
            part_bytes in 1usize..200,
        ) {
            let mut text = lines.join("\n");
            if final_feed {
                text.push('\n');
            }
            let forbidden = Forbidden::new();
            let one = findings("pairs.csv", &forbidden, |c| {
                check_csv_rows(c, text.as_bytes(), 0, 0);
            });
            let parts = findings("pairs.csv", &forbidden, |c| {
                check_csv_in_parts(c, text.as_bytes(), part_bytes)
            });
            prop_assert_eq!(parts.kept, one.kept);
            prop_assert_eq!(parts.total, one.total);
        }
    }

    #[test]
    fn quoted_csv_is_read_by_one_reader() {
        // A quoted field with a line feed: one record, whatever the parts.
        let text = "title_a,title_b,score\n\"t0\nx9\",t1,0.5\nt0,x1,0.5\n";
        let forbidden = Forbidden::new();
        let out = findings("pairs.csv", &forbidden, |c| {
            check_csv_in_parts(c, text.as_bytes(), 1)
        });
        let places: Vec<&str> = out.kept.iter().map(|f| f.place.as_str()).collect();
        assert_eq!(places, ["row 2, column 1", "row 3, column 2"]);
    }
}
