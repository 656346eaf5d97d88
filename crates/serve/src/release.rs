//! One release held in memory: the feed for lookups and its files for
//! static serving, loaded together from one resolved release directory so a
//! request never sees files of two releases.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use alsoborrowed_feed::{
    CURRENT_LINK, FEED_DIR, Feed, FeedError, INDEX_FILE, SHARDS_DIR, TITLES_DIR,
};
use axum::body::Bytes;
use axum::http::HeaderValue;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Largest feed file read into memory (a shard is about 25 KB; a title file
/// far less). A bigger file makes the release broken rather than the server
/// unbounded.
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// One static file of the feed, with its entity tag.
#[derive(Debug)]
pub(crate) struct StaticFile {
    pub(crate) body: Bytes,
    pub(crate) etag: HeaderValue,
}

/// A title's whole list, serialized as the API answers it.
#[derive(Debug)]
pub(crate) struct WholeList {
    /// The JSON answer.
    pub(crate) body: Bytes,
    /// How many titles it lists: a `limit` at least this long gets `body`.
    pub(crate) len: usize,
}

/// The API's answer for a title, `{"title":…,"related":[…]}`.
#[derive(Serialize)]
pub(crate) struct List<'a> {
    pub(crate) title: &'a str,
    pub(crate) related: &'a [String],
}

/// A loaded release: the feed, its files and a short content hash.
#[derive(Debug)]
pub struct Release {
    pub(crate) feed: Feed,
    /// 16 hex digits of the SHA-256 over every file's path and hash.
    pub(crate) id: String,
    /// Keyed by the path below the feed directory, e.g. `shards/c00.json`.
    pub(crate) files: HashMap<String, StaticFile>,
    /// Every title's whole list as the API's JSON body, serialized once
    /// here: the common request (no smaller `limit`) is one lookup and a
    /// reference-counted clone, with no serializing or allocating. It costs
    /// about the size of the feed's files again in memory.
    pub(crate) lists: HashMap<Box<str>, WholeList>,
    /// The entity tag of those whole lists, `"<id>-<max_related>"`.
    pub(crate) lists_etag: HeaderValue,
}

impl Release {
    /// Loads the feed at `path` (export dir, release dir or feed dir) and
    /// every file of its feed directory.
    pub fn load(path: &Path) -> Result<Release, FeedError> {
        let feed = Feed::open(path)?;
        // `feed.dir()` has `current` resolved: every file below comes from
        // the one release the feed was read from.
        let dir = feed.dir().to_path_buf();
        let mut files = HashMap::new();
        files.insert(INDEX_FILE.to_owned(), read_file(&dir.join(INDEX_FILE))?);
        for sub in [SHARDS_DIR, TITLES_DIR] {
            let sub_dir = dir.join(sub);
            let entries = match std::fs::read_dir(&sub_dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(FeedError::Io {
                        path: sub_dir,
                        source,
                    });
                }
            };
            for entry in entries {
                let entry = entry.map_err(|source| FeedError::Io {
                    path: sub_dir.clone(),
                    source,
                })?;
                let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                    continue;
                };
                if name.starts_with('.') || !name.ends_with(".json") {
                    continue;
                }
                let file = read_file(&entry.path())?;
                files.insert(format!("{sub}/{name}"), file);
            }
        }
        let mut names: Vec<&String> = files.keys().collect();
        names.sort_unstable();
        let mut hasher = Sha256::new();
        for name in names {
            hasher.update((name.len() as u64).to_le_bytes());
            hasher.update(name.as_bytes());
            hasher.update(files[name].etag.as_bytes());
        }
        let id = hex16(&hasher.finalize());
        let max = feed.index().max_related as usize;
        let lists = feed
            .titles()
            .map(|title| {
                let related = feed.similar(title, max);
                // Serializing strings into a Vec cannot fail.
                let body = serde_json::to_vec(&List { title, related }).unwrap_or_default();
                let whole = WholeList {
                    body: Bytes::from(body),
                    len: related.len(),
                };
                (Box::from(title), whole)
            })
            .collect();
        let lists_etag = etag_value(&format!("\"{id}-{max}\""));
        Ok(Release {
            feed,
            id,
            files,
            lists,
            lists_etag,
        })
    }

    /// The feed of this release.
    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Short content hash of the release (16 hex digits), also the base of
    /// the API's entity tags.
    pub fn id(&self) -> &str {
        &self.id
    }
}

pub(crate) fn read_file(path: &Path) -> Result<StaticFile, FeedError> {
    let io = |source| FeedError::Io {
        path: path.to_path_buf(),
        source,
    };
    let len = std::fs::metadata(path).map_err(io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("file larger than {MAX_FILE_BYTES} bytes"),
        )));
    }
    let body = std::fs::read(path).map_err(io)?;
    let etag = etag_value(&format!("\"{}\"", hex16(&Sha256::digest(&body))));
    Ok(StaticFile {
        body: Bytes::from(body),
        etag,
    })
}

/// An entity tag as a header value; ours are quoted hex digits and digits,
/// always valid.
pub(crate) fn etag_value(tag: &str) -> HeaderValue {
    HeaderValue::from_str(tag).unwrap_or(HeaderValue::from_static("\"\""))
}

fn hex16(digest: &[u8]) -> String {
    let mut s = String::with_capacity(16);
    for b in &digest[..8] {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The feed directory `path` names now, with every symlink resolved: the
/// same candidates as `Feed::open`. Comparing it with the loaded feed's
/// directory tells whether `current` has moved.
pub(crate) fn resolve_feed_dir(path: &Path) -> Option<PathBuf> {
    [
        path.to_path_buf(),
        path.join(FEED_DIR),
        path.join(CURRENT_LINK).join(FEED_DIR),
    ]
    .into_iter()
    .find(|dir| dir.join(INDEX_FILE).is_file())
    .and_then(|dir| std::fs::canonicalize(dir).ok())
}
