//! Measures extraction throughput on a synthetic export.
//!
//! `cargo run --release -p extract --example throughput -- [ROWS] [THREADS] [CSV]`
//! writes ROWS (default 10 million) rows of `borrower_id,title_id,loan_date`
//! to a temporary file and times `extract` on it; with CSV, an existing
//! export (such as `benches/data/loans-*.csv`) is timed instead.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use jiff::civil::date;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: u64 = args.next().map_or(Ok(10_000_000), |a| a.parse())?;
    let threads: usize = args.next().map_or(Ok(0), |a| a.parse())?;
    let existing = args.next().map(PathBuf::from);

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("loans.csv");
    match &existing {
        Some(csv) => std::os::unix::fs::symlink(std::fs::canonicalize(csv)?, &path)?,
        None => generate(&path, rows)?,
    }
    let bytes = std::fs::metadata(&path)?.len();

    let toml = "[library]\nid = \"X\"\n[keys]\npseudonym = \"p\"\ntransfer = \"t\"\n\
                [source]\npath = \"loans.csv\"\n[transfer]\noutbox = \"o\"\n\
                [store]\npath = \"s\"\n[export]\npath = \"e\"\n";
    let p = pipeline::Pipeline::parse(toml, Path::new("x.toml"), dir.path())?;
    let key = keys::SecretKey::from_bytes([1; 32]);
    let pseudonymizer = pseudonym::Pseudonymizer::new(&key, "X", "bench");
    let input = extract::ExtractInput {
        source: &p.source,
        works: None,
        input: None,
        today: date(2030, 1, 1),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    let (start, cpu_start) = (Instant::now(), cpu_seconds());
    let e = pool.install(|| extract::extract(&input, &pseudonymizer))?;
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds().zip(cpu_start).map(|(b, a)| b - a);
    let read = e.report.rows_read;
    println!(
        "{read} rows, {:.0} MB, {} threads: {secs:.2} s wall, {} s cpu ({:.1} M rows/s); {}",
        bytes as f64 / 1e6,
        pool.current_num_threads(),
        cpu.map_or("?".to_owned(), |c| format!("{c:.2}")),
        read as f64 / secs / 1e6,
        e.report
    );
    Ok(())
}

/// Writes `rows` synthetic loans to `path`: ~300k borrowers, ~200k titles,
/// two years, in random order.
fn generate(path: &Path, rows: u64) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(out, "borrower_id,title_id,loan_date")?;
    // A cheap deterministic mix.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let borrower = 10_000_000_000 + x % 300_000;
        let title = 9_788_702_000_000 + (x >> 20) % 200_000;
        let (year, month, day) = (2023 + (x >> 40) % 2, 1 + (x >> 44) % 12, 1 + (x >> 50) % 28);
        writeln!(out, "{borrower},{title},{year}-{month:02}-{day:02}")?;
    }
    out.into_inner()?.sync_all()
}

/// User plus system CPU time of this process so far (Linux only), so that a
/// busy machine does not hide what the extraction itself costs.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesized command name; utime and stime are the
    // 14th and 15th fields of the whole line, in clock ticks (100 per second).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
