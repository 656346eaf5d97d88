//! The privacy scanner: byte strings that must never appear in any output.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};

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

const PREFILTER_BITS: u32 = 24;

/// A one-probe bitmap over the first 8 bytes of each needle: most windows
/// are rejected with a multiply and a bit test before any hashing (2 MiB).
#[derive(Default, Clone)]
struct Prefilter(Vec<u64>);

impl Prefilter {
    fn slot(prefix: u64) -> usize {
        (prefix.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - PREFILTER_BITS)) as usize
    }

    fn insert(&mut self, prefix: u64) {
        if self.0.is_empty() {
            self.0 = vec![0; 1 << (PREFILTER_BITS - 6)];
        }
        let s = Self::slot(prefix);
        self.0[s >> 6] |= 1 << (s & 63);
    }

    fn may_contain(&self, prefix: u64) -> bool {
        let s = Self::slot(prefix);
        self.0.get(s >> 6).is_some_and(|w| w & (1 << (s & 63)) != 0)
    }
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
    raw_pre: Prefilter,
    hex_pre: Prefilter,
    b64_pre: Prefilter,
    // Lowercase; windows are lowercased before lookup so any case matches.
    hex: FastSet<[u8; HEX_LEN]>,
    // Standard alphabet; url-safe windows are mapped to it before lookup.
    b64: FastSet<[u8; B64_LEN]>,
    secrets: Vec<Vec<u8>>,
    ids: FastSet<Vec<u8>>,
    long_ids: HashMap<usize, FastSet<Vec<u8>>>,
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
            self.raw_pre.insert(prefix8(bytes));
            let mut hex = [0u8; HEX_LEN];
            // The buffer has exactly the needed length, so encoding cannot fail.
            if hex::encode_to_slice(bytes, &mut hex).is_ok() {
                self.hex_pre.insert(prefix8(&hex));
                self.hex.insert(hex);
            }
            let mut b64 = [0u8; B64_LEN];
            if STANDARD_NO_PAD.encode_slice(bytes, &mut b64) == Ok(B64_LEN) {
                self.b64_pre.insert(prefix8(&b64));
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
        if self.has_pseudonym(bytes) {
            Some(FindingKind::Pseudonym)
        } else if self.has_secret(bytes) {
            Some(FindingKind::Secret)
        } else if self.has_identifier(bytes) {
            Some(FindingKind::Identifier)
        } else {
            None
        }
    }

    /// Scans one decoded value (a CSV field, JSON string or Parquet cell):
    /// like [`Forbidden::scan`], and the whole value is also compared with
    /// every identifier.
    pub fn scan_value(&self, value: &[u8]) -> Option<FindingKind> {
        if self.ids.contains(value) {
            return Some(FindingKind::Identifier);
        }
        self.scan(value)
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
        let mut found = BTreeSet::new();
        if let Some(name) = path.file_name() {
            found.extend(self.name_finding(name.as_encoded_bytes()));
        }
        found.extend(self.scan(bytes));
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let mut visit = |v: &[u8]| {
            if let Some(k) = self.scan_value(v) {
                found.insert(k);
            }
        };
        match ext {
            "json" => {
                let value: serde_json::Value =
                    serde_json::from_slice(bytes).map_err(|e| PublishError::unreadable(path, e))?;
                visit_json(&value, &mut visit);
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
        Ok(found)
    }

    fn has_pseudonym(&self, bytes: &[u8]) -> bool {
        if self.raw.is_empty() {
            return false;
        }
        let raw_hit = bytes.windows(PSEUDONYM_LEN).any(|w| {
            self.raw_pre.may_contain(prefix8(w))
                && w.try_into()
                    .is_ok_and(|w: [u8; PSEUDONYM_LEN]| self.raw.contains(&w))
        });
        if raw_hit {
            return true;
        }
        let hex_hit = runs(bytes, u8::is_ascii_hexdigit, HEX_LEN).any(|run| {
            run.windows(HEX_LEN).any(|w| {
                if !self.hex_pre.may_contain(prefix8(w) | HEX_LOWER) {
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
                if !self.b64_pre.may_contain(prefix8(&buf)) {
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

    fn has_identifier(&self, bytes: &[u8]) -> bool {
        if self.ids.is_empty() {
            return false;
        }
        let in_ids = |t: &[u8]| !t.is_empty() && self.ids.contains(t);
        // Fields: CSV cells, JSON strings, lines.
        let field_sep = |b: &u8| matches!(b, b'"' | b',' | b';' | b'\t' | b'\r' | b'\n');
        if bytes
            .split(field_sep)
            .any(|f| in_ids(f) || in_ids(f.trim_ascii()))
        {
            return true;
        }
        // Tokens: words between whitespace and JSON or CSV punctuation.
        let token_sep = |b: &u8| {
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
        };
        // A number in number position (after `:`, `[` or `,`) is a JSON count
        // or a score, never where an id leaks (a leaked id is a string, caught
        // as a field above); numeric card numbers would otherwise match counts
        // such as `"min_support":5`.
        let mut start = 0;
        for t in bytes.split(token_sep) {
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
        // Likewise an all-digit id inside a longer number: with 10^5 numeric
        // card numbers, the digits of 10^5 scores (or of ISBN title ids)
        // would contain some id by chance.
        let in_number = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_digit() || *b == b'.');
        self.long_ids.iter().any(|(&len, set)| {
            bytes.len() >= len
                && bytes.windows(len).enumerate().any(|(i, w)| {
                    set.contains(w)
                        && !(w.iter().all(u8::is_ascii_digit)
                            && (in_number(i.checked_sub(1).and_then(|j| bytes.get(j)))
                                || in_number(bytes.get(i + len))))
                })
        })
    }
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
