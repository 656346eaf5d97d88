//! `alsoborrowed status`: counts and dates only; never a pseudonym or a title
//! list (no command looks up an individual).

use anyhow::Result;

use crate::PipelineArgs;
use crate::commands::stages::{self, open_store};
use crate::context::{Context, load_pipeline};

pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    links(ctx, &p)?;
    quarantine(&p)?;
    let store = open_store(&p)?;
    let s = store.status()?;
    println!("store: {}", store.root().display());
    println!("loans: {}", s.rows);
    println!("distinct pseudonyms: {}", s.distinct_pseudonyms);
    println!("batches ingested: {}", s.batches);
    println!(
        "repeated loans dropped at ingest (already held from an overlapping export): {}",
        s.repeated_rows
    );
    println!(
        "pseudonym key fingerprints: {}",
        if s.pseudonym_keys.is_empty() {
            "none".to_owned()
        } else {
            s.pseudonym_keys.join(", ")
        }
    );
    match (s.months.first(), s.months.last()) {
        (Some((first, _)), Some((last, _))) => {
            println!("months held: {} ({first} .. {last})", s.months.len());
            let expires = first.plus(p.store.retention_months as i32)?;
            println!(
                "retention: {} months; the oldest month, {first}, is deleted from {expires}-01 on",
                p.store.retention_months
            );
        }
        _ => println!("months held: 0"),
    }
    let (wf, wl) = ctx.window(&p)?;
    println!("scoring window: {wf} .. {wl}");
    published(&p)
}

/// The live release, and the last refusal of the privacy check.
fn published(p: &pipeline::Pipeline) -> Result<()> {
    let current = p.export.path.join(alsoborrowed_feed::CURRENT_LINK);
    match std::fs::read_link(&current) {
        Ok(target) => println!(
            "published: {} (serve {})",
            target.display(),
            p.export.path.join(publish::SERVED_LINK).display()
        ),
        Err(_) => println!("published: nothing yet"),
    }
    match crate::refusals::last(&p.export.path)? {
        Some(r) => {
            println!("last refusal: {}: {}", r.day, r.message);
            for f in &r.findings {
                println!("  {f}");
            }
        }
        None => println!("last refusal: none"),
    }
    Ok(())
}

/// The four-week rule: per batch, the newest loan day transferred and the
/// day by which the circulation system must delete borrower-loan links.
fn links(ctx: &Context, p: &pipeline::Pipeline) -> Result<()> {
    let days = p.transfer.delete_links_after_days;
    let (duties, skipped) = crate::links::duties(p)?;
    println!(
        "borrower-loan links: {} batches recorded; delete within {days} days of ingest",
        duties.len()
    );
    for d in &duties {
        let day = |d: Option<jiff::civil::Date>| d.map_or("unknown".to_owned(), |d| d.to_string());
        let due = match d.delete_by(days) {
            Some(by) if ctx.today > by => format!("delete links by {by}: OVERDUE"),
            Some(by) => format!("delete links by {by}"),
            None => "not yet acknowledged as ingested".to_owned(),
        };
        println!(
            "  batch {}: loans up to {}, sealed {}, ingested {}; {due}",
            d.batch,
            day(d.newest_loan_day),
            day(d.sealed_on),
            day(d.ingested_on),
        );
    }
    for (path, why) in &skipped {
        println!("  ignored {}: {why}", path.display());
    }
    Ok(())
}

/// Batches that ingest moved aside, with the reasons.
fn quarantine(p: &pipeline::Pipeline) -> Result<()> {
    let q = stages::quarantined(p)?;
    if q.is_empty() {
        println!("quarantined batches: none");
        return Ok(());
    }
    println!(
        "quarantined batches: {} in {} (fix the cause, then move a batch back into the inbox, or delete it)",
        q.len(),
        stages::quarantine_dir(p).display()
    );
    for b in &q {
        let name = b.path.file_name().unwrap_or_default().to_string_lossy();
        println!("  {name}: {}", b.reason);
    }
    Ok(())
}
