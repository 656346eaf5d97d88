//! Micro-benchmarks of the hot kernels, through the crates' public APIs:
//! `cargo bench -p kernels` (or `just bench-kernels`). Inputs are synthetic
//! and seeded; the loans file (1M rows by default, `KERNELS_LOANS` to change)
//! is generated once into a temporary directory removed at the end.

use std::path::PathBuf;
use std::sync::LazyLock;

use divan::Bencher;
use divan::counter::{BytesCount, ItemsCount};
use engine::EngineParams;
use loans::Loans;
use pipeline::{FeedLayout, Measure, Pipeline};
use pseudonym::Pseudonymizer;

fn main() {
    divan::main();
    if LazyLock::get(&FIXTURE).is_some() {
        let _ = std::fs::remove_dir_all(&FIXTURE.dir);
    }
}

/// The generated loans file, its pipeline and its extraction, made on first use.
struct Fixture {
    dir: PathBuf,
    bytes: u64,
    pipeline: Pipeline,
    loans: Loans,
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(|| {
    let n = std::env::var("KERNELS_LOANS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::temp_dir().join(format!("kernels-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the benchmark's temporary directory");
    let csv = dir.join("loans.csv");
    let file = std::fs::File::create(&csv).expect("creating the loans file");
    let stats = kernels::write_synthetic_loans(n, std::io::BufWriter::with_capacity(1 << 20, file));
    let pipeline = kernels::pipeline_for(&csv, &dir);
    let loans = extract::extract(&input(&pipeline), &pseudonymizer())
        .expect("extracting the generated loans")
        .loans;
    Fixture {
        dir,
        bytes: stats.bytes,
        pipeline,
        loans,
    }
});

fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(
        &keys::SecretKey::from_bytes([7; 32]),
        "bench-library",
        "related-titles",
    )
}

fn input(p: &Pipeline) -> extract::ExtractInput<'_> {
    extract::ExtractInput {
        source: &p.source,
        works: None,
        input: None,
        today: jiff::civil::date(2026, 11, 22),
    }
}

/// HMAC-SHA256 pseudonyms of synthetic card numbers, one per call.
#[divan::bench(sample_count = 20)]
fn pseudonymize(bencher: Bencher) {
    let params =
        synth::SynthParams::for_loans(1_000_000, kernels::SEED, kernels::first_month(), 24);
    let ids: Vec<String> = (0..10_000)
        .map(|i| synth::borrower_id(&params, i))
        .collect();
    let p = pseudonymizer();
    bencher.counter(ItemsCount::new(ids.len())).bench(|| {
        ids.iter()
            .map(|id| p.pseudonymize(id.as_bytes()).0[0])
            .fold(0u8, u8::wrapping_add)
    });
}

/// Parse, validate and pseudonymize the whole loans file (read from the page cache).
#[divan::bench(sample_count = 5, sample_size = 1)]
fn extract_csv(bencher: Bencher) {
    let f = &*FIXTURE;
    let p = pseudonymizer();
    bencher
        .counter(BytesCount::new(f.bytes))
        .bench(|| extract::extract(&input(&f.pipeline), &p).map(|e| e.loans.len()));
}

/// Distinct-borrower pair counting, scoring and ranking of every loan (cap 100, N 20).
#[divan::bench(sample_count = 5, sample_size = 1)]
fn count_pairs(bencher: Bencher) {
    let f = &*FIXTURE;
    let params = EngineParams {
        measure: Measure::Llr,
        min_support: 5,
        max_titles_per_borrower: 100,
        time_decay: 0.1,
        max_related: 20,
    };
    bencher
        .counter(ItemsCount::new(f.loans.len()))
        .bench(|| engine::build(&f.loans, &params).map(|r| r.pairs.len()));
}

/// Naming a batch: the SHA-256 of its whole payload, one thread, between
/// extract and ingest in `run`.
#[divan::bench(sample_count = 10)]
fn batch_identify(bencher: Bencher) {
    let f = &*FIXTURE;
    let key = pseudonymizer().master_fingerprint();
    bencher.counter(ItemsCount::new(f.loans.len())).bench(|| {
        batch::identify(&f.loans, "bench-library", "related-titles", key).expect("naming the batch")
    });
}

/// The record of the fixture's extraction as one batch.
fn batch_record(loans: &Loans) -> store::BatchRecord {
    store::BatchRecord {
        id: "ab".repeat(32),
        pseudonym_key: "0123456789abcdef".to_owned(),
        rows: loans.len() as u64,
    }
}

/// Ingest of the whole extraction into an empty store: deduplication,
/// Parquet encoding of one file per month, the fsyncs and the commit.
#[divan::bench(sample_count = 5, sample_size = 1)]
fn store_ingest(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher
        .counter(ItemsCount::new(f.loans.len()))
        .with_inputs(|| tempfile::tempdir().expect("creating a temporary directory"))
        .bench_refs(|dir| {
            let store = store::Store::open(&dir.path().join("store")).expect("opening a store");
            let lock = store.lock().expect("locking the store");
            store
                .ingest(
                    &lock,
                    &batch_record(&f.loans),
                    &f.loans,
                    kernels::first_month(),
                )
                .expect("ingesting the fixture")
        });
}

/// Reading every month back after an ingest: decoded from the files, or
/// (`run`) with the rows the ingest wrote taken from the batch in memory.
#[divan::bench(sample_count = 5, sample_size = 1, args = [false, true])]
fn store_scan(bencher: Bencher, from_memory: bool) {
    let f = &*FIXTURE;
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let store = store::Store::open(&dir.path().join("store")).expect("opening a store");
    let lock = store.lock().expect("locking the store");
    let (_, written) = store
        .ingest_written(
            &lock,
            &batch_record(&f.loans),
            &f.loans,
            kernels::first_month(),
        )
        .expect("ingesting the fixture");
    let (first, last) = (
        kernels::first_month(),
        loans::LoanMonth::new(9999, 12).expect("a month"),
    );
    bencher.counter(ItemsCount::new(f.loans.len())).bench(|| {
        store
            .scan_reusing(first, last, from_memory.then_some((&f.loans, &written)))
            .map(|l| l.len())
    });
}

/// Dunning's log-likelihood ratio of 100k 2x2 tables.
#[divan::bench(sample_count = 20)]
fn llr(bencher: Bencher) {
    let mut x = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let tables: Vec<[u64; 4]> = (0..100_000)
        .map(|_| {
            let both = 5 + next(200);
            [both, next(2_000), next(2_000), 400_000 + next(100_000)]
        })
        .collect();
    bencher.counter(ItemsCount::new(tables.len())).bench(|| {
        tables
            .iter()
            .map(|t| engine::llr(t[0], t[1], t[2], t[3]))
            .sum::<f64>()
    });
}

/// The raw leak scan of published bytes (every file of a 10k-title release)
/// against the window's pseudonyms and keys; borrower ids are never
/// searched in raw bytes (the release check accounts for every value).
#[divan::bench(sample_count = 5, sample_size = 1)]
fn leak_scan(bencher: Bencher) {
    let f = &*FIXTURE;
    let mut forbidden = publish::Forbidden::new();
    forbidden.add_pseudonyms(&f.loans.borrower_pseudonyms);
    let params =
        synth::SynthParams::for_loans(1_000_000, kernels::SEED, kernels::first_month(), 24);
    for i in 0..params.borrowers {
        forbidden.add_identifier(&synth::borrower_id(&params, i));
    }
    forbidden.add_secret(&[7; 32]);
    scan_release(bencher, &forbidden);
}

/// The same scan as `run` makes it at national scale: the pseudonyms of
/// about 4M borrowers (100M loans), whose prefilter outgrows the L2 cache,
/// and four keys (the pseudonym and transfer keys, as stored and derived).
#[divan::bench(sample_count = 5, sample_size = 1)]
fn leak_scan_national(bencher: Bencher) {
    let p = pseudonymizer();
    let pseudonyms: Vec<loans::Pseudonym> = (0..4_000_000u32)
        .map(|i| p.pseudonymize(format!("{i:08}").as_bytes()))
        .collect();
    let mut forbidden = publish::Forbidden::new();
    forbidden.add_pseudonyms(&pseudonyms);
    for key in 1..=4u8 {
        let bytes: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(97) ^ key.wrapping_mul(61))
            .collect();
        forbidden.add_secret(&bytes);
    }
    scan_release(bencher, &forbidden);
}

/// Times `forbidden`'s raw scan of every file of a 10k-title release.
fn scan_release(bencher: Bencher, forbidden: &publish::Forbidden) {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    export_release(
        &kernels::synthetic_related(10_000, 20),
        dir.path(),
        FeedLayout::Titles,
    );
    let mut published = Vec::new();
    collect_files(dir.path(), &mut published);
    bencher
        .counter(BytesCount::new(published.len()))
        .bench(|| forbidden.find_raw(&published).is_some());
}

/// Writing a release (Parquet, CSV, the JSON feed, checks) of 2,000 titles x
/// 20 related titles into a fresh directory, in both feed layouts: one file
/// per title, or about 32 titles per shard file.
#[divan::bench(sample_count = 5, sample_size = 1, args = [FeedLayout::Titles, FeedLayout::Shards])]
fn export_feed(bencher: Bencher, layout: FeedLayout) {
    let related = kernels::synthetic_related(2_000, 20);
    bencher
        .counter(ItemsCount::new(2_000u32))
        .with_inputs(|| tempfile::tempdir().expect("creating a temporary directory"))
        .bench_refs(|dir| export_release(&related, dir.path(), layout));
}

fn export_release(related: &engine::Related, out: &std::path::Path, layout: FeedLayout) {
    let meta = publish::ExportMeta {
        window_first: kernels::first_month(),
        window_last: kernels::first_month(),
        measure: Measure::Llr,
        min_support: 5,
        max_titles_per_borrower: 100,
        time_decay: 1.0,
        max_related: 20,
        layout,
    };
    publish::export(related, &meta, out, &publish::Forbidden::new())
        .expect("exporting synthetic relations");
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<u8>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.extend_from_slice(&bytes);
        }
    }
}
