//! The four-week rule: once a batch is safely ingested, the circulation
//! system must delete the borrower-loan links it transferred within
//! `transfer.delete_links_after_days` (Danish guidance: four weeks).
//!
//! Two small JSON files per batch, in a `links/` directory, hold no id:
//! - `<outbox>/links/<batch>.json`, written by `extract`: the newest loan day
//!   the batch carries and the day it was sealed;
//! - `<inbox>/links/<batch>.ingested.json`, written by `ingest` once the
//!   batch is in the store: the ingest day.
//!
//! On one host (inbox = outbox) both land in the same directory. On two
//! hosts the acknowledgements are carried back to the extractor's
//! `<outbox>/links/` with the same tool that carries the batches over.
//! `status` reads both directories and shows each batch's delete-by day.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use jiff::civil::Date;
use pipeline::Pipeline;

/// Directory of the link records beside a transfer directory.
fn links_dir(transfer_dir: &Path) -> PathBuf {
    transfer_dir.join("links")
}

/// Writes `value` to `path` unless a valid record of the same batch is
/// there already (the first record of a content-addressed batch stays), via
/// a new temporary file and a rename. Anything else at `path` (a damaged
/// file, a symbolic link) is replaced, never followed.
fn write_once(path: &Path, value: &serde_json::Value) -> Result<()> {
    if let Ok(m) = std::fs::symlink_metadata(path)
        && m.is_file()
        && let Ok(Some(old)) = read_record(path)
        && old.get("batch") == value.get("batch")
    {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let text = serde_json::to_string_pretty(value)? + "\n";
    crate::commands::stages::write_private(path, text.as_bytes())
}

/// A link record as JSON; `Ok(None)` for a file that is not a JSON object.
/// The reason never quotes the file's text.
fn read_record(path: &Path) -> Result<Option<serde_json::Value>, String> {
    let text = crate::commands::stages::read_small_text(path).map_err(|e| e.to_string())?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        format!(
            "not valid JSON ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    Ok(v.is_object().then_some(v))
}

/// Records on the extractor's side that `batch` carries loans up to
/// `newest_loan_day`.
pub(crate) fn record_sealed(
    outbox: &Path,
    batch: &str,
    newest_loan_day: Date,
    today: Date,
) -> Result<()> {
    let record = serde_json::json!({
        "batch": batch,
        "newest_loan_day": newest_loan_day.to_string(),
        "sealed_on": today.to_string(),
    });
    write_once(&links_dir(outbox).join(format!("{batch}.json")), &record)
        .context("recording the newest loan day of the batch")
}

/// Acknowledges on the mining side that `batch` is safely in the store.
pub(crate) fn record_ingested(inbox: &Path, batch: &str, today: Date) -> Result<()> {
    let record = serde_json::json!({
        "batch": batch,
        "ingested_on": today.to_string(),
    });
    write_once(
        &links_dir(inbox).join(format!("{batch}.ingested.json")),
        &record,
    )
    .context("acknowledging the ingested batch")
}

/// What is known about one batch's borrower-loan links.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct LinkDuty {
    /// The batch id.
    pub batch: String,
    /// Newest loan day transferred (known on the extractor's side).
    pub newest_loan_day: Option<Date>,
    /// Day the batch was sealed.
    pub sealed_on: Option<Date>,
    /// Day the batch was ingested (once acknowledged).
    pub ingested_on: Option<Date>,
}

impl LinkDuty {
    /// The day by which the circulation system must have deleted the links.
    pub fn delete_by(&self, days: u32) -> Option<Date> {
        self.ingested_on?
            .checked_add(jiff::Span::new().days(i64::from(days)))
            .ok()
    }
}

/// A `.json` file of `links/` that is not a link record, and why.
pub(crate) type Skipped = (PathBuf, String);

/// The link records of the pipeline's outbox and inbox, by batch id, and the
/// `.json` files of `links/` that are not link records, with the reason
/// (skipped, so that one stray file does not hide every deadline).
pub(crate) fn duties(p: &Pipeline) -> Result<(Vec<LinkDuty>, Vec<Skipped>)> {
    let mut skipped = Vec::new();
    let mut by_batch: BTreeMap<String, LinkDuty> = BTreeMap::new();
    let mut dirs = vec![links_dir(&p.transfer.outbox)];
    if p.transfer.inbox() != p.transfer.outbox {
        dirs.push(links_dir(p.transfer.inbox()));
    }
    for dir in dirs {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
        };
        for entry in entries {
            let path = entry
                .with_context(|| format!("listing {}", dir.display()))?
                .path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let v = match read_record(&path) {
                Ok(Some(v)) => v,
                Ok(None) => {
                    skipped.push((path, "not a JSON object".to_owned()));
                    continue;
                }
                Err(why) => {
                    skipped.push((path, why));
                    continue;
                }
            };
            let day = |key: &str| -> Result<Option<Date>, String> {
                v.get(key)
                    .and_then(|d| d.as_str())
                    .map(|d| d.parse::<Date>())
                    .transpose()
                    .map_err(|_| format!("{key} is not a date"))
            };
            let Some(batch) = v.get("batch").and_then(|b| b.as_str()) else {
                skipped.push((path, "no batch id".to_owned()));
                continue;
            };
            let days = (|| {
                Ok::<_, String>((
                    day("newest_loan_day")?,
                    day("sealed_on")?,
                    day("ingested_on")?,
                ))
            })();
            let (newest, sealed, ingested) = match days {
                Ok(d) => d,
                Err(why) => {
                    skipped.push((path, why));
                    continue;
                }
            };
            let duty = by_batch
                .entry(batch.to_owned())
                .or_insert_with(|| LinkDuty {
                    batch: batch.to_owned(),
                    ..LinkDuty::default()
                });
            duty.newest_loan_day = duty.newest_loan_day.or(newest);
            duty.sealed_on = duty.sealed_on.or(sealed);
            duty.ingested_on = duty.ingested_on.or(ingested);
        }
    }
    let mut out: Vec<LinkDuty> = by_batch.into_values().collect();
    out.sort_by_key(|d| (d.ingested_on, d.sealed_on, d.batch.clone()));
    skipped.sort();
    Ok((out, skipped))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn delete_by_counts_from_the_ingest_day() {
        let mut d = LinkDuty {
            batch: "b".into(),
            newest_loan_day: Some(date(2024, 5, 31)),
            sealed_on: Some(date(2024, 6, 1)),
            ingested_on: None,
        };
        assert_eq!(d.delete_by(28), None);
        d.ingested_on = Some(date(2024, 6, 2));
        assert_eq!(d.delete_by(28), Some(date(2024, 6, 30)));
        assert_eq!(d.delete_by(0), Some(date(2024, 6, 2)));
    }
}
