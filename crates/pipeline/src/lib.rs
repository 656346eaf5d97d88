//! Typed pipeline configuration (TOML) shared by every stage.
//!
//! A pipeline file describes one library's job: where loans come from and how
//! their columns are named, where keys live, where sealed batches go, where
//! the store and the published output live, and the engine's parameters.
//! Every key is documented in `docs/configuration.md`. Relative paths are
//! resolved against the directory of the pipeline file, so a cron job does not
//! depend on its working directory.
//!
//! Architecture invariant: this crate holds settings only, never data, so any
//! stage may depend on it without widening the privacy boundary.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors from loading a pipeline file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The file could not be read.
    #[error("reading pipeline file {path}: {source}")]
    Read {
        /// The pipeline file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("pipeline file {path}: {message}")]
    Parse {
        /// The pipeline file.
        path: PathBuf,
        /// What is wrong, as TOML reports it (with line and column).
        message: String,
    },
    /// A value is out of its allowed range.
    #[error("pipeline file {path}: {message}")]
    Invalid {
        /// The pipeline file.
        path: PathBuf,
        /// Which key and why.
        message: String,
    },
}

/// The largest pipeline file [`Pipeline::load`] reads.
pub const MAX_PIPELINE_BYTES: u64 = 1 << 20;

/// A whole pipeline file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Pipeline {
    /// Who runs the pipeline and for what purpose (key derivation context).
    pub library: Library,
    /// Key files.
    pub keys: Keys,
    /// The circulation export to read.
    pub source: Source,
    /// Optional manifestation-to-work mapping.
    #[serde(default)]
    pub works: Option<Works>,
    /// Where sealed batches are handed over.
    pub transfer: Transfer,
    /// The data-mining store.
    pub store: StoreSettings,
    /// Co-occurrence engine parameters.
    #[serde(default)]
    pub engine: EngineSettings,
    /// Published output.
    pub export: Export,
}

/// The library and the purpose the pseudonyms serve.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Library {
    /// Stable identifier of the library (e.g. its ISIL); part of key derivation.
    pub id: String,
    /// Purpose of the pseudonyms; pipelines with different purposes cannot join
    /// their pseudonyms.
    #[serde(default = "default_purpose")]
    pub purpose: String,
}

fn default_purpose() -> String {
    "also-borrowed".to_owned()
}

/// Key files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Keys {
    /// Pseudonym master key: extractor host only, never copied to the mining side.
    pub pseudonym: PathBuf,
    /// Transfer key that seals batches: on the extractor and the mining side.
    pub transfer: PathBuf,
    /// Create missing key files (for the demo only; production keys are made
    /// once with `alsoborrowed key new`).
    #[serde(default)]
    pub create_if_missing: bool,
}

/// Input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Format {
    /// Comma-separated values (RFC 4180 quoting).
    Csv,
    /// Tab-separated values.
    Tsv,
    /// Semicolon-separated values, as spreadsheets in comma-decimal locales write them.
    Semicolon,
    /// An Apache Parquet file; the three columns are read by name.
    Parquet,
    /// Newline-delimited JSON: one object per line, fields named by dotted
    /// paths in `[source.columns]`.
    Ndjson,
    /// A PostgreSQL query (`[source]` `host`, `database`, `query`, ...).
    Postgres,
    /// A MariaDB or MySQL query (`[source]` `host`, `database`, `query`, ...).
    Mysql,
}

impl Format {
    /// Whether loans come from a database query rather than a file.
    pub fn is_database(self) -> bool {
        matches!(self, Format::Postgres | Format::Mysql)
    }
}

/// Character encoding of a text export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[non_exhaustive]
pub enum Encoding {
    /// UTF-8, with or without a byte order mark.
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// Windows code page 1252 (Western European), as older ILS exports use.
    #[serde(rename = "windows-1252")]
    Windows1252,
    /// ISO 8859-1 (Latin-1): every byte is the code point of the same value.
    #[serde(rename = "iso-8859-1")]
    Iso88591,
}

impl Encoding {
    /// The name used in the pipeline file.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
            Encoding::Iso88591 => "iso-8859-1",
        }
    }
}

/// The circulation export.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Source {
    /// The loans file; `--input` overrides it. Empty (unset) for a database.
    #[serde(default)]
    pub path: PathBuf,
    /// File format.
    #[serde(default = "default_format")]
    pub format: Format,
    /// Field separator, overriding the format's (one ASCII character).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Character encoding of a text export (Parquet strings are UTF-8).
    #[serde(default)]
    pub encoding: Encoding,
    /// IANA time zone whose calendar day a timestamp with a UTC offset (or a
    /// Parquet instant) counts on; by default the system's zone.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Column names in the file's header.
    #[serde(default)]
    pub columns: Columns,
    /// Maps the loans' title field (e.g. an item id) to the title.
    #[serde(default)]
    pub titles: Option<TitleMap>,
    /// How loan dates are written: `"iso"` (`YYYY-MM-DD`, optionally followed
    /// by a time) or a strftime pattern such as `"%d.%m.%Y"`.
    #[serde(default = "default_date_format")]
    pub date_format: String,
    /// Database server host name or address (database formats only).
    #[serde(default)]
    pub host: Option<String>,
    /// Database server port; the format's usual port when unset.
    #[serde(default)]
    pub port: Option<u16>,
    /// Database name.
    #[serde(default)]
    pub database: Option<String>,
    /// Database user (ideally one that may only read).
    #[serde(default)]
    pub user: Option<String>,
    /// Environment variable holding the database password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// Owner-only (0600) file holding the database password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The one read-only `SELECT` (or `WITH`) statement yielding the loans.
    #[serde(default)]
    pub query: Option<String>,
    /// Whether the database connection must use TLS.
    #[serde(default)]
    pub tls: Tls,
    /// PEM file of the CA(s) that signed the server's certificate; the
    /// Mozilla root set when unset.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
}

/// A file that maps the id in the loans' title field (an item or copy id)
/// to the title (bib record or instance id) that recommendations are about.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct TitleMap {
    /// The mapping file.
    pub path: PathBuf,
    /// Its format: `csv`, `tsv` or `ndjson`.
    #[serde(default = "default_format")]
    pub format: Format,
    /// Column (or NDJSON dotted path) of the id the loans name.
    #[serde(default = "default_from")]
    pub from: String,
    /// Column (or NDJSON dotted path) of the title it belongs to.
    #[serde(default = "default_title")]
    pub to: String,
}

fn default_from() -> String {
    "item_id".to_owned()
}

/// TLS requirement of a database connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Tls {
    /// Connect with TLS and verify the server's certificate and name.
    #[default]
    Require,
    /// Connect without TLS (a server on the same host or a private network).
    Disable,
}

fn default_format() -> Format {
    Format::Csv
}

fn default_date_format() -> String {
    "iso".to_owned()
}

/// Header names of the three columns the extractor reads; others are ignored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Columns {
    /// Column with the borrower id (card number or patron id).
    #[serde(default = "default_borrower")]
    pub borrower_id: String,
    /// Column with the title (manifestation or bib record) id.
    #[serde(default = "default_title")]
    pub title_id: String,
    /// Column with the loan date.
    #[serde(default = "default_date")]
    pub loan_date: String,
}

fn default_borrower() -> String {
    "borrower_id".to_owned()
}
fn default_title() -> String {
    "title_id".to_owned()
}
fn default_date() -> String {
    "loan_date".to_owned()
}

impl Default for Columns {
    fn default() -> Self {
        Columns {
            borrower_id: default_borrower(),
            title_id: default_title(),
            loan_date: default_date(),
        }
    }
}

/// A manifestation-to-work mapping file (CSV with a header).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Works {
    /// The mapping file; empty (unset) when `query` is given.
    #[serde(default)]
    pub path: PathBuf,
    /// A read-only query of the source database yielding `title_column`,
    /// `work_column` pairs, instead of a file (database sources only).
    #[serde(default)]
    pub query: Option<String>,
    /// Column with the title id, as in the loans file.
    #[serde(default = "default_title")]
    pub title_column: String,
    /// Column with the work id.
    #[serde(default = "default_work")]
    pub work_column: String,
}

fn default_work() -> String {
    "work_id".to_owned()
}

/// Hand-over of sealed batches from the extractor to the mining side.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Transfer {
    /// Directory the extractor writes sealed batches to.
    pub outbox: PathBuf,
    /// Directory `ingest` reads sealed batches from (defaults to `outbox`,
    /// for a single host or a shared mount).
    #[serde(default)]
    pub inbox: Option<PathBuf>,
    /// Days after a batch is ingested by which the circulation system must
    /// have deleted the borrower-loan links it transferred (Danish guidance:
    /// four weeks).
    #[serde(default = "default_delete_links_after_days")]
    pub delete_links_after_days: u32,
}

fn default_delete_links_after_days() -> u32 {
    28
}

impl Transfer {
    /// The directory `ingest` reads.
    pub fn inbox(&self) -> &Path {
        self.inbox.as_deref().unwrap_or(&self.outbox)
    }
}

/// The data-mining store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreSettings {
    /// Store directory (created owner-only).
    pub path: PathBuf,
    /// Months of loans kept; older months are deleted at ingest.
    #[serde(default = "default_retention")]
    pub retention_months: u32,
}

fn default_retention() -> u32 {
    60
}

/// Association measure used to rank related titles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Measure {
    /// Dunning's log-likelihood ratio, as Apache Mahout computes it.
    Llr,
    /// Borrowers of both over borrowers of either.
    Jaccard,
    /// Borrowers of both over the geometric mean of each title's borrowers.
    Cosine,
    /// Observed over expected co-borrowing.
    Lift,
    /// Number of distinct borrowers of both.
    Count,
}

impl Measure {
    /// The name used in the pipeline file and the feed.
    pub fn name(self) -> &'static str {
        match self {
            Measure::Llr => "llr",
            Measure::Jaccard => "jaccard",
            Measure::Cosine => "cosine",
            Measure::Lift => "lift",
            Measure::Count => "count",
        }
    }
}

/// Co-occurrence engine parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct EngineSettings {
    /// Complete calendar months scored, ending with the last complete month.
    #[serde(default = "default_window")]
    pub window_months: u32,
    /// Last month of the window (`"YYYY-MM"`); by default the last complete
    /// calendar month before today. Fixed in the demo so it stays reproducible.
    #[serde(default)]
    pub window_end: Option<loans::LoanMonth>,
    /// Association measure.
    #[serde(default = "default_measure")]
    pub measure: Measure,
    /// Minimum distinct borrowers for a pair to be published (k, at least 2).
    #[serde(default = "default_min_support")]
    pub min_support: u32,
    /// Most titles one borrower contributes per window: their most recent ones.
    #[serde(default = "default_cap")]
    pub max_titles_per_borrower: u32,
    /// Time decay gamma: a borrower's co-borrowing of two titles weighs
    /// `gamma^(months between the two loans)`; 1 turns the decay off.
    #[serde(default = "default_time_decay")]
    pub time_decay: f64,
    /// Most related titles published per title (N).
    #[serde(default = "default_max_related")]
    pub max_related: u32,
}

fn default_window() -> u32 {
    12
}
fn default_measure() -> Measure {
    Measure::Jaccard
}
fn default_min_support() -> u32 {
    5
}
fn default_cap() -> u32 {
    2000
}
fn default_time_decay() -> f64 {
    0.1
}
fn default_max_related() -> u32 {
    20
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            window_months: default_window(),
            window_end: None,
            measure: default_measure(),
            min_support: default_min_support(),
            max_titles_per_borrower: default_cap(),
            time_decay: default_time_decay(),
            max_related: default_max_related(),
        }
    }
}

/// Published output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Export {
    /// Output directory; the live release is `<path>/current`.
    pub path: PathBuf,
    /// How the feed's titles are laid out in files.
    #[serde(default)]
    pub feed_layout: FeedLayout,
}

/// Layout of the published feed (`docs/feed.md`).
// Exhaustive on purpose: a new layout must not compile until the exporter
// writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeedLayout {
    /// One file per title, `feed/titles/<stem>.json`: a request names the
    /// title a visitor looks at, and a national feed is 10^5 files or more.
    Titles,
    /// Titles grouped by a hash of their id into `feed/shards/<name>.json`,
    /// about 30 titles per file: a request names a shard, not a title, and a
    /// national feed of 10^5 to 10^6 titles is thousands of files, not
    /// hundreds of thousands. The default.
    #[default]
    Shards,
}

impl FeedLayout {
    /// The name used in the pipeline file.
    pub fn name(self) -> &'static str {
        match self {
            FeedLayout::Titles => "titles",
            FeedLayout::Shards => "shards",
        }
    }
}

impl std::fmt::Display for FeedLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Longest retention accepted (100 years): keeps month arithmetic in range.
pub const MAX_RETENTION_MONTHS: u32 = 1200;

/// Smallest k the software accepts: a pair seen by one borrower singles them out.
pub const MIN_SUPPORT_FLOOR: u32 = 2;

impl Pipeline {
    /// Reads, parses, validates and resolves relative paths of a pipeline file.
    pub fn load(path: &Path) -> Result<Pipeline, PipelineError> {
        use std::io::Read as _;
        let read_err = |source| PipelineError::Read {
            path: path.to_owned(),
            source,
        };
        // Bounded: a path naming /dev/zero or a huge file by mistake must not
        // exhaust memory.
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PIPELINE_BYTES + 1).read_to_end(&mut bytes))
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_PIPELINE_BYTES {
            return Err(PipelineError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "the file is larger than {} KiB; a pipeline file is a few kilobytes of TOML (is the path right?)",
                    MAX_PIPELINE_BYTES / 1024
                ),
            });
        }
        let text = String::from_utf8(bytes).map_err(|_| PipelineError::Invalid {
            path: path.to_owned(),
            message: "the file is not UTF-8 text".to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Pipeline::parse(&text, path, base)
    }

    /// Parses pipeline text; `origin` names it in errors and relative paths are
    /// resolved against `base`.
    pub fn parse(text: &str, origin: &Path, base: &Path) -> Result<Pipeline, PipelineError> {
        let mut p: Pipeline = toml::from_str(text).map_err(|e| PipelineError::Parse {
            path: origin.to_owned(),
            message: parse_message(text, &e),
        })?;
        p.validate(origin)?;
        p.resolve(base);
        Ok(p)
    }

    fn validate(&self, origin: &Path) -> Result<(), PipelineError> {
        let invalid = |message: String| PipelineError::Invalid {
            path: origin.to_owned(),
            message,
        };
        self.validate_source_kind().map_err(invalid)?;
        if self.library.id.trim().is_empty() {
            return Err(invalid("library.id must not be empty".into()));
        }
        if self.library.purpose.trim().is_empty() {
            return Err(invalid("library.purpose must not be empty".into()));
        }
        if let Some(d) = self.source.delimiter
            && (!d.is_ascii() || d == '"' || d == '\n' || d == '\r')
        {
            return Err(invalid(format!(
                "source.delimiter must be one ASCII character other than a quote or newline, got {d:?}"
            )));
        }
        if self.source.format == Format::Parquet && self.source.encoding != Encoding::Utf8 {
            return Err(invalid(format!(
                "source.encoding {} does not apply to parquet, whose strings are utf-8",
                self.source.encoding.name()
            )));
        }
        if let Some(tz) = &self.source.time_zone
            && jiff::tz::TimeZone::get(tz).is_err()
        {
            return Err(invalid(format!(
                "source.time_zone {tz:?} is not an IANA time zone name such as \"Europe/Copenhagen\""
            )));
        }
        if self.transfer.delete_links_after_days > 366 {
            return Err(invalid(format!(
                "transfer.delete_links_after_days must be at most 366, got {}",
                self.transfer.delete_links_after_days
            )));
        }
        let c = &self.source.columns;
        if c.borrower_id == c.title_id || c.borrower_id == c.loan_date || c.title_id == c.loan_date
        {
            return Err(invalid(
                "source.columns must name three different columns (borrower_id, title_id, loan_date)"
                    .into(),
            ));
        }
        let e = &self.engine;
        if e.min_support < MIN_SUPPORT_FLOOR {
            return Err(invalid(format!(
                "engine.min_support must be at least {MIN_SUPPORT_FLOOR}, got {}",
                e.min_support
            )));
        }
        if e.window_months == 0 || e.window_months > 120 {
            return Err(invalid(format!(
                "engine.window_months must be between 1 and 120, got {}",
                e.window_months
            )));
        }
        if e.max_titles_per_borrower < 2 {
            return Err(invalid(format!(
                "engine.max_titles_per_borrower must be at least 2, got {}",
                e.max_titles_per_borrower
            )));
        }
        if !(e.time_decay > 0.0 && e.time_decay <= 1.0) {
            return Err(invalid(
                "engine.time_decay must be greater than 0 and at most 1".into(),
            ));
        }
        if e.max_related == 0 {
            return Err(invalid("engine.max_related must be at least 1".into()));
        }
        if self.store.retention_months == 0 {
            return Err(invalid("store.retention_months must be at least 1".into()));
        }
        if self.store.retention_months > MAX_RETENTION_MONTHS {
            return Err(invalid(format!(
                "store.retention_months must be at most {MAX_RETENTION_MONTHS}, got {}",
                self.store.retention_months
            )));
        }
        // Retention counts the current month, the window ends with the last
        // complete one: a window as long as the retention would start in a
        // month already deleted.
        if e.window_months >= self.store.retention_months {
            return Err(invalid(format!(
                "engine.window_months ({}) must be less than store.retention_months ({})",
                e.window_months, self.store.retention_months
            )));
        }
        Ok(())
    }

    fn resolve(&mut self, base: &Path) {
        let join = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        join(&mut self.keys.pseudonym);
        join(&mut self.keys.transfer);
        let join_set = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() {
                join(p);
            }
        };
        join_set(&mut self.source.path);
        if let Some(f) = &mut self.source.password_file {
            join(f);
        }
        if let Some(f) = &mut self.source.tls_ca_file {
            join(f);
        }
        if let Some(t) = &mut self.source.titles {
            join(&mut t.path);
        }
        if let Some(w) = &mut self.works {
            join_set(&mut w.path);
        }
        join(&mut self.transfer.outbox);
        if let Some(i) = &mut self.transfer.inbox {
            join(i);
        }
        join(&mut self.store.path);
        join(&mut self.export.path);
    }

    /// The field separator of the source file.
    pub fn delimiter(&self) -> u8 {
        self.source.delimiter()
    }
}

impl Source {
    /// The field separator: the override if set, else the format's.
    pub fn delimiter(&self) -> u8 {
        match (self.delimiter, self.format) {
            (Some(d), _) => d as u8,
            (None, Format::Tsv) => b'\t',
            (None, Format::Semicolon) => b';',
            (None, _) => b',',
        }
    }

    /// The time zone loan days are counted in: `time_zone` if set, else
    /// the system's (UTC when it cannot be determined).
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        self.time_zone
            .as_deref()
            .and_then(|name| jiff::tz::TimeZone::get(name).ok())
            .unwrap_or_else(jiff::tz::TimeZone::system)
    }
}

/// The message of a TOML error with its line and column but without the
/// text of the offending line, which `toml`'s `Display` quotes: a password
/// pasted into the wrong key must not end up in a log.
fn parse_message(text: &str, e: &toml::de::Error) -> String {
    let message = redact_values(&e.message().trim_end().replace('\n', " "));
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}

/// Where `quote` closes a quoted text, skipping backslash escapes (serde
/// quotes strings in their `Debug` form).
fn closing(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quote == '"' => escaped = true,
            c if c == quote => return Some(i),
            _ => {}
        }
    }
    None
}

/// Replaces the values that serde quotes in its messages (`string "..."`,
/// ``unknown variant `...` ``, ``integer `...` ``) by `...`, keeping the key
/// and type names that say what is wrong.
fn redact_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(['"', '`']) {
        let (before, from) = rest.split_at(i);
        out.push_str(before);
        let quote = if from.starts_with('"') { '"' } else { '`' };
        let Some(end) = closing(&from[1..], quote) else {
            // An unclosed quote: drop the rest rather than risk showing it.
            out.push_str("...");
            return out;
        };
        let quoted = &from[..end + 2];
        let names_a_value = quote == '"'
            || ["variant ", "integer ", "float ", "char ", "boolean "]
                .iter()
                .any(|k| out.ends_with(k));
        out.push_str(if names_a_value { "..." } else { quoted });
        rest = &from[end + 2..];
    }
    out.push_str(rest);
    out
}

impl Pipeline {
    /// Checks that the keys of `[source]` and `[works]` fit the source's
    /// format: a path for files, connection settings and a query for
    /// databases, never both.
    fn validate_source_kind(&self) -> Result<(), String> {
        let s = &self.source;
        let db_keys = [
            ("host", s.host.is_some()),
            ("port", s.port.is_some()),
            ("database", s.database.is_some()),
            ("user", s.user.is_some()),
            ("password_env", s.password_env.is_some()),
            ("password_file", s.password_file.is_some()),
            ("query", s.query.is_some()),
            ("tls_ca_file", s.tls_ca_file.is_some()),
        ];
        if s.format.is_database() {
            if !s.path.as_os_str().is_empty() {
                return Err("source.path is for files; a database source has a query".into());
            }
            for (key, set) in [
                ("host", s.host.is_some()),
                ("database", s.database.is_some()),
                ("user", s.user.is_some()),
                ("query", s.query.is_some()),
            ] {
                if !set {
                    return Err(format!("source.{key} is required for a database source"));
                }
            }
            if s.password_env.is_some() && s.password_file.is_some() {
                return Err("give source.password_env or source.password_file, not both".into());
            }
            if s.delimiter.is_some() {
                return Err("source.delimiter is for files".into());
            }
            if s.tls == Tls::Disable && s.tls_ca_file.is_some() {
                return Err("source.tls_ca_file has no use with tls = \"disable\"".into());
            }
        } else {
            if s.path.as_os_str().is_empty() {
                return Err("source.path is required for a file source".into());
            }
            if let Some((key, _)) = db_keys.iter().find(|(_, set)| *set) {
                return Err(format!("source.{key} is for database sources only"));
            }
        }
        if let Some(t) = &s.titles
            && (t.format.is_database() || t.from == t.to)
        {
            return Err(
                "source.titles must be a csv, tsv or ndjson file with two different fields".into(),
            );
        }
        if let Some(w) = &self.works {
            match (w.path.as_os_str().is_empty(), &w.query) {
                (true, None) => return Err("works needs a path or a query".into()),
                (false, Some(_)) => return Err("works takes a path or a query, not both".into()),
                (true, Some(_)) if !s.format.is_database() => {
                    return Err("works.query needs a database source".into());
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        [library]
        id = "DK-710100"
        [keys]
        pseudonym = "keys/p.key"
        transfer = "/etc/alsoborrowed/t.key"
        [source]
        path = "loans.csv"
        [transfer]
        outbox = "outbox"
        [store]
        path = "store"
        [export]
        path = "out"
    "#;

    fn parse(text: &str) -> Result<Pipeline, PipelineError> {
        Pipeline::parse(text, Path::new("test.toml"), Path::new("/srv/ab"))
    }

    #[test]
    fn minimal_file_gets_defaults_and_resolved_paths() {
        let p = parse(MINIMAL).unwrap();
        assert_eq!(p.library.purpose, "also-borrowed");
        assert_eq!(p.keys.pseudonym, Path::new("/srv/ab/keys/p.key"));
        assert_eq!(p.keys.transfer, Path::new("/etc/alsoborrowed/t.key"));
        assert_eq!(p.transfer.inbox(), Path::new("/srv/ab/outbox"));
        assert_eq!(p.engine.min_support, 5);
        assert_eq!(p.engine.measure, Measure::Jaccard);
        assert_eq!(p.store.retention_months, 60);
        assert_eq!(p.source.columns.loan_date, "loan_date");
        assert_eq!(p.delimiter(), b',');
    }

    #[test]
    fn unknown_keys_are_rejected_with_location() {
        let err = parse(&format!("{MINIMAL}\n[engine]\nmin_suport = 3\n")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("min_suport"), "{msg}");
    }

    #[test]
    fn time_decay_outside_zero_to_one_is_refused() {
        assert_eq!(parse(MINIMAL).unwrap().engine.time_decay, 0.1);
        let ok = parse(&format!("{MINIMAL}\n[engine]\ntime_decay = 1.0\n")).unwrap();
        assert_eq!(ok.engine.time_decay, 1.0);
        for bad in ["0.0", "-0.1", "1.5", "nan", "inf"] {
            let err = parse(&format!("{MINIMAL}\n[engine]\ntime_decay = {bad}\n")).unwrap_err();
            assert!(err.to_string().contains("time_decay"), "{bad}: {err}");
        }
    }

    #[test]
    fn k_below_two_is_refused() {
        let err = parse(&format!("{MINIMAL}\n[engine]\nmin_support = 1\n")).unwrap_err();
        assert!(err.to_string().contains("at least 2"), "{err}");
    }

    #[test]
    fn the_window_must_be_shorter_than_the_retention() {
        let text = format!("{MINIMAL}\n[engine]\nwindow_months = 12\n");
        let text = text.replace(
            "path = \"store\"",
            "path = \"store\"\nretention_months = 12",
        );
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("must be less than"), "{err}");
        assert!(parse(&text.replace("retention_months = 12", "retention_months = 13")).is_ok());
        let err =
            parse(&text.replace("retention_months = 12", "retention_months = 99999")).unwrap_err();
        assert!(err.to_string().contains("at most 1200"), "{err}");
    }

    #[test]
    fn the_borrower_column_cannot_double_as_the_title_column() {
        let text = format!("{MINIMAL}\n[source.columns]\ntitle_id = \"borrower_id\"\n");
        let text = text.replace(
            "[source]\n        path = \"loans.csv\"",
            "[source]\npath = \"loans.csv\"",
        );
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("three different columns"), "{err}");
    }

    #[test]
    fn semicolon_encoding_and_time_zone_are_read_and_checked() {
        let with = |extra: &str| {
            parse(&MINIMAL.replace(
                "path = \"loans.csv\"",
                &format!("path = \"l.csv\"\n{extra}"),
            ))
        };
        let p = with("format = \"semicolon\"\nencoding = \"windows-1252\"\ntime_zone = \"Europe/Copenhagen\"").unwrap();
        assert_eq!(p.delimiter(), b';');
        assert_eq!(p.source.encoding, Encoding::Windows1252);
        assert_eq!(p.source.time_zone().iana_name(), Some("Europe/Copenhagen"));
        assert_eq!(p.transfer.delete_links_after_days, 28);
        assert_eq!(
            with("encoding = \"iso-8859-1\"").unwrap().source.encoding,
            Encoding::Iso88591
        );
        assert!(with("encoding = \"latin9\"").is_err());
        let err = with("time_zone = \"Europe/Nowhere\"").unwrap_err();
        assert!(err.to_string().contains("IANA"), "{err}");
        let err = with("format = \"parquet\"\nencoding = \"iso-8859-1\"").unwrap_err();
        assert!(err.to_string().contains("parquet"), "{err}");
    }

    #[test]
    fn tsv_uses_tab() {
        let p =
            parse(&MINIMAL.replace("path = \"loans.csv\"", "path = \"l.tsv\"\nformat = \"tsv\""))
                .unwrap();
        assert_eq!(p.delimiter(), b'\t');
    }

    const DATABASE: &str = r#"
        [library]
        id = "DK-710100"
        [keys]
        pseudonym = "p.key"
        transfer = "t.key"
        [source]
        format = "postgres"
        host = "db.example"
        database = "evergreen"
        user = "alsoborrowed_ro"
        password_file = "db.password"
        query = "SELECT 1"
        [transfer]
        outbox = "outbox"
        [store]
        path = "store"
        [export]
        path = "out"
    "#;

    #[test]
    fn database_source_needs_no_path_and_resolves_its_files() {
        let p = parse(DATABASE).unwrap();
        assert!(p.source.format.is_database());
        assert_eq!(p.source.tls, Tls::Require);
        assert_eq!(p.source.path, Path::new(""));
        assert_eq!(
            p.source.password_file.as_deref(),
            Some(Path::new("/srv/ab/db.password"))
        );
    }

    #[test]
    fn source_keys_must_fit_the_format() {
        let check = |text: &str, want: &str| {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        };
        check(
            &DATABASE.replace("query = \"SELECT 1\"", ""),
            "source.query is required",
        );
        check(
            &DATABASE.replace("format = \"postgres\"", "path = \"l.csv\""),
            "source.host is for database sources only",
        );
        check(
            &DATABASE.replace("format = \"postgres\"", "format = \"mysql\"\npath = \"x\""),
            "source.path is for files",
        );
        check(
            &DATABASE.replace("password_file", "password_env = \"P\"\npassword_file"),
            "not both",
        );
        check(
            &MINIMAL.replace("[transfer]", "[works]\nquery = \"SELECT 1\"\n[transfer]"),
            "works.query needs a database source",
        );
        check(
            &MINIMAL.replace("path = \"loans.csv\"", ""),
            "source.path is required",
        );
        check(
            &MINIMAL.replace(
                "[transfer]",
                "[source.titles]\npath = \"m.csv\"\nfrom = \"a\"\nto = \"a\"\n[transfer]",
            ),
            "two different fields",
        );
        let works = DATABASE.replace("[transfer]", "[works]\nquery = \"SELECT 2\"\n[transfer]");
        assert_eq!(
            parse(&works).unwrap().works.unwrap().query.as_deref(),
            Some("SELECT 2")
        );
    }

    #[test]
    fn parse_errors_give_the_place_but_not_the_text_of_the_line() {
        let text = DATABASE.replace(
            "user = \"alsoborrowed_ro\"",
            "user = \"alsoborrowed_ro\"\npassword = \"hunter2-secret\"",
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("line 12"), "{err}");
        assert!(err.contains("password"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        for (value, want) in [
            ("\"s3cr3t-value\"", "expected u16"),
            ("1234567890", "expected u16"),
            ("'s3cr3t\"quote'", "expected u16"),
        ] {
            let text = DATABASE.replace("user = ", &format!("port = {value}\nuser = "));
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                !err.contains("s3cr3t") && !err.contains("1234567890"),
                "{err}"
            );
            assert!(err.contains("line 11") && err.contains(want), "{err}");
        }
        let text = DATABASE.replace("format = \"postgres\"", "format = \"s3cr3t\"");
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            !err.contains("s3cr3t") && err.contains("`postgres`"),
            "{err}"
        );
        assert_eq!(
            redact_values("unknown field `pasword`, expected `x`; got \"a\" and \"b"),
            "unknown field `pasword`, expected `x`; got ... and ..."
        );
    }
}
