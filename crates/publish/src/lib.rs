//! Identifier-free exports (Parquet, CSV, JSON feed), the privacy check and
//! atomic publishing.
//!
//! [`export`] turns the engine's [`Related`] into a release directory
//! `<out>/releases/<content-hash>/`:
//!
//! - `feed/`: the public feed read by [`alsoborrowed_feed`] (schema_version
//!   3): `index.json` and either `shards/<shard_name>.json` (layout
//!   `shards`, the default) or `titles/<file_stem>.json` (layout `titles`).
//!   Lists carry title ids in rank order and nothing else: no score, count,
//!   window or threshold from which a support count could be recomputed.
//!   Files 0644, directories 0755: a web server serves it.
//! - `pairs.parquet`, `pairs.csv` (all pairs with their scores) and
//!   `release.json` (window, measure, thresholds, counts): for `verify` and
//!   the library's own analysis, owner-only (0600), never served.
//!
//! Before anything is written, the encoded release is checked in memory
//! (every pair's support is at least k, at most `max_related` pairs per
//! title, and every file and value is either part of the format or a title
//! of the input, with no pseudonym or key byte anywhere: `check`) and
//! refused on failure. Then the symlink `<out>/current` is switched
//! atomically to the new release. `<out>/feed` is a fixed symlink to
//! `current/feed`: the one directory to serve, which holds the live feed
//! alone. The live release directory is 0711 (traversable, not listable);
//! the previous release is kept for a rollback at 0700 and older ones are
//! deleted. [`verify`] audits the live release independently of the engine.
//!
//! Architecture invariant: nothing here writes a borrower id, pseudonym or
//! key byte anywhere, and errors carry counts, file names, field paths and
//! row numbers, never a value.

#[cfg(not(unix))]
compile_error!("publish needs a Unix file system (symlinks, atomic rename over a symlink)");

mod check;
mod files;
mod forbidden;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use alsoborrowed_feed::{
    CURRENT_LINK, FEED_DIR, Feed, FeedError, FeedIndex, INDEX_FILE, Layout, SCHEMA_VERSION,
    SHARDS_DIR, TITLES_DIR, file_stem, next_month, shard_bits_for, shard_name, shard_of,
};
use engine::Related;
use loans::{LoanMonth, Loans, Pseudonym};
use pipeline::{FeedLayout, MIN_SUPPORT_FLOOR, Measure};
use rayon::prelude::*;

pub use check::{Finding, MANIFEST_FORMAT, ReleaseManifest};
pub use forbidden::{FindingKind, Forbidden};

use check::{Expected, FileFindings};
use files::{ContentHash, Row};

/// Directory of releases inside the output directory.
pub const RELEASES_DIR: &str = "releases";
/// File name of the Parquet export inside a release (owner-only).
pub const PAIRS_PARQUET: &str = "pairs.parquet";
/// File name of the CSV export inside a release (owner-only).
pub const PAIRS_CSV: &str = "pairs.csv";
/// File name of a release's private manifest (owner-only).
pub const RELEASE_MANIFEST: &str = "release.json";
/// The served link inside the output directory: `feed -> current/feed`.
pub const SERVED_LINK: &str = FEED_DIR;

const STAGING_PREFIX: &str = ".staging-";
/// Feed files: read by a web server running as another user.
const FILE_MODE: u32 = 0o644;
/// Feed directories.
const DIR_MODE: u32 = 0o755;
/// The pair files and the manifest: the library's own.
const PRIVATE_FILE_MODE: u32 = 0o600;
/// The live release and `releases/`: a web server may pass through to the
/// feed but cannot list them.
const TRAVERSE_MODE: u32 = 0o711;
/// A release kept for a rollback, and a staging directory.
const PRIVATE_DIR_MODE: u32 = 0o700;

/// How an export was made: the window and the engine's parameters. Kept in
/// the private `release.json`; the public index holds only the layout, the
/// list length and the month.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportMeta {
    /// First month of the scoring window.
    pub window_first: LoanMonth,
    /// Last month of the scoring window.
    pub window_last: LoanMonth,
    /// Association measure the scores come from.
    pub measure: Measure,
    /// Minimum distinct borrowers per published pair (k).
    pub min_support: u32,
    /// Most titles one borrower contributed.
    pub max_titles_per_borrower: u32,
    /// Weight of co-borrowing per month between two loans (1 = none).
    pub time_decay: f64,
    /// Most related titles per title (N).
    pub max_related: u32,
    /// One file per title, or titles grouped into shard files.
    pub layout: FeedLayout,
}

/// What [`export`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ExportOutcome {
    /// A new release was built, checked and made `current`.
    Published {
        /// The release directory.
        release: PathBuf,
        /// Titles with related titles in the feed.
        titles: u64,
        /// Published directed pairs.
        pairs: u64,
        /// Borrower ids that are also title ids of the input (published as
        /// titles only, which is no leak; see [`Forbidden::identifiers_among`]).
        ids_as_titles: u64,
    },
    /// `current` already is a release with exactly these bytes; nothing
    /// changed (or, with `repaired`, its files had been changed on disk and
    /// were written again).
    Unchanged {
        /// The release directory.
        release: PathBuf,
        /// Borrower ids that are also title ids of the input.
        ids_as_titles: u64,
    },
    /// `current` named a release with these bytes, but its files on disk
    /// differed (changed, missing or added after publication); the release
    /// was written again from the checked bytes.
    Repaired {
        /// The release directory.
        release: PathBuf,
        /// Borrower ids that are also title ids of the input.
        ids_as_titles: u64,
    },
}

/// Result of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Distinct directed pairs whose support was recounted.
    pub pairs_checked: u64,
    /// Smallest recounted support (0 when no pair is published).
    pub min_support_seen: u32,
    /// Files of the release that were checked.
    pub files_scanned: u64,
}

/// The findings of a failed check: how many, in how many files, and the
/// first few (file, kind, place; never a value).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Findings {
    /// Findings in all files.
    pub total: u64,
    /// Files with at least one finding.
    pub files: u64,
    /// The first findings, in path order.
    pub first: Vec<Finding>,
}

impl Findings {
    const KEPT: usize = 20;

    fn add(&mut self, f: FileFindings) {
        if f.total == 0 {
            return;
        }
        self.total += f.total;
        self.files += 1;
        let room = Self::KEPT.saturating_sub(self.first.len());
        self.first.extend(f.kept.into_iter().take(room));
    }

    /// One line naming the first finding and what to do about it.
    pub fn summary(&self) -> String {
        match self.first.first() {
            None => "no forbidden or unexpected values".into(),
            Some(f) => {
                let more = match self.total - 1 {
                    0 => String::new(),
                    n => format!(" (and {n} more in {} file(s))", self.files),
                };
                format!("{f}{more}; fix: {}", f.kind.fix())
            }
        }
    }
}

/// Errors from exporting and verifying; they carry counts, paths, field
/// paths and row numbers, never a title, identifier, pseudonym or key value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A release file could not be decoded.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why, as the decoder reports it.
        reason: String,
    },
    /// A release file could not be encoded.
    #[error("encoding {file}: {reason}")]
    Encode {
        /// Which file of the release.
        file: &'static str,
        /// Why, as the encoder reports it.
        reason: String,
    },
    /// The feed of a release could not be opened.
    #[error(transparent)]
    Feed(#[from] FeedError),
    /// The engine's output or the parameters are unusable.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What is wrong (indices and counts only).
        reason: String,
    },
    /// The release failed the privacy check and was not published.
    #[error(
        "refusing to publish: {}",
        refusal(*below_support, *over_max_related, findings)
    )]
    CheckFailed {
        /// Pairs whose support is below k.
        below_support: u64,
        /// Titles with more than `max_related` related titles.
        over_max_related: u64,
        /// What the value check found.
        findings: Findings,
    },
    /// There is no live release to verify.
    #[error("{path}: nothing published yet (no current release)")]
    NoRelease {
        /// The expected `current` link.
        path: PathBuf,
    },
    /// The live release was made by a version without `release.json`.
    #[error(
        "{path}: the live release was made by an older version of alsoborrowed (no \
         {RELEASE_MANIFEST}); run export once to publish it in the current format"
    )]
    OldRelease {
        /// The release directory.
        path: PathBuf,
    },
    /// The live release failed the audit.
    #[error(
        "verification failed: {below_support} pairs below min support, {inconsistencies} \
         disagreements between pairs.parquet, pairs.csv and the feed, content hash {}; {}",
        if *content_hash_ok { "matches" } else { "does not match" },
        findings.summary()
    )]
    VerifyFailed {
        /// Pairs whose recounted support is below k.
        below_support: u64,
        /// Rows or titles on which the release's files disagree.
        inconsistencies: u64,
        /// What the value check found.
        findings: Findings,
        /// Whether the files still hash to the release's name.
        content_hash_ok: bool,
    },
}

fn refusal(below_support: u64, over_max_related: u64, findings: &Findings) -> String {
    let mut parts = Vec::new();
    if below_support > 0 {
        parts.push(format!(
            "{below_support} pairs below min_support (a bug in the engine; nothing was published)"
        ));
    }
    if over_max_related > 0 {
        parts.push(format!(
            "{over_max_related} titles over max_related (a bug in the engine; nothing was published)"
        ));
    }
    if findings.total > 0 {
        parts.push(findings.summary());
    }
    parts.join("; ")
}

impl PublishError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        PublishError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn unreadable(path: &Path, e: impl std::fmt::Display) -> Self {
        PublishError::Unreadable {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    fn invalid(reason: impl Into<String>) -> Self {
        PublishError::InvalidInput {
            reason: reason.into(),
        }
    }
}

/// The public index of a release made with `manifest`.
fn feed_index(manifest: &ReleaseManifest) -> FeedIndex {
    FeedIndex {
        schema_version: SCHEMA_VERSION,
        layout: manifest.layout,
        shard_bits: manifest.shard_bits,
        max_related: manifest.max_related,
        updated: next_month(&manifest.window_last).unwrap_or_default(),
    }
}

/// Builds, checks and atomically publishes a release under
/// `<out>/releases/<content-hash>/`, then points `<out>/current` at it and
/// makes sure `<out>/feed` links to `current/feed`.
///
/// The privacy check runs on the encoded files in memory, before anything
/// is written: on a failure nothing is created or changed on disk and
/// [`PublishError::CheckFailed`] names the first findings (file, kind,
/// place). Rebuilding the same input gives byte-identical files, and when
/// `current` already holds them the result is [`ExportOutcome::Unchanged`]
/// without any write, unless the files on disk were changed, which
/// [`ExportOutcome::Repaired`] writes again. `out` and `out/releases` are
/// created if missing. One export per output directory at a time (the
/// caller holds a lock): staging directories of crashed runs are removed
/// first.
pub fn export(
    related: &Related,
    meta: &ExportMeta,
    out: &Path,
    forbidden: &Forbidden,
) -> Result<ExportOutcome, PublishError> {
    validate(related, meta)?;
    let titles = &related.title_ids;
    let rows: Vec<Row<'_>> = related
        .pairs
        .par_iter()
        .map(|p| Row {
            title_a: Cow::Borrowed(&titles[p.a as usize]),
            title_b: Cow::Borrowed(&titles[p.b as usize]),
            score: p.score,
        })
        .collect();

    // Group by `a` keeping each list in the engine's rank order.
    let by_title = rows_by_title(&rows);
    let groups = groups(&by_title);
    let title_count = groups.len() as u64;
    let layout = match meta.layout {
        FeedLayout::Titles => Layout::Titles,
        FeedLayout::Shards => Layout::Shards,
    };
    let shard_bits = (layout == Layout::Shards).then(|| shard_bits_for(title_count));
    let manifest = ReleaseManifest {
        format: MANIFEST_FORMAT,
        window_first: meta.window_first.to_string(),
        window_last: meta.window_last.to_string(),
        measure: meta.measure.name().to_owned(),
        min_support: meta.min_support,
        max_titles_per_borrower: meta.max_titles_per_borrower,
        time_decay: meta.time_decay,
        max_related: meta.max_related,
        layout,
        shard_bits,
        titles: title_count,
        pairs: rows.len() as u64,
    };
    let index = feed_index(&manifest);
    // The three encodings are independent; the Parquet and CSV writers are
    // one thread each, so they run beside the feed's parallel encoding.
    let ((feed, parquet), csv) = rayon::join(
        || {
            rayon::join(
                || match shard_bits {
                    None => title_files(&groups),
                    Some(bits) => shard_files(&groups, bits),
                },
                || files::parquet_bytes(&rows),
            )
        },
        || files::csv_bytes(&rows),
    );
    let mut contents = feed?;
    contents.push((format!("{FEED_DIR}/{INDEX_FILE}"), json_bytes(&index)?));
    contents.push((RELEASE_MANIFEST.to_owned(), json_bytes(&manifest)?));
    contents.push((PAIRS_PARQUET.to_owned(), parquet?));
    contents.push((PAIRS_CSV.to_owned(), csv?));
    contents.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    // The whole check runs on the exact bytes about to be written, so a
    // refused release never touches the disk, not even as a staging copy.
    // The content hash (one thread) is computed beside it.
    let input_titles: hashbrown::HashSet<&str> = titles.iter().map(String::as_str).collect();
    let expected = Expected {
        titles: &input_titles,
        manifest: &manifest,
        index: &index,
    };
    let (hash, checked) = rayon::join(
        || {
            let mut hash = ContentHash::new();
            for (path, bytes) in &contents {
                hash.add(path, bytes);
            }
            hash.finish()
        },
        || check(&contents, related, meta, &expected, forbidden),
    );
    checked?;
    let ids_as_titles = forbidden.identifiers_among(related.title_ids.iter().map(String::as_str));

    let releases = out.join(RELEASES_DIR);
    let release = releases.join(&hash);
    let current = out.join(CURRENT_LINK);
    let previous = current_release_name(&current)?;
    create_dir_with_mode(out, TRAVERSE_MODE)?;
    create_dir_with_mode(&releases, TRAVERSE_MODE)?;
    remove_staging(&releases)?;
    let live = previous.as_deref() == Some(hash.as_str());
    if live && release_matches(&release, &contents)? {
        // Same bytes as the live release: a cron run on an unmoved window
        // costs no writes but the served link, if it went missing.
        link_served(out)?;
        return Ok(ExportOutcome::Unchanged {
            release,
            ids_as_titles,
        });
    }

    let staging = releases.join(format!(
        "{STAGING_PREFIX}{}-{}",
        std::process::id(),
        &hash[..16]
    ));
    if let Err(e) = write_staging(&staging, &contents) {
        // Best effort: the error that made us stop matters more than a
        // leftover staging directory, which the next export removes.
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    set_mode(&staging, TRAVERSE_MODE)?;
    if live {
        // The live release was changed on disk: the checked copy replaces
        // it in one rename over the emptied name, and `current` never
        // points at a half-written directory (it names the release, which
        // is either the old or the new directory at every instant but the
        // one between the two renames below).
        let damaged = releases.join(format!("{STAGING_PREFIX}damaged-{}", std::process::id()));
        fs::rename(&release, &damaged).map_err(|e| PublishError::io(&release, e))?;
        fs::rename(&staging, &release).map_err(|e| PublishError::io(&release, e))?;
        sync_dir(&releases)?;
        let _ = fs::remove_dir_all(&damaged);
        link_served(out)?;
        return Ok(ExportOutcome::Repaired {
            release,
            ids_as_titles,
        });
    }
    if release.exists() {
        // Not live (checked above): a leftover of an interrupted export or
        // the kept previous release; replace it with the freshly checked copy.
        fs::remove_dir_all(&release).map_err(|e| PublishError::io(&release, e))?;
    }
    fs::rename(&staging, &release).map_err(|e| PublishError::io(&release, e))?;
    sync_dir(&releases)?;
    switch_current(out, &hash)?;
    link_served(out)?;
    if let Some(prev) = previous.as_deref() {
        // Kept for a rollback, but no longer reachable by a web server.
        let _ = set_mode(&releases.join(prev), PRIVATE_DIR_MODE);
    }
    remove_old_releases(&releases, &hash, previous.as_deref());
    Ok(ExportOutcome::Published {
        release,
        titles: title_count,
        pairs: rows.len() as u64,
        ids_as_titles,
    })
}

/// Whether the release directory holds exactly `contents` (same paths, same
/// bytes, no other file).
fn release_matches(release: &Path, contents: &[(String, Vec<u8>)]) -> Result<bool, PublishError> {
    if !release.is_dir() {
        return Ok(false);
    }
    let mut on_disk = Vec::new();
    list_files(release, "", &mut on_disk)?;
    on_disk.sort();
    if on_disk.len() != contents.len() || on_disk.iter().zip(contents).any(|(a, (b, _))| a != b) {
        return Ok(false);
    }
    let same = contents.par_iter().all(|(rel, bytes)| {
        let path = release.join(rel);
        fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file())
            && fs::read(&path).is_ok_and(|b| b == *bytes)
    });
    Ok(same)
}

/// Removes staging directories of crashed or refused exports; the caller
/// holds the export lock, so none is in use.
fn remove_staging(releases: &Path) -> Result<(), PublishError> {
    let entries = fs::read_dir(releases).map_err(|e| PublishError::io(releases, e))?;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(STAGING_PREFIX)
        {
            let path = entry.path();
            fs::remove_dir_all(&path).map_err(|e| PublishError::io(&path, e))?;
        }
    }
    Ok(())
}

/// One title's published list: its id and its rows, in rank order.
type Group<'a> = (&'a str, &'a [Row<'a>]);

/// The rows in byte order of `title_a`, each title's rows in their order.
/// The engine already emits them so ([`Related::pairs`]) and they are
/// borrowed; other input is sorted stably, so each list keeps its rank order.
fn rows_by_title<'a>(rows: &'a [Row<'a>]) -> Cow<'a, [Row<'a>]> {
    if rows.par_windows(2).all(|w| w[0].title_a <= w[1].title_a) {
        Cow::Borrowed(rows)
    } else {
        let mut sorted = rows.to_vec();
        sorted.sort_by(|x, y| x.title_a.cmp(&y.title_a));
        Cow::Owned(sorted)
    }
}

/// Runs of equal `title_a` in rows sorted by it.
fn groups<'a>(sorted: &'a [Row<'a>]) -> Vec<Group<'a>> {
    sorted
        .chunk_by(|x, y| x.title_a == y.title_a)
        .map(|run| (&*run[0].title_a, run))
        .collect()
}

/// A title's rows serialized as the feed's `related` list: the related
/// titles in rank order, without copying them.
struct RelatedList<'a>(&'a [Row<'a>]);

impl serde::Serialize for RelatedList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|r| &*r.title_b))
    }
}

/// [`alsoborrowed_feed::TitleFeed`] with borrowed fields, same order and names.
#[derive(serde::Serialize)]
struct TitleFileRef<'a> {
    schema_version: u32,
    title: &'a str,
    related: RelatedList<'a>,
}

/// [`alsoborrowed_feed::ShardTitle`] with borrowed fields, same order and names.
#[derive(serde::Serialize)]
struct ShardTitleRef<'a> {
    title: &'a str,
    related: RelatedList<'a>,
}

/// [`alsoborrowed_feed::ShardFeed`] with borrowed fields, same order and names.
#[derive(serde::Serialize)]
struct ShardFileRef<'a> {
    schema_version: u32,
    shard: &'a str,
    titles: Vec<ShardTitleRef<'a>>,
}

/// Per-title feed files: `feed/titles/<stem>.json`, one per title.
fn title_files(groups: &[Group<'_>]) -> Result<Vec<(String, Vec<u8>)>, PublishError> {
    groups
        .par_iter()
        .map(|&(title, rows)| {
            let feed = TitleFileRef {
                schema_version: SCHEMA_VERSION,
                title,
                related: RelatedList(rows),
            };
            let path = format!("{FEED_DIR}/{TITLES_DIR}/{}.json", file_stem(title));
            json_bytes(&feed).map(|b| (path, b))
        })
        .collect()
}

/// Shard files: `feed/shards/<name>.json` for every one of the `2^bits`
/// shards, empty ones included, so a missing file is an error and never
/// reads as "nothing to recommend".
fn shard_files(groups: &[Group<'_>], bits: u32) -> Result<Vec<(String, Vec<u8>)>, PublishError> {
    let shard: Vec<u32> = groups
        .par_iter()
        .map(|&(title, _)| shard_of(title, bits))
        .collect();
    let mut shards: Vec<Vec<ShardTitleRef<'_>>> = (0..1u32 << bits).map(|_| Vec::new()).collect();
    // `groups` is in byte order of the titles, so every shard is too.
    for (&(title, rows), &s) in groups.iter().zip(&shard) {
        shards[s as usize].push(ShardTitleRef {
            title,
            related: RelatedList(rows),
        });
    }
    shards
        .into_par_iter()
        .enumerate()
        .map(|(i, titles)| {
            let name = shard_name(i as u32, bits);
            let path = format!("{FEED_DIR}/{SHARDS_DIR}/{name}.json");
            let feed = ShardFileRef {
                schema_version: SCHEMA_VERSION,
                shard: &name,
                titles,
            };
            json_bytes(&feed).map(|b| (path, b))
        })
        .collect()
}

fn validate(related: &Related, meta: &ExportMeta) -> Result<(), PublishError> {
    if meta.min_support < MIN_SUPPORT_FLOOR {
        return Err(PublishError::invalid(format!(
            "min_support must be at least {MIN_SUPPORT_FLOOR}, got {}",
            meta.min_support
        )));
    }
    if meta.max_related == 0 {
        return Err(PublishError::invalid("max_related must be at least 1"));
    }
    if !(meta.time_decay > 0.0 && meta.time_decay <= 1.0) {
        return Err(PublishError::invalid("time_decay must be in (0, 1]"));
    }
    if meta.window_first > meta.window_last {
        return Err(PublishError::invalid("window ends before it starts"));
    }
    let n = related.title_ids.len();
    if let Some(i) = related.title_ids.iter().position(String::is_empty) {
        return Err(PublishError::invalid(format!("title {i} is empty")));
    }
    // The titles on this thread, the pairs (millions at 100M loans) on the
    // pool; a title's error is reported before a pair's, as one pass would.
    let (repeated, bad_pair) = rayon::join(
        || {
            let mut seen = HashSet::with_capacity(n);
            related
                .title_ids
                .iter()
                .position(|t| !seen.insert(t.as_str()))
        },
        || {
            related
                .pairs
                .par_iter()
                .enumerate()
                .find_map_first(|(i, p)| pair_fault(i, p, n))
        },
    );
    if let Some(i) = repeated {
        return Err(PublishError::invalid(format!(
            "title {i} repeats an earlier title"
        )));
    }
    bad_pair.map_or(Ok(()), |reason| Err(PublishError::invalid(reason)))
}

/// What is wrong with pair `i` of the engine's output over `n` titles, if
/// anything.
fn pair_fault(i: usize, p: &engine::ScoredPair, n: usize) -> Option<String> {
    if p.a as usize >= n || p.b as usize >= n {
        Some(format!("pair {i} refers past the dictionary of {n} titles"))
    } else if p.a == p.b {
        Some(format!("pair {i} relates a title to itself"))
    } else if !p.score.is_finite() {
        Some(format!("pair {i} has a score that is not a finite number"))
    } else {
        None
    }
}

/// Compact JSON and a final newline; the check reads values, never layout.
fn json_bytes<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, PublishError> {
    let mut bytes = serde_json::to_vec(value).map_err(|e| PublishError::Encode {
        file: "feed",
        reason: e.to_string(),
    })?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The privacy check on the in-memory release: every pair's support is at
/// least k, at most `max_related` pairs per title, and every file passes
/// the value check (`check::check_file`). `contents` are the files as they
/// will be written.
fn check(
    contents: &[(String, Vec<u8>)],
    related: &Related,
    meta: &ExportMeta,
    expected: &Expected<'_>,
    forbidden: &Forbidden,
) -> Result<(), PublishError> {
    let below_support = related
        .pairs
        .iter()
        .filter(|p| p.support < meta.min_support)
        .count() as u64;
    // Pairs per title, by index (validated against the dictionary): no
    // hashing on this one-thread path.
    let mut per_title = vec![0u32; related.title_ids.len()];
    for p in &related.pairs {
        per_title[p.a as usize] += 1;
    }
    let over_max_related = per_title.iter().filter(|&&c| c > meta.max_related).count() as u64;
    // Largest files first, one file a task: checking `pairs.csv` (a
    // one-thread parse) took a third of the check's time and, reached last
    // in path order, ran alone while the other core was idle.
    let mut by_size: Vec<usize> = (0..contents.len()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(contents[i].1.len()));
    let mut per_file: Vec<(usize, FileFindings)> = by_size
        .into_par_iter()
        .with_max_len(1)
        .map(|i| {
            let (rel, bytes) = &contents[i];
            (i, check::check_file(rel, bytes, expected, forbidden))
        })
        .collect();
    // Findings are reported in path order, whatever order they were found in.
    per_file.sort_unstable_by_key(|&(i, _)| i);
    let mut findings = Findings::default();
    for (_, f) in per_file {
        findings.add(f);
    }
    if below_support > 0 || over_max_related > 0 || findings.total > 0 {
        return Err(PublishError::CheckFailed {
            below_support,
            over_max_related,
            findings,
        });
    }
    Ok(())
}

/// Whether a release-relative path is one of the owner-only files.
fn is_private(rel: &str) -> bool {
    !rel.starts_with(&format!("{FEED_DIR}/"))
}

/// Writes every file of the release once into a new `staging` directory
/// (0700 until it is made live) and makes all of it durable.
fn write_staging(staging: &Path, contents: &[(String, Vec<u8>)]) -> Result<(), PublishError> {
    fs::create_dir(staging).map_err(|e| PublishError::io(staging, e))?;
    set_mode(staging, PRIVATE_DIR_MODE)?;
    // Every directory the files need, parents before children.
    let subdirs: BTreeSet<&str> = contents
        .iter()
        .filter_map(|(rel, _)| rel.rsplit_once('/').map(|(dir, _)| dir))
        .flat_map(|dir| {
            dir.match_indices('/')
                .map(|(i, _)| &dir[..i])
                .chain(std::iter::once(dir))
        })
        .collect();
    let mut narrowing = false;
    for dir in &subdirs {
        narrowing |= create_dir(&staging.join(dir))?;
    }
    // Each file is created relative to its open directory, so the kernel
    // looks up one name per file instead of walking the whole path.
    let mut dirs: HashMap<&str, File> = HashMap::new();
    for (rel, _) in contents {
        let (dir, _) = rel.rsplit_once('/').unwrap_or(("", rel));
        if !dirs.contains_key(dir) {
            let path = staging.join(dir);
            let fd = File::open(&path).map_err(|e| PublishError::io(&path, e))?;
            dirs.insert(dir, fd);
        }
    }
    // The global pool: a dedicated pool of 8 threads measured no faster,
    // since naming files in one directory is serialized by the kernel (the
    // directory lock). Files are created unnamed and then linked
    // (`write_file_at`), so that only the naming holds the lock.
    let unnamed = AtomicBool::new(cfg!(any(target_os = "linux", target_os = "android")));
    // Largest first, one file a task: in path order the pair files came
    // last, and `pairs.csv` (half of a release's bytes) was written by one
    // thread while the other had nothing left to do.
    let mut by_size: Vec<&(String, Vec<u8>)> = contents.iter().collect();
    by_size.sort_by_key(|(_, bytes)| std::cmp::Reverse(bytes.len()));
    by_size
        .into_par_iter()
        .with_max_len(1)
        .try_for_each(|(rel, bytes)| {
            let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
            let io = |e: std::io::Error| PublishError::io(&staging.join(rel), e);
            let dir = dirs
                .get(dir)
                .ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))?;
            let mode = if is_private(rel) {
                PRIVATE_FILE_MODE
            } else {
                FILE_MODE
            };
            write_file_at(dir, name, bytes, mode, narrowing, &unnamed).map_err(io)
        })?;
    sync_files(staging, contents)?;
    for dir in subdirs.iter().rev() {
        sync_dir(&staging.join(dir))?;
    }
    sync_dir(staging)
}

/// Makes the data of every staged file durable before anything points at it.
///
/// One `syncfs` flushes the whole file system in one journal commit: for
/// ~10^5 small files that is one flush (0.2 s measured) instead of one fsync
/// each (~230 µs each, 46 s for 200 k files). Durability is what it was:
/// everything in `staging` is on disk when this returns, before the rename
/// and the `current` switch, and since Linux 5.8 `syncfs` also reports
/// write-back errors of files on the file system. It also flushes other
/// dirty data of that file system, which costs this export time but never
/// correctness.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn sync_files(staging: &Path, _contents: &[(String, Vec<u8>)]) -> Result<(), PublishError> {
    let dir = File::open(staging).map_err(|e| PublishError::io(staging, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| PublishError::io(staging, e.into()))
}

/// Without `syncfs`, every staged file is synced on its own, after all
/// writes so the file system can still batch some of the flushes.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn sync_files(staging: &Path, contents: &[(String, Vec<u8>)]) -> Result<(), PublishError> {
    contents.par_iter().try_for_each(|(rel, _)| {
        let path = staging.join(rel);
        File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| PublishError::io(&path, e))
    })
}

/// Creates a release directory with mode 0755 and tells whether the umask
/// Creates a feed directory with mode 0755 and tells whether the umask
/// narrows [`FILE_MODE`], i.e. whether files need a `chmod` after creation.
fn create_dir(path: &Path) -> Result<bool, PublishError> {
    let io = |e| PublishError::io(path, e);
    fs::create_dir(path).map_err(io)?;
    // `create_dir` asks for 0777, so the mode it got is 0777 less the umask.
    let got = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if got != DIR_MODE {
        set_mode(path, DIR_MODE)?;
    }
    Ok(FILE_MODE & !got != 0)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), PublishError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| PublishError::io(path, e))
}

/// Creates `path` with `mode` if it is missing (the mode is set after
/// creating, since the umask, 0077 under the documented systemd unit,
/// narrows it). An existing directory keeps the mode its owner gave it,
/// but `releases/` is ours and always 0711: a web server may pass through
/// it to the live feed, nobody but the owner may list it.
fn create_dir_with_mode(path: &Path, mode: u32) -> Result<(), PublishError> {
    let ours = path.file_name().is_some_and(|n| n == RELEASES_DIR);
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if ours && m.permissions().mode() & 0o777 != mode {
                set_mode(path, mode)?;
            }
            Ok(())
        }
        Ok(_) => Err(PublishError::invalid(format!(
            "{} exists and is not a directory",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| PublishError::io(parent, e))?;
            }
            match fs::create_dir(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(PublishError::io(path, e)),
            }
            set_mode(path, mode)
        }
        Err(e) => Err(PublishError::io(path, e)),
    }
}

/// Creates `name` in `dir` (it must not exist) with `bytes` and `mode`.
///
/// While `unnamed` holds, the file is made without a name first (Linux's
/// `O_TMPFILE`), written, and then linked as `name`: creating a named file
/// holds the directory's lock while the file system picks an inode, which
/// on ext4 without a journal means scanning past every inode freed or
/// written in the last half minute, so thousands of shard files were made
/// one at a time while the other threads spun on the lock. Unnamed files
/// get their inodes in parallel, and only the link takes the lock. A file
/// system or sandbox without `O_TMPFILE` or `/proc` clears `unnamed`, and
/// this and every later file are created by name.
fn write_file_at(
    dir: &File,
    name: &str,
    bytes: &[u8],
    mode: u32,
    narrowing: bool,
    unnamed: &AtomicBool,
) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    if unnamed.load(Ordering::Relaxed) {
        match write_unnamed(dir, name, bytes, mode, narrowing) {
            Ok(()) => return Ok(()),
            Err(Unnamed::Unsupported) => unnamed.store(false, Ordering::Relaxed),
            Err(Unnamed::Failed(e)) => return Err(e),
        }
    }
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )?;
    fill(&mut File::from(fd), bytes, mode, narrowing)
}

/// Bytes a thread writes of a large file at a time.
const WRITE_PIECE: usize = 8 << 20;

/// Writes `bytes` to a new file and widens its mode to [`FILE_MODE`] where
/// the umask narrowed it. A file of several pieces is written by as many
/// threads as are free: copying into the page cache is most of a large
/// file's cost, and the pair files of a national release are hundreds of
/// megabytes.
fn fill(f: &mut File, bytes: &[u8], mode: u32, narrowing: bool) -> std::io::Result<()> {
    if bytes.len() > 2 * WRITE_PIECE {
        use std::os::unix::fs::FileExt as _;
        let file = &*f;
        bytes
            .par_chunks(WRITE_PIECE)
            .enumerate()
            .try_for_each(|(i, piece)| file.write_all_at(piece, (i * WRITE_PIECE) as u64))?;
    } else {
        f.write_all(bytes)?;
    }
    if narrowing && mode == FILE_MODE {
        // The umask narrowed the mode; a served feed file needs 0644.
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
}

/// Why [`write_unnamed`] did not make its file.
enum Unnamed {
    /// No unnamed files here (file system, kernel or no `/proc`): nothing
    /// was made, create the file by name.
    Unsupported,
    /// A real error, as creating the file by name would have met it.
    Failed(std::io::Error),
}

/// [`write_file_at`] by an unnamed file linked as `name` once written.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn write_unnamed(
    dir: &File,
    name: &str,
    bytes: &[u8],
    mode: u32,
    narrowing: bool,
) -> Result<(), Unnamed> {
    use rustix::fs::{AtFlags, CWD, Mode, OFlags};
    use rustix::io::Errno;
    let fd = match rustix::fs::openat(
        dir,
        ".",
        OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    ) {
        Ok(fd) => fd,
        // open(2): the kernel or the file system lacks O_TMPFILE.
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => {
            return Err(Unnamed::Unsupported);
        }
        Err(e) => return Err(Unnamed::Failed(e.into())),
    };
    // Linking an open file needs CAP_DAC_READ_SEARCH (`AT_EMPTY_PATH`) or
    // its /proc path (open(2), "O_TMPFILE").
    let proc_path = format!("/proc/self/fd/{}", rustix::fd::AsRawFd::as_raw_fd(&fd));
    let mut f = File::from(fd);
    let link = |f: &mut File| {
        fill(f, bytes, mode, narrowing)?;
        rustix::fs::linkat(CWD, proc_path.as_str(), dir, name, AtFlags::SYMLINK_FOLLOW)
            .map_err(std::io::Error::from)
    };
    match link(&mut f) {
        Ok(()) => Ok(()),
        // No /proc (a sandbox): the unnamed file goes away with its descriptor.
        Err(e)
            if e.raw_os_error() == Some(Errno::NOENT.raw_os_error())
                && !proc_fd_exists(&proc_path) =>
        {
            Err(Unnamed::Unsupported)
        }
        Err(e) => Err(Unnamed::Failed(e)),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn write_unnamed(
    _dir: &File,
    _name: &str,
    _bytes: &[u8],
    _mode: u32,
    _narrowing: bool,
) -> Result<(), Unnamed> {
    Err(Unnamed::Unsupported)
}

/// Whether `/proc/self/fd/<n>` names an open descriptor (false without /proc).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn proc_fd_exists(path: &str) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn sync_dir(path: &Path) -> Result<(), PublishError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| PublishError::io(path, e))
}

/// Name of the release `current` points to, if it is a link into `releases/`.
fn current_release_name(current: &Path) -> Result<Option<String>, PublishError> {
    match fs::read_link(current) {
        Ok(target) => {
            let mut parts = target.components();
            let name = match (parts.next(), parts.next(), parts.next()) {
                (Some(dir), Some(name), None) if dir.as_os_str() == RELEASES_DIR => {
                    name.as_os_str().to_str().map(str::to_owned)
                }
                _ => None,
            };
            Ok(name)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // `current` exists but is no symlink: never overwrite what we did not make.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => Err(PublishError::invalid(
            format!("{} exists and is not a symbolic link", current.display()),
        )),
        Err(e) => Err(PublishError::io(current, e)),
    }
}

/// Points the symlink `<out>/<name>` at `target` with one atomic rename.
fn replace_link(out: &Path, name: &str, target: &Path) -> Result<(), PublishError> {
    let tmp = out.join(format!("{name}.tmp-{}", std::process::id()));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PublishError::io(&tmp, e)),
    }
    std::os::unix::fs::symlink(target, &tmp).map_err(|e| PublishError::io(&tmp, e))?;
    let link = out.join(name);
    if let Err(e) = fs::rename(&tmp, &link) {
        let _ = fs::remove_file(&tmp);
        return Err(PublishError::io(&link, e));
    }
    sync_dir(out)
}

/// Points `<out>/current` at `releases/<hash>` with one atomic rename.
fn switch_current(out: &Path, hash: &str) -> Result<(), PublishError> {
    // Relative, so the output directory can be moved or mounted elsewhere.
    replace_link(out, CURRENT_LINK, &Path::new(RELEASES_DIR).join(hash))
}

/// Makes sure `<out>/feed` is the fixed link `current/feed`, the directory
/// a web server serves: it follows every switch of `current` with no write
/// of its own. Anything else at that name is refused, never replaced.
fn link_served(out: &Path) -> Result<(), PublishError> {
    let link = out.join(SERVED_LINK);
    let target = Path::new(CURRENT_LINK).join(FEED_DIR);
    match fs::read_link(&link) {
        Ok(t) if t == target => Ok(()),
        Ok(_) => replace_link(out, SERVED_LINK, &target),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            replace_link(out, SERVED_LINK, &target)
        }
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            Err(PublishError::invalid(format!(
                "{} exists and is not a symbolic link; move it away (it is where the live feed \
                 is linked for serving)",
                link.display()
            )))
        }
        Err(e) => Err(PublishError::io(&link, e)),
    }
}

/// Deletes every release but the new and the previous one, and stale staging
/// directories; best effort, since the new release is already live.
fn remove_old_releases(releases: &Path, keep: &str, previous: Option<&str>) {
    let Ok(entries) = fs::read_dir(releases) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let is_release = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        let is_staging = name.starts_with(STAGING_PREFIX);
        if (is_release || is_staging) && name != keep && Some(name) != previous {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Independent audit of the live release `<out>/current`.
///
/// Recounts, from `window_loans` (the store's loans of the window, uncapped)
/// with plain hash sets, the distinct borrowers of every published pair read
/// back from `pairs.parquet` and the feed files; fails if any is below
/// `min_support`, if `pairs.parquet`, `pairs.csv`, the feed and
/// `release.json` disagree, if the files no longer hash to the release's
/// name, or if the value check finds anything in any file (with the
/// window's titles as the titles of the input). Loans outside the release's
/// window are ignored.
pub fn verify(
    out: &Path,
    window_loans: &Loans,
    min_support: u32,
    forbidden: &Forbidden,
) -> Result<VerifyReport, PublishError> {
    window_loans
        .validate()
        .map_err(|e| PublishError::invalid(format!("window loans: {e}")))?;
    let current = out.join(CURRENT_LINK);
    let Some(name) = current_release_name(&current)? else {
        return Err(PublishError::NoRelease { path: current });
    };
    let release = out.join(RELEASES_DIR).join(&name);
    if !release.is_dir() {
        return Err(PublishError::NoRelease { path: current });
    }
    let manifest_path = release.join(RELEASE_MANIFEST);
    let manifest_bytes = match fs::read(&manifest_path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(PublishError::OldRelease { path: release });
        }
        Err(e) => return Err(PublishError::io(&manifest_path, e)),
    };
    // Line and column only: a serde message could quote a field's name.
    let manifest = lenient_manifest(&manifest_bytes).map_err(|e| {
        PublishError::unreadable(
            &manifest_path,
            format!(
                "not a release manifest (line {} column {})",
                e.line(),
                e.column()
            ),
        )
    })?;
    let window = (
        parse_month(&manifest_path, &manifest.window_first)?,
        parse_month(&manifest_path, &manifest.window_last)?,
    );
    let index = feed_index(&manifest);
    let input_titles: hashbrown::HashSet<&str> =
        window_loans.title_ids.iter().map(String::as_str).collect();
    let expected = Expected {
        titles: &input_titles,
        manifest: &manifest,
        index: &index,
    };

    let mut all_files = Vec::new();
    list_files(&release, "", &mut all_files)?;
    all_files.sort();
    let scanned = read_hash_check(&release, &all_files, &expected, forbidden)?;
    let content_hash_ok = scanned.hash == name;
    let findings = scanned.findings;

    let read = |file: &str, bytes: Option<Vec<u8>>| {
        bytes.ok_or_else(|| {
            PublishError::io(&release.join(file), std::io::ErrorKind::NotFound.into())
        })
    };
    let parquet_bytes = read(PAIRS_PARQUET, scanned.parquet)?;
    let csv_bytes = read(PAIRS_CSV, scanned.csv)?;
    // Files the value check already refused may not decode; the findings
    // are then what the audit reports.
    let mut undecodable = 0u64;
    let mut decoded = |rows: Result<Vec<Row<'static>>, PublishError>| match rows {
        Ok(rows) => Ok(rows),
        Err(_) if findings.total > 0 => {
            undecodable += 1;
            Ok(Vec::new())
        }
        Err(e) => Err(e),
    };
    let parquet = decoded(files::read_parquet(
        &release.join(PAIRS_PARQUET),
        &parquet_bytes,
    ))?;
    let csv = decoded(files::read_csv(&release.join(PAIRS_CSV), &csv_bytes))?;
    // A feed the value check already refused may not open at all; the
    // findings say why, so they are what the audit reports.
    let feed = match Feed::open(&release) {
        Ok(feed) => Some(feed),
        Err(_) if findings.total > 0 => None,
        Err(e) => return Err(e.into()),
    };
    let mut inconsistencies = undecodable + (parquet.len().abs_diff(csv.len())) as u64;
    inconsistencies += parquet
        .iter()
        .zip(&csv)
        .filter(|(p, c)| {
            p.title_a != c.title_a
                || p.title_b != c.title_b
                || p.score.to_bits() != c.score.to_bits()
        })
        .count() as u64;
    let mut from_pairs: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in &parquet {
        from_pairs.entry(&r.title_a).or_default().push(&r.title_b);
    }
    let mut from_feed: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    match &feed {
        Some(feed) => {
            for t in feed.titles() {
                let list = feed.similar(t, usize::MAX);
                from_feed.insert(t, list.iter().map(String::as_str).collect());
            }
        }
        None => inconsistencies += 1,
    }
    for (t, list) in &from_pairs {
        if from_feed.get(t) != Some(list) {
            inconsistencies += 1;
        }
    }
    inconsistencies += from_feed
        .keys()
        .filter(|t| !from_pairs.contains_key(*t))
        .count() as u64;
    if manifest.min_support < min_support
        || manifest.titles != from_pairs.len() as u64
        || manifest.pairs != parquet.len() as u64
    {
        inconsistencies += 1;
    }

    let mut pairs: Vec<(&str, &str)> = from_pairs
        .iter()
        .chain(&from_feed)
        .flat_map(|(a, list)| list.iter().map(move |b| (*a, *b)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let supports = recount(window_loans, window, &pairs);
    let below_support = supports.iter().filter(|&&s| s < min_support).count() as u64;
    let min_support_seen = supports.iter().copied().min().unwrap_or(0);

    if below_support > 0 || inconsistencies > 0 || findings.total > 0 || !content_hash_ok {
        return Err(PublishError::VerifyFailed {
            below_support,
            inconsistencies,
            findings,
            content_hash_ok,
        });
    }
    Ok(VerifyReport {
        pairs_checked: pairs.len() as u64,
        min_support_seen,
        files_scanned: all_files.len() as u64,
    })
}

/// The manifest's known fields, ignoring unknown ones: the value check of
/// `release.json` reports those (by kind, never by name), so the audit can
/// go on and say what it found instead of stopping at the parse.
fn lenient_manifest(bytes: &[u8]) -> Result<ReleaseManifest, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
    let known = serde_json::to_value(ReleaseManifest {
        format: MANIFEST_FORMAT,
        window_first: String::new(),
        window_last: String::new(),
        measure: String::new(),
        min_support: 0,
        max_titles_per_borrower: 0,
        time_decay: 1.0,
        max_related: 0,
        layout: Layout::Shards,
        shard_bits: Some(0),
        titles: 0,
        pairs: 0,
    })?;
    if let (Some(fields), Some(known)) = (value.as_object_mut(), known.as_object()) {
        fields.retain(|k, _| known.contains_key(k));
    }
    serde_json::from_value(value)
}

/// What [`read_hash_check`] found.
struct Scanned {
    /// Content hash of the files read.
    hash: String,
    /// What the value check found.
    findings: Findings,
    /// The bytes of `pairs.parquet` and `pairs.csv`, if present.
    parquet: Option<Vec<u8>>,
    csv: Option<Vec<u8>>,
}

/// Files read, hashed and checked per batch: bounds the memory of a 200 k
/// file release while keeping both cores busy.
const VERIFY_BATCH: usize = 4096;

/// Reads every file of `release` once and both hashes and checks the same
/// bytes, so a file changed between the two cannot pass one and fail the
/// other. `files` are release-relative and sorted, as the hash needs.
/// Symbolic links are not followed: their target text is hashed, and a link
/// is never part of a release.
fn read_hash_check(
    release: &Path,
    files: &[String],
    expected: &Expected<'_>,
    forbidden: &Forbidden,
) -> Result<Scanned, PublishError> {
    let mut hash = ContentHash::new();
    let mut findings = Findings::default();
    let (mut parquet, mut csv) = (None, None);
    for batch in files.chunks(VERIFY_BATCH) {
        let read: Vec<(Vec<u8>, FileFindings)> = batch
            .par_iter()
            .map(|rel| {
                let path = release.join(rel);
                let meta = fs::symlink_metadata(&path).map_err(|e| PublishError::io(&path, e))?;
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(&path).map_err(|e| PublishError::io(&path, e))?;
                    let bytes = target.into_os_string().into_encoded_bytes();
                    let mut found =
                        check::check_file(&format!("{rel}.link"), &bytes, expected, forbidden);
                    for f in &mut found.kept {
                        f.file = rel.clone();
                    }
                    return Ok((bytes, found));
                }
                let bytes = fs::read(&path).map_err(|e| PublishError::io(&path, e))?;
                let found = check::check_file(rel, &bytes, expected, forbidden);
                Ok((bytes, found))
            })
            .collect::<Result<_, PublishError>>()?;
        for (rel, (bytes, found)) in batch.iter().zip(read) {
            hash.add(rel, &bytes);
            findings.add(found);
            match rel.as_str() {
                PAIRS_PARQUET => parquet = Some(bytes),
                PAIRS_CSV => csv = Some(bytes),
                _ => {}
            }
        }
    }
    Ok(Scanned {
        hash: hash.finish(),
        findings,
        parquet,
        csv,
    })
}

fn parse_month(path: &Path, text: &str) -> Result<LoanMonth, PublishError> {
    text.parse().map_err(|_| PublishError::Unreadable {
        path: path.to_path_buf(),
        reason: "window month is not of the form YYYY-MM".into(),
    })
}

/// Release-relative paths (with `/`) of every file and link below `dir`.
fn list_files(dir: &Path, prefix: &str, out: &mut Vec<String>) -> Result<(), PublishError> {
    for entry in fs::read_dir(dir).map_err(|e| PublishError::io(dir, e))? {
        let entry = entry.map_err(|e| PublishError::io(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(PublishError::Unreadable {
                path: dir.to_path_buf(),
                reason: "a file name is not UTF-8".into(),
            });
        };
        let rel = format!("{prefix}{name}");
        let ty = entry.file_type().map_err(|e| PublishError::io(&path, e))?;
        if ty.is_dir() {
            list_files(&path, &format!("{rel}/"), out)?;
        } else {
            out.push(rel);
        }
    }
    Ok(())
}

/// Distinct borrowers of each pair among the window's loans, uncapped;
/// plain hash sets, sharing no code with the engine on purpose.
fn recount(loans: &Loans, window: (LoanMonth, LoanMonth), pairs: &[(&str, &str)]) -> Vec<u32> {
    let wanted: HashSet<&str> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
    let mut borrowers: HashMap<&str, HashSet<Pseudonym>> = HashMap::new();
    for ((p, &t), m) in loans.row_pseudonyms().zip(&loans.titles).zip(&loans.months) {
        if *m < window.0 || *m > window.1 {
            continue;
        }
        let title = loans.title_ids[t as usize].as_str();
        if wanted.contains(title) {
            borrowers.entry(title).or_default().insert(p);
        }
    }
    let empty = HashSet::new();
    pairs
        .par_iter()
        .map(|&(a, b)| {
            let sa = borrowers.get(a).unwrap_or(&empty);
            let sb = borrowers.get(b).unwrap_or(&empty);
            let (small, large) = if sa.len() <= sb.len() {
                (sa, sb)
            } else {
                (sb, sa)
            };
            let n = small.iter().filter(|p| large.contains(p)).count();
            u32::try_from(n).unwrap_or(u32::MAX)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alsoborrowed_feed::{ShardFeed, ShardTitle, TitleFeed};
    use proptest::prelude::*;

    /// A file made unnamed and then linked is the file made by name: the
    /// same bytes and mode, and an existing name is refused, keeping its
    /// bytes. Where the file system has unnamed files, they stay in use.
    #[test]
    fn files_made_unnamed_or_by_name_are_alike() {
        use rustix::fs::{Mode, OFlags};
        let dir = tempfile::tempdir().unwrap();
        let d = File::open(dir.path()).unwrap();
        let supported = rustix::fs::openat(
            &d,
            ".",
            OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .is_ok();
        for unnamed_first in [true, false] {
            let unnamed = AtomicBool::new(unnamed_first);
            for mode in [FILE_MODE, PRIVATE_FILE_MODE] {
                let name = format!("{unnamed_first}-{mode:o}");
                write_file_at(&d, &name, b"bytes", mode, true, &unnamed).unwrap();
                let path = dir.path().join(&name);
                assert_eq!(fs::read(&path).unwrap(), b"bytes");
                let got = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                if mode == FILE_MODE {
                    assert_eq!(got, FILE_MODE, "{name}");
                } else {
                    assert_eq!(got & 0o077, 0, "{name}");
                }
                let again = write_file_at(&d, &name, b"other", mode, true, &unnamed);
                assert_eq!(
                    again.unwrap_err().kind(),
                    std::io::ErrorKind::AlreadyExists,
                    "{name}"
                );
                assert_eq!(fs::read(&path).unwrap(), b"bytes");
            }
            assert_eq!(unnamed.load(Ordering::Relaxed), unnamed_first && supported);
        }
        // Nothing but the four files: a refused link leaves no file behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 4);
    }

    #[test]
    fn a_file_written_in_pieces_holds_its_bytes_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let d = File::open(dir.path()).unwrap();
        // Several pieces and a short last one; every 4-byte word differs.
        let bytes: Vec<u8> = (0..(5 * WRITE_PIECE / 2 + 13) as u32 / 4)
            .flat_map(u32::to_le_bytes)
            .collect();
        for unnamed_first in [true, false] {
            let unnamed = AtomicBool::new(unnamed_first);
            let name = format!("pairs-{unnamed_first}");
            write_file_at(&d, &name, &bytes, PRIVATE_FILE_MODE, false, &unnamed).unwrap();
            assert!(fs::read(dir.path().join(&name)).unwrap() == bytes, "{name}");
        }
    }

    /// The first thing wrong with the engine's output is reported, titles
    /// before pairs and pairs in order, however the checks are split.
    #[test]
    fn invalid_relations_are_refused_first_fault_first() {
        let meta = ExportMeta {
            window_first: "2025-01".parse().unwrap(),
            window_last: "2025-12".parse().unwrap(),
            measure: Measure::Jaccard,
            min_support: MIN_SUPPORT_FLOOR,
            max_titles_per_borrower: 100,
            time_decay: 1.0,
            max_related: 20,
            layout: FeedLayout::Shards,
        };
        let pair = |a, b, score| engine::ScoredPair {
            a,
            b,
            support: 5,
            score,
        };
        let fine: Vec<engine::ScoredPair> =
            (0..5000).map(|i| pair(i % 3, (i + 1) % 3, 0.5)).collect();
        let related = |titles: &[&str], pairs: Vec<engine::ScoredPair>| Related {
            title_ids: titles.iter().map(|t| (*t).to_owned()).collect(),
            borrowers: 10,
            pairs,
        };
        let reason = |r: &Related| match validate(r, &meta) {
            Err(PublishError::InvalidInput { reason }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(validate(&related(&["a", "b", "c"], fine.clone()), &meta).is_ok());
        let mut pairs = fine.clone();
        pairs[4000] = pair(0, 0, 0.5);
        pairs[3000] = pair(1, 2, f64::NAN);
        pairs[4500] = pair(0, 3, 0.5);
        assert_eq!(
            reason(&related(&["a", "b", "c"], pairs.clone())),
            "pair 3000 has a score that is not a finite number"
        );
        pairs[3000] = fine[3000];
        assert_eq!(
            reason(&related(&["a", "b", "c"], pairs.clone())),
            "pair 4000 relates a title to itself"
        );
        pairs[4000] = fine[4000];
        assert_eq!(
            reason(&related(&["a", "b", "c"], pairs.clone())),
            "pair 4500 refers past the dictionary of 3 titles"
        );
        assert_eq!(
            reason(&related(&["a", "b", "a"], pairs)),
            "title 2 repeats an earlier title"
        );
    }

    fn rows_of(title: &str, related: &[(String, f64)]) -> Vec<Row<'static>> {
        related
            .iter()
            .map(|(t, score)| Row {
                title_a: Cow::Owned(title.to_owned()),
                title_b: Cow::Owned(t.clone()),
                score: *score,
            })
            .collect()
    }

    proptest! {
        // The borrowed mirrors must write exactly what the feed's own types
        // write, since readers parse them as those types; and no score.
        #[test]
        fn borrowed_mirrors_serialize_like_the_feed_types(
            title in "\\PC{1,8}",
            related in proptest::collection::vec(("\\PC{1,8}", -1e6f64..1e6), 1..5),
        ) {
            let rows = rows_of(&title, &related);
            let owned: Vec<String> = related.iter().map(|(t, _)| t.clone()).collect();
            let v1 = TitleFeed { schema_version: SCHEMA_VERSION, title: title.clone(), related: owned.clone() };
            let v1_ref = TitleFileRef { schema_version: SCHEMA_VERSION, title: &title, related: RelatedList(&rows) };
            prop_assert_eq!(json_bytes(&v1).unwrap(), json_bytes(&v1_ref).unwrap());
            let v2 = ShardFeed {
                schema_version: SCHEMA_VERSION,
                shard: "0a".into(),
                titles: vec![ShardTitle { title: title.clone(), related: owned }],
            };
            let v2_ref = ShardFileRef {
                schema_version: SCHEMA_VERSION,
                shard: "0a",
                titles: vec![ShardTitleRef { title: &title, related: RelatedList(&rows) }],
            };
            prop_assert_eq!(json_bytes(&v2).unwrap(), json_bytes(&v2_ref).unwrap());
        }
    }

    #[test]
    fn unsorted_rows_are_grouped_keeping_each_rank_order() {
        let row = |a: &'static str, b: &'static str| Row {
            title_a: Cow::Borrowed(a),
            title_b: Cow::Borrowed(b),
            score: 0.0,
        };
        let rows = [row("b", "1"), row("a", "2"), row("b", "3"), row("a", "4")];
        let sorted = rows_by_title(&rows);
        assert!(matches!(sorted, Cow::Owned(_)));
        let g: Vec<(&str, Vec<&str>)> = groups(&sorted)
            .into_iter()
            .map(|(t, rs)| (t, rs.iter().map(|r| &*r.title_b).collect()))
            .collect();
        assert_eq!(g, [("a", vec!["2", "4"]), ("b", vec!["1", "3"])]);
        let in_order = [row("a", "1"), row("a", "2"), row("b", "3")];
        assert!(matches!(rows_by_title(&in_order), Cow::Borrowed(_)));
    }
}
