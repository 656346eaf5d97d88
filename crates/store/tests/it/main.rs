//! Integration tests of the store: one binary, one module per concern.

mod corrupt;
mod dedup;
mod formats;
mod ingest;
mod lock;
mod perms;
mod props;
mod recovery;
mod retention;

use std::path::{Path, PathBuf};

use loans::{LoanMonth, Loans, Pseudonym};
use store::{BatchRecord, Store};

/// One loan row as tests describe it: (pseudonym byte, title, work, month).
pub type Row<'a> = (u8, &'a str, &'a str, LoanMonth);

/// A month, for brevity.
pub fn m(year: i32, month: u32) -> LoanMonth {
    LoanMonth::new(year, month).unwrap()
}

/// A pseudonym whose 16 bytes are all `b`.
pub fn p(b: u8) -> Pseudonym {
    Pseudonym([b; 16])
}

/// A batch record with an id derived from `tag`.
pub fn record(tag: u8, rows: usize) -> BatchRecord {
    BatchRecord {
        id: format!("{tag:02x}").repeat(32),
        pseudonym_key: "0123456789abcdef".to_owned(),
        rows: rows as u64,
    }
}

/// Builds columnar loans from rows, with a dictionary in first-appearance order.
pub fn loans_of(rows: &[Row<'_>]) -> Loans {
    let mut l = Loans::default();
    let mut pseudonyms = Vec::with_capacity(rows.len());
    for &(who, title, work, month) in rows {
        let t = match l.title_ids.iter().position(|x| x == title) {
            Some(t) => t,
            None => {
                l.title_ids.push(title.to_owned());
                l.work_ids.push(work.to_owned());
                l.title_ids.len() - 1
            }
        };
        pseudonyms.push(p(who));
        l.titles.push(t as u32);
        l.months.push(month);
    }
    l.set_row_pseudonyms(&pseudonyms);
    l
}

/// One row of loans in comparable form.
pub type Flat = ([u8; 16], String, String, LoanMonth);

/// The rows of `loans` as a sorted multiset.
pub fn multiset(loans: &Loans) -> Vec<Flat> {
    let mut v = rows_in_order(loans);
    v.sort();
    v
}

/// The rows of `loans` in their order.
pub fn rows_in_order(loans: &Loans) -> Vec<Flat> {
    (0..loans.len())
        .map(|i| {
            let t = loans.titles[i] as usize;
            (
                loans.pseudonym(i).0,
                loans.title_ids[t].clone(),
                loans.work_ids[t].clone(),
                loans.months[i],
            )
        })
        .collect()
}

/// A fresh store root inside a temporary directory.
pub fn fresh() -> (tempfile::TempDir, PathBuf, Store) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    (dir, root, store)
}

/// Reads every committed data file.
pub fn file_bytes(store: &Store) -> Vec<(PathBuf, Vec<u8>)> {
    store
        .data_files()
        .unwrap()
        .into_iter()
        .map(|f| {
            let b = std::fs::read(&f).unwrap();
            (f, b)
        })
        .collect()
}

/// Every path under `root`, recursively, excluding `root` itself.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            }
            out.push(e.path());
        }
    }
    out.sort();
    out
}

/// All months, for scans of everything.
pub fn all() -> (LoanMonth, LoanMonth) {
    (m(1, 1), m(9999, 12))
}
