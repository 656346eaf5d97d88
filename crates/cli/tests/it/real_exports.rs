//! Exports shaped like real libraries' publish on every run, whatever key is
//! drawn: numeric borrower numbers that are also biblionumbers, short
//! letter ids, MovieLens-style ids (issue 10). The old leak check refused
//! these on every run, or at random depending on the key.

use std::path::{Path, PathBuf};

use crate::{Lcg, Sandbox, ok, text};

/// Loans of `borrowers` borrowers with tastes: each borrows 6 titles of one
/// of `groups` groups of 20 titles, in the 12 months up to 2026-10. Returns
/// (borrower index, title index, day, month, year) rows.
fn loans(borrowers: u64, groups: u64, seed: u64) -> Vec<(u64, u64, u64, u64, u64)> {
    let mut rng = Lcg(seed);
    let mut rows = Vec::new();
    for b in 0..borrowers {
        let group = b % groups;
        for _ in 0..6 {
            let title = group * 20 + rng.next(20);
            let month = 1 + rng.next(12);
            let (month, year) = if month <= 10 {
                (month, 2026)
            } else {
                (month, 2025)
            };
            rows.push((b, title, 1 + rng.next(28), month, year));
        }
    }
    rows
}

/// A semicolon-separated, Windows-1252 export as an ILS writes it: numeric
/// borrower numbers 1..=5000 and numeric biblionumbers 1..=800 (so most
/// title ids are also borrower ids), `dd.mm.yyyy` dates, extra columns with
/// non-ASCII text.
fn ils_export(dir: &Path) -> PathBuf {
    let mut bytes: Vec<u8> =
        b"L\xe5nernummer;Titelnummer;Udl\xe5nsdato;Filial;Materialetype\r\n".to_vec();
    for (b, t, d, m, y) in loans(5000, 40, 7) {
        bytes.extend_from_slice(
            format!("{};{};{d:02}.{m:02}.{y};Hovedbiblioteket;", b + 1, t + 1).as_bytes(),
        );
        bytes.extend_from_slice(b"B\xf8ger\r\n");
    }
    let path = dir.join("udlaan.csv");
    std::fs::write(&path, bytes).unwrap();
    path
}

const ILS_SOURCE: &str = r#"format = "semicolon"
encoding = "windows-1252"
date_format = "%d.%m.%Y"

[source.columns]
borrower_id = "Lånernummer"
title_id = "Titelnummer"
loan_date = "Udlånsdato"
"#;

/// A CSV export with the given id shapes.
fn csv_export(
    dir: &Path,
    borrower: impl Fn(u64) -> String,
    title: impl Fn(u64) -> String,
) -> PathBuf {
    let mut text = String::from("borrower_id,title_id,loan_date\n");
    for (b, t, d, m, y) in loans(671, 8, 11) {
        text.push_str(&format!("{},{},{y}-{m:02}-{d:02}\n", borrower(b), title(t)));
    }
    let path = dir.join("loans.csv");
    std::fs::write(&path, text).unwrap();
    path
}

/// The live feed's files (names and bytes), the directory a web server serves.
fn served(sb: &Sandbox) -> Vec<(PathBuf, Vec<u8>)> {
    let root = sb.path("published/feed").canonicalize().unwrap();
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(&root).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Runs the whole job `runs` times, each in a fresh sandbox with fresh
/// keys; every run must publish, verify, and publish the same feed.
fn publishes_every_time(input: &Path, source: &str, runs: usize) -> String {
    let mut first: Option<Vec<(PathBuf, Vec<u8>)>> = None;
    let mut output = String::new();
    for run in 0..runs {
        let sb = Sandbox::with_source(input, source, "");
        let out = sb.run("run", &[]);
        assert_eq!(out.status.code(), Some(0), "run {run}: {}", text(&out));
        assert!(
            text(&out).contains("published "),
            "run {run}: {}",
            text(&out)
        );
        let v = sb.run("verify", &[]);
        ok(&v);
        let feed = served(&sb);
        assert!(feed.len() > 2, "run {run}: the feed is empty");
        match &first {
            None => first = Some(feed),
            // The lists do not depend on which key was drawn.
            Some(f) => assert!(f == &feed, "run {run} published other lists"),
        }
        output = text(&out);
    }
    output
}

#[test]
fn a_windows_1252_semicolon_export_with_numeric_ids_publishes_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = ils_export(dir.path());
    let out = publishes_every_time(&input, ILS_SOURCE, 20);
    assert!(
        out.contains("borrower ids of the loans file are also title ids"),
        "{out}"
    );
}

#[test]
fn movielens_style_ids_publish_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let input = csv_export(
        dir.path(),
        |b| format!("U{}", b + 1),
        |t| format!("M{}", t + 1),
    );
    publishes_every_time(&input, "", 8);
}

#[test]
fn short_letter_and_number_ids_publish_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    // Three-letter borrower ids and 1-3 digit numeric ones, titles numeric.
    let letters = |b: u64| {
        let a = b'A' + (b % 26) as u8;
        let c = b'A' + ((b / 26) % 26) as u8;
        if b.is_multiple_of(2) {
            format!(
                "{}{}{}",
                a as char,
                c as char,
                (b'A' + (b % 7) as u8) as char
            )
        } else {
            (b % 999 + 1).to_string()
        }
    };
    let input = csv_export(dir.path(), letters, |t| (t + 1).to_string());
    publishes_every_time(&input, "", 8);
}
