//! End-to-end tests of the `alsoborrowed` binary: what a cron job and an
//! auditor see.

mod bad_input;
mod bad_rows;
mod check_cmd;
mod four_weeks;
mod ils_presets;
mod issue12;
mod keys_cmd;
mod operator;
mod pipeline_run;
mod real_exports;
mod report;
mod serve_cmd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A small deterministic generator (no personal data, no dependency).
pub struct Lcg(pub u64);

impl Lcg {
    /// A number in `0..n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alsoborrowed"))
}

/// Repository root (for fixtures).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory with its own pipeline file; every path the pipeline
/// writes lives inside it.
pub struct Sandbox {
    /// The scratch directory, removed on drop.
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    /// A sandbox whose pipeline reads `input` (absolute), with `extra` TOML
    /// appended to the `[engine]` table.
    pub fn new(input: &Path, engine_extra: &str) -> Sandbox {
        Sandbox::with_source(input, "", engine_extra)
    }

    /// A sandbox like [`Sandbox::new`] with `source_extra` TOML appended to
    /// the `[source]` table.
    pub fn with_source(input: &Path, source_extra: &str, engine_extra: &str) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let works = repo().join("fixtures/demo/works.csv");
        let works_table = if input.starts_with(repo().join("fixtures/demo")) {
            format!("[works]\npath = {:?}\n", works.to_str().unwrap())
        } else {
            String::new()
        };
        let toml = format!(
            r#"
[library]
id = "test-library"

[keys]
pseudonym = "keys/pseudonym.key"
transfer = "keys/transfer.key"
create_if_missing = true

[source]
path = {input:?}
{source_extra}

{works_table}
[transfer]
outbox = "outbox"

[store]
path = "store"

[engine]
window_end = "2026-10"
{engine_extra}

[export]
path = "published"
"#,
            input = input.to_str().unwrap(),
        );
        std::fs::write(dir.path().join("pipeline.toml"), toml).unwrap();
        Sandbox { dir }
    }

    /// A path inside the sandbox.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// The sandbox's pipeline file.
    pub fn pipeline(&self) -> PathBuf {
        self.path("pipeline.toml")
    }

    /// Runs `alsoborrowed <cmd> --pipeline <ours> <extra...>` with a fixed today.
    pub fn run(&self, cmd: &str, extra: &[&str]) -> Output {
        bin()
            .arg(cmd)
            .arg("--pipeline")
            .arg(self.pipeline())
            .args(["--today", "2026-11-22"])
            .args(extra)
            .output()
            .unwrap()
    }

    /// Every regular file under the sandbox except the pipeline file and the
    /// key files themselves, with its bytes.
    pub fn written_files(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        walk(self.dir.path(), &mut out);
        out.retain(|p, _| p != &self.pipeline() && !p.starts_with(self.path("keys")));
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_dir() {
            walk(&path, out);
        } else if meta.is_file() {
            out.insert(path.clone(), std::fs::read(&path).unwrap());
        }
    }
}

/// Text of stdout and stderr together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Asserts success with the output shown on failure.
#[track_caller]
pub fn ok(o: &Output) {
    assert!(o.status.success(), "command failed: {}", text(o));
}

/// Whether `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}
