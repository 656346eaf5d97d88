//! `alsoborrowed verify`: an independent audit of what is published.

use anyhow::{Context as _, Result};
use loans::LoanMonth;

use crate::PipelineArgs;
use crate::commands::export::{forbidden, scan_months};
use crate::commands::stages::open_store;
use crate::context::{Context, load_pipeline};

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let store = open_store(&p)?;
    // Recount over the months the live release covers, which after a month
    // boundary differ from the window the next export will use.
    let (first, last) = published_window(&p)?;
    let loans = scan_months(ctx, &store, first, last)?;
    let f = forbidden(ctx, &p, args.input.as_deref(), None, &loans)?;
    let report = publish::verify(&p.export.path, &loans, p.engine.min_support, &f)
        .with_context(|| format!("verifying {}", p.export.path.display()))?;
    ctx.say(format!(
        "verified: {} published pairs, each supported by at least {} distinct borrowers (smallest {}) in {first}..{last}; \
         {} files hold no pseudonym, no key material and no borrower id of the loans file",
        report.pairs_checked, p.engine.min_support, report.min_support_seen, report.files_scanned
    ));
    Ok(())
}

/// The window recorded in the live release's `feed/index.json`.
fn published_window(p: &pipeline::Pipeline) -> Result<(LoanMonth, LoanMonth)> {
    use alsoborrowed_feed::{CURRENT_LINK, FEED_DIR, FeedIndex, INDEX_FILE};
    let path = p
        .export
        .path
        .join(CURRENT_LINK)
        .join(FEED_DIR)
        .join(INDEX_FILE);
    let text = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let index: FeedIndex =
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))?;
    let month = |s: &str| -> Result<LoanMonth> {
        s.parse()
            .with_context(|| format!("{}: window month is not YYYY-MM", path.display()))
    };
    Ok((month(&index.window.first)?, month(&index.window.last)?))
}
