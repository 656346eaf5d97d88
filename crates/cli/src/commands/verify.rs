//! `alsoborrowed verify`: an independent audit of what is published.

use anyhow::{Context as _, Result};
use loans::LoanMonth;

use crate::PipelineArgs;
use crate::commands::stages::{forbidden, open_store, scan_months};
use crate::context::{Context, NothingPublished, load_pipeline};

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let p = load_pipeline(&args.pipeline)?;
    // Before the store is opened: a verify before the first export must not
    // create an empty store as a side effect.
    // Recount over the months the live release covers, which after a month
    // boundary differ from the window the next export will use.
    let (first, last) = published_window(&p, &args.pipeline)?;
    let store = open_store(&p)?;
    let loans = scan_months(ctx, &store, first, last, None)?;
    let f = forbidden(ctx, &p, args.input.as_deref(), None, &loans)?;
    let report = publish::verify(&p.export.path, &loans, p.engine.min_support, &f)
        .with_context(|| format!("verifying {}", p.export.path.display()))?;
    ctx.say(format!(
        "verified: {} published pairs, each supported by at least {} distinct borrowers (smallest {}) in {first}..{last}; \
         {} files hold only the feed format and titles of the input: no pseudonym, key material or borrower id",
        report.pairs_checked, p.engine.min_support, report.min_support_seen, report.files_scanned
    ));
    ctx.log_stage(
        crate::runlog::Side::Mining,
        "verify",
        started,
        &[
            ("loans", loans.len() as u64),
            ("pairs_checked", report.pairs_checked as u64),
            ("files_scanned", report.files_scanned as u64),
            ("min_support_seen", u64::from(report.min_support_seen)),
        ],
        None,
    );
    Ok(())
}

/// The window recorded in the live release's private `release.json`.
fn published_window(
    p: &pipeline::Pipeline,
    pipeline: &std::path::Path,
) -> Result<(LoanMonth, LoanMonth)> {
    use alsoborrowed_feed::CURRENT_LINK;
    let current = p.export.path.join(CURRENT_LINK);
    if std::fs::symlink_metadata(&current).is_err() {
        return Err(NothingPublished {
            export: p.export.path.display().to_string(),
            pipeline: pipeline.display().to_string(),
        }
        .into());
    }
    let path = current.join(publish::RELEASE_MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "{}: the live release was made by an older version of alsoborrowed; run \
                 `alsoborrowed export` once to publish it in the current format",
                current.display()
            )
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let manifest: publish::ReleaseManifest = serde_json::from_slice(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: not a release manifest (line {} column {})",
            path.display(),
            e.line(),
            e.column()
        )
    })?;
    let month = |s: &str| -> Result<LoanMonth> {
        s.parse()
            .with_context(|| format!("{}: window month is not YYYY-MM", path.display()))
    };
    Ok((
        month(&manifest.window_first)?,
        month(&manifest.window_last)?,
    ))
}
