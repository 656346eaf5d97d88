//! Integration tests: opening feeds laid out as export, release, served and
//! feed directories, in both layouts of the current version and the older ones.

mod legacy;

use std::path::Path;

use alsoborrowed_feed::{
    Feed, FeedError, FeedIndex, Layout, SCHEMA_VERSION, ShardFeed, ShardTitle, TitleFeed,
    file_stem, shard_bits_for, shard_name, shard_of,
};
use proptest::prelude::*;

fn index(layout: Layout, shard_bits: Option<u32>) -> FeedIndex {
    FeedIndex {
        schema_version: SCHEMA_VERSION,
        layout,
        shard_bits,
        max_related: 3,
        updated: "2024-07".into(),
    }
}

fn entry(id: &str, related: &[&str]) -> ShardTitle {
    ShardTitle {
        title: id.into(),
        related: related.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn sample() -> Vec<ShardTitle> {
    vec![
        entry("b/2", &["a 1", "C.3", ".."]),
        entry("a 1", &["b/2"]),
        entry("9788702173512", &["a 1", "b/2"]),
    ]
}

fn write_json<T: serde::Serialize>(path: &Path, value: &T) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
}

fn write_titles(feed_dir: &Path, titles: &[ShardTitle]) {
    write_json(&feed_dir.join("index.json"), &index(Layout::Titles, None));
    for t in titles {
        let file = TitleFeed {
            schema_version: SCHEMA_VERSION,
            title: t.title.clone(),
            related: t.related.clone(),
        };
        write_json(
            &feed_dir
                .join("titles")
                .join(format!("{}.json", file_stem(&t.title))),
            &file,
        );
    }
}

fn shard_files(titles: &[ShardTitle], bits: u32) -> Vec<ShardFeed> {
    let mut out: Vec<ShardFeed> = (0..1u32 << bits)
        .map(|s| ShardFeed {
            schema_version: SCHEMA_VERSION,
            shard: shard_name(s, bits),
            titles: Vec::new(),
        })
        .collect();
    let mut sorted = titles.to_vec();
    sorted.sort_by(|a, b| a.title.cmp(&b.title));
    for t in sorted {
        out[shard_of(&t.title, bits) as usize].titles.push(t);
    }
    out
}

fn write_shards(feed_dir: &Path, shards: &[ShardFeed], bits: u32) {
    write_json(
        &feed_dir.join("index.json"),
        &index(Layout::Shards, Some(bits)),
    );
    for s in shards {
        write_json(
            &feed_dir.join("shards").join(format!("{}.json", s.shard)),
            s,
        );
    }
}

#[test]
fn opens_export_release_served_and_feed_directories() {
    let tmp = tempfile::tempdir().unwrap();
    let release = tmp.path().join("releases").join("r1");
    write_shards(&release.join("feed"), &shard_files(&sample(), 1), 1);
    std::os::unix::fs::symlink("releases/r1", tmp.path().join("current")).unwrap();
    // The directory a web server serves: a fixed link through `current`.
    std::os::unix::fs::symlink("current/feed", tmp.path().join("served")).unwrap();
    for path in [
        tmp.path().to_path_buf(),
        release.clone(),
        release.join("feed"),
        tmp.path().join("served"),
    ] {
        let feed = Feed::open(&path).unwrap();
        assert_eq!(feed.index(), &index(Layout::Shards, Some(1)));
        assert_eq!(
            feed.titles().collect::<Vec<_>>(),
            ["9788702173512", "a 1", "b/2"]
        );
        assert_eq!(feed.similar("b/2", 10), ["a 1", "C.3", ".."]);
        assert_eq!(feed.similar("b/2", 2), ["a 1", "C.3"]);
        assert!(feed.similar("b/2", 0).is_empty());
        assert!(feed.similar("C.3", 5).is_empty());
        assert_eq!(feed.dir(), release.join("feed").canonicalize().unwrap());
    }
}

#[test]
fn both_layouts_answer_alike() {
    let tmp = tempfile::tempdir().unwrap();
    write_titles(&tmp.path().join("titles"), &sample());
    let per_title = Feed::open(&tmp.path().join("titles")).unwrap();
    for bits in [0, 1, 3] {
        let dir = tmp.path().join(format!("shards-{bits}"));
        write_shards(&dir, &shard_files(&sample(), bits), bits);
        let sharded = Feed::open(&dir).unwrap();
        assert_eq!(
            per_title.titles().collect::<Vec<_>>(),
            sharded.titles().collect::<Vec<_>>()
        );
        for t in ["a 1", "b/2", "9788702173512", "missing"] {
            assert_eq!(per_title.similar(t, 10), sharded.similar(t, 10), "{t}");
        }
    }
}

#[test]
fn serialized_form_holds_order_and_no_numbers_but_the_format_s() {
    let t = TitleFeed {
        schema_version: SCHEMA_VERSION,
        title: "x".into(),
        related: vec!["y".into(), "z".into()],
    };
    assert_eq!(
        serde_json::to_string(&t).unwrap(),
        r#"{"schema_version":3,"title":"x","related":["y","z"]}"#
    );
    assert_eq!(
        serde_json::to_string(&index(Layout::Shards, Some(12))).unwrap(),
        r#"{"schema_version":3,"layout":"shards","shard_bits":12,"max_related":3,"updated":"2024-07"}"#
    );
    assert_eq!(
        serde_json::to_string(&index(Layout::Titles, None)).unwrap(),
        r#"{"schema_version":3,"layout":"titles","max_related":3,"updated":"2024-07"}"#
    );
}

#[test]
fn broken_lists_and_indexes_are_refused_without_naming_a_title() {
    let check = |titles: &[ShardTitle], want: &str| {
        let tmp = tempfile::tempdir().unwrap();
        write_shards(tmp.path(), &shard_files(titles, 1), 1);
        let err = Feed::open(tmp.path()).unwrap_err();
        assert!(err.to_string().contains(want), "{want}: {err}");
        assert!(!err.to_string().contains("secret-"), "{err}");
    };
    check(&[entry("secret-1", &[])], "no related titles");
    check(
        &[entry("secret-1", &["a", "b", "c", "d"])],
        "longer than max_related",
    );
    check(&[entry("secret-1", &["a", "secret-1"])], "itself");
    check(&[entry("secret-1", &["a", "b", "a"])], "repeats");

    // Layout and shard_bits must agree; the month must be a month.
    let tmp = tempfile::tempdir().unwrap();
    for idx in [
        index(Layout::Shards, None),
        index(Layout::Titles, Some(0)),
        index(Layout::Shards, Some(17)),
    ] {
        write_json(&tmp.path().join("index.json"), &idx);
        let err = Feed::open(tmp.path()).unwrap_err();
        assert!(matches!(err, FeedError::ShardBits { .. }), "{err}");
    }
    let mut bad_month = index(Layout::Titles, None);
    bad_month.updated = "2024-13".into();
    write_json(&tmp.path().join("index.json"), &bad_month);
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(matches!(err, FeedError::BadMonth { .. }), "{err}");

    // Unknown fields, such as a score or a window, are errors.
    std::fs::write(
        tmp.path().join("index.json"),
        r#"{"schema_version":3,"layout":"titles","max_related":3,"updated":"2024-07","min_support":5}"#,
    )
    .unwrap();
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(matches!(err, FeedError::Json { .. }), "{err}");
    let scored = r#"{"schema_version":3,"title":"a","related":[{"title":"b","score":1.5}]}"#;
    assert!(serde_json::from_str::<TitleFeed>(scored).is_err());
}

#[test]
fn a_missing_shard_is_an_error_not_an_empty_list() {
    let tmp = tempfile::tempdir().unwrap();
    write_shards(tmp.path(), &shard_files(&sample(), 2), 2);
    std::fs::remove_file(tmp.path().join("shards/1.json")).unwrap();
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(matches!(err, FeedError::Io { .. }), "{err}");
}

proptest! {
    #[test]
    fn every_title_is_found_in_its_shard(
        ids in proptest::collection::btree_set("[ -~]{1,12}", 0..200),
    ) {
        let titles: Vec<ShardTitle> = ids.iter().map(|id| entry(id, &["\u{1F4DA}"])).collect();
        let bits = shard_bits_for(titles.len() as u64);
        let tmp = tempfile::tempdir().unwrap();
        write_shards(tmp.path(), &shard_files(&titles, bits), bits);
        let feed = Feed::open(tmp.path()).unwrap();
        prop_assert_eq!(feed.titles().collect::<Vec<_>>(), ids.iter().map(String::as_str).collect::<Vec<_>>());
        for id in &ids {
            prop_assert_eq!(feed.similar(id, 5), ["\u{1F4DA}"]);
        }
    }
}
