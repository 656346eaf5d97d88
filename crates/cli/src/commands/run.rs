//! `alsoborrowed run`: extract, ingest and export in one locked go, for cron.

use anyhow::Result;

use crate::PipelineArgs;
use crate::commands::{export, extract, ingest, stages};
use crate::context::{Context, load_pipeline};
use crate::lock::{PRIVATE_DIR, RunLock, SERVED_DIR};

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    // Every lock first, so a second run exits before doing anything.
    let _outbox = RunLock::acquire(&p.transfer.outbox, "the extractor's outbox", PRIVATE_DIR)?;
    let _export = RunLock::acquire(&p.export.path, "the export directory", SERVED_DIR)?;
    let store = stages::open_store(&p)?;
    let lock = store.lock()?;
    // The borrower ids extract sees go straight into the leak check's set,
    // so the loans file is read once.
    let mut ids = publish::Forbidden::new();
    // On one host the extracted loans go to ingest in memory, unsealed.
    let mut fresh =
        extract::extract_to_outbox(ctx, &p, args.input.as_deref(), Some(&mut ids), true)?;
    // A quarantined batch does not hold back the others or the export; the
    // exit code (5) reports it once the export is done.
    let ingested = ingest::ingest_inbox(ctx, &p, &store, &lock, fresh.as_mut())?;
    // The window's rows this run has just written are taken from memory,
    // not decoded from the files again (the same loans, in the same order).
    ctx.refuse_future_today("export would publish a window of months that have not happened")?;
    let window = export::read_window(
        ctx,
        &p,
        &store,
        fresh.as_ref().map(|f| (&f.loans, &ingested.written)),
    )?;
    drop(fresh);
    export::export_release(
        ctx,
        &p,
        args.input.as_deref(),
        Some(ids),
        &store,
        Some(window),
    )?;
    ingested.into_result()
}
