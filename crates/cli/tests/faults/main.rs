//! Fault-injection suite (issue 12): kill -9 at seeded random points of
//! ingest, export and run; a full disk and inode exhaustion on a small tmpfs;
//! concurrent starts; tampered batches; dates. What it checks and what it
//! cannot is in `docs/operations.md` ("Fault-injection suite").
//!
//! Run by `.ci/run` as root:
//! `cargo test -p cli --test faults -- --ignored --test-threads 1`.
//! `FAULT_SEED` picks the seed (printed), `FAULT_KILLS` the number of kills
//! (default 54, split over the three stages). The tmpfs cases need root; they
//! are skipped with a message otherwise, except under `CI=true`, where they
//! fail.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const TODAY: &str = "2026-11-22";

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_alsoborrowed"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[track_caller]
fn ok(o: &Output) {
    assert!(o.status.success(), "command failed: {}", text(o));
}

/// splitmix64: a tiny seeded generator, so a failing kill point is
/// reproducible with the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(12, |d| d.as_secs())
        })
}

/// Keys made once per test process.
fn shared_keys() -> &'static Path {
    static KEYS: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        for k in ["pseudonym.key", "transfer.key"] {
            let out = bin()
                .args(["key", "new"])
                .arg(dir.path().join(k))
                .output()
                .unwrap();
            ok(&out);
        }
        dir
    })
    .path()
}

/// A scratch directory with a pipeline; `store` may live elsewhere (tmpfs).
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new(library: &str, store: Option<&Path>, retention: u32) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        // One pair of keys for every sandbox: the per-borrower cap keeps a
        // borrower's titles by pseudonym order, so feeds compare equal only
        // under the same keys.
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        for k in ["pseudonym.key", "transfer.key"] {
            std::fs::copy(shared_keys().join(k), keys.join(k)).unwrap();
        }
        let window = if retention > 12 { 12 } else { retention - 1 };
        let store = store.map_or_else(|| "store".to_owned(), |p| p.display().to_string());
        let demo = repo().join("fixtures/demo");
        let toml = format!(
            r#"
[library]
id = "{library}"

[keys]
pseudonym = "keys/pseudonym.key"
transfer = "keys/transfer.key"
create_if_missing = true

[source]
path = {loans:?}

[works]
path = {works:?}

[transfer]
outbox = "outbox"

[store]
path = {store:?}
retention_months = {retention}

[engine]
window_end = "2026-10"
window_months = {window}

[export]
path = "published"
"#,
            loans = demo.join("loans.csv").display().to_string(),
            works = demo.join("works.csv").display().to_string(),
        );
        std::fs::write(dir.path().join("pipeline.toml"), toml).unwrap();
        Sandbox { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn cmd(&self, cmd: &str, today: &str) -> Command {
        let mut c = bin();
        c.args([cmd, "--quiet", "--today", today, "--pipeline"])
            .arg(self.path("pipeline.toml"));
        c
    }

    fn run(&self, cmd: &str) -> Output {
        self.cmd(cmd, TODAY).output().unwrap()
    }

    /// A copy of this sandbox (state and keys), for one kill.
    fn copy(&self) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", self.dir.path().display()))
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        Sandbox { dir }
    }
}

fn status_loans(sb: &Sandbox) -> u64 {
    let out = sb.cmd("status", TODAY).output().unwrap();
    ok(&out);
    let t = text(&out);
    t.lines()
        .find_map(|l| l.strip_prefix("loans: "))
        .unwrap_or_else(|| panic!("{t}"))
        .parse()
        .unwrap()
}

/// Every file under `root` with its bytes (symbolic links followed: the
/// served tree may hold some).
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(root).unwrap().to_owned(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

/// Data files under `store/loans` that `manifest.json` does not list, and
/// listed files that are missing.
fn unlisted_and_missing(store: &Path) -> (Vec<PathBuf>, Vec<String>) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(store.join("manifest.json")).unwrap()).unwrap();
    let listed: Vec<String> = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_owned())
        .collect();
    let mut unlisted = Vec::new();
    if let Ok(parts) = std::fs::read_dir(store.join("loans")) {
        for part in parts {
            let part = part.unwrap().path();
            for f in std::fs::read_dir(&part).unwrap() {
                let f = f.unwrap().path();
                let rel = f.strip_prefix(store).unwrap().display().to_string();
                if rel.ends_with(".parquet") && !listed.contains(&rel) {
                    unlisted.push(f);
                }
            }
        }
    }
    let missing = listed
        .into_iter()
        .filter(|r| !store.join(r).exists())
        .collect();
    (unlisted, missing)
}

fn batches_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| {
        d.filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "batch")
        })
        .count()
    })
}

/// The state and output of a clean run, to compare every faulted run with.
struct Reference {
    loans: u64,
    feed: BTreeMap<PathBuf, Vec<u8>>,
}

fn reference() -> Reference {
    let sb = Sandbox::new("fault-library", None, 60);
    ok(&sb.run("run"));
    Reference {
        loans: status_loans(&sb),
        feed: tree(&sb.path("published/current/feed")),
    }
}

/// Runs `cmd` in `sb`, killing it with SIGKILL after `after` (if still
/// running); returns whether it was killed.
fn run_and_kill(sb: &Sandbox, cmd: &str, after: Duration) -> bool {
    let mut child = sb
        .cmd(cmd, TODAY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + after;
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn timed(sb: &Sandbox, cmd: &str) -> Duration {
    let t = Instant::now();
    ok(&sb.run(cmd));
    t.elapsed()
}

/// kill -9 at seeded random points of ingest, export and run; after each
/// kill the store and the live feed must be readable, and after a re-run
/// everything must equal a clean run: no loan lost or counted twice, no
/// unlisted data file, no batch left, the same feed, and `verify` passes.
#[test]
#[ignore = "fault-injection suite: run by .ci/run (cargo test -p cli --test faults -- --ignored)"]
fn kill_9_at_random_points_loses_and_doubles_nothing() {
    let seed = seed();
    let kills: u64 = std::env::var("FAULT_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(54);
    eprintln!("kill -9 suite: FAULT_SEED={seed} FAULT_KILLS={kills}");
    let mut rng = Rng(seed);
    let want = reference();

    // Prepared states: before ingest (a sealed batch in the outbox), before
    // export (ingested), before run (nothing).
    let before_ingest = Sandbox::new("fault-library", None, 60);
    ok(&before_ingest.run("extract"));
    let before_export = before_ingest.copy();
    let ingest_time = timed(&before_export, "ingest");
    let before_run = Sandbox::new("fault-library", None, 60);
    let export_time = timed(&before_export.copy(), "export");
    let run_time = timed(&before_run.copy(), "run");
    // A published feed already live, so that a killed export must keep it.
    let live = before_export.copy();
    ok(&live.run("export"));
    ok(&live.run("extract"));

    let stages: [(&str, &Sandbox, Duration); 3] = [
        ("ingest", &before_ingest, ingest_time),
        ("export", &live, export_time),
        ("run", &before_run, run_time),
    ];
    let mut killed = 0;
    for i in 0..kills {
        let (stage, state, took) = stages[(i % 3) as usize];
        let sb = state.copy();
        let span = (took.as_micros() as u64).max(1000) * 11 / 10;
        let at = Duration::from_micros(rng.below(span));
        let what = format!("{stage} killed at {at:?} (seed {seed}, kill {i})");
        killed += u64::from(run_and_kill(&sb, stage, at));

        // Right after the crash: the committed store and the live feed.
        if sb.path("store/manifest.json").exists() {
            let (_, missing) = unlisted_and_missing(&sb.path("store"));
            assert!(
                missing.is_empty(),
                "{what}: listed files missing {missing:?}"
            );
            let out = sb.run("status");
            assert!(out.status.success(), "{what}: status {}", text(&out));
        }
        if sb.path("published/current").exists() {
            let index = sb.path("published/current/feed/index.json");
            let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&index).unwrap())
                .unwrap_or_else(|e| panic!("{what}: live index.json: {e}"));
            assert!(json.is_object(), "{what}");
        }

        // The same command again finishes the job.
        let out = sb.run(stage);
        assert!(out.status.success(), "{what}: re-run {}", text(&out));
        if stage != "export" {
            // The export stage's state holds a second, unread batch.
            assert_eq!(batches_in(&sb.path("outbox")), 0, "{what}: batch left");
        }
        assert!(
            !sb.path("outbox/quarantine").exists(),
            "{what}: quarantined"
        );
        assert_eq!(status_loans(&sb), want.loans, "{what}: loans");
        let (unlisted, missing) = unlisted_and_missing(&sb.path("store"));
        assert!(
            unlisted.is_empty() && missing.is_empty(),
            "{what}: {unlisted:?} {missing:?}"
        );
        if stage != "ingest" {
            assert!(
                sb.path("published/current/feed/index.json").is_file(),
                "{what}"
            );
            assert!(
                tree(&sb.path("published/current/feed")) == want.feed,
                "{what}: feed differs"
            );
            // The byte comparison above is the stronger check; the
            // independent recount of verify runs on every other kill.
            if i % 2 == 0 {
                let out = sb.run("verify");
                assert!(out.status.success(), "{what}: verify {}", text(&out));
            }
        }
    }
    eprintln!("kill -9 suite: {kills} runs, {killed} killed before they finished");
    assert!(
        killed * 2 >= kills,
        "too few kills landed: {killed} of {kills}"
    );
}

/// Concurrent starts: every process either does the work or exits 3 at once.
#[test]
#[ignore = "fault-injection suite: run by .ci/run (cargo test -p cli --test faults -- --ignored)"]
fn concurrent_starts_exit_3_or_do_the_work_once() {
    let want = reference();
    for stage in ["run", "ingest", "export"] {
        let sb = Sandbox::new("fault-library", None, 60);
        if stage != "run" {
            ok(&sb.run("extract"));
        }
        if stage == "export" {
            ok(&sb.run("ingest"));
        }
        let children: Vec<_> = (0..16)
            .map(|_| {
                sb.cmd(stage, TODAY)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let codes: Vec<Option<i32>> = children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap().status.code())
            .collect();
        assert!(
            codes.iter().all(|c| matches!(c, Some(0 | 3))),
            "{stage}: {codes:?}"
        );
        assert!(codes.contains(&Some(0)), "{stage}: {codes:?}");
        if stage == "ingest" {
            ok(&sb.run("export"));
        }
        assert_eq!(status_loans(&sb), want.loans, "{stage}");
        ok(&sb.run("verify"));
        assert!(
            tree(&sb.path("published/current/feed")) == want.feed,
            "{stage}"
        );
    }
}

/// Tampered and hostile batch files are quarantined with a reason; the good
/// batch beside them is ingested; no message quotes data.
#[test]
#[ignore = "fault-injection suite: run by .ci/run (cargo test -p cli --test faults -- --ignored)"]
fn tampered_batches_are_quarantined_and_the_good_one_ingested() {
    let want = reference();
    let sb = Sandbox::new("fault-library", None, 60);
    ok(&sb.run("extract"));
    let outbox = sb.path("outbox");
    let good = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "batch"))
        .unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let put = |name: &str, b: &[u8]| std::fs::write(outbox.join(name), b).unwrap();
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 1;
    put("00-flipped.batch", &flipped);
    put("01-truncated.batch", &bytes[..bytes.len() - 100]);
    let mut long = bytes.clone();
    long.extend_from_slice(&[0; 4096]);
    put("02-appended.batch", &long);
    put("03-empty.batch", b"");
    let mut magic = bytes.clone();
    magic[0] = b'X';
    put("04-magic.batch", &magic);
    let mut header = bytes.clone();
    header[60] ^= 0xff; // the row count, inside the authenticated header
    put("05-header.batch", &header);
    std::os::unix::fs::symlink("/dev/zero", outbox.join("06-devzero.batch")).unwrap();
    std::fs::create_dir(outbox.join("07-directory.batch")).unwrap();
    // A batch of another library, sealed under the same transfer key.
    let other = Sandbox::new("another-library", None, 60);
    ok(&other.run("extract"));
    for e in std::fs::read_dir(other.path("outbox")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "batch") {
            std::fs::copy(&p, outbox.join("08-other-library.batch")).unwrap();
        }
    }

    let out = sb.run("ingest");
    let t = text(&out);
    assert_eq!(out.status.code(), Some(5), "{t}");
    assert!(t.contains("9 batch file(s) could not be ingested"), "{t}");
    assert!(!t.contains("SYN"), "a borrower id in a message: {t}");
    assert_eq!(status_loans(&sb), want.loans);
    assert_eq!(batches_in(&outbox), 0);
    let q = outbox.join("quarantine");
    let reasons: Vec<String> = std::fs::read_dir(&q)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "reason"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(reasons.len(), 9, "{reasons:?}");
    for r in &reasons {
        assert!(r.starts_with(TODAY) && r.len() < 400, "{r}");
        assert!(!r.contains("SYN"), "{r}");
    }
    let st = sb.run("status");
    ok(&st);
    assert!(
        text(&st).contains("quarantined batches: 9"),
        "{}",
        text(&st)
    );
    // The next ingest has nothing left to refuse.
    ok(&sb.run("ingest"));
    ok(&sb.run("export"));
    ok(&sb.run("verify"));
}

/// Dates: a `--today` ahead of the clock cannot date a link record, and a
/// `--today` before the loans cannot store them.
#[test]
#[ignore = "fault-injection suite: run by .ci/run (cargo test -p cli --test faults -- --ignored)"]
fn dates_in_the_future_or_before_the_loans_are_refused() {
    let sb = Sandbox::new("fault-library", None, 60);
    for cmd in ["extract", "run"] {
        let out = sb.cmd(cmd, "9999-12-31").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", text(&out));
        assert!(!sb.path("outbox/links").exists(), "{cmd}");
    }
    ok(&sb.run("extract"));
    let out = sb.cmd("ingest", "1970-01-01").output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    assert_eq!(status_loans(&sb), 0);
}

/// Whether this process runs as root (needed to mount a tmpfs).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A tmpfs mounted on a temporary directory; unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options`, or `None` (after saying why) when not
    /// root; under `CI=true` that is a failure instead.
    fn mount(options: &str) -> Option<Tmpfs> {
        if !is_root() {
            let msg = "tmpfs fault cases need root (mount -t tmpfs); skipped";
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{msg}, but CI=true"
            );
            eprintln!("{msg}");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "alsoborrowed-faults"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mount -t tmpfs -o {options} failed");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the file system until it refuses more: with bytes (one file)
    /// or with inodes (empty files). Returns the files made.
    fn fill(&self, inodes: bool) -> Vec<PathBuf> {
        use std::io::Write;
        let mut made = Vec::new();
        if inodes {
            for i in 0.. {
                let p = self.path().join(format!("filler-{i}"));
                if std::fs::File::create(&p).is_err() {
                    break;
                }
                made.push(p);
            }
        } else {
            let p = self.path().join("filler");
            let mut f = std::fs::File::create(&p).unwrap();
            let block = vec![0u8; 64 << 10];
            while f.write_all(&block).is_ok() {}
            // Whatever fits of a page less.
            while f.write_all(&[0u8; 512]).is_ok() {}
            made.push(p);
        }
        made
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// A full store disk (bytes or inodes) is freed by retention: pruning
/// deletes the expired files even when no new manifest can be written first.
#[test]
#[ignore = "fault-injection suite: run by .ci/run (cargo test -p cli --test faults -- --ignored)"]
fn a_full_store_disk_is_freed_by_retention() {
    for inodes in [false, true] {
        let Some(fs) = Tmpfs::mount("size=16m,nr_inodes=256,mode=0700") else {
            return;
        };
        let store = fs.path().join("store");
        let sb = Sandbox::new("fault-library", Some(&store), 6);
        for cmd in ["extract", "ingest"] {
            ok(&sb.cmd(cmd, "2026-10-15").output().unwrap());
        }
        let before = std::fs::read_dir(store.join("loans")).unwrap().count();
        assert_eq!(before, 6, "months 2026-05..2026-10");
        fs.fill(inodes);
        let out = sb.cmd("ingest", TODAY).output().unwrap();
        assert!(out.status.success(), "inodes {inodes}: {}", text(&out));
        assert!(
            !store.join("loans/month=2026-05").exists(),
            "inodes {inodes}"
        );
        let (unlisted, missing) = unlisted_and_missing(&store);
        assert!(
            unlisted.is_empty() && missing.is_empty(),
            "{unlisted:?} {missing:?}"
        );
        let st = sb.cmd("status", TODAY).output().unwrap();
        ok(&st);
        assert!(text(&st).contains("(2026-06 .. 2026-10)"), "{}", text(&st));
    }
}

/// A manifest that cannot be written leaves no unlisted data file in a
/// partition (where `read_parquet('loans/*/*.parquet')` would count it), and
/// the batch stays in the inbox for the next ingest.
#[test]
#[ignore = "fault-injection suite: run by .ci/run (cargo test -p cli --test faults -- --ignored)"]
fn a_failed_manifest_write_leaves_no_unlisted_data_file() {
    let Some(fs) = Tmpfs::mount("size=16m,nr_inodes=256,mode=0700") else {
        return;
    };
    let store = fs.path().join("store");
    let sb = Sandbox::new("fault-library", Some(&store), 60);
    ok(&sb.run("extract"));
    ok(&sb.run("ingest"));
    let loans = status_loans(&sb);
    // One new loan in a month the store holds already.
    let extra = sb.path("extra.csv");
    std::fs::write(
        &extra,
        "borrower_id,title_id,loan_date\nFAULT-NEW-BORROWER,9781146329699,2026-10-10\n",
    )
    .unwrap();
    let out = sb
        .cmd("extract", TODAY)
        .arg("--input")
        .arg(&extra)
        .output()
        .unwrap();
    ok(&out);
    // Exactly two free inodes: the staging directory and the data file fit,
    // the next manifest does not.
    let mut fillers = fs.fill(true);
    for _ in 0..2 {
        std::fs::remove_file(fillers.pop().unwrap()).unwrap();
    }
    let out = sb.run("ingest");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (unlisted, missing) = unlisted_and_missing(&store);
    assert!(
        unlisted.is_empty(),
        "unlisted data files left: {unlisted:?}"
    );
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(batches_in(&sb.path("outbox")), 1);
    for f in fillers {
        std::fs::remove_file(f).unwrap();
    }
    ok(&sb.run("ingest"));
    assert_eq!(status_loans(&sb), loans + 1);
}
