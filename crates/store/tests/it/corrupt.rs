use std::fs;

use store::{Store, StoreError};

use crate::*;

fn populated() -> (tempfile::TempDir, std::path::PathBuf, Store) {
    let (d, root, store) = fresh();
    let loans = loans_of(&[(0xab, "x", "x", m(2024, 1)), (0xcd, "y", "y", m(2024, 2))]);
    let lock = store.lock().unwrap();
    store
        .ingest(&lock, &record(1, 2), &loans, m(2020, 1))
        .unwrap();
    drop(lock);
    (d, root, store)
}

fn assert_corrupt_manifest(err: StoreError) {
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains("manifest.json is corrupt"),
        "{err}"
    );
}

#[test]
fn a_garbled_manifest_is_a_clear_corrupt_error() {
    let (_d, root, store) = populated();
    fs::write(
        root.join("manifest.json"),
        b"{\"format\": 1, \"batches\": [",
    )
    .unwrap();
    assert_corrupt_manifest(Store::open(&root).unwrap_err());
    assert_corrupt_manifest(store.status().unwrap_err());
    let (first, last) = all();
    assert_corrupt_manifest(store.scan(first, last).unwrap_err());
    let lock = store.lock().unwrap();
    let loans = loans_of(&[(1, "x", "x", m(2024, 1))]);
    assert_corrupt_manifest(
        store
            .ingest(&lock, &record(2, 1), &loans, m(2020, 1))
            .unwrap_err(),
    );
    assert_corrupt_manifest(store.prune(&lock, m(2030, 1)).unwrap_err());
    // Refusing must not have deleted the data files.
    assert_eq!(walk(&root.join("loans")).len(), 4);
}

#[test]
fn a_tampered_manifest_cannot_point_outside_the_store() {
    let (_d, root, _store) = populated();
    let path = root.join("manifest.json");
    let text = fs::read_to_string(&path).unwrap();
    let evil = text.replacen("loans/month=2024-01/", "../../../etc/", 1);
    assert_ne!(evil, text);
    fs::write(&path, evil).unwrap();
    let err = Store::open(&root).unwrap_err();
    assert_corrupt_manifest(err);

    let unknown = text.replacen("\"format\": 2", "\"format\": 2, \"extra\": 2", 1);
    assert_ne!(unknown, text);
    fs::write(&path, unknown).unwrap();
    assert_corrupt_manifest(Store::open(&root).unwrap_err());
}

#[test]
fn a_damaged_data_file_names_the_file_and_no_pseudonym() {
    let (_d, _root, store) = populated();
    let files = store.data_files().unwrap();
    let bytes = fs::read(&files[1]).unwrap();
    fs::write(&files[1], &bytes[..bytes.len() / 2]).unwrap();
    let (first, last) = all();
    for err in [
        store.scan(first, last).unwrap_err(),
        store.status().unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(msg.contains("month=2024-02"), "{msg}");
        for b in [0xabu8, 0xcd] {
            assert!(!msg.contains(&format!("{b:02x}").repeat(4)), "{msg}");
        }
    }
    // A file with fewer rows than the manifest says is caught as well.
    let (_d2, _root2, other) = {
        let (d, root, s) = fresh();
        let loans = loans_of(&[(1, "y", "y", m(2024, 2)), (2, "y", "y", m(2024, 2))]);
        let lock = s.lock().unwrap();
        s.ingest(&lock, &record(1, 2), &loans, m(2020, 1)).unwrap();
        (d, root, s)
    };
    fs::copy(&other.data_files().unwrap()[0], &files[1]).unwrap();
    let err = store.scan(first, last).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("holds 2 rows but the manifest says 1"),
        "{err}"
    );
}
