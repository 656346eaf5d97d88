//! Issue 12, finding 2: overlapping exports must not grow the store. Each
//! (pseudonym, title, month) is held once, however many batches carry it.

use std::fs;

use store::{IngestOutcome, Store};

use crate::*;

#[test]
fn overlapping_batches_store_each_loan_once_and_count_the_repeats() {
    let (_d, _root, store) = fresh();
    let lock = store.lock().unwrap();
    let day1 = loans_of(&[
        (1, "x", "wx", m(2024, 1)),
        (2, "x", "wx", m(2024, 1)),
        (1, "y", "wy", m(2024, 2)),
    ]);
    // The next day's export: the same window moved on, one new loan, and a
    // loan repeated inside the batch itself.
    let day2 = loans_of(&[
        (2, "x", "wx", m(2024, 1)),
        (1, "y", "wy", m(2024, 2)),
        (3, "y", "wy", m(2024, 2)),
        (3, "y", "wy", m(2024, 2)),
    ]);
    store
        .ingest(&lock, &record(1, 3), &day1, m(2020, 1))
        .unwrap();
    let out = store
        .ingest(&lock, &record(2, 4), &day2, m(2020, 1))
        .unwrap();
    assert_eq!(
        out,
        IngestOutcome::Ingested {
            rows: 1,
            months: vec![m(2024, 2)],
            expired_rows: 0,
            repeated_rows: 3,
        }
    );
    // A batch of nothing but repeats writes no file at all.
    let out = store
        .ingest(&lock, &record(3, 3), &day1, m(2020, 1))
        .unwrap();
    assert_eq!(
        out,
        IngestOutcome::Ingested {
            rows: 0,
            months: vec![],
            expired_rows: 0,
            repeated_rows: 3,
        }
    );
    let st = store.status().unwrap();
    assert_eq!(st.rows, 4);
    assert_eq!(st.repeated_rows, 6);
    assert_eq!(st.batches, 3);
    assert_eq!(store.data_files().unwrap().len(), 3);
    let (first, last) = all();
    let back = store.scan(first, last).unwrap();
    let mut want = multiset(&day1);
    want.extend(multiset(&day2));
    want.sort();
    want.dedup();
    assert_eq!(multiset(&back), want);
}

/// A store written before cross-batch deduplication (manifest format 1,
/// repeats held in several files) is read as it is, and the next writer
/// rewrites its manifest in format 2 and deduplicates against it.
#[test]
fn a_format_1_store_with_repeats_is_read_and_migrated() {
    let (_d, root, store) = fresh();
    let lock = store.lock().unwrap();
    let a = loans_of(&[(1, "x", "wx", m(2024, 1)), (2, "x", "wx", m(2024, 1))]);
    store.ingest(&lock, &record(1, 2), &a, m(2020, 1)).unwrap();
    // What an old binary wrote: the same loan again in a second file, and a
    // manifest of format 1 without `repeated_rows`.
    let path = root.join("manifest.json");
    let first = fs::read_to_string(&path).unwrap();
    let old_file = store.data_files().unwrap()[0].clone();
    let copy = old_file.with_file_name(format!("{}.parquet", "02".repeat(32)));
    fs::copy(&old_file, &copy).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&first).unwrap();
    v["format"] = 1.into();
    let mut b0 = v["batches"][0].clone();
    b0.as_object_mut().unwrap().remove("repeated_rows");
    let mut b1 = b0.clone();
    b1["batch"]["id"] = "02".repeat(32).into();
    b1["files"][0] = format!("loans/month=2024-01/{}.parquet", "02".repeat(32)).into();
    v["batches"] = serde_json::json!([b0, b1]);
    let mut f1 = v["files"][0].clone();
    f1["path"] = b1["files"][0].clone();
    f1["batch"] = b1["batch"]["id"].clone();
    v["files"] = serde_json::json!([v["files"][0].clone(), f1]);
    let text = serde_json::to_string_pretty(&v).unwrap();
    assert!(!text.contains("repeated_rows"));
    fs::write(&path, text).unwrap();
    drop(lock);

    let store = Store::open(&root).unwrap();
    let st = store.status().unwrap();
    assert_eq!((st.rows, st.repeated_rows, st.batches), (4, 0, 2));
    let (lo, hi) = all();
    assert_eq!(store.scan(lo, hi).unwrap().len(), 4);

    let lock = store.lock().unwrap();
    let c = loans_of(&[(1, "x", "wx", m(2024, 1)), (3, "x", "wx", m(2024, 1))]);
    let out = store.ingest(&lock, &record(3, 2), &c, m(2020, 1)).unwrap();
    assert!(matches!(
        out,
        IngestOutcome::Ingested {
            rows: 1,
            repeated_rows: 1,
            ..
        }
    ));
    let now: serde_json::Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(now["format"], 2);
    assert_eq!(store.status().unwrap().rows, 5);
}

/// Daily batches into one month do not leave a file a day: once a month
/// holds two files, the next batch's rows are merged with them into one.
#[test]
fn a_month_holds_at_most_two_files_however_many_batches_it_gets() {
    let (_d, root, store) = fresh();
    let lock = store.lock().unwrap();
    let mut want = Vec::new();
    for day in 0..7u8 {
        let rows = [
            (day, "x", "wx", m(2024, 1)),
            (day + 1, "y", "wy", m(2024, 1)),
            (1, "x", "wx", m(2024, 1)),
        ];
        let loans = loans_of(&rows);
        want.extend(multiset(&loans));
        store
            .ingest(&lock, &record(day + 1, 3), &loans, m(2020, 1))
            .unwrap();
        let files = store.data_files().unwrap();
        assert!(files.len() <= 2, "day {day}: {files:?}");
        // Nothing unlisted is left in the partition.
        let on_disk = walk(&root.join("loans"))
            .into_iter()
            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
            .count();
        assert_eq!(on_disk, files.len(), "day {day}");
    }
    want.sort();
    want.dedup();
    let (lo, hi) = all();
    assert_eq!(multiset(&store.scan(lo, hi).unwrap()), want);
    assert_eq!(store.status().unwrap().rows, want.len() as u64);
}

/// Files of loans under another pseudonym key are never merged with new ones.
#[test]
fn files_under_another_pseudonym_key_are_not_merged() {
    let (_d, _root, store) = fresh();
    let lock = store.lock().unwrap();
    for tag in 1..=4u8 {
        let mut rec = record(tag, 1);
        if tag <= 2 {
            rec.pseudonym_key = "fedcba9876543210".to_owned();
        }
        let loans = loans_of(&[(tag, "x", "wx", m(2024, 1))]);
        store.ingest(&lock, &rec, &loans, m(2020, 1)).unwrap();
    }
    assert_eq!(store.data_files().unwrap().len(), 4);
    assert_eq!(
        store.pseudonym_keys(m(2024, 1), m(2024, 1)).unwrap().len(),
        2
    );
}

#[test]
fn month_counts_give_loans_and_distinct_borrowers_across_batches() {
    let (_d, _root, store) = fresh();
    let lock = store.lock().unwrap();
    let a = loans_of(&[
        (1, "x", "wx", m(2024, 1)),
        (2, "x", "wx", m(2024, 1)),
        (1, "y", "wy", m(2024, 2)),
    ]);
    // Borrower 1 again in January (another title) from a second batch: one
    // borrower, two files.
    let b = loans_of(&[(1, "z", "wz", m(2024, 1)), (3, "z", "wz", m(2024, 3))]);
    store.ingest(&lock, &record(1, 3), &a, m(2020, 1)).unwrap();
    store.ingest(&lock, &record(2, 2), &b, m(2020, 1)).unwrap();
    let got: Vec<(store::MonthCounts, u64, u64)> = store
        .month_counts()
        .unwrap()
        .into_iter()
        .map(|c| (c, c.loans, c.borrowers))
        .collect();
    let months: Vec<_> = got.iter().map(|(c, _, _)| c.month).collect();
    assert_eq!(months, [m(2024, 1), m(2024, 2), m(2024, 3)]);
    let counts: Vec<(u64, u64)> = got.iter().map(|&(_, l, b)| (l, b)).collect();
    assert_eq!(counts, [(3, 2), (1, 1), (1, 1)]);
}
