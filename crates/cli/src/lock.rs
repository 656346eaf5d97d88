//! Run locks: a second concurrent run of the same stage exits at once
//! instead of writing twice (the lesson of the mailing sent twice by a double
//! click).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::context::Busy;

/// An exclusive advisory lock held until dropped.
pub(crate) struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock file `dir/LOCK` without waiting, creating `dir` owner-only.
    pub fn acquire(dir: &Path, what: &'static str) -> Result<RunLock> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("opening lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(RunLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Busy {
                what,
                path: path.display().to_string(),
            }
            .into()),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
    }
}
