//! `alsoborrowed extract`: loans file -> sealed batch in the outbox.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use pipeline::Pipeline;

use crate::PipelineArgs;
use crate::commands::stages::{Fresh, add_borrower_ids, load_key};
use crate::context::{Context, load_pipeline};
use crate::lock::{PRIVATE_DIR, RunLock};

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let _lock = RunLock::acquire(&p.transfer.outbox, "the extractor's outbox", PRIVATE_DIR)?;
    extract_to_outbox(ctx, &p, args.input.as_deref(), None, false)?;
    Ok(())
}

/// Reads, pseudonymizes and seals into the outbox; the raw ids die inside
/// `extract`, after being added to `ids` (the leak check's forbidden set)
/// when one is given. With `keep_open` nothing is sealed: the loans are
/// returned, named, for ingest in the same process.
pub(crate) fn extract_to_outbox(
    ctx: &Context,
    p: &Pipeline,
    input: Option<&Path>,
    mut ids: Option<&mut publish::Forbidden>,
    keep_open: bool,
) -> Result<Option<Fresh>> {
    // The link record's sealed-on day starts the four-week clock; a day in
    // the future would push the deletion deadline out.
    ctx.refuse_future_today("extract would record a day that has not come")?;
    let started = std::time::Instant::now();
    let create = p.keys.create_if_missing;
    let pseudonymizer = {
        let master = load_key(ctx, &p.keys.pseudonym, create, "pseudonym")?;
        pseudonym::Pseudonymizer::new(&master, &p.library.id, &p.library.purpose)
    };
    let transfer = load_key(ctx, &p.keys.transfer, create, "transfer")?;
    // Key separation is the point: the mining host holds the transfer key and
    // must never be able to recompute pseudonyms.
    if transfer.fingerprint() == pseudonymizer.master_fingerprint() {
        bail!(
            "{} and {} hold the same key; the pseudonym key and the transfer key must be different keys",
            p.keys.pseudonym.display(),
            p.keys.transfer.display()
        );
    }
    let source_input = extract::ExtractInput {
        source: &p.source,
        works: p.works.as_ref(),
        input,
        today: ctx.today,
    };
    let size = crate::progress::file_size(input.unwrap_or(&p.source.path));
    let extraction = ctx.stage_with("extract", size.as_deref(), || {
        Ok(match ids.as_deref_mut() {
            Some(f) => extract::extract_and_lend(&source_input, &pseudonymizer, &mut |lent| {
                add_borrower_ids(f, lent)
            })?,
            None => extract::extract(&source_input, &pseudonymizer)?,
        })
    })?;
    let extract::Extraction { loans, report: r } = extraction;
    report(ctx, &r);
    let (library, purpose) = (&p.library.id, &p.library.purpose);
    let key = pseudonymizer.master_fingerprint();
    let (meta, fresh) = if keep_open {
        // One host, ingested straight from memory: the batch needs its name
        // (the store's idempotency key) but no file, which would be written,
        // synced and deleted a second later. A run that stops before its
        // ingest finishes leaves nothing behind and is simply run again.
        let oldest_kept = ctx.oldest_kept(p)?;
        let name = || batch::identify(&loans, library, purpose, key);
        // Naming hashes the payload on one thread; meanwhile the pool
        // prepares the ingest (each month's rows) and the leak check's set
        // learns the batch's pseudonyms, which the window's borrower
        // dictionary holds again (found there at once then).
        let (meta, prepared) = rayon::join(
            || match ids {
                Some(f) => rayon::join(name, || f.add_pseudonyms(&loans.borrower_pseudonyms)).0,
                None => name(),
            },
            || store::Prepared::new(&loans, oldest_kept),
        );
        let meta = meta.context("naming the batch")?;
        ctx.say(format!(
            "extracted batch {} ({} loans), handed to ingest in memory",
            meta.id, meta.rows
        ));
        (meta, Some((loans, prepared)))
    } else {
        // Owned, so each column is freed once encoded: the largest batch then
        // needs memory for its loans plus one column, not twice its loans.
        let (meta, sealed) = batch::seal_owned(loans, library, purpose, key, &transfer)
            .context("sealing the batch")?;
        let (path, found) = batch::write_to_outbox(&p.transfer.outbox, &meta, &sealed)?;
        match found {
            batch::OutboxFound::Nothing | batch::OutboxFound::SameBatch => {}
            other => eprintln!(
                "warning: {} held {other}; replaced it with the new batch",
                path.display()
            ),
        }
        ctx.say(format!(
            "sealed batch {} ({} loans) -> {}",
            meta.id,
            meta.rows,
            path.display()
        ));
        (meta, None)
    };
    if let Some(newest) = r.newest_day {
        crate::links::record_sealed(&p.transfer.outbox, &meta.id.to_string(), newest, ctx.today)?;
    }
    let rejected = r.rejected.values().map(|x| x.count).sum();
    let months = match (r.first_month, r.last_month) {
        (Some(a), Some(b)) => u64::try_from(b.index() - a.index() + 1).unwrap_or(0),
        _ => 0,
    };
    ctx.log_stage(
        crate::runlog::Side::Extractor,
        "extract",
        started,
        &[
            ("rows_read", r.rows_read),
            ("rows_kept", r.rows_kept),
            ("rows_rejected", rejected),
            ("repeated_merged", r.duplicates),
            ("borrowers", r.distinct_borrowers),
            ("titles", r.distinct_titles),
            ("months", months),
            ("loans", meta.rows),
        ],
        None,
    );
    Ok(fresh.map(|(loans, prepared)| Fresh {
        meta,
        loans,
        prepared: Some(prepared),
    }))
}

fn report(ctx: &Context, r: &extract::ExtractReport) {
    ctx.say(format!(
        "read {} rows from {}: kept {}, {} borrowers, {} titles, months {}..{}",
        r.rows_read,
        r.path.display(),
        r.rows_kept,
        r.distinct_borrowers,
        r.distinct_titles,
        r.first_month.map(|m| m.to_string()).unwrap_or_default(),
        r.last_month.map(|m| m.to_string()).unwrap_or_default(),
    ));
    if r.duplicates > 0 {
        ctx.say(format!(
            "merged {} repeated loans (same borrower, title and month)",
            r.duplicates
        ));
    }
    for (reason, rej) in &r.rejected {
        let rows: Vec<String> = rej.rows.iter().map(u64::to_string).collect();
        let more = if rej.count > rej.rows.len() as u64 {
            ", ..."
        } else {
            ""
        };
        ctx.say(format!(
            "rejected {} rows: {reason} (rows {}{more})",
            rej.count,
            rows.join(", ")
        ));
    }
}
