//! `alsoborrowed report`: one self-contained HTML file for the library's
//! data-protection officer: what the store holds and until when, the
//! four-week link deadlines, the keys' fingerprints and ages, the runs, what
//! each release published and withheld, and every refusal.
//!
//! Aggregates only: counts per month, per run and per release, dates,
//! fingerprints, file names and the error lines of refusals (which name
//! files, kinds and places, never a value). No pseudonym, borrower id, key
//! byte or title is read into it, so none can be written. The file has no
//! script, font, image or link to anywhere else (a strict
//! Content-Security-Policy says so to the browser too); its charts are
//! inline SVG drawn by plotters, each with its numbers in a table beside it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow};
use loans::LoanMonth;
use pipeline::Pipeline;
use plotters::prelude::*;

use crate::context::{Context, load_pipeline};
use crate::runlog::{self, Record};

/// Arguments of `alsoborrowed report`.
#[derive(clap::Args, Clone)]
pub(crate) struct ReportArgs {
    /// The pipeline file (TOML), e.g. pipelines/demo.toml.
    #[arg(long, short, value_name = "FILE")]
    pipeline: PathBuf,
    /// Where to write the report (mode 0600; replaced if it exists).
    #[arg(long, short, value_name = "FILE", default_value = "report.html")]
    out: PathBuf,
}

/// The Content-Security-Policy of the report: nothing may be loaded.
pub(crate) const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Runs shown in the history table, newest first.
const RUNS_SHOWN: usize = 200;

pub(crate) fn run(ctx: &Context, args: &ReportArgs) -> Result<()> {
    let p = load_pipeline(&args.pipeline)?;
    let facts = Facts::gather(ctx, &p)?;
    let html = render(ctx, &p, &args.pipeline, &facts)?;
    crate::commands::stages::write_private(&args.out, html.as_bytes())?;
    ctx.say(format!(
        "wrote {} (mode 0600): aggregates only; open it in a browser",
        args.out.display()
    ));
    Ok(())
}

/// A key file as the report shows it.
struct KeyFact {
    role: &'static str,
    path: PathBuf,
    /// Fingerprint and age in days, or why not.
    state: Result<(String, Option<i64>), String>,
}

/// A release directory on disk.
struct ReleaseOnDisk {
    name: String,
    live: bool,
    manifest: Option<publish::ReleaseManifest>,
    day: Option<jiff::civil::Date>,
}

/// Everything the report shows, gathered before any HTML is written.
struct Facts {
    store_exists: bool,
    months: Vec<store::MonthCounts>,
    batches: u64,
    store_keys: Vec<String>,
    duties: Vec<crate::links::LinkDuty>,
    skipped_links: usize,
    keys: Vec<KeyFact>,
    runs: Vec<Record>,
    bad_log_lines: usize,
    logs: Vec<(PathBuf, bool)>,
    releases: Vec<ReleaseOnDisk>,
    last_refusal: Option<crate::refusals::Refusal>,
    quarantined: Vec<crate::commands::stages::Quarantined>,
}

impl Facts {
    fn gather(_ctx: &Context, p: &Pipeline) -> Result<Facts> {
        let store_exists = p.store.path.join("manifest.json").is_file();
        let (months, batches, store_keys) = if store_exists {
            let store = crate::commands::stages::open_store(p)?;
            let status = store.status()?;
            (
                store
                    .month_counts()
                    .context("counting the store's months")?,
                status.batches,
                status.pseudonym_keys,
            )
        } else {
            (Vec::new(), 0, Vec::new())
        };
        let (duties, skipped) = crate::links::duties(p)?;
        let keys = vec![
            key_fact("pseudonym", &p.keys.pseudonym),
            key_fact("transfer", &p.keys.transfer),
        ];
        let mut runs = Vec::new();
        let mut bad_log_lines = 0;
        let mut logs = Vec::new();
        for path in [
            p.store.path.join(runlog::FILE),
            p.transfer.outbox.join(runlog::FILE),
        ] {
            let (records, bad) =
                runlog::read(&path).with_context(|| format!("reading {}", path.display()))?;
            logs.push((path, !records.is_empty() || bad > 0));
            runs.extend(records);
            bad_log_lines += bad;
        }
        runs.sort_by(|a, b| a.at.cmp(&b.at));
        Ok(Facts {
            store_exists,
            months,
            batches,
            store_keys,
            duties,
            skipped_links: skipped.len(),
            keys,
            runs,
            bad_log_lines,
            logs,
            releases: releases_on_disk(&p.export.path),
            last_refusal: crate::refusals::last(&p.export.path).unwrap_or(None),
            quarantined: crate::commands::stages::quarantined(p)?,
        })
    }

    /// Export records that carry release statistics, oldest first.
    fn exports(&self) -> Vec<(&Record, &runlog::ReleaseStats)> {
        self.runs
            .iter()
            .filter_map(|r| r.release.as_ref().map(|s| (r, s)))
            .collect()
    }
}

fn key_fact(role: &'static str, path: &Path) -> KeyFact {
    let state = match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("not on this host".to_owned()),
        Err(e) => Err(format!("cannot be read ({})", e.kind())),
        Ok(meta) => match keys::load_key_file(path) {
            Ok(key) => {
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|t| std::time::SystemTime::now().duration_since(t).ok())
                    .map(|d| (d.as_secs() / 86_400) as i64);
                Ok((key.fingerprint().to_string(), age))
            }
            Err(e) => Err(format!("not a usable key file ({e})")),
        },
    };
    KeyFact {
        role,
        path: path.to_path_buf(),
        state,
    }
}

fn releases_on_disk(export: &Path) -> Vec<ReleaseOnDisk> {
    let live = std::fs::read_link(export.join(alsoborrowed_feed::CURRENT_LINK))
        .ok()
        .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
    let Ok(entries) = std::fs::read_dir(export.join(publish::RELEASES_DIR)) else {
        return Vec::new();
    };
    let mut out: Vec<ReleaseOnDisk> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path().join(publish::RELEASE_MANIFEST);
            let manifest = crate::commands::stages::read_small_text(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            let day = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| jiff::Timestamp::try_from(t).ok())
                .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).date());
            ReleaseOnDisk {
                live: live.as_deref() == Some(name.as_str()),
                name,
                manifest,
                day,
            }
        })
        .collect();
    out.sort_by(|a, b| (a.day, &a.name).cmp(&(b.day, &b.name)));
    out
}

/// HTML-escapes text for an element or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The first 12 characters of a release or batch name, enough to tell them apart.
fn short(name: &str) -> &str {
    name.get(..12).unwrap_or(name)
}

/// The first day of the month on which `m`'s loans are deleted.
fn deleted_from(m: LoanMonth, retention: u32) -> Result<String> {
    Ok(format!("{}-01", m.plus(retention as i32)?))
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a;line-height:1.45}\
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ccc}\
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}\
td.n{text-align:right;font-variant-numeric:tabular-nums}caption{text-align:left;font-weight:600;padding:.3rem 0}\
.bad{color:#a00000;font-weight:600}.ok{color:#116611}figure{margin:1rem 0}figcaption{font-size:.9rem;color:#444}\
.glance li{margin:.2rem 0}details{margin:.5rem 0}svg{max-width:100%;height:auto}";

fn render(ctx: &Context, p: &Pipeline, file: &Path, f: &Facts) -> Result<String> {
    let mut h = String::new();
    let title = format!(
        "alsoborrowed: what is held and published ({}, {})",
        p.library.id, p.library.purpose
    );
    write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n<h1>{}</h1>\n",
        esc(&title),
        esc(&title)
    )?;
    writeln!(
        h,
        "<p>Report of {} for the data-protection officer. It holds aggregates only: counts per \
         month, per run and per release, dates, key fingerprints and the reasons of refusals. \
         It names no borrower, pseudonym, key or title, and no command of alsoborrowed looks up \
         an individual. Pipeline file: <code>{}</code>.</p>",
        ctx.today,
        esc(&file.display().to_string())
    )?;
    glance(&mut h, ctx, p, f)?;
    store_section(&mut h, ctx, p, f)?;
    links_section(&mut h, ctx, p, f)?;
    keys_section(&mut h, f)?;
    releases_section(&mut h, f)?;
    refusals_section(&mut h, f)?;
    runs_section(&mut h, f)?;
    h.push_str("</main>\n</body>\n</html>\n");
    Ok(h)
}

fn glance(h: &mut String, ctx: &Context, p: &Pipeline, f: &Facts) -> Result<()> {
    h.push_str("<h2 id=\"glance\">At a glance</h2>\n<ul class=\"glance\">\n");
    let retention = p.store.retention_months;
    match (f.months.first(), f.months.last()) {
        (Some(first), Some(last)) => writeln!(
            h,
            "<li>The store holds {} loans in {} months, {} to {}. Retention is {retention} \
             months: the oldest month, {}, is deleted from {} on.</li>",
            f.months.iter().map(|m| m.loans).sum::<u64>(),
            f.months.len(),
            first.month,
            last.month,
            first.month,
            deleted_from(first.month, retention)?
        )?,
        _ => h.push_str("<li>The store holds no loans.</li>\n"),
    }
    let days = p.transfer.delete_links_after_days;
    let overdue = f
        .duties
        .iter()
        .filter(|d| d.delete_by(days).is_some_and(|by| ctx.today > by))
        .count();
    if overdue > 0 {
        writeln!(
            h,
            "<li class=\"bad\">{overdue} batch(es) are past their {days}-day deadline for \
             deleting borrower-loan links in the circulation system.</li>"
        )?;
    } else {
        writeln!(
            h,
            "<li class=\"ok\">No borrower-loan link deadline ({days} days after ingest) is \
             overdue ({} batch(es) recorded).</li>",
            f.duties.len()
        )?;
    }
    let refusals = f.runs.iter().filter(|r| r.stage == "refusal").count();
    let releases = f.exports().len();
    writeln!(
        h,
        "<li>{} runs logged; {releases} exports with statistics; {refusals} refusal(s) of the \
         privacy check; {} batch(es) in quarantine now.</li>",
        f.runs.iter().filter(|r| r.stage == "end").count(),
        f.quarantined.len()
    )?;
    match f.releases.iter().find(|r| r.live) {
        Some(r) => {
            let (titles, pairs) = r.manifest.as_ref().map_or((0, 0), |m| (m.titles, m.pairs));
            writeln!(
                h,
                "<li>Live release {} publishes lists for {titles} titles ({pairs} related-title \
                 entries).</li>",
                esc(short(&r.name))
            )?;
        }
        None => h.push_str("<li>Nothing is published.</li>\n"),
    }
    h.push_str("</ul>\n");
    Ok(())
}

fn store_section(h: &mut String, ctx: &Context, p: &Pipeline, f: &Facts) -> Result<()> {
    let retention = p.store.retention_months;
    writeln!(
        h,
        "<h2 id=\"store\">What the store holds</h2>\n<p>Store <code>{}</code>: pseudonymous \
         loans (pseudonym, title, month), {} batch(es) ingested so far. Loans are kept for \
         {retention} months including the current one; each month's loans are deleted on the \
         first day shown below (by the next ingest or run on or after that day).</p>",
        esc(&p.store.path.display().to_string()),
        f.batches
    )?;
    if !f.store_exists {
        h.push_str("<p>There is no store on this host.</p>\n");
        return Ok(());
    }
    let keys = if f.store_keys.is_empty() {
        "none".to_owned()
    } else {
        f.store_keys.join(", ")
    };
    writeln!(
        h,
        "<p>Pseudonym key fingerprints of the loans held: {}.</p>",
        esc(&keys)
    )?;
    if f.months.is_empty() {
        h.push_str("<p>The store holds no loans.</p>\n");
        return Ok(());
    }
    let labels: Vec<String> = f.months.iter().map(|m| m.month.to_string()).collect();
    let loans: Vec<u64> = f.months.iter().map(|m| m.loans).collect();
    let borrowers: Vec<u64> = f.months.iter().map(|m| m.borrowers).collect();
    let desc = format!(
        "Loans and distinct borrowers per month, {} to {}; the numbers are in the table below.",
        labels[0],
        labels[labels.len() - 1]
    );
    figure(
        h,
        "Loans and distinct borrowers per month",
        &desc,
        &two_lines(&labels, &loans, &borrowers, ("loans", "borrowers"))?,
    )?;
    h.push_str(
        "<table><caption>Per month held</caption><thead><tr><th scope=\"col\">Month</th>\
         <th scope=\"col\">Loans</th><th scope=\"col\">Distinct borrowers</th>\
         <th scope=\"col\">Deleted from</th></tr></thead><tbody>\n",
    );
    for m in &f.months {
        writeln!(
            h,
            "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            m.month,
            m.loans,
            m.borrowers,
            deleted_from(m.month, retention)?
        )?;
    }
    h.push_str("</tbody></table>\n");
    let desc = format!(
        "Retention timeline: each month held, from the month itself to the day its loans are \
         deleted ({retention} months later), and today ({}) as a red line; the dates are in          the table above.",
        ctx.today
    );
    let today = LoanMonth::new(i32::from(ctx.today.year()), ctx.today.month() as u32)?;
    figure(
        h,
        "Retention timeline",
        &desc,
        &retention_chart(&f.months, retention, today)?,
    )?;
    Ok(())
}

fn links_section(h: &mut String, ctx: &Context, p: &Pipeline, f: &Facts) -> Result<()> {
    let days = p.transfer.delete_links_after_days;
    writeln!(
        h,
        "<h2 id=\"links\">Borrower-loan links: the {days}-day rule</h2>\n<p>Once a batch is \
         safely in the store, the circulation system must delete the links between borrowers \
         and the loans it transferred within {days} days (Danish guidance: four weeks). Each \
         batch below has its deadline; the records hold no id.</p>"
    )?;
    if f.duties.is_empty() {
        h.push_str("<p>No batch recorded.</p>\n");
    } else {
        h.push_str(
            "<table><caption>Link deadlines per batch</caption><thead><tr>\
             <th scope=\"col\">Batch</th><th scope=\"col\">Loans up to</th>\
             <th scope=\"col\">Sealed</th><th scope=\"col\">Ingested</th>\
             <th scope=\"col\">Delete links by</th><th scope=\"col\">State</th></tr></thead><tbody>\n",
        );
        let day = |d: Option<jiff::civil::Date>| d.map_or("unknown".to_owned(), |d| d.to_string());
        for d in &f.duties {
            let (by, state) = match d.delete_by(days) {
                Some(by) if ctx.today > by => {
                    (by.to_string(), "<span class=\"bad\">OVERDUE</span>")
                }
                Some(by) => (by.to_string(), "due"),
                None => ("-".to_owned(), "not yet ingested"),
            };
            writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{by}</td><td>{state}</td></tr>",
                esc(short(&d.batch)),
                day(d.newest_loan_day),
                day(d.sealed_on),
                day(d.ingested_on)
            )?;
        }
        h.push_str("</tbody></table>\n");
    }
    if f.skipped_links > 0 {
        writeln!(
            h,
            "<p class=\"bad\">{} link record file(s) could not be read; <code>alsoborrowed \
             status</code> names them.</p>",
            f.skipped_links
        )?;
    }
    Ok(())
}

fn keys_section(h: &mut String, f: &Facts) -> Result<()> {
    h.push_str(
        "<h2 id=\"keys\">Keys</h2>\n<p>Fingerprints identify a key without revealing it (the \
         first 8 bytes of a domain-separated SHA-256 hash, as <code>alsoborrowed key \
         fingerprint</code> prints). The pseudonym key belongs on the extractor's host only; \
         the mining host holds the transfer key. Age is the time since the key file last \
         changed.</p>\n<table><caption>Key files of the pipeline</caption><thead><tr>\
         <th scope=\"col\">Key</th><th scope=\"col\">File</th><th scope=\"col\">Fingerprint</th>\
         <th scope=\"col\">Age (days)</th></tr></thead><tbody>\n",
    );
    for k in &f.keys {
        let (fp, age) = match &k.state {
            Ok((fp, age)) => (
                format!("<code>{}</code>", esc(fp)),
                age.map_or("unknown".to_owned(), |a| a.to_string()),
            ),
            Err(why) => (esc(why), "-".to_owned()),
        };
        writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td>{fp}</td><td class=\"n\">{age}</td></tr>",
            k.role,
            esc(&k.path.display().to_string())
        )?;
    }
    h.push_str("</tbody></table>\n");
    Ok(())
}

fn releases_section(h: &mut String, f: &Facts) -> Result<()> {
    h.push_str(
        "<h2 id=\"releases\">What was published</h2>\n<p>Each export publishes, for every \
         title with related titles, a list of titles that at least k distinct borrowers \
         borrowed together with it, counting at most the cap's number of titles per borrower \
         (the contribution bound). What k and the cap held back is counted below.</p>\n",
    );
    let exports = f.exports();
    if exports.is_empty() {
        h.push_str("<p>The run log records no export yet.</p>\n");
    } else {
        let labels: Vec<String> = exports.iter().map(|(r, _)| r.day.clone()).collect();
        let titles: Vec<u64> = exports.iter().map(|(_, s)| s.titles).collect();
        figure(
            h,
            "Titles with a list, per export",
            "Titles published with a list at each export, oldest first; the numbers are in \
             the table below.",
            &bars(&labels, &titles, "titles")?,
        )?;
        h.push_str(
            "<table><caption>Exports (from the run log)</caption><thead><tr>\
             <th scope=\"col\">Day</th><th scope=\"col\">Outcome</th><th scope=\"col\">Release</th>\
             <th scope=\"col\">Window</th><th scope=\"col\">k</th><th scope=\"col\">Cap</th>\
             <th scope=\"col\">Borrowers</th><th scope=\"col\">Titles with a list</th>\
             <th scope=\"col\">Entries</th><th scope=\"col\">Pairs below k</th>\
             <th scope=\"col\">Titles below k</th><th scope=\"col\">Borrowers capped</th>\
             <th scope=\"col\">Titles cut by the cap</th></tr></thead><tbody>\n",
        );
        for (r, s) in exports.iter().rev() {
            writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}..{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&r.day),
                esc(&s.outcome),
                esc(short(&s.release)),
                esc(&s.window.0),
                esc(&s.window.1),
                s.min_support,
                s.max_titles_per_borrower,
                s.borrowers,
                s.titles,
                s.pairs,
                s.pairs_below_k,
                s.titles_below_k,
                s.capped_borrowers,
                s.capped_titles
            )?;
        }
        h.push_str("</tbody></table>\n");
        if let Some((r, s)) = exports.last() {
            let labels: Vec<String> = s.list_lengths.keys().map(u32::to_string).collect();
            let values: Vec<u64> = s.list_lengths.values().copied().collect();
            if !values.is_empty() {
                let desc = format!(
                    "Titles by the length of their list in the export of {}; the numbers are in \
                     the table below.",
                    r.day
                );
                figure(
                    h,
                    "List lengths of the latest export",
                    &desc,
                    &bars(&labels, &values, "titles")?,
                )?;
                h.push_str(
                    "<table><caption>Titles by list length (latest export)</caption><thead><tr>\
                     <th scope=\"col\">Related titles in the list</th><th scope=\"col\">Titles</th>\
                     </tr></thead><tbody>\n",
                );
                for (len, n) in &s.list_lengths {
                    writeln!(
                        h,
                        "<tr><td class=\"n\">{len}</td><td class=\"n\">{n}</td></tr>"
                    )?;
                }
                h.push_str("</tbody></table>\n");
            }
        }
    }
    if !f.releases.is_empty() {
        h.push_str(
            "<table><caption>Releases on disk</caption><thead><tr><th scope=\"col\">Release</th>\
             <th scope=\"col\">Written</th><th scope=\"col\">Window</th><th scope=\"col\">k</th>\
             <th scope=\"col\">Titles</th><th scope=\"col\">Entries</th><th scope=\"col\">Live</th>\
             </tr></thead><tbody>\n",
        );
        for r in f.releases.iter().rev() {
            let (window, k, titles, pairs) = match &r.manifest {
                Some(m) => (
                    format!("{}..{}", m.window_first, m.window_last),
                    m.min_support.to_string(),
                    m.titles.to_string(),
                    m.pairs.to_string(),
                ),
                None => (
                    "unreadable release.json".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ),
            };
            writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                esc(short(&r.name)),
                r.day.map_or("unknown".to_owned(), |d| d.to_string()),
                esc(&window),
                esc(&k),
                esc(&titles),
                esc(&pairs),
                if r.live { "live" } else { "" }
            )?;
        }
        h.push_str("</tbody></table>\n");
    }
    Ok(())
}

fn refusals_section(h: &mut String, f: &Facts) -> Result<()> {
    h.push_str(
        "<h2 id=\"refusals\">Refusals</h2>\n<p>Refusals are runs that published nothing \
         because a check failed (the privacy check of the output, an empty or mixed-key \
         window, a date after today); quarantines are batches that could not be \
         ingested. Reasons name files, kinds and places, never a value.</p>\n",
    );
    let refused: Vec<&Record> = f
        .runs
        .iter()
        .filter(|r| r.stage == "refusal" || r.stage == "quarantine")
        .collect();
    if refused.is_empty() {
        h.push_str("<p>The run log records no refusal.</p>\n");
    } else {
        h.push_str(
            "<table><caption>Refusals and quarantines (from the run log)</caption><thead><tr>\
             <th scope=\"col\">Day</th><th scope=\"col\">Command</th><th scope=\"col\">Kind</th>\
             <th scope=\"col\">Reason</th></tr></thead><tbody>\n",
        );
        for r in refused.iter().rev() {
            writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&r.day),
                esc(&r.command),
                esc(&r.stage),
                esc(r.reason.as_deref().unwrap_or(""))
            )?;
        }
        h.push_str("</tbody></table>\n");
    }
    if let Some(r) = &f.last_refusal {
        writeln!(
            h,
            "<p>Last refusal of the privacy check recorded beside the export ({}): {}</p>",
            esc(&r.day),
            esc(&r.message)
        )?;
        if !r.findings.is_empty() {
            h.push_str("<ul>\n");
            for x in &r.findings {
                writeln!(h, "<li>{}</li>", esc(x))?;
            }
            h.push_str("</ul>\n");
        }
    }
    if f.quarantined.is_empty() {
        h.push_str("<p>No batch is in quarantine.</p>\n");
    } else {
        h.push_str(
            "<table><caption>Batches in quarantine now</caption><thead><tr>\
             <th scope=\"col\">File</th><th scope=\"col\">Reason</th></tr></thead><tbody>\n",
        );
        for q in &f.quarantined {
            writeln!(
                h,
                "<tr><td><code>{}</code></td><td>{}</td></tr>",
                esc(&q.path.file_name().unwrap_or_default().to_string_lossy()),
                esc(&q.reason)
            )?;
        }
        h.push_str("</tbody></table>\n");
    }
    Ok(())
}

fn runs_section(h: &mut String, f: &Facts) -> Result<()> {
    h.push_str(
        "<h2 id=\"runs\">Runs</h2>\n<p>From the run logs (one JSON line per stage, counts \
         and durations only):</p>\n<ul>\n",
    );
    for (path, present) in &f.logs {
        writeln!(
            h,
            "<li><code>{}</code>{}</li>",
            esc(&path.display().to_string()),
            if *present { "" } else { " (none on this host)" }
        )?;
    }
    h.push_str("</ul>\n");
    if f.bad_log_lines > 0 {
        writeln!(
            h,
            "<p class=\"bad\">{} line(s) of the run logs could not be read (a torn write or a \
             newer format) and are left out.</p>",
            f.bad_log_lines
        )?;
    }
    if f.runs.is_empty() {
        h.push_str("<p>No run logged.</p>\n");
        return Ok(());
    }
    writeln!(
        h,
        "<table><caption>Stages run, newest first ({} of {})</caption><thead><tr>\
         <th scope=\"col\">Ended (UTC)</th><th scope=\"col\">Day</th><th scope=\"col\">Command</th>\
         <th scope=\"col\">Stage</th><th scope=\"col\">Result</th><th scope=\"col\">Seconds</th>\
         <th scope=\"col\">Counts</th></tr></thead><tbody>",
        f.runs.len().min(RUNS_SHOWN),
        f.runs.len()
    )?;
    for r in f.runs.iter().rev().take(RUNS_SHOWN) {
        let counts: BTreeMap<&str, u64> = r.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let counts = counts
            .iter()
            .map(|(k, v)| format!("{}&nbsp;{v}", esc(&k.replace('_', " "))))
            .collect::<Vec<_>>()
            .join(", ");
        let result = match (r.ok, r.exit_code) {
            (true, _) => "ok".to_owned(),
            (false, Some(c)) => format!("<span class=\"bad\">failed (exit {c})</span>"),
            (false, None) => "<span class=\"bad\">refused</span>".to_owned(),
        };
        writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{result}</td>\
             <td class=\"n\">{:.2}</td><td>{counts}</td></tr>",
            esc(r.at.get(..19).unwrap_or(&r.at)),
            esc(&r.day),
            esc(&r.command),
            esc(&r.stage),
            r.duration_s
        )?;
    }
    h.push_str("</tbody></table>\n");
    Ok(())
}

/// A chart in a `<figure>`, its SVG given a `<title>` and `<desc>`.
fn figure(h: &mut String, title: &str, desc: &str, svg: &str) -> Result<()> {
    // Inline SVG in HTML needs no namespace, and the report names no URL.
    let svg = svg.replacen(" xmlns=\"http://www.w3.org/2000/svg\"", "", 1);
    let open_end = svg
        .find('>')
        .ok_or_else(|| anyhow!("the chart library wrote no SVG element"))?;
    let (open, rest) = svg.split_at(open_end);
    writeln!(
        h,
        "<figure>{open} role=\"img\"><title>{}</title><desc>{}</desc>{}<figcaption>{}</figcaption></figure>",
        esc(title),
        esc(desc),
        &rest[1..],
        esc(title)
    )?;
    Ok(())
}

const WIDTH: u32 = 900;
const HEIGHT: u32 = 340;
const FONT: &str = "sans-serif";

fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

/// Every `step`-th label, so that the axis stays legible.
fn label_step(n: usize) -> usize {
    n.div_ceil(12).max(1)
}

/// Two series over the same labelled x axis, as lines with points.
fn two_lines(labels: &[String], a: &[u64], b: &[u64], names: (&str, &str)) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let n = labels.len() as i32;
        let top = a.iter().chain(b).copied().max().unwrap_or(1).max(1);
        let top = top + top / 10 + 1;
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(-1..n, 0u64..top)
            .map_err(draw_err)?;
        let step = label_step(labels.len()) as i32;
        let fmt = |x: &i32| {
            if *x >= 0 && *x < n && x % step == 0 {
                labels[*x as usize].clone()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len() + 2)
            .x_label_formatter(&fmt)
            .label_style((FONT, 13))
            .draw()
            .map_err(draw_err)?;
        let blue = RGBColor(31, 94, 168);
        let orange = RGBColor(204, 102, 0);
        for (values, colour, name) in [(a, blue, names.0), (b, orange, names.1)] {
            chart
                .draw_series(LineSeries::new(
                    values.iter().enumerate().map(|(i, &v)| (i as i32, v)),
                    colour.stroke_width(2),
                ))
                .map_err(draw_err)?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2))
                });
            chart
                .draw_series(
                    values
                        .iter()
                        .enumerate()
                        .map(|(i, &v)| Circle::new((i as i32, v), 3, colour.filled())),
                )
                .map_err(draw_err)?;
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// One bar per label.
fn bars(labels: &[String], values: &[u64], what: &str) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let n = labels.len() as i32;
        let top = values.iter().copied().max().unwrap_or(1).max(1);
        let top = top + top / 10 + 1;
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d((0..n).into_segmented(), 0u64..top)
            .map_err(draw_err)?;
        let step = label_step(labels.len()) as i32;
        let fmt = |x: &SegmentValue<i32>| match x {
            SegmentValue::CenterOf(i) if *i < n && i % step == 0 => labels[*i as usize].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(labels.len() + 1)
            .x_label_formatter(&fmt)
            .y_desc(what)
            .label_style((FONT, 13))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(RGBColor(31, 94, 168).filled())
                    .margin(4)
                    .data(values.iter().enumerate().map(|(i, &v)| (i as i32, v))),
            )
            .map_err(draw_err)?;
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

/// Each month held as a bar from the month to its deletion, in months.
fn retention_chart(
    months: &[store::MonthCounts],
    retention: u32,
    today: LoanMonth,
) -> Result<String> {
    let mut svg = String::new();
    {
        let height = (HEIGHT).max(60 + 14 * months.len() as u32).min(1200);
        let root = SVGBackend::with_string(&mut svg, (WIDTH, height)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_err)?;
        let first = months.first().map_or(0, |m| m.month.index());
        let last = months.last().map_or(0, |m| m.month.index()) + retention as i32;
        let rows = months.len() as i32;
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(80)
            .build_cartesian_2d(first..last + 1, 0..rows)
            .map_err(draw_err)?;
        let month_label = |i: &i32| {
            let base = months[0].month;
            base.plus(i - first)
                .map(|m| m.to_string())
                .unwrap_or_default()
        };
        let row_label = |r: &i32| {
            months
                .get(*r as usize)
                .map(|m| m.month.to_string())
                .unwrap_or_default()
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_labels(12)
            .x_label_formatter(&month_label)
            .y_labels(months.len().min(24))
            .y_label_formatter(&row_label)
            .x_desc("held until the start of the month shown")
            .label_style((FONT, 13))
            .draw()
            .map_err(draw_err)?;
        chart
            .draw_series(months.iter().enumerate().map(|(r, m)| {
                let start = m.month.index();
                Rectangle::new(
                    [(start, r as i32), (start + retention as i32, r as i32 + 1)],
                    RGBColor(31, 94, 168).mix(0.7).filled(),
                )
            }))
            .map_err(draw_err)?;
        let t = today.index();
        if (first..=last).contains(&t) {
            chart
                .draw_series(LineSeries::new(
                    [(t, 0), (t, rows)],
                    RGBColor(170, 0, 0).stroke_width(3),
                ))
                .map_err(draw_err)?;
        }
        root.present().map_err(draw_err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn a_chart_is_svg_with_text_and_no_external_reference() {
        let labels: Vec<String> = (1..=12).map(|m| format!("2026-{m:02}")).collect();
        let a: Vec<u64> = (1..=12).map(|i| i * 100).collect();
        let b: Vec<u64> = (1..=12).map(|i| i * 10).collect();
        let mut h = String::new();
        figure(
            &mut h,
            "t",
            "d",
            &two_lines(&labels, &a, &b, ("x", "y")).unwrap(),
        )
        .unwrap();
        assert!(h.contains("<svg"), "{h}");
        assert!(h.contains("<title>t</title><desc>d</desc>"));
        assert!(h.contains("<text"));
        assert!(h.contains("2026-01"));
        assert!(!h.contains("http"), "{h}");
    }
}
