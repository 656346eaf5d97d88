//! Sealed transfer batches of pseudonymous loans.
//!
//! A batch carries one extraction run from the circulation host to the
//! mining side. Its payload is a deterministic columnar encoding of
//! [`loans::Loans`], named by its SHA-256 ([`BatchId`]), and sealed with
//! AES-256-GCM under a key derived from the transfer key. The cleartext
//! envelope header (id, key fingerprints, library, purpose, row count, nonce)
//! is authenticated as associated data, so it can be read before decryption
//! but not altered. See `docs/design.md#envelope` for the byte layout.

use std::borrow::Cow;
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use keys::{Fingerprint, SecretKey};
use loans::{LoanMonth, Loans, LoansError, PSEUDONYM_LEN, Pseudonym};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};

/// First bytes of every sealed batch.
pub const MAGIC: &[u8; 8] = b"ABBATCH1";

/// Envelope version written by this crate.
pub const ENVELOPE_VERSION: u16 = 1;

/// Payload encoding version written by this crate. Version 1 (each row's
/// pseudonym) is still read.
pub const PAYLOAD_VERSION: u32 = 2;

/// HKDF info of the batch sealing key, derived from the transfer key.
pub const PURPOSE_BATCH_SEAL: &[u8] = b"batch-seal";

/// Longest library or purpose label, in bytes.
pub const MAX_LABEL_LEN: usize = 1024;

/// File name extension of batches in an outbox.
pub const BATCH_EXTENSION: &str = "batch";

const TAG_LEN: usize = 16;
/// Bytes of one row in the payload: borrower index, title index, month index.
const ROW_LEN: usize = 4 + 4 + 4;
/// Bytes of one row in a version 1 payload: pseudonym, title index, month index.
const ROW_LEN_V1: usize = PSEUDONYM_LEN + 4 + 4;
/// Envelope header up to the variable-length labels.
const FIXED_HEADER_LEN: usize = 8 + 2 + 32 + 8 + 8 + 8 + NONCE_LEN + 8;

/// Content address of a batch: SHA-256 of its plaintext payload.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BatchId(pub [u8; 32]);

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// Error parsing a [`BatchId`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseBatchIdError {
    /// The text is not 64 characters long.
    #[error("a batch id has 64 hex characters, not {0}")]
    Length(usize),
    /// The text holds a character that is not a hexadecimal digit.
    #[error("a batch id holds only hex characters")]
    NotHex,
}

impl FromStr for BatchId {
    type Err = ParseBatchIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 {
            return Err(ParseBatchIdError::Length(s.len()));
        }
        let mut id = [0u8; 32];
        hex::decode_to_slice(s, &mut id).map_err(|_| ParseBatchIdError::NotHex)?;
        Ok(BatchId(id))
    }
}

/// What a batch is, as told by its authenticated header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchMeta {
    /// Content address of the payload.
    pub id: BatchId,
    /// Library the loans come from.
    pub library: String,
    /// Purpose the pseudonyms were made for.
    pub purpose: String,
    /// Fingerprint of the master key the pseudonyms were made under.
    pub pseudonym_key: Fingerprint,
    /// Number of loan rows.
    pub rows: u64,
}

/// Error of sealing, opening or storing a batch.
///
/// Messages never include pseudonyms, titles or key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// Wrong transfer key, or the sealed bytes were altered.
    #[error("batch failed authentication: wrong transfer key or corrupted file")]
    Authentication,
    /// The bytes end before the envelope says they should.
    #[error("batch is truncated: {len} bytes, at least {needed} expected")]
    Truncated {
        /// Bytes present.
        len: u64,
        /// Bytes the envelope needs.
        needed: u64,
    },
    /// The bytes go on past the end of the envelope.
    #[error("batch has {extra} unexpected bytes after its end")]
    TrailingBytes {
        /// Bytes after the envelope.
        extra: u64,
    },
    /// The bytes do not start with the batch magic.
    #[error("not a batch: bad magic bytes")]
    BadMagic,
    /// The envelope version is not one this build reads.
    #[error("unsupported batch envelope version {0}")]
    UnsupportedVersion(u16),
    /// The payload version is not one this build reads.
    #[error("unsupported batch payload version {0}")]
    UnsupportedPayloadVersion(u32),
    /// A header field is malformed (e.g. a label that is not UTF-8).
    #[error("malformed batch header: {0}")]
    MalformedHeader(&'static str),
    /// The decrypted payload is malformed.
    #[error("malformed batch payload at byte {offset}: {reason}")]
    MalformedPayload {
        /// Payload offset where decoding stopped.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// The batch id is not the hash of the payload (or not the id expected).
    #[error("batch id does not match its contents")]
    IdMismatch,
    /// A header field disagrees with the same field inside the payload.
    #[error("batch header field {0} does not match the sealed payload")]
    HeaderMismatch(&'static str),
    /// A row holds a month outside years 1 to 9999.
    #[error("batch row {row} holds an invalid month")]
    InvalidMonth {
        /// Row index.
        row: u64,
    },
    /// The loan columns do not fit together.
    #[error("batch loans are invalid: {0}")]
    InvalidLoans(#[from] LoansError),
    /// A label or the data is too large for the format.
    #[error("batch {what} is too large for the batch format")]
    TooLarge {
        /// What was too large.
        what: &'static str,
    },
    /// The operating system random number generator failed.
    #[error("the operating system random number generator failed")]
    Random,
    /// The AEAD refused to seal (only for inputs beyond its limits).
    #[error("batch encryption failed")]
    Seal,
    /// A path where a batch file belongs holds something else.
    #[error("{path} is {what}, not a batch file; remove it", path = .path.display())]
    NotABatchFile {
        /// The path.
        path: PathBuf,
        /// What was found there, e.g. "a directory".
        what: &'static str,
    },
    /// An I/O error on a batch file or directory.
    #[error("cannot {action} {path}: {source}", path = .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Underlying error.
        source: io::Error,
    },
}

impl BatchError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> BatchError {
        BatchError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Encodes `loans` deterministically, names it by the hash of the encoding,
/// and seals it with AES-256-GCM under `transfer.derive(&[b"batch-seal"])`
/// with a random nonce and the envelope header as associated data.
pub fn seal(
    loans: &Loans,
    library: &str,
    purpose: &str,
    pseudonym_key: Fingerprint,
    transfer: &SecretKey,
) -> Result<(BatchMeta, Vec<u8>), BatchError> {
    seal_cow(
        Cow::Borrowed(loans),
        library,
        purpose,
        pseudonym_key,
        transfer,
    )
}

/// Like [`seal`], consuming `loans` and freeing each column as soon as it
/// is encoded: the peak memory is then the loans plus their largest column,
/// not the loans twice.
pub fn seal_owned(
    loans: Loans,
    library: &str,
    purpose: &str,
    pseudonym_key: Fingerprint,
    transfer: &SecretKey,
) -> Result<(BatchMeta, Vec<u8>), BatchError> {
    seal_cow(Cow::Owned(loans), library, purpose, pseudonym_key, transfer)
}

fn seal_cow(
    mut loans: Cow<'_, Loans>,
    library: &str,
    purpose: &str,
    pseudonym_key: Fingerprint,
    transfer: &SecretKey,
) -> Result<(BatchMeta, Vec<u8>), BatchError> {
    loans.validate()?;
    check_label("library", library)?;
    check_label("purpose", purpose)?;
    let payload_len = payload_len(&loans, library, purpose)?;
    let rows = loans.len() as u64;
    let header_len = FIXED_HEADER_LEN + 4 + library.len() + 4 + purpose.len();

    // One allocation: header space, payload encoded in place, then the tag.
    let mut out = Vec::with_capacity(header_len + payload_len + TAG_LEN);
    out.resize(header_len, 0);
    encode_payload(&mut out, &mut loans, library, purpose, pseudonym_key)?;
    debug_assert_eq!(out.len(), header_len + payload_len);
    let id = BatchId(Sha256::digest(&out[header_len..]).into());

    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| BatchError::Random)?;
    let header = Header {
        id,
        pseudonym_key,
        transfer_key: transfer.fingerprint(),
        rows,
        nonce,
        payload_len: payload_len as u64,
        library: library.to_owned(),
        purpose: purpose.to_owned(),
    };
    let (head, body) = out.split_at_mut(header_len);
    header.write(head);
    let tag = seal_key(transfer)?
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&*head), body)
        .map_err(|_| BatchError::Seal)?;
    out.extend_from_slice(tag.as_ref());
    Ok((header.into_meta(), out))
}

/// Verifies and decrypts a sealed batch, checking that its id is the hash of
/// the payload, that the header agrees with the payload, and that the loans
/// are valid.
pub fn open(sealed: &[u8], transfer: &SecretKey) -> Result<(BatchMeta, Loans), BatchError> {
    open_owned(sealed.to_vec(), transfer)
}

/// Like [`open`], decrypting in place in the buffer given, so that opening
/// needs no second copy of the batch.
pub fn open_owned(
    mut sealed: Vec<u8>,
    transfer: &SecretKey,
) -> Result<(BatchMeta, Loans), BatchError> {
    let (header, header_len) = Header::parse(&sealed)?;
    if header.transfer_key != transfer.fingerprint() {
        return Err(BatchError::Authentication);
    }
    let (aad, body) = sealed.split_at_mut(header_len);
    let plain = seal_key(transfer)?
        .open_in_place(
            Nonce::assume_unique_for_key(header.nonce),
            Aad::from(&*aad),
            body,
        )
        .map_err(|_| BatchError::Authentication)?;
    if BatchId(Sha256::digest(&*plain).into()) != header.id {
        return Err(BatchError::IdMismatch);
    }
    let decoded = decode_payload(plain)?;
    if decoded.library != header.library {
        return Err(BatchError::HeaderMismatch("library"));
    }
    if decoded.purpose != header.purpose {
        return Err(BatchError::HeaderMismatch("purpose"));
    }
    if decoded.pseudonym_key != header.pseudonym_key {
        return Err(BatchError::HeaderMismatch("pseudonym key"));
    }
    if decoded.loans.len() as u64 != header.rows {
        return Err(BatchError::HeaderMismatch("rows"));
    }
    decoded.loans.validate()?;
    Ok((header.into_meta(), decoded.loans))
}

/// The longest possible envelope header.
const MAX_HEADER_LEN: usize = FIXED_HEADER_LEN + 2 * (4 + MAX_LABEL_LEN);

/// Opens the batch file at `path`: refuses a symbolic link or anything but
/// a regular file, checks the envelope's length against the file's size
/// before reading the rest (so a junk file costs a few hundred bytes of
/// memory, not its size), then reads it once and decrypts it in place.
pub fn open_file(path: &Path, transfer: &SecretKey) -> Result<(BatchMeta, Loans), BatchError> {
    let mut file = open_nofollow(path)?;
    let meta = file
        .metadata()
        .map_err(|e| BatchError::io("inspect batch file", path, e))?;
    if !meta.is_file() {
        return Err(BatchError::NotABatchFile {
            path: path.to_path_buf(),
            what: "not a regular file",
        });
    }
    let len = meta.len();
    let mut prefix = Vec::with_capacity(MAX_HEADER_LEN);
    (&mut file)
        .take(MAX_HEADER_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| BatchError::io("read batch file", path, e))?;
    // Length checks against the size on disk, before the body is read.
    Header::parse_prefix(&prefix, len)?;
    let size = usize::try_from(len).map_err(|_| BatchError::TooLarge { what: "file" })?;
    let mut sealed = prefix;
    sealed
        .try_reserve_exact(size.saturating_sub(sealed.len()))
        .map_err(|_| BatchError::TooLarge { what: "file" })?;
    (&mut file)
        .take((len + 1).saturating_sub(sealed.len() as u64))
        .read_to_end(&mut sealed)
        .map_err(|e| BatchError::io("read batch file", path, e))?;
    // A file that changed size while being read fails the exact-length
    // check in `open_owned`.
    open_owned(sealed, transfer)
}

/// Opens an existing file for reading, refusing a symbolic link.
fn open_nofollow(path: &Path) -> Result<File, BatchError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
                BatchError::NotABatchFile {
                    path: path.to_path_buf(),
                    what: "a symbolic link",
                }
            } else {
                BatchError::io("open batch file", path, e)
            }
        })
}

/// What [`write_to_outbox`] found at the batch's file name before it wrote
/// the batch there.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutboxFound {
    /// No file: the usual case.
    Nothing,
    /// A complete envelope of the same batch id. It was replaced all the
    /// same: without the transfer key its contents cannot be verified.
    SameBatch,
    /// A symbolic link; the link was replaced, its target left alone.
    Symlink,
    /// A file that is not a complete envelope of this batch, and why.
    Damaged(String),
}

impl fmt::Display for OutboxFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OutboxFound::Nothing => f.write_str("no file"),
            OutboxFound::SameBatch => f.write_str("an earlier copy of the same batch"),
            OutboxFound::Symlink => f.write_str("a symbolic link"),
            OutboxFound::Damaged(why) => write!(f, "a damaged file ({why})"),
        }
    }
}

/// Inspects what is at `path` without following a symbolic link.
fn inspect_outbox_entry(path: &Path, id: BatchId) -> Result<OutboxFound, BatchError> {
    let m = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(OutboxFound::Nothing),
        Err(e) => return Err(BatchError::io("inspect batch file", path, e)),
    };
    if m.file_type().is_symlink() {
        return Ok(OutboxFound::Symlink);
    }
    if m.is_dir() {
        return Err(BatchError::NotABatchFile {
            path: path.to_path_buf(),
            what: "a directory",
        });
    }
    if !m.is_file() {
        return Ok(OutboxFound::Damaged("not a regular file".to_owned()));
    }
    let mut prefix = Vec::with_capacity(MAX_HEADER_LEN);
    open_nofollow(path)?
        .take(MAX_HEADER_LEN as u64)
        .read_to_end(&mut prefix)
        .map_err(|e| BatchError::io("read batch file", path, e))?;
    Ok(match Header::parse_prefix(&prefix, m.len()) {
        Ok((h, _)) if h.id == id => OutboxFound::SameBatch,
        Ok(_) => OutboxFound::Damaged("its header names another batch".to_owned()),
        Err(e) => OutboxFound::Damaged(e.to_string()),
    })
}

/// Reads the header of a sealed batch without verifying it: for listing and
/// naming only, never for trusting (use [`open`] for that).
pub fn peek_meta(sealed: &[u8]) -> Result<BatchMeta, BatchError> {
    Header::parse(sealed).map(|(h, _)| h.into_meta())
}

/// Writes `<id>.batch` into `dir` (created with mode 0700) atomically and
/// returns its path and what was there before.
///
/// Nothing already at that name is trusted: a file there (an earlier copy,
/// a truncated write, anything) or a symbolic link is replaced by the new
/// bytes through a rename, which never follows a link; a directory there is
/// an error.
pub fn write_to_outbox(
    dir: &Path,
    meta: &BatchMeta,
    sealed: &[u8],
) -> Result<(PathBuf, OutboxFound), BatchError> {
    // The file name must be the id the header carries, or ingest would
    // trust a name its contents contradict.
    if peek_meta(sealed)?.id != meta.id {
        return Err(BatchError::IdMismatch);
    }
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| BatchError::io("create outbox directory", dir, e))?;
    let path = dir.join(format!("{}.{BATCH_EXTENSION}", meta.id));
    let found = inspect_outbox_entry(&path, meta.id)?;

    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| BatchError::Random)?;
    let tmp = dir.join(format!(".{}.tmp-{}", meta.id, hex::encode(suffix)));
    let written = write_synced(&tmp, sealed).and_then(|()| {
        fs::rename(&tmp, &path).map_err(|e| BatchError::io("rename batch file into", &path, e))
    });
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BatchError::io("sync outbox directory", dir, e))?;
    Ok((path, found))
}

/// The `*.batch` entries in `dir` (except dot files, which are unfinished
/// writes), sorted by name; a missing `dir` has none. Entries that are not
/// regular files (a symbolic link, a directory) are listed too, so that the
/// caller can say what it found: [`open_file`] refuses them.
pub fn list_batches(dir: &Path) -> Result<Vec<PathBuf>, BatchError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BatchError::io("list outbox directory", dir, e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| BatchError::io("list outbox directory", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Dot files are temporaries of an unfinished write.
        if name.starts_with('.') || path.extension().is_none_or(|x| x != BATCH_EXTENSION) {
            continue;
        }
        out.push(path);
    }
    out.sort();
    Ok(out)
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BatchError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BatchError::io("create batch file", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| BatchError::io("write batch file", path, e))
}

fn seal_key(transfer: &SecretKey) -> Result<LessSafeKey, BatchError> {
    let key = transfer.derive(&[PURPOSE_BATCH_SEAL]);
    // AES-256 takes exactly the 32 bytes every SecretKey has.
    let unbound =
        UnboundKey::new(&AES_256_GCM, key.expose_secret()).map_err(|_| BatchError::Seal)?;
    Ok(LessSafeKey::new(unbound))
}

fn check_label(what: &'static str, label: &str) -> Result<(), BatchError> {
    if label.len() > MAX_LABEL_LEN {
        return Err(BatchError::TooLarge { what });
    }
    Ok(())
}

/// The cleartext, authenticated envelope header.
struct Header {
    id: BatchId,
    pseudonym_key: Fingerprint,
    transfer_key: Fingerprint,
    rows: u64,
    nonce: [u8; NONCE_LEN],
    payload_len: u64,
    library: String,
    purpose: String,
}

impl Header {
    /// Writes the header into `out`, which is exactly its length.
    fn write(&self, out: &mut [u8]) {
        let mut w = SliceWriter { out, pos: 0 };
        w.put(MAGIC);
        w.put(&ENVELOPE_VERSION.to_le_bytes());
        w.put(&self.id.0);
        w.put(&self.pseudonym_key.0);
        w.put(&self.transfer_key.0);
        w.put(&self.rows.to_le_bytes());
        w.put(&self.nonce);
        w.put(&self.payload_len.to_le_bytes());
        // Labels are at most MAX_LABEL_LEN, checked by the caller.
        w.put(&(self.library.len() as u32).to_le_bytes());
        w.put(self.library.as_bytes());
        w.put(&(self.purpose.len() as u32).to_le_bytes());
        w.put(self.purpose.as_bytes());
        debug_assert_eq!(w.pos, w.out.len());
    }

    /// Parses the header and checks the total length; returns the header and
    /// its length in bytes.
    fn parse(sealed: &[u8]) -> Result<(Header, usize), BatchError> {
        Header::parse_prefix(sealed, sealed.len() as u64)
    }

    /// Parses the header from `sealed`, the first bytes of an envelope of
    /// `total` bytes (all of them, or at least [`MAX_HEADER_LEN`]), checking
    /// the lengths against `total`.
    fn parse_prefix(sealed: &[u8], total: u64) -> Result<(Header, usize), BatchError> {
        let truncated = |needed: usize| BatchError::Truncated {
            len: total,
            needed: needed as u64,
        };
        if sealed.len() < MAGIC.len() {
            return Err(if MAGIC.starts_with(sealed) {
                truncated(FIXED_HEADER_LEN)
            } else {
                BatchError::BadMagic
            });
        }
        if &sealed[..MAGIC.len()] != MAGIC {
            return Err(BatchError::BadMagic);
        }
        let mut r = Reader::new(sealed);
        r.pos = MAGIC.len();
        let version = r.u16().map_err(|_| truncated(FIXED_HEADER_LEN))?;
        if version != ENVELOPE_VERSION {
            return Err(BatchError::UnsupportedVersion(version));
        }
        if sealed.len() < FIXED_HEADER_LEN {
            return Err(truncated(FIXED_HEADER_LEN));
        }
        // From here on the fixed part is present, so these reads succeed.
        let id = BatchId(r.array().map_err(|_| truncated(FIXED_HEADER_LEN))?);
        let pseudonym_key = Fingerprint(r.array().map_err(|_| truncated(FIXED_HEADER_LEN))?);
        let transfer_key = Fingerprint(r.array().map_err(|_| truncated(FIXED_HEADER_LEN))?);
        let rows = r.u64().map_err(|_| truncated(FIXED_HEADER_LEN))?;
        let nonce = r.array().map_err(|_| truncated(FIXED_HEADER_LEN))?;
        let payload_len = r.u64().map_err(|_| truncated(FIXED_HEADER_LEN))?;
        let library = header_label(&mut r, total)?;
        let purpose = header_label(&mut r, total)?;
        let header_len = r.pos;

        let needed = u64::try_from(header_len)
            .ok()
            .and_then(|h| h.checked_add(payload_len))
            .and_then(|n| n.checked_add(TAG_LEN as u64))
            .ok_or(BatchError::MalformedHeader("payload length out of range"))?;
        let len = total;
        if len < needed {
            return Err(BatchError::Truncated { len, needed });
        }
        if len > needed {
            return Err(BatchError::TrailingBytes {
                extra: len - needed,
            });
        }
        let header = Header {
            id,
            pseudonym_key,
            transfer_key,
            rows,
            nonce,
            payload_len,
            library,
            purpose,
        };
        Ok((header, header_len))
    }

    fn into_meta(self) -> BatchMeta {
        BatchMeta {
            id: self.id,
            library: self.library,
            purpose: self.purpose,
            pseudonym_key: self.pseudonym_key,
            rows: self.rows,
        }
    }
}

fn header_label(r: &mut Reader<'_>, total: u64) -> Result<String, BatchError> {
    let start = r.pos;
    let truncated = |needed: usize| BatchError::Truncated {
        len: total,
        needed: needed as u64,
    };
    let len = r.u32().map_err(|_| truncated(start + 4))? as usize;
    if len > MAX_LABEL_LEN {
        return Err(BatchError::MalformedHeader("label longer than allowed"));
    }
    let bytes = r.take(len).map_err(|_| truncated(start + 4 + len))?;
    String::from_utf8(bytes.to_vec()).map_err(|_| BatchError::MalformedHeader("label is not utf-8"))
}

/// Exact payload length, computed before encoding so one allocation suffices.
fn payload_len(loans: &Loans, library: &str, purpose: &str) -> Result<usize, BatchError> {
    let dict: usize = loans
        .title_ids
        .iter()
        .zip(&loans.work_ids)
        .map(|(t, w)| 8 + t.len() + w.len())
        .sum();
    let rows = loans
        .len()
        .checked_mul(ROW_LEN)
        .ok_or(BatchError::TooLarge { what: "row count" })?;
    let borrowers = loans.borrower_pseudonyms.len() * PSEUDONYM_LEN;
    Ok(4 + 8 + 4 + library.len() + 4 + purpose.len() + 4 + dict + 4 + borrowers + 8 + rows)
}

/// Encodes the payload; an owned `loans` loses each row column once it is
/// written.
/// Where an encoded payload goes: the sealing buffer, or a hash alone.
trait Sink {
    fn extend_from_slice(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        Vec::extend_from_slice(self, bytes);
    }
}

/// SHA-256 of what is put, fed in 64 KiB pieces (rows are 24 bytes).
struct HashSink {
    hash: Sha256,
    buf: Vec<u8>,
}

impl HashSink {
    const PIECE: usize = 64 << 10;

    fn new() -> Self {
        HashSink {
            hash: Sha256::new(),
            buf: Vec::with_capacity(Self::PIECE),
        }
    }

    fn finish(mut self) -> [u8; 32] {
        self.hash.update(&self.buf);
        self.hash.finalize().into()
    }
}

impl Sink for HashSink {
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        // A whole piece (see `put_rows`) is hashed where it is, not copied.
        if self.buf.is_empty() && bytes.len() >= Self::PIECE {
            self.hash.update(bytes);
            return;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= Self::PIECE {
            self.hash.update(&self.buf);
            self.buf.clear();
        }
    }
}

/// The metadata [`seal`] gives `loans`, without encrypting or storing
/// anything: the payload is encoded into its hash only. A one-host `run`
/// that ingests the loans straight from memory needs the batch's content
/// address (the store's idempotency key) but no batch file.
pub fn identify(
    loans: &Loans,
    library: &str,
    purpose: &str,
    pseudonym_key: Fingerprint,
) -> Result<BatchMeta, BatchError> {
    check_label("library", library)?;
    check_label("purpose", purpose)?;
    // Independent, and each one thread: the loans are checked while their
    // encoding is hashed (encoding indexes nothing, so it is safe on loans
    // that fail the check).
    let (valid, hashed) = std::thread::scope(|s| {
        let valid = s.spawn(|| loans.validate());
        let mut sink = HashSink::new();
        let hashed = encode_payload(
            &mut sink,
            &mut Cow::Borrowed(loans),
            library,
            purpose,
            pseudonym_key,
        )
        .map(|()| sink.finish());
        let valid = valid
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (valid, hashed)
    });
    valid?;
    Ok(BatchMeta {
        id: BatchId(hashed?),
        library: library.to_owned(),
        purpose: purpose.to_owned(),
        pseudonym_key,
        rows: loans.len() as u64,
    })
}

fn encode_payload(
    out: &mut impl Sink,
    loans: &mut Cow<'_, Loans>,
    library: &str,
    purpose: &str,
    pseudonym_key: Fingerprint,
) -> Result<(), BatchError> {
    fn put_str(out: &mut impl Sink, what: &'static str, s: &str) -> Result<(), BatchError> {
        let len = u32::try_from(s.len()).map_err(|_| BatchError::TooLarge { what })?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(s.as_bytes());
        Ok(())
    }
    out.extend_from_slice(&PAYLOAD_VERSION.to_le_bytes());
    out.extend_from_slice(&pseudonym_key.0);
    put_str(out, "library", library)?;
    put_str(out, "purpose", purpose)?;
    let titles = u32::try_from(loans.title_ids.len()).map_err(|_| BatchError::TooLarge {
        what: "title dictionary",
    })?;
    out.extend_from_slice(&titles.to_le_bytes());
    for (t, w) in loans.title_ids.iter().zip(&loans.work_ids) {
        put_str(out, "title id", t)?;
        put_str(out, "work id", w)?;
    }
    let borrowers =
        u32::try_from(loans.borrower_pseudonyms.len()).map_err(|_| BatchError::TooLarge {
            what: "borrower dictionary",
        })?;
    out.extend_from_slice(&borrowers.to_le_bytes());
    put_rows(
        out,
        &loans.borrower_pseudonyms,
        |p, b: &mut [u8; PSEUDONYM_LEN]| {
            *b = *p.as_bytes();
        },
    );
    out.extend_from_slice(&(loans.len() as u64).to_le_bytes());
    put_rows(out, &loans.borrowers, |i, b: &mut [u8; 4]| {
        *b = i.to_le_bytes();
    });
    if let Cow::Owned(l) = loans {
        l.borrowers = Vec::new();
    }
    put_rows(out, &loans.titles, |t, b: &mut [u8; 4]| {
        *b = t.to_le_bytes();
    });
    if let Cow::Owned(l) = loans {
        l.titles = Vec::new();
    }
    put_rows(out, &loans.months, |m, b: &mut [u8; 4]| {
        *b = m.index().to_le_bytes();
    });
    Ok(())
}

/// Puts one column, each row encoded by `encode` into `W` bytes, in pieces
/// of 64 KiB: one sink call a piece instead of one a row (naming a 10M-loan
/// batch spent more time in those calls than in SHA-256).
fn put_rows<T, const W: usize>(out: &mut impl Sink, rows: &[T], encode: impl Fn(&T, &mut [u8; W])) {
    let mut piece = vec![0u8; HashSink::PIECE];
    for chunk in rows.chunks(HashSink::PIECE / W) {
        let bytes = &mut piece[..chunk.len() * W];
        for (row, b) in chunk.iter().zip(bytes.as_chunks_mut::<W>().0) {
            encode(row, b);
        }
        out.extend_from_slice(bytes);
    }
}

/// A decoded payload.
struct Decoded {
    pseudonym_key: Fingerprint,
    library: String,
    purpose: String,
    loans: Loans,
}

fn decode_payload(plain: &[u8]) -> Result<Decoded, BatchError> {
    let mut r = Reader::new(plain);
    let version = r.u32().map_err(ShortRead::into_error)?;
    if version != PAYLOAD_VERSION && version != 1 {
        return Err(BatchError::UnsupportedPayloadVersion(version));
    }
    let pseudonym_key = Fingerprint(r.array().map_err(ShortRead::into_error)?);
    let library = r.string("library is not utf-8")?;
    let purpose = r.string("purpose is not utf-8")?;
    let titles = r.u32().map_err(ShortRead::into_error)? as usize;
    // Each dictionary entry takes at least its two length fields.
    if titles > r.remaining() / 8 {
        return Err(r.malformed("title count exceeds the payload"));
    }
    let mut title_ids = Vec::with_capacity(titles);
    let mut work_ids = Vec::with_capacity(titles);
    for _ in 0..titles {
        title_ids.push(r.string("title id is not utf-8")?);
        work_ids.push(r.string("work id is not utf-8")?);
    }
    // Version 2 holds the borrower dictionary here and each row's index
    // into it; version 1 held each row's pseudonym instead.
    let dictionary = if version == 1 {
        None
    } else {
        let borrowers = r.u32().map_err(ShortRead::into_error)? as usize;
        if borrowers > r.remaining() / PSEUDONYM_LEN {
            return Err(r.malformed("borrower count exceeds the payload"));
        }
        Some(pseudonyms(&mut r, borrowers)?)
    };
    let row_len = if version == 1 { ROW_LEN_V1 } else { ROW_LEN };
    let rows = r.u64().map_err(ShortRead::into_error)?;
    let n = usize::try_from(rows)
        .ok()
        .filter(|&n| n.checked_mul(row_len) == Some(r.remaining()))
        .ok_or_else(|| r.malformed("row count does not match the payload length"))?;
    let (borrower_col, row_pseudonyms) = match dictionary {
        Some(_) => (u32_column(&mut r, n)?, None),
        None => (Vec::new(), Some(pseudonyms(&mut r, n)?)),
    };
    let title_col = u32_column(&mut r, n)?;
    let mut months = Vec::with_capacity(n);
    for (row, chunk) in r
        .take(n * 4)
        .map_err(ShortRead::into_error)?
        .chunks_exact(4)
        .enumerate()
    {
        let mut b = [0u8; 4];
        b.copy_from_slice(chunk);
        let month = LoanMonth::from_index(i32::from_le_bytes(b))
            .map_err(|_| BatchError::InvalidMonth { row: row as u64 })?;
        months.push(month);
    }
    let loans = match dictionary {
        Some(borrower_pseudonyms) => Loans {
            borrowers: borrower_col,
            titles: title_col,
            months,
            borrower_pseudonyms,
            title_ids,
            work_ids,
        },
        // A version 1 batch: its borrowers are numbered here.
        None => Loans::from_rows(
            &row_pseudonyms.unwrap_or_default(),
            title_col,
            months,
            title_ids,
            work_ids,
        ),
    };
    Ok(Decoded {
        pseudonym_key,
        library,
        purpose,
        loans,
    })
}

/// `n` little-endian `u32`s; the caller has checked that they fit.
fn u32_column(r: &mut Reader<'_>, n: usize) -> Result<Vec<u32>, BatchError> {
    let mut out = Vec::with_capacity(n);
    for chunk in r
        .take(n * 4)
        .map_err(ShortRead::into_error)?
        .chunks_exact(4)
    {
        let mut b = [0u8; 4];
        b.copy_from_slice(chunk);
        out.push(u32::from_le_bytes(b));
    }
    Ok(out)
}

/// `n` pseudonyms, 16 bytes each; the caller has checked that they fit.
fn pseudonyms(r: &mut Reader<'_>, n: usize) -> Result<Vec<Pseudonym>, BatchError> {
    let mut out = Vec::with_capacity(n);
    for chunk in r
        .take(n * PSEUDONYM_LEN)
        .map_err(ShortRead::into_error)?
        .chunks_exact(PSEUDONYM_LEN)
    {
        let mut p = [0u8; PSEUDONYM_LEN];
        p.copy_from_slice(chunk);
        out.push(Pseudonym(p));
    }
    Ok(out)
}

/// Writes into a slice of known length.
struct SliceWriter<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl SliceWriter<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out[self.pos..self.pos + bytes.len()].copy_from_slice(bytes);
        self.pos += bytes.len();
    }
}

/// Bounds-checked reader over untrusted bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A read past the end, at the given offset.
struct ShortRead(usize);

impl ShortRead {
    fn into_error(self) -> BatchError {
        BatchError::MalformedPayload {
            offset: self.0,
            reason: "unexpected end of payload",
        }
    }
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn malformed(&self, reason: &'static str) -> BatchError {
        BatchError::MalformedPayload {
            offset: self.pos,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ShortRead> {
        if n > self.remaining() {
            return Err(ShortRead(self.pos));
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ShortRead> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u16(&mut self) -> Result<u16, ShortRead> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, ShortRead> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, ShortRead> {
        self.array().map(u64::from_le_bytes)
    }

    /// A u32-length-prefixed UTF-8 string, the length checked before use.
    fn string(&mut self, not_utf8: &'static str) -> Result<String, BatchError> {
        let len = self.u32().map_err(ShortRead::into_error)? as usize;
        let start = self.pos;
        let bytes = self.take(len).map_err(ShortRead::into_error)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| BatchError::MalformedPayload {
            offset: start,
            reason: not_utf8,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Loans {
        let m = LoanMonth::new(2024, 3).unwrap();
        Loans::from_rows(
            &[Pseudonym([1; 16]), Pseudonym([2; 16]), Pseudonym([1; 16])],
            vec![0, 1, 1],
            vec![m, m, m.plus(1).unwrap()],
            vec!["isbn:9780140449136".into(), "isbn:9780199535569".into()],
            vec!["work:a".into(), "work:b".into()],
        )
    }

    fn encoded(loans: &Loans) -> Vec<u8> {
        let mut out = Vec::new();
        encode_payload(
            &mut out,
            &mut Cow::Borrowed(loans),
            "lib",
            "loans",
            Fingerprint([9; 8]),
        )
        .unwrap();
        out
    }

    #[test]
    fn sealing_owned_loans_gives_the_same_batch() {
        let key = SecretKey::from_bytes([3; 32]);
        let loans = sample();
        let (a, sealed_a) = seal(&loans, "lib", "loans", Fingerprint([9; 8]), &key).unwrap();
        let (b, sealed_b) =
            seal_owned(loans.clone(), "lib", "loans", Fingerprint([9; 8]), &key).unwrap();
        assert_eq!(a, b);
        assert_eq!(open(&sealed_a, &key).unwrap().1, loans);
        assert_eq!(open(&sealed_b, &key).unwrap().1, loans);
    }

    #[test]
    fn identify_names_the_batch_as_seal_does() {
        let key = SecretKey::from_bytes([3; 32]);
        let small = sample();
        // Every column past one 64 KiB piece (16,384 rows of 4 bytes), so
        // the piece boundaries are crossed.
        let rows = 40_000u32;
        let large = Loans {
            // A dictionary in another order than the rows' first
            // appearance, and longer than one piece.
            borrowers: (0..rows).map(|i| (i * 7 + 3) % (rows / 2)).collect(),
            borrower_pseudonyms: (0..rows / 2)
                .map(|i| {
                    let mut p = [0u8; 16];
                    p[..4].copy_from_slice(&i.to_le_bytes());
                    Pseudonym(p)
                })
                .collect(),
            titles: (0..rows).map(|i| i % 2).collect(),
            months: (0..rows)
                .map(|i| LoanMonth::new(2024, 1 + i % 12).unwrap())
                .collect(),
            ..sample()
        };
        for loans in [small, large] {
            let (sealed_meta, _) = seal(&loans, "lib", "loans", Fingerprint([9; 8]), &key).unwrap();
            let meta = identify(&loans, "lib", "loans", Fingerprint([9; 8])).unwrap();
            assert_eq!(meta, sealed_meta);
            let payload = encoded(&loans);
            assert_eq!(meta.id.0, <[u8; 32]>::from(Sha256::digest(&payload)));
            // The rows' layout: every borrower index, then every title,
            // then every month, little-endian, after the dictionaries.
            let n = loans.len();
            let mut columns = Vec::new();
            loans
                .borrowers
                .iter()
                .for_each(|b| columns.extend_from_slice(&b.to_le_bytes()));
            loans
                .titles
                .iter()
                .for_each(|t| columns.extend_from_slice(&t.to_le_bytes()));
            loans
                .months
                .iter()
                .for_each(|m| columns.extend_from_slice(&m.index().to_le_bytes()));
            assert_eq!(&payload[payload.len() - ROW_LEN * n..], &columns[..]);
        }
        let too_long = "x".repeat(MAX_LABEL_LEN + 1);
        assert!(identify(&sample(), &too_long, "loans", Fingerprint([9; 8])).is_err());
    }

    #[test]
    fn payload_length_is_exact() {
        let loans = sample();
        assert_eq!(
            encoded(&loans).len(),
            payload_len(&loans, "lib", "loans").unwrap()
        );
    }

    #[test]
    fn payload_round_trips() {
        let loans = sample();
        let d = decode_payload(&encoded(&loans)).unwrap();
        assert_eq!(d.loans, loans);
        assert_eq!((d.library.as_str(), d.purpose.as_str()), ("lib", "loans"));
        assert_eq!(d.pseudonym_key, Fingerprint([9; 8]));
    }

    /// The version 1 payload of `loans` (each row's pseudonym), as batches
    /// sealed before version 2 hold it.
    fn encoded_v1(loans: &Loans) -> Vec<u8> {
        let v2 = encoded(loans);
        let rows = loans.len();
        let dictionary = 4 + PSEUDONYM_LEN * loans.borrower_pseudonyms.len();
        let head = v2.len() - 8 - rows * ROW_LEN - dictionary;
        let mut out = 1u32.to_le_bytes().to_vec();
        out.extend_from_slice(&v2[4..head]);
        out.extend_from_slice(&(rows as u64).to_le_bytes());
        loans
            .row_pseudonyms()
            .for_each(|p| out.extend_from_slice(p.as_bytes()));
        out.extend_from_slice(&v2[v2.len() - 8 * rows..]);
        out
    }

    #[test]
    fn a_borrower_index_past_the_dictionary_is_refused() {
        let key = SecretKey::from_bytes([3; 32]);
        let mut loans = sample();
        let (_, sealed) = seal(&loans, "lib", "loans", Fingerprint([9; 8]), &key).unwrap();
        assert_eq!(open(&sealed, &key).unwrap().1, loans);
        loans.borrowers[2] = 2;
        let mut p = encoded(&loans);
        assert!(matches!(
            decode_payload(&p).unwrap().loans.validate(),
            Err(LoansError::BorrowerOutOfRange { row: 2, .. })
        ));
        // A pseudonym twice in the dictionary would count one borrower twice.
        loans.borrowers[2] = 0;
        let first = loans.borrower_pseudonyms[0];
        loans.borrower_pseudonyms[1] = first;
        p = encoded(&loans);
        assert!(matches!(
            decode_payload(&p).unwrap().loans.validate(),
            Err(LoansError::DuplicatePseudonym)
        ));
    }

    #[test]
    fn version_1_payloads_are_still_read() {
        for loans in [sample(), Loans::default()] {
            let d = decode_payload(&encoded_v1(&loans)).unwrap();
            assert_eq!(d.loans, loans);
            assert_eq!(d.pseudonym_key, Fingerprint([9; 8]));
        }
        // Its rows' length is checked as version 1's.
        let mut p = encoded_v1(&sample());
        p.pop();
        assert!(matches!(
            decode_payload(&p),
            Err(BatchError::MalformedPayload { .. })
        ));
    }

    #[test]
    fn payload_layout_is_little_endian_columnar() {
        let loans = sample();
        let p = encoded(&loans);
        assert_eq!(&p[..4], &PAYLOAD_VERSION.to_le_bytes());
        assert_eq!(&p[4..12], &[9; 8]);
        let rows_start = p.len() - 3 * ROW_LEN;
        assert_eq!(&p[rows_start - 8..rows_start], &3u64.to_le_bytes());
        // The borrower dictionary (two pseudonyms) before the row count.
        let dictionary = rows_start - 8 - 2 * 16;
        assert_eq!(&p[dictionary - 4..dictionary], &2u32.to_le_bytes());
        assert_eq!(&p[dictionary..dictionary + 16], &[1; 16]);
        assert_eq!(&p[dictionary + 16..dictionary + 32], &[2; 16]);
        assert_eq!(
            &p[rows_start..rows_start + 12],
            &[0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        let titles = rows_start + 12;
        assert_eq!(
            &p[titles..titles + 12],
            &[0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]
        );
        let months = titles + 12;
        assert_eq!(
            &p[months..months + 4],
            &LoanMonth::new(2024, 3).unwrap().index().to_le_bytes()
        );
    }

    #[test]
    fn every_truncation_of_a_payload_is_an_error() {
        let p = encoded(&sample());
        for n in 0..p.len() {
            assert!(
                decode_payload(&p[..n]).is_err(),
                "prefix of {n} bytes decoded"
            );
        }
    }

    #[test]
    fn huge_counts_are_rejected_without_allocating() {
        let mut p = encoded(&Loans::default());
        // The title count sits after version, fingerprint and two labels.
        let count_at = 4 + 8 + 4 + 3 + 4 + 5;
        p[count_at..count_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_payload(&p),
            Err(BatchError::MalformedPayload { .. })
        ));
        let mut p = encoded(&Loans::default());
        let rows_at = p.len() - 8;
        p[rows_at..].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            decode_payload(&p),
            Err(BatchError::MalformedPayload { .. })
        ));
        let mut p = encoded(&Loans::default());
        let borrowers_at = p.len() - 8 - 4;
        p[borrowers_at..borrowers_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_payload(&p),
            Err(BatchError::MalformedPayload { .. })
        ));
    }

    #[test]
    fn invalid_month_is_reported_by_row() {
        let loans = sample();
        let mut p = encoded(&loans);
        let last_month = p.len() - 4;
        p[last_month..].copy_from_slice(&(-5i32).to_le_bytes());
        assert!(matches!(
            decode_payload(&p),
            Err(BatchError::InvalidMonth { row: 2 })
        ));
    }

    #[test]
    fn non_utf8_title_is_malformed() {
        let loans = sample();
        let mut p = encoded(&loans);
        let pos = p.windows(4).position(|w| w == b"isbn").unwrap();
        p[pos] = 0xff;
        assert!(matches!(
            decode_payload(&p),
            Err(BatchError::MalformedPayload { .. })
        ));
    }

    #[test]
    fn unknown_payload_version_is_refused() {
        let mut p = encoded(&sample());
        p[0] = 3;
        assert!(matches!(
            decode_payload(&p),
            Err(BatchError::UnsupportedPayloadVersion(3))
        ));
    }

    #[test]
    fn batch_id_text_round_trips() {
        let id = BatchId([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s, "ab".repeat(32));
        assert_eq!(s.parse::<BatchId>(), Ok(id));
        assert_eq!("ab".parse::<BatchId>(), Err(ParseBatchIdError::Length(2)));
        assert_eq!(
            "zz".repeat(32).parse::<BatchId>(),
            Err(ParseBatchIdError::NotHex)
        );
    }
}
