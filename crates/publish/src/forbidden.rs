//! The privacy scanner: byte strings that must never appear in any output.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use loans::{PSEUDONYM_LEN, Pseudonym};
use zeroize::Zeroize;

use crate::PublishError;

const HEX_LEN: usize = 2 * PSEUDONYM_LEN;
// Unpadded base64 of 16 bytes; the padded form is these 22 characters + "==".
const B64_LEN: usize = 22;
/// Identifiers at least this long are also searched as raw substrings.
pub const SUBSTRING_ID_MIN: usize = 6;

/// What kind of forbidden value a scan found (never which value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FindingKind {
    /// A borrower pseudonym in any of its encodings.
    Pseudonym,
    /// Key material in any of its encodings.
    Secret,
    /// A raw borrower id.
    Identifier,
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FindingKind::Pseudonym => "pseudonym",
            FindingKind::Secret => "secret",
            FindingKind::Identifier => "identifier",
        })
    }
}

// Needles are HMAC output or borrower ids, not attacker-chosen keys, so a
// fast non-keyed hash keeps the per-byte window lookups cheap without a
// flooding risk.
#[derive(Default)]
struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        // A final avalanche so that the high bits hashbrown uses depend on all input.
        let mut h = self.0;
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        h
    }
}

impl FxHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

type FastSet<T> = HashSet<T, BuildHasherDefault<FxHasher>>;

/// A one-probe bitmap over 64-bit keys of needles, sized to them (about 16
/// bits per needle, so about one window in 16 that holds no needle passes):
/// most windows are rejected with a multiply and a bit test before any
/// hashing, and a small bitmap stays in cache.
struct Bitmap {
    words: Vec<u64>,
    shift: u32,
}

impl Bitmap {
    fn new(keys: impl ExactSizeIterator<Item = u64>) -> Bitmap {
        let bits = (keys.len() * 16)
            .next_power_of_two()
            .clamp(1 << 12, 1 << 26);
        let mut map = Bitmap {
            words: vec![0; bits / 64],
            shift: 64 - bits.trailing_zeros(),
        };
        for k in keys {
            let s = map.slot(k);
            map.words[s >> 6] |= 1 << (s & 63);
        }
        map
    }

    fn slot(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    fn may_contain(&self, key: u64) -> bool {
        let s = self.slot(key);
        self.words
            .get(s >> 6)
            .is_some_and(|w| w & (1 << (s & 63)) != 0)
    }
}

/// Bitmaps derived from the needle sets, built on the first scan after a
/// change: they hold hashed prefixes only, never a value.
struct Filters {
    raw: Bitmap,
    hex: Bitmap,
    b64: Bitmap,
    /// Over [`id_key`] of every identifier.
    ids: Bitmap,
    /// Bit `n` set when some identifier is `n` bytes long (`n` < 64); longer
    /// identifiers set bit 63.
    id_lens: u64,
    /// Over the first [`SUBSTRING_ID_MIN`] bytes of every long identifier.
    long: Bitmap,
}

/// The length bit of a field or token for [`Filters::id_lens`].
fn len_bit(len: usize) -> u64 {
    1 << len.min(63)
}

/// A key of a whole value: its length and first and last 8 bytes, so ids
/// sharing a prefix (`SYN1021…`) still spread over the bitmap.
fn id_key(v: &[u8]) -> u64 {
    let head = padded8(v);
    let tail = padded8(&v[v.len().saturating_sub(8)..]);
    head ^ tail.rotate_left(29) ^ (v.len() as u64).wrapping_mul(0xff51_afd7_ed55_8ccd)
}

/// Up to the first 8 bytes of `v` as a number, zero padded.
fn padded8(v: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = v.len().min(8);
    b[..n].copy_from_slice(&v[..n]);
    u64::from_le_bytes(b)
}

/// The first 8 bytes of a window of at least 8 bytes, as a number.
fn prefix8(w: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&w[..8]);
    u64::from_le_bytes(b)
}

/// Lowercases the bytes of a hex prefix (setting 0x20 is a no-op on digits).
const HEX_LOWER: u64 = 0x2020_2020_2020_2020;

fn b64_std(b: u8) -> u8 {
    match b {
        b'-' => b'+',
        b'_' => b'/',
        other => other,
    }
}

/// Byte strings that must never appear in any output. Never reveals which value matched.
///
/// Pseudonyms are kept as sets of fixed-length needles (16 raw bytes, 32 hex
/// characters, 22 base64 characters) and found by sliding a window over the
/// scanned bytes, so a scan costs O(output size) however many pseudonyms
/// there are. Secrets are few and searched as substrings. Identifiers are
/// matched against every token and field, and those of at least
/// [`SUBSTRING_ID_MIN`] bytes also as raw substrings (one window pass per
/// distinct identifier length).
///
/// Key material and borrower ids are wiped from memory when the set is
/// dropped, and the set cannot be cloned.
#[derive(Default)]
pub struct Forbidden {
    raw: FastSet<[u8; PSEUDONYM_LEN]>,
    // Lowercase; windows are lowercased before lookup so any case matches.
    hex: FastSet<[u8; HEX_LEN]>,
    // Standard alphabet; url-safe windows are mapped to it before lookup.
    b64: FastSet<[u8; B64_LEN]>,
    secrets: Vec<Vec<u8>>,
    ids: FastSet<Vec<u8>>,
    long_ids: HashMap<usize, FastSet<Vec<u8>>>,
    // Derived from the sets above; reset by every `add_*`.
    filters: OnceLock<Filters>,
}

impl Drop for Forbidden {
    fn drop(&mut self) {
        for mut secret in self.secrets.drain(..) {
            secret.zeroize();
        }
        for mut id in self.ids.drain() {
            id.zeroize();
        }
        for (_, set) in self.long_ids.drain() {
            for mut id in set {
                id.zeroize();
            }
        }
    }
}

impl fmt::Debug for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forbidden")
            .field("pseudonyms", &self.raw.len())
            .field("secret_forms", &self.secrets.len())
            .field("identifiers", &self.ids.len())
            .finish()
    }
}

impl Forbidden {
    /// An empty set of forbidden values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether nothing has been added.
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty() && self.secrets.is_empty() && self.ids.is_empty()
    }

    /// Adds pseudonyms: raw bytes, hex (any case) and base64 (standard and
    /// url-safe, with or without padding).
    pub fn add_pseudonyms(&mut self, p: &[Pseudonym]) {
        self.filters = OnceLock::new();
        self.raw.reserve(p.len());
        self.hex.reserve(p.len());
        self.b64.reserve(p.len());
        for p in p {
            let bytes = p.as_bytes();
            // Callers pass loan rows: most pseudonyms repeat, and encoding
            // each repeat again cost seconds at 10M rows.
            if !self.raw.insert(*bytes) {
                continue;
            }
            let mut hex = [0u8; HEX_LEN];
            // The buffer has exactly the needed length, so encoding cannot fail.
            if hex::encode_to_slice(bytes, &mut hex).is_ok() {
                self.hex.insert(hex);
            }
            let mut b64 = [0u8; B64_LEN];
            if STANDARD_NO_PAD.encode_slice(bytes, &mut b64) == Ok(B64_LEN) {
                self.b64.insert(b64);
            }
        }
    }

    /// Adds key material: raw bytes, hex (both cases) and base64 (standard
    /// and url-safe, with or without padding).
    pub fn add_secret(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.filters = OnceLock::new();
        let lower = hex::encode(bytes);
        let upper = lower.to_ascii_uppercase();
        // Unpadded forms are prefixes of the padded ones, so they cover both.
        let forms = [
            bytes.to_vec(),
            lower.into_bytes(),
            upper.into_bytes(),
            STANDARD_NO_PAD.encode(bytes).into_bytes(),
            URL_SAFE_NO_PAD.encode(bytes).into_bytes(),
        ];
        for f in forms {
            if !self.secrets.contains(&f) {
                self.secrets.push(f);
            }
        }
    }

    /// Adds a raw borrower id (only available on the extractor host).
    pub fn add_identifier(&mut self, id: &str) {
        let id = id.as_bytes();
        if id.is_empty() {
            return;
        }
        self.filters = OnceLock::new();
        self.ids.insert(id.to_vec());
        if id.len() >= SUBSTRING_ID_MIN {
            self.long_ids
                .entry(id.len())
                .or_default()
                .insert(id.to_vec());
        }
    }

    /// The first kind of forbidden value found in `bytes`, if any.
    pub fn scan(&self, bytes: &[u8]) -> Option<FindingKind> {
        let f = self.filters();
        if self.has_pseudonym(bytes, f) {
            Some(FindingKind::Pseudonym)
        } else if self.has_secret(bytes) {
            Some(FindingKind::Secret)
        } else if self.has_identifier(bytes, f) {
            Some(FindingKind::Identifier)
        } else {
            None
        }
    }

    /// Scans one decoded value (a CSV field, JSON string or Parquet cell):
    /// like [`Forbidden::scan`], and the whole value is also compared with
    /// every identifier.
    pub fn scan_value(&self, value: &[u8]) -> Option<FindingKind> {
        if self.is_id(value, self.filters()) {
            return Some(FindingKind::Identifier);
        }
        self.scan(value)
    }

    /// Whether `v` as a whole is an identifier; the filters reject most
    /// values without hashing them.
    fn is_id(&self, v: &[u8], f: &Filters) -> bool {
        !v.is_empty()
            && f.id_lens & len_bit(v.len()) != 0
            && f.ids.may_contain(id_key(v))
            && self.ids.contains(v)
    }

    /// Builds the lookup filters now (they are otherwise built by the first
    /// scan, while other scanning threads wait), e.g. beside other work.
    pub fn prepare(&self) {
        self.filters();
    }

    fn filters(&self) -> &Filters {
        self.filters.get_or_init(|| Filters {
            raw: Bitmap::new(self.raw.iter().map(|n| prefix8(n))),
            hex: Bitmap::new(self.hex.iter().map(|n| prefix8(n))),
            b64: Bitmap::new(self.b64.iter().map(|n| prefix8(n))),
            ids: Bitmap::new(self.ids.iter().map(|id| id_key(id))),
            id_lens: self.ids.iter().fold(0, |m, id| m | len_bit(id.len())),
            long: Bitmap::new(
                self.long_ids
                    .values()
                    .flatten()
                    .map(|id| padded8(&id[..SUBSTRING_ID_MIN]))
                    .collect::<Vec<_>>()
                    .into_iter(),
            ),
        })
    }

    /// Scans every file below `dir` (raw bytes, file names, and the decoded
    /// values of `.parquet`, `.csv` and `.json` files); one entry per file and
    /// kind found.
    ///
    /// Title files are named after title ids, so when a file's name itself
    /// holds a forbidden value the entry's path ends in `<name withheld>`
    /// instead of the name. Symbolic links are not followed; their targets
    /// are scanned as text.
    pub fn scan_tree(&self, dir: &Path) -> Result<Vec<(PathBuf, FindingKind)>, PublishError> {
        let mut files = Vec::new();
        collect_files(dir, &mut files)?;
        files.sort();
        let mut out = Vec::new();
        for (path, is_link) in files {
            for kind in self.scan_file(&path, is_link)? {
                out.push((self.reportable(&path), kind));
            }
        }
        Ok(out)
    }

    fn reportable(&self, path: &Path) -> PathBuf {
        let name = path.file_name().map(|n| n.as_encoded_bytes());
        match name {
            Some(n) if self.name_finding(n).is_some() => path
                .parent()
                .unwrap_or(Path::new(""))
                .join("<name withheld>"),
            _ => path.to_path_buf(),
        }
    }

    fn name_finding(&self, name: &[u8]) -> Option<FindingKind> {
        if let Some(k) = self.scan_value(name) {
            return Some(k);
        }
        let name = std::str::from_utf8(name).ok()?;
        let stem = name.strip_suffix(".json").unwrap_or(name);
        let title = alsoborrowed_feed::title_from_stem(stem)?;
        self.scan_value(title.as_bytes())
    }

    fn scan_file(&self, path: &Path, is_link: bool) -> Result<BTreeSet<FindingKind>, PublishError> {
        if is_link {
            let target = std::fs::read_link(path).map_err(|e| PublishError::io(path, e))?;
            return Ok(self.scan_link(path, target.as_os_str().as_encoded_bytes()));
        }
        let bytes = std::fs::read(path).map_err(|e| PublishError::io(path, e))?;
        self.scan_contents(path, &bytes, |visit| {
            crate::files::visit_parquet_values(path, &mut |v: &[u8]| visit(v))
        })
    }

    /// Scans a symbolic link's name and its `target` as text.
    pub(crate) fn scan_link(&self, path: &Path, target: &[u8]) -> BTreeSet<FindingKind> {
        let mut found = BTreeSet::new();
        if let Some(name) = path.file_name() {
            found.extend(self.name_finding(name.as_encoded_bytes()));
        }
        found.extend(self.scan(target));
        found
    }

    /// Scans one regular file's name, raw `bytes` and decoded values, as
    /// [`Forbidden::scan_tree`] does for a file on disk; one entry per kind.
    ///
    /// `path` supplies the name, the format (by extension) and the path in
    /// errors. A Parquet file's decoded values come from `parquet_values`,
    /// which calls its argument on each value: the exporter passes the
    /// values it encoded, `scan_tree` decodes the file.
    pub(crate) fn scan_contents(
        &self,
        path: &Path,
        bytes: &[u8],
        parquet_values: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), PublishError>,
    ) -> Result<BTreeSet<FindingKind>, PublishError> {
        self.scan_contents_as(path, bytes, parquet_values, Decode::WhenNeeded)
    }

    fn scan_contents_as(
        &self,
        path: &Path,
        bytes: &[u8],
        parquet_values: impl FnOnce(&mut dyn FnMut(&[u8])) -> Result<(), PublishError>,
        decode: Decode,
    ) -> Result<BTreeSet<FindingKind>, PublishError> {
        let mut found = BTreeSet::new();
        if let Some(name) = path.file_name() {
            found.extend(self.name_finding(name.as_encoded_bytes()));
        }
        found.extend(self.scan(bytes));
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let f = self.filters();
        let fast = decode == Decode::WhenNeeded;
        // A whole value found to be an identifier by a fast path below.
        let mut whole_id = false;
        let mut visit = |v: &[u8]| {
            if let Some(k) = self.scan_value(v) {
                found.insert(k);
            }
        };
        match ext {
            "json" if fast && memchr::memchr(b'\\', bytes).is_none() => {
                // Without escapes every `"` opens or closes a string and a
                // string's value is its raw bytes, which the raw scan above
                // covered (each is a field there); what decoding would add
                // is the whole-value match of a string holding a separator.
                serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
                    .map_err(|e| PublishError::unreadable(path, e))?;
                whole_id = bytes
                    .split(|&b| b == b'"')
                    .skip(1)
                    .step_by(2)
                    .any(|s| self.is_id(s, f));
            }
            "json" => {
                let value: serde_json::Value =
                    serde_json::from_slice(bytes).map_err(|e| PublishError::unreadable(path, e))?;
                visit_json(&value, &mut visit);
            }
            "csv" if fast && memchr::memchr(b'"', bytes).is_none() => {
                // Without quotes, records end at CR or LF and a cell is the
                // raw bytes between commas, which the raw scan covered but
                // for the whole-cell match and a cell's first token, which
                // after a comma the raw scan reads as a number in number
                // position (a score).
                for line in bytes.split(|&b| b == b'\r' || b == b'\n') {
                    for (i, cell) in line.split(|&b| b == b',').enumerate() {
                        if let Some(rest) = cell.strip_prefix(b"'") {
                            visit(rest);
                        }
                        let first = cell.split(|b| is_token_sep(*b)).next().unwrap_or(cell);
                        whole_id |= self.is_id(cell, f)
                            || (i > 0 && is_number(first) && self.is_id(first, f));
                    }
                }
            }
            "csv" => {
                let mut reader = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .flexible(true)
                    .from_reader(bytes);
                let mut record = csv::ByteRecord::new();
                while reader
                    .read_byte_record(&mut record)
                    .map_err(|e| PublishError::unreadable(path, e))?
                {
                    for field in &record {
                        visit(field);
                        // A defused field hides its first byte behind a quote.
                        if let Some(rest) = field.strip_prefix(b"'") {
                            visit(rest);
                        }
                    }
                }
            }
            "parquet" => parquet_values(&mut visit)?,
            _ => {}
        }
        if whole_id {
            found.insert(FindingKind::Identifier);
        }
        Ok(found)
    }

    fn has_pseudonym(&self, bytes: &[u8], f: &Filters) -> bool {
        if self.raw.is_empty() {
            return false;
        }
        let raw_hit = bytes.windows(PSEUDONYM_LEN).any(|w| {
            f.raw.may_contain(prefix8(w))
                && w.try_into()
                    .is_ok_and(|w: [u8; PSEUDONYM_LEN]| self.raw.contains(&w))
        });
        if raw_hit {
            return true;
        }
        let hex_hit = runs(bytes, u8::is_ascii_hexdigit, HEX_LEN).any(|run| {
            run.windows(HEX_LEN).any(|w| {
                if !f.hex.may_contain(prefix8(w) | HEX_LOWER) {
                    return false;
                }
                let mut buf = [0u8; HEX_LEN];
                for (d, s) in buf.iter_mut().zip(w) {
                    *d = s.to_ascii_lowercase();
                }
                self.hex.contains(&buf)
            })
        });
        if hex_hit {
            return true;
        }
        let b64_char = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
        runs(bytes, b64_char, B64_LEN).any(|run| {
            run.windows(B64_LEN).any(|w| {
                let mut buf = [0u8; B64_LEN];
                for (d, &s) in buf[..8].iter_mut().zip(w) {
                    *d = b64_std(s);
                }
                if !f.b64.may_contain(prefix8(&buf)) {
                    return false;
                }
                for (d, &s) in buf[8..].iter_mut().zip(&w[8..]) {
                    *d = b64_std(s);
                }
                self.b64.contains(&buf)
            })
        })
    }

    fn has_secret(&self, bytes: &[u8]) -> bool {
        self.secrets
            .iter()
            .any(|s| memchr::memmem::find(bytes, s).is_some())
    }

    fn has_identifier(&self, bytes: &[u8], f: &Filters) -> bool {
        if self.ids.is_empty() {
            return false;
        }
        let in_ids = |t: &[u8]| self.is_id(t, f);
        // Fields: CSV cells, JSON strings, lines.
        if bytes
            .split(|b| is_field_sep(*b))
            .any(|f| in_ids(f) || in_ids(f.trim_ascii()))
        {
            return true;
        }
        // Tokens: words between whitespace and JSON or CSV punctuation.
        // A number in number position (after `:`, `[` or `,`) is a JSON count
        // or a score, never where an id leaks (a leaked id is a string, caught
        // as a field above); numeric card numbers would otherwise match counts
        // such as `"min_support":5`.
        let mut start = 0;
        for t in bytes.split(|b| is_token_sep(*b)) {
            let begin = start;
            start += t.len() + 1;
            let number_position = begin
                .checked_sub(1)
                .and_then(|j| bytes.get(j))
                .is_some_and(|b| matches!(b, b':' | b'[' | b','));
            if in_ids(t) && !(number_position && is_number(t)) {
                return true;
            }
        }
        self.has_long_identifier(bytes, f)
    }

    /// Long identifiers as raw substrings. Likewise an all-digit id inside a
    /// longer number is not one: with 10^5 numeric card numbers, the digits
    /// of 10^5 scores (or of ISBN title ids) would contain some id by chance.
    fn has_long_identifier(&self, bytes: &[u8], f: &Filters) -> bool {
        if self.long_ids.is_empty() || bytes.len() < SUBSTRING_ID_MIN {
            return false;
        }
        let in_number = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_digit() || *b == b'.');
        // One probe per position over all lengths, on the common prefix.
        (0..=bytes.len() - SUBSTRING_ID_MIN).any(|i| {
            f.long.may_contain(padded8(&bytes[i..i + SUBSTRING_ID_MIN]))
                && self.long_ids.iter().any(|(&len, set)| {
                    bytes.get(i..i + len).is_some_and(|w| {
                        set.contains(w)
                            && !(w.iter().all(u8::is_ascii_digit)
                                && (in_number(i.checked_sub(1).and_then(|j| bytes.get(j)))
                                    || in_number(bytes.get(i + len))))
                    })
                })
        })
    }
}

/// Separators of fields: CSV cells, JSON strings, lines.
fn is_field_sep(b: u8) -> bool {
    matches!(b, b'"' | b',' | b';' | b'\t' | b'\r' | b'\n')
}

/// Separators of tokens: whitespace, controls, JSON and CSV punctuation.
fn is_token_sep(b: u8) -> bool {
    b.is_ascii_whitespace()
        || b.is_ascii_control()
        || matches!(
            b,
            b'"' | b'\''
                | b','
                | b';'
                | b':'
                | b'{'
                | b'}'
                | b'['
                | b']'
                | b'('
                | b')'
                | b'<'
                | b'>'
                | b'='
        )
}

/// How [`Forbidden::scan_contents_as`] gets a file's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decode {
    /// Decode only what the raw scan cannot stand in for.
    WhenNeeded,
    /// Decode every JSON and CSV file (the reference the fast path must match).
    #[cfg(test)]
    Always,
}

/// Whether a token is a numeric literal (an integer, a decimal or an exponent form).
fn is_number(t: &[u8]) -> bool {
    t.first().is_some_and(|b| b.is_ascii_digit() || *b == b'-')
        && t.iter().any(u8::is_ascii_digit)
        && t.iter()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'))
}

/// Maximal runs of bytes satisfying `pred` that are at least `min` long.
fn runs<'a>(
    bytes: &'a [u8],
    pred: impl Fn(&u8) -> bool + 'a,
    min: usize,
) -> impl Iterator<Item = &'a [u8]> + 'a {
    bytes
        .split(move |b| !pred(b))
        .filter(move |r| r.len() >= min)
}

fn visit_json(value: &serde_json::Value, visit: &mut impl FnMut(&[u8])) {
    match value {
        serde_json::Value::String(s) => visit(s.as_bytes()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| visit_json(v, visit)),
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                visit(k.as_bytes());
                visit_json(v, visit);
            }
        }
        // Numbers are scanned as the raw text they were written as.
        _ => {}
    }
}

fn collect_files(dir: &Path, out: &mut Vec<(PathBuf, bool)>) -> Result<(), PublishError> {
    let entries = std::fs::read_dir(dir).map_err(|e| PublishError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| PublishError::io(dir, e))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(|e| PublishError::io(&path, e))?;
        if ty.is_dir() {
            collect_files(&path, out)?;
        } else {
            out.push((path, ty.is_symlink()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use proptest::prelude::*;

    #[test]
    fn numeric_ids_do_not_match_numbers_but_still_match_strings() {
        let mut f = Forbidden::new();
        f.add_identifier("5");
        f.add_identifier("9855275180");
        // Counts and scores are numbers, not leaked ids.
        assert_eq!(f.scan(br#"{"min_support":5,"titles":12}"#), None);
        assert_eq!(f.scan(b"T1,T2,13.9855275180427\n"), None);
        assert_eq!(f.scan(br#"{"score":1.29855275180e3}"#), None);
        // As a value, or inside a string, they are found.
        assert_eq!(f.scan(br#"{"title":"5"}"#), Some(FindingKind::Identifier));
        assert_eq!(f.scan(b"T1,5,0.5\n"), Some(FindingKind::Identifier));
        assert_eq!(
            f.scan(br#"{"title":"card-9855275180-x"}"#),
            Some(FindingKind::Identifier)
        );
    }

    fn pseudonym(seed: u8) -> Pseudonym {
        let mut b = [0u8; 16];
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed.wrapping_mul(31).wrapping_add(i as u8 * 17) ^ 0xa5;
        }
        // Bytes that are '+'/'/' in base64 make the url-safe form differ.
        b[0] = 0xfb;
        b[1] = 0xff;
        Pseudonym(b)
    }

    /// Identifiers of the shapes the scan treats differently: short and
    /// numeric, long and numeric, long, with a separator or a space inside.
    const ID_POOL: [&str; 8] = [
        "5",
        "42",
        "7",
        "123456",
        "SYN000123",
        "a,b",
        "card 0042",
        "x;y",
    ];

    fn forms(p: &Pseudonym) -> Vec<Vec<u8>> {
        let b = p.as_bytes();
        let forms = vec![
            b.to_vec(),
            hex::encode(b).into_bytes(),
            hex::encode_upper(b).into_bytes(),
            STANDARD.encode(b).into_bytes(),
            STANDARD_NO_PAD.encode(b).into_bytes(),
            URL_SAFE.encode(b).into_bytes(),
            URL_SAFE_NO_PAD.encode(b).into_bytes(),
        ];
        assert_ne!(forms[3], forms[5], "test pseudonym must exercise url-safe");
        forms
    }

    #[test]
    fn every_pseudonym_form_is_found_in_text() {
        let mut f = Forbidden::new();
        let others: Vec<_> = (0..200).map(pseudonym).collect();
        f.add_pseudonyms(&others);
        for form in forms(&pseudonym(7)) {
            let mut text = b"{\"title\":\"x".to_vec();
            text.extend_from_slice(&form);
            text.extend_from_slice(b"\"}");
            assert_eq!(f.scan(&text), Some(FindingKind::Pseudonym));
        }
        assert_eq!(f.scan(b"{\"title\":\"9788702173512\",\"score\":1.5}"), None);
    }

    #[test]
    fn secrets_are_found_in_every_form() {
        let key = [0xfbu8, 0xef, 0x01, 0x99, 0x42, 0x13, 0x77, 0x80, 0x3f, 0xfe];
        let mut f = Forbidden::new();
        f.add_secret(&key);
        for form in [
            key.to_vec(),
            hex::encode(key).into_bytes(),
            hex::encode_upper(key).into_bytes(),
            STANDARD.encode(key).into_bytes(),
            URL_SAFE.encode(key).into_bytes(),
            URL_SAFE_NO_PAD.encode(key).into_bytes(),
        ] {
            let mut text = b"prefix ".to_vec();
            text.extend_from_slice(&form);
            assert_eq!(f.scan(&text), Some(FindingKind::Secret));
        }
        assert_eq!(f.scan(b"nothing here"), None);
    }

    #[test]
    fn identifiers_match_fields_tokens_and_long_substrings() {
        let mut f = Forbidden::new();
        f.add_identifier("4711");
        f.add_identifier("card 0042");
        f.add_identifier("L0123456789");
        assert_eq!(f.scan(b"a,4711,b"), Some(FindingKind::Identifier));
        assert_eq!(f.scan(b"{\"t\":\"4711\"}"), Some(FindingKind::Identifier));
        assert_eq!(f.scan(b"see 4711 here"), Some(FindingKind::Identifier));
        assert_eq!(f.scan(b"x,\"card 0042\",y"), Some(FindingKind::Identifier));
        assert_eq!(f.scan(b"isbnL0123456789x"), Some(FindingKind::Identifier));
        // Short ids are not searched inside longer words: title ids often are numbers.
        assert_eq!(f.scan(b"978471100"), None);
        assert_eq!(f.scan_value(b"card 0042"), Some(FindingKind::Identifier));
        assert_eq!(f.scan_value(b"card 0043"), None);
        assert_eq!(f.scan_value(b"card 00421"), Some(FindingKind::Identifier));
    }

    #[test]
    fn debug_shows_counts_only() {
        let mut f = Forbidden::new();
        f.add_identifier("secret-card-number");
        f.add_pseudonyms(&[pseudonym(1)]);
        let d = format!("{f:?}");
        assert!(!d.contains("secret-card"), "{d}");
        assert!(d.contains("pseudonyms: 1"), "{d}");
    }

    #[test]
    fn findings_in_file_names_are_withheld() {
        let dir = tempfile::tempdir().unwrap();
        let p = pseudonym(3);
        let title = hex::encode(p.as_bytes());
        let name = format!("{}.json", alsoborrowed_feed::file_stem(&title));
        std::fs::write(dir.path().join(&name), b"{}").unwrap();
        std::fs::write(dir.path().join("clean.csv"), b"a,b\r\n").unwrap();
        let mut f = Forbidden::new();
        f.add_pseudonyms(&[p]);
        let found = f.scan_tree(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert!(found[0].0.ends_with("<name withheld>"));
        assert_eq!(found[0].1, FindingKind::Pseudonym);
    }

    proptest! {
        #[test]
        fn planted_pseudonym_is_found_anywhere(
            seed in any::<u8>(),
            form in 0usize..7,
            prefix in "[ -~]{0,40}",
            suffix in "[ -~]{0,40}",
        ) {
            let mut f = Forbidden::new();
            f.add_pseudonyms(&[pseudonym(seed), pseudonym(seed.wrapping_add(1))]);
            let mut text = prefix.into_bytes();
            text.push(b' ');
            text.extend_from_slice(&forms(&pseudonym(seed))[form]);
            text.push(b'"');
            text.extend_from_slice(suffix.as_bytes());
            prop_assert_eq!(f.scan(&text), Some(FindingKind::Pseudonym));
        }

        /// The fast paths (escape-free JSON, quote-free CSV) find exactly
        /// what decoding every value finds.
        #[test]
        fn fast_scan_equals_full_decoding(
            cells in proptest::collection::vec(
                prop_oneof![
                    "[0-9a-zA-Z ,;'=.\\-]{0,12}",
                    "[\"\\\\\t]{0,2}[0-9a-z]{0,4}",
                    (0usize..ID_POOL.len()).prop_map(|i| ID_POOL[i].to_owned()),
                    ((0usize..ID_POOL.len()), "[ ,;x]{1}").prop_map(|(i, sep)| format!("{}{sep}7", ID_POOL[i])),
                    (0u32..200).prop_map(|n| n.to_string()),
                ],
                0..12,
            ),
            ids in proptest::collection::vec(0usize..ID_POOL.len(), 0..4),
        ) {
            let mut f = Forbidden::new();
            for i in ids {
                f.add_identifier(ID_POOL[i]);
            }
            f.add_pseudonyms(&[pseudonym(5)]);
            // JSON: strings and numbers, as the feed writes them.
            let json = serde_json::json!({
                "title": cells.first().cloned().unwrap_or_default(),
                "related": cells.iter().enumerate().map(|(i, c)| {
                    serde_json::json!({"title": c, "score": i as f64 / 3.0})
                }).collect::<Vec<_>>(),
                "n": cells.len(),
            });
            let json = serde_json::to_vec(&json).unwrap();
            // CSV: the cells as rows of three, quoted only where needed.
            let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
            for row in cells.chunks(3) {
                w.write_record(row).unwrap();
            }
            let csv = w.into_inner().unwrap();
            for (name, bytes) in [("t.json", &json), ("pairs.csv", &csv)] {
                let path = Path::new(name);
                let fast = f.scan_contents_as(path, bytes, |_| Ok(()), Decode::WhenNeeded).unwrap();
                let full = f.scan_contents_as(path, bytes, |_| Ok(()), Decode::Always).unwrap();
                prop_assert_eq!(fast, full, "{}", String::from_utf8_lossy(bytes));
            }
        }

        #[test]
        fn printable_text_without_values_is_clean(text in "[ -~]{0,300}") {
            let mut f = Forbidden::new();
            f.add_pseudonyms(&[pseudonym(9)]);
            f.add_secret(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22, 0x33]);
            f.add_identifier("Zq9Xw7Vb");
            prop_assert_eq!(f.scan(text.as_bytes()), None);
        }
    }
}
