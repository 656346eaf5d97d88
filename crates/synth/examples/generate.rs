//! Generates `N` loans with [`synth::SynthParams::for_loans`] and reports the
//! time taken: `cargo run --release -p synth --example generate -- N [FILE]`
//! (without FILE the CSV is discarded, measuring generation alone).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let loans: u64 = args.next().ok_or("usage: generate N [FILE]")?.parse()?;
    let out: Box<dyn Write> = match args.next() {
        Some(path) => Box::new(BufWriter::new(File::create(path)?)),
        None => Box::new(io::sink()),
    };
    let params = synth::SynthParams::for_loans(loans, 1, "2024-01".parse()?, 24);
    let start = Instant::now();
    let stats = synth::write_loans_csv(&params, out)?;
    let secs = start.elapsed().as_secs_f64();
    println!("{params:?}");
    println!("{stats:?}");
    println!(
        "{secs:.2} s on {} threads: {:.1} M loans/s, {:.0} MB/s",
        rayon::current_num_threads(),
        stats.loans as f64 / secs / 1e6,
        stats.bytes as f64 / secs / 1e6
    );
    Ok(())
}
