//! Store format 3 (each pseudonym as two `Int64` halves): a store whose data
//! files an older binary wrote (format 2: one `FixedSizeBinary(16)` column)
//! is read, counted, deduplicated against and merged exactly like a store
//! written now, and the files it writes from then on are format 3.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, FixedSizeBinaryArray, RecordBatch};
use arrow_buffer::Buffer;
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::*;

/// `loans_of(rows)` with pseudonyms whose 16 bytes all differ (`p(b)` has
/// 16 equal bytes, which read alike in either byte order).
fn spread_loans(rows: &[Row<'_>]) -> loans::Loans {
    let mut l = loans_of(rows);
    let pseudonyms: Vec<loans::Pseudonym> = rows
        .iter()
        .map(|r| loans::Pseudonym(std::array::from_fn(|i| r.0 ^ (i as u8 * 17))))
        .collect();
    l.set_row_pseudonyms(&pseudonyms);
    l
}

/// Whether the data file at `path` holds its pseudonyms as halves.
fn has_halves(path: &Path) -> bool {
    let file = fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    builder.schema().field_with_name("pseudonym_hi").is_ok()
}

/// Rewrites a format 3 data file as store format 2 wrote it: the pseudonym
/// as one 16-byte fixed-size binary column, the other columns as they are.
fn to_format_2(path: &Path) {
    let file = fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    let mut fields = vec![Field::new(
        "pseudonym",
        DataType::FixedSizeBinary(16),
        false,
    )];
    fields.extend(schema.fields().iter().skip(2).map(|f| f.as_ref().clone()));
    let old = Arc::new(Schema::new(fields));
    let mut w = ArrowWriter::try_new(fs::File::create(path).unwrap(), old.clone(), None).unwrap();
    for b in &batches {
        let hi = b.column(0).as_primitive::<Int64Type>().values();
        let lo = b.column(1).as_primitive::<Int64Type>().values();
        let bytes: Vec<u8> = hi
            .iter()
            .zip(lo.iter())
            .flat_map(|(h, l)| [h.to_be_bytes(), l.to_be_bytes()].concat())
            .collect();
        let mut cols: Vec<ArrayRef> = vec![Arc::new(
            FixedSizeBinaryArray::try_new(16, Buffer::from_vec(bytes), None).unwrap(),
        )];
        cols.extend(b.columns().iter().skip(2).cloned());
        w.write(&RecordBatch::try_new(old.clone(), cols).unwrap())
            .unwrap();
    }
    w.close().unwrap();
    assert!(!has_halves(path));
}

#[test]
fn a_store_of_format_2_files_reads_dedups_and_merges_like_format_3() {
    // Pseudonyms with the top bit set and clear: halves of both signs.
    let first = spread_loans(&[
        (0x01, "x", "wx", m(2024, 1)),
        (0x80, "x", "wx", m(2024, 1)),
        (0xff, "y", "y", m(2024, 1)),
        (0x7f, "y", "y", m(2024, 2)),
    ]);
    // Overlaps the first batch (two loans held) and adds one loan to 2024-01.
    let second = spread_loans(&[
        (0x80, "x", "wx", m(2024, 1)),
        (0x7f, "y", "y", m(2024, 2)),
        (0x02, "x", "wx", m(2024, 1)),
    ]);
    // A third file for 2024-01: merged with the month's two files.
    let third = spread_loans(&[(0xff, "y", "y", m(2024, 1)), (0x03, "z", "z", m(2024, 1))]);
    let (_a, _ra, now) = fresh();
    let (_b, _rb, old) = fresh();
    let (lo, hi) = all();
    let (lock_now, lock_old) = (now.lock().unwrap(), old.lock().unwrap());
    now.ingest(&lock_now, &record(1, 4), &first, m(2020, 1))
        .unwrap();
    old.ingest(&lock_old, &record(1, 4), &first, m(2020, 1))
        .unwrap();
    for path in old.data_files().unwrap() {
        to_format_2(&path);
    }
    assert_eq!(
        multiset(&old.scan(lo, hi).unwrap()),
        multiset(&now.scan(lo, hi).unwrap())
    );
    assert_eq!(old.status().unwrap(), now.status().unwrap());
    for (tag, batch) in [(2, &second), (3, &third)] {
        let a = now
            .ingest(&lock_now, &record(tag, batch.len()), batch, m(2020, 1))
            .unwrap();
        let b = old
            .ingest(&lock_old, &record(tag, batch.len()), batch, m(2020, 1))
            .unwrap();
        assert_eq!(a, b, "batch {tag}");
        assert_eq!(
            multiset(&old.scan(lo, hi).unwrap()),
            multiset(&now.scan(lo, hi).unwrap()),
            "batch {tag}"
        );
        assert_eq!(old.status().unwrap(), now.status().unwrap(), "batch {tag}");
    }
    // The second batch found two loans held in format 2 files.
    assert_eq!(old.status().unwrap().repeated_rows, 3);
    // 2024-01 is one merged file now, written as format 3; 2024-02 is still
    // the first batch's format 2 file.
    let files = old.data_files().unwrap();
    assert_eq!(files.len(), 2);
    assert!(has_halves(&files[0]));
    assert!(!has_halves(&files[1]));
    assert_eq!(old.scan(lo, hi).unwrap().len(), 6);
}
