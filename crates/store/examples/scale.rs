//! Times ingest, status and scan of synthetic loans: `cargo run --release -p store --example scale -- ROWS`.

use std::time::Instant;

use loans::{LoanMonth, Loans, Pseudonym};
use store::{BatchRecord, Store};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rows: usize = std::env::args()
        .nth(1)
        .map_or(Ok(10_000_000), |s| s.parse())?;
    let titles = 100_000usize;
    let borrowers = 500_000u64;
    let start = LoanMonth::new(2024, 1)?;
    // Borrower `who` is dictionary entry `who`: every pseudonym below differs.
    let mut loans = Loans {
        borrower_pseudonyms: (0..borrowers)
            .map(|who| {
                let mut p = [0u8; 16];
                p[..8].copy_from_slice(&who.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
                p[8..].copy_from_slice(&who.to_le_bytes());
                Pseudonym(p)
            })
            .collect(),
        title_ids: (0..titles).map(|t| format!("title-{t:08}")).collect(),
        work_ids: (0..titles).map(|t| format!("work-{:08}", t / 2)).collect(),
        ..Loans::default()
    };
    // A small xorshift keeps the example free of dependencies.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..rows {
        loans.borrowers.push((next() % borrowers) as u32);
        loans.titles.push((next() % titles as u64) as u32);
        loans.months.push(start.plus((next() % 12) as i32)?);
    }
    let dir = std::env::temp_dir().join(format!("store-scale-{}", std::process::id()));
    let store = Store::open(&dir)?;
    let lock = store.lock()?;
    let batch = BatchRecord {
        id: "5a".repeat(32),
        pseudonym_key: "0123456789abcdef".to_owned(),
        rows: rows as u64,
    };
    let t = Instant::now();
    store.ingest(&lock, &batch, &loans, start)?;
    println!("ingest {rows} rows: {:?}", t.elapsed());
    let t = Instant::now();
    let status = store.status()?;
    println!(
        "status: {:?} ({} distinct)",
        t.elapsed(),
        status.distinct_pseudonyms
    );
    let t = Instant::now();
    let back = store.scan(start, start.plus(11)?)?;
    println!(
        "scan: {:?} ({} rows, {} titles)",
        t.elapsed(),
        back.len(),
        back.title_ids.len()
    );
    let bytes: u64 = store
        .data_files()?
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum();
    println!("on disk: {} MiB", bytes >> 20);
    drop(lock);
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
