//! Run locks: a second concurrent run of the same stage exits at once
//! instead of writing twice (the lesson of the mailing sent twice by a double
//! click).

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context as _, Result};

use crate::context::Busy;

/// Mode of directories holding personal data (outbox).
pub(crate) const PRIVATE_DIR: u32 = 0o700;
/// Mode of the published output directory: a web server passes through it
/// to the served `feed` link, but cannot list it.
pub(crate) const SERVED_DIR: u32 = 0o711;

/// An exclusive advisory lock held until dropped.
pub(crate) struct RunLock {
    _file: File,
}

impl RunLock {
    /// Takes the lock file `dir/LOCK` without waiting, creating a missing
    /// `dir` with `dir_mode` (0700 for private data, 0711 for a directory
    /// that a web server must traverse).
    pub fn acquire(dir: &Path, what: &'static str, dir_mode: u32) -> Result<RunLock> {
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(dir_mode)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            // The umask may have narrowed the mode (0077 under systemd's UMask).
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(dir_mode))
                .with_context(|| format!("setting the mode of {}", dir.display()))?;
        }
        let path = dir.join("LOCK");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            // A link planted at LOCK must not make us create or lock a file
            // elsewhere.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
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
