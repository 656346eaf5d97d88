//! Writes the committed demo fixtures, `fixtures/demo/loans.csv` and
//! `fixtures/demo/works.csv`, from [`synth::demo_params`].
//!
//! Run from anywhere with `cargo run -p synth --example write_demo`; an
//! optional argument names another output directory.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/demo"),
        PathBuf::from,
    );
    std::fs::create_dir_all(&dir)?;
    let params = synth::demo_params();
    let stats = synth::write_loans_csv(
        &params,
        BufWriter::new(File::create(dir.join("loans.csv"))?),
    )?;
    let works = synth::write_works_csv(
        &params,
        BufWriter::new(File::create(dir.join("works.csv"))?),
    )?;
    println!("{params:?}");
    println!("{stats:?}");
    println!("works rows: {works}");
    Ok(())
}
