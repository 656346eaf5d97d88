//! Encoding and decoding of the release files, and the release content hash.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::Compression;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use sha2::{Digest, Sha256};

use crate::PublishError;

/// One published directed pair as written to `pairs.parquet` and `pairs.csv`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row<'a> {
    pub title_a: Cow<'a, str>,
    pub title_b: Cow<'a, str>,
    pub score: f64,
}

/// Header of `pairs.csv`.
pub(crate) const CSV_HEADER: [&str; 3] = ["title_a", "title_b", "score"];

/// Columns of `pairs.parquet`, in order.
pub(crate) const PARQUET_COLUMNS: [(&str, DataType); 3] = [
    ("title_a", DataType::Utf8),
    ("title_b", DataType::Utf8),
    ("score", DataType::Float64),
];

/// `created_by` of `pairs.parquet`: a fixed writer name instead of one
/// carrying the library version, so that a dependency bump alone does not
/// make a new release.
pub(crate) const CREATED_BY: &str = "alsoborrowed publish";

pub(crate) fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(
        PARQUET_COLUMNS
            .iter()
            .map(|(name, ty)| Field::new(*name, ty.clone(), false))
            .collect::<Vec<_>>(),
    ))
}

/// `pairs.parquet`: fixed writer properties, so equal rows give equal bytes.
/// No statistics and no embedded Arrow schema: the footer holds nothing but
/// the three column names and [`CREATED_BY`], which the check accounts for.
pub(crate) fn parquet_bytes(rows: &[Row<'_>]) -> Result<Vec<u8>, PublishError> {
    let encode = |e: &dyn std::fmt::Display| PublishError::Encode {
        file: "pairs.parquet",
        reason: e.to_string(),
    };
    let a: StringArray = rows.iter().map(|r| Some(r.title_a.as_ref())).collect();
    let b: StringArray = rows.iter().map(|r| Some(r.title_b.as_ref())).collect();
    let s: Float64Array = rows.iter().map(|r| Some(r.score)).collect();
    let columns: Vec<ArrayRef> = vec![Arc::new(a), Arc::new(b), Arc::new(s)];
    let batch = RecordBatch::try_new(schema(), columns).map_err(|e| encode(&e))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by(CREATED_BY.to_owned())
        .set_statistics_enabled(EnabledStatistics::None)
        .build();
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let mut buf = Vec::new();
    let mut writer =
        ArrowWriter::try_new_with_options(&mut buf, schema(), options).map_err(|e| encode(&e))?;
    writer.write(&batch).map_err(|e| encode(&e))?;
    writer.close().map_err(|e| encode(&e))?;
    Ok(buf)
}

/// Decodes `pairs.parquet` (`bytes`, read from `path`) into rows.
pub(crate) fn read_parquet(path: &Path, bytes: &[u8]) -> Result<Vec<Row<'static>>, PublishError> {
    let data = bytes::Bytes::copy_from_slice(bytes);
    let builder = ParquetRecordBatchReaderBuilder::try_new(data)
        .map_err(|e| PublishError::unreadable(path, e))?;
    let reader = builder
        .build()
        .map_err(|e| PublishError::unreadable(path, e))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| PublishError::unreadable(path, e))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| PublishError::Unreadable {
                    path: path.to_path_buf(),
                    reason: format!("column {name} is missing"),
                })
        };
        let wrong = |name: &str| PublishError::Unreadable {
            path: path.to_path_buf(),
            reason: format!("column {name} has the wrong type"),
        };
        let a = column("title_a")?;
        let a = a.as_string_opt::<i32>().ok_or_else(|| wrong("title_a"))?;
        let b = column("title_b")?;
        let b = b.as_string_opt::<i32>().ok_or_else(|| wrong("title_b"))?;
        let s = column("score")?;
        let s = s
            .as_primitive_opt::<arrow_array::types::Float64Type>()
            .ok_or_else(|| wrong("score"))?;
        if a.null_count() + b.null_count() + s.null_count() > 0 {
            return Err(PublishError::Unreadable {
                path: path.to_path_buf(),
                reason: "null values in pairs".into(),
            });
        }
        for i in 0..batch.num_rows() {
            rows.push(Row {
                title_a: Cow::Owned(a.value(i).to_owned()),
                title_b: Cow::Owned(b.value(i).to_owned()),
                score: s.value(i),
            });
        }
    }
    Ok(rows)
}

/// Bytes that make a spreadsheet read a cell as a formula, plus the quote
/// used to defuse them (so that defusing stays reversible).
const FORMULA_START: &[u8] = b"=+-@\t\r'";

/// Prefixes `'` to a title a spreadsheet would otherwise run as a formula.
pub(crate) fn defuse(title: &str) -> Cow<'_, str> {
    match title.as_bytes().first() {
        Some(b) if FORMULA_START.contains(b) => Cow::Owned(format!("'{title}")),
        _ => Cow::Borrowed(title),
    }
}

/// Reverses [`defuse`]; `None` for text `defuse` never produces.
pub(crate) fn undefuse(cell: &str) -> Option<&str> {
    match cell.strip_prefix('\'') {
        Some(rest)
            if rest
                .bytes()
                .next()
                .is_some_and(|b| FORMULA_START.contains(&b)) =>
        {
            Some(rest)
        }
        Some(_) => None,
        None if cell
            .bytes()
            .next()
            .is_some_and(|b| FORMULA_START.contains(&b)) =>
        {
            None
        }
        None => Some(cell),
    }
}

/// `pairs.csv`: header, RFC 4180 quoting and CRLF line ends, titles defused.
///
/// Records are independent lines, so pieces of rows are encoded in parallel
/// and joined in order: the same bytes as one writer over all rows (a test
/// says so), without one thread encoding every pair of a national release.
pub(crate) fn csv_bytes(rows: &[Row<'_>]) -> Result<Vec<u8>, PublishError> {
    use rayon::prelude::*;
    const PIECE: usize = 1 << 16;
    let pieces: Vec<Vec<u8>> = rows
        .par_chunks(PIECE)
        .map(|piece| csv_records(piece, false))
        .collect::<Result<_, _>>()?;
    let mut out = csv_records(&[], true)?;
    out.reserve(pieces.iter().map(Vec::len).sum());
    for p in pieces {
        out.extend_from_slice(&p);
    }
    Ok(out)
}

/// The CSV records of `rows`, after the header if `header`.
fn csv_records(rows: &[Row<'_>], header: bool) -> Result<Vec<u8>, PublishError> {
    use std::fmt::Write as _;
    let encode = |e: csv::Error| PublishError::Encode {
        file: "pairs.csv",
        reason: e.to_string(),
    };
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .quote_style(csv::QuoteStyle::Necessary)
        .from_writer(Vec::new());
    if header {
        w.write_record(CSV_HEADER).map_err(encode)?;
    }
    let mut score = String::new();
    for r in rows {
        score.clear();
        // `Display`, as `to_string` wrote it, into one reused buffer.
        let _ = write!(score, "{}", r.score);
        w.write_record([
            defuse(&r.title_a).as_ref(),
            defuse(&r.title_b).as_ref(),
            score.as_str(),
        ])
        .map_err(encode)?;
    }
    w.into_inner().map_err(|e| PublishError::Encode {
        file: "pairs.csv",
        reason: e.error().to_string(),
    })
}

/// Decodes the bytes of `pairs.csv` (read from `path`) into rows (titles
/// undefused); `Err` names the row.
pub(crate) fn read_csv(path: &Path, bytes: &[u8]) -> Result<Vec<Row<'static>>, PublishError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let bad = |row: usize, reason: &str| PublishError::Unreadable {
        path: path.to_path_buf(),
        reason: format!("row {row}: {reason}"),
    };
    let headers = reader
        .headers()
        .map_err(|e| PublishError::unreadable(path, e))?;
    if headers.iter().ne(CSV_HEADER) {
        return Err(bad(0, "unexpected header"));
    }
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.map_err(|e| PublishError::unreadable(path, e))?;
        let (Some(a), Some(b), Some(s), None) =
            (record.get(0), record.get(1), record.get(2), record.get(3))
        else {
            return Err(bad(row, "expected 3 fields"));
        };
        let (Some(a), Some(b)) = (undefuse(a), undefuse(b)) else {
            return Err(bad(row, "title is not escaped as documented"));
        };
        let score = s
            .parse::<f64>()
            .map_err(|_| bad(row, "score is not a number"))?;
        rows.push(Row {
            title_a: Cow::Owned(a.to_owned()),
            title_b: Cow::Owned(b.to_owned()),
            score,
        });
    }
    Ok(rows)
}

/// Content hash of a release: SHA-256 over its files in path order, each as
/// path length, path, content length and content (lengths u64 little-endian).
pub(crate) struct ContentHash(Sha256);

impl ContentHash {
    pub(crate) fn new() -> Self {
        ContentHash(Sha256::new())
    }

    /// Adds one file; callers add files in byte order of their paths.
    pub(crate) fn add(&mut self, rel_path: &str, content: &[u8]) {
        self.0.update((rel_path.len() as u64).to_le_bytes());
        self.0.update(rel_path.as_bytes());
        self.0.update((content.len() as u64).to_le_bytes());
        self.0.update(content);
    }

    /// The 64-hex digest, the release directory's name.
    pub(crate) fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn row<'a>(a: &'a str, b: &'a str, score: f64) -> Row<'a> {
        Row {
            title_a: Cow::Borrowed(a),
            title_b: Cow::Borrowed(b),
            score,
        }
    }

    #[test]
    fn csv_in_pieces_equals_one_writer_over_all_rows() {
        let titles: Vec<String> = (0..300)
            .map(|i| match i % 4 {
                0 => format!("t{i}"),
                1 => format!("=f({i})"),
                2 => format!("a, \"quoted\" {i}"),
                _ => format!("line\nbreak {i}"),
            })
            .collect();
        // Past two pieces of 2^16 rows.
        let rows: Vec<Row<'_>> = (0..140_000usize)
            .map(|i| {
                row(
                    &titles[i % 300],
                    &titles[(i * 7 + 1) % 300],
                    1.0 / (i as f64 + 3.0),
                )
            })
            .collect();
        assert_eq!(csv_bytes(&rows).unwrap(), csv_records(&rows, true).unwrap());
        assert_eq!(csv_bytes(&[]).unwrap(), b"title_a,title_b,score\r\n");
    }

    #[test]
    fn formula_titles_are_defused() {
        for t in [
            "=HYPERLINK(\"x\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "'x",
        ] {
            let d = defuse(t);
            assert!(d.starts_with('\''), "{t:?}");
            assert_eq!(undefuse(&d), Some(t));
        }
        assert_eq!(defuse("978-87"), "978-87");
        assert_eq!(undefuse("=1"), None);
        assert_eq!(undefuse("'x"), None);
    }

    #[test]
    fn csv_quotes_and_defuses() {
        let rows = [
            row("=cmd|' /C calc'!A0", "a,\"b\"", 1.5),
            row("x\ny", "z", -0.25),
        ];
        let text = String::from_utf8(csv_bytes(&rows).unwrap()).unwrap();
        assert_eq!(
            text,
            "title_a,title_b,score\r\n'=cmd|' /C calc'!A0,\"a,\"\"b\"\"\",1.5\r\n\"x\ny\",z,-0.25\r\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.csv");
        assert_eq!(read_csv(&path, text.as_bytes()).unwrap(), rows);
    }

    #[test]
    fn parquet_round_trips_and_is_deterministic() {
        let rows = [row("a", "b", 0.5), row("a", "c", 0.25), row("b", "a", 0.5)];
        let bytes = parquet_bytes(&rows).unwrap();
        assert_eq!(bytes, parquet_bytes(&rows).unwrap());
        let path = Path::new("pairs.parquet");
        assert_eq!(read_parquet(path, &bytes).unwrap(), rows);
    }

    #[test]
    fn content_hash_separates_path_and_content() {
        let mut h1 = ContentHash::new();
        h1.add("ab", b"c");
        let mut h2 = ContentHash::new();
        h2.add("a", b"bc");
        assert_ne!(h1.finish(), h2.finish());
    }

    proptest! {
        #[test]
        fn defuse_is_reversible_and_safe(t in any::<String>()) {
            let d = defuse(&t);
            prop_assert_eq!(undefuse(&d), Some(t.as_str()));
            let first = d.bytes().next();
            prop_assert!(first.is_none_or(|b| !b"=+-@\t\r".contains(&b)));
        }
    }
}
