use store::IngestOutcome;

use crate::*;

#[test]
fn prune_drops_whole_old_months() {
    let (_d, root, store) = fresh();
    let a = loans_of(&[
        (1, "x", "x", m(2023, 11)),
        (2, "y", "y", m(2023, 12)),
        (3, "x", "x", m(2024, 1)),
    ]);
    let b = loans_of(&[(4, "y", "y", m(2023, 12)), (5, "z", "z", m(2024, 2))]);
    let lock = store.lock().unwrap();
    store.ingest(&lock, &record(1, 3), &a, m(2020, 1)).unwrap();
    store.ingest(&lock, &record(2, 2), &b, m(2020, 1)).unwrap();
    assert_eq!(store.data_files().unwrap().len(), 5);
    let old_files: Vec<_> = store
        .data_files()
        .unwrap()
        .into_iter()
        .filter(|f| f.to_string_lossy().contains("month=2023-"))
        .collect();
    assert_eq!(old_files.len(), 3);

    assert_eq!(store.prune(&lock, m(2024, 1)).unwrap(), 3);
    for f in &old_files {
        assert!(!f.exists());
    }
    assert!(!root.join("loans/month=2023-11").exists());
    assert!(!root.join("loans/month=2023-12").exists());
    let st = store.status().unwrap();
    assert_eq!(st.rows, 2);
    assert_eq!(st.months, vec![(m(2024, 1), 1), (m(2024, 2), 1)]);
    assert_eq!(st.batches, 2);
    let (first, last) = all();
    let back = store.scan(first, last).unwrap();
    assert_eq!(back.len(), 2);
    assert!(back.months.iter().all(|&mo| mo >= m(2024, 1)));

    // Pruning again removes nothing; a pruned batch stays ingested.
    assert_eq!(store.prune(&lock, m(2024, 1)).unwrap(), 0);
    assert_eq!(
        store.ingest(&lock, &record(1, 3), &a, m(2020, 1)).unwrap(),
        IngestOutcome::AlreadyIngested
    );
    assert_eq!(store.prune(&lock, m(2030, 1)).unwrap(), 2);
    assert!(store.data_files().unwrap().is_empty());
    assert_eq!(store.status().unwrap().rows, 0);
}
