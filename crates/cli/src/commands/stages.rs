//! Helpers shared by the stage commands (extract, ingest, export, verify,
//! status, run), in one place so that the command modules do not import each other.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use loans::Loans;
use pipeline::Pipeline;
use publish::Forbidden;
use store::Store;

use crate::context::{Context, Refused};

/// Loads a key (creating it only if the pipeline allows it).
pub(crate) fn load_key(
    ctx: &Context,
    path: &Path,
    create: bool,
    role: &str,
) -> Result<keys::SecretKey> {
    let (key, created) = keys::load_or_create_key_file(path, create)
        .with_context(|| format!("loading the {role} key"))?;
    if created {
        ctx.say(format!(
            "created {role} key {} (fingerprint {})",
            path.display(),
            key.fingerprint()
        ));
    }
    Ok(key)
}

/// Opens (creating if needed) the pipeline's store.
pub(crate) fn open_store(p: &Pipeline) -> Result<Store> {
    Store::open(&p.store.path).with_context(|| format!("opening store {}", p.store.path.display()))
}

/// A batch this process has just extracted, kept in memory: a one-host
/// `run` ingests it without sealing it into a file and reading it back.
pub(crate) struct Fresh {
    /// Its metadata, as sealing would give it.
    pub meta: batch::BatchMeta,
    /// The loans it holds.
    pub loans: loans::Loans,
    /// Its ingest's first part, made while the batch was named; taken by
    /// the ingest.
    pub prepared: Option<store::Prepared>,
}

/// Name of the quarantine directory inside the inbox.
pub(crate) const QUARANTINE_DIR: &str = "quarantine";
/// Extension of the file beside a quarantined batch that says why.
const REASON_EXTENSION: &str = "reason";

/// The inbox's quarantine directory.
pub(crate) fn quarantine_dir(p: &Pipeline) -> PathBuf {
    p.transfer.inbox().join(QUARANTINE_DIR)
}

/// Moves a batch file that could not be ingested out of the inbox into
/// `<inbox>/quarantine/`, with `<name>.reason` beside it holding the day and
/// the reason (which names no data). Returns where it went. A symbolic link
/// is moved as the link itself.
pub(crate) fn quarantine(
    p: &Pipeline,
    batch: &Path,
    reason: &str,
    today: jiff::civil::Date,
) -> Result<PathBuf> {
    let dir = quarantine_dir(p);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| !m.is_dir()) {
        anyhow::bail!(
            "{} is a symbolic link or not a directory; batches are quarantined only into a real directory",
            dir.display()
        );
    }
    let name = batch
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "batch".to_owned());
    // Never overwrite an earlier quarantined file of the same name.
    let mut dest = dir.join(&name);
    let mut n = 1;
    while std::fs::symlink_metadata(&dest).is_ok() {
        dest = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    let why = dest.with_file_name(format!(
        "{}.{REASON_EXTENSION}",
        dest.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&why)
        .with_context(|| format!("writing {}", why.display()))?;
    writeln!(f, "{today}: {reason}").with_context(|| format!("writing {}", why.display()))?;
    std::fs::rename(batch, &dest)
        .with_context(|| format!("moving {} to {}", batch.display(), dest.display()))?;
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(dest)
}

/// One quarantined batch file and why it is there.
pub(crate) struct Quarantined {
    /// The file in the quarantine directory.
    pub path: PathBuf,
    /// The reason recorded, or why it could not be read.
    pub reason: String,
}

/// The batches in quarantine, by name.
pub(crate) fn quarantined(p: &Pipeline) -> Result<Vec<Quarantined>> {
    let dir = quarantine_dir(p);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    let mut out = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|x| x == REASON_EXTENSION) {
            continue;
        }
        let why = path.with_file_name(format!(
            "{}.{REASON_EXTENSION}",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let reason = read_small_text(&why)
            .map(|t| t.trim().to_owned())
            .unwrap_or_else(|e| format!("no reason recorded ({e})"));
        out.push(Quarantined { path, reason });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Reads a small text file the process wrote itself (a reason, a link
/// record), refusing a symbolic link and anything over 64 KiB.
pub(crate) fn read_small_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    const MAX: u64 = 64 << 10;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    f.take(MAX + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX {
        return Err(std::io::Error::other("larger than 64 KiB"));
    }
    String::from_utf8(bytes).map_err(|_| std::io::Error::other("not UTF-8 text"))
}

/// The store's loans of `first..=last`, refused if they mix pseudonym keys;
/// the rows of `fresh`'s files come from its loans in memory.
pub(crate) fn scan_months(
    ctx: &Context,
    store: &Store,
    first: loans::LoanMonth,
    last: loans::LoanMonth,
    fresh: Option<(&Loans, &store::Written)>,
) -> Result<Loans> {
    refuse_mixed_keys(store, first, last)?;
    ctx.stage("read store", || {
        store
            .scan_reusing(first, last, fresh)
            .with_context(|| format!("reading months {first}..{last} from the store"))
    })
}

/// Adds lent borrower ids to a forbidden set.
pub(crate) fn add_borrower_ids(f: &mut Forbidden, ids: &mut dyn Iterator<Item = &[u8]>) {
    for id in ids {
        f.add_identifier(&String::from_utf8_lossy(id));
    }
}

/// Refuses a window whose loans were pseudonymized under more than one key:
/// one borrower would count as two, inflating every support count past what
/// k promises.
fn refuse_mixed_keys(store: &Store, first: loans::LoanMonth, last: loans::LoanMonth) -> Result<()> {
    let keys = store.pseudonym_keys(first, last)?;
    if keys.len() > 1 {
        return Err(Refused(format!(
            "months {first}..{last} hold loans pseudonymized under {} different pseudonym keys ({}); \
             one borrower would count as several, so nothing is published. After a key change, \
             start a new store (docs/operations.md)",
            keys.len(),
            keys.join(", ")
        ))
        .into());
    }
    Ok(())
}

/// Everything that must never appear in published output and that this host
/// can know: the pseudonyms of the window's borrower dictionary (in `run`
/// also the fresh batch's borrowers outside the window), whichever key files are present, and
/// the borrower ids of the loans file when it is on this host.
///
/// `ids` is a set already holding the borrower ids (lent by `run`'s own
/// extraction); without it, the ids are read from the loans file if present.
pub(crate) fn forbidden(
    ctx: &Context,
    p: &Pipeline,
    input: Option<&Path>,
    ids: Option<Forbidden>,
    loans: &Loans,
) -> Result<Forbidden> {
    let have_ids = ids.is_some();
    let mut f = ids.unwrap_or_default();
    f.add_pseudonyms(&loans.borrower_pseudonyms);
    // The keys as stored and the keys actually used (derived per purpose).
    if let Some(k) = optional_key(&p.keys.pseudonym)? {
        f.add_secret(k.expose_secret());
        let lib = p.library.id.as_bytes();
        let purpose = p.library.purpose.as_bytes();
        f.add_secret(
            k.derive(&[pseudonym::PURPOSE_PSEUDONYM, lib, purpose])
                .expose_secret(),
        );
    }
    if let Some(k) = optional_key(&p.keys.transfer)? {
        f.add_secret(k.expose_secret());
        f.add_secret(k.derive(&[batch::PURPOSE_BATCH_SEAL]).expose_secret());
    }
    let source = input.unwrap_or(&p.source.path);
    if !have_ids && source.exists() {
        let input = extract::ExtractInput {
            source: &p.source,
            works: None,
            input: Some(source),
            today: ctx.today,
        };
        extract::lend_borrower_ids(&input, |ids| add_borrower_ids(&mut f, ids)).with_context(
            || {
                format!(
                    "reading borrower ids of {} for the leak check",
                    source.display()
                )
            },
        )?;
    }
    f.prepare();
    Ok(f)
}

/// A key file that may legitimately be absent on this host (the pseudonym key
/// never leaves the extractor's host).
fn optional_key(path: &Path) -> Result<Option<keys::SecretKey>> {
    if !path.exists() {
        return Ok(None);
    }
    Ok(Some(keys::load_key_file(path)?))
}

/// Writes `bytes` to `path` owner-only (0600 whatever the umask), through a
/// new temporary file beside it, an fsync and a rename, then syncs the
/// directory: a reader sees the old file or the new one, never a part, and
/// a symbolic link at `path` is replaced, never followed. The one home of
/// the private records (link records, refusals, the report).
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(bytes)?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
