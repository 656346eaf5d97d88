//! Every class of bad row: rejected and counted by reason with its row number,
//! a clean exit code, and the borrower id in no message and no written file.

use std::path::Path;

use crate::{Sandbox, contains, ok, text};

const HEADER: &[u8] = b"borrower_id,title_id,loan_date,branch\n";
const GOOD: &[u8] = b"CARD-GOOD-0001,T1,2026-01-05,B1\n";
/// The same borrower and title a month later: a second loan, not a repeat.
const GOOD_LATER: &[u8] = b"CARD-GOOD-0001,T1,2026-02-05,B1\n";

/// (reason as reported, the bad row, the distinctive id it carries)
fn classes() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    vec![
        (
            "wrong column count",
            b"SECRET-COLS-77,T1,2026-01-05\n".to_vec(),
            "SECRET-COLS-77",
        ),
        (
            "missing borrower id",
            b"   ,T1,2026-01-05,B1\n".to_vec(),
            "",
        ),
        (
            "missing title",
            b"SECRET-NOTITLE-1,,2026-01-05,B1\n".to_vec(),
            "SECRET-NOTITLE-1",
        ),
        (
            "missing date",
            b"SECRET-NODATE-1,T1,,B1\n".to_vec(),
            "SECRET-NODATE-1",
        ),
        (
            "unparseable date",
            b"SECRET-BADDATE-1,T1,2026-13-45,B1\n".to_vec(),
            "SECRET-BADDATE-1",
        ),
        (
            "future date",
            b"SECRET-FUTURE-1,T1,2027-01-01,B1\n".to_vec(),
            "SECRET-FUTURE-1",
        ),
        (
            "invalid utf-8",
            b"SECRET-UTF8-1,T\xff1,2026-01-05,B1\n".to_vec(),
            "SECRET-UTF8-1",
        ),
    ]
}

fn write(dir: &Path, name: &str, rows: &[&[u8]]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, rows.concat()).unwrap();
    path
}

#[test]
fn each_bad_row_class_is_rejected_by_reason_and_row_without_echoing_the_id() {
    let inputs = tempfile::tempdir().unwrap();
    for (reason, row, id) in classes() {
        let input = write(
            inputs.path(),
            "loans.csv",
            &[HEADER, GOOD, &row, GOOD_LATER],
        );
        let sb = Sandbox::new(&input, "");
        let out = sb.run("extract", &[]);
        ok(&out);
        let log = text(&out);
        let line = log
            .lines()
            .find(|l| l.starts_with("rejected"))
            .unwrap_or_else(|| panic!("no rejection reported for {reason}: {log}"));
        assert!(
            line.to_lowercase().contains(reason),
            "expected reason {reason:?} in {line:?}"
        );
        assert!(line.contains("rejected 1 rows"), "{line}");
        assert!(line.contains("(rows 3)"), "row number missing: {line}");
        assert!(log.contains("kept 2"), "{log}");
        if !id.is_empty() {
            assert!(!log.contains(id), "{reason}: the id was echoed: {log}");
            for (path, bytes) in sb.written_files() {
                assert!(
                    !contains(&bytes, id.as_bytes()),
                    "{reason}: id found in {}",
                    path.display()
                );
            }
        }
        assert_eq!(
            std::fs::read_dir(sb.path("outbox"))
                .unwrap()
                .filter(|e| e
                    .as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "batch"))
                .count(),
            1,
            "one sealed batch for {reason}"
        );
    }
}

fn assert_failed_and_wrote_nothing(sb: &Sandbox, out: &std::process::Output, expect: &str) {
    assert_eq!(out.status.code(), Some(1), "{}", text(out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "one-line error expected: {err}");
    assert!(err.to_lowercase().contains(expect), "{err}");
    let batches = std::fs::read_dir(sb.path("outbox"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "batch")
            })
            .count()
        })
        .unwrap_or(0);
    assert_eq!(batches, 0, "a batch was written");
}

#[test]
fn a_file_with_no_valid_row_is_an_error_and_writes_nothing() {
    let inputs = tempfile::tempdir().unwrap();
    let rows: Vec<Vec<u8>> = classes().into_iter().map(|(_, r, _)| r).collect();
    let mut all: Vec<&[u8]> = vec![HEADER];
    all.extend(rows.iter().map(Vec::as_slice));
    let input = write(inputs.path(), "bad.csv", &all);
    let sb = Sandbox::new(&input, "");
    let out = sb.run("extract", &[]);
    assert_failed_and_wrote_nothing(&sb, &out, "none of the 7 data rows is valid");
    for (_, _, id) in classes() {
        if !id.is_empty() {
            assert!(!text(&out).contains(id));
        }
    }
}

#[test]
fn a_header_without_the_configured_columns_is_an_error_and_writes_nothing() {
    let inputs = tempfile::tempdir().unwrap();
    let input = write(
        inputs.path(),
        "wrong.csv",
        &[b"patron,item,date\n", b"SECRET-HDR-1,T1,2026-01-05\n"],
    );
    let sb = Sandbox::new(&input, "");
    let out = sb.run("extract", &[]);
    assert_failed_and_wrote_nothing(&sb, &out, "borrower_id");
    assert!(!text(&out).contains("SECRET-HDR-1"));
}

#[test]
fn an_empty_file_is_an_error() {
    let inputs = tempfile::tempdir().unwrap();
    let input = write(inputs.path(), "empty.csv", &[]);
    let sb = Sandbox::new(&input, "");
    let out = sb.run("extract", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn a_missing_input_file_is_a_one_line_error_naming_it() {
    let sb = Sandbox::new(Path::new("/nonexistent/loans.csv"), "");
    let out = sb.run("run", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/loans.csv"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}
