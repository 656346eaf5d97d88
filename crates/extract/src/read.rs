//! Reading a text export in bounded blocks that end at line breaks, decoded
//! to UTF-8, so a file larger than memory streams through.
//!
//! Every buffer here holds borrower ids, so each is zeroized before it is
//! shrunk or dropped; the raw buffer's bytes past the data it holds are
//! overwritten by the next read rather than wiped in between.

use std::io::Read;
use std::path::{Path, PathBuf};

use memchr::{memchr_iter, memrchr};
use pipeline::Encoding;
use zeroize::{Zeroize, Zeroizing};

use crate::ExtractError;

/// Bytes read per block (before it is extended to the next line break).
pub(crate) const BLOCK_BYTES: usize = 16 << 20;

/// Longest line accepted: no circulation record comes near it, and the
/// bound keeps a file without line breaks from filling memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// A source of raw bytes; a trait object so tests can feed slices. `Send`,
/// so the next block can be read on another thread.
type Input<'a> = Box<dyn Read + Send + 'a>;

/// A block handed out by [`Blocks::next_owned`]: its bytes, then spare room
/// (stale bytes of an earlier block, wiped when the buffer is dropped).
pub(crate) struct Block {
    buf: Zeroizing<Vec<u8>>,
    len: usize,
}

impl Block {
    /// No block: a spare buffer to be allocated when first read into.
    pub(crate) fn empty() -> Block {
        Block {
            buf: Zeroizing::new(Vec::new()),
            len: 0,
        }
    }

    /// The block's bytes, ending just after a line break (or at the end of
    /// the file).
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// Successive blocks of a text export, each ending just after a line break
/// (the last one at the end of the file), in UTF-8.
pub(crate) struct Blocks<'a> {
    path: PathBuf,
    input: Input<'a>,
    encoding: Encoding,
    target: usize,
    /// Raw bytes read: a block, then the start of the next one, in the first
    /// `filled` bytes; the rest is spare room for reading.
    raw: Zeroizing<Vec<u8>>,
    /// Bytes of `raw` holding data.
    filled: usize,
    /// Bytes read after the last block [`Blocks::next_owned`] handed out,
    /// waiting for the next buffer.
    carry: Zeroizing<Vec<u8>>,
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
            filled: 0,
            carry: Zeroizing::new(Vec::new()),
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

    /// Reads until `raw` holds at least `want` bytes of data or the input
    /// ends. Reads go straight into the spare room: zeroing it first would
    /// cost a pass over every block.
    fn fill(&mut self, want: usize) -> Result<(), ExtractError> {
        while self.filled < want && !self.eof {
            // Grow by hand: a reallocation by `resize` would free the old
            // buffer with its ids in it (the old one is wiped when dropped).
            if self.raw.len() < want {
                let mut bigger = Zeroizing::new(vec![0u8; want]);
                bigger[..self.filled].copy_from_slice(&self.raw[..self.filled]);
                self.raw = bigger;
            }
            match self.input.read(&mut self.raw[self.filled..want]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io(e)),
            }
        }
        Ok(())
    }

    /// The data read so far.
    fn data(&self) -> &[u8] {
        &self.raw[..self.filled]
    }

    /// Checks and drops a byte order mark at the start of the file.
    fn start(&mut self) -> Result<(), ExtractError> {
        self.started = true;
        self.fill(3)?;
        let data = self.data();
        let utf16 = data.starts_with(b"\xFF\xFE") || data.starts_with(b"\xFE\xFF");
        let utf8 = data.starts_with(b"\xEF\xBB\xBF");
        let found = match (utf16, utf8, self.encoding) {
            (true, _, _) => "utf-16",
            (_, true, Encoding::Utf8) => {
                self.raw.copy_within(3..self.filled, 0);
                self.filled -= 3;
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
            let len = self.filled;
            let keep = len - self.handed.min(len);
            self.raw.copy_within(len - keep..len, 0);
            self.filled = keep;
            self.handed = 0;
        }
        self.fill(self.target)?;
        // End the block after its last line break; a block without one is
        // extended until it has one, up to the line limit.
        let mut searched = 0;
        let end = loop {
            if let Some(i) = memrchr(b'\n', &self.data()[searched..]) {
                break searched + i + 1;
            }
            if self.eof {
                break self.filled;
            }
            let since_break = self.filled;
            if since_break > MAX_LINE_BYTES {
                return Err(ExtractError::LineTooLong {
                    path: self.path.clone(),
                    line: self.newlines + 1,
                    limit: MAX_LINE_BYTES,
                });
            }
            searched = self.filled;
            self.fill(self.filled + self.target.max(64 << 10))?;
        };
        if end == 0 {
            return Ok(None);
        }
        self.handed = end;
        let block = &self.raw[..end];
        // A line over the limit inside the block fails here too, so the
        // outcome does not depend on the block size.
        if let Some(start) = long_line(block) {
            let before = memchr_iter(b'\n', &block[..start]).count() as u64;
            return Err(ExtractError::LineTooLong {
                path: self.path.clone(),
                line: self.newlines + before + 1,
                limit: MAX_LINE_BYTES,
            });
        }
        self.newlines += memchr_iter(b'\n', block).count() as u64;
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

/// Where the first line of `block` longer than [`MAX_LINE_BYTES`] (line
/// break excluded) starts, if there is one.
///
/// One search per window of the limit's size rather than one per line: from
/// the start of a line, the last line break within the limit ends every
/// line that starts before it, all of them short enough; a window without a
/// line break means the line is too long, unless the block ends first.
fn long_line(block: &[u8]) -> Option<usize> {
    let mut start = 0usize;
    loop {
        let window_end = start.saturating_add(MAX_LINE_BYTES + 1);
        let Some(window) = block.get(start..window_end) else {
            // The rest of the block is shorter than the limit.
            return None;
        };
        match memrchr(b'\n', window) {
            Some(i) => start += i + 1,
            None => return Some(start),
        }
    }
}

impl Blocks<'_> {
    /// Like [`Blocks::next_block`], but hands out the block's buffer itself,
    /// reading into `spare` (a block the caller is done with), so that one
    /// block can be parsed while the next is read. Two block buffers then
    /// take turns; the partial line after a block waits in a small one.
    pub(crate) fn next_owned(&mut self, spare: Block) -> Result<Option<Block>, ExtractError> {
        if !matches!(self.encoding, Encoding::Utf8) {
            // Decoded blocks live in their own buffer: copy them out.
            let Some(block) = self.next_block()? else {
                return Ok(None);
            };
            let mut buf = spare.buf;
            if buf.len() < block.len() {
                buf = Zeroizing::new(vec![0u8; block.len()]);
            }
            buf[..block.len()].copy_from_slice(block);
            return Ok(Some(Block {
                buf,
                len: block.len(),
            }));
        }
        if self.raw.is_empty() {
            // The last buffer was handed out: read on in the spare one,
            // after the carried bytes.
            let mut buf = spare.buf;
            let n = self.carry.len();
            if buf.len() < n {
                buf = Zeroizing::new(vec![0u8; n]);
            }
            buf[..n].copy_from_slice(&self.carry);
            self.carry.zeroize();
            self.raw = buf;
            self.filled = n;
            self.handed = 0;
        }
        let Some(block) = self.next_block()? else {
            return Ok(None);
        };
        let end = block.len();
        let rest = self.filled - end;
        // Grown by hand, like `raw`: a reallocation would free ids unwiped.
        if self.carry.capacity() < rest {
            self.carry = Zeroizing::new(Vec::with_capacity(rest));
        }
        self.carry.extend_from_slice(&self.raw[end..self.filled]);
        let buf = Zeroizing::new(std::mem::take(&mut *self.raw));
        self.filled = 0;
        self.handed = 0;
        Ok(Some(Block { buf, len: end }))
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
    fn owned_blocks_are_the_borrowed_ones() {
        let utf8 = &b"\xEF\xBB\xBFa\nbb\r\nccc\n\ndddd\ne"[..];
        let latin1 = &b"caf\xE9\nbb\r\n\xE6\n"[..];
        for (data, encoding) in [(utf8, Encoding::Utf8), (latin1, Encoding::Iso88591)] {
            for target in 1..data.len() + 2 {
                let mut b = Blocks::new(Path::new("f"), Box::new(data), encoding, target);
                let mut owned = Vec::new();
                let mut spare = Block::empty();
                while let Some(block) = b.next_owned(spare).unwrap() {
                    owned.push(block.bytes().to_vec());
                    spare = block;
                }
                assert_eq!(owned, blocks(data, encoding, target).unwrap(), "{target}");
            }
        }
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
    fn long_line_finds_the_first_line_over_the_limit() {
        // The per-line reference the window search replaces.
        fn naive(block: &[u8]) -> Option<usize> {
            let mut start = 0;
            for line in block.split(|&b| b == b'\n') {
                if line.len() > MAX_LINE_BYTES {
                    return Some(start);
                }
                start += line.len() + 1;
            }
            None
        }
        let lens = [1, MAX_LINE_BYTES, MAX_LINE_BYTES + 1, 5];
        let mut combos: Vec<Vec<usize>> = lens.iter().map(|&l| vec![l]).collect();
        for _ in 0..2 {
            let longer: Vec<Vec<usize>> = combos
                .iter()
                .flat_map(|c| lens.iter().map(move |&l| [c.clone(), vec![l]].concat()))
                .collect();
            combos.extend(longer.into_iter().filter(|c| c.len() <= 3));
        }
        combos.sort();
        combos.dedup();
        for combo in combos {
            for trailing in [false, true] {
                let mut block = Vec::new();
                for (i, &len) in combo.iter().enumerate() {
                    block.extend(std::iter::repeat_n(b'x', len));
                    if i + 1 < combo.len() || trailing {
                        block.push(b'\n');
                    }
                }
                assert_eq!(long_line(&block), naive(&block), "{combo:?} {trailing}");
            }
        }
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
