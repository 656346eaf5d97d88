//! Feed formats of versions 1 and 2, which carried scores: still read by
//! [`crate::Feed::open`] (scores dropped, order kept), never written.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{
    FeedError, FeedIndex, Layout, MAX_SHARD_BITS, SHARDS_DIR, ShardTitle, check_shard,
    check_version, file_stem, for_each_title_file, next_month, parse_json, read_json, shard_name,
};

/// Version of the old per-title layout.
pub const TITLES_SCHEMA_VERSION: u32 = 1;

/// Version of the old sharded layout.
pub const SHARDED_SCHEMA_VERSION: u32 = 2;

/// The loan months a version 1 or 2 feed was computed from, both included.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// First month, `"YYYY-MM"`.
    pub first: String,
    /// Last month, `"YYYY-MM"`.
    pub last: String,
}

/// Contents of a version 1 or 2 `index.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LegacyIndex {
    /// 1 or 2.
    pub schema_version: u32,
    /// Loan months the feed was computed from.
    pub window: Window,
    /// Association measure that ranked related titles.
    pub measure: String,
    /// Every published pair was borrowed by at least this many distinct borrowers.
    pub min_support: u32,
    /// Most titles one borrower contributed to the counts.
    pub max_titles_per_borrower: u32,
    /// Most related titles listed per title.
    pub max_related: u32,
    /// Number of titles with related titles.
    pub titles: u64,
    /// Version 2 only: titles are spread over `2^shard_bits` shard files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_bits: Option<u32>,
}

/// A version 1 `titles/<stem>.json` file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LegacyTitleFeed {
    /// 1.
    pub schema_version: u32,
    /// Catalogue identifier of the title.
    pub title: String,
    /// Related titles, best first.
    pub related: Vec<ScoredTitle>,
}

/// A version 2 `shards/<name>.json` file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LegacyShardFeed {
    /// 2.
    pub schema_version: u32,
    /// The shard's name, as in its file name.
    pub shard: String,
    /// Titles of this shard that have related titles; may be empty.
    pub titles: Vec<LegacyShardTitle>,
}

/// One title of a version 2 shard file.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LegacyShardTitle {
    /// Catalogue identifier of the title.
    pub title: String,
    /// Related titles, best first; never empty.
    pub related: Vec<ScoredTitle>,
}

/// One related title of a version 1 or 2 feed, with its score.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScoredTitle {
    /// Catalogue identifier of the related title.
    pub title: String,
    /// Association score.
    pub score: f64,
}

/// Reads a version 1 or 2 feed whose index is `bytes`, as the current
/// in-memory form.
pub(crate) fn read(
    dir: &Path,
    index_path: &Path,
    bytes: &[u8],
) -> Result<(FeedIndex, Vec<ShardTitle>), FeedError> {
    let old: LegacyIndex = parse_json(index_path, bytes)?;
    let (layout, titles) = match (old.schema_version, old.shard_bits) {
        (TITLES_SCHEMA_VERSION, None) => (Layout::Titles, read_titles(dir)?),
        (SHARDED_SCHEMA_VERSION, Some(bits)) if bits <= MAX_SHARD_BITS => {
            (Layout::Shards, read_shards(dir, bits)?)
        }
        (version, _) => {
            return Err(FeedError::ShardBits {
                path: index_path.to_path_buf(),
                version,
            });
        }
    };
    if titles.len() as u64 != old.titles {
        return Err(FeedError::TitleCount {
            path: dir.to_path_buf(),
            expected: old.titles,
            found: titles.len() as u64,
        });
    }
    let updated = next_month(&old.window.last).ok_or_else(|| FeedError::BadMonth {
        path: index_path.to_path_buf(),
    })?;
    let index = FeedIndex {
        schema_version: old.schema_version,
        layout,
        shard_bits: old.shard_bits,
        max_related: old.max_related,
        updated,
    };
    Ok((index, titles))
}

fn ranked(path: &Path, related: Vec<ScoredTitle>) -> Result<Vec<String>, FeedError> {
    match related.iter().position(|r| !r.score.is_finite()) {
        Some(entry) => Err(FeedError::BadScore {
            path: path.to_path_buf(),
            entry,
        }),
        None => Ok(related.into_iter().map(|r| r.title).collect()),
    }
}

fn read_titles(dir: &Path) -> Result<Vec<ShardTitle>, FeedError> {
    let mut titles = Vec::new();
    for_each_title_file(dir, |path, stem| {
        let feed: LegacyTitleFeed = read_json(&path)?;
        check_version(&path, feed.schema_version, TITLES_SCHEMA_VERSION)?;
        if file_stem(&feed.title) != stem {
            return Err(FeedError::MisnamedTitleFile { path });
        }
        titles.push(ShardTitle {
            title: feed.title,
            related: ranked(&path, feed.related)?,
        });
        Ok(())
    })?;
    Ok(titles)
}

fn read_shards(dir: &Path, bits: u32) -> Result<Vec<ShardTitle>, FeedError> {
    let mut titles = Vec::new();
    for shard in 0..1u32 << bits {
        let name = shard_name(shard, bits);
        let path = dir.join(SHARDS_DIR).join(format!("{name}.json"));
        let feed: LegacyShardFeed = read_json(&path)?;
        check_version(&path, feed.schema_version, SHARDED_SCHEMA_VERSION)?;
        let titles_of = feed.titles.iter().map(|t| t.title.as_str());
        check_shard(&path, &feed.shard, titles_of, shard, bits)?;
        for t in feed.titles {
            if t.related.is_empty() {
                return Err(FeedError::BadShard {
                    path: path.clone(),
                    reason: "a title has no related titles",
                });
            }
            titles.push(ShardTitle {
                title: t.title,
                related: ranked(&path, t.related)?,
            });
        }
    }
    Ok(titles)
}
