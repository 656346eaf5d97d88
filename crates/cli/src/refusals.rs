//! The last refusal of the privacy check, kept beside the export (owner-only,
//! outside the served feed) so that `status` can show it after a cron run.
//! It holds what the error says: files, kinds and places, never a value.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
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
    let path = export.join(FILE);
    let tmp = export.join(format!("{FILE}.tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(&refusal)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
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
