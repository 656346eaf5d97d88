use std::fs;
use std::os::unix::fs::PermissionsExt;

use store::{Store, StoreError};

use crate::*;

fn mode(p: &std::path::Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn everything_the_store_creates_is_owner_only() {
    let (_d, root, store) = fresh();
    let loans = loans_of(&[(1, "x", "x", m(2024, 1)), (2, "y", "y", m(2024, 2))]);
    let lock = store.lock().unwrap();
    store
        .ingest(&lock, &record(1, 2), &loans, m(2020, 1))
        .unwrap();
    store.prune(&lock, m(2024, 2)).unwrap();
    store
        .ingest(&lock, &record(2, 2), &loans, m(2020, 1))
        .unwrap();
    assert_eq!(mode(&root), 0o700);
    let paths = walk(&root);
    let (mut dirs, mut files) = (0, 0);
    for p in &paths {
        if p.is_dir() {
            dirs += 1;
            assert_eq!(mode(p), 0o700, "{}", p.display());
        } else {
            files += 1;
            assert_eq!(mode(p), 0o600, "{}", p.display());
        }
    }
    // loans, tmp, two months; LOCK, manifest, two data files (the second
    // batch's 2024-02 loan was held already, so it writes 2024-01 only).
    assert_eq!((dirs, files), (4, 4), "{paths:?}");
}

#[test]
fn open_refuses_a_root_others_can_access() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("s");
    fs::create_dir(&root).unwrap();
    for bad in [0o755, 0o750, 0o701, 0o770] {
        fs::set_permissions(&root, fs::Permissions::from_mode(bad)).unwrap();
        let err = Store::open(&root).unwrap_err();
        match &err {
            StoreError::Permissions { path, mode } => {
                assert_eq!(*mode, bad);
                assert_eq!(path, &root);
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            err.to_string().contains(&root.display().to_string()),
            "{err}"
        );
    }
    fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).unwrap();
    Store::open(&root).unwrap();
}

#[test]
fn open_creates_missing_parents_owner_only_and_refuses_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/store");
    Store::open(&root).unwrap();
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("loans")), 0o700);
    assert_eq!(mode(&root.join("tmp")), 0o700);
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    assert!(matches!(
        Store::open(&file),
        Err(StoreError::NotADirectory { .. })
    ));
}

/// Issue 12, finding 6: only the root's mode was checked.
#[test]
fn open_refuses_subdirectories_others_can_access() {
    let (_d, root, store) = fresh();
    let lock = store.lock().unwrap();
    let loans = loans_of(&[(1, "x", "x", m(2024, 1))]);
    store
        .ingest(&lock, &record(1, 1), &loans, m(2020, 1))
        .unwrap();
    drop(lock);
    for sub in ["loans", "tmp", "loans/month=2024-01"] {
        let dir = root.join(sub);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        match Store::open(&root).unwrap_err() {
            StoreError::Permissions { path, mode } => {
                assert_eq!((path, mode), (dir.clone(), 0o755));
            }
            other => panic!("{sub}: unexpected {other:?}"),
        }
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        Store::open(&root).unwrap();
    }
}

/// The store follows no symbolic link inside its tree.
#[test]
fn symbolic_links_inside_the_store_are_refused() {
    let (d, root, store) = fresh();
    let lock = store.lock().unwrap();
    let loans = loans_of(&[(1, "x", "x", m(2024, 1))]);
    store
        .ingest(&lock, &record(1, 1), &loans, m(2020, 1))
        .unwrap();
    drop(lock);
    let file = store.data_files().unwrap()[0].clone();
    let elsewhere = d.path().join("elsewhere.parquet");
    fs::rename(&file, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &file).unwrap();
    let (lo, hi) = all();
    assert!(matches!(
        store.scan(lo, hi),
        Err(StoreError::Symlink { .. })
    ));
    fs::remove_file(&file).unwrap();
    fs::rename(&elsewhere, &file).unwrap();
    store.scan(lo, hi).unwrap();

    let manifest = root.join("manifest.json");
    let moved = d.path().join("manifest.json");
    fs::rename(&manifest, &moved).unwrap();
    std::os::unix::fs::symlink(&moved, &manifest).unwrap();
    assert!(matches!(
        Store::open(&root),
        Err(StoreError::Symlink { .. })
    ));
    fs::remove_file(&manifest).unwrap();
    fs::rename(&moved, &manifest).unwrap();

    let tmp = root.join("tmp");
    fs::remove_dir(&tmp).unwrap();
    let other = d.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::set_permissions(&other, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&other, &tmp).unwrap();
    let err = Store::open(&root).unwrap_err();
    assert!(matches!(err, StoreError::Symlink { .. }), "{err}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
}
