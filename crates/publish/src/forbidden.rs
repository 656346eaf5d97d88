//! The forbidden values: byte strings that must never appear in any output,
//! and how a value or a file's raw bytes are searched for them.
//!
//! Pseudonyms (16 raw bytes, 32 hex or 22 base64 characters) and key
//! material (32 bytes and more) are long enough that a chance match in any
//! bytes, compressed ones included, is out of the question (2^-128 per
//! window), so they are searched everywhere: raw file bytes, decompressed
//! Parquet pages, file names and decoded values. Borrower ids are often short
//! (`1`, `U4`, `ABC`) and would match anything by chance, so they are never
//! searched in raw or binary bytes: they are compared with decoded values
//! only, and only with values that the release check (`check`) could not
//! account for as part of the format or as a title of the input.

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use loans::{PSEUDONYM_LEN, Pseudonym};
use zeroize::Zeroize;

const HEX_LEN: usize = 2 * PSEUDONYM_LEN;
// Unpadded base64 of 16 bytes; the padded form is these 22 characters + "==".
const B64_LEN: usize = 22;
/// Bytes of the blocks that judge offsets in [`Forbidden::find_raw_pseudonym`]
/// (at most `PSEUDONYM_LEN / 2`, so that a pseudonym covers one whole block).
const BLOCK: usize = 8;
/// Bytes per piece of a parallel [`Forbidden::find_raw`].
const PIECE: usize = 4 << 20;
/// The high bit of each byte of an 8-byte block: zero when all are ASCII.
const NOT_ASCII: u64 = 0x8080_8080_8080_8080;
const _: () = assert!(2 * BLOCK <= PSEUDONYM_LEN + 1 && BLOCK == 8);

/// What kind of forbidden or unaccounted value the check found (never which value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum FindingKind {
    /// A borrower pseudonym in any of its encodings.
    Pseudonym,
    /// Key material in any of its encodings.
    Secret,
    /// A raw borrower id of the input, where only a title or a value of the
    /// format may stand.
    Identifier,
    /// A value or file that is neither part of the release format nor a
    /// title of the input (a changed file, or a bug): refused, since the
    /// check cannot vouch for it.
    Unexpected,
}

impl FindingKind {
    /// What the operator should do about a finding of this kind.
    pub fn fix(self) -> &'static str {
        match self {
            FindingKind::Identifier => {
                "a borrower id of the loans file reached the output outside a title: check that \
                 [source.columns] borrower_id and title_id name different columns, and report \
                 a bug if they do"
            }
            FindingKind::Pseudonym => {
                "a borrower pseudonym reached the output: this is a bug in alsoborrowed, report \
                 it; nothing was published"
            }
            FindingKind::Secret => {
                "key material reached the output: report the bug and make new keys \
                 (docs/operations.md, \"Keys\")"
            }
            FindingKind::Unexpected => {
                "a file or value of the release is not part of the feed format: a bug, or a \
                 file changed after writing; export again, and report it if it repeats"
            }
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FindingKind::Pseudonym => "pseudonym",
            FindingKind::Secret => "key material",
            FindingKind::Identifier => "borrower identifier",
            FindingKind::Unexpected => "unexpected content",
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

/// Borrower ids, each once: their bytes one after the other in one buffer,
/// found through a table of (start, length). A vector per id cost an
/// allocation each as the extractor lent them, and at exit a wipe and a
/// free each (about a second for the 5 million ids of 100M loans, on one
/// thread). The buffer grows by copying into a new one and wiping the old,
/// so no freed memory holds an id; it is wiped on drop.
#[derive(Default)]
struct Ids {
    bytes: Vec<u8>,
    table: hashbrown::HashTable<(usize, usize)>,
}

impl Ids {
    fn hash(id: &[u8]) -> u64 {
        BuildHasherDefault::<FxHasher>::default().hash_one(id)
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    fn get(&self, (start, len): (usize, usize)) -> &[u8] {
        &self.bytes[start..start + len]
    }

    fn contains(&self, id: &[u8]) -> bool {
        self.table
            .find(Self::hash(id), |&at| self.get(at) == id)
            .is_some()
    }

    /// Adds `id` unless held.
    fn insert(&mut self, id: &[u8]) {
        let hash = Self::hash(id);
        let Ids { bytes, table } = self;
        let entry = table.entry(
            hash,
            |&(start, len)| &bytes[start..start + len] == id,
            |&(start, len)| Self::hash(&bytes[start..start + len]),
        );
        if let hashbrown::hash_table::Entry::Vacant(slot) = entry {
            if bytes.capacity() - bytes.len() < id.len() {
                let mut grown = Vec::with_capacity((bytes.capacity() * 2).max(id.len()).max(4096));
                grown.extend_from_slice(bytes);
                bytes.zeroize();
                *bytes = grown;
            }
            slot.insert((bytes.len(), id.len()));
            bytes.extend_from_slice(id);
        }
    }

    fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> {
        self.table.iter().map(|&at| self.get(at))
    }
}

impl Drop for Ids {
    fn drop(&mut self) {
        self.bytes.zeroize();
    }
}

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
    /// Over every 8-byte stretch of a pseudonym, at its first 8 offsets,
    /// that is all ASCII; see [`Forbidden::find_raw_pseudonym`].
    raw_ascii: Bitmap,
    hex: Bitmap,
    b64: Bitmap,
    /// Over [`id_key`] of every identifier.
    ids: Bitmap,
    /// Bit `n` set when some identifier is `n` bytes long (`n` < 64); longer
    /// identifiers set bit 63.
    id_lens: u64,
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
/// Pseudonyms are kept as a set of 16-byte needles and found by sliding a
/// window over the scanned bytes (16 raw bytes; 32 hex or 22 base64
/// characters, decoded), so a scan costs O(output size) however many
/// pseudonyms there are. Secrets are few and searched as substrings. Identifiers are
/// compared with whole decoded values and with the parts of a value between
/// letters-and-digits boundaries ([`Forbidden::classify_value`]), never with
/// raw bytes.
///
/// Key material and borrower ids are wiped from memory when the set is
/// dropped, and the set cannot be cloned.
#[derive(Default)]
pub struct Forbidden {
    // Hex and base64 windows are decoded and looked up here too: sets of
    // the encoded forms held 54 more bytes a pseudonym (some 400 MB at 100M
    // loans) and took two thirds of the set-up.
    raw: FastSet<[u8; PSEUDONYM_LEN]>,
    secrets: Vec<Vec<u8>>,
    ids: Ids,
    // Derived from the sets above; reset by every `add_*`.
    filters: OnceLock<Filters>,
}

impl Drop for Forbidden {
    fn drop(&mut self) {
        for mut secret in self.secrets.drain(..) {
            secret.zeroize();
        }
        // `ids` wipes itself.
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

    /// Number of distinct borrower ids held.
    pub fn identifiers(&self) -> usize {
        self.ids.len()
    }

    /// Adds pseudonyms: raw bytes, hex (any case) and base64 (standard and
    /// url-safe, with or without padding).
    pub fn add_pseudonyms(&mut self, p: &[Pseudonym]) {
        self.filters = OnceLock::new();
        // Callers may pass loan rows, where most pseudonyms repeat: the set is
        // sized by the distinct new ones (reserving one slot per row cost
        // 365 MB at 10M loans and 3.5 GB at 100M).
        for p in p {
            self.raw.insert(*p.as_bytes());
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
        self.ids.insert(id);
    }

    /// How many of `titles` are also borrower ids: such ids are published
    /// as titles, which is no leak (the value came from the title column),
    /// but the operator should know that the two columns share values.
    pub fn identifiers_among<'a>(&self, titles: impl IntoIterator<Item = &'a str>) -> u64 {
        if self.ids.is_empty() {
            return 0;
        }
        let f = self.filters();
        titles
            .into_iter()
            .filter(|t| self.is_id(t.as_bytes(), f))
            .count() as u64
    }

    /// The first pseudonym or key material in raw `bytes` and its byte
    /// offset. Safe on any bytes, binary or compressed: the needles are too
    /// long to match by chance.
    ///
    /// Bytes longer than two [`PIECE`]s (the pair files of a large release)
    /// are first scanned in parallel pieces that overlap by the longest
    /// needle, so each window lies whole in some piece: most releases hold
    /// nothing, and that is then known at the pieces' speed. A piece that
    /// finds something sends the whole scan the sequential way, which alone
    /// says which finding is first.
    pub fn find_raw(&self, bytes: &[u8]) -> Option<(FindingKind, usize)> {
        use rayon::prelude::*;
        let f = self.filters();
        if bytes.len() <= 2 * PIECE {
            return self.find_raw_in(bytes, f);
        }
        let reach = self
            .secrets
            .iter()
            .map(Vec::len)
            .fold(HEX_LEN.max(B64_LEN).max(PSEUDONYM_LEN), usize::max);
        let found = (0..bytes.len().div_ceil(PIECE)).into_par_iter().any(|i| {
            let end = (i * PIECE + PIECE + reach - 1).min(bytes.len());
            self.find_raw_in(&bytes[i * PIECE..end], f).is_some()
        });
        if found {
            self.find_raw_in(bytes, f)
        } else {
            None
        }
    }

    fn find_raw_in(&self, bytes: &[u8], f: &Filters) -> Option<(FindingKind, usize)> {
        if let Some(at) = self.find_pseudonym(bytes, f) {
            return Some((FindingKind::Pseudonym, at));
        }
        self.find_secret(bytes).map(|at| (FindingKind::Secret, at))
    }

    /// The kind of forbidden value a decoded value (a JSON string or number,
    /// a CSV field, a Parquet value, a file name) holds, if any: a pseudonym
    /// or key material anywhere in it, or a borrower id as the whole value
    /// or as a part between letters-and-digits boundaries (`card-4711-x`
    /// holds `4711`; `M123456` does not hold `M12345`).
    ///
    /// Callers ask only about values the release format cannot account for;
    /// a title of the input is never a finding, whatever ids it contains.
    pub fn classify_value(&self, value: &[u8]) -> Option<FindingKind> {
        if let Some((kind, _)) = self.find_raw(value) {
            return Some(kind);
        }
        let f = self.filters();
        (!self.ids.is_empty() && self.holds_id(value, f)).then_some(FindingKind::Identifier)
    }

    /// Whether `v` as a whole is an identifier; the filters reject most
    /// values without hashing them.
    fn is_id(&self, v: &[u8], f: &Filters) -> bool {
        !v.is_empty()
            && f.id_lens & len_bit(v.len()) != 0
            && f.ids.may_contain(id_key(v))
            && self.ids.contains(v)
    }

    /// Whether `v` or a part of it between boundaries is an identifier. A
    /// boundary is the start or end of `v`, or a place where a letter or
    /// digit meets another byte; a part may span boundaries, so ids with
    /// spaces or punctuation inside (`card 0042`) are found too. Quadratic
    /// in the number of boundaries, which is fine for the rare values that
    /// reach it (none in a correct release).
    fn holds_id(&self, v: &[u8], f: &Filters) -> bool {
        let word = |b: u8| b.is_ascii_alphanumeric() || b >= 0x80;
        let bounds: Vec<usize> = (0..=v.len())
            .filter(|&i| i == 0 || i == v.len() || word(v[i - 1]) != word(v[i]) || !word(v[i]))
            .collect();
        let ends: Vec<usize> = (0..=v.len())
            .filter(|&i| i == 0 || i == v.len() || word(v[i - 1]) != word(v[i]) || !word(v[i - 1]))
            .collect();
        bounds.iter().any(|&s| {
            ends.iter()
                .filter(|&&e| e > s)
                .any(|&e| self.is_id(&v[s..e], f))
        })
    }

    /// Builds the lookup filters now (they are otherwise built by the first
    /// scan, while other scanning threads wait), e.g. beside other work.
    pub fn prepare(&self) {
        self.filters();
    }

    fn filters(&self) -> &Filters {
        self.filters.get_or_init(|| Filters {
            raw: Bitmap::new(self.raw.iter().map(|n| prefix8(n))),
            raw_ascii: Bitmap::new(
                self.raw
                    .iter()
                    .flat_map(|n| (0..BLOCK).map(move |d| prefix8(&n[d..])))
                    .filter(|&k| k & NOT_ASCII == 0)
                    .collect::<Vec<u64>>()
                    .into_iter(),
            ),
            // The first 8 characters of each encoding: 4 bytes as lowercase
            // hex, 6 as standard base64.
            hex: Bitmap::new(self.raw.iter().map(|n| {
                let mut h = [0u8; 8];
                // Exactly the needed length: cannot fail.
                let _ = hex::encode_to_slice(&n[..4], &mut h);
                prefix8(&h)
            })),
            b64: Bitmap::new(self.raw.iter().map(|n| {
                let mut b = [0u8; 8];
                let _ = STANDARD_NO_PAD.encode_slice(&n[..6], &mut b);
                prefix8(&b)
            })),
            ids: Bitmap::new(self.ids.iter().map(id_key)),
            id_lens: self.ids.iter().fold(0, |m, id| m | len_bit(id.len())),
        })
    }

    fn find_pseudonym(&self, bytes: &[u8], f: &Filters) -> Option<usize> {
        if self.raw.is_empty() {
            return None;
        }
        let raw_hit = self.find_raw_pseudonym(bytes, f);
        if raw_hit.is_some() {
            return raw_hit;
        }
        let hex_hit = runs(bytes, u8::is_ascii_hexdigit, HEX_LEN).find_map(|(at, run)| {
            run.windows(HEX_LEN)
                .position(|w| {
                    if !f.hex.may_contain(prefix8(w) | HEX_LOWER) {
                        return false;
                    }
                    // A run of hex digits: decodes whatever the case.
                    let mut bytes = [0u8; PSEUDONYM_LEN];
                    hex::decode_to_slice(w, &mut bytes).is_ok() && self.raw.contains(&bytes)
                })
                .map(|i| at + i)
        });
        if hex_hit.is_some() {
            return hex_hit;
        }
        runs(bytes, b64_char, B64_LEN).find_map(|(at, run)| {
            run.windows(B64_LEN)
                .position(|w| {
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
                    // Only the canonical form (the last character's unused
                    // bits zero) decodes: the form an encoder writes.
                    let mut bytes = [0u8; PSEUDONYM_LEN + 2];
                    STANDARD_NO_PAD.decode_slice(buf, &mut bytes) == Ok(PSEUDONYM_LEN)
                        && self.raw.contains(&bytes[..PSEUDONYM_LEN])
                })
                .map(|i| at + i)
        })
    }

    /// The first offset of a raw pseudonym in `bytes`.
    ///
    /// Each offset is judged by the 8-byte block that starts at the first
    /// multiple of 8 at or after it: a pseudonym there covers that block.
    /// In JSON and CSV nearly every block is ASCII, and only a pseudonym with
    /// an ASCII stretch of 8 bytes (about 1 in 32) can cover one, so a probe
    /// of their small bitmap clears the block's eight offsets at once; the
    /// other blocks' offsets are probed one by one (the full bitmap is 8 MB
    /// at 4M pseudonyms, beyond the L2 cache).
    fn find_raw_pseudonym(&self, bytes: &[u8], f: &Filters) -> Option<usize> {
        let last = bytes.len().checked_sub(PSEUDONYM_LEN)?;
        let holds = |p: usize| {
            let w = &bytes[p..p + PSEUDONYM_LEN];
            f.raw.may_contain(prefix8(w))
                && w.try_into()
                    .is_ok_and(|w: [u8; PSEUDONYM_LEN]| self.raw.contains(&w))
        };
        // Offsets before `start` are judged.
        let mut start = 0;
        while start <= last {
            // At most last + 7, so the block ends before the bytes do.
            let block_at = start.next_multiple_of(BLOCK);
            let end = block_at.min(last);
            let block = prefix8(&bytes[block_at..]);
            if (block & NOT_ASCII != 0 || f.raw_ascii.may_contain(block))
                && let Some(p) = (start..=end).find(|&p| holds(p))
            {
                return Some(p);
            }
            start = end + 1;
        }
        None
    }

    /// The first offset of any form of key material in `bytes`.
    ///
    /// A form written in the base64 alphabets (hex digits are among them)
    /// can only occur inside a run of such characters at least as long as
    /// itself, so those forms are searched in such runs only; the raw forms
    /// are searched everywhere.
    fn find_secret(&self, bytes: &[u8]) -> Option<usize> {
        let (text, raw): (Vec<&[u8]>, Vec<&[u8]>) = self
            .secrets
            .iter()
            .map(Vec::as_slice)
            .partition(|s| s.iter().all(b64_char));
        let first = raw
            .iter()
            .filter_map(|s| memchr::memmem::find(bytes, s))
            .min();
        let Some(shortest) = text.iter().map(|s| s.len()).min() else {
            return first;
        };
        for (at, run) in runs(bytes, b64_char, shortest) {
            if first.is_some_and(|f| f < at) {
                break;
            }
            if let Some(i) = text
                .iter()
                .filter_map(|s| memchr::memmem::find(run, s))
                .min()
            {
                return Some(first.map_or(at + i, |f| f.min(at + i)));
            }
        }
        first
    }
}

/// Whether `b` is in the standard or the url-safe base64 alphabet.
fn b64_char(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// Maximal runs of bytes satisfying `pred` that are at least `min` long
/// (`min` at least 1), with their offsets.
///
/// Reads the byte `min - 1` ahead first: when it does not satisfy `pred`,
/// no long enough run starts before it, and the scan jumps past it. In a
/// release, runs of hex or base64 characters (titles, numbers) are shorter
/// than a pseudonym's, so most bytes are never read.
fn runs<'a>(
    bytes: &'a [u8],
    pred: impl Fn(&u8) -> bool + 'a,
    min: usize,
) -> impl Iterator<Item = (usize, &'a [u8])> + 'a {
    // No run of `min` or more bytes starts before `from`, and `from` is 0
    // or follows a byte that does not satisfy `pred`.
    let mut from = 0;
    std::iter::from_fn(move || {
        loop {
            let ahead = from + min.max(1) - 1;
            if !pred(bytes.get(ahead)?) {
                from = ahead + 1;
                continue;
            }
            let mut start = ahead;
            while start > from && pred(&bytes[start - 1]) {
                start -= 1;
            }
            let mut end = ahead + 1;
            while bytes.get(end).is_some_and(&pred) {
                end += 1;
            }
            from = end + 1;
            if end - start >= min {
                return Some((start, &bytes[start..end]));
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    use proptest::prelude::*;

    /// Ids of every shape (numeric, short, long, non-ASCII) are held once
    /// each while the buffer grows many times, and found as whole values
    /// only.
    #[test]
    fn identifiers_of_every_shape_are_held_once_across_growth() {
        let mut f = Forbidden::new();
        let shapes = |i: usize| {
            [
                i.to_string(),
                format!("U{i}"),
                format!("borrower-{i:0>40}"),
                format!("ä{i}"),
            ]
        };
        for round in 0..2 {
            for i in 0..5_000 {
                for id in shapes(i) {
                    f.add_identifier(&id);
                }
            }
            assert_eq!(f.identifiers(), 20_000, "round {round}");
        }
        f.add_identifier("");
        assert_eq!(f.identifiers(), 20_000);
        for i in (0..5_000).step_by(7) {
            for id in shapes(i) {
                assert_eq!(
                    f.classify_value(id.as_bytes()),
                    Some(FindingKind::Identifier),
                    "{id}"
                );
            }
        }
        for other in ["5000", "U5000", "borrower-", "ä", "X1"] {
            assert_eq!(f.classify_value(other.as_bytes()), None, "{other}");
        }
        assert_eq!(f.identifiers_among(["12", "title-12", "U7"]), 2);
    }

    pub(crate) fn pseudonym(seed: u8) -> Pseudonym {
        let mut b = [0u8; 16];
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed.wrapping_mul(31).wrapping_add(i as u8 * 17) ^ 0xa5;
        }
        // Bytes that are '+'/'/' in base64 make the url-safe form differ.
        b[0] = 0xfb;
        b[1] = 0xff;
        Pseudonym(b)
    }

    /// A pseudonym with ASCII bytes from offset `seed % 10` on (all ASCII
    /// for 0): the ones a block-wise scan of ASCII text must still find.
    fn ascii_pseudonym(seed: u8) -> Pseudonym {
        let mut b = [0u8; 16];
        let from = usize::from(seed % 10);
        for (i, x) in b.iter_mut().enumerate() {
            *x = if i < from {
                0xf0 ^ i as u8
            } else {
                b'A' + (seed.wrapping_mul(7).wrapping_add(i as u8 * 5)) % 26
            };
        }
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
        forms
    }

    #[test]
    fn test_pseudonyms_differ_in_the_two_base64_alphabets() {
        for seed in 0..=u8::MAX {
            let f = forms(&pseudonym(seed));
            assert_ne!(f[3], f[5], "test pseudonym must exercise url-safe");
        }
    }

    #[test]
    fn every_pseudonym_form_is_found_with_its_offset() {
        let mut f = Forbidden::new();
        let others: Vec<_> = (0..200).map(pseudonym).collect();
        f.add_pseudonyms(&others);
        for form in forms(&pseudonym(7)) {
            let mut text = b"{\"title\":\"x".to_vec();
            let at = text.len();
            text.extend_from_slice(&form);
            text.extend_from_slice(b"\"}");
            assert_eq!(f.find_raw(&text), Some((FindingKind::Pseudonym, at)));
        }
        assert_eq!(f.find_raw(b"{\"title\":\"9788702173512\"}"), None);
    }

    /// Bytes long enough for the parallel pieces: a form straddling a
    /// piece boundary, or at the very end, is found at its offset, and a
    /// pseudonym is reported before an earlier secret, as by one scan.
    #[test]
    fn long_bytes_are_scanned_in_pieces_with_the_same_findings() {
        let key = [0x5au8; 40];
        let mut f = Forbidden::new();
        f.add_pseudonyms(&(0..50).map(pseudonym).collect::<Vec<_>>());
        f.add_secret(&key);
        // CSV-like text of titles and scores, as in a release's pair file.
        let line = b"9788702173512,9788711321683,0.125\n";
        let len = 3 * PIECE + 1000;
        let text: Vec<u8> = line.iter().copied().cycle().take(len).collect();
        assert_eq!(f.find_raw(&text), None);
        let planted = |at: usize, form: &[u8]| {
            let mut t = text.clone();
            t[at..at + form.len()].copy_from_slice(form);
            t
        };
        for form in forms(&pseudonym(9)) {
            for at in [PIECE - 5, 2 * PIECE - form.len(), len - form.len()] {
                let t = planted(at, &form);
                assert_eq!(f.find_raw(&t), Some((FindingKind::Pseudonym, at)));
            }
        }
        let hex_key = hex::encode(key).into_bytes();
        let t = planted(PIECE - 30, &hex_key);
        assert_eq!(f.find_raw(&t), Some((FindingKind::Secret, PIECE - 30)));
        let mut t = planted(10, &hex_key);
        let late = hex::encode(pseudonym(3).as_bytes()).into_bytes();
        t[3 * PIECE..3 * PIECE + late.len()].copy_from_slice(&late);
        assert_eq!(f.find_raw(&t), Some((FindingKind::Pseudonym, 3 * PIECE)));
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
            assert_eq!(f.find_raw(&text), Some((FindingKind::Secret, 7)));
        }
        assert_eq!(f.find_raw(b"nothing here"), None);
    }

    #[test]
    fn identifiers_match_whole_values_and_bounded_parts_only() {
        let mut f = Forbidden::new();
        for id in ["5", "4711", "card 0042", "M12345", "#77"] {
            f.add_identifier(id);
        }
        let id = Some(FindingKind::Identifier);
        assert_eq!(f.classify_value(b"5"), id);
        assert_eq!(f.classify_value(b"card-4711-x"), id);
        assert_eq!(f.classify_value(b"x card 0042 y"), id);
        assert_eq!(f.classify_value(b"see #77"), id);
        assert_eq!(f.classify_value(b"Harry Potter 5"), id);
        // Inside a longer word or number it is not the id.
        assert_eq!(f.classify_value(b"M123456"), None);
        assert_eq!(f.classify_value(b"9784711"), None);
        assert_eq!(f.classify_value(b"55"), None);
        assert_eq!(f.classify_value(b"card 00421"), None);
        assert_eq!(f.identifiers_among(["5", "6", "M12345"]), 2);
    }

    #[test]
    fn raw_bytes_never_match_identifiers() {
        let mut f = Forbidden::new();
        for id in ["1", "5", "100", "U4", "ABC"] {
            f.add_identifier(id);
        }
        assert_eq!(f.find_raw(b"{\"max_related\": 5, \"t\": \"ABC\"}"), None);
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
            prop_assert_eq!(f.find_raw(&text).map(|(k, _)| k), Some(FindingKind::Pseudonym));
            prop_assert_eq!(f.classify_value(&text), Some(FindingKind::Pseudonym));
        }

        /// The scan finds what a window-by-window comparison with every form
        /// of every needle finds, at the same offset (the first raw
        /// pseudonym, else the first in hex, else in base64, else the first
        /// key material), in bytes full of hex and base64 runs with needles
        /// planted anywhere (overlapping each other and the ends included).
        #[test]
        fn scan_agrees_with_comparing_every_form_at_every_offset(
            base in proptest::collection::vec(
                prop_oneof![
                    any::<u8>(),
                    proptest::sample::select(b"0aF9+/-_=\"".to_vec()),
                    b'A'..=b'Z',
                ],
                0..200,
            ),
            plants in proptest::collection::vec((0usize..9, any::<u8>(), 0usize..200), 0..3),
        ) {
            let pseudonyms: Vec<Pseudonym> =
                (0..20).map(pseudonym).chain((0..10).map(ascii_pseudonym)).collect();
            let key = [0x3eu8, 0xff, 0xfb, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90];
            let short_key = [0xfeu8, 0xed];
            let mut f = Forbidden::new();
            f.add_pseudonyms(&pseudonyms);
            f.add_secret(&key);
            f.add_secret(&short_key);
            let secret_forms: Vec<Vec<u8>> = [&key[..], &short_key[..]]
                .iter()
                .flat_map(|k| {
                    [
                        k.to_vec(),
                        hex::encode(k).into_bytes(),
                        hex::encode_upper(k).into_bytes(),
                        STANDARD_NO_PAD.encode(k).into_bytes(),
                        URL_SAFE_NO_PAD.encode(k).into_bytes(),
                    ]
                })
                .collect();
            let mut bytes = base;
            for (form, seed, at) in plants {
                let needle = match form {
                    0..7 => forms(&pseudonyms[usize::from(seed) % pseudonyms.len()])[form].clone(),
                    _ => secret_forms[usize::from(seed) % secret_forms.len()].clone(),
                };
                let at = at.min(bytes.len());
                bytes.splice(at..at, needle);
            }
            let std_b64 = |w: &[u8]| w.iter().map(|&b| b64_std(b)).collect::<Vec<u8>>();
            let first = |form: &dyn Fn(&[u8], &[u8]) -> bool| {
                (0..bytes.len()).find(|&i| pseudonyms.iter().any(|p| form(&bytes[i..], p.as_bytes())))
            };
            let raw = |rest: &[u8], b: &[u8]| rest.starts_with(b);
            let hex = |rest: &[u8], b: &[u8]| {
                rest.get(..HEX_LEN)
                    .is_some_and(|w| w.eq_ignore_ascii_case(hex::encode(b).as_bytes()))
            };
            let b64 = |rest: &[u8], b: &[u8]| {
                rest.get(..B64_LEN)
                    .is_some_and(|w| std_b64(w) == STANDARD_NO_PAD.encode(b).into_bytes())
            };
            let expected = match first(&raw).or_else(|| first(&hex)).or_else(|| first(&b64)) {
                Some(i) => Some((FindingKind::Pseudonym, i)),
                None => (0..bytes.len())
                    .find(|&i| secret_forms.iter().any(|s| bytes[i..].starts_with(s)))
                    .map(|i| (FindingKind::Secret, i)),
            };
            prop_assert_eq!(f.find_raw(&bytes), expected);
        }

        #[test]
        fn runs_are_the_long_pieces_between_other_bytes(
            bytes in proptest::collection::vec(proptest::sample::select(b"0a9Z\"-,".to_vec()), 0..300),
            min in 1usize..12,
        ) {
            let mut expected = Vec::new();
            let mut at = 0;
            for piece in bytes.split(|b| !b.is_ascii_alphanumeric()) {
                if piece.len() >= min {
                    expected.push((at, piece));
                }
                at += piece.len() + 1;
            }
            let found: Vec<(usize, &[u8])> = runs(&bytes, u8::is_ascii_alphanumeric, min).collect();
            prop_assert_eq!(found, expected);
        }

        #[test]
        fn random_bytes_never_hold_a_pseudonym_or_secret(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let mut f = Forbidden::new();
            f.add_pseudonyms(&(0..50).map(pseudonym).collect::<Vec<_>>());
            f.add_secret(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]);
            for id in ["1", "2", "A", "U4"] {
                f.add_identifier(id);
            }
            prop_assert_eq!(f.find_raw(&bytes), None);
        }

        #[test]
        fn a_planted_id_is_found_between_any_separators(
            id in prop_oneof!["[0-9]{1,3}", "[A-Z]{1,3}", "U[0-9]{1,3}", "[A-Z0-9]{6,12}"],
            before in "([a-z]{0,4}[ ,;:/()-]{1,2})?",
            after in "([ ,;:/()-]{1,2}[a-z]{0,4})?",
        ) {
            let mut f = Forbidden::new();
            f.add_identifier(&id);
            let value = format!("{before}{id}{after}");
            prop_assert_eq!(f.classify_value(value.as_bytes()), Some(FindingKind::Identifier));
        }
    }
}
