//! Integration tests: export, the privacy check, atomic publishing and verify.

mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use alsoborrowed_feed::{Feed, file_stem};
use engine::{Related, ScoredPair};
use loans::{LoanMonth, Loans, Pseudonym};
use pipeline::{FeedLayout, Measure};
use proptest::prelude::*;
use publish::{ExportMeta, ExportOutcome, FindingKind, Forbidden, PublishError, export, verify};

fn month(y: i32, m: u32) -> LoanMonth {
    LoanMonth::new(y, m).unwrap()
}

fn meta(k: u32, n: u32) -> ExportMeta {
    ExportMeta {
        window_first: month(2024, 1),
        window_last: month(2024, 12),
        measure: Measure::Count,
        min_support: k,
        max_titles_per_borrower: 100,
        time_decay: 1.0,
        max_related: n,
        layout: FeedLayout::Titles,
    }
}

fn pseudonym(i: u32) -> Pseudonym {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&i.to_le_bytes());
    b[4..8].copy_from_slice(&i.wrapping_mul(0x9e37_79b9).to_be_bytes());
    b[8] = 0xfb;
    b[15] = 0xa7;
    Pseudonym(b)
}

/// Loans from (borrower, title) pairs, all in one month of the window.
fn loans(titles: &[&str], rows: &[(u32, usize)], m: LoanMonth) -> Loans {
    Loans::from_rows(
        &rows.iter().map(|&(b, _)| pseudonym(b)).collect::<Vec<_>>(),
        rows.iter().map(|&(_, t)| t as u32).collect(),
        rows.iter().map(|_| m).collect(),
        titles.iter().map(|t| t.to_string()).collect(),
        titles.iter().map(|t| t.to_string()).collect(),
    )
}

/// A naive stand-in for the engine: support of every title pair, kept when
/// >= k, score = support, sorted by title then score, at most n per title.
fn naive_related(l: &Loans, k: u32, n: usize) -> Related {
    let mut sets: Vec<HashSet<Pseudonym>> = vec![HashSet::new(); l.title_ids.len()];
    for (p, &t) in l.row_pseudonyms().zip(&l.titles) {
        sets[t as usize].insert(p);
    }
    let mut order: Vec<u32> = (0..l.title_ids.len() as u32).collect();
    order.sort_by(|&x, &y| l.title_ids[x as usize].cmp(&l.title_ids[y as usize]));
    let mut pairs = Vec::new();
    for &a in &order {
        let mut row: Vec<ScoredPair> = order
            .iter()
            .filter(|&&b| b != a)
            .map(|&b| {
                let support = sets[a as usize].intersection(&sets[b as usize]).count() as u32;
                ScoredPair {
                    a,
                    b,
                    support,
                    score: f64::from(support) + 1.0 / f64::from(b + 3),
                }
            })
            .filter(|p| p.support >= k)
            .collect();
        row.sort_by(|x, y| y.score.total_cmp(&x.score));
        row.truncate(n);
        pairs.extend(row);
    }
    let borrowers = l.row_pseudonyms().collect::<HashSet<_>>().len() as u64;
    Related {
        title_ids: l.title_ids.clone(),
        borrowers,
        pairs,
    }
}

const TITLES: [&str; 5] = [
    "9788702173512",
    "b/2",
    "=cmd|' /C calc'!A0",
    "Ünïcode ✓",
    "x y",
];

/// Five titles; titles 0..3 co-borrowed by 4 borrowers, title 3 by 3 of
/// them, title 4 by one borrower only.
fn sample_loans() -> Loans {
    let mut rows = Vec::new();
    for b in 0..4 {
        rows.extend([(b, 0), (b, 1), (b, 2)]);
    }
    rows.extend([(0, 3), (1, 3), (2, 3), (9, 4), (9, 0)]);
    loans(&TITLES, &rows, month(2024, 5))
}

fn sample() -> (Loans, Related) {
    let l = sample_loans();
    let r = naive_related(&l, 3, 20);
    (l, r)
}

fn files_below(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

fn release_of(outcome: &ExportOutcome) -> PathBuf {
    match outcome {
        ExportOutcome::Published { release, .. }
        | ExportOutcome::Unchanged { release, .. }
        | ExportOutcome::Repaired { release, .. } => release.clone(),
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn manifest_of(release: &Path) -> publish::ReleaseManifest {
    serde_json::from_slice(&std::fs::read(release.join("release.json")).unwrap()).unwrap()
}

fn current_target(out: &Path) -> PathBuf {
    std::fs::read_link(out.join("current")).unwrap()
}

#[test]
fn export_round_trips_through_the_feed() {
    let (_, related) = sample();
    assert!(related.pairs.len() >= 6, "fixture must publish pairs");
    let out = tempfile::tempdir().unwrap();
    let outcome = export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    let ExportOutcome::Published { titles, pairs, .. } = &outcome else {
        panic!("expected a new release, got {outcome:?}");
    };
    assert_eq!(*pairs, related.pairs.len() as u64);

    let feed = Feed::open(out.path()).unwrap();
    assert_eq!(feed.len() as u64, *titles);
    let idx = feed.index();
    assert_eq!((idx.updated.as_str(), idx.max_related), ("2025-01", 20));
    // Window, measure and thresholds are in the private manifest only.
    let manifest = manifest_of(&release_of(&outcome));
    assert_eq!(
        (
            manifest.window_first.as_str(),
            manifest.window_last.as_str()
        ),
        ("2024-01", "2024-12")
    );
    assert_eq!(
        (
            manifest.measure.as_str(),
            manifest.min_support,
            manifest.pairs
        ),
        ("count", 3, *pairs)
    );

    let mut expected: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &related.pairs {
        expected
            .entry(&related.title_ids[p.a as usize])
            .or_default()
            .push(&related.title_ids[p.b as usize]);
    }
    assert_eq!(
        feed.titles().collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>()
    );
    for (a, list) in &expected {
        assert_eq!(feed.similar(a, usize::MAX), list.as_slice());
    }
    // The lonely title 4 shares only one borrower with anything.
    assert!(feed.similar(TITLES[4], 10).is_empty());
}

#[test]
fn exports_are_deterministic_and_unchanged_on_rebuild() {
    let (_, related) = sample();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let ra = release_of(&export(&related, &meta(3, 20), a.path(), &Forbidden::new()).unwrap());
    let rb = release_of(&export(&related, &meta(3, 20), b.path(), &Forbidden::new()).unwrap());
    assert_eq!(ra.file_name(), rb.file_name());
    let (fa, fb) = (files_below(&ra), files_below(&rb));
    assert_eq!(fa, fb);
    assert!(fa.contains_key(Path::new("pairs.parquet")));

    let again = export(&related, &meta(3, 20), a.path(), &Forbidden::new()).unwrap();
    assert_eq!(
        again,
        ExportOutcome::Unchanged {
            release: ra.clone(),
            ids_as_titles: 0
        }
    );
    assert_eq!(files_below(&ra), fa);
    let releases: Vec<_> = std::fs::read_dir(a.path().join("releases"))
        .unwrap()
        .collect();
    assert_eq!(releases.len(), 1, "no staging directory may be left behind");
}

#[test]
fn previous_release_is_kept_and_older_ones_deleted() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let mut releases = Vec::new();
    let meta_until = |last: u32| ExportMeta {
        window_last: month(2024, last),
        ..meta(3, 20)
    };
    for last in [10, 11, 12] {
        let outcome = export(&related, &meta_until(last), out.path(), &Forbidden::new()).unwrap();
        assert!(matches!(outcome, ExportOutcome::Published { .. }));
        releases.push(release_of(&outcome));
        assert_eq!(
            out.path().join(current_target(out.path())),
            *releases.last().unwrap()
        );
    }
    assert!(!releases[0].exists(), "oldest release is deleted");
    assert!(releases[1].exists(), "previous release is kept");
    assert!(releases[2].exists());
    assert!(current_target(out.path()).is_relative());
    let leftovers: Vec<_> = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "current" && n != "releases" && n != "feed")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Rolling back to the kept release's content switches to it again.
    let back = export(&related, &meta_until(11), out.path(), &Forbidden::new()).unwrap();
    assert!(matches!(back, ExportOutcome::Published { .. }));
    assert_eq!(release_of(&back), releases[1]);
    assert_eq!(Feed::open(out.path()).unwrap().index().updated, "2024-12");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&releases[1]), 0o711, "the live release is traversable");
    assert_eq!(mode(&releases[2]), 0o700, "a kept release is owner-only");
    assert!(
        releases[2].exists(),
        "the release just replaced is now the previous one"
    );
}

#[test]
fn only_the_feed_is_readable_by_others_and_served() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let release =
        release_of(&export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&release), 0o711);
    assert_eq!(mode(&release.join("feed")), 0o755);
    assert_eq!(mode(&release.join("feed/titles")), 0o755);
    for rel in files_below(&release).keys() {
        let want = if rel.starts_with("feed") {
            0o644
        } else {
            0o600
        };
        assert_eq!(mode(&release.join(rel)), want, "{}", rel.display());
    }
    // The served link resolves to the live feed, which holds the feed alone.
    let served = out.path().join("feed");
    assert_eq!(
        std::fs::read_link(&served).unwrap(),
        Path::new("current/feed")
    );
    assert_eq!(
        served.canonicalize().unwrap(),
        release.join("feed").canonicalize().unwrap()
    );
    let names: BTreeSet<String> = std::fs::read_dir(&served)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["index.json".into(), "titles".into()])
    );
    for (rel, bytes) in files_below(&served) {
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            !text.contains("score") && !text.contains("window"),
            "{}",
            rel.display()
        );
    }
}

/// Snapshot of everything the public can see through `current`.
fn live(out: &Path) -> (PathBuf, BTreeMap<PathBuf, Vec<u8>>) {
    (current_target(out), files_below(&out.join("current")))
}

fn assert_no_staging(out: &Path) {
    for e in std::fs::read_dir(out.join("releases")).unwrap() {
        let name = e.unwrap().file_name();
        assert!(
            !name.to_string_lossy().starts_with('.'),
            "{name:?} left behind"
        );
    }
}

#[test]
fn pair_below_k_is_refused_and_current_is_untouched() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    let before = live(out.path());

    let mut bad = related.clone();
    bad.pairs[1].support = 2;
    bad.pairs[0].score += 1.0;
    let err = export(&bad, &meta(3, 20), out.path(), &Forbidden::new()).unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::CheckFailed {
                below_support: 1,
                ref findings,
                ..
            } if findings.total == 0
        ),
        "{err}"
    );
    assert_eq!(live(out.path()), before);
    assert_no_staging(out.path());
}

/// Every entry below `dir` (not following links) with its modification time.
fn entries_with_mtimes(dir: &Path) -> BTreeMap<PathBuf, std::time::SystemTime> {
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, std::time::SystemTime>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            out.insert(e.path(), meta.modified().unwrap());
            if meta.is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    out.insert(
        dir.to_path_buf(),
        std::fs::metadata(dir).unwrap().modified().unwrap(),
    );
    walk(dir, &mut out);
    out
}

#[test]
fn refused_export_creates_no_staging_directory_and_no_files() {
    let (_, related) = sample();
    let mut bad = related.clone();
    bad.pairs[1].support = 2;
    let mut forbidden = Forbidden::new();
    forbidden.add_secret(TITLES[0].as_bytes());

    // A fresh output directory is not even created.
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("export");
    for (r, f) in [(&bad, &Forbidden::new()), (&related, &forbidden)] {
        let err = export(r, &meta(3, 20), &out, f).unwrap_err();
        assert!(matches!(err, PublishError::CheckFailed { .. }), "{err}");
        assert!(!out.exists(), "a refused export created {}", out.display());
    }

    // Next to a live release, nothing is created, removed or touched: a
    // staging directory made and removed again would change `releases/`'s
    // modification time.
    let out = tempfile::tempdir().unwrap();
    export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    let before = entries_with_mtimes(out.path());
    for (r, f) in [(&bad, &Forbidden::new()), (&related, &forbidden)] {
        let err = export(r, &meta(3, 20), out.path(), f).unwrap_err();
        assert!(matches!(err, PublishError::CheckFailed { .. }), "{err}");
        assert_eq!(entries_with_mtimes(out.path()), before);
    }
}

#[test]
fn unchanged_export_writes_nothing() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let first = export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    assert!(matches!(first, ExportOutcome::Published { .. }));
    let before = entries_with_mtimes(out.path());
    let again = export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    assert_eq!(
        again,
        ExportOutcome::Unchanged {
            release: release_of(&first),
            ids_as_titles: 0
        }
    );
    assert_eq!(entries_with_mtimes(out.path()), before);

    // The check still runs first: a value forbidden since is refused.
    let mut forbidden = Forbidden::new();
    forbidden.add_secret(TITLES[0].as_bytes());
    let err = export(&related, &meta(3, 20), out.path(), &forbidden).unwrap_err();
    assert!(
        matches!(err, PublishError::CheckFailed { ref findings, .. } if findings.total > 0),
        "{err}"
    );
    assert_eq!(entries_with_mtimes(out.path()), before);
}

#[test]
fn export_and_releases_dirs_are_traversable() {
    let (_, related) = sample();
    let parent = tempfile::tempdir().unwrap();
    let out = parent.path().join("export");
    export(&related, &meta(3, 20), &out, &Forbidden::new()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&out), 0o711);
    assert_eq!(mode(&out.join("releases")), 0o711);
    // An existing directory keeps the mode its owner chose; `releases/` is ours.
    let owned = tempfile::tempdir().unwrap();
    std::fs::set_permissions(owned.path(), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::create_dir(owned.path().join("releases")).unwrap();
    export(&related, &meta(3, 20), owned.path(), &Forbidden::new()).unwrap();
    assert_eq!(mode(owned.path()), 0o750);
    assert_eq!(mode(&owned.path().join("releases")), 0o711);
}

#[test]
fn too_many_related_titles_are_refused() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let err = export(&related, &meta(3, 1), out.path(), &Forbidden::new()).unwrap_err();
    assert!(
        matches!(err, PublishError::CheckFailed { over_max_related, .. } if over_max_related > 0),
        "{err}"
    );
    assert!(!out.path().join("current").exists());
}

/// Exports `related` with `title` in place of title 1 and returns the error.
fn refused_with_title(title: String, forbidden: &Forbidden) -> PublishError {
    let (_, mut related) = sample();
    let out = tempfile::tempdir().unwrap();
    export(&related, &meta(3, 20), out.path(), forbidden).unwrap();
    let before = live(out.path());
    related.title_ids[1] = title.clone();
    let err = export(&related, &meta(3, 20), out.path(), forbidden).unwrap_err();
    assert_eq!(live(out.path()), before);
    assert_no_staging(out.path());
    let msg = err.to_string();
    assert!(!msg.contains(&title), "error reveals the value: {msg}");
    err
}

fn findings_of(err: &PublishError) -> &publish::Findings {
    match err {
        PublishError::CheckFailed { findings, .. }
        | PublishError::VerifyFailed { findings, .. } => findings,
        other => panic!("expected a failed check, got {other}"),
    }
}

#[test]
fn planted_pseudonym_is_refused_in_every_encoding() {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let mut forbidden = Forbidden::new();
    let population: Vec<Pseudonym> = (0..50_000).map(pseudonym).collect();
    forbidden.add_pseudonyms(&population);
    let victim = population[31_337];
    let b = victim.as_bytes();
    for encoded in [
        hex::encode(b),
        hex::encode_upper(b),
        STANDARD.encode(b),
        URL_SAFE_NO_PAD.encode(b),
    ] {
        let err = refused_with_title(format!("isbn:{encoded}"), &forbidden);
        let findings = findings_of(&err);
        // The title is in the CSV, the Parquet file, its own feed file and
        // those of the titles it is related to.
        assert!(findings.files >= 3, "{err}");
        assert!(
            findings
                .first
                .iter()
                .all(|f| f.kind == FindingKind::Pseudonym),
            "{err}"
        );
        let files: BTreeSet<&str> = findings.first.iter().map(|f| f.file.as_str()).collect();
        assert!(
            files.contains("pairs.csv") && files.contains("pairs.parquet"),
            "{files:?}"
        );
        assert!(err.to_string().contains("pseudonym"), "{err}");
        assert!(err.to_string().contains("fix:"), "{err}");
    }
}

#[test]
fn a_title_that_is_also_a_borrower_id_is_published_and_counted() {
    let mut forbidden = Forbidden::new();
    for id in ["1", "5", "77", "U4", "ABC", "K00012345"] {
        forbidden.add_identifier(id);
    }
    forbidden.add_secret(&[0x5a; 32]);
    let (_, mut related) = sample();
    related.title_ids[1] = "77".into();
    related.title_ids[4] = "U4".into();
    let out = tempfile::tempdir().unwrap();
    let outcome = export(&related, &meta(3, 20), out.path(), &forbidden).unwrap();
    let ExportOutcome::Published { ids_as_titles, .. } = outcome else {
        panic!("{outcome:?}");
    };
    assert_eq!(ids_as_titles, 2);
    // Key material is refused wherever it stands, titles included.
    let err = refused_with_title(hex::encode([0x5a; 32]), &forbidden);
    assert!(
        findings_of(&err)
            .first
            .iter()
            .all(|f| f.kind == FindingKind::Secret),
        "{err}"
    );
}

/// Ids of every shape a real export has.
const ID_SHAPES: [&str; 7] = ["7", "42", "100", "U4", "ABC", "4711", "K00012345"];

/// A published release (per-title or sharded) and its loans.
fn published(layout: FeedLayout) -> (tempfile::TempDir, PathBuf, Loans) {
    let (l, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let m = ExportMeta {
        layout,
        ..meta(3, 20)
    };
    let release = release_of(&export(&related, &m, out.path(), &Forbidden::new()).unwrap());
    (out, release, l)
}

fn ids_forbidden() -> Forbidden {
    let mut f = Forbidden::new();
    for id in ID_SHAPES {
        f.add_identifier(id);
    }
    f
}

/// Writes `bytes` over a release file (made writable first).
fn tamper(path: &Path, bytes: &[u8]) {
    if path.exists() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// Verifies after a tampering and returns the findings' (file, kind).
fn planted_findings(out: &Path, l: &Loans, id: &str) -> BTreeSet<(String, FindingKind)> {
    let err = verify(out, l, 3, &ids_forbidden()).unwrap_err();
    let msg = err.to_string();
    assert!(
        !msg.contains(&format!("\"{id}\"")),
        "error reveals the value: {msg}"
    );
    findings_of(&err)
        .first
        .iter()
        .map(|f| (f.file.clone(), f.kind))
        .collect()
}

#[test]
fn an_id_planted_in_any_json_field_is_refused_naming_file_and_kind() {
    let id_finding = |file: &str| (file.to_owned(), FindingKind::Identifier);
    for id in ID_SHAPES {
        for layout in [FeedLayout::Titles, FeedLayout::Shards] {
            let (out, release, l) = published(layout);
            let index = release.join("feed/index.json");
            let original = std::fs::read(&index).unwrap();
            let mut doc: serde_json::Value = serde_json::from_slice(&original).unwrap();
            // A new field holding the id as a string, then as a number.
            doc["note"] = serde_json::json!(id);
            tamper(&index, &serde_json::to_vec_pretty(&doc).unwrap());
            assert!(planted_findings(out.path(), &l, id).contains(&id_finding("feed/index.json")));
            if let Ok(n) = id.parse::<u64>() {
                doc["note"] = serde_json::json!(n);
                tamper(&index, &serde_json::to_vec(&doc).unwrap());
                assert!(
                    planted_findings(out.path(), &l, id).contains(&id_finding("feed/index.json"))
                );
                // In place of a value of the format.
                let mut doc: serde_json::Value = serde_json::from_slice(&original).unwrap();
                doc["max_related"] = serde_json::json!(n);
                tamper(&index, &serde_json::to_vec(&doc).unwrap());
                assert!(
                    planted_findings(out.path(), &l, id).contains(&id_finding("feed/index.json"))
                );
            }
            tamper(&index, &original);
            // As a related title in a list.
            let (file, pointer) = match layout {
                FeedLayout::Titles => (
                    format!("feed/titles/{}.json", file_stem(TITLES[0])),
                    "/related".to_owned(),
                ),
                FeedLayout::Shards => {
                    let bits = Feed::open(&release).unwrap().index().shard_bits.unwrap();
                    let s = alsoborrowed_feed::shard_of(TITLES[0], bits);
                    (
                        format!(
                            "feed/shards/{}.json",
                            alsoborrowed_feed::shard_name(s, bits)
                        ),
                        "/titles/0/related".to_owned(),
                    )
                }
            };
            let path = release.join(&file);
            let mut doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            doc.pointer_mut(&pointer)
                .unwrap()
                .as_array_mut()
                .unwrap()
                .push(serde_json::json!(id));
            tamper(&path, &serde_json::to_vec(&doc).unwrap());
            assert!(
                planted_findings(out.path(), &l, id).contains(&id_finding(&file)),
                "{id} {file}"
            );
        }
    }
}

#[test]
fn an_id_planted_in_a_file_name_csv_field_or_parquet_value_is_refused() {
    for id in ID_SHAPES {
        let (out, release, l) = published(FeedLayout::Titles);
        // A file named after the id.
        let name = format!("feed/titles/{}.json", file_stem(id));
        tamper(
            &release.join(&name),
            format!(r#"{{"schema_version":3,"title":"{id}","related":["b/2"]}}"#).as_bytes(),
        );
        let found = planted_findings(out.path(), &l, id);
        let withheld = "feed/titles/<name withheld>".to_owned();
        assert!(
            found.contains(&(withheld, FindingKind::Identifier)),
            "{id}: {found:?}"
        );
        assert!(
            !found.iter().any(|(f, _)| f == &name),
            "name shown: {found:?}"
        );
        std::fs::remove_file(release.join(&name)).unwrap();

        // A CSV row with the id as a title.
        let csv_path = release.join("pairs.csv");
        let original = std::fs::read(&csv_path).unwrap();
        let mut planted = original.clone();
        planted.extend_from_slice(format!("{id},b/2,1\r\n").as_bytes());
        tamper(&csv_path, &planted);
        let found = planted_findings(out.path(), &l, id);
        assert!(
            found.contains(&("pairs.csv".into(), FindingKind::Identifier)),
            "{id}: {found:?}"
        );
        tamper(&csv_path, &original);

        // A Parquet value (Snappy-compressed, dictionary-encoded): found in
        // the dictionary page and in the decoded rows.
        let rows: Vec<(&str, &str, f64)> = (0..50).map(|i| (id, "b/2", f64::from(i))).collect();
        write_pairs(&release.join("pairs.parquet"), &rows);
        let err = verify(out.path(), &l, 3, &ids_forbidden()).unwrap_err();
        let findings = findings_of(&err);
        assert!(
            findings.first.iter().any(|f| f.file == "pairs.parquet"
                && f.kind == FindingKind::Identifier
                && f.place.contains("dictionary")),
            "{id}: {err}"
        );
    }
}

/// The CSV check looks each run of one title_a up once, but only after a
/// title it accepted: a stray value repeated over rows is a finding in
/// every row, as if each were checked alone.
#[test]
fn a_stray_title_a_repeated_over_csv_rows_is_a_finding_in_each() {
    let (out, release, l) = published(FeedLayout::Shards);
    let csv_path = release.join("pairs.csv");
    let original = std::fs::read(&csv_path).unwrap();
    let first_row = String::from_utf8_lossy(&original)
        .split("\r\n")
        .nth(1)
        .unwrap()
        .to_owned();
    let mut planted = original.clone();
    // A valid row, then three rows with the same unknown title_a, then the
    // valid row's title_a again.
    planted.extend_from_slice(format!("{first_row}\r\n").as_bytes());
    for _ in 0..3 {
        planted.extend_from_slice(b"not-a-title,b/2,1\r\n");
    }
    planted.extend_from_slice(format!("{first_row}\r\n").as_bytes());
    tamper(&csv_path, &planted);
    let err = verify(out.path(), &l, 3, &ids_forbidden()).unwrap_err();
    let findings = findings_of(&err);
    assert_eq!(findings.total, 3, "{err}");
    let places: Vec<&str> = findings
        .first
        .iter()
        .filter(|f| f.file == "pairs.csv")
        .map(|f| f.place.as_str())
        .collect();
    assert_eq!(places.len(), 3, "{err}");
    assert!(places.iter().all(|p| p.ends_with("column 1")), "{places:?}");
}

#[test]
fn a_pseudonym_hidden_in_parquet_values_is_found() {
    let (out, release, l) = published(FeedLayout::Shards);
    let p = pseudonym(5);
    let encoded = hex::encode(p.as_bytes());
    // Snappy and dictionary encoding hide values from a raw byte scan, and a
    // repeated value is stored once: the page scan must still see it.
    let rows: Vec<(&str, &str, f64)> = (0..50)
        .map(|i| (encoded.as_str(), "b/2", f64::from(i)))
        .collect();
    write_pairs(&release.join("pairs.parquet"), &rows);
    let mut forbidden = Forbidden::new();
    forbidden.add_pseudonyms(&[p]);
    let err = verify(out.path(), &l, 3, &forbidden).unwrap_err();
    assert!(
        findings_of(&err)
            .first
            .iter()
            .any(|f| f.file == "pairs.parquet" && f.kind == FindingKind::Pseudonym),
        "{err}"
    );
}

#[test]
fn csv_defuses_formulas_and_quotes_fields() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let release =
        release_of(&export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap());
    let text = std::fs::read_to_string(release.join("pairs.csv")).unwrap();
    let mut lines = text.split("\r\n");
    assert_eq!(lines.next(), Some("title_a,title_b,score"));
    assert!(text.contains("\r\n'=cmd|' /C calc'!A0,"), "{text}");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut rows = 0;
    for (rec, p) in reader.records().zip(&related.pairs) {
        let rec = rec.unwrap();
        for (cell, t) in [(&rec[0], p.a), (&rec[1], p.b)] {
            let title = &related.title_ids[t as usize];
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{cell}"
            );
            if title.starts_with('=') {
                assert_eq!(cell, format!("'{title}"));
            } else {
                assert_eq!(cell, title);
            }
        }
        assert_eq!(rec[2].parse::<f64>().unwrap(), p.score);
        rows += 1;
    }
    assert_eq!(rows, related.pairs.len());
}

#[test]
fn weird_title_ids_get_distinct_safe_files() {
    let long = "L".repeat(1024);
    let weird = [
        "a/b",
        "../etc/passwd",
        "..",
        ".",
        "a.b",
        "ü",
        "Ü",
        "ABC",
        "abc",
        "Abc",
        &long,
        "%41",
        "~x",
        "con",
        "a\\b",
        "a\u{0}b",
        " ",
        "\n",
    ];
    let titles: Vec<&str> = weird.to_vec();
    let mut rows = Vec::new();
    for b in 0..2 {
        rows.extend((0..titles.len()).map(|t| (b, t)));
    }
    let l = loans(&titles, &rows, month(2024, 3));
    let related = naive_related(&l, 2, 2);
    let out = tempfile::tempdir().unwrap();
    let release =
        release_of(&export(&related, &meta(2, 2), out.path(), &Forbidden::new()).unwrap());
    let names: Vec<String> = std::fs::read_dir(release.join("feed/titles"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), titles.len());
    let lower: BTreeSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
    assert_eq!(
        lower.len(),
        names.len(),
        "names collide on a case-insensitive file system"
    );
    for n in &names {
        let stem = n.strip_suffix(".json").unwrap();
        assert!(
            stem.len() <= 200 && !stem.is_empty() && !stem.starts_with('.'),
            "{n}"
        );
        assert!(
            stem.bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"%_-~".contains(&c)),
            "{n}"
        );
    }
    let feed = Feed::open(out.path()).unwrap();
    for t in &titles {
        assert_eq!(feed.similar(t, 5).len(), 2, "{t:?}");
        assert!(
            release
                .join("feed/titles")
                .join(format!("{}.json", file_stem(t)))
                .is_file()
        );
    }
}

#[test]
fn invalid_input_is_refused_without_values() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let mut r = related.clone();
    r.pairs[0].score = f64::NAN;
    assert!(matches!(
        export(&r, &meta(3, 20), out.path(), &Forbidden::new()),
        Err(PublishError::InvalidInput { .. })
    ));
    let mut r = related.clone();
    r.title_ids[2] = r.title_ids[0].clone();
    let err = export(&r, &meta(3, 20), out.path(), &Forbidden::new()).unwrap_err();
    assert!(matches!(err, PublishError::InvalidInput { .. }));
    assert!(!err.to_string().contains(&r.title_ids[0]), "{err}");
    let mut r = related.clone();
    r.pairs[0].b = 99;
    assert!(export(&r, &meta(3, 20), out.path(), &Forbidden::new()).is_err());
    assert!(export(&related, &meta(1, 20), out.path(), &Forbidden::new()).is_err());
    assert!(!out.path().join("current").exists());
}

#[test]
fn verify_accepts_a_good_release() {
    let (l, related) = sample();
    let out = tempfile::tempdir().unwrap();
    export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    let mut forbidden = Forbidden::new();
    forbidden.add_pseudonyms(&l.borrower_pseudonyms);
    let report = verify(out.path(), &l, 3, &forbidden).unwrap();
    assert_eq!(report.pairs_checked, related.pairs.len() as u64);
    assert_eq!(
        report.min_support_seen,
        related.pairs.iter().map(|p| p.support).min().unwrap()
    );
    // parquet, csv, manifest, index and one file per title with pairs.
    let with_pairs = related
        .pairs
        .iter()
        .map(|p| p.a)
        .collect::<HashSet<_>>()
        .len();
    assert_eq!(report.files_scanned, 4 + with_pairs as u64);
}

#[test]
fn verify_recounts_support_from_the_loans() {
    let (mut l, related) = sample();
    let out = tempfile::tempdir().unwrap();
    export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    // The loans of borrower 2 of title 3 fall outside the window: pairs
    // with title 3 drop to support 2.
    for i in 0..l.len() {
        if l.pseudonym(i) == pseudonym(2) && l.titles[i] == 3 {
            l.months[i] = month(2023, 12);
        }
    }
    let err = verify(out.path(), &l, 3, &Forbidden::new()).unwrap_err();
    let expected = related
        .pairs
        .iter()
        .filter(|p| p.a == 3 || p.b == 3)
        .count() as u64;
    assert!(expected > 0);
    assert!(
        matches!(err, PublishError::VerifyFailed { below_support, inconsistencies: 0, ref findings, content_hash_ok: true } if below_support == expected && findings.total == 0),
        "{err}"
    );
    // Asking for a larger k than the release was made with fails too.
    assert!(verify(out.path(), &sample_loans(), 5, &Forbidden::new()).is_err());
}

fn write_pairs(path: &Path, rows: &[(&str, &str, f64)]) {
    use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
    let a: StringArray = rows.iter().map(|r| Some(r.0)).collect();
    let b: StringArray = rows.iter().map(|r| Some(r.1)).collect();
    let s: Float64Array = rows.iter().map(|r| Some(r.2)).collect();
    let batch = RecordBatch::try_from_iter([
        ("title_a", Arc::new(a) as ArrayRef),
        ("title_b", Arc::new(b) as ArrayRef),
        ("score", Arc::new(s) as ArrayRef),
    ])
    .unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    // Releases are 0644: the tamperer needs to make it writable first.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, buf).unwrap();
}

#[test]
fn verify_catches_a_tampered_pairs_file() {
    let (l, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let release =
        release_of(&export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap());
    let mut rows: Vec<(&str, &str, f64)> = related
        .pairs
        .iter()
        .map(|p| {
            (
                related.title_ids[p.a as usize].as_str(),
                related.title_ids[p.b as usize].as_str(),
                p.score,
            )
        })
        .collect();
    // Same rows re-encoded: content differs only in encoding, the data agree.
    write_pairs(&release.join("pairs.parquet"), &rows);
    let err = verify(out.path(), &l, 3, &Forbidden::new()).unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::VerifyFailed {
                inconsistencies: 0,
                below_support: 0,
                content_hash_ok: false,
                ..
            }
        ),
        "{err}"
    );
    // A pair that the feed does not publish, with too little support.
    rows.push((TITLES[4], TITLES[0], 99.0));
    write_pairs(&release.join("pairs.parquet"), &rows);
    let err = verify(out.path(), &l, 3, &Forbidden::new()).unwrap_err();
    let PublishError::VerifyFailed {
        inconsistencies,
        below_support,
        ..
    } = err
    else {
        panic!("expected a failed audit, got {err}");
    };
    assert!(
        inconsistencies >= 2,
        "csv and feed disagree: {inconsistencies}"
    );
    assert_eq!(below_support, 1);
    // A truncated file cannot be read at all.
    std::fs::write(release.join("pairs.parquet"), b"PAR1").unwrap();
    let err = verify(out.path(), &l, 3, &Forbidden::new()).unwrap_err();
    assert!(
        findings_of(&err)
            .first
            .iter()
            .any(|f| f.file == "pairs.parquet" && f.kind == FindingKind::Unexpected),
        "{err}"
    );
}

#[test]
fn verify_finds_forbidden_values_and_missing_release() {
    let (l, related) = sample();
    let out = tempfile::tempdir().unwrap();
    assert!(matches!(
        verify(out.path(), &l, 3, &Forbidden::new()),
        Err(PublishError::NoRelease { .. })
    ));
    export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    let mut forbidden = Forbidden::new();
    forbidden.add_secret(TITLES[0].as_bytes());
    let err = verify(out.path(), &l, 3, &forbidden).unwrap_err();
    assert!(
        matches!(err, PublishError::VerifyFailed { ref findings, .. } if findings.total > 0),
        "{err}"
    );
    // A title of the input that is also a borrower id is no finding.
    let mut forbidden = Forbidden::new();
    forbidden.add_identifier(TITLES[1]);
    verify(out.path(), &l, 3, &forbidden).unwrap();
}

#[test]
fn feed_files_validate_against_the_schema() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let release =
        release_of(&export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap());
    let checked = schema::validate_release(&release);
    assert_eq!(checked, 1 + Feed::open(&release).unwrap().len());
}

#[test]
fn sharded_feed_holds_what_the_per_title_feed_holds() {
    // Enough titles for several shards (shard_bits > 0).
    let titles: Vec<String> = (0..150).map(|i| format!("t{i:03}")).collect();
    let pairs: Vec<ScoredPair> = (0..150u32)
        .flat_map(|a| {
            [1, 7].map(move |d| ScoredPair {
                a,
                b: (a + d) % 150,
                support: 3,
                score: f64::from(d) + f64::from(a) / 1000.0,
            })
        })
        .collect();
    let related = Related {
        title_ids: titles,
        borrowers: 40,
        pairs,
    };
    let per_title = tempfile::tempdir().unwrap();
    let sharded = tempfile::tempdir().unwrap();
    let shards_meta = ExportMeta {
        layout: FeedLayout::Shards,
        ..meta(3, 20)
    };
    let r1 =
        release_of(&export(&related, &meta(3, 20), per_title.path(), &Forbidden::new()).unwrap());
    let outcome = export(&related, &shards_meta, sharded.path(), &Forbidden::new()).unwrap();
    let ExportOutcome::Published { titles, pairs, .. } = &outcome else {
        panic!("expected a new release, got {outcome:?}");
    };
    assert_eq!((*titles, *pairs), (150, 300));
    let r2 = release_of(&outcome);

    let (v1, v2) = (Feed::open(&r1).unwrap(), Feed::open(&r2).unwrap());
    assert_eq!(v2.index().schema_version, 3);
    let bits = v2.index().shard_bits.unwrap();
    assert_eq!(bits, alsoborrowed_feed::shard_bits_for(150));
    assert!(bits > 0);
    assert_eq!(
        v1.titles().collect::<Vec<_>>(),
        v2.titles().collect::<Vec<_>>()
    );
    for t in v1.titles() {
        assert_eq!(v1.similar(t, 20), v2.similar(t, 20), "{t}");
    }
    let (f1, f2) = (files_below(&r1), files_below(&r2));
    let shard_files: Vec<_> = f2.keys().filter(|p| p.starts_with("feed/shards")).collect();
    assert_eq!(shard_files.len(), 1 << bits);
    assert!(!f2.keys().any(|p| p.starts_with("feed/titles")));
    // Only the feed and the manifest's layout differ; the pair files are the same bytes.
    for file in ["pairs.parquet", "pairs.csv"] {
        assert_eq!(f1[Path::new(file)], f2[Path::new(file)], "{file}");
    }
    assert_eq!(schema::validate_release(&r2), 1 + (1 << bits));
    // Rebuilding gives the same release, unchanged.
    assert_eq!(
        export(&related, &shards_meta, sharded.path(), &Forbidden::new()).unwrap(),
        ExportOutcome::Unchanged {
            release: r2,
            ids_as_titles: 0
        }
    );
}

#[test]
fn sharded_release_passes_the_audit() {
    let (l, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let meta = ExportMeta {
        layout: FeedLayout::Shards,
        ..meta(3, 20)
    };
    export(&related, &meta, out.path(), &Forbidden::new()).unwrap();
    let report = verify(out.path(), &l, 3, &Forbidden::new()).unwrap();
    assert_eq!(report.pairs_checked, related.pairs.len() as u64);
    // An edited shard (a related title dropped) is caught.
    let shard = out.path().join("current/feed/shards/0.json");
    let text = std::fs::read_to_string(&shard).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    doc["titles"][0]["related"].as_array_mut().unwrap().pop();
    std::fs::write(&shard, serde_json::to_vec(&doc).unwrap()).unwrap();
    let err = verify(out.path(), &l, 3, &Forbidden::new()).unwrap_err();
    assert!(
        matches!(
            err,
            PublishError::VerifyFailed {
                inconsistencies: 1..,
                content_hash_ok: false,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
#[ignore = "timing: run with --release -- --ignored --nocapture"]
fn export_10k_titles_timing() {
    export_timing(10_000);
}

#[test]
#[ignore = "timing: run with --release -- --ignored --nocapture"]
fn export_200k_titles_timing() {
    export_timing(200_000);
}

/// Exports `n_titles` x 20 related titles (empty and 1M-pseudonym forbidden
/// sets), a rebuild of the same release, and reads the feed back, printing
/// timings.
fn export_timing(n_titles: u32) {
    let titles: Vec<String> = (0..n_titles).map(|i| format!("978{i:010}")).collect();
    let mut pairs = Vec::new();
    let mut order: Vec<u32> = (0..n_titles).collect();
    order.sort_by(|a, b| titles[*a as usize].cmp(&titles[*b as usize]));
    for &a in &order {
        for j in 1..=20 {
            pairs.push(ScoredPair {
                a,
                b: (a + j) % n_titles,
                support: 5,
                score: 100.0 / f64::from(j),
            });
        }
    }
    let related = Related {
        title_ids: titles,
        borrowers: 1,
        pairs,
    };
    let label = format!("{}k titles x 20 related", n_titles / 1000);
    let mut forbidden = Forbidden::new();
    forbidden.add_pseudonyms(&(0..1_000_000).map(pseudonym).collect::<Vec<_>>());
    let empty = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    export(&related, &meta(5, 20), empty.path(), &Forbidden::new()).unwrap();
    println!("export of {label}, nothing forbidden: {:?}", t.elapsed());
    let out = tempfile::tempdir().unwrap();
    let t = std::time::Instant::now();
    let outcome = export(&related, &meta(5, 20), out.path(), &forbidden).unwrap();
    println!("export of {label} with 1M pseudonyms: {:?}", t.elapsed());
    assert!(matches!(
        outcome,
        ExportOutcome::Published { titles, pairs, .. }
            if titles == u64::from(n_titles) && pairs == 20 * u64::from(n_titles)
    ));
    let t = std::time::Instant::now();
    let again = export(&related, &meta(5, 20), out.path(), &forbidden).unwrap();
    println!("unchanged rebuild with 1M pseudonyms: {:?}", t.elapsed());
    assert!(matches!(again, ExportOutcome::Unchanged { .. }));
    let t = std::time::Instant::now();
    let feed = Feed::open(out.path()).unwrap();
    println!("Feed::open: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let mut hits = 0usize;
    for title in feed.titles() {
        hits += feed.similar(title, 10).len();
    }
    println!("{} similar(): {:?}", feed.len(), t.elapsed());
    assert_eq!(hits, 10 * n_titles as usize);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_related_round_trips(
        titles in proptest::collection::btree_set("[ -~]{1,12}|\\PC{1,6}", 2..8),
        edges in proptest::collection::vec((0usize..8, 0usize..8, 2u32..9, -5.0f64..5.0), 0..30),
        sharded in any::<bool>(),
    ) {
        let titles: Vec<String> = titles.into_iter().collect();
        let n = titles.len();
        let mut by_a: BTreeMap<&str, Vec<ScoredPair>> = BTreeMap::new();
        let mut seen = HashSet::new();
        for (a, b, support, score) in edges {
            let (a, b) = (a % n, b % n);
            if a != b && seen.insert((a, b)) {
                by_a.entry(&titles[a]).or_default().push(ScoredPair { a: a as u32, b: b as u32, support, score });
            }
        }
        let pairs: Vec<ScoredPair> = by_a.values().flatten().copied().collect();
        let related = Related { title_ids: titles.clone(), borrowers: 10, pairs };
        let out = tempfile::tempdir().unwrap();
        let layout = if sharded { FeedLayout::Shards } else { FeedLayout::Titles };
        let meta = ExportMeta { layout, ..meta(2, 8) };
        export(&related, &meta, out.path(), &Forbidden::new()).unwrap();
        let feed = Feed::open(out.path()).unwrap();
        let mut want: HashMap<&str, Vec<&str>> = HashMap::new();
        for p in &related.pairs {
            want.entry(&titles[p.a as usize]).or_default().push(&titles[p.b as usize]);
        }
        prop_assert_eq!(feed.len(), want.len());
        for (a, list) in &want {
            prop_assert_eq!(feed.similar(a, usize::MAX), list.as_slice());
        }
        schema::validate_release(&out.path().join("current"));
    }
}

/// Ids of the shapes real exports have: short numbers, short letters,
/// MovieLens-style, ISBN-like.
fn id_shape() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..1000).prop_map(|n| n.to_string()),
        "[A-Z]{1,3}",
        (1u32..700).prop_map(|n| format!("U{n}")),
        (1u32..700).prop_map(|n| format!("M{n}")),
        "97[89][0-9]{10}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// A correct release never refuses, whatever the borrower ids look
    /// like, even when they coincide with title ids, scores, counts, shard
    /// names or bytes of the compressed Parquet file; and `verify` agrees.
    #[test]
    fn benign_releases_with_ids_of_every_shape_never_refuse(
        titles in proptest::collection::btree_set(id_shape(), 4..30),
        ids in proptest::collection::btree_set(id_shape(), 1..200),
        edges in proptest::collection::vec((0usize..30, 0usize..30, 0u32..20), 0..80),
        sharded in any::<bool>(),
        measure in prop_oneof![Just(Measure::Count), Just(Measure::Llr), Just(Measure::Jaccard)],
    ) {
        let titles: Vec<&str> = titles.iter().map(String::as_str).collect();
        let n = titles.len();
        // Loans that make `edges` co-borrowed by 3 borrowers each.
        let mut rows = Vec::new();
        for (i, &(a, b, _)) in edges.iter().enumerate() {
            for k in 0..3 {
                let borrower = (i * 3 + k) as u32;
                rows.push((borrower, a % n));
                if a % n != b % n {
                    rows.push((borrower, b % n));
                }
            }
        }
        let l = loans(&titles, &rows, month(2024, 5));
        let related = naive_related(&l, 3, 20);
        let mut forbidden = Forbidden::new();
        for id in &ids {
            forbidden.add_identifier(id);
        }
        forbidden.add_pseudonyms(&l.borrower_pseudonyms);
        let layout = if sharded { FeedLayout::Shards } else { FeedLayout::Titles };
        let m = ExportMeta { layout, measure, ..meta(3, 20) };
        let out = tempfile::tempdir().unwrap();
        let outcome = export(&related, &m, out.path(), &forbidden);
        prop_assert!(outcome.is_ok(), "{}", outcome.unwrap_err());
        let verified = verify(out.path(), &l, 3, &forbidden);
        prop_assert!(verified.is_ok(), "{}", verified.unwrap_err());
    }

    /// An id planted in a new field of any JSON file of a release, as a
    /// string or a number, is always found and named by file and kind.
    #[test]
    fn a_planted_id_is_always_found(
        id in id_shape(),
        as_number in any::<bool>(),
        sharded in any::<bool>(),
        pick in any::<prop::sample::Index>(),
    ) {
        let layout = if sharded { FeedLayout::Shards } else { FeedLayout::Titles };
        let (out, release, l) = published(layout);
        let mut forbidden = Forbidden::new();
        forbidden.add_identifier(&id);
        let json: Vec<PathBuf> = files_below(&release)
            .into_keys()
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        let rel = pick.get(&json).clone();
        let path = release.join(&rel);
        let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let value = match (as_number, id.parse::<u64>()) {
            (true, Ok(n)) => serde_json::json!(n),
            _ => serde_json::json!(id),
        };
        doc["extra"] = value;
        tamper(&path, &serde_json::to_vec(&doc).unwrap());
        let err = verify(out.path(), &l, 3, &forbidden).unwrap_err();
        let rel = rel.to_string_lossy().into_owned();
        prop_assert!(
            findings_of(&err).first.iter().any(|f| f.file == rel && f.kind == FindingKind::Identifier),
            "{}: {}", rel, err
        );
    }
}

/// Every number in a JSON document, with the key it stands under.
fn numbers(v: &serde_json::Value, key: &str, out: &mut Vec<(String, f64)>) {
    match v {
        serde_json::Value::Number(n) => out.push((key.to_owned(), n.as_f64().unwrap())),
        serde_json::Value::Array(a) => a.iter().for_each(|x| numbers(x, key, out)),
        serde_json::Value::Object(o) => o.iter().for_each(|(k, x)| numbers(x, k, out)),
        _ => {}
    }
}

/// The attack the issue describes: with the scores of a list at full
/// precision (and, worst case, N and the titles' borrower counts from
/// elsewhere), find the support k that reproduces each score exactly.
/// Returns the recovered supports.
fn invert_llr(scores: &[(usize, usize, f64)], title_borrowers: &[u64], n: u64) -> Vec<Option<u64>> {
    scores
        .iter()
        .map(|&(a, b, s)| {
            let (na, nb) = (title_borrowers[a], title_borrowers[b]);
            let fits: Vec<u64> = (1..=na.min(nb))
                .filter(|&k| {
                    let x = engine::score(Measure::Llr, k, na, nb, n);
                    (x - s).abs() <= 1e-9 * s.abs().max(1.0)
                })
                .collect();
            (fits.len() == 1).then(|| fits[0])
        })
        .collect()
}

#[test]
fn no_published_file_lets_support_counts_be_recomputed() {
    // Loans with real LLR scores: 60 borrowers, 12 titles in 3 groups.
    let titles: Vec<String> = (0..12).map(|i| format!("978000000{i:04}")).collect();
    let title_refs: Vec<&str> = titles.iter().map(String::as_str).collect();
    let mut rows = Vec::new();
    for b in 0..60u32 {
        let group = (b % 3) as usize * 4;
        for t in 0..4 {
            if !(b as usize + t).is_multiple_of(5) {
                rows.push((b, group + t));
            }
        }
        rows.push((b, (b as usize * 7) % 12));
    }
    let l = loans(&title_refs, &rows, month(2024, 5));
    let mut related = naive_related(&l, 5, 20);
    let mut sets: Vec<HashSet<Pseudonym>> = vec![HashSet::new(); titles.len()];
    for (p, &t) in l.row_pseudonyms().zip(&l.titles) {
        sets[t as usize].insert(p);
    }
    let counts: Vec<u64> = sets.iter().map(|s| s.len() as u64).collect();
    let n = l.row_pseudonyms().collect::<HashSet<_>>().len() as u64;
    for p in &mut related.pairs {
        p.score = engine::score(
            Measure::Llr,
            u64::from(p.support),
            counts[p.a as usize],
            counts[p.b as usize],
            n,
        );
    }
    assert!(related.pairs.len() > 20, "{} pairs", related.pairs.len());
    let out = tempfile::tempdir().unwrap();
    let m = ExportMeta {
        measure: Measure::Llr,
        layout: FeedLayout::Shards,
        ..meta(5, 20)
    };
    let release = release_of(&export(&related, &m, out.path(), &Forbidden::new()).unwrap());

    // Control: the private pair table carries the scores, and the attack
    // recovers every support count from it. This is why it is owner-only.
    let index_of = |t: &str| titles.iter().position(|x| x == t).unwrap();
    let mut reader = csv::Reader::from_path(release.join("pairs.csv")).unwrap();
    let scored: Vec<(usize, usize, f64)> = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            (index_of(&r[0]), index_of(&r[1]), r[2].parse().unwrap())
        })
        .collect();
    let recovered = invert_llr(&scored, &counts, n);
    for ((_, _, _), (got, p)) in scored.iter().zip(recovered.iter().zip(&related.pairs)) {
        assert_eq!(
            *got,
            Some(u64::from(p.support)),
            "the control attack must work"
        );
    }

    // The served feed: no number anywhere but the format's own fields, so
    // the attack has no score to invert, and no N or title count to start from.
    let served = out.path().join("feed");
    let mut seen = Vec::new();
    for (rel, bytes) in files_below(&served) {
        let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut found = Vec::new();
        numbers(&doc, "", &mut found);
        for (key, _) in &found {
            assert!(
                matches!(
                    key.as_str(),
                    "schema_version" | "shard_bits" | "max_related"
                ),
                "{}: a number under {key:?} is published",
                rel.display()
            );
        }
        seen.extend(found);
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(served.join("index.json")).unwrap()).unwrap();
    for leak in [
        "window",
        "min_support",
        "measure",
        "titles",
        "max_titles_per_borrower",
    ] {
        assert!(index.get(leak).is_none(), "index.json publishes {leak}");
    }
    // Only the version, the list length and the layout's bits remain.
    for (key, v) in &seen {
        let want = match key.as_str() {
            "schema_version" => *v == 3.0,
            "max_related" => *v == 20.0,
            _ => *v == f64::from(alsoborrowed_feed::shard_bits_for(12)),
        };
        assert!(want, "{key} = {v}");
    }
}

#[test]
fn staging_left_by_a_crash_is_removed_even_when_nothing_changed() {
    let (_, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let first = export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    let stale = out.path().join("releases/.staging-4242-0123456789abcdef");
    std::fs::create_dir_all(stale.join("feed")).unwrap();
    std::fs::write(stale.join("pairs.csv"), b"a whole release").unwrap();
    let again = export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
    assert!(
        matches!(again, ExportOutcome::Unchanged { .. }),
        "{again:?}"
    );
    assert_eq!(release_of(&again), release_of(&first));
    assert!(!stale.exists(), "a stale staging directory survived");
}

#[test]
fn a_live_release_changed_on_disk_is_written_again() {
    let (l, related) = sample();
    let out = tempfile::tempdir().unwrap();
    let release =
        release_of(&export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap());
    let good = files_below(&release);
    let title_file = release
        .join("feed/titles")
        .join(format!("{}.json", file_stem(TITLES[0])));
    let damages: [&dyn Fn(); 3] = [
        &|| tamper(&title_file, b"{}"),
        &|| std::fs::remove_file(&title_file).unwrap(),
        &|| tamper(&release.join("feed/titles/extra.json"), b"{}"),
    ];
    for damage in damages {
        damage();
        assert!(verify(out.path(), &l, 3, &Forbidden::new()).is_err());
        let outcome = export(&related, &meta(3, 20), out.path(), &Forbidden::new()).unwrap();
        assert!(
            matches!(outcome, ExportOutcome::Repaired { .. }),
            "{outcome:?}"
        );
        assert_eq!(release_of(&outcome), release);
        assert_eq!(files_below(&release), good);
        verify(out.path(), &l, 3, &Forbidden::new()).unwrap();
        assert_no_staging(out.path());
    }
}

#[test]
fn an_id_planted_in_a_directory_name_is_found_and_withheld() {
    for id in ID_SHAPES {
        let (out, release, l) = published(FeedLayout::Shards);
        let dir = release.join("feed").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        tamper(&dir.join("x.json"), b"{}");
        let err = verify(out.path(), &l, 3, &ids_forbidden()).unwrap_err();
        let findings = findings_of(&err);
        assert!(
            findings
                .first
                .iter()
                .any(|f| f.kind == FindingKind::Identifier
                    && f.file == "feed/<name withheld>/x.json"),
            "{id}: {err}"
        );
        assert!(!err.to_string().contains(&format!("/{id}/")), "{err}");
    }
}
