//! `alsoborrowed verify`: an independent audit of what is published.

use anyhow::{Context as _, Result};

use crate::PipelineArgs;
use crate::commands::export::{forbidden, read_window};
use crate::commands::ingest::open_store;
use crate::context::{Context, load_pipeline};

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let store = open_store(&p)?;
    let w = read_window(ctx, &p, &store)?;
    let f = forbidden(ctx, &p, args.input.as_deref(), &w.loans)?;
    let report = publish::verify(&p.export.path, &w.loans, p.engine.min_support, &f)
        .with_context(|| format!("verifying {}", p.export.path.display()))?;
    ctx.say(format!(
        "verified: {} published pairs each supported by at least {} distinct borrowers (smallest {}); {} files hold no pseudonym, borrower id or key material",
        report.pairs_checked, p.engine.min_support, report.min_support_seen, report.files_scanned
    ));
    Ok(())
}
