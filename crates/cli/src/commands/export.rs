//! `alsoborrowed build` and `alsoborrowed export`: store -> related titles ->
//! checked, atomically published release.

use std::path::Path;

use anyhow::{Context as _, Result};
use loans::Loans;
use pipeline::Pipeline;
use publish::{ExportMeta, ExportOutcome, Forbidden};
use store::Store;

use crate::PipelineArgs;
use crate::commands::stages::open_store;
use crate::context::{Context, Refused, load_pipeline};
use crate::lock::{RunLock, SERVED_DIR};
use crate::refusals;

/// Loans of the scoring window and the window itself.
pub(crate) struct Window {
    pub first: loans::LoanMonth,
    pub last: loans::LoanMonth,
    pub loans: Loans,
}

/// Reads the scoring window from the store; an empty window is an error so
/// that a broken feed never replaces a good one.
pub(crate) fn read_window(ctx: &Context, p: &Pipeline, store: &Store) -> Result<Window> {
    let (first, last) = ctx.window(p)?;
    let loans = scan_months(ctx, store, first, last)?;
    if loans.is_empty() {
        return Err(Refused(format!(
            "the store holds no loans in the scoring window {first}..{last}; nothing to publish"
        ))
        .into());
    }
    Ok(Window { first, last, loans })
}

/// The store's loans of `first..=last`, refused if they mix pseudonym keys.
pub(crate) fn scan_months(
    ctx: &Context,
    store: &Store,
    first: loans::LoanMonth,
    last: loans::LoanMonth,
) -> Result<Loans> {
    refuse_mixed_keys(store, first, last)?;
    ctx.stage("read store", || {
        store
            .scan(first, last)
            .with_context(|| format!("reading months {first}..{last} from the store"))
    })
}

/// Adds lent borrower ids to a forbidden set.
pub(crate) fn add_borrower_ids(f: &mut Forbidden, ids: &mut dyn Iterator<Item = &[u8]>) {
    for id in ids {
        f.add_identifier(&String::from_utf8_lossy(id));
    }
}

/// Refuses a window whose loans were pseudonymized under more than one key:
/// one borrower would count as two, inflating every support count past what
/// k promises.
fn refuse_mixed_keys(store: &Store, first: loans::LoanMonth, last: loans::LoanMonth) -> Result<()> {
    let keys = store.pseudonym_keys(first, last)?;
    if keys.len() > 1 {
        return Err(Refused(format!(
            "months {first}..{last} hold loans pseudonymized under {} different pseudonym keys ({}); \
             one borrower would count as several, so nothing is published. After a key change, \
             start a new store (docs/operations.md)",
            keys.len(),
            keys.join(", ")
        ))
        .into());
    }
    Ok(())
}

fn compute(ctx: &Context, p: &Pipeline, w: &Window) -> Result<engine::Related> {
    let params = engine::EngineParams::from(&p.engine);
    ctx.stage("build", || Ok(engine::build(&w.loans, &params)?))
}

pub(crate) fn build_only(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let store = open_store(&p)?;
    let w = read_window(ctx, &p, &store)?;
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
    Ok(())
}

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let _lock = RunLock::acquire(&p.export.path, "the export directory", SERVED_DIR)?;
    let store = open_store(&p)?;
    export_release(ctx, &p, args.input.as_deref(), None, &store)
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

/// Everything that must never appear in published output and that this host
/// can know: the window's pseudonyms, whichever key files are present, and
/// the borrower ids of the loans file when it is on this host.
///
/// `ids` is a set already holding the borrower ids (lent by `run`'s own
/// extraction); without it, the ids are read from the loans file if present.
pub(crate) fn forbidden(
    ctx: &Context,
    p: &Pipeline,
    input: Option<&Path>,
    ids: Option<Forbidden>,
    loans: &Loans,
) -> Result<Forbidden> {
    let have_ids = ids.is_some();
    let mut f = ids.unwrap_or_default();
    f.add_pseudonyms(&loans.pseudonyms);
    // The keys as stored and the keys actually used (derived per purpose).
    if let Some(k) = optional_key(&p.keys.pseudonym)? {
        f.add_secret(k.expose_secret());
        let lib = p.library.id.as_bytes();
        let purpose = p.library.purpose.as_bytes();
        f.add_secret(
            k.derive(&[pseudonym::PURPOSE_PSEUDONYM, lib, purpose])
                .expose_secret(),
        );
    }
    if let Some(k) = optional_key(&p.keys.transfer)? {
        f.add_secret(k.expose_secret());
        f.add_secret(k.derive(&[batch::PURPOSE_BATCH_SEAL]).expose_secret());
    }
    let source = input.unwrap_or(&p.source.path);
    if !have_ids && source.exists() {
        let input = extract::ExtractInput {
            source: &p.source,
            works: None,
            input: Some(source),
            today: ctx.today,
        };
        extract::lend_borrower_ids(&input, |ids| add_borrower_ids(&mut f, ids)).with_context(
            || {
                format!(
                    "reading borrower ids of {} for the leak check",
                    source.display()
                )
            },
        )?;
    }
    f.prepare();
    Ok(f)
}

/// A key file that may legitimately be absent on this host (the pseudonym key
/// never leaves the extractor's host).
fn optional_key(path: &Path) -> Result<Option<keys::SecretKey>> {
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(keys::load_key_file(path)?))
}

pub(crate) fn export_release(
    ctx: &Context,
    p: &Pipeline,
    input: Option<&Path>,
    ids: Option<Forbidden>,
    store: &Store,
) -> Result<()> {
    ctx.refuse_future_today("export would publish a window of months that have not happened")?;
    let w = read_window(ctx, p, store)?;
    // Independent: the leak check's set-up is mostly one thread, so it runs
    // beside the engine instead of after it.
    let (related, forbidden) = ctx.stage("build + leak check set-up", || {
        let (related, forbidden) = rayon::join(
            || engine::build(&w.loans, &engine::EngineParams::from(&p.engine)),
            || forbidden(ctx, p, input, ids, &w.loans),
        );
        Ok((related?, forbidden?))
    })?;
    let meta = ExportMeta {
        window_first: w.first,
        window_last: w.last,
        measure: p.engine.measure,
        min_support: p.engine.min_support,
        max_titles_per_borrower: p.engine.max_titles_per_borrower,
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
