//! What every command needs: today's date, the quiet flag, output helpers, the
//! scoring window and retention arithmetic, and the exit-code mapping.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context as _, Result};
use loans::LoanMonth;
use pipeline::Pipeline;

use crate::GlobalArgs;

/// Per-invocation settings.
pub(crate) struct Context {
    pub quiet: bool,
    pub today: jiff::civil::Date,
    /// The run log (`runlog`): stage records, counts and timings.
    pub log: crate::runlog::RunLog,
}

impl Context {
    pub fn new(args: &GlobalArgs) -> Context {
        Context {
            quiet: args.quiet,
            today: args.today.unwrap_or_else(|| jiff::Zoned::now().date()),
            log: crate::runlog::RunLog::default(),
        }
    }

    /// A report line on stdout, suppressed by `--quiet`.
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.quiet {
            println!("{}", line.as_ref());
        }
    }

    /// Whether to draw progress spinners: only for a person watching a terminal.
    pub fn interactive(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    /// A spinner on stderr while `f` runs, when interactive
    /// (crate::progress), then `<label>: done in X s (cpu Y s)` unless quiet.
    pub fn stage<T>(&self, label: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.stage_with(label, None, f)
    }

    /// [`Context::stage`] with what is known of the stage's size (the
    /// input's bytes, "batch 2 of 5") beside the spinner.
    pub fn stage_with<T>(
        &self,
        label: &str,
        detail: Option<&str>,
        f: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let progress = crate::progress::Progress::spinner(self.interactive(), label, detail);
        let started = std::time::Instant::now();
        let cpu_started = crate::runlog::process_cpu();
        let out = f();
        let cpu = crate::runlog::process_cpu().saturating_sub(cpu_started);
        self.log.timed(label, started.elapsed(), cpu);
        drop(progress);
        if out.is_ok() && !self.quiet {
            eprintln!(
                "{label}: done in {:.2} s (cpu {:.2} s)",
                started.elapsed().as_secs_f64(),
                cpu.as_secs_f64()
            );
        }
        out
    }

    /// Appends a record of `stage` (counts given and gathered, timings
    /// gathered) to `side`'s run log; never fails the run.
    pub fn log_stage(
        &self,
        side: crate::runlog::Side,
        stage: &str,
        started: std::time::Instant,
        counts: &[(&str, u64)],
        release: Option<crate::runlog::ReleaseStats>,
    ) {
        let mut r = self.log.record(stage, true, started.elapsed());
        for &(k, v) in counts {
            r.counts.insert(k.to_owned(), v);
        }
        r.release = release;
        self.log.write(self.today, side, r);
    }

    /// The month containing today.
    pub fn this_month(&self) -> Result<LoanMonth> {
        LoanMonth::new(i32::from(self.today.year()), self.today.month() as u32)
            .context("today's date is outside the supported calendar")
    }

    /// Refuses a `--today` after the system date; `consequence` says what
    /// the stage would do with it (record a day that has not come, publish a
    /// window of months that have not happened).
    pub fn refuse_future_today(&self, consequence: &str) -> Result<()> {
        if self.today > jiff::Zoned::now().date() {
            anyhow::bail!(
                "--today {} is after the system date; {consequence} (drop --today or fix the clock)",
                self.today
            );
        }
        Ok(())
    }

    /// The oldest month the store keeps: `retention_months` months including this one.
    /// Refuses a `--today` after the system date: pruning by it would delete
    /// loans that are still within retention, irreversibly.
    pub fn oldest_kept(&self, p: &Pipeline) -> Result<LoanMonth> {
        if self.today > jiff::Zoned::now().date() {
            anyhow::bail!(
                "--today {} is after the system date; ingest and run would delete loans still within retention",
                self.today
            );
        }
        let months = i32::try_from(p.store.retention_months)
            .context("store.retention_months is too large")?;
        Ok(self.this_month()?.plus(1 - months)?)
    }

    /// The scoring window: whole calendar months only, ending with the last
    /// complete month (or the pipeline's fixed `engine.window_end`).
    pub fn window(&self, p: &Pipeline) -> Result<(LoanMonth, LoanMonth)> {
        let last = match p.engine.window_end {
            Some(m) => m,
            None => self.this_month()?.plus(-1)?,
        };
        let first = last.plus(1 - p.engine.window_months as i32)?;
        Ok((first, last))
    }
}

/// Loads the pipeline file with its name as context.
pub(crate) fn load_pipeline(path: &Path) -> Result<Pipeline> {
    Ok(Pipeline::load(path)?)
}

/// Marker for "another run holds the lock" (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{what} is locked by another alsoborrowed run ({path}); try again when it has finished")]
pub(crate) struct Busy {
    pub what: &'static str,
    pub path: String,
}

/// Marker for "some batches were quarantined" (exit code 5): the others were
/// ingested (and, for `run`, published).
#[derive(Debug, thiserror::Error)]
#[error(
    "{count} batch file(s) could not be ingested and were moved to {dir} (the reason is beside each); the other batches were ingested"
)]
pub(crate) struct QuarantinedBatches {
    pub count: usize,
    pub dir: String,
}

/// Marker for "nothing published yet" (exit code 6): `verify` before the
/// first export.
#[derive(Debug, thiserror::Error)]
#[error(
    "nothing published yet: {export} has no release; run `alsoborrowed export --pipeline {pipeline}` (or `run`) first"
)]
pub(crate) struct NothingPublished {
    pub export: String,
    pub pipeline: String,
}

/// Marker for "the privacy check refused to publish" (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("privacy check failed: {0}")]
pub(crate) struct Refused(pub String);

/// Maps an error chain to the documented exit code.
pub(crate) fn exit_code(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if cause.downcast_ref::<Busy>().is_some() {
            return 3;
        }
        if let Some(store::StoreError::Locked { .. }) = cause.downcast_ref::<store::StoreError>() {
            return 3;
        }
        if cause.downcast_ref::<Refused>().is_some() {
            return 4;
        }
        if cause.downcast_ref::<QuarantinedBatches>().is_some() {
            return 5;
        }
        if cause.downcast_ref::<NothingPublished>().is_some()
            || matches!(
                cause.downcast_ref::<publish::PublishError>(),
                Some(publish::PublishError::NoRelease { .. })
            )
        {
            return 6;
        }
        if let Some(publish::PublishError::CheckFailed { .. }) =
            cause.downcast_ref::<publish::PublishError>()
        {
            return 4;
        }
    }
    1
}
