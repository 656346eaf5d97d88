use std::fs;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Int32Type, Int64Type};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use store::{IngestOutcome, Store, StoreError};

use crate::*;

fn three_months() -> Vec<Row<'static>> {
    vec![
        (1, "t1", "w1", m(2024, 3)),
        (2, "t2", "w1", m(2024, 1)),
        (1, "t3", "w3", m(2024, 2)),
        (3, "t1", "w1", m(2024, 3)),
        (2, "t3", "w3", m(2024, 3)),
        (4, "t2", "w1", m(2024, 1)),
    ]
}

#[test]
fn round_trip_keeps_rows_layout_and_batch_order() {
    let (_d, root, store) = fresh();
    let rows = three_months();
    let loans = loans_of(&rows);
    let rec = record(1, loans.len());
    let lock = store.lock().unwrap();
    let out = store.ingest(&lock, &rec, &loans, m(2020, 1)).unwrap();
    assert_eq!(
        out,
        IngestOutcome::Ingested {
            rows: 6,
            months: vec![m(2024, 1), m(2024, 2), m(2024, 3)],
            expired_rows: 0,
            repeated_rows: 0
        }
    );

    let (first, last) = all();
    let back = store.scan(first, last).unwrap();
    back.validate().unwrap();
    assert_eq!(multiset(&back), multiset(&loans));
    // Partition order, then title order (the batch's dictionary order)
    // within a month, and batch order within a title.
    let mut expected: Vec<_> = rows_in_order(&loans)
        .into_iter()
        .zip(&loans.titles)
        .collect();
    expected.sort_by_key(|(r, t)| (r.3, **t));
    let expected: Vec<_> = expected.into_iter().map(|(r, _)| r).collect();
    assert_eq!(rows_in_order(&back), expected);

    let files = store.data_files().unwrap();
    let want: Vec<_> = ["2024-01", "2024-02", "2024-03"]
        .iter()
        .map(|mo| {
            root.canonicalize()
                .unwrap()
                .join(format!("loans/month={mo}/{}.parquet", rec.id))
        })
        .collect();
    assert_eq!(files, want);
}

#[test]
fn scan_reads_only_the_requested_months() {
    let (_d, _root, store) = fresh();
    let loans = loans_of(&three_months());
    let lock = store.lock().unwrap();
    store
        .ingest(&lock, &record(1, loans.len()), &loans, m(2020, 1))
        .unwrap();
    let files = store.data_files().unwrap();
    // Damage January: a scan of February and March must not touch it.
    fs::write(&files[0], b"not parquet").unwrap();
    let back = store.scan(m(2024, 2), m(2024, 3)).unwrap();
    back.validate().unwrap();
    assert_eq!(back.len(), 4);
    assert!(back.months.iter().all(|&mo| mo >= m(2024, 2)));
    // Only titles of the range are in the dictionary, each once.
    let mut titles = back.title_ids.clone();
    titles.sort();
    assert_eq!(titles, ["t1", "t3"]);

    let err = store.scan(m(2024, 1), m(2024, 1)).unwrap_err();
    assert!(matches!(err, StoreError::Parquet { .. }), "{err:?}");
    assert!(err.to_string().contains("month=2024-01"), "{err}");
    assert!(store.scan(m(2024, 3), m(2024, 2)).unwrap().is_empty());
}

#[test]
fn batches_merge_into_one_dictionary() {
    let (_d, _root, store) = fresh();
    let a = loans_of(&[(1, "x", "wx", m(2024, 1)), (2, "y", "wy", m(2024, 1))]);
    let b = loans_of(&[(3, "y", "wy", m(2024, 1)), (3, "z", "wz", m(2024, 2))]);
    let lock = store.lock().unwrap();
    store.ingest(&lock, &record(2, 2), &a, m(2000, 1)).unwrap();
    store.ingest(&lock, &record(1, 2), &b, m(2000, 1)).unwrap();
    let (first, last) = all();
    let back = store.scan(first, last).unwrap();
    back.validate().unwrap();
    assert_eq!(back.title_ids.len(), 3);
    let mut want = multiset(&a);
    want.extend(multiset(&b));
    want.sort();
    assert_eq!(multiset(&back), want);
    // Within January, batch 0101.. comes before batch 0202.. (file-name order).
    assert_eq!(back.pseudonym(0), p(3));

    let st = store.status().unwrap();
    assert_eq!(st.rows, 4);
    assert_eq!(st.distinct_pseudonyms, 3);
    assert_eq!(st.months, vec![(m(2024, 1), 3), (m(2024, 2), 1)]);
    assert_eq!(st.batches, 2);
    assert_eq!(st.pseudonym_keys, vec!["0123456789abcdef".to_owned()]);
}

#[test]
fn second_ingest_is_a_no_op() {
    let (_d, root, store) = fresh();
    let loans = loans_of(&three_months());
    let rec = record(9, loans.len());
    let lock = store.lock().unwrap();
    store.ingest(&lock, &rec, &loans, m(2020, 1)).unwrap();
    let before = file_bytes(&store);
    let manifest = fs::read(root.join("manifest.json")).unwrap();
    let tree = walk(&root);
    assert_eq!(
        store.ingest(&lock, &rec, &loans, m(2020, 1)).unwrap(),
        IngestOutcome::AlreadyIngested
    );
    assert_eq!(file_bytes(&store), before);
    assert_eq!(fs::read(root.join("manifest.json")).unwrap(), manifest);
    assert_eq!(walk(&root), tree);
    assert_eq!(store.status().unwrap().rows, 6);
}

#[test]
fn same_batch_gives_identical_bytes_in_fresh_stores() {
    let loans = loans_of(&three_months());
    let rec = record(3, loans.len());
    let mut outputs = Vec::new();
    for _ in 0..2 {
        let (d, root, store) = fresh();
        let lock = store.lock().unwrap();
        store.ingest(&lock, &rec, &loans, m(2020, 1)).unwrap();
        let rel: Vec<_> = file_bytes(&store)
            .into_iter()
            .map(|(p, b)| {
                (
                    p.strip_prefix(root.canonicalize().unwrap())
                        .unwrap()
                        .to_owned(),
                    b,
                )
            })
            .collect();
        outputs.push((rel, fs::read(root.join("manifest.json")).unwrap()));
        drop(d);
    }
    assert_eq!(outputs[0].0.len(), 3);
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn files_have_the_documented_schema() {
    let (_d, _root, store) = fresh();
    let loans = loans_of(&three_months());
    let lock = store.lock().unwrap();
    store
        .ingest(&lock, &record(1, loans.len()), &loans, m(2020, 1))
        .unwrap();
    let file = &store.data_files().unwrap()[2];
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(file).unwrap()).unwrap();
    let meta = builder.metadata().clone();
    assert_eq!(
        meta.file_metadata().created_by(),
        Some("alsoborrowed-store format 3")
    );
    // Random pseudonyms are stored as they are; Snappy for the rest.
    let compression: Vec<Compression> = meta
        .row_group(0)
        .columns()
        .iter()
        .map(|c| c.compression())
        .collect();
    assert_eq!(
        compression,
        [
            Compression::UNCOMPRESSED,
            Compression::UNCOMPRESSED,
            Compression::SNAPPY,
            Compression::SNAPPY,
            Compression::SNAPPY
        ]
    );
    // Statistics only where they can prune: the month, not the random
    // pseudonyms or the catalogue-wide titles and works.
    let stats: Vec<bool> = meta
        .row_group(0)
        .columns()
        .iter()
        .map(|c| c.statistics().is_some())
        .collect();
    assert_eq!(stats, [false, false, false, false, true]);
    let schema = builder.schema().clone();
    let names: Vec<_> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        ["pseudonym_hi", "pseudonym_lo", "title", "work", "month"]
    );
    assert_eq!(schema.field(0).data_type(), &DataType::Int64);
    assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    assert_eq!(schema.field(2).data_type(), &dict);
    assert_eq!(schema.field(3).data_type(), &dict);
    // Null where a title is its own work (store format 2); these titles
    // belong to other works, so none is null here.
    assert!(schema.field(3).is_nullable() && !schema.field(2).is_nullable());
    assert_eq!(schema.field(4).data_type(), &DataType::Date32);
    let batches: Vec<_> = builder.build().unwrap().map(Result::unwrap).collect();
    assert_eq!(batches.len(), 1);
    let b = &batches[0];
    let months = b.column(4).as_primitive::<Date32Type>();
    assert!(
        months
            .values()
            .iter()
            .all(|&d| d == m(2024, 3).first_day_since_epoch())
    );
    let titles = b.column(2).as_dictionary::<Int32Type>();
    let values = titles.values().as_string::<i32>();
    let got: Vec<_> = titles
        .keys()
        .values()
        .iter()
        .map(|&k| values.value(k as usize))
        .collect();
    assert_eq!(got, ["t1", "t1", "t3"]);
    // The pseudonym [3; 16] as its big-endian halves.
    let three = i64::from_be_bytes([3; 8]);
    assert_eq!(b.column(0).as_primitive::<Int64Type>().value(1), three);
    assert_eq!(b.column(1).as_primitive::<Int64Type>().value(1), three);
    assert_eq!(b.column(3).null_count(), 0);
}

#[test]
fn expired_rows_are_dropped_and_counted() {
    let (_d, _root, store) = fresh();
    let loans = loans_of(&three_months());
    let lock = store.lock().unwrap();
    let out = store
        .ingest(&lock, &record(1, loans.len()), &loans, m(2024, 2))
        .unwrap();
    assert_eq!(
        out,
        IngestOutcome::Ingested {
            rows: 4,
            months: vec![m(2024, 2), m(2024, 3)],
            expired_rows: 2,
            repeated_rows: 0
        }
    );
    let (first, last) = all();
    assert_eq!(store.scan(first, last).unwrap().len(), 4);

    // A batch whose rows are all expired is still recorded.
    let old = loans_of(&[(1, "t", "t", m(2023, 1))]);
    let out = store
        .ingest(&lock, &record(2, 1), &old, m(2024, 2))
        .unwrap();
    assert_eq!(
        out,
        IngestOutcome::Ingested {
            rows: 0,
            months: vec![],
            expired_rows: 1,
            repeated_rows: 0
        }
    );
    assert_eq!(
        store
            .ingest(&lock, &record(2, 1), &old, m(2020, 1))
            .unwrap(),
        IngestOutcome::AlreadyIngested
    );
    assert_eq!(store.status().unwrap().batches, 2);
}

#[test]
fn invalid_input_is_refused_without_writing() {
    let (_d, root, store) = fresh();
    let loans = loans_of(&three_months());
    let lock = store.lock().unwrap();
    let mut rec = record(1, loans.len());
    rec.id = "../../escape".to_owned();
    let err = store.ingest(&lock, &rec, &loans, m(2020, 1)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidBatch { .. }), "{err:?}");
    assert!(!err.to_string().contains("escape"), "{err}");

    let mut rec = record(1, loans.len());
    rec.pseudonym_key = "XYZ".to_owned();
    let err = store.ingest(&lock, &rec, &loans, m(2020, 1)).unwrap_err();
    assert!(matches!(err, StoreError::InvalidBatch { .. }), "{err:?}");

    let rec = record(1, loans.len() + 1);
    let err = store.ingest(&lock, &rec, &loans, m(2020, 1)).unwrap_err();
    assert!(err.to_string().contains("7 rows but 6"), "{err}");

    let mut ragged = loans.clone();
    ragged.months.pop();
    let err = store
        .ingest(&lock, &record(1, 6), &ragged, m(2020, 1))
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidLoans { .. }), "{err:?}");

    assert!(store.data_files().unwrap().is_empty());
    assert_eq!(store.status().unwrap().batches, 0);
    assert!(!root.join("loans/month=2024-01").exists());
}

#[test]
fn status_counts_distinct_pseudonyms_across_files() {
    let (_d, _root, store) = fresh();
    let loans = loans_of(&three_months());
    let lock = store.lock().unwrap();
    store
        .ingest(&lock, &record(1, loans.len()), &loans, m(2020, 1))
        .unwrap();
    let st = store.status().unwrap();
    assert_eq!(st.rows, 6);
    assert_eq!(st.distinct_pseudonyms, 4);
    assert_eq!(
        st.months,
        vec![(m(2024, 1), 2), (m(2024, 2), 1), (m(2024, 3), 3)]
    );
    // A reader opened separately sees the same committed state.
    let other = Store::open(store.root()).unwrap();
    assert_eq!(other.status().unwrap(), st);
}

#[test]
fn pseudonym_keys_lists_the_keys_of_the_months_asked_for() {
    let (_dir, _root, store) = fresh();
    let lock = store.lock().unwrap();
    let old = record(1, 1);
    let mut new = record(2, 1);
    new.pseudonym_key = "fedcba9876543210".to_owned();
    let jan = loans_of(&[(1, "T1", "T1", m(2024, 1))]);
    let feb = loans_of(&[(1, "T1", "T1", m(2024, 2))]);
    store.ingest(&lock, &old, &jan, m(2020, 1)).unwrap();
    store.ingest(&lock, &new, &feb, m(2020, 1)).unwrap();
    assert_eq!(
        store.pseudonym_keys(m(2024, 1), m(2024, 1)).unwrap(),
        ["0123456789abcdef"]
    );
    assert_eq!(
        store.pseudonym_keys(m(2024, 1), m(2024, 2)).unwrap(),
        ["0123456789abcdef", "fedcba9876543210"]
    );
    assert!(
        store
            .pseudonym_keys(m(2023, 1), m(2023, 12))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn scan_reusing_takes_the_rows_the_ingest_wrote_from_memory() {
    let (_d, _root, store) = fresh();
    let loans = loans_of(&three_months());
    let lock = store.lock().unwrap();
    let (_, written) = store
        .ingest_written(&lock, &record(1, loans.len()), &loans, m(2020, 1))
        .unwrap();
    let (first, last) = all();
    let read = store.scan(first, last).unwrap();
    // The same rows and title dictionary; the borrower dictionary is the
    // batch's own.
    let same = |a: &Loans, b: &Loans| {
        a.validate().unwrap();
        rows_in_order(a) == rows_in_order(b) && a.title_ids == b.title_ids
    };
    let from_memory = store
        .scan_reusing(first, last, Some((&loans, &written)))
        .unwrap();
    assert!(same(&from_memory, &read));
    assert_eq!(from_memory.borrower_pseudonyms, loans.borrower_pseudonyms);
    // Proof that the rows came from memory: a changed copy shows through.
    let mut changed = loans.clone();
    changed.borrower_pseudonyms[changed.borrowers[0] as usize] = p(99);
    let reused = store
        .scan_reusing(first, last, Some((&changed, &written)))
        .unwrap();
    assert!(reused.row_pseudonyms().any(|x| x == p(99)));
    assert_eq!(reused.len(), read.len());
    // Loans too short for the rows recorded: those files are read instead.
    let mut short = loans.clone();
    short.borrowers.truncate(1);
    short.titles.truncate(1);
    short.months.truncate(1);
    assert!(same(
        &store
            .scan_reusing(first, last, Some((&short, &written)))
            .unwrap(),
        &read
    ));
    // Another batch's record takes nothing from memory.
    let (_, other) = store
        .ingest_written(&lock, &record(2, loans.len()), &loans, m(2020, 1))
        .unwrap();
    let reused = store
        .scan_reusing(first, last, Some((&changed, &other)))
        .unwrap();
    assert!(same(&reused, &read));
}

#[test]
fn a_window_from_memory_and_files_holds_each_borrower_once() {
    let (_d, _root, store) = fresh();
    let lock = store.lock().unwrap();
    let january = m(2024, 1);
    let february = m(2024, 2);
    // Borrowers 1 and 2 in an earlier batch's file; 2 and 3 in this one's.
    let earlier = loans_of(&[(1, "a", "a", january), (2, "b", "b", january)]);
    store
        .ingest(&lock, &record(1, earlier.len()), &earlier, m(2020, 1))
        .unwrap();
    let now = loans_of(&[
        (3, "a", "a", february),
        (2, "a", "a", february),
        (2, "c", "c", february),
    ]);
    let (_, written) = store
        .ingest_written(&lock, &record(2, now.len()), &now, m(2020, 1))
        .unwrap();
    let read = store.scan(january, february).unwrap();
    let window = store
        .scan_reusing(january, february, Some((&now, &written)))
        .unwrap();
    window.validate().unwrap();
    assert_eq!(rows_in_order(&window), rows_in_order(&read));
    let mut dictionary = window.borrower_pseudonyms.clone();
    dictionary.sort();
    assert_eq!(dictionary, [p(1), p(2), p(3)]);
    // Borrower 2 has one index in both months.
    let of = |who| {
        (0..window.len())
            .filter(|&i| window.pseudonym(i) == p(who))
            .map(|i| window.borrowers[i])
            .collect::<std::collections::BTreeSet<_>>()
    };
    assert_eq!(of(2).len(), 1);
}

#[test]
fn an_ingest_prepared_beforehand_writes_what_ingest_writes() {
    // January is older than the limit: its rows expire.
    let oldest_kept = m(2024, 2);
    let loans = loans_of(&three_months());
    let ingest = |prepared: Option<store::Prepared>| {
        let (dir, _root, store) = fresh();
        let lock = store.lock().unwrap();
        let rec = record(1, loans.len());
        let (outcome, written) = match prepared {
            Some(prepared) => store.ingest_prepared(&lock, &rec, &loans, prepared),
            None => store.ingest_written(&lock, &rec, &loans, oldest_kept),
        }
        .unwrap();
        let (first, last) = all();
        let rows = rows_in_order(&store.scan(first, last).unwrap());
        // What the ingest says it wrote, taken from memory.
        let reused = rows_in_order(
            &store
                .scan_reusing(first, last, Some((&loans, &written)))
                .unwrap(),
        );
        // Each data file's name (month and batch) and bytes.
        let files: Vec<_> = file_bytes(&store)
            .into_iter()
            .map(|(f, b)| {
                (
                    f.strip_prefix(dir.path().canonicalize().unwrap())
                        .unwrap()
                        .to_owned(),
                    b,
                )
            })
            .collect();
        (outcome, reused, rows, files)
    };
    let plain = ingest(None);
    assert_eq!(
        plain.0,
        IngestOutcome::Ingested {
            rows: 4,
            months: vec![m(2024, 2), m(2024, 3)],
            expired_rows: 2,
            repeated_rows: 0
        }
    );
    assert_eq!(
        ingest(Some(store::Prepared::new(&loans, oldest_kept))),
        plain
    );
    // Prepared for other loans: made again for these.
    let other = loans_of(&three_months()[..2]);
    assert_eq!(
        ingest(Some(store::Prepared::new(&other, oldest_kept))),
        plain
    );
}
