//! The manifest: the store's single commit point.

use std::collections::HashSet;
use std::io::{self, Read};
use std::path::Path;

use loans::LoanMonth;
use serde::{Deserialize, Serialize};

use crate::{BatchRecord, StoreError, fsx};

/// Manifest format version written by this crate. Format 2 added
/// `repeated_rows` (cross-batch deduplication); format 1 manifests are read
/// (as having dropped no repeats) and rewritten as format 2 by the next writer.
pub(crate) const FORMAT: u32 = 2;
/// The oldest manifest format this crate reads.
pub(crate) const OLDEST_FORMAT: u32 = 1;

/// Everything committed: ingested batches and the live data files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// Format version, [`FORMAT`].
    pub format: u32,
    /// Every batch ever ingested, in ingest order; kept after its files are
    /// pruned so that re-delivering an old batch stays a no-op.
    pub batches: Vec<BatchEntry>,
    /// Live data files, sorted by (month, path).
    pub files: Vec<FileEntry>,
}

/// One ingested batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BatchEntry {
    /// The record the caller handed over.
    pub batch: BatchRecord,
    /// Months the batch wrote (after dropping expired rows).
    pub months: Vec<LoanMonth>,
    /// Files the batch wrote, relative to the root (some may since be pruned).
    pub files: Vec<String>,
    /// Rows dropped at ingest because they were older than the retention.
    pub expired_rows: u64,
    /// Rows dropped at ingest because the store or the batch already held
    /// the same (pseudonym, title, month). Absent in format 1.
    #[serde(default)]
    pub repeated_rows: u64,
}

/// One live data file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileEntry {
    /// Path relative to the root, `loans/month=YYYY-MM/<batch-id>.parquet`.
    pub path: String,
    /// The partition month.
    pub month: LoanMonth,
    /// The batch that wrote it.
    pub batch: String,
    /// Rows in the file.
    pub rows: u64,
}

/// The relative path of the data file of `batch` for `month`.
pub(crate) fn data_file_path(month: LoanMonth, batch: &str) -> String {
    format!(
        "{}/{}/{batch}.parquet",
        crate::LOANS_DIR,
        partition_dir(month)
    )
}

/// The Hive-style partition directory name of a month.
pub(crate) fn partition_dir(month: LoanMonth) -> String {
    format!("month={month}")
}

/// Whether `s` is exactly `len` lowercase hex digits.
pub(crate) fn is_lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Manifest {
    /// An empty manifest of the current format.
    pub fn empty() -> Self {
        Manifest {
            format: FORMAT,
            ..Manifest::default()
        }
    }

    /// Whether a batch with this id was ingested.
    pub fn has_batch(&self, id: &str) -> bool {
        self.batches.iter().any(|b| b.batch.id == id)
    }

    /// Reads the manifest at `path`; `None` if there is none.
    pub fn load(path: &Path) -> Result<Option<Manifest>, StoreError> {
        let mut file = match fsx::open_nofollow(path) {
            Ok(f) => f,
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(fsx::io_err(path))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason,
        };
        // serde_json's own messages may quote values; report only the
        // position and the kind of problem.
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            corrupt(format!(
                "not a valid manifest ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        m.check().map_err(corrupt)?;
        Ok(Some(m))
    }

    /// Serializes the manifest (deterministic, human-readable); `path` is
    /// only for the error.
    pub fn to_bytes(&self, path: &Path) -> Result<Vec<u8>, StoreError> {
        let mut v = serde_json::to_vec_pretty(self).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            reason: format!("cannot serialize manifest ({:?} error)", e.classify()),
        })?;
        v.push(b'\n');
        Ok(v)
    }

    /// Checks internal consistency, so a tampered manifest can never make the
    /// store read or delete outside its tree.
    pub fn check(&self) -> Result<(), String> {
        if !(OLDEST_FORMAT..=FORMAT).contains(&self.format) {
            return Err(format!(
                "unsupported manifest format {} (expected {OLDEST_FORMAT} to {FORMAT}; written by a newer alsoborrowed?)",
                self.format
            ));
        }
        let mut ids = HashSet::with_capacity(self.batches.len());
        for (i, b) in self.batches.iter().enumerate() {
            check_record(&b.batch).map_err(|r| format!("batch entry {i}: {r}"))?;
            if !ids.insert(b.batch.id.as_str()) {
                return Err(format!("batch entry {i}: duplicate batch id"));
            }
            let paths_fit = b.files.len() == b.months.len()
                && b.months
                    .iter()
                    .zip(&b.files)
                    .all(|(&m, f)| *f == data_file_path(m, &b.batch.id));
            if !paths_fit {
                return Err(format!(
                    "batch entry {i}: files do not match its months and id"
                ));
            }
        }
        let mut paths = HashSet::with_capacity(self.files.len());
        for (i, f) in self.files.iter().enumerate() {
            if !ids.contains(f.batch.as_str()) {
                return Err(format!("file entry {i}: refers to an unknown batch"));
            }
            if f.path != data_file_path(f.month, &f.batch) {
                return Err(format!(
                    "file entry {i}: path does not match its month and batch"
                ));
            }
            if !paths.insert(f.path.as_str()) {
                return Err(format!("file entry {i}: duplicate file"));
            }
        }
        Ok(())
    }
}

/// Checks the shape of a batch record (never echoing its values).
pub(crate) fn check_record(b: &BatchRecord) -> Result<(), String> {
    if !is_lower_hex(&b.id, 64) {
        return Err("batch id is not 64 lowercase hex digits".to_owned());
    }
    if !is_lower_hex(&b.pseudonym_key, 16) {
        return Err("pseudonym key fingerprint is not 16 lowercase hex digits".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn record(n: u8) -> BatchRecord {
        BatchRecord {
            id: format!("{n:02x}").repeat(32),
            pseudonym_key: "0123456789abcdef".to_owned(),
            rows: 3,
        }
    }

    fn sample() -> Manifest {
        let m = LoanMonth::new(2024, 5).unwrap();
        let b = record(7);
        let path = data_file_path(m, &b.id);
        Manifest {
            format: FORMAT,
            batches: vec![BatchEntry {
                batch: b.clone(),
                months: vec![m],
                files: vec![path.clone()],
                expired_rows: 0,
                repeated_rows: 0,
            }],
            files: vec![FileEntry {
                path,
                month: m,
                batch: b.id,
                rows: 3,
            }],
        }
    }

    #[test]
    fn round_trips_through_json() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.json");
        let m = sample();
        fs::write(&p, m.to_bytes(&p).unwrap()).unwrap();
        assert_eq!(Manifest::load(&p).unwrap(), Some(m));
        assert_eq!(Manifest::load(&dir.path().join("none")).unwrap(), None);
    }

    #[test]
    fn data_file_path_is_hive_style() {
        let m = LoanMonth::new(2024, 5).unwrap();
        assert_eq!(
            data_file_path(m, "ab"),
            "loans/month=2024-05/ab.parquet".to_owned()
        );
    }

    #[test]
    fn check_rejects_path_escapes_and_bad_ids() {
        let mut m = sample();
        m.files[0].path = "../../etc/passwd".to_owned();
        assert!(m.check().unwrap_err().contains("path does not match"));

        let mut m = sample();
        m.batches[0].batch.id = "../x".to_owned();
        m.files.clear();
        assert!(m.check().unwrap_err().contains("64 lowercase hex"));

        let mut m = sample();
        m.batches.push(m.batches[0].clone());
        assert!(m.check().unwrap_err().contains("duplicate batch"));

        let mut m = sample();
        m.files[0].batch = record(8).id;
        assert!(m.check().unwrap_err().contains("unknown batch"));

        let mut m = sample();
        m.batches[0].files[0] = "loans/month=2024-06/x.parquet".to_owned();
        assert!(m.check().unwrap_err().contains("files do not match"));

        let mut m = sample();
        m.format = 9;
        assert!(m.check().unwrap_err().contains("format"));
    }

    #[test]
    fn format_1_without_repeated_rows_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("manifest.json");
        let mut m = sample();
        m.format = 1;
        let text = String::from_utf8(m.to_bytes(&p).unwrap())
            .unwrap()
            .replace(",\n      \"repeated_rows\": 0", "");
        assert!(!text.contains("repeated_rows"), "{text}");
        fs::write(&p, text).unwrap();
        assert_eq!(Manifest::load(&p).unwrap(), Some(m));
    }

    #[test]
    fn hex_check_is_exact() {
        assert!(is_lower_hex("00ff", 4));
        assert!(!is_lower_hex("00FF", 4));
        assert!(!is_lower_hex("00f", 4));
        assert!(!is_lower_hex("00fg", 4));
    }
}
