//! Regressions of issue 12 ("never lose or double-count a loan"): each test
//! reproduces one finding of the torture run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::{Sandbox, bin, ok, repo, text};

fn demo() -> PathBuf {
    repo().join("fixtures/demo/loans.csv")
}

fn batches_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "batch"))
        .collect();
    v.sort();
    v
}

fn status_loans(sb: &Sandbox) -> u64 {
    let out = sb.run("status", &[]);
    ok(&out);
    let t = text(&out);
    t.lines()
        .find_map(|l| l.strip_prefix("loans: "))
        .unwrap_or_else(|| panic!("{t}"))
        .parse()
        .unwrap()
}

/// Finding 1: a truncated file at `outbox/<id>.batch` was kept (exit 0) and
/// ingest then failed forever.
#[test]
fn extract_replaces_a_truncated_batch_file_and_says_so() {
    let sb = Sandbox::new(&demo(), "");
    ok(&sb.run("extract", &[]));
    let batch = batches_in(&sb.path("outbox")).remove(0);
    let bytes = std::fs::read(&batch).unwrap();
    std::fs::write(&batch, &bytes[..bytes.len() / 3]).unwrap();
    let out = sb.run("extract", &[]);
    ok(&out);
    assert!(text(&out).contains("truncated"), "{}", text(&out));
    assert_eq!(std::fs::metadata(&batch).unwrap().len(), bytes.len() as u64);
    ok(&sb.run("ingest", &[]));
    assert!(status_loans(&sb) > 40_000);
}

/// Finding 1: a symbolic link at `outbox/<id>.batch` made extract write
/// nothing, report success, and lose the loans.
#[test]
fn extract_replaces_a_symlink_in_the_outbox_and_never_writes_through_it() {
    let sb = Sandbox::new(&demo(), "");
    ok(&sb.run("extract", &[]));
    let batch = batches_in(&sb.path("outbox")).remove(0);
    std::fs::remove_file(&batch).unwrap();
    let target = sb.path("elsewhere");
    std::os::unix::fs::symlink(&target, &batch).unwrap();
    let out = sb.run("extract", &[]);
    ok(&out);
    assert!(text(&out).contains("symbolic link"), "{}", text(&out));
    assert!(!target.exists(), "wrote through the link");
    assert!(std::fs::symlink_metadata(&batch).unwrap().is_file());
    ok(&sb.run("ingest", &[]));
    assert!(status_loans(&sb) > 40_000);
}

/// Finding 4: one bad batch stopped ingest for every later one.
#[test]
fn a_bad_batch_is_quarantined_and_the_others_are_ingested() {
    let sb = Sandbox::new(&demo(), "");
    ok(&sb.run("extract", &[]));
    // Sorted before the good batch, so it used to block it.
    let bad = sb.path("outbox/0000.batch");
    std::fs::write(&bad, b"not a batch at all").unwrap();
    let link = sb.path("outbox/0001.batch");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let out = sb.run("ingest", &[]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("2 batch file(s) could not be ingested"), "{t}");
    assert!(t.contains("bad magic"), "{t}");
    assert!(t.contains("symbolic link"), "{t}");
    assert!(status_loans(&sb) > 40_000);
    assert!(batches_in(&sb.path("outbox")).is_empty());
    let q = sb.path("outbox/quarantine");
    assert!(q.join("0000.batch").is_file());
    assert!(
        std::fs::symlink_metadata(q.join("0001.batch"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let reason = std::fs::read_to_string(q.join("0000.batch.reason")).unwrap();
    assert!(reason.contains("bad magic"), "{reason}");
    let st = sb.run("status", &[]);
    ok(&st);
    assert!(
        text(&st).contains("quarantined batches: 2"),
        "{}",
        text(&st)
    );
    // Nothing left to quarantine: the next ingest succeeds.
    ok(&sb.run("ingest", &[]));
}

/// Finding 4: one junk `.json` in `links/` made `status` exit 1.
#[test]
fn a_junk_link_record_is_ignored_by_status_and_named() {
    let sb = Sandbox::new(&demo(), "");
    ok(&sb.run("run", &[]));
    std::fs::write(sb.path("outbox/links/junk.json"), b"{\"batch\": [1, ").unwrap();
    std::fs::write(
        sb.path("outbox/links/zz.json"),
        b"{\"batch\": \"x\", \"sealed_on\": \"no\"}",
    )
    .unwrap();
    let out = sb.run("status", &[]);
    ok(&out);
    let t = text(&out);
    assert!(t.contains("ignored") && t.contains("junk.json"), "{t}");
    assert!(t.contains("sealed_on is not a date"), "{t}");
    assert!(t.contains("delete links by"), "{t}");
}

/// Finding 4: the pipeline file was read without a size limit.
#[test]
fn a_pipeline_file_that_never_ends_is_refused() {
    let out = bin()
        .args(["status", "--pipeline", "/dev/zero"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("larger than"), "{}", text(&out));
}

/// Finding 5: `extract --today` far ahead wrote a link record dated in the
/// future, from which the deletion deadline was computed.
#[test]
fn extract_refuses_a_today_in_the_future() {
    let sb = Sandbox::new(&demo(), "");
    let out = bin()
        .args(["extract", "--today", "9999-12-31", "--pipeline"])
        .arg(sb.pipeline())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("after the system date"),
        "{}",
        text(&out)
    );
    assert!(!sb.path("outbox/links").exists());
}

/// Finding 5: `ingest --today 1970-01-01` stored loans dated after "today".
#[test]
fn ingest_refuses_loans_dated_after_today() {
    let sb = Sandbox::new(&demo(), "");
    ok(&sb.run("extract", &[]));
    let out = bin()
        .args(["ingest", "--today", "1970-01-01", "--pipeline"])
        .arg(sb.pipeline())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert!(text(&out).contains("after today"), "{}", text(&out));
    assert_eq!(status_loans(&sb), 0);
}

/// Finding 6: causes were printed twice ("... (os error 2): ... (os error 2)").
#[test]
fn an_error_prints_its_cause_once() {
    let out = bin()
        .args(["status", "--pipeline", "/nonexistent/pipeline.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let t = text(&out);
    assert_eq!(t.lines().count(), 1, "{t}");
    assert_eq!(t.matches("os error 2").count(), 1, "{t}");
}

/// Finding 6: only the store root's mode was checked.
#[test]
fn a_store_subdirectory_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new(&demo(), "");
    ok(&sb.run("run", &[]));
    let loans = sb.path("store/loans");
    std::fs::set_permissions(&loans, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = sb.run("status", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("chmod 700"), "{}", text(&out));
}

/// Finding 2 and the "done when": a 30-day export re-sent daily for
/// 61 days leaves the store at the size of the distinct loans, and the
/// published lists equal those of one extraction of the same loans.
#[test]
fn a_rolling_export_resent_daily_stores_each_loan_once_and_publishes_the_same() {
    let csv = std::fs::read_to_string(demo()).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let rows: Vec<(&str, jiff::civil::Date)> = lines
        .map(|l| (l, l.split(',').nth(2).unwrap().parse().unwrap()))
        .collect();
    let first_day = jiff::civil::date(2026, 8, 1);
    let days: Vec<jiff::civil::Date> = (0..61)
        .map(|d| first_day.checked_add(jiff::Span::new().days(d)).unwrap())
        .collect();
    let window = |day: jiff::civil::Date| {
        let from = day.checked_sub(jiff::Span::new().days(29)).unwrap();
        rows.iter()
            .filter(move |(_, d)| (from..=day).contains(d))
            .map(|(l, _)| *l)
    };

    let rolling = Sandbox::new(&demo(), "");
    let input = rolling.path("export.csv");
    let mut sent = 0usize;
    for &day in &days {
        let body: Vec<&str> = window(day).collect();
        sent += body.len();
        std::fs::write(&input, format!("{header}\n{}\n", body.join("\n"))).unwrap();
        let today = day.to_string();
        for cmd in ["extract", "ingest"] {
            let out = bin()
                .args([cmd, "--today", &today, "--pipeline"])
                .arg(rolling.pipeline())
                .arg("--input")
                .arg(&input)
                .output()
                .unwrap();
            ok(&out);
        }
    }

    // The reference: every loan of the 61 windows, extracted once.
    let reference = Sandbox::new(&demo(), "");
    let from = days[0].checked_sub(jiff::Span::new().days(29)).unwrap();
    let last = *days.last().unwrap();
    let all: Vec<&str> = rows
        .iter()
        .filter(|(_, d)| (from..=last).contains(d))
        .map(|(l, _)| *l)
        .collect();
    let union = reference.path("all.csv");
    std::fs::write(&union, format!("{header}\n{}\n", all.join("\n"))).unwrap();
    let today = last.to_string();
    for cmd in ["extract", "ingest"] {
        let out = bin()
            .args([cmd, "--today", &today, "--pipeline"])
            .arg(reference.pipeline())
            .arg("--input")
            .arg(&union)
            .output()
            .unwrap();
        ok(&out);
    }
    let distinct: BTreeSet<(&str, &str, &str)> = all
        .iter()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0], f[1], &f[2][..7])
        })
        .collect();

    let held = status_loans(&rolling);
    assert_eq!(
        held,
        distinct.len() as u64,
        "sent {sent} rows in 61 exports"
    );
    assert_eq!(status_loans(&reference), held);
    let st = text(&rolling.run("status", &[]));
    assert!(st.contains("repeated loans dropped"), "{st}");

    // Bytes on disk: within a few percent of the reference store.
    let size = |sb: &Sandbox| -> (u64, usize) {
        let mut n = (0, 0);
        let mut stack = vec![sb.path("store/loans")];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                let m = e.metadata().unwrap();
                if m.is_dir() {
                    stack.push(e.path());
                } else {
                    n.0 += m.len();
                    n.1 += 1;
                }
            }
        }
        n
    };
    let (rb, rf) = size(&rolling);
    let (ob, of) = size(&reference);
    eprintln!(
        "rolling: {sent} rows sent, {held} held in {rf} files, {rb} bytes; reference: {of} files, {ob} bytes"
    );
    assert!(rb * 100 <= ob * 105, "store {rb} bytes, reference {ob}");
    assert!(rf <= 2 * of, "{rf} files, reference {of}");

    // Identical published lists.
    ok(&rolling.run("export", &[]));
    ok(&reference.run("export", &[]));
    let feed = |sb: &Sandbox| -> BTreeMap<PathBuf, Vec<u8>> {
        let root = sb.path("published/current/feed");
        let mut out = BTreeMap::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(
                        p.strip_prefix(&root).unwrap().to_owned(),
                        std::fs::read(&p).unwrap(),
                    );
                }
            }
        }
        out
    };
    let (a, b) = (feed(&rolling), feed(&reference));
    let titles = alsoborrowed_feed::Feed::open(&rolling.path("published"))
        .unwrap()
        .len();
    assert!(titles > 10, "{titles} titles with a list");
    assert!(a == b, "published lists differ");
}
