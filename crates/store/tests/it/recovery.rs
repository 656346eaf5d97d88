use std::fs;

use store::{IngestOutcome, Store, StoreError};

use crate::*;

/// Store 1 commits batch A; a crash during batch B left B's data files
/// renamed into place (but not in the manifest), a stale staging directory,
/// a half-written manifest temp file, and an orphan in a month of its own.
#[test]
fn orphans_of_a_crashed_ingest_are_ignored_then_removed() {
    let (_d, root, store) = fresh();
    let a = loans_of(&[(1, "x", "x", m(2024, 1)), (2, "y", "y", m(2024, 2))]);
    let b = loans_of(&[(3, "x", "x", m(2024, 2)), (4, "z", "z", m(2024, 3))]);
    let (rec_a, rec_b) = (record(0xa, 2), record(0xb, 2));
    {
        let lock = store.lock().unwrap();
        store.ingest(&lock, &rec_a, &a, m(2020, 1)).unwrap();
    }
    let a_files = file_bytes(&store);

    // What B's files look like once committed, from a scratch store.
    let (_d2, scratch_root, scratch) = fresh();
    let lock = scratch.lock().unwrap();
    scratch.ingest(&lock, &rec_b, &b, m(2020, 1)).unwrap();
    let scratch_root = scratch_root.canonicalize().unwrap();
    let b_files: Vec<_> = file_bytes(&scratch)
        .into_iter()
        .map(|(p, bytes)| (p.strip_prefix(&scratch_root).unwrap().to_owned(), bytes))
        .collect();
    assert_eq!(b_files.len(), 2);

    // The crash.
    for (rel, bytes) in &b_files {
        let dest = root.join(rel);
        private_dirs(dest.parent().unwrap());
        fs::write(&dest, bytes).unwrap();
    }
    let stray = root.join(format!("loans/month=2031-07/{}.parquet", "cd".repeat(32)));
    private_dirs(stray.parent().unwrap());
    fs::write(&stray, b"half a file").unwrap();
    let stage = root.join("tmp").join(&rec_b.id);
    private_dirs(&stage);
    fs::write(stage.join("month=2024-02.parquet"), b"partial").unwrap();
    fs::write(root.join("tmp/manifest.json.new"), b"{\"form").unwrap();
    let note = root.join("loans/month=2024-01/README");
    fs::write(&note, b"operator note").unwrap();

    // Readers see exactly the committed state.
    let store = Store::open(&root).unwrap();
    assert_eq!(file_bytes(&store), a_files);
    let (first, last) = all();
    assert_eq!(multiset(&store.scan(first, last).unwrap()), multiset(&a));
    let st = store.status().unwrap();
    assert_eq!((st.rows, st.distinct_pseudonyms, st.batches), (2, 2, 1));

    // The next writer cleans up, and re-ingesting B works.
    let lock = store.lock().unwrap();
    assert!(matches!(
        store.ingest(&lock, &rec_b, &b, m(2020, 1)).unwrap(),
        IngestOutcome::Ingested { rows: 2, .. }
    ));
    assert!(!stray.exists());
    assert!(!stray.parent().unwrap().exists());
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
    assert!(note.exists(), "files that are not ours are left alone");
    for (rel, bytes) in &b_files {
        assert_eq!(&fs::read(root.join(rel)).unwrap(), bytes);
    }
    let mut want = multiset(&a);
    want.extend(multiset(&b));
    want.sort();
    assert_eq!(multiset(&store.scan(first, last).unwrap()), want);
    assert_eq!(store.data_files().unwrap().len(), 4);
}

#[test]
fn prune_also_recovers() {
    let (_d, root, store) = fresh();
    let lock = store.lock().unwrap();
    let loans = loans_of(&[(1, "x", "x", m(2024, 5))]);
    store
        .ingest(&lock, &record(1, 1), &loans, m(2020, 1))
        .unwrap();
    let kept = store.data_files().unwrap();
    let orphan = root.join(format!("loans/month=2024-05/{}.parquet", "ee".repeat(32)));
    fs::write(&orphan, b"x").unwrap();
    assert_eq!(store.prune(&lock, m(2000, 1)).unwrap(), 0);
    assert!(!orphan.exists());
    assert_eq!(store.data_files().unwrap(), kept);
    assert!(kept[0].exists());
}

#[test]
fn a_lost_manifest_is_reported_not_treated_as_empty() {
    let (_d, root, store) = fresh();
    let loans = loans_of(&[(1, "x", "x", m(2024, 1))]);
    {
        let lock = store.lock().unwrap();
        store
            .ingest(&lock, &record(1, 1), &loans, m(2020, 1))
            .unwrap();
    }
    fs::remove_file(root.join("manifest.json")).unwrap();
    let err = Store::open(&root).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("manifest is missing"), "{err}");
    let lock = store.lock().unwrap();
    let err = store
        .ingest(&lock, &record(2, 1), &loans, m(2020, 1))
        .unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    // Nothing was deleted.
    assert!(root.join("loans/month=2024-01").read_dir().unwrap().count() == 1);
}

/// Creates `dir` and its missing parents owner-only, as the store does.
fn private_dirs(dir: &std::path::Path) {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .unwrap();
}
