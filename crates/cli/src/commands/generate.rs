//! `alsoborrowed generate`: synthetic loans, never real data.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use loans::LoanMonth;

use crate::context::Context;

/// Arguments of `generate`.
#[derive(Args)]
pub(crate) struct GenerateArgs {
    /// Number of loans.
    #[arg(long, default_value_t = 1_000_000)]
    loans: u64,
    /// Random seed; the same seed gives byte-identical files.
    #[arg(long, default_value_t = 2024)]
    seed: u64,
    /// First month of loans (YYYY-MM).
    #[arg(long, value_name = "YYYY-MM", default_value = "2024-11")]
    first_month: LoanMonth,
    /// Number of months.
    #[arg(long, default_value_t = 24)]
    months: u32,
    /// Loans CSV to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write a manifestation-to-work mapping CSV.
    #[arg(long, value_name = "FILE")]
    works: Option<PathBuf>,
    /// Exactly the committed demo data set (ignores --loans, --seed, --first-month, --months).
    #[arg(long)]
    demo: bool,
}

pub(crate) fn run(ctx: &Context, a: &GenerateArgs) -> Result<()> {
    let params = if a.demo {
        synth::demo_params()
    } else {
        synth::SynthParams::for_loans(a.loans, a.seed, a.first_month, a.months)
    };
    let out = File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let stats = synth::write_loans_csv(&params, BufWriter::with_capacity(1 << 20, out))
        .with_context(|| format!("writing {}", a.out.display()))?;
    ctx.say(format!(
        "wrote {} synthetic loans ({} borrowers, {} titles, {} bytes) -> {}",
        stats.loans,
        stats.borrowers_used,
        stats.titles_used,
        stats.bytes,
        a.out.display()
    ));
    if let Some(w) = &a.works {
        let f = File::create(w).with_context(|| format!("creating {}", w.display()))?;
        let n = synth::write_works_csv(&params, BufWriter::new(f))
            .with_context(|| format!("writing {}", w.display()))?;
        ctx.say(format!(
            "wrote {n} title-to-work mappings -> {}",
            w.display()
        ));
    }
    Ok(())
}
