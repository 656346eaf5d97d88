//! `alsoborrowed ingest`: sealed batches in the inbox -> store.

use std::path::Path;

use anyhow::{Context as _, Result};
use pipeline::Pipeline;
use rayon::prelude::*;
use store::{BatchRecord, IngestOutcome, Store, StoreError, StoreLock};

use crate::PipelineArgs;
use crate::commands::stages::{self, Fresh, load_key, open_store};
use crate::context::{Context, QuarantinedBatches, load_pipeline};
use crate::runlog::Side;

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let store = open_store(&p)?;
    let lock = store.lock()?;
    ingest_inbox(ctx, &p, &store, &lock, None)?.into_result()
}

/// What an ingest run left for the operator.
#[must_use]
pub(crate) struct IngestSummary {
    /// Batch files moved to the quarantine directory by this run.
    pub quarantined: usize,
    /// The quarantine directory.
    pub dir: std::path::PathBuf,
    /// The rows of the in-memory batch that the store wrote, for
    /// [`store::Store::scan_reusing`] (empty without one).
    pub written: store::Written,
}

impl IngestSummary {
    /// An error (exit code 5) if any batch was quarantined.
    pub fn into_result(self) -> Result<()> {
        if self.quarantined > 0 {
            return Err(QuarantinedBatches {
                count: self.quarantined,
                dir: self.dir.display().to_string(),
            }
            .into());
        }
        Ok(())
    }
}

/// Why one batch was not ingested: its own fault (it is quarantined and the
/// others go on) or the store's (ingest stops).
enum Failure {
    Batch(String),
    Fatal(anyhow::Error),
}

/// Ingests `fresh` (a batch `run` has just extracted, in memory), then every
/// batch of the inbox, deleting each file once it is safely in the store (the
/// store is then the only copy, under its retention limit), and drops months
/// that have left the retention period. A batch file that cannot be opened
/// or does not belong to this pipeline is moved to `<inbox>/quarantine/`
/// with the reason, and the others are ingested all the same.
pub(crate) fn ingest_inbox(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    lock: &StoreLock,
    fresh: Option<&mut Fresh>,
) -> Result<IngestSummary> {
    let transfer = load_key(ctx, &p.keys.transfer, p.keys.create_if_missing, "transfer")?;
    let oldest_kept = ctx.oldest_kept(p)?;
    // Retention first: a bad batch below must not keep expired loans alive.
    let pruned = std::time::Instant::now();
    prune(ctx, p, store, lock, oldest_kept)?;
    ctx.log_stage(Side::Mining, "prune", pruned, &[], None);
    let started = std::time::Instant::now();
    let had_fresh = fresh.is_some();
    let mut written = store::Written::default();
    if let Some(Fresh {
        meta,
        loans,
        prepared,
    }) = fresh
    {
        // Extracted by this very process: nothing to read or decrypt.
        let batch = Batch {
            meta,
            loans,
            prepared: prepared.take(),
        };
        match ingest_one(ctx, p, store, lock, batch, "the extracted batch", None) {
            Ok(w) => written = w,
            Err(Failure::Batch(reason)) => anyhow::bail!("the extracted batch: {reason}"),
            Err(Failure::Fatal(e)) => return Err(e),
        }
    }
    let inbox = p.transfer.inbox();
    let batches = batch::list_batches(inbox)?;
    if batches.is_empty() && !had_fresh {
        ctx.say(format!("no batches in {}", inbox.display()));
    }
    let mut summary = IngestSummary {
        quarantined: 0,
        dir: stages::quarantine_dir(p),
        written,
    };
    let total = batches.len();
    for (i, path) in batches.into_iter().enumerate() {
        // For the spinner: a count, never the file's name (it holds the batch id).
        let progress = format!("batch {} of {total}", i + 1);
        match ingest_file(ctx, p, store, lock, &transfer, &path, &progress) {
            Ok(_) => std::fs::remove_file(&path)
                .with_context(|| format!("removing ingested batch {}", path.display()))?,
            Err(Failure::Batch(reason)) => {
                let dest = stages::quarantine(p, &path, &reason, ctx.today)?;
                // Always shown, even with --quiet: the exit code says it too.
                eprintln!(
                    "warning: batch {} not ingested: {reason}; moved to {}",
                    path.display(),
                    dest.display()
                );
                summary.quarantined += 1;
            }
            Err(Failure::Fatal(e)) => return Err(e),
        }
    }
    let quarantined = summary.quarantined as u64;
    ctx.log_stage(
        Side::Mining,
        "ingest",
        started,
        &[("batches_quarantined", quarantined)],
        None,
    );
    Ok(summary)
}

/// Opens and ingests one batch file.
fn ingest_file(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    lock: &StoreLock,
    transfer: &keys::SecretKey,
    path: &Path,
    progress: &str,
) -> Result<store::Written, Failure> {
    // Reads the header first: a junk file is refused by its length before
    // its body is read; a valid one is read once and decrypted in place.
    let (meta, loans) =
        batch::open_file(path, transfer).map_err(|e| Failure::Batch(e.to_string()))?;
    let what = format!("batch {}", path.display());
    let batch = Batch {
        meta: &meta,
        loans: &loans,
        prepared: None,
    };
    ingest_one(ctx, p, store, lock, batch, &what, Some(progress))
}

/// One batch to ingest: its metadata, its loans and, for a batch this
/// process extracted, its ingest's first part, made while it was named.
struct Batch<'a> {
    meta: &'a batch::BatchMeta,
    loans: &'a loans::Loans,
    prepared: Option<store::Prepared>,
}

/// Ingests one batch's loans and starts the four-week clock of its link
/// record; `what` names the batch in errors. Returns the rows written.
fn ingest_one(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    lock: &StoreLock,
    batch: Batch<'_>,
    what: &str,
    progress: Option<&str>,
) -> Result<store::Written, Failure> {
    let Batch {
        meta,
        loans,
        prepared,
    } = batch;
    let fatal = Failure::Fatal;
    let oldest_kept = ctx.oldest_kept(p).map_err(fatal)?;
    if meta.library != p.library.id || meta.purpose != p.library.purpose {
        return Err(Failure::Batch(format!(
            "it belongs to library {:?} purpose {:?}, but this pipeline is library {:?} purpose {:?}",
            meta.library, meta.purpose, p.library.id, p.library.purpose
        )));
    }
    // Loans after today's month mean a wrong clock or --today here or on
    // the extractor: storing them would put loans in months that have not
    // happened (and keep them past their retention).
    let this_month = ctx.this_month().map_err(fatal)?;
    // On the pool: one thread's scan of every row was on the run's path.
    if let Some(&newest) = loans.months.par_iter().max()
        && newest > this_month
    {
        return Err(Failure::Batch(format!(
            "it holds loans of {newest}, after today ({}); check the date here and on the extractor's host, then move the batch back into the inbox",
            ctx.today
        )));
    }
    let record = BatchRecord {
        id: meta.id.to_string(),
        pseudonym_key: meta.pseudonym_key.to_string(),
        rows: meta.rows,
    };
    let outcome = ctx.stage_with("ingest", progress, || {
        Ok(match prepared {
            Some(prepared) => store.ingest_prepared(lock, &record, loans, prepared),
            None => store.ingest_written(lock, &record, loans, oldest_kept),
        })
    });
    let (outcome, written) = match outcome.map_err(fatal)? {
        Ok(o) => o,
        // The batch itself does not fit the store's rules.
        Err(e @ (StoreError::InvalidBatch { .. } | StoreError::InvalidLoans { .. })) => {
            return Err(Failure::Batch(e.to_string()));
        }
        Err(e) => {
            return Err(fatal(
                anyhow::Error::new(e).context(format!("ingesting {what}")),
            ));
        }
    };
    match outcome {
        IngestOutcome::Ingested {
            rows,
            months,
            expired_rows,
            repeated_rows,
        } => {
            let mut line = format!(
                "ingested batch {}: {rows} loans in {} months",
                meta.id,
                months.len()
            );
            if repeated_rows > 0 {
                line += &format!(
                    ", {repeated_rows} loans the store already held (overlapping export) dropped"
                );
            }
            if expired_rows > 0 {
                line += &format!(", {expired_rows} loans older than the retention limit dropped");
            }
            ctx.say(line);
            ctx.log.count("batches_ingested", 1);
            ctx.log.count("loans", rows);
            ctx.log.count("months", months.len() as u64);
            ctx.log.count("repeated_dropped", repeated_rows);
            ctx.log.count("expired_dropped", expired_rows);
        }
        IngestOutcome::AlreadyIngested => {
            ctx.log.count("batches_already_held", 1);
            ctx.say(format!(
                "batch {} was already ingested: nothing changed",
                meta.id
            ))
        }
        _ => {}
    }
    // The store holds the batch now: start the circulation system's clock.
    crate::links::record_ingested(p.transfer.inbox(), &meta.id.to_string(), ctx.today)
        .map_err(fatal)?;
    Ok(written)
}

fn prune(
    ctx: &Context,
    p: &Pipeline,
    store: &Store,
    lock: &StoreLock,
    oldest_kept: loans::LoanMonth,
) -> Result<()> {
    let removed = store
        .prune(lock, oldest_kept)
        .context("deleting loans past the retention limit")?;
    ctx.log.count("loans_deleted", removed);
    if removed > 0 {
        ctx.say(format!(
            "deleted {removed} loans from months before {oldest_kept} (retention {} months)",
            p.store.retention_months
        ));
    }
    Ok(())
}
