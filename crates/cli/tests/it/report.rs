//! `alsoborrowed report` and the run log: the report of the demo store and
//! of generated stores renders every section, loads nothing, and holds no
//! pseudonym, key byte or borrower id (ids of every shape); the run log's
//! lines parse and hold no id; Chromium draws the charts.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Sandbox, bin, ok, repo, text};

/// The sections every report has, by their heading ids.
const SECTIONS: [&str; 7] = [
    "glance", "store", "links", "keys", "releases", "refusals", "runs",
];

/// Runs `report` into the sandbox and returns the file's text.
fn report(sb: &Sandbox) -> String {
    let out = sb.path("report.html");
    let o = sb.run("report", &["--out", out.to_str().unwrap()]);
    ok(&o);
    let mode = std::fs::metadata(&out).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "report mode {mode:o}");
    std::fs::read_to_string(out).unwrap()
}

/// Structural checks: sections, charts, and nothing that loads anything.
fn check_structure(html: &str, min_svgs: usize) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
    ));
    for id in SECTIONS {
        assert!(html.contains(&format!("<h2 id=\"{id}\">")), "section {id}");
    }
    let svgs = html.matches("<svg").count();
    assert!(svgs >= min_svgs, "{svgs} charts, expected {min_svgs}");
    assert_eq!(
        svgs,
        html.matches("<desc>").count(),
        "each chart has a desc"
    );
    assert!(html.matches("<table>").count() >= svgs, "a table per chart");
    let lower = html.to_ascii_lowercase();
    for banned in [
        "<script",
        "http:",
        "https:",
        "//",
        "src=",
        "href=",
        "url(",
        "@import",
        "<link",
        "<img",
        "<iframe",
        "<object",
        "<embed",
        "javascript:",
    ] {
        assert!(!lower.contains(banned), "the report contains {banned:?}");
    }
}

/// The words of the report (text and attribute values alike): runs of
/// letters and digits.
fn words(html: &str) -> HashSet<&str> {
    html.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect()
}

/// Everything the pipeline's store and keys must never show: the
/// pseudonyms of every month held, and the key material.
fn forbidden(sb: &Sandbox) -> publish::Forbidden {
    let store = store::Store::open(&sb.path("store")).unwrap();
    let months = store.month_counts().unwrap();
    let mut f = publish::Forbidden::new();
    let loans = store
        .scan(months[0].month, months[months.len() - 1].month)
        .unwrap();
    assert!(!loans.borrower_pseudonyms.is_empty());
    f.add_pseudonyms(&loans.borrower_pseudonyms);
    for key in ["keys/pseudonym.key", "keys/transfer.key"] {
        let k = keys::load_key_file(&sb.path(key)).unwrap();
        f.add_secret(k.expose_secret());
    }
    let k = keys::load_key_file(&sb.path("keys/pseudonym.key")).unwrap();
    f.add_secret(
        k.derive(&[
            pseudonym::PURPOSE_PSEUDONYM,
            b"test-library".as_slice(),
            b"also-borrowed".as_slice(),
        ])
        .expose_secret(),
    );
    f.prepare();
    f
}

/// Asserts that `bytes` holds no pseudonym or key material, no borrower id
/// with a letter in it as a word, and no long id anywhere.
#[track_caller]
fn no_leak(what: &str, bytes: &[u8], f: &publish::Forbidden, ids: &[String]) {
    assert_eq!(f.find_raw(bytes), None, "{what} holds a pseudonym or key");
    let text = String::from_utf8_lossy(bytes);
    let words = words(&text);
    for id in ids {
        // Numeric ids such as 17 are indistinguishable from counts; the
        // report has no per-borrower value for one to come from.
        if id.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        assert!(!words.contains(id.as_str()), "{what} holds the id {id:?}");
        if id.len() >= 8 {
            assert!(!text.contains(id.as_str()), "{what} holds the id {id:?}");
        }
    }
}

/// The borrower ids of a loans CSV whose first column is the borrower.
fn borrower_ids(csv: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(csv).unwrap();
    let set: HashSet<String> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().unwrap().to_owned())
        .collect();
    let mut v: Vec<String> = set.into_iter().collect();
    v.sort();
    v
}

/// The run log's records, each checked: version 1, known fields only.
fn runlog(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "run log mode {mode:o}");
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert_eq!(v["v"], 1);
            for field in v.as_object().unwrap().keys() {
                assert!(
                    [
                        "v",
                        "at",
                        "day",
                        "command",
                        "stage",
                        "ok",
                        "duration_s",
                        "counts",
                        "timings",
                        "cpu_timings",
                        "release",
                        "reason",
                        "exit_code"
                    ]
                    .contains(&field.as_str()),
                    "unknown field {field}"
                );
            }
            v
        })
        .collect()
}

#[test]
fn demo_report_and_run_log_hold_aggregates_only() {
    let input = repo().join("fixtures/demo/loans.csv");
    let sb = Sandbox::new(&input, "");
    ok(&sb.run("run", &[]));
    ok(&sb.run("verify", &[]));
    // A refused export: the scoring window of this pipeline holds no loans.
    let toml = std::fs::read_to_string(sb.pipeline()).unwrap();
    let empty = sb.path("empty-window.toml");
    std::fs::write(
        &empty,
        toml.replace("window_end = \"2026-10\"", "window_end = \"2019-10\""),
    )
    .unwrap();
    let o = bin()
        .args(["export", "--today", "2026-11-22", "--pipeline"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));

    let mining = runlog(&sb.path("store/runlog.jsonl"));
    let extractor = runlog(&sb.path("outbox/runlog.jsonl"));
    let stages: Vec<(&str, &str)> = mining
        .iter()
        .map(|r| (r["command"].as_str().unwrap(), r["stage"].as_str().unwrap()))
        .collect();
    for want in [
        ("run", "prune"),
        ("run", "ingest"),
        ("run", "export"),
        ("run", "end"),
        ("verify", "verify"),
        ("export", "refusal"),
        ("export", "end"),
    ] {
        assert!(stages.contains(&want), "{want:?} not in {stages:?}");
    }
    assert_eq!(extractor[0]["stage"], "extract");
    assert_eq!(extractor[0]["counts"]["rows_read"], 50_000);
    let export = mining.iter().find(|r| r["stage"] == "export").unwrap();
    let release = &export["release"];
    assert_eq!(release["outcome"], "published");
    let lengths: u64 = release["list_lengths"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(release["titles"].as_u64().unwrap(), lengths);
    assert!(release["pairs_below_k"].as_u64().unwrap() > 0);
    assert!(release["titles_below_k"].as_u64().unwrap() > 0);
    let refusal = mining.iter().find(|r| r["stage"] == "refusal").unwrap();
    assert!(
        refusal["reason"]
            .as_str()
            .unwrap()
            .contains("no loans in the scoring window"),
        "{refusal}"
    );

    let html = report(&sb);
    check_structure(&html, 4);
    assert!(
        html.contains("no loans in the scoring window"),
        "the refusal"
    );
    assert!(html.contains("OVERDUE") || html.contains("No borrower-loan link deadline"));
    let f = forbidden(&sb);
    let ids = borrower_ids(&input);
    no_leak("the report", html.as_bytes(), &f, &ids);
    for log in ["store/runlog.jsonl", "outbox/runlog.jsonl"] {
        let bytes = std::fs::read(sb.path(log)).unwrap();
        no_leak(log, &bytes, &f, &ids);
        // Titles (13-digit ids here) are public, yet the log keeps to counts.
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text
                .split(|c: char| !c.is_ascii_digit())
                .any(|w| w.len() == 13),
            "{log} holds a title id"
        );
    }
}

/// Loans of borrowers with ids of every shape: numeric 1..=5000, `A`, `U1`
/// and a long one, over twelve months.
fn every_shape_csv(path: &Path) -> Vec<String> {
    let mut ids: Vec<String> = (1..=5000).map(|i| i.to_string()).collect();
    ids.extend(["A", "U1", "patron-0000001-with-a-rather-long-card-id"].map(String::from));
    let mut csv = String::from("borrower_id,title_id,loan_date\n");
    for (i, id) in ids.iter().enumerate() {
        for j in 0..3 {
            let title = (i * 7 + j * 3) % 40;
            let month = (i + j) % 12;
            let (y, m) = if month < 2 {
                (2025, 11 + month)
            } else {
                (2026, month - 1)
            };
            csv.push_str(&format!(
                "{id},title-{title:02},{y}-{m:02}-{:02}\n",
                1 + j * 5
            ));
        }
    }
    std::fs::write(path, csv).unwrap();
    ids
}

#[test]
fn report_holds_no_id_of_any_shape() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("loans.csv");
    let ids = every_shape_csv(&input);
    let sb = Sandbox::new(&input, "min_support = 5");
    ok(&sb.run("run", &[]));
    let html = report(&sb);
    check_structure(&html, 4);
    let f = forbidden(&sb);
    no_leak("the report", html.as_bytes(), &f, &ids);
    for log in ["store/runlog.jsonl", "outbox/runlog.jsonl"] {
        no_leak(log, &std::fs::read(sb.path(log)).unwrap(), &f, &ids);
    }
    // Twelve months held, each with its loans and borrowers.
    let months = html.matches("<tr><td>2025-").count() + html.matches("<tr><td>2026-").count();
    assert!(months >= 12, "{months} month rows");
}

/// A 12-month generated store, reported and rendered by Chromium.
fn generated_store() -> (tempfile::TempDir, Sandbox, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("loans.csv");
    let o = bin()
        .args(["generate", "--loans", "60000", "--seed", "7"])
        .args(["--first-month", "2025-11", "--months", "12", "--out"])
        .arg(&input)
        .output()
        .unwrap();
    ok(&o);
    let sb = Sandbox::new(&input, "");
    ok(&sb.run("run", &[]));
    ok(&sb.run("verify", &[]));
    // A second export: the run log then has two releases to chart.
    ok(&sb.run("export", &[]));
    (dir, sb, input)
}

fn chromium() -> Option<PathBuf> {
    for name in ["chromium", "chromium-browser"] {
        for dir in std::env::var("PATH").unwrap_or_default().split(':') {
            let path = Path::new(dir).join(name);
            if path.is_file() {
                return Some(path);
            }
        }
    }
    None
}

/// A headless Chromium screenshot of `page` (a file), at most 90 s.
fn screenshot(browser: &Path, page: &Path, png: &Path) {
    let profile = tempfile::tempdir().unwrap();
    let _ = std::fs::remove_file(png);
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--hide-scrollbars",
            "--window-size=1100,2600",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromium");
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(90) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        png.is_file(),
        "chromium wrote no screenshot {}",
        png.display()
    );
}

#[test]
fn twelve_month_report_renders_in_chromium() {
    let (_dir, sb, input) = generated_store();
    let html = report(&sb);
    check_structure(&html, 4);
    no_leak(
        "the report",
        html.as_bytes(),
        &forbidden(&sb),
        &borrower_ids(&input),
    );
    assert!(
        html.matches("<td>2026-").count() >= 10,
        "twelve months listed"
    );

    let Some(browser) = chromium() else {
        if std::env::var_os("CI").is_some() {
            panic!("chromium is not installed; .ci/run installs Debian's chromium");
        }
        eprintln!("skipped: chromium is not installed (apt-get install chromium)");
        return;
    };
    // Kept in target/tmp for a person to look at.
    let artifacts = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let page = artifacts.join("report-12-months.html");
    std::fs::copy(sb.path("report.html"), &page).unwrap();
    let png = artifacts.join("report-12-months.png");
    screenshot(&browser, &page, &png);
    // A blank page of the same size, for comparison: PNG compresses a
    // uniform image to almost nothing, text and charts to far more.
    let blank = artifacts.join("report-blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let blank_png = artifacts.join("report-blank.png");
    screenshot(&browser, &blank, &blank_png);
    let size = std::fs::metadata(&png).unwrap().len();
    let blank_size = std::fs::metadata(&blank_png).unwrap().len();
    assert!(
        size > 8 * blank_size && size > 50_000,
        "the screenshot looks blank: {size} bytes against {blank_size} for a blank page"
    );
    eprintln!("report screenshot: {} ({size} bytes)", png.display());
}
