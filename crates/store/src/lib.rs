//! The data-mining store: owner-only, month-partitioned Parquet files of
//! pseudonymous loans, with atomic, idempotent batch ingest.
//!
//! Layout under the root (see `docs/design.md#store`):
//!
//! ```text
//! <root>/                      0700
//!   LOCK                       0600  advisory lock of writers (flock)
//!   manifest.json              0600  commit point: batches + live files
//!   tmp/                       0700  staging; emptied by every writer
//!   loans/                     0700
//!     month=YYYY-MM/           0700  Hive-style partition
//!       <batch-id>.parquet     0600  one file per batch and month
//! ```
//!
//! Only files listed in `manifest.json` exist for readers. A writer stages
//! files in `tmp/`, renames them into their partitions and then commits by
//! replacing the manifest atomically; a crash before that leaves orphan files
//! that readers ignore and the next writer removes.
//!
//! Architecture invariant: the store never sees keys or raw borrower ids, and
//! no pseudonym reaches an error message.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use loans::{LoanMonth, Loans, LoansError};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

mod columns;
mod dedup;
mod fsx;
mod manifest;

use manifest::{BatchEntry, FileEntry, Manifest};

/// Name of the lock file under the root.
pub const LOCK_FILE: &str = "LOCK";
/// Name of the manifest under the root.
pub const MANIFEST_FILE: &str = "manifest.json";
/// Name of the directory of month partitions under the root.
pub const LOANS_DIR: &str = "loans";
/// Name of the staging directory under the root.
pub const TMP_DIR: &str = "tmp";

/// Errors of the store; messages name files and reasons, never a pseudonym.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file system operation failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another writer (process or handle) holds the store's lock.
    #[error("store is locked by another writer ({})", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A file of the store is not what the store wrote.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The store root or a directory inside it is accessible to group or others.
    #[error(
        "{} has mode {mode:o}, but the store must be owner-only (chmod 700 it)",
        path.display()
    )]
    Permissions {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A path inside the store's tree is a symbolic link, which the store
    /// never follows.
    #[error(
        "{} is a symbolic link; the store follows no links inside its tree (replace it with the real directory or file)",
        path.display()
    )]
    Symlink {
        /// The link.
        path: PathBuf,
    },
    /// A path that must be a directory is something else.
    #[error("{} exists and is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Parquet could not encode or decode a data file.
    #[error("parquet error in {}: {source}", path.display())]
    Parquet {
        /// The data file.
        path: PathBuf,
        /// The Parquet error.
        source: parquet::errors::ParquetError,
    },
    /// Arrow rejected the columns of a data file.
    #[error("arrow error in {}: {source}", path.display())]
    Arrow {
        /// The data file.
        path: PathBuf,
        /// The Arrow error.
        source: arrow_schema::ArrowError,
    },
    /// The batch record is malformed or does not match the loans given.
    #[error("invalid batch: {reason}")]
    InvalidBatch {
        /// What is wrong.
        reason: String,
    },
    /// The loans handed to ingest do not fit together.
    #[error("invalid loans: {source}")]
    InvalidLoans {
        /// What is wrong.
        #[from]
        source: LoansError,
    },
    /// The lock passed in was taken on another store.
    #[error("the lock passed in belongs to the store at {}", path.display())]
    ForeignLock {
        /// Root of the store the lock belongs to.
        path: PathBuf,
    },
}

/// The record of a sealed batch, as the caller opened it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRecord {
    /// Content hash of the sealed batch, 64 lowercase hex digits.
    pub id: String,
    /// Fingerprint of the pseudonym key, 16 lowercase hex digits.
    pub pseudonym_key: String,
    /// Rows in the batch, before dropping expired ones.
    pub rows: u64,
}

/// What an ingest did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IngestOutcome {
    /// The batch was committed.
    Ingested {
        /// Rows written.
        rows: u64,
        /// Months written, ascending.
        months: Vec<LoanMonth>,
        /// Rows dropped because they were older than the retention.
        expired_rows: u64,
        /// Rows dropped because the store (or the batch itself) already held
        /// the same (pseudonym, title, month): an overlapping export.
        repeated_rows: u64,
    },
    /// The batch was committed before; nothing was written.
    AlreadyIngested,
}

/// Proof of holding the store's exclusive writer lock; released on drop.
#[derive(Debug)]
pub struct StoreLock {
    root: PathBuf,
    // Held only for its flock: dropping the file releases the lock.
    _file: File,
}

/// A summary of the committed contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// Live rows.
    pub rows: u64,
    /// Distinct pseudonyms among the live rows.
    pub distinct_pseudonyms: u64,
    /// Live rows per month, ascending.
    pub months: Vec<(LoanMonth, u64)>,
    /// Batches ever ingested (including those whose months were pruned).
    pub batches: u64,
    /// Rows of all ingested batches dropped because the store already held
    /// the same (pseudonym, title, month) (overlapping exports).
    pub repeated_rows: u64,
    /// Pseudonym key fingerprints of all ingested batches, sorted, each once.
    pub pseudonym_keys: Vec<String>,
}

/// One month's counts (see [`Store::month_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonthCounts {
    /// The month.
    pub month: LoanMonth,
    /// Loans held for it.
    pub loans: u64,
    /// Distinct pseudonyms among them.
    pub borrowers: u64,
}

/// The rows of one batch that an ingest wrote, by month: what
/// [`Store::scan_reusing`] takes from memory instead of the data files.
#[derive(Debug, Default)]
pub struct Written {
    /// The batch id (its data files are named by it).
    batch: String,
    /// For each month whose new file holds only the batch's rows (it merged
    /// no earlier file): those rows, indices into the batch, in file order.
    months: BTreeMap<LoanMonth, Vec<u32>>,
}

impl Written {
    /// The batch rows a live data file holds, if it is one this ingest
    /// wrote from them alone.
    fn rows_of(&self, f: &FileEntry) -> Option<&[u32]> {
        let rows = self.months.get(&f.month)?;
        (f.batch == self.batch
            && f.path == manifest::data_file_path(f.month, &self.batch)
            && rows.len() as u64 == f.rows)
            .then_some(rows.as_slice())
    }
}

/// A month-partitioned Parquet store of pseudonymous loans.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

type PseudonymSet = HashSet<u128, loans::BuildPseudonymHasher>;

/// A month holding this many files gets them merged into one with the next
/// batch's rows for it, so a month holds at most this many files.
const MERGE_AT: usize = 2;

/// One month of a batch, staged for placing.
struct Staged {
    month: LoanMonth,
    /// The staged file; `None` when every row was held already.
    tmp: Option<PathBuf>,
    /// The batch's rows the file holds, in file order, unless it merges
    /// earlier files.
    kept: Option<Vec<u32>>,
    /// New rows of the batch written.
    rows: u64,
    /// Rows of the batch dropped as repeats.
    repeated: u64,
    /// When the file merges the month's earlier files: its total rows.
    merged: u64,
}

/// The part of an ingest that depends on a batch's loans and the retention
/// limit alone: each kept month's rows and the dictionary's works. A
/// one-host `run` makes it while the batch is being named, which is one
/// thread's SHA-256 over the whole batch ([`Store::ingest_prepared`]).
#[derive(Debug)]
pub struct Prepared {
    oldest_kept: LoanMonth,
    /// The loans' rows and titles, to tell the loans it was made for.
    rows: usize,
    titles: usize,
    by_month: Vec<(LoanMonth, Vec<u32>)>,
    expired_rows: u64,
    works: columns::WorkIndex,
}

impl Prepared {
    /// Prepares the ingest of `loans`, keeping rows not older than
    /// `oldest_kept`. Reads the months and the dictionary only, so the
    /// loans need not have been validated yet (the ingest validates them).
    pub fn new(loans: &Loans, oldest_kept: LoanMonth) -> Prepared {
        // Side by side: a pass over the rows and one over the dictionary.
        let ((by_month, expired_rows), works) = rayon::join(
            || rows_by_month(&loans.months, oldest_kept),
            || columns::WorkIndex::of(loans),
        );
        Prepared {
            oldest_kept,
            rows: loans.len(),
            titles: loans.title_ids.len(),
            by_month,
            expired_rows,
            works,
        }
    }
}

/// Hands a written staging file to ingest's syncing thread, or syncs it
/// here if that thread is gone.
fn sync_later(
    to_sync: &std::sync::mpsc::Sender<(PathBuf, File)>,
    path: &Path,
    file: File,
) -> Result<(), StoreError> {
    match to_sync.send((path.to_path_buf(), file)) {
        Ok(()) => Ok(()),
        Err(std::sync::mpsc::SendError((_, file))) => file.sync_all().map_err(fsx::io_err(path)),
    }
}

/// The rows of each month not older than `oldest_kept`, ascending, and the
/// number of older rows. A counting sort by month (a batch spans few
/// months) in row chunks: each chunk counts its rows per month, then
/// writes them into its own slice of each month's rows, all chunks in
/// parallel (one thread took half a second at 100M loans, with the other
/// core idle).
fn rows_by_month(
    months: &[LoanMonth],
    oldest_kept: LoanMonth,
) -> (Vec<(LoanMonth, Vec<u32>)>, u64) {
    let kept = || months.par_iter().filter(|&&m| m >= oldest_kept);
    let (Some(&first), Some(&last)) = (kept().min(), kept().max()) else {
        return (Vec::new(), months.len() as u64);
    };
    // Both months are valid, so the span is below 12 * 10_000.
    let span = (last.index() - first.index()) as usize + 1;
    // Chunks of at least 64 rows a month of the span, so the counts take at
    // most a 32nd of the rows' own memory whatever dates a batch holds.
    let chunk = (1 << 18).max(span * 64);
    let slot = |m: LoanMonth| (m >= oldest_kept).then(|| (m.index() - first.index()) as usize);
    // One chunk a task (`with_max_len`): this runs beside the batch's naming
    // on one thread, and rayon's few default splits left that thread, once
    // done, nothing to take while the other worked through its half.
    let counts: Vec<Vec<usize>> = months
        .par_chunks(chunk)
        .with_max_len(1)
        .map(|chunk| {
            let mut count = vec![0usize; span];
            for &m in chunk {
                if let Some(i) = slot(m) {
                    count[i] += 1;
                }
            }
            count
        })
        .collect();
    let totals: Vec<usize> = (0..span)
        .map(|i| counts.iter().map(|c| c[i]).sum())
        .collect();
    let mut groups: Vec<Vec<u32>> = totals.iter().map(|&n| vec![0; n]).collect();
    // Each chunk's slice of each month, in chunk order.
    let mut slices: Vec<Vec<&mut [u32]>> = counts.iter().map(|_| Vec::new()).collect();
    for (i, group) in groups.iter_mut().enumerate() {
        let mut rest = group.as_mut_slice();
        for (c, count) in counts.iter().enumerate() {
            let (mine, after) = rest.split_at_mut(count[i]);
            slices[c].push(mine);
            rest = after;
        }
    }
    slices
        .into_par_iter()
        .enumerate()
        .with_max_len(1)
        .for_each(|(c, mut out)| {
            let mut filled = vec![0usize; span];
            for (at, &m) in months[c * chunk..].iter().take(chunk).enumerate() {
                if let Some(i) = slot(m) {
                    // Fits: an ingest refuses a batch of 2^32 rows or more
                    // before it uses what was prepared for it.
                    out[i][filled[i]] = (c * chunk + at) as u32;
                    filled[i] += 1;
                }
            }
        });
    let expired = months.len() as u64 - totals.iter().sum::<usize>() as u64;
    let grouped = groups
        .into_iter()
        .enumerate()
        .filter(|(_, rows)| !rows.is_empty())
        .filter_map(|(i, rows)| {
            LoanMonth::from_index(first.index() + i as i32)
                .ok()
                .map(|m| (m, rows))
        })
        .collect();
    (grouped, expired)
}

impl Store {
    /// Opens the store at `root`, creating missing directories with mode 0700;
    /// refuses a root that group or others may access.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        match fs::metadata(root) {
            Ok(m) if !m.is_dir() => {
                return Err(StoreError::NotADirectory {
                    path: root.to_path_buf(),
                });
            }
            Ok(m) => {
                let mode = m.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(StoreError::Permissions {
                        path: root.to_path_buf(),
                        mode,
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fsx::ensure_dir(root)?;
            }
            Err(e) => return Err(fsx::io_err(root)(e)),
        }
        let root = fs::canonicalize(root).map_err(fsx::io_err(root))?;
        let store = Store { root };
        for sub in [LOANS_DIR, TMP_DIR] {
            let dir = store.root.join(sub);
            fsx::ensure_dir(&dir)?;
            fsx::check_private_dir(&dir)?;
        }
        store.check_partitions()?;
        // Fail early on a damaged manifest rather than at the first read.
        store.read_manifest()?;
        Ok(store)
    }

    /// The store's root directory (canonical absolute path).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Takes the exclusive writer lock without waiting; [`StoreError::Locked`]
    /// if another process or handle holds it.
    pub fn lock(&self) -> Result<StoreLock, StoreError> {
        let path = self.root.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(fsx::FILE_MODE)
            .custom_flags(fsx::NOFOLLOW)
            .open(&path)
            .map_err(fsx::open_err(&path))?;
        // flock locks belong to the open file description, so a second
        // handle in this very process is refused as well.
        match file.try_lock() {
            Ok(()) => Ok(StoreLock {
                root: self.root.clone(),
                _file: file,
            }),
            Err(TryLockError::WouldBlock) => Err(StoreError::Locked { path }),
            Err(TryLockError::Error(e)) => Err(StoreError::Io { path, source: e }),
        }
    }

    /// Commits the rows of one batch that are not older than `oldest_kept`,
    /// all or nothing; a batch id committed before is a no-op.
    pub fn ingest(
        &self,
        lock: &StoreLock,
        batch: &BatchRecord,
        loans: &Loans,
        oldest_kept: LoanMonth,
    ) -> Result<IngestOutcome, StoreError> {
        self.ingest_written(lock, batch, loans, oldest_kept)
            .map(|(outcome, _)| outcome)
    }

    /// [`Store::ingest`], also returning which of the batch's rows each new
    /// data file holds, so that a caller that keeps `loans` in memory can
    /// read a window with [`Store::scan_reusing`] without decoding them
    /// again.
    pub fn ingest_written(
        &self,
        lock: &StoreLock,
        batch: &BatchRecord,
        loans: &Loans,
        oldest_kept: LoanMonth,
    ) -> Result<(IngestOutcome, Written), StoreError> {
        self.ingest_inner(lock, batch, loans, oldest_kept, None)
    }

    /// [`Store::ingest_written`] with the part that depends on the loans
    /// alone done beforehand ([`Prepared`], made for these `loans`: if it
    /// was made for other rows, it is made again here).
    pub fn ingest_prepared(
        &self,
        lock: &StoreLock,
        batch: &BatchRecord,
        loans: &Loans,
        prepared: Prepared,
    ) -> Result<(IngestOutcome, Written), StoreError> {
        let oldest_kept = prepared.oldest_kept;
        self.ingest_inner(lock, batch, loans, oldest_kept, Some(prepared))
    }

    fn ingest_inner(
        &self,
        lock: &StoreLock,
        batch: &BatchRecord,
        loans: &Loans,
        oldest_kept: LoanMonth,
        prepared: Option<Prepared>,
    ) -> Result<(IngestOutcome, Written), StoreError> {
        self.check_lock(lock)?;
        manifest::check_record(batch).map_err(|reason| StoreError::InvalidBatch { reason })?;
        loans.validate()?;
        if batch.rows != loans.len() as u64 {
            return Err(StoreError::InvalidBatch {
                reason: format!(
                    "batch record says {} rows but {} were given",
                    batch.rows,
                    loans.len()
                ),
            });
        }
        if u32::try_from(loans.len()).is_err() || i32::try_from(loans.title_ids.len()).is_err() {
            return Err(StoreError::InvalidBatch {
                reason: "batch is too large (split it below 2^32 rows and 2^31 titles)".to_owned(),
            });
        }
        let mut manifest = self.manifest_for_write()?;
        self.recover(&manifest)?;
        if manifest.has_batch(&batch.id) {
            return Ok((IngestOutcome::AlreadyIngested, Written::default()));
        }

        let (prepared, canon) = match prepared {
            Some(p) if p.rows == loans.len() && p.titles == loans.title_ids.len() => {
                (p, dedup::CanonicalTitles::of(loans))
            }
            _ => rayon::join(
                || Prepared::new(loans, oldest_kept),
                || dedup::CanonicalTitles::of(loans),
            ),
        };
        let Prepared {
            by_month,
            expired_rows,
            works,
            ..
        } = prepared;

        let stage = self.root.join(TMP_DIR).join(&batch.id);
        fsx::ensure_dir(&stage)?;
        // Months are independent files: encode them in parallel (each file's
        // bytes depend only on its own rows, so the result stays deterministic).
        // Each written file is synced on a thread of its own while the pool
        // encodes the next months: synced in place, a file held its encoding
        // thread idle for the disk (a fifth of ingest's time at 10M loans).
        // Every file is synced before any is placed, as before.
        let (staged, synced) = std::thread::scope(|scope| {
            let (to_sync, written) = std::sync::mpsc::channel::<(PathBuf, File)>();
            let syncer = scope.spawn(move || {
                let mut first_error = None;
                for (path, file) in written {
                    // After a failure the rest are dropped unsynced: the
                    // ingest fails and nothing of it is placed.
                    if first_error.is_none()
                        && let Err(e) = file.sync_all()
                    {
                        first_error = Some(fsx::io_err(&path)(e));
                    }
                }
                first_error.map_or(Ok(()), Err)
            });
            let staged = by_month
                .par_iter()
                .map_with(to_sync, |to_sync, &(month, ref rows)| {
                    // Loans the store already holds for this month (an export
                    // overlapping an earlier one) are dropped, as are repeats
                    // inside the batch: each (pseudonym, title, month) once.
                    let held_files: Vec<&FileEntry> =
                        manifest.files.iter().filter(|f| f.month == month).collect();
                    let held: Vec<(PathBuf, u64)> = held_files
                        .iter()
                        .map(|f| (self.root.join(&f.path), f.rows))
                        .collect();
                    // Once a month holds MERGE_AT files, they are merged into one
                    // with the new rows (so that daily overlapping exports do not
                    // leave a file a day), unless they hold loans under another
                    // pseudonym key, which must stay told apart.
                    let merge = held_files.len() >= MERGE_AT
                        && held_files.iter().all(|f| {
                            manifest
                                .batches
                                .iter()
                                .find(|b| b.batch.id == f.batch)
                                .is_some_and(|b| b.batch.pseudonym_key == batch.pseudonym_key)
                        });
                    let new = dedup::new_rows(loans, &canon, rows, &held, merge, month)?;
                    let repeated = (rows.len() - new.kept.len()) as u64;
                    if new.kept.is_empty() {
                        return Ok(Staged {
                            month,
                            tmp: None,
                            kept: None,
                            rows: 0,
                            repeated,
                            merged: 0,
                        });
                    }
                    let tmp = stage.join(format!("{}.parquet", manifest::partition_dir(month)));
                    let merged = match &new.merged {
                        Some(all) => {
                            let every: Vec<u32> = (0..all.len() as u32).collect();
                            let file = columns::write_month_unsynced(
                                &tmp,
                                all,
                                &columns::WorkIndex::of(all),
                                &all.in_title_order(&every),
                                month,
                            )?;
                            sync_later(to_sync, &tmp, file)?;
                            all.len() as u64
                        }
                        None => {
                            // `kept` is in title order already.
                            let file = columns::write_month_unsynced(
                                &tmp, loans, &works, &new.kept, month,
                            )?;
                            sync_later(to_sync, &tmp, file)?;
                            0
                        }
                    };
                    let rows = new.kept.len() as u64;
                    Ok(Staged {
                        month,
                        tmp: Some(tmp),
                        kept: new.merged.is_none().then_some(new.kept.rows),
                        rows,
                        repeated,
                        merged,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>();
            let synced = syncer
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (staged, synced)
        });
        let staged = staged?;
        synced?;
        let repeated_rows = staged.iter().map(|s| s.repeated).sum();

        let loans_dir = self.root.join(LOANS_DIR);
        let mut entry = BatchEntry {
            batch: batch.clone(),
            months: Vec::with_capacity(staged.len()),
            files: Vec::with_capacity(staged.len()),
            expired_rows,
            repeated_rows,
        };
        let mut rows_written = 0;
        let mut placed = Vec::with_capacity(staged.len());
        let mut replaced_any = false;
        let mut written = Written {
            batch: batch.id.clone(),
            months: BTreeMap::new(),
        };
        for Staged {
            month,
            tmp,
            kept,
            rows,
            merged,
            ..
        } in staged
        {
            let Some(tmp) = tmp else { continue };
            if let Some(kept) = kept {
                written.months.insert(month, kept);
            }
            let dir = loans_dir.join(manifest::partition_dir(month));
            if fsx::ensure_dir(&dir)? {
                fsx::sync_dir(&loans_dir)?;
            }
            let rel = manifest::data_file_path(month, &batch.id);
            let dest = self.root.join(&rel);
            if let Err(e) = fs::rename(&tmp, &dest)
                .map_err(fsx::io_err(&dest))
                .and_then(|()| fsx::sync_dir(&dir))
            {
                self.unplace(&placed);
                return Err(e);
            }
            placed.push(dest);
            if merged > 0 {
                // The merged file replaces the month's earlier files; they
                // become unlisted at the commit and recovery deletes them.
                manifest.files.retain(|f| f.month != month);
                replaced_any = true;
            }
            manifest.files.push(FileEntry {
                path: rel.clone(),
                month,
                batch: batch.id.clone(),
                rows: if merged > 0 { merged } else { rows },
            });
            entry.months.push(month);
            entry.files.push(rel);
            rows_written += rows;
        }
        let months = entry.months.clone();
        manifest.batches.push(entry);
        manifest
            .files
            .sort_by(|a, b| (a.month, &a.path).cmp(&(b.month, &b.path)));
        if let Err(e) = self.commit(&manifest) {
            // Not committed: take the placed files out again, so that no
            // unlisted file stays in a partition (a crash here leaves them
            // to the next writer's recovery).
            self.unplace(&placed);
            return Err(e);
        }
        // Committed: a leftover staging directory is only clutter, and the
        // next writer's recovery removes it.
        let _ = fs::remove_dir_all(&stage);
        if replaced_any {
            // Files merged into new ones are no longer listed: delete them
            // (a crash before this leaves them to the next writer).
            self.recover(&manifest)?;
        }
        Ok((
            IngestOutcome::Ingested {
                rows: rows_written,
                months,
                expired_rows,
                repeated_rows,
            },
            written,
        ))
    }

    /// Best-effort removal of data files placed by an ingest that then
    /// failed before its commit.
    fn unplace(&self, placed: &[PathBuf]) {
        for f in placed {
            let _ = fs::remove_file(f);
            if let Some(dir) = f.parent() {
                let _ = fsx::sync_dir(dir);
                // Only if now empty.
                let _ = fs::remove_dir(dir);
            }
        }
    }

    /// Drops every month older than `oldest_kept`; returns the rows removed.
    ///
    /// Batch records stay in the manifest, so a pruned batch delivered again
    /// is still recognised as already ingested.
    pub fn prune(&self, lock: &StoreLock, oldest_kept: LoanMonth) -> Result<u64, StoreError> {
        self.check_lock(lock)?;
        let mut manifest = self.manifest_for_write()?;
        self.recover(&manifest)?;
        let before = manifest.files.len();
        let mut removed = 0;
        manifest.files.retain(|f| {
            let keep = f.month >= oldest_kept;
            if !keep {
                removed += f.rows;
            }
            keep
        });
        if manifest.files.len() == before {
            return Ok(0);
        }
        // Commit first: a crash after it only leaves orphans to recover.
        if let Err(e) = self.commit(&manifest) {
            if !fsx::is_out_of_space(&e) {
                return Err(e);
            }
            // A full disk must not keep expired loans forever. They are to
            // be deleted anyway: delete them first to make room, then commit.
            // Until that commit the old manifest lists files that are gone;
            // a crash in between is healed by the next prune (every ingest
            // runs one), which drops the same entries.
            for f in self.expired_files(oldest_kept)? {
                fsx::remove_file_if_exists(&f)?;
            }
            self.commit(&manifest)?;
        }
        self.recover(&manifest)?;
        Ok(removed)
    }

    /// Fingerprints of the pseudonym keys of the loans held for months
    /// `first..=last`, sorted; from the manifest only. Loans of one borrower
    /// under two keys are two pseudonyms, so a caller counting distinct
    /// borrowers must refuse a range with more than one key.
    pub fn pseudonym_keys(
        &self,
        first: LoanMonth,
        last: LoanMonth,
    ) -> Result<Vec<String>, StoreError> {
        let manifest = self.read_manifest()?;
        let batches: BTreeSet<&str> = manifest
            .files
            .iter()
            .filter(|f| (first..=last).contains(&f.month))
            .map(|f| f.batch.as_str())
            .collect();
        let mut keys: Vec<String> = manifest
            .batches
            .iter()
            .filter(|b| batches.contains(b.batch.id.as_str()))
            .map(|b| b.batch.pseudonym_key.clone())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(keys)
    }

    /// Per month held, ascending: its loans and its distinct pseudonyms
    /// (distinct borrowers, when the month's loans are under one key); reads
    /// only the pseudonym column.
    pub fn month_counts(&self) -> Result<Vec<MonthCounts>, StoreError> {
        let manifest = self.read_manifest()?;
        let mut by_month: BTreeMap<LoanMonth, Vec<&FileEntry>> = BTreeMap::new();
        for f in &manifest.files {
            by_month.entry(f.month).or_default().push(f);
        }
        by_month
            .into_par_iter()
            .map(|(month, files)| {
                let mut set = PseudonymSet::default();
                for f in &files {
                    columns::for_each_pseudonym(&self.root.join(&f.path), f.rows, |p| {
                        set.insert(p.as_u128());
                    })?;
                }
                Ok(MonthCounts {
                    month,
                    loans: files.iter().map(|f| f.rows).sum(),
                    borrowers: set.len() as u64,
                })
            })
            .collect()
    }

    /// Summarises the committed contents; reads only the pseudonym column.
    pub fn status(&self) -> Result<StoreStatus, StoreError> {
        let manifest = self.read_manifest()?;
        let mut months: BTreeMap<LoanMonth, u64> = BTreeMap::new();
        for f in &manifest.files {
            *months.entry(f.month).or_default() += f.rows;
        }
        let distinct = manifest
            .files
            .par_iter()
            .map(|f| {
                let mut set = PseudonymSet::default();
                columns::for_each_pseudonym(&self.root.join(&f.path), f.rows, |p| {
                    set.insert(p.as_u128());
                })?;
                Ok::<_, StoreError>(set)
            })
            .try_reduce(PseudonymSet::default, |a, b| {
                let (mut big, small) = if a.len() >= b.len() { (a, b) } else { (b, a) };
                big.extend(small);
                Ok(big)
            })?;
        let mut keys: Vec<String> = manifest
            .batches
            .iter()
            .map(|b| b.batch.pseudonym_key.clone())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        Ok(StoreStatus {
            rows: months.values().sum(),
            distinct_pseudonyms: distinct.len() as u64,
            months: months.into_iter().collect(),
            batches: manifest.batches.len() as u64,
            repeated_rows: manifest.batches.iter().map(|b| b.repeated_rows).sum(),
            pseudonym_keys: keys,
        })
    }

    /// Reads the loans of the months `first..=last` (in month order, then
    /// batch-id order), with a title dictionary holding each title once.
    ///
    /// A title's work is taken from its first row in that order.
    pub fn scan(&self, first: LoanMonth, last: LoanMonth) -> Result<Loans, StoreError> {
        self.scan_reusing(first, last, None)
    }

    /// [`Store::scan`], taking the rows of the data files that `fresh`'s
    /// ingest wrote (and that are still live) from its loans in memory
    /// instead of decoding them: the same loans, in the same order, with
    /// the same title dictionary. The borrower dictionary is `fresh`'s as it
    /// is (its rows keep their indices, and it may hold borrowers without a
    /// loan in the window), followed by the other files' pseudonyms.
    ///
    /// `fresh` is the batch's loans as given to [`Store::ingest_written`]
    /// and what it returned.
    pub fn scan_reusing(
        &self,
        first: LoanMonth,
        last: LoanMonth,
        fresh: Option<(&Loans, &Written)>,
    ) -> Result<Loans, StoreError> {
        let manifest = self.read_manifest()?;
        let mut files: Vec<&FileEntry> = manifest
            .files
            .iter()
            .filter(|f| (first..=last).contains(&f.month))
            .collect();
        files.sort_by(|a, b| (a.month, &a.path).cmp(&(b.month, &b.path)));
        let total = usize::try_from(files.iter().map(|f| f.rows).sum::<u64>()).unwrap_or(0);
        let mut out = Loans {
            borrowers: Vec::with_capacity(total),
            titles: Vec::with_capacity(total),
            months: Vec::with_capacity(total),
            borrower_pseudonyms: fresh
                .map(|(loans, _)| loans.borrower_pseudonyms.clone())
                .unwrap_or_default(),
            ..Loans::default()
        };
        // The window's titles by string, made at the first file decoded from
        // disk, whose titles must be looked up. Until then every part came
        // from memory, and a batch title without a window id is a new one (a
        // batch's titles are distinct, checked when it was ingested): a
        // window from memory alone hashes no title.
        let mut index: Option<hashbrown::HashMap<String, u32>> = None;
        // The window id of each title of the fresh batch, once it has one:
        // parts made from memory name titles by batch index, so each batch
        // title's string is looked up once, not once a file.
        let mut of_batch: Vec<u32> = vec![u32::MAX; fresh.map_or(0, |(l, _)| l.title_ids.len())];
        // Pseudonyms to window borrower indices, made when the first file is
        // decoded: a window taken from memory alone needs no lookup at all.
        let mut numbering: Option<loans::BorrowerNumbering> = None;
        // Read a few files at a time in parallel and merge them in order, so
        // the decoded parts never hold more than a window beside the result.
        let window = rayon::current_num_threads().max(1) * 2;
        let from_memory = |f: &FileEntry| {
            fresh.and_then(|(loans, written)| {
                let rows = written.rows_of(f)?;
                columns::part_of_rows(loans, rows)
            })
        };
        for chunk in files.chunks(window) {
            // The index is made before a chunk with a file to decode: titles
            // already in the global dictionary are resolved inside the
            // parallel phase, without copying their strings out of the file;
            // only new ones are left for the ordered merge.
            let decodes = |f: &&FileEntry| fresh.is_none_or(|(_, w)| w.rows_of(f).is_none());
            if index.is_none() && chunk.iter().any(decodes) {
                index = Some(index_of(&out.title_ids));
            }
            let index_now = index.as_ref();
            let known = |t: &str| index_now.and_then(|i| i.get(t)).copied();
            let parts: Vec<_> = chunk
                .par_iter()
                .map(|f| match from_memory(f) {
                    Some(part) => Ok(part),
                    None => columns::read_loans(&self.root.join(&f.path), f.rows, &known),
                })
                .collect();
            for (f, part) in chunk.iter().zip(parts) {
                let part = part?;
                let mut remap = Vec::with_capacity(part.dict.len());
                for local in part.dict {
                    let id = match local {
                        columns::Local::Known(id) => id,
                        columns::Local::New(title, work) => {
                            // Only decoded parts name titles by string: the
                            // index holds every title named before.
                            let index = index.get_or_insert_with(|| index_of(&out.title_ids));
                            window_title(index, &mut out, &title, &work, f, &self.root)?
                        }
                        columns::Local::OfLoans(t) => {
                            // Always both: `part_of_rows` made the part from
                            // the fresh loans and checked its titles.
                            let batch = fresh.zip(of_batch.get_mut(t as usize));
                            let Some(((loans, _), slot)) = batch else {
                                return Err(StoreError::Corrupt {
                                    path: self.root.join(&f.path),
                                    reason: "a title of the loans in memory is out of range"
                                        .to_owned(),
                                });
                            };
                            if *slot == u32::MAX {
                                let (title, work) =
                                    (&loans.title_ids[t as usize], &loans.work_ids[t as usize]);
                                *slot = match index.as_mut() {
                                    Some(index) => {
                                        window_title(index, &mut out, title, work, f, &self.root)?
                                    }
                                    None => push_title(&mut out, title, work, f, &self.root)?,
                                };
                            }
                            *slot
                        }
                    };
                    remap.push(id);
                }
                // Local ids index the file's dictionary, so all are in range.
                // The rows are copied by every thread (an indexed `par_extend`
                // writes each its own stretch of the vector): one thread's
                // copying was most of this ordered merge, which held the other
                // core idle between the chunks' parallel reads.
                out.titles
                    .par_extend(part.titles.par_iter().map(|&t| remap[t as usize]));
                let rows = part.borrowers.len();
                match part.borrowers {
                    columns::Borrowers::OfLoans(rows) => out.borrowers.par_extend(rows.par_iter()),
                    columns::Borrowers::Own { rows, dictionary } => {
                        let numbering = numbering.get_or_insert_with(|| {
                            loans::BorrowerNumbering::continuing(std::mem::take(
                                &mut out.borrower_pseudonyms,
                            ))
                        });
                        let remap = dictionary
                            .iter()
                            .map(|&p| {
                                numbering.number(p).ok_or_else(|| StoreError::Corrupt {
                                    path: self.root.join(&f.path),
                                    reason: "too many distinct pseudonyms".to_owned(),
                                })
                            })
                            .collect::<Result<Vec<u32>, StoreError>>()?;
                        out.borrowers
                            .par_extend(rows.par_iter().map(|&b| remap[b as usize]));
                    }
                }
                out.months.par_extend(rayon::iter::repeat_n(f.month, rows));
            }
        }
        if let Some(numbering) = numbering {
            out.borrower_pseudonyms = numbering.into_pseudonyms();
        }
        Ok(out)
    }

    /// Every committed data file, in month then file-name order.
    pub fn data_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let manifest = self.read_manifest()?;
        let mut files: Vec<&FileEntry> = manifest.files.iter().collect();
        files.sort_by(|a, b| (a.month, &a.path).cmp(&(b.month, &b.path)));
        Ok(files.iter().map(|f| self.root.join(&f.path)).collect())
    }

    /// Data files of months before `oldest_kept` the committed manifest lists.
    fn expired_files(&self, oldest_kept: LoanMonth) -> Result<Vec<PathBuf>, StoreError> {
        Ok(self
            .read_manifest()?
            .files
            .iter()
            .filter(|f| f.month < oldest_kept)
            .map(|f| self.root.join(&f.path))
            .collect())
    }

    /// Checks each month partition: a real, owner-only directory.
    fn check_partitions(&self) -> Result<(), StoreError> {
        let dir = self.root.join(LOANS_DIR);
        for e in fs::read_dir(&dir).map_err(fsx::io_err(&dir))? {
            let e = e.map_err(fsx::io_err(&dir))?;
            if e.file_name().to_string_lossy().starts_with("month=") {
                fsx::check_private_dir(&e.path())?;
            }
        }
        Ok(())
    }

    fn check_lock(&self, lock: &StoreLock) -> Result<(), StoreError> {
        if lock.root == self.root {
            Ok(())
        } else {
            Err(StoreError::ForeignLock {
                path: lock.root.clone(),
            })
        }
    }

    fn manifest_path(&self) -> PathBuf {
        self.root.join(MANIFEST_FILE)
    }

    /// Whether `loans/` holds any partition directory.
    fn has_partitions(&self) -> Result<bool, StoreError> {
        let dir = self.root.join(LOANS_DIR);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(fsx::io_err(&dir)(e)),
        };
        for e in entries {
            let e = e.map_err(fsx::io_err(&dir))?;
            if e.file_name().to_string_lossy().starts_with("month=") {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The committed manifest; a store without one is empty, unless data
    /// is present, which means the manifest was lost.
    fn read_manifest(&self) -> Result<Manifest, StoreError> {
        let path = self.manifest_path();
        match Manifest::load(&path)? {
            Some(m) => Ok(m),
            None if self.has_partitions()? => Err(StoreError::Corrupt {
                path,
                reason: "manifest is missing but loans/ holds partitions; restore it from a backup"
                    .to_owned(),
            }),
            None => Ok(Manifest::empty()),
        }
    }

    /// Like [`Self::read_manifest`], but writes the empty manifest of a new
    /// store first, so a crash during the very first ingest is recoverable.
    fn manifest_for_write(&self) -> Result<Manifest, StoreError> {
        let path = self.manifest_path();
        if let Some(mut m) = Manifest::load(&path)? {
            // An older format is rewritten in the current one at the commit.
            m.format = manifest::FORMAT;
            return Ok(m);
        }
        let m = self.read_manifest()?;
        self.commit(&m)?;
        Ok(m)
    }

    /// Replaces the manifest atomically: the commit point of every writer.
    fn commit(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let dest = self.manifest_path();
        let tmp = self.root.join(TMP_DIR).join("manifest.json.new");
        fsx::replace_atomically(&tmp, &dest, &manifest.to_bytes(&dest)?)
    }

    /// Removes what an interrupted writer left: everything in `tmp/`, data
    /// files not in the manifest, and empty partitions. Caller holds the lock.
    fn recover(&self, manifest: &Manifest) -> Result<(), StoreError> {
        let tmp = self.root.join(TMP_DIR);
        for e in fs::read_dir(&tmp).map_err(fsx::io_err(&tmp))? {
            let e = e.map_err(fsx::io_err(&tmp))?;
            let p = e.path();
            let is_dir = e.file_type().map_err(fsx::io_err(&p))?.is_dir();
            if is_dir {
                fs::remove_dir_all(&p).map_err(fsx::io_err(&p))?;
            } else {
                fsx::remove_file_if_exists(&p)?;
            }
        }

        let live: HashSet<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
        let loans_dir = self.root.join(LOANS_DIR);
        let mut removed_dir = false;
        for part in fs::read_dir(&loans_dir).map_err(fsx::io_err(&loans_dir))? {
            let part = part.map_err(fsx::io_err(&loans_dir))?;
            let dir = part.path();
            let Some(name) = part.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !name.starts_with("month=") || !part.file_type().map_err(fsx::io_err(&dir))?.is_dir()
            {
                continue;
            }
            let mut kept = 0usize;
            let mut removed = false;
            for f in fs::read_dir(&dir).map_err(fsx::io_err(&dir))? {
                let f = f.map_err(fsx::io_err(&dir))?;
                let fname = f.file_name();
                let fname = fname.to_string_lossy();
                let rel = format!("{LOANS_DIR}/{name}/{fname}");
                let is_file = f.file_type().map_err(fsx::io_err(&f.path()))?.is_file();
                // Only our own data files are removed; anything else an
                // operator put here is left alone.
                if !live.contains(rel.as_str()) && is_file && fname.ends_with(".parquet") {
                    fsx::remove_file_if_exists(&f.path())?;
                    removed = true;
                } else {
                    kept += 1;
                }
            }
            if removed {
                fsx::sync_dir(&dir)?;
            }
            if kept == 0 {
                fs::remove_dir(&dir).map_err(fsx::io_err(&dir))?;
                removed_dir = true;
            }
        }
        if removed_dir {
            fsx::sync_dir(&loans_dir)?;
        }
        Ok(())
    }
}

/// The window id of `title`, a title of file `f`: its id in `index`, or
/// else the next one, with the title and its work copied into `out`.
fn window_title(
    index: &mut hashbrown::HashMap<String, u32>,
    out: &mut Loans,
    title: &str,
    work: &str,
    f: &FileEntry,
    root: &Path,
) -> Result<u32, StoreError> {
    if let Some(&id) = index.get(title) {
        return Ok(id);
    }
    let new = push_title(out, title, work, f, root)?;
    index.insert(title.to_owned(), new);
    Ok(new)
}

/// Appends a title the window does not hold yet to its dictionary.
fn push_title(
    out: &mut Loans,
    title: &str,
    work: &str,
    f: &FileEntry,
    root: &Path,
) -> Result<u32, StoreError> {
    let new = u32::try_from(out.title_ids.len())
        .ok()
        .filter(|&n| n != u32::MAX)
        .ok_or_else(|| StoreError::Corrupt {
            path: root.join(&f.path),
            reason: "too many distinct titles".to_owned(),
        })?;
    out.title_ids.push(title.to_owned());
    out.work_ids.push(work.to_owned());
    Ok(new)
}

/// The window's dictionary so far, by string.
fn index_of(titles: &[String]) -> hashbrown::HashMap<String, u32> {
    // Below u32::MAX: `push_title` numbered them.
    titles
        .iter()
        .enumerate()
        .map(|(id, t)| (t.clone(), id as u32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use loans::Pseudonym;

    fn month(y: i32, m: u32) -> LoanMonth {
        LoanMonth::new(y, m).unwrap()
    }

    #[test]
    fn rows_are_grouped_by_month_in_order_without_expired_ones() {
        let months = [
            month(2024, 3),
            month(2023, 12),
            month(2024, 1),
            month(2024, 3),
            month(2023, 11),
            month(2024, 1),
        ];
        let (groups, expired) = rows_by_month(&months, month(2023, 12));
        assert_eq!(expired, 1);
        assert_eq!(
            groups,
            [
                (month(2023, 12), vec![1]),
                (month(2024, 1), vec![2, 5]),
                (month(2024, 3), vec![0, 3]),
            ]
        );
        let (groups, expired) = rows_by_month(&months, month(2025, 1));
        assert!(groups.is_empty());
        assert_eq!(expired, 6);
        assert_eq!(rows_by_month(&[], month(2025, 1)), (Vec::new(), 0));
        // Across row chunks, rows stay in order within their month.
        let pick = [
            month(2023, 11),
            month(2023, 12),
            month(2024, 1),
            month(2024, 3),
        ];
        let many: Vec<LoanMonth> = (0..700_000usize).map(|r| pick[r * 7 % 11 % 4]).collect();
        let (groups, expired) = rows_by_month(&many, month(2023, 12));
        let want: Vec<(LoanMonth, Vec<u32>)> = pick[1..]
            .iter()
            .map(|&m| {
                let rows = (0..700_000u32).filter(|&r| many[r as usize] == m);
                (m, rows.collect())
            })
            .collect();
        assert_eq!(groups, want);
        let older = many.iter().filter(|&&m| m < month(2023, 12)).count();
        assert_eq!(expired, older as u64);
    }

    fn batch() -> (BatchRecord, Loans) {
        let loans = Loans::from_rows(
            &[Pseudonym([1; 16]), Pseudonym([2; 16]), Pseudonym([3; 16])],
            vec![0, 1, 0],
            vec![month(2024, 1), month(2024, 2), month(2024, 2)],
            vec!["a".into(), "b".into()],
            vec!["a".into(), "b".into()],
        );
        let rec = BatchRecord {
            id: "ab".repeat(32),
            pseudonym_key: "00112233aabbccdd".into(),
            rows: 3,
        };
        (rec, loans)
    }

    #[test]
    fn crash_after_placing_files_leaves_orphans_that_recovery_removes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s");
        let store = Store::open(&root).unwrap();
        let lock = store.lock().unwrap();
        let (rec, loans) = batch();
        // Replay ingest up to the manifest rename, then "crash".
        let manifest = store.manifest_for_write().unwrap();
        let stage = root.join(TMP_DIR).join(&rec.id);
        fsx::ensure_dir(&stage).unwrap();
        let works = columns::WorkIndex::of(&loans);
        columns::write_month(
            &stage.join("x.parquet"),
            &loans,
            &works,
            &loans.carried(vec![0]),
            month(2024, 1),
        )
        .unwrap();
        let placed = root.join(manifest::data_file_path(month(2024, 2), &rec.id));
        fsx::ensure_dir(placed.parent().unwrap()).unwrap();
        columns::write_month(
            &placed,
            &loans,
            &works,
            &loans.carried(vec![1, 2]),
            month(2024, 2),
        )
        .unwrap();
        drop(manifest);
        drop(lock);

        let store = Store::open(&root).unwrap();
        assert!(store.data_files().unwrap().is_empty());
        assert_eq!(store.status().unwrap().rows, 0);
        assert!(
            store
                .scan(month(2000, 1), month(2100, 1))
                .unwrap()
                .is_empty()
        );

        let lock = store.lock().unwrap();
        let out = store.ingest(&lock, &rec, &loans, month(2024, 1)).unwrap();
        assert_eq!(
            out,
            IngestOutcome::Ingested {
                rows: 3,
                months: vec![month(2024, 1), month(2024, 2)],
                expired_rows: 0,
                repeated_rows: 0
            }
        );
        assert_eq!(fs::read_dir(root.join(TMP_DIR)).unwrap().count(), 0);
        assert_eq!(store.scan(month(2024, 1), month(2024, 2)).unwrap().len(), 3);
    }

    #[test]
    fn pseudonym_set_counts_distinct_values() {
        let mut s = PseudonymSet::default();
        for i in 0..1000u128 {
            s.insert(i << 64);
            s.insert(i);
        }
        s.insert(0);
        assert_eq!(s.len(), 1999);
    }

    #[test]
    fn errors_are_lower_case_without_trailing_dot() {
        let errs = [
            StoreError::Locked {
                path: "/s/LOCK".into(),
            },
            StoreError::Corrupt {
                path: "/s/manifest.json".into(),
                reason: "bad".into(),
            },
            StoreError::Permissions {
                path: "/s".into(),
                mode: 0o755,
            },
            StoreError::InvalidBatch { reason: "x".into() },
            StoreError::ForeignLock { path: "/t".into() },
        ];
        for e in errs {
            let s = e.to_string();
            assert!(!s.ends_with('.'), "{s}");
            assert!(
                s.chars().next().unwrap().is_lowercase() || s.starts_with('/'),
                "{s}"
            );
        }
        assert!(
            StoreError::Permissions {
                path: "/s".into(),
                mode: 0o755
            }
            .to_string()
            .contains("755")
        );
    }
}
