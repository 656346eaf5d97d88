//! Row parsing: header lookup, the parallel quote-free fast path, the
//! streaming csv path (the csv crate's `csv-core` state machine, fed block
//! by block), and the per-chunk state and per-row checks all of them share.

use jiff::civil::Date;
use loans::LoanMonth;
use memchr::{memchr, memchr_iter};
use rayon::prelude::*;

use crate::borrower::BorrowerKeys;
use crate::date::DateParser;
use crate::keys::Keys;
use crate::records::LoanDate;
use crate::separators::Separators;
use crate::{MAX_REJECTED_ROWS, RejectReason, Rejections};

/// Where the used columns are and how rows are checked.
pub(crate) struct Layout {
    /// Field separator.
    pub(crate) delimiter: u8,
    /// Number of header fields; every row must have as many.
    pub(crate) width: usize,
    /// Field indexes of borrower id, title and date.
    pub(crate) columns: [usize; 3],
    /// Date parser.
    pub(crate) dates: DateParser,
    /// Dates after this day are rejected.
    pub(crate) today: Date,
}

impl Layout {
    /// Puts `field`, the line's field number `width`, in the slots of
    /// `fields` whose column it is (borrower id, title, date).
    fn place<T: Copy>(&self, fields: &mut [T; 3], width: usize, field: T) {
        for (slot, &col) in fields.iter_mut().zip(&self.columns) {
            if col == width {
                *slot = field;
            }
        }
    }
}

/// Rejections by reason, row numbers relative to the chunk's base line.
pub(crate) type Rejects = [Rejections; RejectReason::ALL.len()];

/// A chunk's keys, in hash partitions until numbered; reused from block to
/// block.
pub(crate) struct KeyBuffers {
    /// Canonical borrower ids, one per kept row.
    pub(crate) borrowers: BorrowerKeys,
    /// Trimmed titles, one per kept row.
    pub(crate) titles: Keys,
}

impl Default for KeyBuffers {
    fn default() -> Self {
        KeyBuffers {
            borrowers: BorrowerKeys::default(),
            titles: Keys::new(false),
        }
    }
}

/// What one chunk of rows yields: its kept rows' keys, to be numbered by
/// the [`crate::merge::Assembler`], and months.
pub(crate) struct Chunk {
    /// Borrower ids and titles of the kept rows.
    pub(crate) keys: KeyBuffers,
    /// Per kept row: loan month.
    pub(crate) months: Vec<LoanMonth>,
    /// Rows kept (with `ids_only`, rows that would have been kept). A chunk
    /// is a block or less of a file, or a bounded batch of records.
    pub(crate) kept: u32,
    /// Data rows seen (blank lines are not rows).
    pub(crate) rows_read: u64,
    /// Rejected rows.
    pub(crate) rejects: Rejects,
    /// Line number that chunk-local line numbers are relative to.
    pub(crate) base_line: u64,
    /// Line breaks in the chunk, to number the lines of the next chunk.
    pub(crate) newlines: u64,
    /// Latest loan day kept.
    pub(crate) newest: Option<Date>,
    /// Only the distinct borrower ids of the kept rows are wanted (lent to
    /// a leak check): the rows and their titles are checked as always, but
    /// not kept.
    pub(crate) ids_only: bool,
}

impl Chunk {
    /// An empty chunk whose line numbers are relative to `base_line`.
    pub(crate) fn new(base_line: u64) -> Self {
        Chunk::with_buffers(base_line, 0, KeyBuffers::default())
    }

    /// An empty chunk with room for `rows` rows, filling `keys` (empty).
    pub(crate) fn with_buffers(base_line: u64, rows: usize, keys: KeyBuffers) -> Self {
        Chunk {
            keys,
            months: Vec::with_capacity(rows),
            kept: 0,
            rows_read: 0,
            rejects: Default::default(),
            base_line,
            newlines: 0,
            newest: None,
            ids_only: false,
        }
    }

    pub(crate) fn reject(&mut self, line: u64, reason: RejectReason) {
        let r = &mut self.rejects[reason as usize];
        r.count += 1;
        if r.rows.len() < MAX_REJECTED_ROWS {
            r.rows.push(line);
        }
    }

    /// Counts a row rejected before its fields could be checked.
    pub(crate) fn push_rejected(&mut self, line: u64, reason: RejectReason) {
        self.rows_read += 1;
        self.reject(line, reason);
    }

    /// Checks one text record of `width` fields whose used fields are
    /// `fields` and keeps it or counts why not. `line` is chunk-local.
    pub(crate) fn push(&mut self, layout: &Layout, line: u64, width: usize, fields: [&[u8]; 3]) {
        if width != layout.width {
            self.rows_read += 1;
            return self.reject(line, RejectReason::WrongColumnCount);
        }
        self.rows_read += 1;
        let [borrower, title, date] = fields;
        self.check(
            line,
            borrower,
            title,
            LoanDate::Text(date),
            &layout.dates,
            layout.today,
        );
    }

    /// Like [`Chunk::push`] for a line already validated as UTF-8 text;
    /// `nul_free` says the line holds no NUL byte.
    pub(crate) fn push_text(
        &mut self,
        layout: &Layout,
        line: u64,
        width: usize,
        fields: [&str; 3],
        nul_free: bool,
    ) {
        self.rows_read += 1;
        if width != layout.width {
            return self.reject(line, RejectReason::WrongColumnCount);
        }
        let [borrower, title, date] = fields;
        self.check_text(
            line,
            borrower,
            title,
            date,
            nul_free,
            &layout.dates,
            layout.today,
        );
    }

    /// Checks one record whose fields are already text (`None` for a null)
    /// and whose date is already a day or the reason it is not one, and
    /// keeps it or counts why not. Typed sources (Parquet files) call this.
    pub(crate) fn push_value(
        &mut self,
        layout: &Layout,
        line: u64,
        borrower: Option<&str>,
        title: Option<&str>,
        day: Result<Date, RejectReason>,
    ) {
        self.rows_read += 1;
        let date = match day {
            Ok(day) => LoanDate::Day(day),
            Err(RejectReason::MissingDate) => LoanDate::Missing,
            Err(reason) => LoanDate::Rejected(reason),
        };
        self.check(
            line,
            borrower.unwrap_or("").as_bytes(),
            title.unwrap_or("").as_bytes(),
            date,
            &layout.dates,
            layout.today,
        );
    }
}

/// Drops one trailing carriage return (CRLF line endings).
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Whether the quote-free fast path reads `data` exactly as the csv crate
/// would: no quote anywhere and no carriage return that is not part of CRLF
/// (the csv crate ends a record at a lone CR).
pub(crate) fn fast_path_applies(data: &[u8]) -> bool {
    memchr(b'"', data).is_none()
        && memchr_iter(b'\r', data).all(|i| data.get(i + 1) == Some(&b'\n'))
}

/// The header of a quote-free file and what follows it.
pub(crate) struct FastHeader<'a> {
    /// Header fields, raw.
    pub(crate) names: Vec<&'a [u8]>,
    /// The data after the header line.
    pub(crate) body: &'a [u8],
    /// Line number of the first line of `body`.
    pub(crate) body_line: u64,
}

/// Finds the header (the first non-blank line, as the csv crate skips blank
/// lines) of quote-free data; `None` when there is none.
pub(crate) fn fast_header(data: &[u8], delimiter: u8) -> Option<FastHeader<'_>> {
    let mut rest = data;
    let mut line_no = 1u64;
    while !rest.is_empty() {
        let (line, next) = match memchr(b'\n', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        let line = strip_cr(line);
        if !line.is_empty() {
            return Some(FastHeader {
                names: line.split(|&b| b == delimiter).collect(),
                body: next,
                body_line: line_no + 1,
            });
        }
        rest = next;
        line_no += 1;
    }
    None
}

/// Splits `body` into pieces of about `target` bytes that end at line breaks.
fn split_at_lines(body: &[u8], target: usize) -> Vec<&[u8]> {
    let mut pieces = Vec::with_capacity(body.len() / target.max(1) + 1);
    let mut rest = body;
    while !rest.is_empty() {
        let cut = if rest.len() <= target {
            rest.len()
        } else {
            memchr(b'\n', &rest[target..]).map_or(rest.len(), |i| target + i + 1)
        };
        let (piece, next) = rest.split_at(cut);
        pieces.push(piece);
        rest = next;
    }
    pieces
}

/// Parses the lines of one quote-free piece into `keys`, with room for
/// `rows` rows; line numbers are piece-local.
fn parse_piece(
    piece: &[u8],
    layout: &Layout,
    rows: usize,
    keys: KeyBuffers,
    ids_only: bool,
) -> Chunk {
    let mut chunk = Chunk::with_buffers(0, rows, keys);
    chunk.ids_only = ids_only;
    // Nearly every piece is text without a NUL: checked once for the whole
    // piece, so that each line needs neither check (two calls a line were
    // about a tenth of parsing). A line break is ASCII, so the lines of
    // valid text are valid text.
    let nul_free = memchr(0, piece).is_none();
    chunk.newlines = match std::str::from_utf8(piece) {
        // A CR delimiter would end the last field before the CR of a CRLF
        // is stripped; the configuration refuses one, the slow path reads it.
        Ok(text) if layout.delimiter != b'\r' && layout.delimiter != b'\n' => {
            parse_text_piece(text, layout, nul_free, &mut chunk)
        }
        text => parse_lines(piece, text.ok(), layout, nul_free, &mut chunk),
    };
    chunk
}

/// The fields of the line being split, and where its next field starts.
struct Line<'a> {
    start: usize,
    field: usize,
    width: usize,
    fields: [&'a str; 3],
}

impl<'a> Line<'a> {
    fn at(start: usize) -> Self {
        Line {
            start,
            field: start,
            width: 0,
            fields: [""; 3],
        }
    }

    /// Ends the current field at `end` (exclusive); `false` if that is not a
    /// char boundary (never: separators are ASCII).
    fn field_ends(&mut self, text: &'a str, end: usize, layout: &Layout) -> bool {
        let Some(field) = text.get(self.field..end) else {
            return false;
        };
        layout.place(&mut self.fields, self.width, field);
        self.width += 1;
        self.field = end + 1;
        true
    }
}

/// [`parse_piece`] for a piece of valid UTF-8 text: one pass over its
/// separators ([`Separators`]), each field cut as it ends. Returns the line
/// breaks seen.
fn parse_text_piece(text: &str, layout: &Layout, nul_free: bool, chunk: &mut Chunk) -> u64 {
    let bytes = text.as_bytes();
    let mut newlines = 0u64;
    let mut local = 0u64;
    let mut line = Line::at(0);
    let mut split = true;
    // The last line may lack its line feed: a virtual one ends the piece.
    let ends =
        std::iter::once((bytes.len(), true)).filter(|_| bytes.last().is_some_and(|&b| b != b'\n'));
    for (at, feed) in Separators::new(bytes, layout.delimiter).chain(ends) {
        if !feed {
            split = split && line.field_ends(text, at, layout);
            continue;
        }
        if at < bytes.len() {
            newlines += 1;
        }
        // The line without its line feed and one CR before it.
        let end = if at > line.start && bytes[at - 1] == b'\r' {
            at - 1
        } else {
            at
        };
        if end > line.start {
            let raw = &bytes[line.start..end];
            if split && line.field_ends(text, end, layout) {
                let nul_free = nul_free || memchr(0, raw).is_none();
                chunk.push_text(layout, local, line.width, line.fields, nul_free);
            } else {
                push_raw_line(raw, layout, local, chunk);
            }
        }
        local += 1;
        line = Line::at(at + 1);
        split = true;
    }
    newlines
}

/// [`parse_piece`] line by line, for a piece that is not all valid UTF-8
/// (`text` is `None`) or whose delimiter is a line-end byte. Returns the
/// line breaks seen.
fn parse_lines(
    piece: &[u8],
    text: Option<&str>,
    layout: &Layout,
    nul_free: bool,
    chunk: &mut Chunk,
) -> u64 {
    let mut local = 0u64;
    let mut pos = 0usize;
    // Counted here rather than by a second pass over the piece.
    let mut newlines = 0u64;
    while pos < piece.len() {
        let rest = &piece[pos..];
        let (line_end, step) = match memchr(b'\n', rest) {
            Some(i) => {
                newlines += 1;
                (i, i + 1)
            }
            None => (rest.len(), rest.len()),
        };
        let line = strip_cr(&rest[..line_end]);
        let line_text = match text {
            // `line` ends at a line break or CR (ASCII) or the end: a char
            // boundary.
            Some(text) => text.get(pos..pos + line.len()),
            // One UTF-8 check per line instead of one per used field: the
            // delimiter is ASCII, so fields of valid text are text too.
            None => std::str::from_utf8(line).ok(),
        };
        if let Some(line_text) = line_text
            && !line_text.is_empty()
            && let Some((width, fields)) = text_fields(line_text, layout)
        {
            let nul_free = nul_free || memchr(0, line).is_none();
            chunk.push_text(layout, local, width, fields, nul_free);
        } else if !line.is_empty() {
            push_raw_line(line, layout, local, chunk);
        }
        local += 1;
        pos += step;
    }
    newlines
}

/// Splits a non-empty line that is not text and checks it as bytes.
fn push_raw_line(line: &[u8], layout: &Layout, local: u64, chunk: &mut Chunk) {
    let mut fields: [&[u8]; 3] = [&[]; 3];
    let mut width = 0usize;
    let mut start = 0usize;
    let ends = memchr_iter(layout.delimiter, line).chain(std::iter::once(line.len()));
    for end in ends {
        let field = &line[start..end];
        layout.place(&mut fields, width, field);
        width += 1;
        start = end + 1;
    }
    chunk.push(layout, local, width, fields);
}

/// The number of fields of a line of text and its used fields; `None` if a
/// field would not be text (never with an ASCII delimiter).
fn text_fields<'a>(text: &'a str, layout: &Layout) -> Option<(usize, [&'a str; 3])> {
    let mut fields: [&str; 3] = [""; 3];
    let mut width = 0usize;
    let mut start = 0usize;
    let ends = memchr_iter(layout.delimiter, text.as_bytes()).chain(std::iter::once(text.len()));
    for end in ends {
        let field = text.get(start..end)?;
        layout.place(&mut fields, width, field);
        width += 1;
        start = end + 1;
    }
    Some((width, fields))
}

/// Parses quote-free `body` (starting at line `body_line`) in pieces of about
/// `target` bytes, in parallel, each chunk with room for `rows` rows and
/// filling key buffers from `spare` while it lasts (keeping borrower ids
/// only with `ids_only`); the chunks come back in file order.
pub(crate) fn parse_fast(
    body: &[u8],
    body_line: u64,
    layout: &Layout,
    target: usize,
    rows: usize,
    spare: &mut Vec<KeyBuffers>,
    ids_only: bool,
) -> Vec<Chunk> {
    let pieces = split_at_lines(body, target);
    let buffers: Vec<KeyBuffers> = (0..pieces.len())
        .map(|_| spare.pop().unwrap_or_default())
        .collect();
    let mut chunks: Vec<Chunk> = pieces
        .par_iter()
        .zip(buffers)
        .map(|(piece, keys)| parse_piece(piece, layout, rows, keys, ids_only))
        .collect();
    let mut line = body_line;
    for chunk in &mut chunks {
        chunk.base_line = line;
        line += chunk.newlines;
    }
    chunks
}

/// The csv reader the works mapping (and the tests' reference) use.
pub(crate) fn csv_reader(data: &[u8], delimiter: u8) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(data)
}

/// The line on which the record read from `data` at `pos` starts.
///
/// The csv crate records a position before it skips the LF of a CRLF and
/// blank lines, so its `line()` can name the line before the record; the
/// bytes it skips are line breaks only, so counting them fixes that.
pub(crate) fn record_line(data: &[u8], pos: &csv::Position) -> u64 {
    let from = usize::try_from(pos.byte()).map_or(data.len(), |b| b.min(data.len()));
    let skipped = data[from..]
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .filter(|&&b| b == b'\n')
        .count();
    pos.line() + skipped as u64
}

/// Reads the records after the header from `reader` (over `data`) with the
/// csv crate, all in memory: the reference the streaming path is tested
/// against. `Err(line)` for a record the csv crate cannot read.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn parse_csv<R: std::io::Read>(
    data: &[u8],
    reader: &mut csv::Reader<R>,
    layout: &Layout,
) -> Result<Chunk, u64> {
    let mut chunk = Chunk::new(0);
    let mut record = csv::ByteRecord::new();
    loop {
        let before = record_line(data, reader.position());
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => return Err(before),
        }
        let line = record.position().map_or(before, |p| record_line(data, p));
        let fields = layout.columns.map(|c| record.get(c).unwrap_or(&[]));
        chunk.push(layout, line, record.len(), fields);
    }
    Ok(chunk)
}

/// Longest record the csv path assembles (quoted line breaks included).
pub(crate) const MAX_RECORD_BYTES: usize = crate::read::MAX_LINE_BYTES;

/// A record too long for [`MAX_RECORD_BYTES`], starting at `line`.
pub(crate) struct RecordTooLong {
    /// Line the record starts on.
    pub(crate) line: u64,
}

/// Called per record with its starting line, field bytes and field ends.
pub(crate) type OnRecord<'a> = dyn FnMut(u64, &[u8], &[usize]) + 'a;

/// The csv crate's record reader (`csv-core`), fed one block at a time, so
/// quoted fields may hold separators and line breaks and may span blocks.
///
/// It numbers records by the line of their first byte, as the csv crate's
/// positions (corrected by [`record_line`]) do: line breaks before a record
/// are skipped here, which is what `csv-core` does with them too.
pub(crate) struct CsvRecords {
    reader: csv_core::Reader,
    /// Field bytes of the record being read.
    out: zeroize::Zeroizing<Vec<u8>>,
    /// End offsets of its fields in `out`.
    ends: Vec<usize>,
    out_len: usize,
    ends_len: usize,
    /// Line of the next byte fed.
    line: u64,
    /// Line of the record being read, once its first byte is seen.
    record_line: Option<u64>,
    /// Whether the end of input was signalled.
    done: bool,
    /// Whether `reader` has been called once.
    primed: bool,
}

impl CsvRecords {
    /// A reader whose next byte is on line `line`.
    pub(crate) fn new(delimiter: u8, line: u64) -> Self {
        CsvRecords {
            reader: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            out: zeroize::Zeroizing::new(vec![0; 1024]),
            ends: vec![0; 16],
            out_len: 0,
            ends_len: 0,
            line,
            record_line: None,
            done: false,
            primed: false,
        }
    }

    /// Feeds `input` (empty for the end of the file) and calls `record` with
    /// the starting line, the field bytes and the field end offsets of every
    /// record it completes.
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        record: &mut OnRecord<'_>,
    ) -> Result<(), RecordTooLong> {
        let last = input.is_empty();
        if self.done {
            return Ok(());
        }
        loop {
            if self.record_line.is_none() {
                let skip = input
                    .iter()
                    .take_while(|&&b| b == b'\r' || b == b'\n')
                    .count();
                self.line += memchr_iter(b'\n', &input[..skip]).count() as u64;
                input = &input[skip..];
                if input.is_empty() && !last {
                    return Ok(());
                }
                self.record_line = Some(self.line);
            }
            // `csv-core` drops a byte order mark at the start of its first
            // input. The file's own mark is already gone, and this reader
            // may start mid-file or after skipped line breaks, where the
            // same bytes are data (a fuzz finding): a first call with one
            // byte is too short for it to strip anything.
            let fed = if self.primed {
                input
            } else {
                self.primed = true;
                &input[..input.len().min(1)]
            };
            let (result, nin, nout, nend) = self.reader.read_record(
                fed,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            self.line += memchr_iter(b'\n', &input[..nin]).count() as u64;
            input = &input[nin..];
            self.out_len += nout;
            self.ends_len += nend;
            match result {
                csv_core::ReadRecordResult::InputEmpty => {
                    if !last && input.is_empty() {
                        return Ok(());
                    }
                }
                csv_core::ReadRecordResult::OutputFull => {
                    let line = self.record_line.unwrap_or(self.line);
                    if self.out.len() >= MAX_RECORD_BYTES {
                        return Err(RecordTooLong { line });
                    }
                    // Grow by copying, so the old buffer is wiped when freed.
                    let mut bigger = zeroize::Zeroizing::new(vec![0; self.out.len() * 2]);
                    bigger[..self.out_len].copy_from_slice(&self.out[..self.out_len]);
                    self.out = bigger;
                }
                csv_core::ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len();
                    self.ends.resize(len * 2, 0);
                }
                csv_core::ReadRecordResult::Record => {
                    let line = self.record_line.take().unwrap_or(self.line);
                    record(line, &self.out[..self.out_len], &self.ends[..self.ends_len]);
                    self.out_len = 0;
                    self.ends_len = 0;
                }
                csv_core::ReadRecordResult::End => {
                    self.done = true;
                    return Ok(());
                }
            }
        }
    }
}

/// Field `i` of a record of `out` bytes ending at `ends`; empty if absent.
pub(crate) fn field<'a>(out: &'a [u8], ends: &[usize], i: usize) -> &'a [u8] {
    let start = match i.checked_sub(1) {
        Some(p) => ends.get(p).copied().unwrap_or(0),
        None => 0,
    };
    ends.get(i)
        .and_then(|&end| out.get(start..end))
        .unwrap_or(&[])
}

/// Calls [`Chunk::push`] for one csv record.
pub(crate) fn push_record(
    chunk: &mut Chunk,
    layout: &Layout,
    line: u64,
    out: &[u8],
    ends: &[usize],
) {
    let used = layout.columns.map(|c| field(out, ends, c));
    chunk.push(layout, line, ends.len(), used);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_end_at_line_breaks_and_cover_everything() {
        let body = b"a\nbb\nccc\ndddd\ne";
        for target in 1..body.len() + 2 {
            let pieces = split_at_lines(body, target);
            assert_eq!(pieces.concat(), body.to_vec());
            for p in &pieces[..pieces.len() - 1] {
                assert_eq!(p.last(), Some(&b'\n'));
            }
        }
    }

    #[test]
    fn fast_path_needs_no_quotes_and_no_lone_cr() {
        assert!(fast_path_applies(b"a,b\r\nc,d\r\n"));
        assert!(fast_path_applies(b"a,b\nc,d"));
        assert!(!fast_path_applies(b"a,\"b\"\n"));
        assert!(!fast_path_applies(b"a,b\rc,d\n"));
        assert!(!fast_path_applies(b"a,b\r"));
    }

    #[test]
    fn header_is_first_non_blank_line() {
        let h = fast_header(b"\r\n\na,b\r\nx,y\n", b',').unwrap();
        assert_eq!(h.names, [b"a".as_slice(), b"b"]);
        assert_eq!(h.body, b"x,y\n");
        assert_eq!(h.body_line, 4);
        assert!(fast_header(b"\n\r\n", b',').is_none());
    }
}
