//! `alsoborrowed build` and `alsoborrowed export`: store -> related titles ->
//! checked, atomically published release.

use std::path::Path;

use anyhow::Result;
use loans::Loans;
use pipeline::Pipeline;
use publish::{ExportMeta, ExportOutcome, Forbidden};
use store::Store;

use crate::PipelineArgs;
use crate::commands::stages::{forbidden, open_store, scan_months};
use crate::context::{Context, Refused, load_pipeline};
use crate::lock::{RunLock, SERVED_DIR};
use crate::refusals;
use crate::runlog::{ReleaseStats, Side};

/// Loans of the scoring window and the window itself.
pub(crate) struct Window {
    pub first: loans::LoanMonth,
    pub last: loans::LoanMonth,
    pub loans: Loans,
}

/// Reads the scoring window from the store (the rows of `fresh`'s files
/// from its loans in memory); an empty window is an error so that a broken
/// feed never replaces a good one.
pub(crate) fn read_window(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    fresh: Option<(&Loans, &store::Written)>,
) -> Result<Window> {
    let (first, last) = ctx.window(p)?;
    let loans = scan_months(ctx, store, first, last, fresh)?;
    if loans.is_empty() {
        return Err(Refused(format!(
            "the store holds no loans in the scoring window {first}..{last}; nothing to publish"
        ))
        .into());
    }
    Ok(Window { first, last, loans })
}

fn compute(ctx: &Context, p: &Pipeline, w: &Window) -> Result<engine::Related> {
    let params = engine::EngineParams::from(&p.engine);
    ctx.stage("build", || Ok(engine::build(&w.loans, &params)?))
}

pub(crate) fn build_only(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let started = std::time::Instant::now();
    let p = load_pipeline(&args.pipeline)?;
    let store = open_store(&p)?;
    let w = read_window(ctx, &p, &store, None)?;
    let related = compute(ctx, &p, &w)?;
    let titles = count_titles(&related);
    println!(
        "window {}..{}: {} loans by {} borrowers; {} titles with related titles, {} published relations (k = {}, measure {})",
        w.first,
        w.last,
        w.loans.len(),
        related.borrowers,
        titles,
        related.pairs.len(),
        p.engine.min_support,
        p.engine.measure.name()
    );
    ctx.log_stage(
        Side::Mining,
        "build",
        started,
        &[
            ("loans", w.loans.len() as u64),
            ("borrowers", related.borrowers),
            ("titles", titles as u64),
            ("pairs", related.pairs.len() as u64),
        ],
        None,
    );
    Ok(())
}

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let _lock = RunLock::acquire(&p.export.path, "the export directory", SERVED_DIR)?;
    let store = open_store(&p)?;
    export_release(ctx, &p, args.input.as_deref(), None, &store, None)
}

fn count_titles(r: &engine::Related) -> usize {
    let mut n = 0;
    let mut last = None;
    for pair in &r.pairs {
        if last != Some(pair.a) {
            n += 1;
            last = Some(pair.a);
        }
    }
    n
}

pub(crate) fn export_release(
    ctx: &Context,
    p: &Pipeline,
    input: Option<&Path>,
    ids: Option<Forbidden>,
    store: &Store,
    window: Option<Window>,
) -> Result<()> {
    ctx.refuse_future_today("export would publish a window of months that have not happened")?;
    let started = std::time::Instant::now();
    let w = match window {
        Some(w) => w,
        None => read_window(ctx, p, store, None)?,
    };
    // Independent: the leak check's set-up is mostly one thread, so it runs
    // beside the engine instead of after it.
    let (related, forbidden) = ctx.stage("build + leak check set-up", || {
        let (related, forbidden) = rayon::join(
            || engine::build_with_stats(&w.loans, &engine::EngineParams::from(&p.engine)),
            || forbidden(ctx, p, input, ids, &w.loans),
        );
        Ok((related?, forbidden?))
    })?;
    let (related, withheld) = related;
    let mut stats = ReleaseStats::new(&related, &withheld);
    let meta = ExportMeta {
        window_first: w.first,
        window_last: w.last,
        measure: p.engine.measure,
        min_support: p.engine.min_support,
        max_titles_per_borrower: p.engine.max_titles_per_borrower,
        time_decay: p.engine.time_decay,
        max_related: p.engine.max_related,
        layout: p.export.feed_layout,
    };
    let result = ctx.stage("export", || {
        Ok(publish::export(&related, &meta, &p.export.path, &forbidden))
    })?;
    let outcome = match result {
        Ok(o) => o,
        Err(e) => {
            if let publish::PublishError::CheckFailed { .. } = &e {
                // Best effort: the refusal itself is what the operator must see.
                if let Err(record) = refusals::record(ctx, &p.export.path, &e) {
                    ctx.say(format!("note: could not record the refusal: {record:#}"));
                }
            }
            return Err(
                anyhow::Error::new(e).context(format!("publishing to {}", p.export.path.display()))
            );
        }
    };
    let window = format!("window {}..{}", w.first, w.last);
    let (outcome_name, release_dir) = match &outcome {
        ExportOutcome::Published { release, .. } => ("published", release.clone()),
        ExportOutcome::Unchanged { release, .. } => ("unchanged", release.clone()),
        ExportOutcome::Repaired { release, .. } => ("repaired", release.clone()),
        _ => ("other", Default::default()),
    };
    stats.outcome = outcome_name.to_owned();
    stats.release = release_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    stats.window = (w.first.to_string(), w.last.to_string());
    stats.min_support = p.engine.min_support;
    stats.max_titles_per_borrower = p.engine.max_titles_per_borrower;
    ctx.log_stage(
        Side::Mining,
        "export",
        started,
        &[("loans", w.loans.len() as u64)],
        Some(stats),
    );
    let served = p.export.path.join(publish::SERVED_LINK);
    let ids_as_titles = match outcome {
        ExportOutcome::Published {
            release,
            titles,
            pairs,
            ids_as_titles,
        } => {
            ctx.say(format!(
                "published {titles} titles with {pairs} related-title entries ({window}) -> {}; serve {}",
                release.display(),
                served.display()
            ));
            ids_as_titles
        }
        ExportOutcome::Unchanged {
            release,
            ids_as_titles,
        } => {
            ctx.say(format!(
                "published output unchanged ({window}): {}",
                release.display()
            ));
            ids_as_titles
        }
        ExportOutcome::Repaired {
            release,
            ids_as_titles,
        } => {
            ctx.say(format!(
                "the live release {} had been changed on disk; it was written again from the checked output ({window})",
                release.display()
            ));
            ids_as_titles
        }
        _ => 0,
    };
    if ids_as_titles > 0 {
        ctx.say(format!(
            "note: {ids_as_titles} borrower ids of the loans file are also title ids; they were \
             published as titles only, which is not a leak. To keep the two apart, map a prefixed \
             borrower column (e.g. 'card:' || borrowernumber in a query, as the ILS presets do; \
             docs/configuration.md)"
        ));
    }
    Ok(())
}
