//! Integration tests: opening feeds laid out as export, release and feed directories.

use std::path::Path;

use alsoborrowed_feed::{
    Feed, FeedError, FeedIndex, RelatedTitle, SCHEMA_VERSION, TitleFeed, Window, file_stem,
};

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
    std::fs::create_dir_all(feed_dir.join("titles")).unwrap();
    std::fs::write(
        feed_dir.join("index.json"),
        serde_json::to_vec(index).unwrap(),
    )
    .unwrap();
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
        assert_eq!(feed.index(), &index(3));
        assert_eq!(feed.titles().collect::<Vec<_>>(), ["B/2", "a 1", "b/2"]);
        assert_eq!(feed.len(), 3);
        let all: Vec<&str> = feed
            .similar("b/2", 10)
            .iter()
            .map(|r| r.title.as_str())
            .collect();
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
    idx.schema_version = 2;
    write_feed(tmp.path(), &idx, &[]);
    let err = Feed::open(tmp.path()).unwrap_err();
    assert!(
        matches!(
            err,
            FeedError::SchemaVersion {
                found: 2,
                expected: 1,
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
    assert!(err.to_string().contains("borrowers"), "{err}");

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
