//! Feeds of the older versions 1 and 2 (with scores) still open, in every
//! directory form, and are checked as before.

use std::path::Path;

use alsoborrowed_feed::legacy::{
    LegacyIndex as FeedIndex, LegacyShardFeed as ShardFeed, LegacyShardTitle as ShardTitle,
    LegacyTitleFeed as TitleFeed, SHARDED_SCHEMA_VERSION, ScoredTitle as RelatedTitle,
    TITLES_SCHEMA_VERSION as SCHEMA_VERSION, Window,
};
use alsoborrowed_feed::{
    Feed, FeedError, Layout, MAX_SHARD_BITS, file_stem, shard_bits_for, shard_name, shard_of,
};
use proptest::prelude::*;

fn index(titles: u64) -> FeedIndex {
    FeedIndex {
        schema_version: SCHEMA_VERSION,
        window: Window {
            first: "2023-07".into(),
            last: "2024-06".into(),
        },
        measure: "jaccard".into(),
        min_support: 3,
        max_titles_per_borrower: 50,
        max_related: 10,
        titles,
        shard_bits: None,
    }
}

fn sharded_index(titles: u64, bits: u32) -> FeedIndex {
    FeedIndex {
        schema_version: SHARDED_SCHEMA_VERSION,
        shard_bits: Some(bits),
        ..index(titles)
    }
}

/// The shard files of `titles` as an exporter writes them: every shard,
/// titles in byte order.
fn shards(titles: &[TitleFeed], bits: u32) -> Vec<ShardFeed> {
    let mut out: Vec<ShardFeed> = (0..1u32 << bits)
        .map(|s| ShardFeed {
            schema_version: SHARDED_SCHEMA_VERSION,
            shard: shard_name(s, bits),
            titles: Vec::new(),
        })
        .collect();
    let mut sorted = titles.to_vec();
    sorted.sort_by(|a, b| a.title.cmp(&b.title));
    for t in sorted {
        out[shard_of(&t.title, bits) as usize]
            .titles
            .push(ShardTitle {
                title: t.title,
                related: t.related,
            });
    }
    out
}

/// Creates `feed_dir/files_dir` and writes `feed_dir/index.json`.
fn write_index(feed_dir: &Path, files_dir: &str, index: &FeedIndex) {
    std::fs::create_dir_all(feed_dir.join(files_dir)).unwrap();
    std::fs::write(
        feed_dir.join("index.json"),
        serde_json::to_vec(index).unwrap(),
    )
    .unwrap();
}

fn write_sharded(feed_dir: &Path, index: &FeedIndex, shards: &[ShardFeed]) {
    write_index(feed_dir, "shards", index);
    for s in shards {
        let path = feed_dir.join("shards").join(format!("{}.json", s.shard));
        std::fs::write(path, serde_json::to_vec(s).unwrap()).unwrap();
    }
}

fn title(id: &str, related: &[(&str, f64)]) -> TitleFeed {
    TitleFeed {
        schema_version: SCHEMA_VERSION,
        title: id.into(),
        related: related
            .iter()
            .map(|&(t, score)| RelatedTitle {
                title: t.into(),
                score,
            })
            .collect(),
    }
}

fn write_feed(feed_dir: &Path, index: &FeedIndex, titles: &[TitleFeed]) {
    write_index(feed_dir, "titles", index);
    for t in titles {
        let path = feed_dir
            .join("titles")
            .join(format!("{}.json", file_stem(&t.title)));
        std::fs::write(path, serde_json::to_vec(t).unwrap()).unwrap();
    }
}

fn sample() -> Vec<TitleFeed> {
    vec![
        title("b/2", &[("a 1", 0.5), ("C.3", 0.25), ("..", 0.125)]),
        title("a 1", &[("b/2", 0.5)]),
        title("B/2", &[]),
    ]
}

#[test]
fn opens_feed_release_and_export_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let release = tmp.path().join("releases").join("r1");
    write_feed(&release.join("feed"), &index(3), &sample());
    std::os::unix::fs::symlink("releases/r1", tmp.path().join("current")).unwrap();

    for path in [
        tmp.path().to_path_buf(),
        release.clone(),
        release.join("feed"),
    ] {
        let feed = Feed::open(&path).unwrap();
        assert_eq!(feed.index().schema_version, SCHEMA_VERSION);
        assert_eq!(feed.index().layout, Layout::Titles);
        assert_eq!(feed.index().max_related, 10);
        assert_eq!(feed.index().updated, "2024-07");
        assert_eq!(feed.titles().collect::<Vec<_>>(), ["B/2", "a 1", "b/2"]);
        assert_eq!(feed.len(), 3);
        let all: Vec<&str> = feed.similar("b/2", 10).iter().map(String::as_str).collect();
        assert_eq!(all, ["a 1", "C.3", ".."]);
        assert_eq!(feed.similar("b/2", 2).len(), 2);
        assert_eq!(feed.similar("b/2", 0).len(), 0);
        assert!(feed.similar("B/2", 5).is_empty());
        assert!(feed.similar("c.3", 5).is_empty());
        assert_eq!(feed.dir(), release.join("feed").canonicalize().unwrap());
    }
}

#[test]
fn feed_stays_on_the_release_it_opened() {
    let tmp = tempfile::tempdir().unwrap();
    write_feed(&tmp.path().join("releases/r1/feed"), &index(3), &sample());
    write_feed(
        &tmp.path().join("releases/r2/feed"),
        &index(1),
        &sample()[..1],
    );
    std::os::unix::fs::symlink("releases/r1", tmp.path().join("current")).unwrap();
    let old = Feed::open(tmp.path()).unwrap();
    std::os::unix::fs::symlink("releases/r2", tmp.path().join("current.tmp")).unwrap();
    std::fs::rename(tmp.path().join("current.tmp"), tmp.path().join("current")).unwrap();
    let new = Feed::open(tmp.path()).unwrap();
    assert_eq!(old.len(), 3);
    assert_eq!(new.len(), 1);
    assert!(old.dir().ends_with("r1/feed"));
}

#[test]
fn empty_feed_without_titles_dir_opens() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("index.json"),
        serde_json::to_vec(&index(0)).unwrap(),
    )
    .unwrap();
    let feed = Feed::open(tmp.path()).unwrap();
    assert!(feed.is_empty());
    assert_eq!(feed.titles().count(), 0);
}

#[test]
fn missing_feed_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(matches!(err, FeedError::NotAFeed { .. }), "{err}");
}

#[test]
fn wrong_version_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut idx = index(0);
    idx.schema_version = 9;
    write_feed(tmp.path(), &idx, &[]);
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(
        matches!(
            err,
            FeedError::SchemaVersion {
                found: 9,
                expected: 3,
                ..
            }
        ),
        "{err}"
    );

    let mut titles = sample();
    titles[1].schema_version = 7;
    let tmp = tempfile::tempdir().unwrap();
    write_feed(tmp.path(), &index(3), &titles);
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(
        matches!(err, FeedError::SchemaVersion { found: 7, .. }),
        "{err}"
    );
}

#[test]
fn misnamed_title_file_is_refused_without_naming_the_title() {
    let tmp = tempfile::tempdir().unwrap();
    write_feed(tmp.path(), &index(3), &sample());
    let secret_title = "a 1";
    std::fs::rename(
        tmp.path()
            .join("titles")
            .join(format!("{}.json", file_stem(secret_title))),
        tmp.path().join("titles/zzz.json"),
    )
    .unwrap();
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(matches!(err, FeedError::MisnamedTitleFile { .. }), "{err}");
    assert!(err.to_string().contains("zzz.json"), "{err}");
    assert!(!err.to_string().contains(secret_title), "{err}");
}

#[test]
fn count_mismatch_and_bad_json_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    write_feed(tmp.path(), &index(4), &sample());
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(
        matches!(
            err,
            FeedError::TitleCount {
                expected: 4,
                found: 3,
                ..
            }
        ),
        "{err}"
    );

    let tmp = tempfile::tempdir().unwrap();
    write_feed(tmp.path(), &index(3), &sample());
    let path = tmp
        .path()
        .join("titles")
        .join(format!("{}.json", file_stem("b/2")));
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen('{', r#"{"borrowers":["x"],"#, 1)).unwrap();
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(matches!(err, FeedError::Json { .. }), "{err}");
    assert!(!err.to_string().contains("borrowers"), "{err}");

    std::fs::write(&path, text.replace("0.5", "null")).unwrap();
    assert!(matches!(
        Feed::open(tmp.path()),
        Err(FeedError::Json { .. })
    ));
    std::fs::write(&path, text.replace("0.5", "1e999")).unwrap();
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(
        matches!(err, FeedError::Json { .. } | FeedError::BadScore { .. }),
        "{err}"
    );
}

#[test]
fn serialized_form_is_stable() {
    let t = title("x", &[("y", 1.5)]);
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        r#"{"schema_version":1,"title":"x","related":[{"title":"y","score":1.5}]}"#
    );
    let i = index(2);
    assert_eq!(
        serde_json::to_string(&i).unwrap(),
        r#"{"schema_version":1,"window":{"first":"2023-07","last":"2024-06"},"measure":"jaccard","min_support":3,"max_titles_per_borrower":50,"max_related":10,"titles":2}"#
    );
}

#[test]
fn sharded_feed_answers_like_the_per_title_feed() {
    let titles: Vec<TitleFeed> = sample()
        .into_iter()
        .filter(|t| !t.related.is_empty())
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    write_feed(&tmp.path().join("v1"), &index(2), &titles);
    for bits in [0, 1, 3] {
        let dir = tmp.path().join(format!("v2-{bits}"));
        write_sharded(&dir, &sharded_index(2, bits), &shards(&titles, bits));
        let (v1, v2) = (
            Feed::open(&tmp.path().join("v1")).unwrap(),
            Feed::open(&dir).unwrap(),
        );
        assert_eq!(v2.index().shard_bits, Some(bits));
        assert_eq!(
            v1.titles().collect::<Vec<_>>(),
            v2.titles().collect::<Vec<_>>()
        );
        for t in ["a 1", "b/2", "B/2", "missing"] {
            assert_eq!(v1.similar(t, 10), v2.similar(t, 10), "{t}");
        }
    }
}

#[test]
fn shard_bits_must_fit_the_version() {
    let tmp = tempfile::tempdir().unwrap();
    for (idx, what) in [
        (
            FeedIndex {
                shard_bits: None,
                ..sharded_index(0, 0)
            },
            "version 2 without bits",
        ),
        (
            FeedIndex {
                shard_bits: Some(0),
                ..index(0)
            },
            "version 1 with bits",
        ),
        (sharded_index(0, MAX_SHARD_BITS + 1), "too many bits"),
    ] {
        write_sharded(tmp.path(), &idx, &shards(&[], 0));
        let err = Feed::open(tmp.path()).unwrap_err();
        assert!(matches!(err, FeedError::ShardBits { .. }), "{what}: {err}");
    }
}

#[test]
fn broken_shards_are_refused_without_naming_a_title() {
    let titles: Vec<TitleFeed> = (0..40)
        .map(|i| title(&format!("secret-{i}"), &[("other", 1.0)]))
        .collect();
    let bits = 2;
    let good = shards(&titles, bits);
    let check = |shards: &[ShardFeed], count: u64, want: &str| {
        let tmp = tempfile::tempdir().unwrap();
        write_sharded(tmp.path(), &sharded_index(count, bits), shards);
        let err = Feed::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
        assert!(!err.to_string().contains("secret-"), "{err}");
        err
    };
    {
        let tmp = tempfile::tempdir().unwrap();
        write_sharded(tmp.path(), &sharded_index(40, bits), &good);
        assert_eq!(Feed::open(tmp.path()).unwrap().len(), 40);
    }
    let err = check(&good[1..], 40, "shards/0.json");
    assert!(matches!(err, FeedError::Io { .. }), "{err}");
    let err = check(&good, 41, "41 titles");
    assert!(
        matches!(err, FeedError::TitleCount { found: 40, .. }),
        "{err}"
    );

    let mut moved = good.clone();
    let t = moved[0].titles.pop().unwrap();
    moved[1].titles.push(t);
    moved[1].titles.sort_by(|a, b| a.title.cmp(&b.title));
    check(&moved, 40, "belongs to another shard");

    let mut unsorted = good.clone();
    unsorted[0].titles.reverse();
    check(&unsorted, 40, "byte order");
    let mut repeated = good.clone();
    let t = repeated[0].titles[0].clone();
    repeated[0].titles.insert(0, t);
    check(&repeated, 41, "byte order");

    {
        let tmp = tempfile::tempdir().unwrap();
        write_sharded(tmp.path(), &sharded_index(40, bits), &good);
        let mut renamed = good[2].clone();
        renamed.shard = "3".into();
        std::fs::write(
            tmp.path().join("shards/2.json"),
            serde_json::to_vec(&renamed).unwrap(),
        )
        .unwrap();
        let err = Feed::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains("shard field"), "{err}");
    }

    let mut empty = good.clone();
    empty[3].titles[0].related.clear();
    check(&empty, 40, "no related titles");

    let mut old = good.clone();
    old[1].schema_version = SCHEMA_VERSION;
    let err = check(&old, 40, "schema_version 1");
    assert!(
        matches!(
            err,
            FeedError::SchemaVersion {
                found: 1,
                expected: 2,
                ..
            }
        ),
        "{err}"
    );

    let mut bad_score = good;
    bad_score[0].titles[0].related[0].score = f64::NAN;
    // NaN serializes as null, which the format refuses.
    let err = check(&bad_score, 40, "not a valid feed file");
    assert!(matches!(err, FeedError::Json { .. }), "{err}");
}

#[test]
fn shard_layout_reference_values() {
    // The catalogue-side function (docs/feed.md) must give these.
    assert_eq!(shard_of("9788702173512", 12), 0xc00);
    assert_eq!(shard_of("9788702173512", 1), 1);
    assert_eq!(shard_of("", 8), 0xe3); // SHA-256("") = e3b0c442...
    assert_eq!(shard_name(0x0a3, 12), "0a3");
    assert_eq!(shard_name(5, 3), "5");
    assert_eq!(shard_bits_for(0), 0);
    assert_eq!(shard_bits_for(32), 0);
    assert_eq!(shard_bits_for(33), 1);
    assert_eq!(shard_bits_for(80_350), 12);
    assert_eq!(shard_bits_for(u64::MAX), MAX_SHARD_BITS);
    let serialized = serde_json::to_string(&sharded_index(2, 3)).unwrap();
    assert!(
        serialized.ends_with(r#""titles":2,"shard_bits":3}"#),
        "{serialized}"
    );
}

proptest! {
    #[test]
    fn every_title_is_found_in_its_shard(
        ids in proptest::collection::btree_set("[ -~]{1,12}", 0..200),
    ) {
        let titles: Vec<TitleFeed> = ids
            .iter()
            .map(|id| title(id, &[("r", 2.5)]))
            .collect();
        let bits = shard_bits_for(titles.len() as u64);
        let all = shards(&titles, bits);
        prop_assert!(all.iter().all(|s| s.titles.len() as u64 <= 8 * alsoborrowed_feed::TITLES_PER_SHARD));
        let tmp = tempfile::tempdir().unwrap();
        write_sharded(tmp.path(), &sharded_index(titles.len() as u64, bits), &all);
        let feed = Feed::open(tmp.path()).unwrap();
        prop_assert_eq!(feed.titles().collect::<Vec<_>>(), ids.iter().map(String::as_str).collect::<Vec<_>>());
        for id in &ids {
            prop_assert_eq!(feed.similar(id, 5).len(), 1);
        }
    }
}
