use std::sync::{Arc, Barrier};
use std::thread;

use store::{Store, StoreError};

use crate::*;

#[test]
fn only_one_of_two_racing_threads_gets_the_lock() {
    let (_d, _root, store) = fresh();
    let store = Arc::new(store);
    for _ in 0..20 {
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
                thread::spawn(move || {
                    barrier.wait();
                    store.lock()
                })
            })
            .collect();
        // Both results are held until compared, so the winner's lock is
        // still taken when the loser tries.
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{results:?}");
        assert!(
            results
                .iter()
                .any(|r| matches!(r, Err(StoreError::Locked { .. })))
        );
    }
}

#[test]
fn a_second_open_store_is_refused_while_the_lock_is_held() {
    let (_d, root, first) = fresh();
    let held = first.lock().unwrap();
    let second = Store::open(&root).unwrap();
    let err = second.lock().unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("LOCK"), "{err}");
    // The same handle cannot lock twice either.
    assert!(matches!(first.lock(), Err(StoreError::Locked { .. })));
    drop(held);
    let again = second.lock().unwrap();
    // Readers need no lock.
    assert_eq!(first.status().unwrap().rows, 0);
    drop(again);
}

#[test]
fn a_lock_of_another_store_is_refused() {
    let (_d1, _r1, a) = fresh();
    let (_d2, _r2, b) = fresh();
    let lock_a = a.lock().unwrap();
    let loans = loans_of(&[(1, "t", "t", m(2024, 1))]);
    let err = b
        .ingest(&lock_a, &record(1, 1), &loans, m(2020, 1))
        .unwrap_err();
    assert!(matches!(err, StoreError::ForeignLock { .. }), "{err:?}");
    assert!(matches!(
        b.prune(&lock_a, m(2020, 1)),
        Err(StoreError::ForeignLock { .. })
    ));
    assert!(b.data_files().unwrap().is_empty());
    // Under its own lock the same ingest works.
    let lock_b = b.lock().unwrap();
    b.ingest(&lock_b, &record(1, 1), &loans, m(2020, 1))
        .unwrap();
}

/// A symbolic link planted at LOCK is refused, not followed.
#[test]
fn a_symlink_at_lock_is_refused() {
    let (d, root, store) = fresh();
    let target = d.path().join("elsewhere");
    std::os::unix::fs::symlink(&target, root.join("LOCK")).unwrap();
    assert!(matches!(
        store.lock(),
        Err(store::StoreError::Symlink { .. })
    ));
    assert!(!target.exists());
}
