//! `alsoborrowed key`: generation, refusal to overwrite, permission checks.

use std::os::unix::fs::PermissionsExt;

use crate::{bin, ok, text};

#[test]
fn key_new_writes_an_owner_only_key_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.key");
    let out = bin().args(["key", "new"]).arg(&path).output().unwrap();
    ok(&out);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let before = std::fs::read(&path).unwrap();
    // The message shows the fingerprint, never the key.
    let hex_key = String::from_utf8(before.clone())
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(!text(&out).contains(&hex_key));
    let fp = bin()
        .args(["key", "fingerprint"])
        .arg(&path)
        .output()
        .unwrap();
    ok(&fp);
    assert!(text(&out).contains(String::from_utf8_lossy(&fp.stdout).trim()));

    let again = bin().args(["key", "new"]).arg(&path).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert_eq!(std::fs::read(&path).unwrap(), before, "key was overwritten");
}

#[test]
fn a_group_readable_key_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.key");
    ok(&bin().args(["key", "new"]).arg(&path).output().unwrap());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = bin()
        .args(["key", "fingerprint"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("group or others"), "{err}");
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn usage_errors_exit_with_2() {
    let out = bin().args(["extract"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
