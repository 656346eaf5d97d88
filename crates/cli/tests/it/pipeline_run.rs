//! The whole job on the demo data: privacy of every written byte,
//! idempotency, locking, determinism, verify.

use std::collections::BTreeSet;
use std::path::PathBuf;

use base64::Engine as _;

use crate::{Sandbox, contains, ok, repo, text};

fn demo_input() -> PathBuf {
    repo().join("fixtures/demo/loans.csv")
}

fn demo_borrower_ids() -> BTreeSet<String> {
    let text = std::fs::read_to_string(demo_input()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = header.iter().position(|h| *h == "borrower_id").unwrap();
    lines
        .map(|l| l.split(',').nth(col).unwrap().to_owned())
        .collect()
}

/// Every encoding of a key an attacker might look for.
fn key_forms(path: PathBuf) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path).unwrap();
    let hex_key = text.lines().nth(1).unwrap().trim().to_owned();
    let raw = hex::decode(&hex_key).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let b64_nopad = base64::engine::general_purpose::STANDARD_NO_PAD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    vec![
        raw.clone(),
        hex_key.clone().into_bytes(),
        hex_key.to_uppercase().into_bytes(),
        b64.encode(&raw).into_bytes(),
        b64_nopad.encode(&raw).into_bytes(),
        url.encode(&raw).into_bytes(),
    ]
}

#[test]
fn demo_run_leaves_no_borrower_id_or_key_byte_anywhere() {
    let sb = Sandbox::new(&demo_input(), "");
    let out = sb.run("run", &[]);
    ok(&out);
    let log = text(&out);
    assert!(log.contains("published"), "{log}");
    assert!(sb.path("published/current/feed/index.json").is_file());
    assert!(sb.path("published/current/pairs.parquet").is_file());

    let ids = demo_borrower_ids();
    assert!(ids.len() > 100, "demo has {} borrowers", ids.len());
    let mut forbidden: Vec<Vec<u8>> = ids.iter().map(|s| s.clone().into_bytes()).collect();
    forbidden.extend(key_forms(sb.path("keys/pseudonym.key")));
    forbidden.extend(key_forms(sb.path("keys/transfer.key")));

    let files = sb.written_files();
    assert!(
        files.keys().any(|p| p.starts_with(sb.path("store"))),
        "store has files"
    );
    for (path, bytes) in &files {
        for needle in &forbidden {
            assert!(
                !contains(bytes, needle),
                "{} holds a borrower id or key material",
                path.display()
            );
        }
    }
    for id in &ids {
        assert!(!log.contains(id.as_str()), "log holds a borrower id");
    }

    // Decoded store values, not just raw (compressed) bytes: titles and works only.
    let store = store::Store::open(&sb.path("store")).unwrap();
    let loans = store
        .scan("2000-01".parse().unwrap(), "2026-12".parse().unwrap())
        .unwrap();
    assert!(!loans.is_empty());
    for t in loans.title_ids.iter().chain(&loans.work_ids) {
        assert!(!ids.contains(t), "a store title equals a borrower id");
    }

    // verify agrees with what was published.
    let v = sb.run("verify", &[]);
    ok(&v);
    assert!(text(&v).contains("verified"), "{}", text(&v));
}

#[test]
fn extracting_and_ingesting_twice_changes_nothing() {
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("extract", &[]));
    ok(&sb.run("ingest", &[]));
    let store_files = |sb: &Sandbox| {
        sb.written_files()
            .into_iter()
            // The run log grows with every run, by design.
            .filter(|(p, _)| {
                p.starts_with(sb.path("store"))
                    && !p.ends_with("LOCK")
                    && !p.ends_with("runlog.jsonl")
            })
            .collect::<Vec<_>>()
    };
    let before = store_files(&sb);
    assert!(
        before
            .iter()
            .any(|(p, _)| p.extension().is_some_and(|e| e == "parquet"))
    );

    ok(&sb.run("extract", &[]));
    let second = sb.run("ingest", &[]);
    ok(&second);
    assert!(
        text(&second).contains("already ingested"),
        "{}",
        text(&second)
    );
    assert_eq!(before, store_files(&sb), "store changed on re-ingest");
}

#[test]
fn a_second_concurrent_ingest_is_refused_with_exit_code_3() {
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("extract", &[]));
    let store = store::Store::open(&sb.path("store")).unwrap();
    let held = store.lock().unwrap();
    let out = sb.run("ingest", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("lock"), "{}", text(&out));
    // Nothing was ingested while the lock was held.
    assert_eq!(store.status().unwrap().rows, 0);
    drop(held);
    ok(&sb.run("ingest", &[]));
    assert!(store.status().unwrap().rows > 0);
}

#[test]
fn a_second_concurrent_run_exits_at_once() {
    let sb = Sandbox::new(&demo_input(), "");
    let _held = crate_lock(&sb.path("outbox"));
    let out = sb.run("run", &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!sb.path("store/manifest.json").exists());
}

fn crate_lock(dir: &std::path::Path) -> std::fs::File {
    std::fs::create_dir_all(dir).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("LOCK"))
        .unwrap();
    f.try_lock().unwrap();
    f
}

#[test]
fn published_bytes_do_not_depend_on_thread_count_or_reruns() {
    let one = Sandbox::new(&demo_input(), "");
    let two = Sandbox::new(&demo_input(), "");
    // Same keys in both sandboxes, so pseudonyms (and the cap's choices) agree.
    ok(&one.run("extract", &["--threads", "1"]));
    std::fs::create_dir_all(two.path("keys")).unwrap();
    for k in ["keys/pseudonym.key", "keys/transfer.key"] {
        std::fs::copy(one.path(k), two.path(k)).unwrap();
    }
    ok(&one.run("ingest", &["--threads", "1"]));
    ok(&one.run("export", &["--threads", "1"]));
    ok(&two.run("run", &["--threads", "2"]));
    let published = |sb: &Sandbox| {
        sb.written_files()
            .into_iter()
            .filter(|(p, _)| p.starts_with(sb.path("published/releases")))
            .map(|(p, b)| (p.strip_prefix(sb.dir.path()).unwrap().to_owned(), b))
            .collect::<Vec<_>>()
    };
    let a = published(&one);
    assert!(!a.is_empty());
    assert_eq!(a, published(&two));

    // Rebuilding the same months: unchanged, byte-identical.
    let again = one.run("export", &[]);
    ok(&again);
    assert!(text(&again).contains("unchanged"), "{}", text(&again));
    assert_eq!(a, published(&one));
}

#[test]
fn status_reports_counts_and_retention_without_personal_data() {
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("extract", &[]));
    ok(&sb.run("ingest", &[]));
    let out = sb.run("status", &[]);
    ok(&out);
    let s = text(&out);
    for needle in [
        "loans: ",
        "distinct pseudonyms: ",
        "months held: 24 (2024-11 .. 2026-10)",
        "batches ingested: 1",
        "pseudonym key fingerprints: ",
        "is deleted from 2029-11-01 on",
    ] {
        assert!(s.contains(needle), "status lacks {needle:?}:\n{s}");
    }
    for id in demo_borrower_ids() {
        assert!(!s.contains(&id));
    }
}

#[test]
fn a_borrower_id_that_is_also_a_title_id_publishes_with_a_note() {
    // A title id that is also a borrower's card number, in pairs that pass
    // k: a title of the input, published as a title, is no leak.
    let inputs = tempfile::tempdir().unwrap();
    let mut csv = String::from("borrower_id,title_id,loan_date\n");
    for i in 0..6 {
        for title in ["T-ALPHA", "T-BETA", "CARD-0000003"] {
            csv.push_str(&format!("CARD-000000{i},{title},2026-03-0{}\n", i + 1));
        }
    }
    let input = inputs.path().join("loans.csv");
    std::fs::write(&input, csv).unwrap();
    let sb = Sandbox::new(&input, "");
    let out = sb.run("run", &[]);
    ok(&out);
    assert!(
        text(&out).contains("note: 1 borrower ids of the loans file are also title ids"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("CARD-000000"),
        "the id was echoed: {}",
        text(&out)
    );
    assert!(sb.path("published/feed/index.json").is_file());
    let status = sb.run("status", &[]);
    ok(&status);
    assert!(
        text(&status).contains("last refusal: none"),
        "{}",
        text(&status)
    );
}

#[test]
fn key_material_in_the_output_is_refused_naming_file_and_kind() {
    // Keys first, then an export whose title ids carry the transfer key in hex.
    let inputs = tempfile::tempdir().unwrap();
    let input = inputs.path().join("loans.csv");
    std::fs::write(&input, "borrower_id,title_id,loan_date\nB1,T1,2026-03-01\n").unwrap();
    let sb = Sandbox::new(&input, "");
    let _ = sb.run("extract", &[]);
    let key = std::fs::read_to_string(sb.path("keys/transfer.key")).unwrap();
    let hex_key = key.lines().last().unwrap().trim().to_owned();
    assert_eq!(hex_key.len(), 64, "{key}");
    let mut csv = String::from("borrower_id,title_id,loan_date\n");
    for i in 0..6 {
        for title in ["T-ALPHA", "T-BETA", hex_key.as_str()] {
            csv.push_str(&format!("C{i},{title},2026-03-0{}\n", i + 1));
        }
    }
    std::fs::write(&input, csv).unwrap();
    let out = sb.run("run", &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to publish"), "{err}");
    assert!(err.contains("key material at"), "{err}");
    assert!(err.contains("pairs.csv") || err.contains("feed/"), "{err}");
    assert!(err.contains("fix:"), "{err}");
    assert!(!err.contains(&hex_key), "the key was echoed: {err}");
    assert!(
        !sb.path("published/current").exists(),
        "something was published"
    );
    let status = sb.run("status", &[]);
    ok(&status);
    let s = text(&status);
    assert!(s.contains("last refusal: 2026-11-22: "), "{s}");
    assert!(s.contains("key material"), "{s}");
    assert!(!s.contains(&hex_key), "{s}");
}

#[test]
fn private_directories_are_owner_only_and_the_published_one_is_servable() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("run", &[]));
    let mode = |rel: &str| {
        std::fs::metadata(sb.path(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode("store"), 0o700);
    assert_eq!(mode("outbox"), 0o700);
    assert_eq!(mode("keys/pseudonym.key"), 0o600);
    assert_eq!(mode("published"), 0o711);
    assert_eq!(mode("published/releases"), 0o711);
    assert_eq!(mode("published/current"), 0o711);
    assert_eq!(mode("published/feed/index.json"), 0o644);
    for private in ["pairs.csv", "pairs.parquet", "release.json"] {
        assert_eq!(
            mode(&format!("published/current/{private}")),
            0o600,
            "{private}"
        );
    }
    assert_eq!(mode("published/LOCK"), 0o600);
}

#[test]
fn the_release_is_servable_under_the_systemd_umask() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new(&demo_input(), "");
    // The documented unit runs with UMask=0077; files must still be 0644.
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"umask 077 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_alsoborrowed"))
        .args(["run", "--today", "2026-11-22", "--pipeline"])
        .arg(sb.pipeline())
        .output()
        .unwrap();
    ok(&out);
    let release = std::fs::canonicalize(sb.path("published/current")).unwrap();
    let mut checked = 0;
    let dir_mode =
        |dir: &std::path::Path| std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode(&release), 0o711);
    for dir in [release.join("feed"), release.join("feed/shards")] {
        assert_eq!(dir_mode(&dir), 0o755);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o644, "{}", entry.path().display());
                checked += 1;
            }
        }
    }
    assert!(checked > 30, "only {checked} files checked");
    // Private state stays owner-only under any umask.
    assert_eq!(
        std::fs::metadata(sb.path("store"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn the_same_key_for_pseudonyms_and_transfer_is_refused() {
    let sb = Sandbox::new(&demo_input(), "");
    std::fs::create_dir_all(sb.path("keys")).unwrap();
    ok(&crate::bin()
        .args(["key", "new"])
        .arg(sb.path("keys/pseudonym.key"))
        .output()
        .unwrap());
    std::fs::copy(sb.path("keys/pseudonym.key"), sb.path("keys/transfer.key")).unwrap();
    let out = sb.run("extract", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("must be different keys"),
        "{}",
        text(&out)
    );
    // No batch: at most the lock file and the run log's record of the failure.
    assert!(std::fs::read_dir(sb.path("outbox")).map_or(true, |d| {
        d.filter(|e| e.as_ref().is_ok_and(|e| e.file_name() != "runlog.jsonl"))
            .count()
            <= 1
    }));
}

#[test]
fn a_window_mixing_pseudonym_keys_is_not_published() {
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("extract", &[]));
    ok(&sb.run("ingest", &[]));
    // A new pseudonym key (as after a suspected leak) without a new store.
    std::fs::remove_file(sb.path("keys/pseudonym.key")).unwrap();
    ok(&sb.run("extract", &[]));
    ok(&sb.run("ingest", &[]));
    let out = sb.run("export", &[]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(
        text(&out).contains("2 different pseudonym keys"),
        "{}",
        text(&out)
    );
    assert!(!sb.path("published/current").exists());
}

#[test]
fn a_future_today_cannot_prune_the_store() {
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("extract", &[]));
    let out = crate::bin()
        .args(["ingest", "--today", "2999-01-01", "--pipeline"])
        .arg(sb.pipeline())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("after the system date"),
        "{}",
        text(&out)
    );
}

#[test]
fn switching_to_the_per_title_layout_keeps_every_list_and_verifies() {
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("run", &[]));
    let sharded = alsoborrowed_feed::Feed::open(&sb.path("published")).unwrap();
    assert_eq!(sharded.index().schema_version, 3);
    assert_eq!(sharded.index().layout, alsoborrowed_feed::Layout::Shards);
    assert!(
        sharded.len() > 100,
        "demo publishes {} titles",
        sharded.len()
    );
    let bits = sharded.index().shard_bits.unwrap();
    let shards = std::fs::read_dir(sb.path("published/feed/shards"))
        .unwrap()
        .count();
    assert_eq!(shards, 1 << bits);

    let mut pipeline = std::fs::read_to_string(sb.pipeline()).unwrap();
    pipeline.push_str("feed_layout = \"titles\"\n");
    std::fs::write(sb.pipeline(), pipeline).unwrap();
    let out = sb.run("export", &[]);
    ok(&out);
    assert!(text(&out).contains("published"), "{}", text(&out));
    let per_title = alsoborrowed_feed::Feed::open(&sb.path("published")).unwrap();
    assert_eq!(per_title.index().layout, alsoborrowed_feed::Layout::Titles);
    assert!(!sb.path("published/feed/shards").exists());
    assert_eq!(
        per_title.titles().collect::<Vec<_>>(),
        sharded.titles().collect::<Vec<_>>()
    );
    for t in per_title.titles() {
        assert_eq!(per_title.similar(t, 100), sharded.similar(t, 100), "{t}");
    }
    let v = sb.run("verify", &[]);
    ok(&v);
    assert!(text(&v).contains("verified"), "{}", text(&v));
}

#[path = "../../../engine/tests/it/reference.rs"]
mod reference;

/// Issue 4's "output identical to the non-optimized path": the published
/// lists of the demo run equal what the deliberately naive reference engine
/// (hash sets of borrowers per title) computes from the same store window.
#[test]
fn demo_output_equals_the_naive_reference_engine() {
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("run", &[]));
    let p = pipeline::Pipeline::load(&sb.pipeline()).unwrap();
    let feed = alsoborrowed_feed::Feed::open(&sb.path("published")).unwrap();
    let manifest: publish::ReleaseManifest =
        serde_json::from_slice(&std::fs::read(sb.path("published/current/release.json")).unwrap())
            .unwrap();
    let store = store::Store::open(&sb.path("store")).unwrap();
    let loans = store
        .scan(
            manifest.window_first.parse().unwrap(),
            manifest.window_last.parse().unwrap(),
        )
        .unwrap();
    let params = engine::EngineParams::from(&p.engine);
    let naive = reference::reference(&loans, &params);
    assert!(naive.pairs.len() > 1000, "{} pairs", naive.pairs.len());
    assert_eq!(engine::build(&loans, &params).unwrap(), naive);

    let mut expected: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for pair in &naive.pairs {
        expected
            .entry(&naive.title_ids[pair.a as usize])
            .or_default()
            .push(&naive.title_ids[pair.b as usize]);
    }
    assert_eq!(feed.len(), expected.len());
    for (title, list) in &expected {
        assert_eq!(feed.similar(title, usize::MAX), list.as_slice(), "{title}");
    }
}

#[test]
fn run_writes_no_batch_file_and_names_its_batch_as_extract_does() {
    let sb = Sandbox::new(&demo_input(), "");
    let out = sb.run("run", &[]);
    ok(&out);
    assert!(
        text(&out).contains("handed to ingest in memory"),
        "{}",
        text(&out)
    );
    let files: Vec<_> = std::fs::read_dir(sb.path("outbox"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".batch") || f.contains(".tmp-")),
        "{files:?}"
    );
    // Sealing the same loans by hand gives the batch the store already holds.
    ok(&sb.run("extract", &[]));
    let again = sb.run("ingest", &[]);
    ok(&again);
    assert!(
        text(&again).contains("already ingested"),
        "{}",
        text(&again)
    );
}

#[test]
fn export_with_a_future_today_is_refused_and_the_live_feed_kept() {
    let sb = Sandbox::new(&demo_input(), "");
    ok(&sb.run("run", &[]));
    let before = std::fs::read_link(sb.path("published/current")).unwrap();
    let future = (jiff::Zoned::now().date() + jiff::Span::new().months(6)).to_string();
    for cmd in ["export", "run"] {
        let out = crate::bin()
            .args([cmd, "--today", &future, "--pipeline"])
            .arg(sb.pipeline())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", text(&out));
        assert!(
            text(&out).contains("after the system date"),
            "{}",
            text(&out)
        );
        assert_eq!(
            std::fs::read_link(sb.path("published/current")).unwrap(),
            before
        );
    }
}
