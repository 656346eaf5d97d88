//! `alsoborrowed check`: names the fix for a wrong encoding, a wrong date
//! format and borrower ids that are also title ids; passes on the demo;
//! writes nothing; never prints a borrower id. `extract` gives the same
//! hints in its errors.

use std::path::{Path, PathBuf};

use crate::{Lcg, Sandbox, repo, text};

/// `rows` loans as (borrower index, title index, day, month, year), dates
/// in 2025-11..2026-10.
fn loans(rows: usize, borrowers: u64, titles: u64) -> Vec<(u64, u64, u64, u64, u64)> {
    let mut rng = Lcg(5);
    (0..rows)
        .map(|_| {
            let m = 1 + rng.next(12);
            let y = if m <= 10 { 2026 } else { 2025 };
            (
                rng.next(borrowers),
                rng.next(titles),
                1 + rng.next(28),
                m,
                y,
            )
        })
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

fn check(sb: &Sandbox) -> (Option<i32>, String) {
    let out = sb.run("check", &[]);
    (out.status.code(), text(&out))
}

/// The Danish export of `real_exports`: semicolons, Windows-1252 header,
/// `dd.mm.yyyy` dates, numeric ids.
fn danish(dir: &Path) -> PathBuf {
    let mut bytes: Vec<u8> = b"L\xe5nernummer;Titelnummer;Udl\xe5nsdato;Filial\r\n".to_vec();
    for (b, t, d, m, y) in loans(3000, 5000, 800) {
        bytes.extend_from_slice(format!("{};T{};{d:02}.{m:02}.{y};", b + 1, t + 1).as_bytes());
        bytes.extend_from_slice(b"Hovedbibliotek\xe6t\r\n");
    }
    write(dir, "udlaan.csv", &bytes)
}

const DANISH_COLUMNS: &str = r#"format = "semicolon"

[source.columns]
borrower_id = "Lånernummer"
title_id = "Titelnummer"
loan_date = "Udlånsdato"
"#;

#[test]
fn the_demo_pipeline_passes_and_check_writes_nothing() {
    // The demo's own pipeline file: keys are created on first use.
    let out = crate::bin()
        .args(["check", "--pipeline"])
        .arg(repo().join("pipelines/demo.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let t = text(&out);
    assert!(!t.contains("error "), "{t}");
    assert!(t.contains("a run would work"), "{t}");
    assert!(t.contains("estimate: about"), "{t}");
    // The same fixture in a sandbox: nothing is created, not even the
    // directories and keys the first run would make.
    let sb = Sandbox::new(&repo().join("fixtures/demo/loans.csv"), "");
    let (code, t) = check(&sb);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("the first run creates it"), "{t}");
    let entries: Vec<_> = std::fs::read_dir(sb.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["pipeline.toml"], "check wrote something");
}

#[test]
fn a_windows_1252_file_read_as_utf8_names_the_encoding_in_check_and_extract() {
    let dir = tempfile::tempdir().unwrap();
    let input = danish(dir.path());
    let sb = Sandbox::with_source(
        &input,
        &format!("date_format = \"%d.%m.%Y\"\n{DANISH_COLUMNS}"),
        "",
    );
    let (code, t) = check(&sb);
    assert_eq!(code, Some(1), "{t}");
    let fix = "fix: set source.encoding = \"windows-1252\" in the pipeline file";
    assert!(t.contains(fix), "{t}");
    let out = sb.run("extract", &[]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out);
    assert!(
        e.contains("header lacks column(s) Lånernummer, Udlånsdato"),
        "{e}"
    );
    assert!(e.contains(fix), "{e}");
    // With the fix, check passes.
    let sb = Sandbox::with_source(
        &input,
        &format!("encoding = \"windows-1252\"\ndate_format = \"%d.%m.%Y\"\n{DANISH_COLUMNS}"),
        "",
    );
    let (code, t) = check(&sb);
    assert_eq!(code, Some(0), "{t}");
    assert!(t.contains("non-ASCII text reads as windows-1252"), "{t}");
}

#[test]
fn a_wrong_date_format_names_the_pattern_tried_and_the_fix_in_check_and_extract() {
    let dir = tempfile::tempdir().unwrap();
    let input = danish(dir.path());
    let sb = Sandbox::with_source(
        &input,
        &format!("encoding = \"windows-1252\"\n{DANISH_COLUMNS}"),
        "",
    );
    let (code, t) = check(&sb);
    assert_eq!(code, Some(1), "{t}");
    let fix = "fix: set source.date_format = \"%d.%m.%Y\" in the pipeline file";
    assert!(t.contains(fix), "{t}");
    assert!(
        t.contains("source.date_format \"iso\" does not parse"),
        "{t}"
    );
    let out = sb.run("extract", &[]);
    assert_eq!(out.status.code(), Some(1));
    let e = text(&out);
    assert!(e.contains("none of the 3000 data rows is valid"), "{e}");
    assert!(e.contains("source.date_format \"iso\""), "{e}");
    assert!(e.contains(fix), "{e}");
    // A pattern of the wrong order is named too.
    let sb = Sandbox::with_source(
        &input,
        &format!("encoding = \"windows-1252\"\ndate_format = \"%m/%d/%Y\"\n{DANISH_COLUMNS}"),
        "",
    );
    let out = sb.run("extract", &[]);
    let e = text(&out);
    assert!(e.contains("source.date_format \"%m/%d/%Y\""), "{e}");
    assert!(e.contains(fix), "{e}");
}

#[test]
fn borrower_ids_that_are_also_title_ids_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut csv = String::from("borrower_id,title_id,loan_date\n");
    for (b, t, d, m, y) in loans(1500, 5000, 400) {
        csv.push_str(&format!("{},{},{y}-{m:02}-{d:02}\n", b + 1, t + 1));
    }
    let input = write(dir.path(), "loans.csv", csv.as_bytes());
    let sb = Sandbox::new(&input, "");
    let (code, t) = check(&sb);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("borrower ids of the sample are also title ids"),
        "{t}"
    );
    assert!(t.contains("warning ids:"), "{t}");
}

/// Borrower ids of every shape: numeric 1..=5000, `A`, `U1`, a long card
/// number, each mapped through `id` (a shape-preserving renaming).
fn every_shape(dir: &Path, id: impl Fn(&str) -> String) -> PathBuf {
    let shaped = |b: u64| match b % 5 {
        0 => "A".to_owned(),
        1 => "U1".to_owned(),
        2 => format!("CARD{:010}", 4_242_000 + b),
        _ => format!("{}", 1 + b % 5000),
    };
    let mut csv = String::from("borrower_id,title_id,loan_date\n");
    for (b, t, d, m, y) in loans(2500, 20_000, 300) {
        csv.push_str(&format!(
            "{},Bog {},{y}-{m:02}-{d:02}\n",
            id(&shaped(b)),
            t + 1
        ));
    }
    write(dir, "loans.csv", csv.as_bytes())
}

/// A renaming that keeps each id's kind and length and tells ids apart:
/// each digit and letter is shifted within its class.
fn rename(id: &str) -> String {
    id.chars()
        .map(|c| match c {
            '0'..='9' => char::from(b'0' + (c as u8 - b'0' + 7) % 10),
            'A'..='Z' => char::from(b'A' + (c as u8 - b'A' + 11) % 26),
            c => c,
        })
        .collect()
}

#[test]
fn no_borrower_id_of_the_sample_appears_in_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = every_shape(dir.path(), str::to_owned);
    let sb = Sandbox::new(&input, "");
    let (code, out) = check(&sb);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("letters and digits, 2-14 chars"), "{out}");
    // No non-numeric id appears as a word of the output.
    let words: Vec<&str> = out
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    for id in ["A", "U1", "CARD0004242002", "CARD0004242007"] {
        assert!(!words.contains(&id), "{id} in {out}");
    }
    // The output does not depend on the ids' values, numeric ones included:
    // renaming every id (same kinds and lengths) changes nothing.
    let other = tempfile::tempdir().unwrap();
    let renamed = every_shape(other.path(), rename);
    assert_ne!(
        std::fs::read(&input).unwrap(),
        std::fs::read(&renamed).unwrap()
    );
    let sb2 = Sandbox::new(&renamed, "");
    let (code2, out2) = check(&sb2);
    assert_eq!(code2, Some(0));
    let strip = |s: &str, sb: &Sandbox, input: &Path| {
        s.replace(&sb.dir.path().display().to_string(), "SANDBOX")
            .replace(&input.display().to_string(), "INPUT")
    };
    assert_eq!(strip(&out, &sb, &input), strip(&out2, &sb2, &renamed));
}

#[test]
fn key_problems_are_errors_with_the_fix() {
    use std::os::unix::fs::PermissionsExt as _;
    let sb = Sandbox::new(&repo().join("fixtures/demo/loans.csv"), "");
    let keys = sb.path("keys");
    std::fs::create_dir(&keys).unwrap();
    for name in ["pseudonym.key", "transfer.key"] {
        let out = crate::bin()
            .args(["key", "new"])
            .arg(keys.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
    }
    std::fs::set_permissions(
        keys.join("pseudonym.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    std::fs::copy(keys.join("transfer.key"), keys.join("copy.key")).unwrap();
    let toml = std::fs::read_to_string(sb.pipeline()).unwrap();
    std::fs::write(
        sb.pipeline(),
        toml.replace("keys/transfer.key", "keys/copy.key"),
    )
    .unwrap();
    std::fs::write(
        sb.pipeline().with_file_name("same.toml"),
        toml.replace("keys/transfer.key", "keys/pseudonym.key"),
    )
    .unwrap();
    let (code, t) = check(&sb);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("fix: chmod 600"), "{t}");
    let out = crate::bin()
        .args(["check", "--pipeline"])
        .arg(sb.pipeline().with_file_name("same.toml"))
        .output()
        .unwrap();
    assert!(
        text(&out).contains("keys.pseudonym and keys.transfer are the same file"),
        "{}",
        text(&out)
    );
    std::fs::set_permissions(
        keys.join("pseudonym.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::copy(keys.join("pseudonym.key"), keys.join("copy.key")).unwrap();
    let (code, t) = check(&sb);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("hold the same key"), "{t}");
}

#[test]
fn a_broken_pipeline_file_is_one_error_line() {
    let sb = Sandbox::new(&repo().join("fixtures/demo/loans.csv"), "min_suport = 3");
    let (code, t) = check(&sb);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("min_suport"), "{t}");
    assert!(t.contains("docs/configuration.md"), "{t}");
}

#[test]
fn a_database_source_is_checked_without_running_the_query() {
    let sb = Sandbox::new(&repo().join("fixtures/demo/loans.csv"), "");
    let toml = std::fs::read_to_string(sb.pipeline()).unwrap();
    let input = repo().join("fixtures/demo/loans.csv");
    let toml = toml.replace(
        &format!("path = {:?}", input.to_str().unwrap()),
        "format = \"postgres\"\nhost = \"127.0.0.1\"\nport = 1\ndatabase = \"evergreen\"\n\
         user = \"ro\"\npassword_env = \"ALSOBORROWED_CHECK_TEST_UNSET\"\nquery = \"SELECT 1\"",
    );
    std::fs::write(sb.pipeline(), toml).unwrap();
    let (code, t) = check(&sb);
    assert_eq!(code, Some(1), "{t}");
    assert!(t.contains("postgres query on 127.0.0.1:1"), "{t}");
    assert!(
        t.contains("ALSOBORROWED_CHECK_TEST_UNSET is not set"),
        "{t}"
    );
    assert!(
        t.contains("error   database server 127.0.0.1:1: no connection"),
        "{t}"
    );
}

#[test]
fn dates_after_today_are_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let input = write(
        dir.path(),
        "loans.csv",
        b"borrower_id,title_id,loan_date\nA,t1,2026-10-01\nB,t2,2027-01-01\n",
    );
    let sb = Sandbox::new(&input, "");
    let (code, t) = check(&sb);
    assert_eq!(code, Some(0), "{t}");
    assert!(
        t.contains("warning dates: 1 of the sampled dates are after today (2026-11-22)"),
        "{t}"
    );
}
