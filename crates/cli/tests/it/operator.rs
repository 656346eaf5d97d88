//! What a first-time operator sees (issue 14): the version, help with
//! examples, `verify` before the first release, the fix of each common
//! mistake in one line, and no progress drawing without a terminal.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::Output;

use crate::{Sandbox, bin, ok, repo, text};

fn demo_loans() -> std::path::PathBuf {
    repo().join("fixtures/demo/loans.csv")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The single error line of a failed command, which must end with `fix`.
#[track_caller]
fn fails_with_fix(o: &Output, code: i32, fix: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "{}", text(o));
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line: {err}");
    assert!(lines[0].contains(fix), "expected {fix:?} in {err}");
    lines[0].to_owned()
}

/// Replaces `from` by `to` in the sandbox's pipeline file.
fn edit_pipeline(s: &Sandbox, from: &str, to: &str) {
    let text = std::fs::read_to_string(s.pipeline()).unwrap();
    assert!(text.contains(from), "{from:?} not in {text}");
    std::fs::write(s.pipeline(), text.replacen(from, to, 1)).unwrap();
}

fn is_root(dir: &Path) -> bool {
    std::fs::metadata(dir).unwrap().uid() == 0
}

#[test]
fn version_is_the_cli_crates_real_version() {
    let o = bin().arg("--version").output().unwrap();
    ok(&o);
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out, format!("alsoborrowed {}\n", env!("CARGO_PKG_VERSION")));
    assert!(!out.contains("0.0.0"), "{out}");
}

#[test]
fn help_of_every_command_has_a_description_and_examples() {
    for cmd in [
        "key", "extract", "ingest", "status", "build", "export", "verify", "run", "generate",
        "serve",
    ] {
        let o = bin().args(["help", cmd]).output().unwrap();
        ok(&o);
        let out = String::from_utf8(o.stdout).unwrap();
        let examples = out
            .split("\nExamples:\n")
            .nth(1)
            .unwrap_or_else(|| panic!("help {cmd} has no examples: {out}"));
        let own = format!("  alsoborrowed {cmd} ");
        let n = examples.lines().filter(|l| l.starts_with(&own)).count();
        assert!((2..=4).contains(&n), "help {cmd}: {n} examples: {examples}");
        // The long description: more than the one-line summary.
        let before = out.split("\nUsage:").next().unwrap();
        assert!(before.lines().count() >= 3, "help {cmd}: {before}");
    }
    // `-h` stays short: no examples.
    let o = bin().args(["run", "-h"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("Examples:"));
    // The packaging command is not shown.
    let o = bin().arg("help").output().unwrap();
    assert!(!String::from_utf8_lossy(&o.stdout).contains("package-assets"));
}

#[test]
fn verify_before_the_first_release_says_nothing_is_published_yet() {
    let s = Sandbox::new(&demo_loans(), "");
    let o = s.run("verify", &[]);
    let line = fails_with_fix(&o, 6, "nothing published yet: ");
    assert!(
        line.contains("run `alsoborrowed export --pipeline "),
        "{line}"
    );
    assert!(
        !line.contains("index.json") && !line.contains("release.json"),
        "{line}"
    );
    // Nothing was created by looking.
    assert!(!s.path("store").exists());
    assert!(!s.path("published").exists());
    // After a release, verify passes.
    ok(&s.run("run", &["--quiet"]));
    ok(&s.run("verify", &["--quiet"]));
}

#[test]
fn a_missing_key_file_says_how_to_make_it() {
    let s = Sandbox::new(&demo_loans(), "");
    edit_pipeline(&s, "create_if_missing = true", "create_if_missing = false");
    let o = s.run("run", &[]);
    let key = s.path("keys/pseudonym.key");
    let fix = format!(
        "; fix: make it once with `alsoborrowed key new {}`",
        key.display()
    );
    fails_with_fix(&o, 1, &fix);
    // The suggested command works, and so does the next one for the other key.
    ok(&bin().args(["key", "new"]).arg(&key).output().unwrap());
    let o = s.run("run", &[]);
    let transfer = s.path("keys/transfer.key");
    fails_with_fix(
        &o,
        1,
        &format!("alsoborrowed key new {}", transfer.display()),
    );
    ok(&bin().args(["key", "new"]).arg(&transfer).output().unwrap());
    ok(&s.run("run", &["--quiet"]));
}

#[test]
fn a_misspelt_key_or_section_gets_the_right_name() {
    let s = Sandbox::new(&demo_loans(), "windw_months = 12");
    let o = s.run("run", &[]);
    fails_with_fix(
        &o,
        1,
        "; fix: did you mean `window_months`? rename `windw_months` to `window_months`",
    );
    let s = Sandbox::new(&demo_loans(), "");
    edit_pipeline(&s, "[engine]", "[engin]");
    let o = s.run("status", &[]);
    fails_with_fix(&o, 1, "did you mean `engine`?");
    let s = Sandbox::new(&demo_loans(), "colour = 1");
    let o = s.run("build", &[]);
    fails_with_fix(
        &o,
        1,
        "; fix: remove `colour` or use one of the keys listed",
    );
}

#[test]
fn a_missing_pipeline_file_names_the_examples() {
    let o = bin()
        .args(["status", "--pipeline", "/nonexistent/library.toml"])
        .output()
        .unwrap();
    fails_with_fix(
        &o,
        1,
        "; fix: check the path given to --pipeline (/nonexistent/library.toml)",
    );
}

#[test]
fn a_missing_loans_file_says_which_key_to_change() {
    let dir = tempfile::tempdir().unwrap();
    let s = Sandbox::new(&dir.path().join("loans-2026-11.csv"), "");
    let o = s.run("extract", &[]);
    fails_with_fix(
        &o,
        1,
        "; fix: check source.path in the pipeline file (a relative path is relative to the pipeline file) or pass --input FILE",
    );
}

#[test]
fn a_store_or_export_path_that_is_a_file_says_what_to_change() {
    let s = Sandbox::new(&demo_loans(), "");
    std::fs::write(s.path("store"), b"").unwrap();
    let o = s.run("run", &[]);
    fails_with_fix(&o, 1, "; fix: store.path must name a directory");

    let s = Sandbox::new(&demo_loans(), "");
    std::fs::write(s.path("blocker"), b"").unwrap();
    edit_pipeline(&s, "path = \"published\"", "path = \"blocker/published\"");
    let o = s.run("run", &[]);
    fails_with_fix(&o, 1, "; fix: ");
}

#[test]
fn an_unwritable_export_directory_says_to_give_write_permission() {
    let s = Sandbox::new(&demo_loans(), "");
    if is_root(s.dir.path()) {
        // Root writes through any mode (CI runs as root); the message is
        // covered by the unit tests of `fixes` and by a non-root run of this.
        return;
    }
    let parent = s.path("www");
    std::fs::create_dir(&parent).unwrap();
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o555)).unwrap();
    edit_pipeline(&s, "path = \"published\"", "path = \"www/published\"");
    let o = s.run("run", &[]);
    std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o755)).unwrap();
    fails_with_fix(&o, 1, "; fix: give the user running alsoborrowed access");
}

#[test]
fn wrong_permission_modes_say_which_chmod() {
    let s = Sandbox::new(&demo_loans(), "");
    ok(&s.run("run", &["--quiet"]));
    let key = s.path("keys/pseudonym.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = s.run("run", &[]);
    fails_with_fix(&o, 1, &format!("run chmod 600 {}", key.display()));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let store = s.path("store");
    std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o755)).unwrap();
    let o = s.run("status", &[]);
    fails_with_fix(&o, 1, "must be owner-only (chmod 700 it)");
}

#[test]
fn no_progress_is_drawn_without_a_terminal() {
    // The tests run without a terminal, as cron and pipes do.
    let s = Sandbox::new(&demo_loans(), "");
    let o = s.run("run", &[]);
    ok(&o);
    let err = stderr(&o);
    for stage in ["extract: done in ", "ingest: done in ", "export: done in "] {
        assert!(err.contains(stage), "{stage:?} missing: {err}");
    }
    // No spinner frames, carriage returns or terminal escapes, and no size
    // detail (that is only drawn beside a spinner).
    assert!(!err.contains('\r') && !err.contains('\u{1b}'), "{err:?}");
    assert!(
        !err.contains("KiB input") && !err.contains("batch 1 of"),
        "{err}"
    );
    // --quiet: nothing at all.
    let s = Sandbox::new(&demo_loans(), "");
    let o = s.run("run", &["--quiet"]);
    ok(&o);
    assert!(o.stderr.is_empty() && o.stdout.is_empty(), "{}", text(&o));
}
