//! Reading a text export in bounded blocks that end at line breaks, decoded
//! to UTF-8, so a file larger than memory streams through.
//!
//! Every buffer here holds borrower ids, so each is zeroized before it is
//! reused, shrunk or dropped.

use std::io::Read;
use std::path::{Path, PathBuf};

use memchr::{memchr, memrchr};
use pipeline::Encoding;
use zeroize::{Zeroize, Zeroizing};

use crate::ExtractError;

/// Bytes read per block (before it is extended to the next line break).
pub(crate) const BLOCK_BYTES: usize = 16 << 20;

/// Longest line accepted: no circulation record comes near it, and the
/// bound keeps a file without line breaks from filling memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A source of raw bytes; a trait object so tests can feed slices.
type Input<'a> = Box<dyn Read + 'a>;

/// Successive blocks of a text export, each ending just after a line break
/// (the last one at the end of the file), in UTF-8.
pub(crate) struct Blocks<'a> {
    path: PathBuf,
    input: Input<'a>,
    encoding: Encoding,
    target: usize,
    /// Raw bytes read: a block, then the start of the next one.
    raw: Zeroizing<Vec<u8>>,
    /// Bytes at the start of `raw` handed out as the last block.
    handed: usize,
    /// The decoded block of a single-byte encoding.
    decoded: Zeroizing<Vec<u8>>,
    /// Line breaks handed out so far, to name the line of a failure.
    newlines: u64,
    /// Whether the input is exhausted.
    eof: bool,
    /// Whether the first bytes were checked for a byte order mark.
    started: bool,
    /// Size of the file, when known.
    len: Option<u64>,
}

impl<'a> Blocks<'a> {
    /// Opens `path` for reading in blocks of about `target` bytes.
    pub(crate) fn open(
        path: &Path,
        encoding: Encoding,
        target: usize,
    ) -> Result<Blocks<'static>, ExtractError> {
        let file = std::fs::File::open(path).map_err(|source| ExtractError::Io {
            path: path.to_owned(),
            source,
        })?;
        let len = file.metadata().ok().map(|m| m.len());
        let mut blocks = Blocks::new(path, Box::new(file), encoding, target);
        blocks.len = len;
        Ok(blocks)
    }

    /// Size of the input in bytes, when known.
    pub(crate) fn len(&self) -> Option<u64> {
        self.len
    }

    /// Blocks of `input`, named `path` in errors.
    pub(crate) fn new(path: &Path, input: Input<'a>, encoding: Encoding, target: usize) -> Self {
        Blocks {
            path: path.to_owned(),
            input,
            encoding,
            target: target.max(1),
            raw: Zeroizing::new(Vec::new()),
            handed: 0,
            decoded: Zeroizing::new(Vec::new()),
            newlines: 0,
            eof: false,
            started: false,
            len: None,
        }
    }

    fn io(&self, source: std::io::Error) -> ExtractError {
        ExtractError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// Reads until `raw` holds at least `want` bytes or the input ends.
    fn fill(&mut self, want: usize) -> Result<(), ExtractError> {
        while self.raw.len() < want && !self.eof {
            let len = self.raw.len();
            // Grow by hand: a reallocation by `resize` would free the old
            // buffer with its ids in it.
            if self.raw.capacity() < want {
                let mut bigger = Zeroizing::new(Vec::with_capacity(want));
                bigger.extend_from_slice(&self.raw);
                self.raw = bigger;
            }
            self.raw.resize(want, 0);
            match self.input.read(&mut self.raw[len..]) {
                Ok(0) => {
                    self.raw.truncate(len);
                    self.eof = true;
                }
                Ok(n) => self.raw.truncate(len + n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => self.raw.truncate(len),
                Err(e) => {
                    self.raw.truncate(len);
                    return Err(self.io(e));
                }
            }
        }
        Ok(())
    }

    /// Checks and drops a byte order mark at the start of the file.
    fn start(&mut self) -> Result<(), ExtractError> {
        self.started = true;
        self.fill(3)?;
        let utf16 = self.raw.starts_with(b"\xFF\xFE") || self.raw.starts_with(b"\xFE\xFF");
        let utf8 = self.raw.starts_with(b"\xEF\xBB\xBF");
        let found = match (utf16, utf8, self.encoding) {
            (true, _, _) => "utf-16",
            (_, true, Encoding::Utf8) => {
                self.raw.copy_within(3.., 0);
                let len = self.raw.len() - 3;
                self.raw[len..].zeroize();
                self.raw.truncate(len);
                return Ok(());
            }
            (_, true, _) => "utf-8",
            _ => return Ok(()),
        };
        Err(ExtractError::EncodingMismatch {
            path: self.path.clone(),
            found,
            declared: self.encoding.name(),
        })
    }

    /// The next block in UTF-8, or `None` at the end of the file.
    pub(crate) fn next_block(&mut self) -> Result<Option<&[u8]>, ExtractError> {
        if !self.started {
            self.start()?;
        }
        // Drop the block handed out last time, keeping the bytes after it.
        if self.handed > 0 {
            let len = self.raw.len();
            let keep = len - self.handed.min(len);
            self.raw.copy_within(len - keep.., 0);
            self.raw[keep..].zeroize();
            self.raw.truncate(keep);
            self.handed = 0;
        }
        self.fill(self.target)?;
        // End the block after its last line break; a block without one is
        // extended until it has one, up to the line limit.
        let mut searched = 0;
        let end = loop {
            if let Some(i) = memrchr(b'\n', &self.raw[searched..]) {
                break searched + i + 1;
            }
            if self.eof {
                break self.raw.len();
            }
            let since_break = self.raw.len();
            if since_break > MAX_LINE_BYTES {
                return Err(ExtractError::LineTooLong {
                    path: self.path.clone(),
                    line: self.newlines + 1,
                    limit: MAX_LINE_BYTES,
                });
            }
            searched = self.raw.len();
            self.fill(self.raw.len() + self.target.max(64 << 10))?;
        };
        if end == 0 {
            return Ok(None);
        }
        self.handed = end;
        let block = &self.raw[..end];
        // A line over the limit inside the block fails here too, so the
        // outcome does not depend on the block size.
        let mut line_start = 0usize;
        let mut newlines = 0u64;
        loop {
            let next = memchr(b'\n', &block[line_start..]).map(|i| line_start + i);
            let line_end = next.unwrap_or(block.len());
            if line_end - line_start > MAX_LINE_BYTES {
                return Err(ExtractError::LineTooLong {
                    path: self.path.clone(),
                    line: self.newlines + newlines + 1,
                    limit: MAX_LINE_BYTES,
                });
            }
            match next {
                Some(i) => {
                    newlines += 1;
                    line_start = i + 1;
                }
                None => break,
            }
        }
        self.newlines += newlines;
        match self.encoding {
            Encoding::Utf8 => Ok(Some(&self.raw[..end])),
            Encoding::Windows1252 | Encoding::Iso88591 => {
                decode_single_byte(self.encoding, &self.raw[..end], &mut self.decoded);
                Ok(Some(&self.decoded[..]))
            }
            // Future encodings are refused by the pipeline before this.
            _ => Ok(Some(&self.raw[..end])),
        }
    }
}

/// Decodes a single-byte encoding into `out` (wiped and replaced). Neither
/// encoding maps a byte to a line break, quote or ASCII separator that it
/// was not already, so lines and fields stay where they were.
fn decode_single_byte(encoding: Encoding, raw: &[u8], out: &mut Zeroizing<Vec<u8>>) {
    out.zeroize();
    out.clear();
    let need = raw.len() * 3;
    if out.capacity() < need {
        *out = Zeroizing::new(Vec::with_capacity(need));
    }
    match encoding {
        Encoding::Windows1252 => {
            let mut decoder = encoding_rs::WINDOWS_1252.new_decoder_without_bom_handling();
            let need = decoder.max_utf8_buffer_length(raw.len()).unwrap_or(need);
            if out.capacity() < need {
                *out = Zeroizing::new(Vec::with_capacity(need));
            }
            out.resize(need, 0);
            // Windows-1252 maps every byte to a character, so nothing is
            // replaced, and three bytes per input byte always suffice.
            let (_, _, written, _) = decoder.decode_to_utf8(raw, &mut out[..], true);
            out[written..].zeroize();
            out.truncate(written);
        }
        _ => {
            for &b in raw {
                if b < 0x80 {
                    out.push(b);
                } else {
                    out.push(0xC0 | (b >> 6));
                    out.push(0x80 | (b & 0x3F));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocks(data: &[u8], encoding: Encoding, target: usize) -> Result<Vec<Vec<u8>>, String> {
        let mut b = Blocks::new(Path::new("f"), Box::new(data), encoding, target);
        let mut out = Vec::new();
        while let Some(block) = b.next_block().map_err(|e| e.to_string())? {
            out.push(block.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn blocks_end_at_line_breaks_and_cover_everything() {
        let data = b"\xEF\xBB\xBFa\nbb\r\nccc\n\ndddd\ne";
        for target in 1..data.len() + 2 {
            let out = blocks(data, Encoding::Utf8, target).unwrap();
            assert_eq!(out.concat(), data[3..].to_vec());
            for b in &out[..out.len() - 1] {
                assert_eq!(b.last(), Some(&b'\n'));
            }
        }
        assert!(blocks(b"", Encoding::Utf8, 4).unwrap().is_empty());
    }

    #[test]
    fn single_byte_encodings_decode_to_utf8() {
        let out = blocks(b"caf\xE9,\x80\n", Encoding::Windows1252, 64).unwrap();
        assert_eq!(out.concat(), "café,€\n".as_bytes());
        let out = blocks(b"caf\xE9,\x80\n", Encoding::Iso88591, 64).unwrap();
        assert_eq!(out.concat(), "café,\u{80}\n".as_bytes());
    }

    #[test]
    fn a_foreign_byte_order_mark_is_refused() {
        let err = blocks(b"\xEF\xBB\xBFa\n", Encoding::Windows1252, 64).unwrap_err();
        assert!(err.contains("utf-8 byte order mark"), "{err}");
        let err = blocks(b"\xFF\xFEa\0", Encoding::Utf8, 64).unwrap_err();
        assert!(err.contains("utf-16"), "{err}");
    }

    #[test]
    fn a_line_over_the_limit_fails_whatever_the_block_size() {
        let mut data = b"a\nb\n".to_vec();
        data.extend(std::iter::repeat_n(b'x', MAX_LINE_BYTES + 1));
        data.extend_from_slice(b"\nc\n");
        for target in [1, 1000, BLOCK_BYTES] {
            let err = blocks(&data, Encoding::Utf8, target).unwrap_err();
            assert!(err.contains("line 3 is longer than"), "{err}");
        }
        data.truncate(4 + MAX_LINE_BYTES);
        assert!(blocks(&data, Encoding::Utf8, 1000).is_ok());
    }
}
