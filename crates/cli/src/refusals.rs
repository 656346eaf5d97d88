//! The last refusal of the privacy check, kept beside the export (owner-only,
//! outside the served feed) so that `status` can show it after a cron run.
//! It holds what the error says: files, kinds and places, never a value.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};

use crate::context::Context;

/// File name inside the export directory.
pub(crate) const FILE: &str = "last-refusal.json";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Refusal {
    /// The day of the run that was refused.
    pub day: String,
    /// The error line the run printed.
    pub message: String,
    /// Each finding kept: file, kind, place.
    pub findings: Vec<String>,
}

/// Records `err` (a refused export) as the last refusal.
pub(crate) fn record(ctx: &Context, export: &Path, err: &publish::PublishError) -> Result<()> {
    let findings = match err {
        publish::PublishError::CheckFailed { findings, .. } => {
            findings.first.iter().map(ToString::to_string).collect()
        }
        _ => Vec::new(),
    };
    let refusal = Refusal {
        day: ctx.today.to_string(),
        message: err.to_string(),
        findings,
    };
    crate::commands::stages::write_private(
        &export.join(FILE),
        &serde_json::to_vec_pretty(&refusal)?,
    )
}

/// The last refusal recorded in `export`, if any.
pub(crate) fn last(export: &Path) -> Result<Option<Refusal>> {
    let path = export.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}
