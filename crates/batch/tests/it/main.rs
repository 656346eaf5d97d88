//! Integration tests of sealing, opening and storing batches.

use std::os::unix::fs::PermissionsExt;

use batch::{
    BatchError, BatchId, OutboxFound, list_batches, open, open_file, peek_meta, seal,
    write_to_outbox,
};
use keys::{Fingerprint, KEY_LEN, SecretKey};
use loans::{LoanMonth, Loans, Pseudonym};
use proptest::prelude::*;

fn transfer() -> SecretKey {
    SecretKey::from_bytes([0x11; KEY_LEN])
}

const PKEY: Fingerprint = Fingerprint([0x22; 8]);

/// Loans whose pseudonyms and titles are distinctive byte strings.
fn sample(rows: usize) -> Loans {
    let title_ids: Vec<String> = (0..7).map(|i| format!("isbn:97801404491{i:02}")).collect();
    let work_ids: Vec<String> = (0..7).map(|i| format!("work:odyssey-{}", i / 2)).collect();
    let mut loans = Loans {
        title_ids,
        work_ids,
        ..Loans::default()
    };
    let mut pseudonyms = Vec::with_capacity(rows);
    for r in 0..rows {
        let mut p = [0u8; 16];
        p[..8].copy_from_slice(
            &(r as u64 % 13)
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .to_le_bytes(),
        );
        p[8..].copy_from_slice(b"PSEUDONY");
        pseudonyms.push(Pseudonym(p));
        loans.titles.push((r * 5 % 7) as u32);
        loans
            .months
            .push(LoanMonth::new(2023, (r % 12) as u32 + 1).unwrap());
    }
    loans.set_row_pseudonyms(&pseudonyms);
    loans
}

fn open_err(sealed: &[u8], key: &SecretKey) -> BatchError {
    match open(sealed, key) {
        Err(e) => e,
        Ok(_) => panic!("batch opened"),
    }
}

fn loans_strategy() -> impl Strategy<Value = Loans> {
    (
        proptest::collection::btree_set("[a-z0-9:-]{0,12}", 0..20),
        proptest::collection::vec((any::<[u8; 16]>(), any::<u32>(), 12i32..120_000), 0..200),
    )
        .prop_map(|(titles, rows)| {
            let title_ids: Vec<String> = titles.into_iter().collect();
            let work_ids = title_ids.iter().map(|t| format!("w{}", t.len())).collect();
            let mut loans = Loans {
                title_ids,
                work_ids,
                ..Loans::default()
            };
            if !loans.title_ids.is_empty() {
                let n = loans.title_ids.len() as u32;
                let mut pseudonyms = Vec::with_capacity(rows.len());
                for (p, t, m) in rows {
                    pseudonyms.push(Pseudonym(p));
                    loans.titles.push(t % n);
                    loans.months.push(LoanMonth::from_index(m).unwrap());
                }
                loans.set_row_pseudonyms(&pseudonyms);
            }
            loans
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn seal_open_round_trips(loans in loans_strategy(), library in "[a-z]{1,10}", purpose in "[a-z]{0,8}") {
        let (meta, sealed) = seal(&loans, &library, &purpose, PKEY, &transfer()).unwrap();
        let (meta2, back) = open(&sealed, &transfer()).unwrap();
        prop_assert_eq!(&meta, &meta2);
        prop_assert_eq!(&back, &loans);
        prop_assert_eq!(meta.rows, loans.len() as u64);
        prop_assert_eq!(&meta.library, &library);
        prop_assert_eq!(&meta.purpose, &purpose);
        prop_assert_eq!(meta.pseudonym_key, PKEY);
        prop_assert_eq!(peek_meta(&sealed).unwrap(), meta);
    }
}

#[test]
fn id_is_deterministic_and_covers_context() {
    let loans = sample(50);
    let (a, sa) = seal(&loans, "north", "loans", PKEY, &transfer()).unwrap();
    let (b, sb) = seal(&loans, "north", "loans", PKEY, &transfer()).unwrap();
    assert_eq!(a.id, b.id);
    // Fresh nonces: same batch, different ciphertext.
    assert_ne!(sa, sb);
    // The id does not depend on the transfer key.
    let other = SecretKey::from_bytes([0x33; KEY_LEN]);
    assert_eq!(
        seal(&loans, "north", "loans", PKEY, &other).unwrap().0.id,
        a.id
    );

    let ids = [
        seal(&loans, "south", "loans", PKEY, &transfer())
            .unwrap()
            .0
            .id,
        seal(&loans, "north", "holds", PKEY, &transfer())
            .unwrap()
            .0
            .id,
        seal(
            &loans,
            "north",
            "loans",
            Fingerprint([0x23; 8]),
            &transfer(),
        )
        .unwrap()
        .0
        .id,
        seal(&sample(49), "north", "loans", PKEY, &transfer())
            .unwrap()
            .0
            .id,
    ];
    for id in ids {
        assert_ne!(id, a.id);
    }
    let text = a.id.to_string();
    assert_eq!(text.parse::<BatchId>().unwrap(), a.id);
}

#[test]
fn tampering_with_any_byte_is_detected() {
    let (_, sealed) = seal(&sample(4), "lib", "loans", PKEY, &transfer()).unwrap();
    for i in 0..sealed.len() {
        for bit in [0x01, 0x80] {
            let mut bad = sealed.clone();
            bad[i] ^= bit;
            assert!(
                open(&bad, &transfer()).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }
}

#[test]
fn tampering_with_the_body_is_an_authentication_error() {
    let (_, sealed) = seal(&sample(4), "lib", "loans", PKEY, &transfer()).unwrap();
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(
        open_err(&bad, &transfer()),
        BatchError::Authentication
    ));
    let mut bad = sealed.clone();
    bad[last - 30] ^= 1;
    assert!(matches!(
        open_err(&bad, &transfer()),
        BatchError::Authentication
    ));
    // The row count in the header is authenticated too.
    let mut bad = sealed;
    bad[58] ^= 1;
    assert!(matches!(
        open_err(&bad, &transfer()),
        BatchError::Authentication
    ));
}

#[test]
fn wrong_key_is_an_authentication_error() {
    let (_, sealed) = seal(&sample(10), "lib", "loans", PKEY, &transfer()).unwrap();
    let err = open_err(&sealed, &SecretKey::from_bytes([0x12; KEY_LEN]));
    assert!(matches!(err, BatchError::Authentication));
    assert_eq!(
        err.to_string(),
        "batch failed authentication: wrong transfer key or corrupted file"
    );
}

#[test]
fn truncation_is_an_error_not_a_panic() {
    let (_, sealed) = seal(&sample(10), "lib", "loans", PKEY, &transfer()).unwrap();
    for n in 0..sealed.len() {
        let err = open_err(&sealed[..n], &transfer());
        assert!(matches!(err, BatchError::Truncated { .. }), "{n}: {err}");
    }
    let mut long = sealed.clone();
    long.push(0);
    assert!(matches!(
        open_err(&long, &transfer()),
        BatchError::TrailingBytes { extra: 1 }
    ));
}

#[test]
fn bad_magic_and_version_are_reported() {
    let (_, sealed) = seal(&sample(1), "lib", "loans", PKEY, &transfer()).unwrap();
    let mut bad = sealed.clone();
    bad[0] = b'X';
    assert!(matches!(open_err(&bad, &transfer()), BatchError::BadMagic));
    assert!(matches!(
        open_err(b"PAR1 not a batch", &transfer()),
        BatchError::BadMagic
    ));
    let mut bad = sealed;
    bad[8] = 2;
    assert!(matches!(
        open_err(&bad, &transfer()),
        BatchError::UnsupportedVersion(2)
    ));
}

#[test]
fn invalid_loans_are_refused_at_seal() {
    let mut loans = sample(3);
    loans.titles[1] = 99;
    assert!(matches!(
        seal(&loans, "lib", "loans", PKEY, &transfer()),
        Err(BatchError::InvalidLoans(_))
    ));
    let mut loans = sample(3);
    loans.months.pop();
    assert!(matches!(
        seal(&loans, "lib", "loans", PKEY, &transfer()),
        Err(BatchError::InvalidLoans(_))
    ));
}

#[test]
fn plaintext_does_not_appear_in_sealed_bytes() {
    let loans = sample(100);
    let (_, sealed) = seal(&loans, "lib", "loans", PKEY, &transfer()).unwrap();
    let contains = |needle: &[u8]| sealed.windows(needle.len()).any(|w| w == needle);
    for p in &loans.borrower_pseudonyms {
        assert!(!contains(&p.0[..8]));
        assert!(!contains(&p.0[8..]));
    }
    for t in loans.title_ids.iter().chain(&loans.work_ids) {
        assert!(!contains(t.as_bytes()), "{t} in clear");
    }
    assert!(!contains(b"isbn"));
}

#[test]
fn outbox_write_is_atomic_idempotent_and_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("out/box");
    assert!(list_batches(&dir).unwrap().is_empty());

    let (meta, sealed) = seal(&sample(20), "lib", "loans", PKEY, &transfer()).unwrap();
    let (path, found) = write_to_outbox(&dir, &meta, &sealed).unwrap();
    assert_eq!(found, OutboxFound::Nothing);
    assert_eq!(path, dir.join(format!("{}.batch", meta.id)));
    assert_eq!(std::fs::read(&path).unwrap(), sealed);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir), 0o700);

    // Same batch sealed again (new nonce): same name, the new bytes (an
    // earlier file cannot be verified without the key, so it is replaced).
    let (meta2, sealed2) = seal(&sample(20), "lib", "loans", PKEY, &transfer()).unwrap();
    assert_eq!(
        write_to_outbox(&dir, &meta2, &sealed2).unwrap(),
        (path.clone(), OutboxFound::SameBatch)
    );
    assert_eq!(std::fs::read(&path).unwrap(), sealed2);

    let (meta3, sealed3) = seal(&sample(21), "lib", "loans", PKEY, &transfer()).unwrap();
    let (path3, _) = write_to_outbox(&dir, &meta3, &sealed3).unwrap();
    std::fs::write(dir.join("notes.txt"), "x").unwrap();
    std::fs::write(dir.join(".partial.tmp-00"), "x").unwrap();

    let mut expected = vec![path.clone(), path3];
    expected.sort();
    assert_eq!(list_batches(&dir).unwrap(), expected);
    for p in list_batches(&dir).unwrap() {
        open(&std::fs::read(p).unwrap(), &transfer()).unwrap();
    }
}

#[test]
fn outbox_refuses_meta_of_another_batch() {
    let root = tempfile::tempdir().unwrap();
    let (meta, _) = seal(&sample(2), "lib", "loans", PKEY, &transfer()).unwrap();
    let (_, other) = seal(&sample(3), "lib", "loans", PKEY, &transfer()).unwrap();
    assert!(matches!(
        write_to_outbox(root.path(), &meta, &other),
        Err(BatchError::IdMismatch)
    ));
    assert!(list_batches(root.path()).unwrap().is_empty());
}

/// Finding 1 of issue 12: a truncated file or a symbolic link already at the
/// batch's name was trusted, so the loans never reached the outbox.
#[test]
fn outbox_replaces_a_truncated_file_or_a_symlink_and_says_so() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("outbox");
    let (meta, sealed) = seal(&sample(20), "lib", "loans", PKEY, &transfer()).unwrap();
    let name = dir.join(format!("{}.batch", meta.id));
    std::fs::create_dir_all(&dir).unwrap();

    std::fs::write(&name, &sealed[..sealed.len() / 2]).unwrap();
    let (path, found) = write_to_outbox(&dir, &meta, &sealed).unwrap();
    assert_eq!(path, name);
    assert!(
        matches!(&found, OutboxFound::Damaged(why) if why.contains("truncated")),
        "{found:?}"
    );
    assert_eq!(std::fs::read(&name).unwrap(), sealed);

    // A link to a file elsewhere: the link is replaced, its target untouched.
    let target = root.path().join("elsewhere");
    std::fs::write(&target, b"keep").unwrap();
    std::fs::remove_file(&name).unwrap();
    std::os::unix::fs::symlink(&target, &name).unwrap();
    let (_, found) = write_to_outbox(&dir, &meta, &sealed).unwrap();
    assert_eq!(found, OutboxFound::Symlink);
    assert!(std::fs::symlink_metadata(&name).unwrap().is_file());
    assert_eq!(std::fs::read(&name).unwrap(), sealed);
    assert_eq!(std::fs::read(&target).unwrap(), b"keep");

    // A dangling link (the case that wrote nothing) is replaced as well.
    std::fs::remove_file(&name).unwrap();
    std::os::unix::fs::symlink(root.path().join("nowhere"), &name).unwrap();
    assert_eq!(
        write_to_outbox(&dir, &meta, &sealed).unwrap().1,
        OutboxFound::Symlink
    );
    assert_eq!(open_file(&name, &transfer()).unwrap().0, meta);

    // A directory is not silently replaced.
    std::fs::remove_file(&name).unwrap();
    std::fs::create_dir(&name).unwrap();
    let err = write_to_outbox(&dir, &meta, &sealed).unwrap_err();
    assert!(matches!(err, BatchError::NotABatchFile { .. }), "{err}");
}

#[test]
fn open_file_refuses_links_and_rejects_junk_by_its_header() {
    let root = tempfile::tempdir().unwrap();
    let (meta, sealed) = seal(&sample(5), "lib", "loans", PKEY, &transfer()).unwrap();
    let good = root.path().join("good.batch");
    std::fs::write(&good, &sealed).unwrap();
    let (m, loans) = open_file(&good, &transfer()).unwrap();
    assert_eq!(m, meta);
    assert_eq!(loans, sample(5));

    let link = root.path().join("link.batch");
    std::os::unix::fs::symlink(&good, &link).unwrap();
    assert!(matches!(
        open_file(&link, &transfer()),
        Err(BatchError::NotABatchFile { .. })
    ));

    // A valid header followed by far too many bytes is refused by its length
    // before the body is read.
    let long = root.path().join("long.batch");
    let mut bytes = sealed.clone();
    bytes.resize(sealed.len() + (1 << 20), 0);
    std::fs::write(&long, &bytes).unwrap();
    assert!(matches!(
        open_file(&long, &transfer()),
        Err(BatchError::TrailingBytes { .. })
    ));
    let short = root.path().join("short.batch");
    std::fs::write(&short, &sealed[..sealed.len() - 1]).unwrap();
    assert!(matches!(
        open_file(&short, &transfer()),
        Err(BatchError::Truncated { .. })
    ));
    let junk = root.path().join("junk.batch");
    std::fs::write(&junk, vec![b'x'; 1 << 16]).unwrap();
    assert!(matches!(
        open_file(&junk, &transfer()),
        Err(BatchError::BadMagic)
    ));
}
