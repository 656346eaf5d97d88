//! Owner-only file system primitives with durable renames.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::StoreError;

/// Mode of every directory the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// `O_NOFOLLOW`: open fails (`ELOOP`) on a symbolic link in the last component.
pub(crate) const NOFOLLOW: i32 = rustix::fs::OFlags::NOFOLLOW.bits() as i32;

/// Mode of every file the store creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Wraps an I/O error with the path it happened on.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and missing parents) with mode 0700; returns whether it was created.
/// An existing `dir` must be a real directory (not a symbolic link to one).
pub(crate) fn ensure_dir(dir: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(m) if m.file_type().is_symlink() => {
            return Err(StoreError::Symlink {
                path: dir.to_path_buf(),
            });
        }
        Ok(_) => {
            return Err(StoreError::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(dir)(e)),
    }
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(io_err(dir))?;
    Ok(true)
}

/// Checks that `dir`, a directory of the store's tree, is a real directory
/// (not a symbolic link) that group and others cannot access.
pub(crate) fn check_private_dir(dir: &Path) -> Result<(), StoreError> {
    let m = fs::symlink_metadata(dir).map_err(io_err(dir))?;
    if m.file_type().is_symlink() {
        return Err(StoreError::Symlink {
            path: dir.to_path_buf(),
        });
    }
    if !m.is_dir() {
        return Err(StoreError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mode = m.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(StoreError::Permissions {
            path: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Opens an existing file for reading without following a symbolic link in
/// its last component (`ELOOP` then, reported as [`StoreError::Symlink`]).
pub(crate) fn open_nofollow(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(NOFOLLOW)
        .open(path)
        .map_err(open_err(path))
}

/// Wraps an error of an `O_NOFOLLOW` open: `ELOOP` is [`StoreError::Symlink`].
pub(crate) fn open_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            StoreError::Symlink {
                path: path.to_path_buf(),
            }
        } else {
            io_err(path)(e)
        }
    }
}

/// Whether an I/O error means the file system is out of space or inodes.
pub(crate) fn is_out_of_space(e: &StoreError) -> bool {
    matches!(e, StoreError::Io { source, .. }
        if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
}

/// Makes a directory's entries durable (new, renamed or removed names).
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Creates a new owner-only file; fails if the name is taken.
pub(crate) fn create_new(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .map_err(io_err(path))
}

/// Writes `bytes` to `tmp`, syncs it, renames it over `dest` and syncs the
/// directory of `dest`: readers see the old or the new content, never a mix.
pub(crate) fn replace_atomically(tmp: &Path, dest: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    remove_file_if_exists(tmp)?;
    let mut f = create_new(tmp)?;
    f.write_all(bytes).map_err(io_err(tmp))?;
    f.sync_all().map_err(io_err(tmp))?;
    drop(f);
    fs::rename(tmp, dest).map_err(io_err(dest))?;
    if let Some(parent) = dest.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file_if_exists(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replace_atomically_writes_owner_only_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.json");
        let tmp = dir.path().join("m.json.new");
        replace_atomically(&tmp, &dest, b"one").unwrap();
        replace_atomically(&tmp, &dest, b"two").unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"two");
        assert!(!tmp.exists());
        let mode = fs::metadata(&dest).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
    }

    #[test]
    fn ensure_dir_creates_once_and_rejects_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("a/b");
        assert!(ensure_dir(&d).unwrap());
        assert!(!ensure_dir(&d).unwrap());
        let mode = fs::metadata(&d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, DIR_MODE);
        let f = dir.path().join("f");
        fs::write(&f, b"").unwrap();
        assert!(matches!(
            ensure_dir(&f),
            Err(StoreError::NotADirectory { .. })
        ));
    }
}
