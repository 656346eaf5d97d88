//! Read a published alsoborrowed feed and answer "borrowers who borrowed this
//! also borrowed" queries.
//!
//! alsoborrowed mines a library's loans on a separate host and publishes, for
//! each title, the titles most often borrowed by the same (pseudonymous)
//! borrowers, but only pairs seen by at least `min_support` distinct borrowers.
//! The published feed holds catalogue identifiers **in rank order and nothing
//! else**: no score, count, window or threshold from which a support count
//! could be recomputed, no borrower id, pseudonym or loan date.
//!
//! This crate is the one catalogue software links. It defines the feed's file
//! formats and loads a whole feed into memory so that a lookup is one hash
//! probe. The current format is [`SCHEMA_VERSION`] 3, in one of two layouts
//! named by `index.json`'s `layout`:
//!
//! - [`Layout::Shards`] (the default): titles grouped into `2^shard_bits`
//!   files `shards/<name>.json` by a hash of the id ([`ShardFeed`],
//!   [`shard_of`], [`shard_name`]); a request names a shard of about 30
//!   titles, not the one a visitor looks at;
//! - [`Layout::Titles`]: one file per title, `titles/<stem>.json`
//!   ([`TitleFeed`], [`file_stem`]).
//!
//! Feeds of the older versions 1 and 2 (which carried scores) are still read
//! ([`legacy`]); their scores are dropped on reading, their order kept.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use alsoborrowed_feed::{FeedIndex, Layout, TitleFeed, file_stem, SCHEMA_VERSION};
//! # let tmp = tempfile::tempdir()?;
//! # let export_dir = tmp.path();
//! # let feed_dir = export_dir.join("feed");
//! # std::fs::create_dir_all(feed_dir.join("titles"))?;
//! # let files = [
//! #     TitleFeed { schema_version: SCHEMA_VERSION, title: "9788702173512".into(),
//! #         related: vec!["9788711321683".into(), "9788702284799".into()] },
//! #     TitleFeed { schema_version: SCHEMA_VERSION, title: "9788711321683".into(),
//! #         related: vec!["9788702173512".into()] },
//! # ];
//! # for f in &files {
//! #     let name = format!("{}.json", file_stem(&f.title));
//! #     std::fs::write(feed_dir.join("titles").join(name), serde_json::to_vec(f)?)?;
//! # }
//! # let index = FeedIndex { schema_version: SCHEMA_VERSION, layout: Layout::Titles,
//! #     shard_bits: None, max_related: 20, updated: "2025-01".into() };
//! # std::fs::write(feed_dir.join("index.json"), serde_json::to_vec(&index)?)?;
//! use alsoborrowed_feed::Feed;
//!
//! // Once, when the catalogue starts (or when `current` changes).
//! let feed = Feed::open(export_dir)?;
//!
//! // On a title's page: "borrowers who borrowed this also borrowed", best first.
//! for (rank, title) in feed.similar("9788702173512", 5).iter().enumerate() {
//!     println!("{}. {title}", rank + 1);
//! }
//! # assert_eq!(feed.similar("9788702173512", 5).len(), 2);
//! # Ok(())
//! # }
//! ```
//!
//! A catalogue that only serves the static files needs none of this: each
//! title's list is in `shards/<shard_name(shard_of(id, bits), bits)>.json`
//! or at `titles/<file_stem(id)>.json` below the feed directory (see
//! `docs/feed.md`).
//!
//! Architecture invariant: this crate depends on serde, serde_json, sha2 and
//! thiserror only, never on the mining side, so linking it cannot widen the
//! privacy boundary.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub mod legacy;

/// Version of the current feed format (both layouts): ranked lists of title
/// ids, no scores.
pub const SCHEMA_VERSION: u32 = 3;

/// Name of the directory of shard files inside a feed directory.
pub const SHARDS_DIR: &str = "shards";

/// Most `shard_bits` a sharded feed may have (65,536 shard files).
pub const MAX_SHARD_BITS: u32 = 16;

/// Titles per shard file that [`shard_bits_for`] aims at, at most: about
/// 25 KB of JSON at 20 related titles each, small enough to fetch for one
/// title's page.
pub const TITLES_PER_SHARD: u64 = 32;

/// Name of the feed index file inside a feed directory.
pub const INDEX_FILE: &str = "index.json";

/// Name of the directory of per-title files inside a feed directory.
pub const TITLES_DIR: &str = "titles";

/// Name of the feed directory inside a release directory, and of the symlink
/// to the live feed inside an export directory (the directory to serve).
pub const FEED_DIR: &str = "feed";

/// Name of the symlink to the live release inside an export directory.
pub const CURRENT_LINK: &str = "current";

/// Longest escaped file stem kept as is; longer ones are hashed.
pub const MAX_STEM_LEN: usize = 200;

/// How a feed's titles are spread over files.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `titles/<stem>.json`, one file per title with related titles.
    Titles,
    /// `shards/<name>.json`, every one of `2^shard_bits` files.
    Shards,
}

impl Layout {
    /// The name used in `index.json` and in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Titles => "titles",
            Layout::Shards => "shards",
        }
    }
}

/// Contents of `index.json`: what a consumer needs to find a title's list,
/// and nothing that only helps an attacker (no window, no thresholds, no
/// counts).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FeedIndex {
    /// Feed format version, [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// How titles are spread over files.
    pub layout: Layout,
    /// [`Layout::Shards`] only: titles are spread over `2^shard_bits` files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_bits: Option<u32>,
    /// Most related titles listed per title.
    pub max_related: u32,
    /// The month the lists were made for, `"YYYY-MM"` (the month after the
    /// last month of loans they were computed from).
    pub updated: String,
}

/// Contents of one `titles/<stem>.json` file: a title and its related titles.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TitleFeed {
    /// Feed format version, [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Catalogue identifier of the title.
    pub title: String,
    /// Identifiers of related titles, best first; never empty.
    pub related: Vec<String>,
}

/// Contents of one `shards/<name>.json` file: the titles whose id hashes to
/// this shard, in byte order of their ids.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShardFeed {
    /// Feed format version, [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The shard's name, as in its file name ([`shard_name`]).
    pub shard: String,
    /// Titles of this shard that have related titles; may be empty.
    pub titles: Vec<ShardTitle>,
}

/// One title of a shard file and its related titles.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ShardTitle {
    /// Catalogue identifier of the title.
    pub title: String,
    /// Identifiers of related titles, best first; never empty.
    pub related: Vec<String>,
}

/// Errors from opening a feed; each names the file and the reason, never a title.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid JSON or does not match the feed format. The
    /// message gives the line and column only: the parser's own text can
    /// quote a field name or value of the file.
    #[error(
        "{path}: not a valid feed file (line {} column {})",
        source.line(),
        source.column()
    )]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error (line and column).
        #[source]
        source: serde_json::Error,
    },
    /// A file has a format version this crate does not read, or one that
    /// differs from its feed's index.
    #[error("{path}: schema_version {found} is not supported here (expected {expected})")]
    SchemaVersion {
        /// The file.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version expected: the index's, or the newest this crate reads.
        expected: u32,
    },
    /// `shard_bits` is missing from a sharded index, present in a per-title
    /// one, or above [`MAX_SHARD_BITS`].
    #[error("{path}: shard_bits does not fit the layout of schema_version {version}")]
    ShardBits {
        /// The index file.
        path: PathBuf,
        /// The index's version.
        version: u32,
    },
    /// A shard file breaks the layout: wrong `shard` name, a title that
    /// hashes to another shard, titles out of byte order or repeated, or a
    /// title without related titles.
    #[error("{path}: {reason}")]
    BadShard {
        /// The shard file.
        path: PathBuf,
        /// What is wrong (never a title).
        reason: &'static str,
    },
    /// A title's list is empty, longer than the index's `max_related`,
    /// repeats a title or names the title itself.
    #[error("{path}: {reason}")]
    BadList {
        /// The title or shard file.
        path: PathBuf,
        /// What is wrong (never a title).
        reason: &'static str,
    },
    /// The index's `updated` month is not of the form `YYYY-MM`.
    #[error("{path}: updated is not a month of the form YYYY-MM")]
    BadMonth {
        /// The index file.
        path: PathBuf,
    },
    /// The path holds neither an export, a release nor a feed directory.
    #[error(
        "{path}: no feed found (expected {INDEX_FILE}, {FEED_DIR}/{INDEX_FILE} or {CURRENT_LINK}/{FEED_DIR}/{INDEX_FILE})"
    )]
    NotAFeed {
        /// The path given.
        path: PathBuf,
    },
    /// A title file's name is not the file stem of the title it holds.
    #[error("{path}: file name does not match the title it holds")]
    MisnamedTitleFile {
        /// The file.
        path: PathBuf,
    },
    /// A version 1 or 2 title or shard file holds a score that is not a
    /// finite number.
    #[error("{path}: related entry {entry} has a score that is not a finite number")]
    BadScore {
        /// The file.
        path: PathBuf,
        /// Index of the entry in `related`.
        entry: usize,
    },
    /// The number of titles found differs from the count in a version 1 or
    /// 2 index.
    #[error("{path}: index lists {expected} titles but {found} were found")]
    TitleCount {
        /// The feed directory.
        path: PathBuf,
        /// Count in `index.json`.
        expected: u64,
        /// Titles found.
        found: u64,
    },
}

/// Safe, reversible, case-insensitive-filesystem-safe file stem for a title id.
///
/// Bytes in `[a-z0-9_-]` are kept and every other byte becomes `%XX`
/// (uppercase hex), so the stem contains no uppercase letter, dot or slash
/// and two ids differing only in case get different stems. When the result
/// would exceed [`MAX_STEM_LEN`] bytes the stem is `~` followed by the 64-hex
/// SHA-256 of the id. Feed files live at `titles/<stem>.json`.
///
/// ```
/// use alsoborrowed_feed::file_stem;
/// assert_eq!(file_stem("ISBN 978/1"), "%49%53%42%4E%20978%2F1");
/// assert_eq!(file_stem("b1234-x"), "b1234-x");
/// assert!(file_stem(&"x".repeat(1000)).starts_with('~'));
/// ```
pub fn file_stem(title: &str) -> String {
    let mut out = String::with_capacity(title.len());
    for &b in title.as_bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
        if out.len() > MAX_STEM_LEN {
            break;
        }
    }
    if out.len() > MAX_STEM_LEN {
        let digest = Sha256::digest(title.as_bytes());
        let mut hashed = String::with_capacity(65);
        hashed.push('~');
        for b in digest {
            let _ = write!(hashed, "{b:02x}");
        }
        return hashed;
    }
    out
}

/// Decodes a file stem made by [`file_stem`] back to the title id; `None` for
/// hashed stems (`~…`) and for text that no title id maps to.
pub fn title_from_stem(stem: &str) -> Option<String> {
    let b = stem.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                if !hex
                    .iter()
                    .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(c))
                {
                    return None;
                }
                let s = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(s, 16).ok()?);
                i += 3;
            }
            c if c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-' => {
                out.push(c);
                i += 1;
            }
            _ => return None,
        }
    }
    let title = String::from_utf8(out).ok()?;
    // Rejects non-canonical stems such as "%61" for "a".
    (file_stem(&title) == stem).then_some(title)
}

/// The `shard_bits` an exporter uses for `titles` titles: the fewest (at most
/// [`MAX_SHARD_BITS`]) that keep the average shard at or below
/// [`TITLES_PER_SHARD`] titles. Depends only on the count, so the same input
/// gives the same layout.
pub fn shard_bits_for(titles: u64) -> u32 {
    let mut bits = 0;
    while bits < MAX_SHARD_BITS && titles > TITLES_PER_SHARD << bits {
        bits += 1;
    }
    bits
}

/// The shard of a title id among `2^bits` shards: the first 4 bytes of the
/// SHA-256 of the id's UTF-8 bytes, big-endian, shifted right by `32 - bits`
/// (0 when `bits` is 0). `bits` above 32 is read as 32.
///
/// ```
/// use alsoborrowed_feed::{shard_name, shard_of};
/// // SHA-256("9788702173512") starts with the bytes c0 02 83 e0.
/// assert_eq!(shard_name(shard_of("9788702173512", 12), 12), "c00");
/// assert_eq!(shard_of("9788702173512", 16), 0xc002);
/// assert_eq!(shard_of("anything", 0), 0);
/// ```
pub fn shard_of(title: &str, bits: u32) -> u32 {
    let digest = Sha256::digest(title.as_bytes());
    let first = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
    match bits.min(32) {
        0 => 0,
        b => first >> (32 - b),
    }
}

/// File stem of a shard: its number in lowercase hex, zero-padded to
/// `ceil(bits / 4)` digits (at least one), so names sort in shard order.
///
/// ```
/// use alsoborrowed_feed::shard_name;
/// assert_eq!(shard_name(0, 0), "0");
/// assert_eq!(shard_name(10, 11), "00a");
/// assert_eq!(shard_name(0xffff, 16), "ffff");
/// ```
pub fn shard_name(shard: u32, bits: u32) -> String {
    let width = bits.div_ceil(4).max(1) as usize;
    format!("{shard:0width$x}")
}

/// Whether `text` is a month of the form `YYYY-MM` (01 to 12).
pub fn is_month(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b[..4].iter().chain(&b[5..]).all(u8::is_ascii_digit)
        && matches!(text[5..].parse::<u8>(), Ok(1..=12))
}

/// The month after `month` (`"YYYY-MM"`), or `None` if it is not a month.
pub fn next_month(month: &str) -> Option<String> {
    if !is_month(month) {
        return None;
    }
    let year: u32 = month[..4].parse().ok()?;
    let m: u32 = month[5..].parse().ok()?;
    Some(if m == 12 {
        format!("{:04}-01", year + 1)
    } else {
        format!("{year:04}-{:02}", m + 1)
    })
}

/// A whole feed loaded into memory, for microsecond lookups.
#[derive(Debug, Clone)]
pub struct Feed {
    index: FeedIndex,
    dir: PathBuf,
    // Sorted by title so that `titles()` is deterministic.
    titles: Vec<ShardTitle>,
    by_title: HashMap<String, usize>,
}

impl Feed {
    /// Opens a published output: accepts the export directory (follows
    /// `current`), a release directory, or a feed directory (such as the
    /// export directory's `feed` link, the directory a web server serves).
    ///
    /// Loads `index.json` and every title or shard file, checking the format
    /// version, that each title is in the file its id names (its file stem,
    /// or its shard) and that every list is non-empty, at most `max_related`
    /// long and free of repeats. Both layouts and the older versions 1 and
    /// 2 are read, so a catalogue keeps working when an export switches
    /// layout (or rolls back across a format change).
    ///
    /// ```
    /// use alsoborrowed_feed::{Feed, FeedIndex, Layout, TitleFeed, file_stem};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let feed_dir = dir.path();
    /// let index = FeedIndex {
    ///     schema_version: alsoborrowed_feed::SCHEMA_VERSION,
    ///     layout: Layout::Titles,
    ///     shard_bits: None,
    ///     max_related: 20,
    ///     updated: "2025-01".into(),
    /// };
    /// std::fs::write(feed_dir.join("index.json"), serde_json::to_vec(&index)?)?;
    /// let title = TitleFeed {
    ///     schema_version: alsoborrowed_feed::SCHEMA_VERSION,
    ///     title: "ISBN 978/1".into(),
    ///     related: vec!["b42".into()],
    /// };
    /// std::fs::create_dir(feed_dir.join("titles"))?;
    /// let file = feed_dir.join("titles").join(format!("{}.json", file_stem(&title.title)));
    /// std::fs::write(file, serde_json::to_vec(&title)?)?;
    ///
    /// let feed = Feed::open(feed_dir)?;
    /// assert_eq!(feed.index().updated, "2025-01");
    /// assert_eq!(feed.titles().collect::<Vec<_>>(), ["ISBN 978/1"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn open(path: &Path) -> Result<Feed, FeedError> {
        let dir = Self::feed_dir(path)?;
        let index_path = dir.join(INDEX_FILE);
        let bytes = read_bytes(&index_path)?;
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = parse_json(&index_path, &bytes)?;
        let (index, mut titles) = match version.schema_version {
            SCHEMA_VERSION => {
                let index: FeedIndex = parse_json(&index_path, &bytes)?;
                if !is_month(&index.updated) {
                    return Err(FeedError::BadMonth { path: index_path });
                }
                let titles = match (index.layout, index.shard_bits) {
                    (Layout::Titles, None) => read_title_files(&dir, &index)?,
                    (Layout::Shards, Some(bits)) if bits <= MAX_SHARD_BITS => {
                        read_shard_files(&dir, &index, bits)?
                    }
                    _ => {
                        return Err(FeedError::ShardBits {
                            path: index_path,
                            version: SCHEMA_VERSION,
                        });
                    }
                };
                (index, titles)
            }
            legacy::TITLES_SCHEMA_VERSION | legacy::SHARDED_SCHEMA_VERSION => {
                legacy::read(&dir, &index_path, &bytes)?
            }
            found => {
                return Err(FeedError::SchemaVersion {
                    path: index_path,
                    found,
                    expected: SCHEMA_VERSION,
                });
            }
        };
        titles.sort_unstable_by(|a, b| a.title.cmp(&b.title));
        // Distinct file names and stem injectivity (per-title layout), or
        // distinct titles within a shard and one shard per title, make
        // titles distinct.
        let by_title = titles
            .iter()
            .enumerate()
            .map(|(i, t)| (t.title.clone(), i))
            .collect();
        Ok(Feed {
            index,
            dir,
            titles,
            by_title,
        })
    }

    fn feed_dir(path: &Path) -> Result<PathBuf, FeedError> {
        let candidates = [
            path.to_path_buf(),
            path.join(FEED_DIR),
            path.join(CURRENT_LINK).join(FEED_DIR),
        ];
        for dir in candidates {
            if dir.join(INDEX_FILE).is_file() {
                // Resolving `current` once means a later switch cannot mix
                // files of two releases into this feed.
                return std::fs::canonicalize(&dir)
                    .map_err(|source| FeedError::Io { path: dir, source });
            }
        }
        Err(FeedError::NotAFeed {
            path: path.to_path_buf(),
        })
    }

    /// The feed's index: format version, layout, list length and month. For
    /// a version 1 or 2 feed, the equivalent (with `updated` the month after
    /// its window and `schema_version` as found).
    pub fn index(&self) -> &FeedIndex {
        &self.index
    }

    /// The feed directory the feed was loaded from (`current` resolved).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Up to `n` titles related to `title`, best first; empty for a title
    /// with no published related titles.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use alsoborrowed_feed::{FeedIndex, Layout, TitleFeed, file_stem, SCHEMA_VERSION};
    /// # let tmp = tempfile::tempdir()?;
    /// # let export_dir = tmp.path();
    /// # let feed_dir = export_dir.join("feed");
    /// # std::fs::create_dir_all(feed_dir.join("titles"))?;
    /// # let files = [
    /// #     TitleFeed { schema_version: SCHEMA_VERSION, title: "9788702173512".into(),
    /// #         related: vec!["9788711321683".into(), "9788702284799".into()] },
    /// #     TitleFeed { schema_version: SCHEMA_VERSION, title: "9788711321683".into(),
    /// #         related: vec!["9788702173512".into()] },
    /// # ];
    /// # for f in &files {
    /// #     let name = format!("{}.json", file_stem(&f.title));
    /// #     std::fs::write(feed_dir.join("titles").join(name), serde_json::to_vec(f)?)?;
    /// # }
    /// # let index = FeedIndex { schema_version: SCHEMA_VERSION, layout: Layout::Titles,
    /// #     shard_bits: None, max_related: 20, updated: "2025-01".into() };
    /// # std::fs::write(feed_dir.join("index.json"), serde_json::to_vec(&index)?)?;
    /// let feed = alsoborrowed_feed::Feed::open(export_dir)?;
    /// assert_eq!(feed.similar("9788702173512", 1), ["9788711321683"]);
    /// assert!(feed.similar("not in the catalogue", 10).is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn similar(&self, title: &str, n: usize) -> &[String] {
        match self.by_title.get(title) {
            Some(&i) => {
                let related = &self.titles[i].related;
                &related[..n.min(related.len())]
            }
            None => &[],
        }
    }

    /// Every title that has related titles, in byte order.
    pub fn titles(&self) -> impl Iterator<Item = &str> {
        self.titles.iter().map(|t| t.title.as_str())
    }

    /// Number of titles that have related titles.
    pub fn len(&self) -> usize {
        self.titles.len()
    }

    /// Whether no title has related titles.
    pub fn is_empty(&self) -> bool {
        self.titles.is_empty()
    }
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, FeedError> {
    std::fs::read(path).map_err(|source| FeedError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_json<'a, T: Deserialize<'a>>(path: &Path, bytes: &'a [u8]) -> Result<T, FeedError> {
    serde_json::from_slice(bytes).map_err(|source| FeedError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, FeedError> {
    let bytes = read_bytes(path)?;
    parse_json(path, &bytes)
}

fn check_version(path: &Path, found: u32, expected: u32) -> Result<(), FeedError> {
    if found == expected {
        Ok(())
    } else {
        Err(FeedError::SchemaVersion {
            path: path.to_path_buf(),
            found,
            expected,
        })
    }
}

/// Why a published list breaks the format, if it does: empty, longer than
/// `max_related`, naming its own title, or repeating a title. Shared with
/// the exporter's check so both hold lists to the same rule.
pub fn list_problem<S: AsRef<str>>(
    title: &str,
    related: &[S],
    max_related: u32,
) -> Option<&'static str> {
    if related.is_empty() {
        return Some("a title has no related titles");
    }
    if related.len() as u64 > u64::from(max_related) {
        return Some("a list is longer than max_related");
    }
    if related.iter().any(|r| r.as_ref() == title) {
        return Some("a title is listed as related to itself");
    }
    let mut seen: Vec<&str> = related.iter().map(AsRef::as_ref).collect();
    seen.sort_unstable();
    if seen.windows(2).any(|w| w[0] == w[1]) {
        return Some("a list repeats a title");
    }
    None
}

/// Calls `each` on every entry of the per-title directory `titles/`, with
/// its path and file stem, skipping dot files (editors and rsync leave
/// them). A missing directory is an empty feed.
pub(crate) fn for_each_title_file(
    dir: &Path,
    mut each: impl FnMut(PathBuf, &str) -> Result<(), FeedError>,
) -> Result<(), FeedError> {
    let titles_dir = dir.join(TITLES_DIR);
    let entries = match std::fs::read_dir(&titles_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(FeedError::Io {
                path: titles_dir,
                source,
            });
        }
    };
    for entry in entries {
        let entry = entry.map_err(|source| FeedError::Io {
            path: titles_dir.clone(),
            source,
        })?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(FeedError::MisnamedTitleFile { path });
        };
        if name.starts_with('.') {
            continue;
        }
        let Some(stem) = name.strip_suffix(".json") else {
            return Err(FeedError::MisnamedTitleFile { path });
        };
        each(path.clone(), stem)?;
    }
    Ok(())
}

/// The titles of a per-title feed: one file per title in `titles/`.
fn read_title_files(dir: &Path, index: &FeedIndex) -> Result<Vec<ShardTitle>, FeedError> {
    let mut titles = Vec::new();
    for_each_title_file(dir, |path, stem| {
        let feed: TitleFeed = read_json(&path)?;
        check_version(&path, feed.schema_version, SCHEMA_VERSION)?;
        if file_stem(&feed.title) != stem {
            return Err(FeedError::MisnamedTitleFile { path });
        }
        if let Some(reason) = list_problem(&feed.title, &feed.related, index.max_related) {
            return Err(FeedError::BadList { path, reason });
        }
        titles.push(ShardTitle {
            title: feed.title,
            related: feed.related,
        });
        Ok(())
    })?;
    Ok(titles)
}

/// Why a shard file's titles break the layout, if they do: out of byte
/// order or repeated, or hashing to another shard.
pub fn shard_problem<'a>(
    titles: impl IntoIterator<Item = &'a str>,
    shard: u32,
    bits: u32,
) -> Option<&'static str> {
    let mut last: Option<&str> = None;
    for t in titles {
        if last.is_some_and(|l| l >= t) {
            return Some("titles are not in byte order or repeat");
        }
        if shard_of(t, bits) != shard {
            return Some("a title belongs to another shard");
        }
        last = Some(t);
    }
    None
}

/// The checks every shard file gets, whatever its version: its `shard`
/// field is its name, and its titles are in byte order and in this shard.
pub(crate) fn check_shard<'a>(
    path: &Path,
    field: &str,
    titles: impl IntoIterator<Item = &'a str>,
    shard: u32,
    bits: u32,
) -> Result<(), FeedError> {
    let bad = |reason| FeedError::BadShard {
        path: path.to_path_buf(),
        reason,
    };
    if field != shard_name(shard, bits) {
        return Err(bad("the shard field does not match the file name"));
    }
    match shard_problem(titles, shard, bits) {
        Some(reason) => Err(bad(reason)),
        None => Ok(()),
    }
}

/// The titles of a sharded feed: every one of the `2^bits` shard files must
/// be there, so a missing file is an error, not "no titles".
fn read_shard_files(
    dir: &Path,
    index: &FeedIndex,
    bits: u32,
) -> Result<Vec<ShardTitle>, FeedError> {
    let shards_dir = dir.join(SHARDS_DIR);
    let mut titles = Vec::new();
    for shard in 0..1u32 << bits {
        let name = shard_name(shard, bits);
        let path = shards_dir.join(format!("{name}.json"));
        let feed: ShardFeed = read_json(&path)?;
        check_version(&path, feed.schema_version, SCHEMA_VERSION)?;
        let titles_of = feed.titles.iter().map(|t| t.title.as_str());
        check_shard(&path, &feed.shard, titles_of, shard, bits)?;
        for t in &feed.titles {
            if let Some(reason) = list_problem(&t.title, &t.related, index.max_related) {
                return Err(FeedError::BadList {
                    path: path.clone(),
                    reason,
                });
            }
        }
        titles.extend(feed.titles);
    }
    Ok(titles)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stem_examples() {
        assert_eq!(file_stem("ISBN 978/1"), "%49%53%42%4E%20978%2F1");
        assert_eq!(file_stem(""), "");
        assert_eq!(file_stem(".."), "%2E%2E");
        assert_eq!(file_stem("a.b"), "a%2Eb");
        assert_eq!(file_stem("é"), "%C3%A9");
        assert_ne!(file_stem("Ab"), file_stem("ab"));
    }

    #[test]
    fn long_ids_are_hashed_and_bounded() {
        let short_enough = "a".repeat(MAX_STEM_LEN);
        assert_eq!(file_stem(&short_enough), short_enough);
        let too_long = "a".repeat(MAX_STEM_LEN + 1);
        let stem = file_stem(&too_long);
        assert_eq!(stem.len(), 65);
        assert!(stem.starts_with('~'));
        // 67 escaped bytes are 201 characters.
        assert!(file_stem(&"A".repeat(67)).starts_with('~'));
        assert_eq!(file_stem(&"A".repeat(66)).len(), 198);
        assert_ne!(file_stem(&"b".repeat(300)), file_stem(&"b".repeat(301)));
    }

    #[test]
    fn stems_decode_back() {
        for id in ["ISBN 978/1", "..", "", "Ünïcode ✓", "a%2Fb"] {
            assert_eq!(title_from_stem(&file_stem(id)).as_deref(), Some(id));
        }
        assert_eq!(title_from_stem("%61"), None);
        assert_eq!(title_from_stem("%2f"), None);
        assert_eq!(title_from_stem("A"), None);
        assert_eq!(title_from_stem("%4"), None);
        assert_eq!(title_from_stem(&file_stem(&"x".repeat(500))), None);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let text = r#"{"schema_version":3,"title":"a","related":[],"borrower":"x"}"#;
        assert!(serde_json::from_str::<TitleFeed>(text).is_err());
    }

    proptest! {
        #[test]
        fn stems_are_safe_and_injective(a in any::<String>(), b in any::<String>()) {
            let (sa, sb) = (file_stem(&a), file_stem(&b));
            for s in [&sa, &sb] {
                prop_assert!(s.len() <= MAX_STEM_LEN);
                prop_assert!(s.bytes().all(|c| c.is_ascii_lowercase()
                    || c.is_ascii_digit()
                    || b"_-%~ABCDEF".contains(&c)));
                prop_assert!(!s.starts_with('.'));
            }
            prop_assert_eq!(sa == sb, a == b);
        }

        #[test]
        fn stems_are_injective_on_near_misses(a in "[a-zA-Z0-9 ./%~_-]{0,80}") {
            // Case flips and a %XX spelled out literally must not collide.
            let flipped: String = a.chars().map(|c| if c.is_ascii_lowercase() {
                c.to_ascii_uppercase() } else { c.to_ascii_lowercase() }).collect();
            prop_assert_eq!(file_stem(&a) == file_stem(&flipped), a == flipped);
            let spelled = file_stem(&a);
            prop_assert_eq!(file_stem(&spelled) == file_stem(&a), spelled == a);
            prop_assert_eq!(title_from_stem(&file_stem(&a)), Some(a.clone()));
        }

        #[test]
        fn long_stems_are_injective(a in "[A-Z]{60,120}", b in "[A-Z]{60,120}") {
            prop_assert_eq!(file_stem(&a) == file_stem(&b), a == b);
        }
    }
}
