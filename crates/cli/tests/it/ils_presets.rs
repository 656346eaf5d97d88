//! The ILS presets through the binary: a whole `run` on Koha's file export
//! (whose prefixed borrower key must get past the leak check), and
//! `extract` from the databases `.ci/databases.sh` starts (skipped with a
//! note without them, failed under CI).

use std::path::{Path, PathBuf};

use synth::ils::{Circulation, Ils, ci_params};

use crate::{bin, ok, repo, text};

/// `text` with `key = value` set in `[section]` (replaced, or added after
/// the section's header); `value` is TOML.
fn set(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut done = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if current == section && !done {
                out.push(format!("{key} = {value}"));
                done = true;
            }
            current = trimmed.trim_matches(['[', ']']).to_owned();
        }
        let is_key = trimmed
            .strip_prefix(key)
            .is_some_and(|rest| rest.trim_start().starts_with('='));
        if current == section && is_key && !done {
            out.push(format!("{key} = {value}"));
            done = true;
            continue;
        }
        out.push(line.to_owned());
    }
    if !done {
        if current != section {
            out.push(format!("[{section}]"));
        }
        out.push(format!("{key} = {value}"));
    }
    out.join("\n") + "\n"
}

/// A preset with every path it writes moved into `dir`, keys made on first
/// use and a fixed scoring window.
fn sandboxed(preset: &str, dir: &Path) -> String {
    let text = std::fs::read_to_string(repo().join(format!("pipelines/{preset}.toml"))).unwrap();
    let q = |p: &str| format!("{:?}", dir.join(p).to_str().unwrap());
    let mut t = set(&text, "keys", "pseudonym", &q("keys/pseudonym.key"));
    t = set(&t, "keys", "transfer", &q("keys/transfer.key"));
    t = set(&t, "keys", "create_if_missing", "true");
    t = set(&t, "transfer", "outbox", &q("outbox"));
    t = set(&t, "store", "path", &q("store"));
    t = set(&t, "export", "path", &q("published"));
    t = set(&t, "engine", "window_end", "\"2025-06\"");
    set(&t, "engine", "min_support", "2")
}

fn run(pipeline: &Path, cmd: &str) -> std::process::Output {
    bin()
        .arg(cmd)
        .arg("--pipeline")
        .arg(pipeline)
        .args(["--today", "2026-06-30"])
        .output()
        .unwrap()
}

fn assert_no_ids(c: &Circulation, ils: Ils, out: &str) {
    let out = out.to_ascii_uppercase();
    for id in c.borrower_ids(ils) {
        assert!(
            !out.contains(&id.to_ascii_uppercase()),
            "an id is in: {out}"
        );
    }
}

#[test]
fn koha_preset_key_and_bare_borrowernumbers_both_publish() {
    let c = Circulation::generate(&ci_params());
    let dir = tempfile::tempdir().unwrap();
    c.write(Ils::Koha, &dir.path().join("export")).unwrap();
    let export = dir.path().join("export/loans.csv");
    let pipeline = dir.path().join("koha.toml");
    let toml = sandboxed("koha-file", dir.path());
    let toml = set(
        &toml,
        "source",
        "path",
        &format!("{:?}", export.to_str().unwrap()),
    );
    std::fs::write(&pipeline, &toml).unwrap();
    let out = run(&pipeline, "run");
    ok(&out);
    assert!(
        dir.path()
            .join("published/current/feed/index.json")
            .is_file()
    );
    let shown = text(&out);
    let want = c.expected(Ils::Koha);
    assert!(
        shown.contains(&format!(
            "kept {}, {} borrowers",
            want.kept - want.repeated,
            want.borrowers
        )),
        "{shown}"
    );
    assert_no_ids(&c, Ils::Koha, &shown);

    // The same export keyed by bare borrowernumbers: they are small integers
    // like the biblionumbers, so some equal title ids. Titles of the input
    // are no leak: the run publishes and says how many ids are also titles.
    let bare = std::fs::read_to_string(&export)
        .unwrap()
        .replace("koha:", "");
    std::fs::write(&export, bare).unwrap();
    let other = tempfile::tempdir().unwrap();
    let toml = sandboxed("koha-file", other.path());
    let toml = set(
        &toml,
        "source",
        "path",
        &format!("{:?}", export.to_str().unwrap()),
    );
    let pipeline = other.path().join("koha.toml");
    std::fs::write(&pipeline, toml).unwrap();
    let out = run(&pipeline, "run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("borrower ids of the loans file are also title ids"),
        "{}",
        text(&out)
    );
}

/// The database servers of `.ci/databases.sh`, as TOML settings for
/// `[source]`, or `None` with a note (a failure under CI).
fn servers(port_var: &str) -> Option<Vec<(&'static str, String)>> {
    let var = |name: &str| std::env::var(name).ok();
    let got = (|| {
        Some(vec![
            ("host", format!("{:?}", var("ALSOBORROWED_TEST_DB_HOST")?)),
            ("port", var(port_var)?),
            ("user", format!("{:?}", var("ALSOBORROWED_TEST_DB_USER")?)),
            (
                "password_file",
                format!("{:?}", var("ALSOBORROWED_TEST_DB_PASSWORD_FILE")?),
            ),
            (
                "tls_ca_file",
                format!("{:?}", var("ALSOBORROWED_TEST_DB_CA")?),
            ),
        ])
    })();
    if got.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the ALSOBORROWED_TEST_DB_* variables are not: run .ci/databases.sh"
        );
        eprintln!("note: no test database servers (run .ci/databases.sh); skipped");
    }
    got
}

fn db_extract(ils: Ils, port_var: &str) {
    let Some(settings) = servers(port_var) else {
        return;
    };
    let c = Circulation::generate(&ci_params());
    let dir = tempfile::tempdir().unwrap();
    let mut toml = sandboxed(&format!("{}-db", ils.name()), dir.path());
    for (key, value) in &settings {
        toml = set(&toml, "source", key, value);
    }
    toml = set(&toml, "source", "database", &format!("{:?}", ils.name()));
    let pipeline = dir.path().join("db.toml");
    std::fs::write(&pipeline, &toml).unwrap();
    let out = run(&pipeline, "extract");
    ok(&out);
    let shown = text(&out);
    let want = c.expected(ils);
    assert!(
        shown.contains(&format!(
            "kept {}, {} borrowers",
            want.kept - want.repeated,
            want.borrowers
        )),
        "{shown}"
    );
    assert_no_ids(&c, ils, &shown);
    let password_file: PathBuf = std::env::var("ALSOBORROWED_TEST_DB_PASSWORD_FILE")
        .unwrap()
        .into();
    let password = std::fs::read_to_string(password_file).unwrap();
    assert!(!shown.contains(password.trim()), "{shown}");
    let batches = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "batch")
        })
        .count();
    assert_eq!(batches, 1);

    // A database pipeline has no file to replace.
    let out = bin()
        .args(["extract", "--pipeline"])
        .arg(&pipeline)
        .args(["--input", "/dev/null", "--today", "2026-06-30"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("--input names a file"),
        "{}",
        text(&out)
    );
}

#[test]
fn evergreen_db_preset_extracts_from_the_command_line() {
    db_extract(Ils::Evergreen, "ALSOBORROWED_TEST_PG_PORT");
}

#[test]
fn koha_db_preset_extracts_from_the_command_line() {
    db_extract(Ils::Koha, "ALSOBORROWED_TEST_MYSQL_PORT");
}
