//! `alsoborrowed ingest`: sealed batches in the inbox -> store.

use anyhow::{Context as _, Result, bail};
use pipeline::Pipeline;
use store::{BatchRecord, IngestOutcome, Store, StoreLock};

use crate::PipelineArgs;
use crate::commands::extract::{Sealed, load_key};
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

/// Ingests every batch of the inbox, deleting each once it is safely in the
/// store (the store is then the only copy, under its retention limit), and
/// drops months that have left the retention period.
pub(crate) fn ingest_inbox(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    lock: &StoreLock,
    mut fresh: Option<Sealed>,
) -> Result<()> {
    let transfer = load_key(ctx, &p.keys.transfer, p.keys.create_if_missing, "transfer")?;
    let oldest_kept = ctx.oldest_kept(p)?;
    // Retention first: a bad batch below must not keep expired loans alive.
    prune(ctx, p, store, lock, oldest_kept)?;
    let batches = batch::list_batches(p.transfer.inbox())?;
    if batches.is_empty() {
        ctx.say(format!("no batches in {}", p.transfer.inbox().display()));
    }
    for path in batches {
        let (meta, loans) = match fresh.take_if(|f| f.path == path) {
            // Sealed by this very process from these loans: reading the file
            // back would only decrypt what is already here.
            Some(Sealed { meta, loans, .. }) => (meta, loans),
            None => {
                let sealed = std::fs::read(&path)
                    .with_context(|| format!("reading batch {}", path.display()))?;
                batch::open(&sealed, &transfer)
                    .with_context(|| format!("opening batch {}", path.display()))?
            }
        };
        if meta.library != p.library.id || meta.purpose != p.library.purpose {
            bail!(
                "batch {} belongs to library {:?} purpose {:?}, but this pipeline is library {:?} purpose {:?}",
                path.display(),
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
                .ingest(lock, &record, &loans, oldest_kept)
                .with_context(|| format!("ingesting batch {}", path.display()))
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
        crate::links::record_ingested(p.transfer.inbox(), &meta.id.to_string(), ctx.today)?;
        std::fs::remove_file(&path)
            .with_context(|| format!("removing ingested batch {}", path.display()))?;
    }
    Ok(())
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
