use loans::{LoanMonth, Loans, Pseudonym};
use proptest::prelude::*;
use store::{IngestOutcome, Store};

use crate::*;

const TITLES: [(&str, &str); 6] = [
    ("t0", "w0"),
    ("t1", "w0"),
    ("t2", "w2"),
    ("978-3-16-148410-0", "w3"),
    ("ü", "w4"),
    ("", "w5"),
];

/// Random loans: few pseudonyms, titles and months so that they collide.
fn loans_strategy() -> impl Strategy<Value = Loans> {
    prop::collection::vec((0u8..8, 0usize..TITLES.len(), 0i32..5), 0..40).prop_map(|rows| {
        let flat: Vec<Row<'static>> = rows
            .into_iter()
            .map(|(who, t, mo)| {
                let (title, work) = TITLES[t];
                (
                    who,
                    title,
                    work,
                    LoanMonth::new(2023, 11).unwrap().plus(mo).unwrap(),
                )
            })
            .collect();
        loans_of(&flat)
    })
}

fn distinct(loans: &[Loans]) -> u64 {
    let mut all: Vec<Pseudonym> = loans.iter().flat_map(|l| l.row_pseudonyms()).collect();
    all.sort();
    all.dedup();
    all.len() as u64
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn a_scan_reusing_the_ingested_batch_reads_as_a_scan_of_the_files(
        batches in prop::collection::vec(loans_strategy(), 1..6),
        windows in prop::collection::vec((0i32..5, 0i32..5), 1..4),
    ) {
        // Several batches over a few months: months already held, repeats
        // dropped, files merged once a month holds enough of them.
        let (_d, _root, store) = fresh();
        let lock = store.lock().unwrap();
        let start = LoanMonth::new(2023, 11).unwrap();
        for (i, loans) in batches.iter().enumerate() {
            let (_, written) = store
                .ingest_written(&lock, &record(i as u8, loans.len()), loans, m(2000, 1))
                .unwrap();
            for &(a, b) in &windows {
                let first = start.plus(a.min(b)).unwrap();
                let last = start.plus(a.max(b)).unwrap();
                let read = store.scan(first, last).unwrap();
                let reused = store.scan_reusing(first, last, Some((loans, &written))).unwrap();
                // The same rows and title dictionary; the borrower
                // dictionary starts with the batch's, each pseudonym once.
                prop_assert!(reused.validate().is_ok());
                prop_assert_eq!(rows_in_order(&reused), rows_in_order(&read));
                prop_assert_eq!(&reused.title_ids, &read.title_ids);
                prop_assert!(reused.borrower_pseudonyms.starts_with(&loans.borrower_pseudonyms));
            }
        }
    }

    #[test]
    fn scan_of_everything_is_the_concatenation_of_the_batches(
        batches in prop::collection::vec(loans_strategy(), 1..5)
    ) {
        let (_d, root, store) = fresh();
        let lock = store.lock().unwrap();
        let mut want = Vec::new();
        for (i, loans) in batches.iter().enumerate() {
            let out = store.ingest(&lock, &record(i as u8, loans.len()), loans, m(2000, 1)).unwrap();
            let is_ingested = matches!(out, IngestOutcome::Ingested { rows, repeated_rows, .. }
                if rows + repeated_rows == loans.len() as u64);
            prop_assert!(is_ingested);
            want.extend(multiset(loans));
        }
        // Each (pseudonym, title, month) once, however many batches hold it.
        want.sort();
        want.dedup();
        let (first, last) = all();
        let back = store.scan(first, last).unwrap();
        prop_assert!(back.validate().is_ok());
        prop_assert_eq!(multiset(&back), want.clone());

        // A second handle sees the same, re-ingesting changes nothing.
        let other = Store::open(&root).unwrap();
        let before = file_bytes(&other);
        for (i, loans) in batches.iter().enumerate() {
            let out = store.ingest(&lock, &record(i as u8, loans.len()), loans, m(2000, 1)).unwrap();
            prop_assert_eq!(out, IngestOutcome::AlreadyIngested);
        }
        prop_assert_eq!(file_bytes(&other), before);
        let st = other.status().unwrap();
        prop_assert_eq!(st.rows, want.len() as u64);
        prop_assert_eq!(st.distinct_pseudonyms, distinct(&batches));
        prop_assert_eq!(st.batches, batches.len() as u64);
        let total: usize = batches.iter().map(Loans::len).sum();
        prop_assert_eq!(st.repeated_rows, (total - want.len()) as u64);
    }

    #[test]
    fn a_month_range_scan_is_the_filtered_concatenation(
        batches in prop::collection::vec(loans_strategy(), 1..4),
        lo in 0i32..5,
        len in 0i32..3,
    ) {
        let (_d, _root, store) = fresh();
        let lock = store.lock().unwrap();
        for (i, loans) in batches.iter().enumerate() {
            store.ingest(&lock, &record(i as u8, loans.len()), loans, m(2000, 1)).unwrap();
        }
        let first = m(2023, 11).plus(lo).unwrap();
        let last = first.plus(len).unwrap();
        let mut want: Vec<Flat> = batches
            .iter()
            .flat_map(multiset)
            .filter(|r| (first..=last).contains(&r.3))
            .collect();
        want.sort();
        want.dedup();
        let back = store.scan(first, last).unwrap();
        prop_assert!(back.validate().is_ok());
        // Only titles that occur in the range are in the dictionary.
        let mut used: Vec<u32> = back.titles.clone();
        used.sort();
        used.dedup();
        prop_assert_eq!(used.len(), back.title_ids.len());
        prop_assert_eq!(multiset(&back), want);
    }
}
