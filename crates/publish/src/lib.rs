//! Identifier-free exports (Parquet, CSV, JSON feed), the privacy check and
//! atomic publishing.
//!
//! [`export`] turns the engine's [`Related`] into a release directory
//! `<out>/releases/<content-hash>/`:
//!
//! - `pairs.parquet`: columns `title_a` (Utf8), `title_b` (Utf8), `score`
//!   (Float64), one row per published directed pair in [`Related`] order;
//! - `pairs.csv`: the same rows with a header, RFC 4180 quoting and CRLF line
//!   ends; a title starting with `=`, `+`, `-`, `@`, tab, CR or `'` gets a
//!   leading `'` so that a spreadsheet shows it as text instead of running it
//!   as a formula (the `'` itself is included so the escape is reversible);
//! - `feed/index.json` and either `feed/titles/<file_stem>.json` (layout
//!   `titles`, feed schema_version 1) or `feed/shards/<shard_name>.json`
//!   (layout `shards`, schema_version 2): the feed read by
//!   [`alsoborrowed_feed`].
//!
//! Before anything is written, the encoded release is checked in memory
//! (every pair's support is at least k, at most `max_related` pairs per
//! title, and no file holds a [`Forbidden`] value) and refused on failure. Then the symlink
//! `<out>/current` is switched atomically to the new release; the previous
//! release is kept for a rollback and older ones are deleted. [`verify`]
//! audits the live release independently of the engine.
//!
//! A release is meant to be served to the public and holds no personal data,
//! so its files are 0644 and its directories 0755, whatever the umask.
//!
//! Architecture invariant: nothing here writes a borrower id, pseudonym or
//! key byte anywhere, and errors carry counts, file names and row numbers,
//! never a value.

#[cfg(not(unix))]
compile_error!("publish needs a Unix file system (symlinks, atomic rename over a symlink)");

mod files;
mod forbidden;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use alsoborrowed_feed::{
    CURRENT_LINK, FEED_DIR, Feed, FeedError, FeedIndex, INDEX_FILE, SCHEMA_VERSION,
    SHARDED_SCHEMA_VERSION, SHARDS_DIR, TITLES_DIR, Window, file_stem, shard_bits_for, shard_name,
    shard_of,
};
use engine::Related;
use loans::{LoanMonth, Loans, Pseudonym};
use pipeline::{FeedLayout, MIN_SUPPORT_FLOOR, Measure};
use rayon::prelude::*;

pub use forbidden::{FindingKind, Forbidden, SUBSTRING_ID_MIN};

use files::{ContentHash, Row};

/// Directory of releases inside the output directory.
pub const RELEASES_DIR: &str = "releases";
/// File name of the Parquet export inside a release.
pub const PAIRS_PARQUET: &str = "pairs.parquet";
/// File name of the CSV export inside a release.
pub const PAIRS_CSV: &str = "pairs.csv";

const STAGING_PREFIX: &str = ".staging-";
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// How an export was made: the window and the engine's parameters.
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
    },
    /// `current` already is a release with exactly these bytes; nothing changed.
    Unchanged {
        /// The release directory.
        release: PathBuf,
    },
}

/// Result of a successful [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Distinct directed pairs whose support was recounted.
    pub pairs_checked: u64,
    /// Smallest recounted support (0 when no pair is published).
    pub min_support_seen: u32,
    /// Files of the release that were scanned.
    pub files_scanned: u64,
}

/// Errors from exporting and verifying; they carry counts, paths and row
/// numbers, never a title, identifier, pseudonym or key value.
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
        "refusing to publish: {below_support} pairs below min support, {over_max_related} titles \
         over max related, {findings} forbidden values found in {files_with_findings} files"
    )]
    CheckFailed {
        /// Pairs whose support is below k.
        below_support: u64,
        /// Titles with more than `max_related` related titles.
        over_max_related: u64,
        /// (file, kind) findings of the forbidden scan.
        findings: u64,
        /// Files with at least one finding.
        files_with_findings: u64,
    },
    /// There is no live release to verify.
    #[error("{path}: no current release")]
    NoRelease {
        /// The expected `current` link.
        path: PathBuf,
    },
    /// The live release failed the audit.
    #[error(
        "verification failed: {below_support} pairs below min support, {inconsistencies} \
         disagreements between pairs.parquet, pairs.csv and the feed, {findings} forbidden values \
         found, content hash {}",
        if *content_hash_ok { "matches" } else { "does not match" }
    )]
    VerifyFailed {
        /// Pairs whose recounted support is below k.
        below_support: u64,
        /// Rows or titles on which the release's files disagree.
        inconsistencies: u64,
        /// (file, kind) findings of the forbidden scan.
        findings: u64,
        /// Whether the files still hash to the release's name.
        content_hash_ok: bool,
    },
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

/// Builds, checks and atomically publishes a release under
/// `<out>/releases/<content-hash>/`, then points `<out>/current` at it.
///
/// The privacy check runs on the encoded files in memory, before anything
/// is written: on a failure nothing is created or changed on disk and
/// [`PublishError::CheckFailed`] reports counts only. Rebuilding the same
/// input gives byte-identical files, and when `current` already holds them
/// the result is [`ExportOutcome::Unchanged`] without any write. `out` and
/// `out/releases` are created with mode 0755 if missing. One export per
/// output directory at a time: stale staging directories of crashed runs
/// are removed by the next successful export.
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
        .iter()
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
    let shard_bits = match meta.layout {
        FeedLayout::Titles => None,
        FeedLayout::Shards => Some(shard_bits_for(title_count)),
    };
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
    let (mut contents, parquet) = (feed?, parquet?);
    let index = FeedIndex {
        schema_version: match shard_bits {
            None => SCHEMA_VERSION,
            Some(_) => SHARDED_SCHEMA_VERSION,
        },
        window: Window {
            first: meta.window_first.to_string(),
            last: meta.window_last.to_string(),
        },
        measure: meta.measure.name().to_owned(),
        min_support: meta.min_support,
        max_titles_per_borrower: meta.max_titles_per_borrower,
        max_related: meta.max_related,
        titles: title_count,
        shard_bits,
    };
    contents.push((
        format!("{FEED_DIR}/{INDEX_FILE}"),
        json_bytes(&index, true)?,
    ));
    contents.push((PAIRS_PARQUET.to_owned(), parquet.bytes));
    contents.push((PAIRS_CSV.to_owned(), csv?));
    contents.sort_unstable_by(|a, b| a.0.cmp(&b.0));

    // The whole check runs on the exact bytes about to be written, so a
    // refused release never touches the disk, not even as a staging copy.
    // The content hash (one thread) is computed beside it.
    let (hash, checked) = rayon::join(
        || {
            let mut hash = ContentHash::new();
            for (path, bytes) in &contents {
                hash.add(path, bytes);
            }
            hash.finish()
        },
        || check(&contents, &parquet.meta_values, related, meta, forbidden),
    );
    checked?;

    let releases = out.join(RELEASES_DIR);
    let release = releases.join(&hash);
    let current = out.join(CURRENT_LINK);
    let previous = current_release_name(&current)?;
    if previous.as_deref() == Some(hash.as_str()) && release.is_dir() {
        // Same bytes as the live release: a cron run on an unmoved window
        // costs no disk writes at all.
        return Ok(ExportOutcome::Unchanged { release });
    }

    create_public_dir(out)?;
    create_public_dir(&releases)?;
    let staging = releases.join(format!(
        "{STAGING_PREFIX}{}-{}",
        std::process::id(),
        &hash[..16]
    ));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| PublishError::io(&staging, e))?;
    }
    if let Err(e) = write_staging(&staging, &contents) {
        // Best effort: the error that made us stop matters more than a
        // leftover staging directory, which the next export removes.
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }

    if release.exists() {
        // Not live (checked above): a leftover of an interrupted export or
        // the kept previous release; replace it with the freshly checked copy.
        fs::remove_dir_all(&release).map_err(|e| PublishError::io(&release, e))?;
    }
    fs::rename(&staging, &release).map_err(|e| PublishError::io(&release, e))?;
    sync_dir(&releases)?;
    switch_current(out, &hash)?;
    remove_old_releases(&releases, &hash, previous.as_deref());
    Ok(ExportOutcome::Published {
        release,
        titles: title_count,
        pairs: rows.len() as u64,
    })
}

/// One title's published list: its id and its rows, in rank order.
type Group<'a> = (&'a str, &'a [Row<'a>]);

/// The rows in byte order of `title_a`, each title's rows in their order.
/// The engine already emits them so ([`Related::pairs`]) and they are
/// borrowed; other input is sorted stably, so each list keeps its rank order.
fn rows_by_title<'a>(rows: &'a [Row<'a>]) -> Cow<'a, [Row<'a>]> {
    if rows.is_sorted_by(|x, y| x.title_a <= y.title_a) {
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

/// A title's rows serialized as the feed's `related` list: the fields of
/// [`alsoborrowed_feed::RelatedTitle`] in its order, without copying the titles into one.
struct RelatedList<'a>(&'a [Row<'a>]);

impl serde::Serialize for RelatedList<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Entry<'a> {
            title: &'a str,
            score: f64,
        }
        s.collect_seq(self.0.iter().map(|r| Entry {
            title: &r.title_b,
            score: r.score,
        }))
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

/// Version 1 feed files: `feed/titles/<stem>.json`, one per title.
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
            json_bytes(&feed, false).map(|b| (path, b))
        })
        .collect()
}

/// Version 2 feed files: `feed/shards/<name>.json` for every one of the
/// `2^bits` shards, empty ones included, so a missing file is an error and
/// never reads as "nothing to recommend".
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
                schema_version: SHARDED_SCHEMA_VERSION,
                shard: &name,
                titles,
            };
            json_bytes(&feed, false).map(|b| (path, b))
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
    if meta.window_first > meta.window_last {
        return Err(PublishError::invalid("window ends before it starts"));
    }
    let n = related.title_ids.len();
    if let Some(i) = related.title_ids.iter().position(String::is_empty) {
        return Err(PublishError::invalid(format!("title {i} is empty")));
    }
    let mut seen = HashSet::with_capacity(n);
    if let Some(i) = related
        .title_ids
        .iter()
        .position(|t| !seen.insert(t.as_str()))
    {
        return Err(PublishError::invalid(format!(
            "title {i} repeats an earlier title"
        )));
    }
    for (i, p) in related.pairs.iter().enumerate() {
        if p.a as usize >= n || p.b as usize >= n {
            return Err(PublishError::invalid(format!(
                "pair {i} refers past the dictionary of {n} titles"
            )));
        }
        if p.a == p.b {
            return Err(PublishError::invalid(format!(
                "pair {i} relates a title to itself"
            )));
        }
        if !p.score.is_finite() {
            return Err(PublishError::invalid(format!(
                "pair {i} has a score that is not a finite number"
            )));
        }
    }
    Ok(())
}

fn json_bytes<T: serde::Serialize>(value: &T, pretty: bool) -> Result<Vec<u8>, PublishError> {
    let encode = |e: serde_json::Error| PublishError::Encode {
        file: "feed",
        reason: e.to_string(),
    };
    let mut bytes = if pretty {
        serde_json::to_vec_pretty(value).map_err(encode)?
    } else {
        serde_json::to_vec(value).map_err(encode)?
    };
    bytes.push(b'\n');
    Ok(bytes)
}

/// The privacy check on the in-memory release: every pair's support is at
/// least k, at most `max_related` pairs per title, and no file (name, raw
/// bytes, decoded values) holds a forbidden value. `contents` are the files
/// as they will be written; `parquet_meta` and the titles of `related`'s
/// pairs are the decoded values of `pairs.parquet`.
fn check(
    contents: &[(String, Vec<u8>)],
    parquet_meta: &[String],
    related: &Related,
    meta: &ExportMeta,
    forbidden: &Forbidden,
) -> Result<(), PublishError> {
    let below_support = related
        .pairs
        .iter()
        .filter(|p| p.support < meta.min_support)
        .count() as u64;
    // Pairs per title and the titles in any pair, by index (validated
    // against the dictionary): no hashing on this one-thread path.
    let mut per_title = vec![0u32; related.title_ids.len()];
    let mut used = vec![false; related.title_ids.len()];
    for p in &related.pairs {
        per_title[p.a as usize] += 1;
        used[p.a as usize] = true;
        used[p.b as usize] = true;
    }
    let over_max_related = per_title.iter().filter(|&&c| c > meta.max_related).count() as u64;
    // The Parquet file's values are its metadata strings and the titles of
    // its rows; each distinct title is scanned once, not once per row.
    let titles: Vec<&str> = related
        .title_ids
        .iter()
        .zip(&used)
        .filter_map(|(t, &u)| u.then_some(t.as_str()))
        .collect();
    let kinds_per_file: Vec<usize> = contents
        .par_iter()
        .map(|(rel, bytes)| {
            let found = forbidden.scan_contents(Path::new(rel), bytes, |visit| {
                for v in parquet_meta {
                    visit(v.as_bytes());
                }
                for t in &titles {
                    visit(t.as_bytes());
                }
                Ok(())
            })?;
            Ok(found.len())
        })
        .collect::<Result<_, PublishError>>()?;
    let findings = kinds_per_file.iter().sum::<usize>() as u64;
    let files_with_findings = kinds_per_file.iter().filter(|&&n| n > 0).count() as u64;
    if below_support > 0 || over_max_related > 0 || findings > 0 {
        return Err(PublishError::CheckFailed {
            below_support,
            over_max_related,
            findings,
            files_with_findings,
        });
    }
    Ok(())
}

/// Writes every file of the release once into a new `staging` directory and
/// makes all of it durable.
fn write_staging(staging: &Path, contents: &[(String, Vec<u8>)]) -> Result<(), PublishError> {
    let narrowing = create_dir(staging)?;
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
    for dir in &subdirs {
        create_dir(&staging.join(dir))?;
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
    // since creating files in one directory is serialized by the kernel
    // (the directory lock, and on this ext4 the inode allocator's CPU time).
    contents.par_iter().try_for_each(|(rel, bytes)| {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let io = |e: std::io::Error| PublishError::io(&staging.join(rel), e);
        let dir = dirs
            .get(dir)
            .ok_or_else(|| io(std::io::ErrorKind::NotFound.into()))?;
        write_file_at(dir, name, bytes, narrowing).map_err(io)
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
/// narrows [`FILE_MODE`], i.e. whether files need a `chmod` after creation.
fn create_dir(path: &Path) -> Result<bool, PublishError> {
    let io = |e| PublishError::io(path, e);
    fs::create_dir(path).map_err(io)?;
    // `create_dir` asks for 0777, so the mode it got is 0777 less the umask.
    let got = fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
    if got != DIR_MODE {
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE)).map_err(io)?;
    }
    Ok(FILE_MODE & !got != 0)
}

/// Creates `path` with mode 0755 if it is missing, so that a web server
/// running as another user can traverse it to `current/`; the mode is set
/// after creating since the umask (0077 under the documented systemd unit)
/// narrows it. An existing directory keeps the mode its owner gave it.
fn create_public_dir(path: &Path) -> Result<(), PublishError> {
    match fs::create_dir(path) {
        Ok(()) => fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
            .map_err(|e| PublishError::io(path, e)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A missing parent: made like `create_dir_all` would, only the
            // last two levels (the export dir and `releases/`) are ours.
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).map_err(|e| PublishError::io(parent, e))?;
            }
            fs::create_dir(path).map_err(|e| PublishError::io(path, e))?;
            fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
                .map_err(|e| PublishError::io(path, e))
        }
        Err(e) => Err(PublishError::io(path, e)),
    }
}

/// Creates `name` in `dir` (it must not exist) with `bytes` and mode 0644.
fn write_file_at(dir: &File, name: &str, bytes: &[u8], narrowing: bool) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(FILE_MODE),
    )?;
    let mut f = File::from(fd);
    f.write_all(bytes)?;
    if narrowing {
        // The umask narrowed the mode; a served release needs 0644.
        f.set_permissions(fs::Permissions::from_mode(FILE_MODE))?;
    }
    Ok(())
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

/// Points `<out>/current` at `releases/<hash>` with one atomic rename.
fn switch_current(out: &Path, hash: &str) -> Result<(), PublishError> {
    let tmp = out.join(format!("{CURRENT_LINK}.tmp-{}", std::process::id()));
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(PublishError::io(&tmp, e)),
    }
    // Relative, so the output directory can be moved or mounted elsewhere.
    let target = Path::new(RELEASES_DIR).join(hash);
    std::os::unix::fs::symlink(&target, &tmp).map_err(|e| PublishError::io(&tmp, e))?;
    let current = out.join(CURRENT_LINK);
    if let Err(e) = fs::rename(&tmp, &current) {
        let _ = fs::remove_file(&tmp);
        return Err(PublishError::io(&current, e));
    }
    sync_dir(out)
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
/// `min_support`, if `pairs.parquet`, `pairs.csv` and the feed disagree, if
/// the files no longer hash to the release's name, or if the forbidden scan
/// finds anything in any file. Loans outside the feed's window are ignored.
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

    let mut all_files = Vec::new();
    list_files(&release, "", &mut all_files)?;
    all_files.sort();
    let scanned = read_hash_scan(&release, &all_files, forbidden)?;
    let content_hash_ok = scanned.hash == name;
    let mut kinds = scanned.kinds;

    // Decoding the Parquet file needs the file itself (the decoder reads by
    // offset); one decoding pass gives the rows and the decoded-value scan.
    let parquet_path = release.join(PAIRS_PARQUET);
    let mut parquet_kinds = BTreeSet::new();
    let parquet = files::read_parquet(&parquet_path, &mut |v| {
        parquet_kinds.extend(forbidden.scan_value(v));
    })?;
    if let Some(i) = all_files.iter().position(|f| f == PAIRS_PARQUET) {
        kinds[i].extend(parquet_kinds);
    }
    let findings = kinds.iter().map(|k| k.len() as u64).sum::<u64>();
    let csv_path = release.join(PAIRS_CSV);
    let csv = match &scanned.csv {
        Some(bytes) => files::read_csv(&csv_path, bytes)?,
        None => {
            return Err(PublishError::io(
                &csv_path,
                std::io::ErrorKind::NotFound.into(),
            ));
        }
    };
    let feed = Feed::open(&release)?;
    let mut inconsistencies = (parquet.len().abs_diff(csv.len())) as u64;
    inconsistencies += parquet
        .iter()
        .zip(&csv)
        .filter(|(p, c)| {
            p.title_a != c.title_a || p.title_b != c.title_b || !same(p.score, c.score)
        })
        .count() as u64;
    let mut from_pairs: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
    for r in &parquet {
        from_pairs
            .entry(&r.title_a)
            .or_default()
            .push((&r.title_b, r.score));
    }
    let mut from_feed: BTreeMap<&str, Vec<(&str, f64)>> = BTreeMap::new();
    for t in feed.titles() {
        let list = feed.similar(t, usize::MAX);
        from_feed.insert(
            t,
            list.iter().map(|r| (r.title.as_str(), r.score)).collect(),
        );
    }
    for (t, list) in &from_pairs {
        match from_feed.get(t) {
            Some(f) if lists_equal(f, list) => {}
            _ => inconsistencies += 1,
        }
    }
    inconsistencies += from_feed
        .keys()
        .filter(|t| !from_pairs.contains_key(*t))
        .count() as u64;
    let index = feed.index();
    if index.min_support < min_support {
        inconsistencies += 1;
    }

    let window = (
        parse_month(&release, &index.window.first)?,
        parse_month(&release, &index.window.last)?,
    );
    let mut pairs: Vec<(&str, &str)> = from_pairs
        .iter()
        .chain(&from_feed)
        .flat_map(|(a, list)| list.iter().map(move |(b, _)| (*a, *b)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    let supports = recount(window_loans, window, &pairs);
    let below_support = supports.iter().filter(|&&s| s < min_support).count() as u64;
    let min_support_seen = supports.iter().copied().min().unwrap_or(0);

    if below_support > 0 || inconsistencies > 0 || findings > 0 || !content_hash_ok {
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

/// What [`read_hash_scan`] found.
struct Scanned {
    /// Content hash of the files read.
    hash: String,
    /// Finding kinds per file, in `files` order; Parquet files without
    /// their decoded values, which the caller adds.
    kinds: Vec<BTreeSet<FindingKind>>,
    /// The bytes of `pairs.csv`, if there is one.
    csv: Option<Vec<u8>>,
}

/// Files read, hashed and scanned per batch: bounds the memory of a 200 k
/// file release while keeping both cores busy.
const VERIFY_BATCH: usize = 4096;

/// Reads every file of `release` once and both hashes and scans the same
/// bytes, so a file changed between the two cannot pass one and fail the
/// other. `files` are release-relative and sorted, as the hash needs.
/// Symbolic links are not followed: their target text is hashed and scanned.
fn read_hash_scan(
    release: &Path,
    files: &[String],
    forbidden: &Forbidden,
) -> Result<Scanned, PublishError> {
    let mut hash = ContentHash::new();
    let mut kinds = Vec::with_capacity(files.len());
    let mut csv = None;
    for batch in files.chunks(VERIFY_BATCH) {
        let read: Vec<(Vec<u8>, BTreeSet<FindingKind>)> = batch
            .par_iter()
            .map(|rel| {
                let path = release.join(rel);
                let meta = fs::symlink_metadata(&path).map_err(|e| PublishError::io(&path, e))?;
                if meta.file_type().is_symlink() {
                    let target = fs::read_link(&path).map_err(|e| PublishError::io(&path, e))?;
                    let bytes = target.into_os_string().into_encoded_bytes();
                    let found = forbidden.scan_link(&path, &bytes);
                    return Ok((bytes, found));
                }
                let bytes = fs::read(&path).map_err(|e| PublishError::io(&path, e))?;
                let found = forbidden.scan_contents(&path, &bytes, |_| Ok(()))?;
                Ok((bytes, found))
            })
            .collect::<Result<_, PublishError>>()?;
        for (rel, (bytes, found)) in batch.iter().zip(read) {
            hash.add(rel, &bytes);
            kinds.push(found);
            if rel == PAIRS_CSV {
                csv = Some(bytes);
            }
        }
    }
    Ok(Scanned {
        hash: hash.finish(),
        kinds,
        csv,
    })
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits()
}

fn lists_equal(a: &[(&str, f64)], b: &[(&str, f64)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.0 == y.0 && same(x.1, y.1))
}

fn parse_month(release: &Path, text: &str) -> Result<LoanMonth, PublishError> {
    text.parse().map_err(|_| PublishError::Unreadable {
        path: release.join(FEED_DIR).join(INDEX_FILE),
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
    for ((p, &t), m) in loans
        .pseudonyms
        .iter()
        .zip(&loans.titles)
        .zip(&loans.months)
    {
        if *m < window.0 || *m > window.1 {
            continue;
        }
        let title = loans.title_ids[t as usize].as_str();
        if wanted.contains(title) {
            borrowers.entry(title).or_default().insert(*p);
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
    use alsoborrowed_feed::{RelatedTitle, ShardFeed, ShardTitle, TitleFeed};
    use proptest::prelude::*;

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
        // write, since readers parse them as those types.
        #[test]
        fn borrowed_mirrors_serialize_like_the_feed_types(
            title in "\\PC{1,8}",
            related in proptest::collection::vec(("\\PC{1,8}", -1e6f64..1e6), 1..5),
        ) {
            let rows = rows_of(&title, &related);
            let owned: Vec<RelatedTitle> = related
                .iter()
                .map(|(t, score)| RelatedTitle { title: t.clone(), score: *score })
                .collect();
            let v1 = TitleFeed { schema_version: SCHEMA_VERSION, title: title.clone(), related: owned.clone() };
            let v1_ref = TitleFileRef { schema_version: SCHEMA_VERSION, title: &title, related: RelatedList(&rows) };
            prop_assert_eq!(json_bytes(&v1, false).unwrap(), json_bytes(&v1_ref, false).unwrap());
            let v2 = ShardFeed {
                schema_version: SHARDED_SCHEMA_VERSION,
                shard: "0a".into(),
                titles: vec![ShardTitle { title: title.clone(), related: owned }],
            };
            let v2_ref = ShardFileRef {
                schema_version: SHARDED_SCHEMA_VERSION,
                shard: "0a",
                titles: vec![ShardTitleRef { title: &title, related: RelatedList(&rows) }],
            };
            prop_assert_eq!(json_bytes(&v2, false).unwrap(), json_bytes(&v2_ref, false).unwrap());
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
