//! Secret keys, owner-only key files, fingerprints and HKDF derivation.
//!
//! A [`SecretKey`] is 256 bits from the OS CSPRNG. It has no `Debug`,
//! `Display`, `Clone` or serialization, is kept on the heap (so moves do not
//! leave copies behind) and is zeroized on drop. Key bytes leave this type
//! only through [`SecretKey::expose_secret`].
//!
//! Keys are organized in a small hierarchy: a master key per library is never
//! used directly, only through [`SecretKey::derive`] (HKDF-SHA256) into
//! per-purpose keys. A [`Fingerprint`] names a key in audit output without
//! revealing it.
//!
//! Key files are text (`alsoborrowed-key v1` then 64 hex characters), created
//! with mode 0600 and refused on load when group or others may read them.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use hkdf::Hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

/// Length in bytes of every secret key.
pub const KEY_LEN: usize = 32;

/// First line of a key file, naming the format and its version.
pub const KEY_FILE_HEADER: &str = "alsoborrowed-key v1";

/// Salt of every HKDF derivation, so derived keys are bound to this scheme.
const HKDF_SALT: &[u8] = b"alsoborrowed/v1";

/// Domain separator of key fingerprints, so a fingerprint is no other hash of the key.
const FINGERPRINT_DOMAIN: &[u8] = b"alsoborrowed key fingerprint v1\0";

/// Exact size of a well-formed key file: header line, hex line, newlines.
const KEY_FILE_LEN: usize = KEY_FILE_HEADER.len() + 1 + 2 * KEY_LEN + 1;

/// Most bytes read from a key file; anything longer is rejected unread.
const KEY_FILE_READ_LIMIT: usize = 4 * KEY_FILE_LEN;

/// A 256-bit secret key, zeroized on drop and never printed.
pub struct SecretKey {
    // Boxed so that moving a `SecretKey` moves a pointer, not the key bytes.
    bytes: Box<[u8; KEY_LEN]>,
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

impl zeroize::ZeroizeOnDrop for SecretKey {}

/// Error of key generation or of reading and writing key files.
///
/// Messages name the path and the reason, never a key byte.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The operating system random number generator failed.
    #[error("the operating system random number generator failed")]
    Random,
    /// The key file does not exist.
    #[error("key file {path} does not exist", path = .path.display())]
    Missing {
        /// Path of the key file.
        path: PathBuf,
    },
    /// The key file path names something other than a regular file.
    #[error("key file {path} is not a regular file", path = .path.display())]
    NotAFile {
        /// Path of the key file.
        path: PathBuf,
    },
    /// Group or others have some permission on the key file.
    #[error(
        "key file {path} is readable by group or others (mode {mode:04o}); run chmod 600 {path}",
        path = .path.display()
    )]
    InsecurePermissions {
        /// Path of the key file.
        path: PathBuf,
        /// Permission bits of the file.
        mode: u32,
    },
    /// The key file is empty.
    #[error("key file {path} is empty", path = .path.display())]
    Empty {
        /// Path of the key file.
        path: PathBuf,
    },
    /// The key file does not start with the expected header line.
    #[error("key file {path} does not start with the line `{KEY_FILE_HEADER}`", path = .path.display())]
    WrongHeader {
        /// Path of the key file.
        path: PathBuf,
    },
    /// The key line has fewer than 64 characters.
    #[error("key file {path} holds a key that is too short: {len} characters, expected 64 hex characters", path = .path.display())]
    TooShort {
        /// Path of the key file.
        path: PathBuf,
        /// Characters found on the key line.
        len: usize,
    },
    /// The key line has more than 64 characters or the file has extra content.
    #[error("key file {path} is too long: expected exactly 64 hex characters after the header line", path = .path.display())]
    TooLong {
        /// Path of the key file.
        path: PathBuf,
    },
    /// The key line holds a character that is not a hexadecimal digit.
    #[error("key file {path} holds a key that is not hexadecimal", path = .path.display())]
    NotHex {
        /// Path of the key file.
        path: PathBuf,
    },
    /// A new key file was asked for but the path exists already.
    #[error("key file {path} exists already; refusing to overwrite it", path = .path.display())]
    AlreadyExists {
        /// Path of the key file.
        path: PathBuf,
    },
    /// An I/O error while reading or writing the key file or its directory.
    #[error("cannot {action} {path}: {source}", path = .path.display())]
    Io {
        /// What was being done, e.g. "read key file".
        action: &'static str,
        /// Path involved.
        path: PathBuf,
        /// Underlying error (it never holds key bytes).
        source: io::Error,
    },
}

impl KeyError {
    fn io(action: &'static str, path: &Path, source: io::Error) -> KeyError {
        KeyError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

impl SecretKey {
    /// A fresh key from the operating system CSPRNG.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut key = SecretKey::zeroed();
        SystemRandom::new()
            .fill(&mut key.bytes[..])
            .map_err(|_| KeyError::Random)?;
        Ok(key)
    }

    /// An all-zero key to be filled in place, so that key bytes are only
    /// ever written into memory that is zeroized on drop.
    fn zeroed() -> SecretKey {
        SecretKey {
            bytes: Box::new([0u8; KEY_LEN]),
        }
    }

    /// The key with the given bytes; the argument copy is zeroized.
    pub fn from_bytes(mut bytes: [u8; KEY_LEN]) -> SecretKey {
        let mut key = SecretKey::zeroed();
        key.bytes.copy_from_slice(&bytes);
        bytes.zeroize();
        key
    }

    /// The raw key bytes: the one deliberate way to read them.
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// The non-secret fingerprint of this key, for audit output.
    pub fn fingerprint(&self) -> Fingerprint {
        let digest = Sha256::new()
            .chain_update(FINGERPRINT_DOMAIN)
            .chain_update(&self.bytes[..])
            .finalize();
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&digest[..8]);
        Fingerprint(fp)
    }

    /// A subkey for the given context, by HKDF-SHA256 with salt
    /// `alsoborrowed/v1` and as info each part prefixed by its length (u32
    /// big-endian), so that `["ab", "c"]` and `["a", "bc"]` differ.
    ///
    /// # Panics
    ///
    /// If a part is 4 GiB or longer, which no label of this system comes near.
    pub fn derive(&self, info_parts: &[&[u8]]) -> SecretKey {
        let total: usize = info_parts.iter().map(|p| 4 + p.len()).sum();
        let mut info = Vec::with_capacity(total);
        for part in info_parts {
            let len = u32::try_from(part.len()).expect("HKDF info part shorter than 4 GiB");
            info.extend_from_slice(&len.to_be_bytes());
            info.extend_from_slice(part);
        }
        let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.bytes[..]);
        let mut key = SecretKey::zeroed();
        hkdf.expand(&info, &mut key.bytes[..])
            .expect("32 bytes is within the HKDF-SHA256 output limit");
        key
    }
}

/// Printable, non-secret 16-hex-character id of a key, for audit output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; 8]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 16];
        hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

/// Error parsing a [`Fingerprint`] from text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseFingerprintError {
    /// The text is not 16 characters long.
    #[error("a key fingerprint has 16 hex characters, not {0}")]
    Length(usize),
    /// The text holds a character that is not a hexadecimal digit.
    #[error("a key fingerprint holds only hex characters")]
    NotHex,
}

impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(ParseFingerprintError::Length(s.len()));
        }
        let mut fp = [0u8; 8];
        hex::decode_to_slice(s, &mut fp).map_err(|_| ParseFingerprintError::NotHex)?;
        Ok(Fingerprint(fp))
    }
}

/// Writes `key` to a new key file at `path` with mode 0600, creating missing
/// parent directories with mode 0700; refuses to overwrite an existing file.
pub fn write_new_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyError> {
    let parent = parent_dir(path);
    if !parent.as_os_str().is_empty() && !parent.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| KeyError::io("create key directory", parent, e))?;
    }

    let mut text = Zeroizing::new(Vec::with_capacity(KEY_FILE_LEN));
    text.extend_from_slice(KEY_FILE_HEADER.as_bytes());
    text.push(b'\n');
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &b in key.expose_secret() {
        text.push(HEX[usize::from(b >> 4)]);
        text.push(HEX[usize::from(b & 0xf)]);
    }
    text.push(b'\n');

    // The mode is set at open() so the file is never readable by others,
    // even for an instant; create_new refuses to replace an existing key.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => KeyError::AlreadyExists {
                path: path.to_path_buf(),
            },
            _ => KeyError::io("create key file", path, e),
        })?;
    let written = file.write_all(&text).and_then(|()| file.sync_all());
    if let Err(e) = written {
        drop(file);
        // A partial key file is worse than none: the next run would reject it.
        let _ = fs::remove_file(path);
        return Err(KeyError::io("write key file", path, e));
    }
    drop(file);
    sync_dir(parent).map_err(|e| KeyError::io("sync key directory", parent, e))
}

/// Loads the key file at `path`, checking permissions and format.
pub fn load_key_file(path: &Path) -> Result<SecretKey, KeyError> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => KeyError::Missing {
            path: path.to_path_buf(),
        },
        _ => KeyError::io("open key file", path, e),
    })?;
    // Checked on the open handle, so the file checked is the file read.
    let meta = file
        .metadata()
        .map_err(|e| KeyError::io("inspect key file", path, e))?;
    if !meta.is_file() {
        return Err(KeyError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }

    let mut buf = Zeroizing::new([0u8; KEY_FILE_READ_LIMIT + 1]);
    let mut len = 0;
    while len < buf.len() {
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(KeyError::io("read key file", path, e)),
        }
    }
    if len > KEY_FILE_READ_LIMIT {
        return Err(KeyError::TooLong {
            path: path.to_path_buf(),
        });
    }
    parse_key_file(&buf[..len], path)
}

/// Loads the key file at `path`; if it is missing and `create_if_missing`
/// is set, generates a key and writes it. Returns the key and whether it
/// was created.
pub fn load_or_create_key_file(
    path: &Path,
    create_if_missing: bool,
) -> Result<(SecretKey, bool), KeyError> {
    match load_key_file(path) {
        Err(KeyError::Missing { .. }) if create_if_missing => {
            let key = SecretKey::generate()?;
            match write_new_key_file(path, &key) {
                Ok(()) => Ok((key, true)),
                // Another process created it between our load and our write:
                // its key is the one to use.
                Err(KeyError::AlreadyExists { .. }) => Ok((load_key_file(path)?, false)),
                Err(e) => Err(e),
            }
        }
        other => other.map(|key| (key, false)),
    }
}

/// Parses the bytes of a key file; `path` is only for error messages.
fn parse_key_file(text: &[u8], path: &Path) -> Result<SecretKey, KeyError> {
    let owned = || path.to_path_buf();
    if text.is_empty() {
        return Err(KeyError::Empty { path: owned() });
    }
    let header = KEY_FILE_HEADER.as_bytes();
    let body = match text.strip_prefix(header) {
        Some([b'\n', rest @ ..]) => rest,
        _ => return Err(KeyError::WrongHeader { path: owned() }),
    };
    // One trailing newline is the format; its absence is tolerated so a key
    // pasted without one still loads.
    let line = body.strip_suffix(b"\n").unwrap_or(body);
    if line.contains(&b'\n') || line.len() > 2 * KEY_LEN {
        return Err(KeyError::TooLong { path: owned() });
    }
    if line.len() < 2 * KEY_LEN {
        return Err(KeyError::TooShort {
            path: owned(),
            len: line.len(),
        });
    }
    let mut key = SecretKey::zeroed();
    hex::decode_to_slice(line, &mut key.bytes[..])
        .map_err(|_| KeyError::NotHex { path: owned() })?;
    Ok(key)
}

/// The directory holding `path` (`.` for a bare file name).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory entry to disk so a new file survives a crash.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    // `SecretKey` has no Debug, so `unwrap_err` is not available.
    fn load_err(path: &Path) -> KeyError {
        match load_key_file(path) {
            Err(e) => e,
            Ok(_) => panic!("a bad key file loaded"),
        }
    }

    fn key_text(hex_body: &str) -> String {
        format!("{KEY_FILE_HEADER}\n{hex_body}\n")
    }

    fn write_raw(dir: &Path, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, contents).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    fn sample_key() -> SecretKey {
        let mut b = [0u8; KEY_LEN];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8 * 7 + 3;
        }
        SecretKey::from_bytes(b)
    }

    #[test]
    fn write_then_load_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/master.key");
        let key = SecretKey::generate().unwrap();
        write_new_key_file(&path, &key).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode & 0o077, 0, "new key directory must be owner-only");
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), KEY_FILE_LEN);
        assert!(text.starts_with("alsoborrowed-key v1\n"));
        assert_eq!(text, key_text(&hex::encode(key.expose_secret())));
        let loaded = load_key_file(&path).unwrap();
        assert_eq!(loaded.expose_secret(), key.expose_secret());
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let first = sample_key();
        write_new_key_file(&path, &first).unwrap();
        let err = write_new_key_file(&path, &SecretKey::generate().unwrap()).unwrap_err();
        assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err}");
        assert_eq!(
            load_key_file(&path).unwrap().expose_secret(),
            first.expose_secret()
        );
    }

    #[test]
    fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.key");
        let err = load_err(&path);
        assert!(matches!(err, KeyError::Missing { .. }));
        assert!(err.to_string().contains("nope.key"), "{err}");
    }

    #[test]
    fn group_readable_file_is_refused_with_chmod_hint() {
        let dir = tempfile::tempdir().unwrap();
        let body = hex::encode([0x5a; KEY_LEN]);
        let path = write_raw(dir.path(), "k", key_text(&body).as_bytes(), 0o644);
        let err = load_err(&path);
        assert!(matches!(
            err,
            KeyError::InsecurePermissions { mode: 0o644, .. }
        ));
        let msg = err.to_string();
        let p = path.display().to_string();
        assert_eq!(
            msg,
            format!("key file {p} is readable by group or others (mode 0644); run chmod 600 {p}")
        );
        assert!(!msg.contains(&body[..8]));
        for mode in [0o640, 0o604, 0o601, 0o610] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            assert!(matches!(
                load_key_file(&path),
                Err(KeyError::InsecurePermissions { .. })
            ));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(load_key_file(&path).is_ok());
    }

    #[test]
    fn empty_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_raw(dir.path(), "k", b"", 0o600);
        assert!(matches!(load_key_file(&path), Err(KeyError::Empty { .. })));
    }

    #[test]
    fn wrong_header() {
        let dir = tempfile::tempdir().unwrap();
        let body = hex::encode([1u8; KEY_LEN]);
        for text in [
            format!("alsoborrowed-key v2\n{body}\n"),
            format!("{body}\n"),
            format!("{KEY_FILE_HEADER} {body}\n"),
            KEY_FILE_HEADER.to_string(),
        ] {
            let path = write_raw(dir.path(), "k", text.as_bytes(), 0o600);
            let err = load_err(&path);
            assert!(matches!(err, KeyError::WrongHeader { .. }), "{err}");
        }
    }

    #[test]
    fn too_short_too_long_and_not_hex() {
        let dir = tempfile::tempdir().unwrap();
        let body = hex::encode([0xc3; KEY_LEN]);

        let path = write_raw(dir.path(), "short", key_text(&body[..63]).as_bytes(), 0o600);
        let err = load_err(&path);
        assert!(matches!(err, KeyError::TooShort { len: 63, .. }), "{err}");

        let path = write_raw(
            dir.path(),
            "long",
            key_text(&format!("{body}0")).as_bytes(),
            0o600,
        );
        assert!(matches!(
            load_key_file(&path),
            Err(KeyError::TooLong { .. })
        ));

        let extra = format!("{}extra line\n", key_text(&body));
        let path = write_raw(dir.path(), "extra", extra.as_bytes(), 0o600);
        assert!(matches!(
            load_key_file(&path),
            Err(KeyError::TooLong { .. })
        ));

        let huge = vec![b'a'; 10_000];
        let path = write_raw(dir.path(), "huge", &huge, 0o600);
        assert!(matches!(
            load_key_file(&path),
            Err(KeyError::TooLong { .. })
        ));

        let mut bad = body.clone();
        bad.replace_range(10..11, "g");
        let path = write_raw(dir.path(), "nothex", key_text(&bad).as_bytes(), 0o600);
        let err = load_err(&path);
        assert!(matches!(err, KeyError::NotHex { .. }), "{err}");
        // The message must not echo any of the key material.
        assert!(!err.to_string().contains(&bad[..12]));
    }

    #[test]
    fn missing_trailing_newline_is_tolerated() {
        let dir = tempfile::tempdir().unwrap();
        let key = sample_key();
        let text = format!("{KEY_FILE_HEADER}\n{}", hex::encode(key.expose_secret()));
        let path = write_raw(dir.path(), "k", text.as_bytes(), 0o600);
        assert_eq!(
            load_key_file(&path).unwrap().expose_secret(),
            key.expose_secret()
        );
    }

    #[test]
    fn directory_is_not_a_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("d");
        DirBuilder::new().mode(0o700).create(&sub).unwrap();
        assert!(matches!(
            load_key_file(&sub),
            Err(KeyError::NotAFile { .. })
        ));
    }

    #[test]
    fn load_or_create_creates_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        assert!(matches!(
            load_or_create_key_file(&path, false),
            Err(KeyError::Missing { .. })
        ));
        let (a, created_a) = load_or_create_key_file(&path, true).unwrap();
        let (b, created_b) = load_or_create_key_file(&path, true).unwrap();
        assert!(created_a);
        assert!(!created_b);
        assert_eq!(a.expose_secret(), b.expose_secret());
    }

    #[test]
    fn fingerprint_is_stable_and_domain_separated() {
        let key = sample_key();
        let fp = key.fingerprint();
        assert_eq!(fp, sample_key().fingerprint());
        // Recomputed independently from the definition.
        let mut h = Sha256::new();
        h.update(b"alsoborrowed key fingerprint v1\0");
        h.update(key.expose_secret());
        assert_eq!(fp.0[..], h.finalize()[..8]);
        // Not a plain hash of the key.
        assert_ne!(fp.0[..], Sha256::digest(key.expose_secret())[..8]);
        assert_ne!(fp, SecretKey::from_bytes([0; KEY_LEN]).fingerprint());
    }

    #[test]
    fn fingerprint_text_round_trips() {
        let fp = Fingerprint([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(fp.to_string(), "0123456789abcdef");
        assert_eq!("0123456789abcdef".parse::<Fingerprint>(), Ok(fp));
        assert_eq!("0123456789ABCDEF".parse::<Fingerprint>(), Ok(fp));
        assert_eq!(
            "0123".parse::<Fingerprint>(),
            Err(ParseFingerprintError::Length(4))
        );
        assert_eq!(
            "0123456789abcdeg".parse::<Fingerprint>(),
            Err(ParseFingerprintError::NotHex)
        );
    }

    #[test]
    fn derived_keys_differ_by_context() {
        let master = sample_key();
        let a = master.derive(&[b"pseudonym", b"lib-a", b"loans"]);
        let b = master.derive(&[b"pseudonym", b"lib-b", b"loans"]);
        let c1 = master.derive(&[b"ab", b"c"]);
        let c2 = master.derive(&[b"a", b"bc"]);
        let fps = [
            master.fingerprint(),
            a.fingerprint(),
            b.fingerprint(),
            c1.fingerprint(),
            c2.fingerprint(),
        ];
        for i in 0..fps.len() {
            for j in i + 1..fps.len() {
                assert_ne!(fps[i], fps[j], "{i} vs {j}");
            }
        }
        // Derivation is deterministic.
        assert_eq!(
            master.derive(&[b"ab", b"c"]).expose_secret(),
            c1.expose_secret()
        );
    }

    #[test]
    fn derive_matches_hkdf_with_length_prefixed_info() {
        let master = sample_key();
        let mut info = Vec::new();
        info.extend_from_slice(&[0, 0, 0, 9]);
        info.extend_from_slice(b"pseudonym");
        info.extend_from_slice(&[0, 0, 0, 0]);
        let mut okm = [0u8; KEY_LEN];
        Hkdf::<Sha256>::new(Some(b"alsoborrowed/v1"), master.expose_secret())
            .expand(&info, &mut okm)
            .unwrap();
        assert_eq!(master.derive(&[b"pseudonym", b""]).expose_secret(), &okm);
    }

    #[test]
    fn hkdf_sha256_rfc5869_test_case_1() {
        let ikm = [0x0b; 22];
        let salt = hex::decode("000102030405060708090a0b0c").unwrap();
        let info = hex::decode("f0f1f2f3f4f5f6f7f8f9").unwrap();
        let (prk, hk) = Hkdf::<Sha256>::extract(Some(&salt), &ikm);
        assert_eq!(
            hex::encode(prk),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"
        );
        let mut okm = [0u8; 42];
        hk.expand(&info, &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn generated_keys_differ() {
        let a = SecretKey::generate().unwrap();
        let b = SecretKey::generate().unwrap();
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), &[0u8; KEY_LEN]);
    }
}
