//! The bad-input corpus (`fixtures/bad-input/`, see its README) and a few big
//! inputs generated here: each gives a clear error or counted rejections,
//! never a partial batch, and no borrower id (all of them contain "SECRET")
//! in any message or written file.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::{Sandbox, contains, ok, repo, text};

fn fixture(name: &str) -> PathBuf {
    repo().join("fixtures/bad-input").join(name)
}

fn batches(sb: &Sandbox) -> Vec<PathBuf> {
    std::fs::read_dir(sb.path("outbox"))
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|x| x == "batch"))
                .collect()
        })
        .unwrap_or_default()
}

/// No id in the output or in any file the sandbox holds.
#[track_caller]
fn no_id_anywhere(sb: &Sandbox, out: &Output) {
    let log = text(out).to_lowercase();
    assert!(!log.contains("secret"), "an id was echoed: {log}");
    for (path, bytes) in sb.written_files() {
        let lower = bytes.to_ascii_lowercase();
        assert!(
            !contains(&lower, b"secret"),
            "an id is in {}",
            path.display()
        );
    }
}

/// Exit code 1, a one-line error containing `expect`, and no batch.
#[track_caller]
fn fails_cleanly(sb: &Sandbox, out: &Output, expect: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one-line error expected: {err}");
    assert!(err.contains(expect), "expected {expect:?} in {err}");
    assert!(batches(sb).is_empty(), "a batch was written");
    no_id_anywhere(sb, out);
}

/// Success, one batch, and each `expect` in the report.
#[track_caller]
fn extracts(sb: &Sandbox, out: &Output, expect: &[&str]) {
    ok(out);
    let log = text(out);
    for e in expect {
        assert!(log.contains(e), "expected {e:?} in {log}");
    }
    assert_eq!(batches(sb).len(), 1);
    no_id_anywhere(sb, out);
}

fn extract(name: &str, source_extra: &str) -> (Sandbox, Output) {
    let sb = Sandbox::with_source(&fixture(name), source_extra, "");
    let out = sb.run("extract", &[]);
    (sb, out)
}

#[test]
fn a_file_truncated_inside_a_quote_loses_only_its_last_record() {
    let (sb, out) = extract("truncated-mid-quote.csv", "");
    extracts(
        &sb,
        &out,
        &["kept 6", "rejected 1 rows: wrong column count (rows 8)"],
    );
}

#[test]
fn a_file_truncated_mid_line_loses_only_its_last_line() {
    let (sb, out) = extract("truncated-mid-line.csv", "");
    extracts(
        &sb,
        &out,
        &["kept 6", "rejected 1 rows: wrong column count (rows 8)"],
    );
}

#[test]
fn latin1_read_as_utf8_is_rejected_row_by_row_not_guessed() {
    let (sb, out) = extract("latin1-as-utf8.csv", "");
    extracts(
        &sb,
        &out,
        &["kept 6", "rejected 2 rows: invalid utf-8 (rows 8, 9)"],
    );
    // Declared correctly, the same file keeps every row.
    let (sb, out) = extract("latin1-as-utf8.csv", "encoding = \"iso-8859-1\"");
    extracts(&sb, &out, &["kept 8"]);
}

#[test]
fn utf8_with_a_byte_order_mark_declared_latin1_is_an_error() {
    let (sb, out) = extract("utf8-as-latin1.csv", "encoding = \"iso-8859-1\"");
    fails_cleanly(
        &sb,
        &out,
        "starts with a utf-8 byte order mark, but source.encoding is iso-8859-1",
    );
}

#[test]
fn mixed_line_endings_are_all_line_ends() {
    let (sb, out) = extract("mixed-line-endings.csv", "");
    extracts(&sb, &out, &["read 4 rows", "kept 4"]);
    assert!(!text(&out).contains("rejected"), "{}", text(&out));
}

#[test]
fn nul_bytes_are_rejected_and_counted() {
    let (sb, out) = extract("nul-bytes.csv", "");
    extracts(
        &sb,
        &out,
        &["kept 6", "rejected 3 rows: nul byte (rows 8, 9, 10)"],
    );
}

#[test]
fn formula_titles_are_data_in_the_store_and_defused_in_pairs_csv() {
    let sb = Sandbox::new(&fixture("formula-injection.csv"), "");
    let out = sb.run("run", &[]);
    ok(&out);
    no_id_anywhere(&sb, &out);
    let pairs = std::fs::read_to_string(sb.path("published/current/pairs.csv")).unwrap();
    for title in ["=cmd|' /C calc'!A0", "+SUM(1+1)", "@SUM(A1)"] {
        assert!(
            pairs.contains(&format!("'{title}")),
            "{title} not defused: {pairs}"
        );
        for line in pairs.lines() {
            for cell in line.split(',') {
                assert!(
                    !cell.trim_matches('"').starts_with(title),
                    "live formula cell in pairs.csv: {line}"
                );
            }
        }
    }
    // Kept as data: the feed carries the titles as they were borrowed.
    let feed = sb.path("published/current/feed");
    let mut found = false;
    for entry in walk(&feed) {
        let json = std::fs::read_to_string(&entry).unwrap_or_default();
        found |= json.contains("=cmd|' /C calc'!A0");
    }
    assert!(found, "the title is not kept as data in the feed");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn duplicate_loans_are_merged_and_counted() {
    let (sb, out) = extract("duplicate-loans.csv", "");
    extracts(
        &sb,
        &out,
        &[
            "read 5 rows",
            "kept 3",
            "merged 2 repeated loans",
            "(3 loans)",
        ],
    );
}

/// The id of the batch a successful extract reports.
fn sealed_id(out: &Output) -> String {
    let log = text(out);
    log.lines()
        .find_map(|l| l.strip_prefix("sealed batch "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no sealed batch in {log}"))
        .to_owned()
}

#[test]
fn a_whole_file_repeated_seals_the_batch_of_the_file_once() {
    let sb = Sandbox::new(&fixture("twice.csv"), "");
    let twice = sb.run("extract", &[]);
    extracts(
        &sb,
        &twice,
        &["read 12 rows", "kept 6", "merged 6 repeated loans"],
    );
    ok(&sb.run("ingest", &[]));
    let once_path = fixture("once.csv");
    let once = sb.run("extract", &["--input", once_path.to_str().unwrap()]);
    ok(&once);
    assert_eq!(sealed_id(&once), sealed_id(&twice), "content-addressed");
    let again = sb.run("ingest", &[]);
    ok(&again);
    assert!(
        text(&again).contains("already ingested"),
        "{}",
        text(&again)
    );
    no_id_anywhere(&sb, &again);
}

#[test]
fn a_header_only_file_is_an_error() {
    let (sb, out) = extract("header-only.csv", "");
    fails_cleanly(&sb, &out, "no data rows");
}

#[test]
fn a_file_without_header_is_an_error_that_withholds_the_first_line() {
    let (sb, out) = extract("no-header.csv", "");
    fails_cleanly(&sb, &out, "its values are not shown");
}

fn generated(name: &str, data: &[u8]) -> (tempfile::TempDir, Sandbox, Output) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, data).unwrap();
    let sb = Sandbox::new(&path, "");
    let out = sb.run("extract", &[]);
    (dir, sb, out)
}

#[test]
fn a_huge_quoted_field_is_an_error() {
    let mut data =
        b"borrower_id,title_id,loan_date,branch\nSECRET-OK-1,T1,2026-01-05,main\n".to_vec();
    data.extend_from_slice(b"SECRET-HUGE-1,\"");
    data.extend(std::iter::repeat_n(b'x', 10 << 20));
    data.extend_from_slice(b"\",2026-01-05,main\n");
    let (_dir, sb, out) = generated("huge.csv", &data);
    fails_cleanly(&sb, &out, "line 3 is longer than 1048576 bytes");
}

#[test]
fn an_over_limit_line_is_an_error_even_without_a_line_break() {
    let mut data =
        b"borrower_id,title_id,loan_date,branch\nSECRET-OK-1,T1,2026-01-05,main\n".to_vec();
    data.extend(std::iter::repeat_n(b'y', 2 << 20));
    let (_dir, sb, out) = generated("long.csv", &data);
    fails_cleanly(&sb, &out, "line 3 is longer than");
}
