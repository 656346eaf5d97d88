//! `alsoborrowed ingest`: sealed batches in the inbox -> store.

use anyhow::{Context as _, Result, bail};
use pipeline::Pipeline;
use store::{BatchRecord, IngestOutcome, Store, StoreLock};

use crate::PipelineArgs;
use crate::commands::extract::{Fresh, load_key};
use crate::context::{Context, load_pipeline};

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let store = open_store(&p)?;
    let lock = store.lock()?;
    ingest_inbox(ctx, &p, &store, &lock, None)
}

/// Opens (creating if needed) the pipeline's store.
pub(crate) fn open_store(p: &Pipeline) -> Result<Store> {
    Store::open(&p.store.path).with_context(|| format!("opening store {}", p.store.path.display()))
}

/// Ingests `fresh` (a batch `run` has just extracted, in memory), then every
/// batch of the inbox, deleting each file once it is safely in the store (the
/// store is then the only copy, under its retention limit), and drops months
/// that have left the retention period.
pub(crate) fn ingest_inbox(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    lock: &StoreLock,
    fresh: Option<Fresh>,
) -> Result<()> {
    let transfer = load_key(ctx, &p.keys.transfer, p.keys.create_if_missing, "transfer")?;
    let oldest_kept = ctx.oldest_kept(p)?;
    // Retention first: a bad batch below must not keep expired loans alive.
    prune(ctx, p, store, lock, oldest_kept)?;
    let had_fresh = fresh.is_some();
    if let Some(Fresh { meta, loans }) = fresh {
        // Extracted by this very process: nothing to read or decrypt.
        ingest_one(ctx, p, store, lock, &meta, &loans, "the extracted batch")?;
    }
    let batches = batch::list_batches(p.transfer.inbox())?;
    if batches.is_empty() && !had_fresh {
        ctx.say(format!("no batches in {}", p.transfer.inbox().display()));
    }
    for path in batches {
        let sealed =
            std::fs::read(&path).with_context(|| format!("reading batch {}", path.display()))?;
        let (meta, loans) = batch::open(&sealed, &transfer)
            .with_context(|| format!("opening batch {}", path.display()))?;
        drop(sealed);
        let what = format!("batch {}", path.display());
        ingest_one(ctx, p, store, lock, &meta, &loans, &what)?;
        std::fs::remove_file(&path)
            .with_context(|| format!("removing ingested batch {}", path.display()))?;
    }
    Ok(())
}

/// Ingests one batch's loans and starts the four-week clock of its link
/// record; `what` names the batch in errors.
fn ingest_one(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    lock: &StoreLock,
    meta: &batch::BatchMeta,
    loans: &loans::Loans,
    what: &str,
) -> Result<()> {
    let oldest_kept = ctx.oldest_kept(p)?;
    if meta.library != p.library.id || meta.purpose != p.library.purpose {
        bail!(
            "{what} belongs to library {:?} purpose {:?}, but this pipeline is library {:?} purpose {:?}",
            meta.library,
            meta.purpose,
            p.library.id,
            p.library.purpose
        );
    }
    let record = BatchRecord {
        id: meta.id.to_string(),
        pseudonym_key: meta.pseudonym_key.to_string(),
        rows: meta.rows,
    };
    let outcome = ctx.stage("ingest", || {
        store
            .ingest(lock, &record, loans, oldest_kept)
            .with_context(|| format!("ingesting {what}"))
    })?;
    match outcome {
        IngestOutcome::Ingested {
            rows,
            months,
            expired_rows,
        } => ctx.say(format!(
            "ingested batch {}: {rows} loans in {} months{}",
            meta.id,
            months.len(),
            if expired_rows > 0 {
                format!(", {expired_rows} loans older than the retention limit dropped")
            } else {
                String::new()
            }
        )),
        IngestOutcome::AlreadyIngested => ctx.say(format!(
            "batch {} was already ingested: nothing changed",
            meta.id
        )),
        _ => {}
    }
    // The store holds the batch now: start the circulation system's clock.
    crate::links::record_ingested(p.transfer.inbox(), &meta.id.to_string(), ctx.today)
}

fn prune(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    lock: &StoreLock,
    oldest_kept: loans::LoanMonth,
) -> Result<()> {
    let removed = store.prune(lock, oldest_kept)?;
    if removed > 0 {
        ctx.say(format!(
            "deleted {removed} loans from months before {oldest_kept} (retention {} months)",
            p.store.retention_months
        ));
    }
    Ok(())
}
