//! Integration tests of the `keys` crate through its public API.

use std::os::unix::fs::PermissionsExt;

use keys::{Fingerprint, KEY_LEN, KeyError, SecretKey, load_key_file, load_or_create_key_file};
use proptest::prelude::*;

#[test]
fn created_key_file_is_owner_only_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/library.key");
    let (key, created) = load_or_create_key_file(&path, true).unwrap();
    assert!(created);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = load_key_file(&path).unwrap();
    assert_eq!(again.fingerprint(), key.fingerprint());
    let shown: Fingerprint = key.fingerprint().to_string().parse().unwrap();
    assert_eq!(shown, key.fingerprint());
}

#[test]
fn errors_never_show_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let key = SecretKey::from_bytes([0xa7; KEY_LEN]);
    keys::write_new_key_file(&path, &key).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660)).unwrap();
    let err = match load_key_file(&path) {
        Err(e) => e,
        Ok(_) => panic!("a group-writable key file loaded"),
    };
    assert!(matches!(err, KeyError::InsecurePermissions { .. }));
    let msg = format!("{err} {err:?}");
    assert!(!msg.contains("a7a7"), "{msg}");
    assert!(!msg.contains(&key.fingerprint().to_string()), "{msg}");
}

proptest! {
    // Length-prefixed info makes derivation injective in the list of parts.
    #[test]
    fn distinct_info_lists_give_distinct_keys(
        a in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..4),
        b in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..6), 0..4),
    ) {
        let master = SecretKey::from_bytes([3; KEY_LEN]);
        let pa: Vec<&[u8]> = a.iter().map(Vec::as_slice).collect();
        let pb: Vec<&[u8]> = b.iter().map(Vec::as_slice).collect();
        let same = master.derive(&pa).expose_secret() == master.derive(&pb).expose_secret();
        prop_assert_eq!(same, a == b);
    }
}
