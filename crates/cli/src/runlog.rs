//! The run log: one JSON line per stage of every run (JSON Lines, schema in
//! `docs/design.md`), counts and durations only, for the operator and the
//! data-protection officer (`alsoborrowed report`).
//!
//! Two files, one per side, each owner-only (0600):
//! - `<store>/runlog.jsonl` on the mining side: ingest, prune, build, export,
//!   verify, refusals and each command's end;
//! - `<outbox>/runlog.jsonl` on the extractor's side: extract.
//!
//! A record never holds a borrower id, a pseudonym, a key byte or a title:
//! counts, durations, dates, the stage's name and, for a failed or refused
//! stage, the error line (which by the project's rules names files, kinds
//! and places, never a value). Each record is appended with one `write` on a
//! file opened with `O_APPEND`, so lines of runs holding different locks
//! (ingest and export may run at once) never interleave. A record that
//! cannot be written does not fail the run: a warning says so on stderr
//! (even with `--quiet`) and the run goes on.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// File name of the run log on either side.
pub(crate) const FILE: &str = "runlog.jsonl";
/// Version of a record's format.
pub(crate) const VERSION: u32 = 1;

/// One line of the run log.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub(crate) struct Record {
    /// Format version, 1.
    pub v: u32,
    /// When the stage ended (UTC, RFC 3339).
    pub at: String,
    /// The run's day (`--today`, or the system date).
    pub day: String,
    /// The command run (`extract`, `ingest`, `build`, `export`, `verify`, `run`).
    pub command: String,
    /// The stage: `extract`, `ingest`, `prune`, `build`, `export`, `verify`,
    /// `refusal`, `quarantine`, or `end` (the command as a whole).
    pub stage: String,
    /// Whether the stage succeeded.
    pub ok: bool,
    /// Wall-clock seconds.
    pub duration_s: f64,
    /// Counts, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub counts: BTreeMap<String, u64>,
    /// Seconds of the timed steps inside the stage, by label.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timings: BTreeMap<String, f64>,
    /// CPU seconds of the whole process (every thread, user + system)
    /// during each timed step, by label: beside `timings`, how well the
    /// step used the cores.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cpu_timings: BTreeMap<String, f64>,
    /// What a release published and what was withheld (export only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseStats>,
    /// Why a stage failed or was refused: the error line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The exit code (`end` records only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u8>,
}

/// What one export published, and what k and the cap held back.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Default)]
pub(crate) struct ReleaseStats {
    /// `published`, `unchanged` or `repaired`.
    pub outcome: String,
    /// The release directory's name (a hash of the published bytes).
    pub release: String,
    /// First and last month of the scoring window.
    pub window: (String, String),
    /// Minimum distinct borrowers per pair (k).
    pub min_support: u32,
    /// Most titles counted per borrower (the cap).
    pub max_titles_per_borrower: u32,
    /// Distinct borrowers in the window.
    pub borrowers: u64,
    /// Titles with a list.
    pub titles: u64,
    /// Published directed pairs.
    pub pairs: u64,
    /// Titles by list length: length -> titles.
    pub list_lengths: BTreeMap<u32, u64>,
    /// Borrowers whose titles the cap cut.
    pub capped_borrowers: u64,
    /// Borrower-title entries the cap left out.
    pub capped_titles: u64,
    /// Titles with fewer than k borrowers (in no pair).
    pub titles_below_k: u64,
    /// Title pairs held together by 1 to k - 1 borrowers (withheld by k).
    pub pairs_below_k: u64,
}

impl ReleaseStats {
    /// The statistics of `related` (list lengths) and `withheld`.
    pub fn new(related: &engine::Related, withheld: &engine::Withheld) -> ReleaseStats {
        let mut list_lengths = BTreeMap::new();
        let mut run = 0u32;
        let mut last = None;
        for pair in &related.pairs {
            if last != Some(pair.a) {
                if run > 0 {
                    *list_lengths.entry(run).or_insert(0) += 1;
                }
                run = 0;
                last = Some(pair.a);
            }
            run += 1;
        }
        if run > 0 {
            *list_lengths.entry(run).or_insert(0) += 1;
        }
        ReleaseStats {
            borrowers: related.borrowers,
            titles: list_lengths.values().sum(),
            pairs: related.pairs.len() as u64,
            list_lengths,
            capped_borrowers: withheld.capped_borrowers,
            capped_titles: withheld.capped_titles,
            titles_below_k: withheld.titles_below_k,
            pairs_below_k: withheld.pairs_below_k,
            ..ReleaseStats::default()
        }
    }
}

/// Which side's log a record goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    /// The extractor's host: beside the outbox.
    Extractor,
    /// The mining host: in the store directory.
    Mining,
}

#[derive(Default)]
struct Inner {
    command: String,
    extractor: Option<PathBuf>,
    mining: Option<PathBuf>,
    timings: BTreeMap<String, f64>,
    cpu_timings: BTreeMap<String, f64>,
    counts: BTreeMap<String, u64>,
    warned: bool,
}

/// The run log of one invocation: where it goes and the step timings
/// gathered by [`crate::context::Context::stage`] since the last record.
#[derive(Default)]
pub(crate) struct RunLog {
    inner: Mutex<Inner>,
    started: Option<Instant>,
}

impl RunLog {
    /// A log for `command`; nothing is written until a pipeline is known.
    pub fn new(command: &str) -> RunLog {
        RunLog {
            inner: Mutex::new(Inner {
                command: command.to_owned(),
                ..Inner::default()
            }),
            started: Some(Instant::now()),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where this pipeline's two logs are.
    pub fn pipeline(&self, p: &pipeline::Pipeline) {
        let mut i = self.inner();
        i.extractor = Some(p.transfer.outbox.join(FILE));
        i.mining = Some(p.store.path.join(FILE));
    }

    /// Notes a timed step, its wall and process CPU time (called by
    /// `Context::stage`).
    pub fn timed(&self, label: &str, elapsed: Duration, cpu: Duration) {
        let mut i = self.inner();
        *i.timings.entry(label.to_owned()).or_insert(0.0) += elapsed.as_secs_f64();
        *i.cpu_timings.entry(label.to_owned()).or_insert(0.0) += cpu.as_secs_f64();
    }

    /// Adds `n` to the count `name` of the next record.
    pub fn count(&self, name: &str, n: u64) {
        *self.inner().counts.entry(name.to_owned()).or_insert(0) += n;
    }

    /// A record of this command's `stage`, to fill in and [`RunLog::write`].
    pub fn record(&self, stage: &str, ok: bool, elapsed: Duration) -> Record {
        Record {
            v: VERSION,
            at: jiff::Timestamp::now().to_string(),
            day: String::new(),
            command: self.inner().command.clone(),
            stage: stage.to_owned(),
            ok,
            duration_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            counts: BTreeMap::new(),
            timings: BTreeMap::new(),
            cpu_timings: BTreeMap::new(),
            release: None,
            reason: None,
            exit_code: None,
        }
    }

    /// Appends `r` to `side`'s log with the step timings and counts gathered
    /// since the last record; warns once on stderr if it cannot.
    pub fn write(&self, ctx_day: jiff::civil::Date, side: Side, mut r: Record) {
        let mut i = self.inner();
        r.day = ctx_day.to_string();
        let millis = |m: BTreeMap<String, f64>| {
            m.into_iter()
                .map(|(k, v)| (k, (v * 1000.0).round() / 1000.0))
                .collect()
        };
        r.timings = millis(std::mem::take(&mut i.timings));
        r.cpu_timings = millis(std::mem::take(&mut i.cpu_timings));
        for (k, v) in std::mem::take(&mut i.counts) {
            *r.counts.entry(k).or_insert(0) += v;
        }
        let path = match side {
            Side::Extractor => i.extractor.clone(),
            Side::Mining => i.mining.clone(),
        };
        let Some(path) = path else { return };
        // The mining log is written only where the store is: `extract` on
        // the extractor's host must not create a store directory.
        if path.parent().is_none_or(|d| !d.is_dir()) {
            return;
        }
        if let Err(e) = append(&path, &r)
            && !i.warned
        {
            i.warned = true;
            eprintln!(
                "warning: could not append to the run log {}: {e}; the run goes on without it",
                path.display()
            );
        }
    }

    /// Seconds since the command started.
    pub fn elapsed(&self) -> Duration {
        self.started.map(|s| s.elapsed()).unwrap_or_default()
    }

    /// The closing record of the command (`end`), and for a refusal (exit
    /// code 4) or quarantined batches (5) a `refusal` or `quarantine` record
    /// with the reason. `side` is where the command ran.
    pub fn finish(&self, day: jiff::civil::Date, side: Side, exit: u8, reason: Option<String>) {
        let elapsed = self.elapsed();
        let kind = match exit {
            4 => Some("refusal"),
            5 => Some("quarantine"),
            _ => None,
        };
        if let Some(kind) = kind {
            let mut r = self.record(kind, false, Duration::ZERO);
            r.reason.clone_from(&reason);
            self.write(day, Side::Mining, r);
        }
        let mut r = self.record("end", exit == 0, elapsed);
        r.exit_code = Some(exit);
        r.reason = reason;
        self.write(day, side, r);
    }
}

/// CPU time the process has used so far, all threads, user and system.
pub(crate) fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// Appends one record as one line with one `write` (O_APPEND), creating the
/// file owner-only; refuses to follow a symbolic link.
fn append(path: &Path, r: &Record) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(&line)
}

/// The records of the log at `path`, oldest first; lines that do not parse
/// (a torn write, a newer format) are counted, not returned.
pub(crate) fn read(path: &Path) -> std::io::Result<(Vec<Record>, usize)> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<Record>(line) {
            Ok(r) if r.v == VERSION => out.push(r),
            _ => bad += 1,
        }
    }
    Ok((out, bad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_cpu_time_grows_with_work() {
        let before = process_cpu();
        let mut x = 0u64;
        while process_cpu().saturating_sub(before) < Duration::from_millis(20) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        assert!(x > 0);
    }

    #[test]
    fn appends_parse_back_and_the_file_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = RunLog::new("ingest");
        log.inner().mining = Some(dir.path().join(FILE));
        log.timed(
            "ingest",
            Duration::from_millis(1500),
            Duration::from_millis(2500),
        );
        let mut r = log.record("ingest", true, Duration::from_millis(1234));
        r.counts.insert("rows".into(), 42);
        let day = jiff::civil::date(2026, 11, 3);
        log.write(day, Side::Mining, r);
        log.finish(day, Side::Mining, 4, Some("privacy check failed: x".into()));
        let (records, bad) = read(&dir.path().join(FILE)).unwrap();
        assert_eq!(bad, 0);
        let stages: Vec<&str> = records.iter().map(|r| r.stage.as_str()).collect();
        assert_eq!(stages, ["ingest", "refusal", "end"]);
        assert_eq!(records[0].counts["rows"], 42);
        assert_eq!(records[0].duration_s, 1.234);
        assert_eq!(records[0].timings["ingest"], 1.5);
        assert_eq!(records[0].cpu_timings["ingest"], 2.5);
        assert_eq!(records[0].day, "2026-11-03");
        assert!(records[1].timings.is_empty());
        assert!(records[1].cpu_timings.is_empty());
        assert_eq!(records[2].exit_code, Some(4));
        let mode = std::fs::metadata(dir.path().join(FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn an_unwritable_log_does_not_stop_the_run() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: the append fails.
        std::fs::create_dir(dir.path().join(FILE)).unwrap();
        let log = RunLog::new("export");
        log.inner().mining = Some(dir.path().join(FILE));
        let r = log.record("export", true, Duration::ZERO);
        log.write(jiff::civil::date(2026, 1, 1), Side::Mining, r);
        assert!(log.inner().warned);
    }

    #[test]
    fn list_lengths_count_each_title_once() {
        let pair = |a, b| engine::ScoredPair {
            a,
            b,
            support: 5,
            score: 1.0,
        };
        let related = engine::Related {
            title_ids: vec!["a".into(), "b".into(), "c".into()],
            borrowers: 9,
            pairs: vec![pair(0, 1), pair(0, 2), pair(1, 0), pair(2, 0)],
        };
        let s = ReleaseStats::new(&related, &engine::Withheld::default());
        assert_eq!(s.titles, 3);
        assert_eq!(s.pairs, 4);
        assert_eq!(s.list_lengths, BTreeMap::from([(1, 2), (2, 1)]));
    }
}
