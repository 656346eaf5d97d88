//! `exact-pairs PIPELINE FIRST LAST`: the unordered title pairs with support
//! of at least k in the store's window FIRST..LAST (YYYY-MM) and their support sum,
//! computed by `engine::build` with the pipeline's settings. With the cap and
//! the top-N cut disabled this is the exact counting job of the peers in
//! `benches/national.sh`, which compares their totals with this line.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use loans::LoanMonth;

fn month(s: &str) -> Result<LoanMonth> {
    let (y, m) = s.split_once('-').context("a month is YYYY-MM")?;
    Ok(LoanMonth::new(y.parse()?, m.parse()?)?)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pipeline, first, last] = args.as_slice() else {
        bail!("usage: exact-pairs PIPELINE FIRST LAST");
    };
    let p = pipeline::Pipeline::load(&PathBuf::from(pipeline))?;
    let store = store::Store::open(&p.store.path).context("opening the store")?;
    let loans = store.scan(month(first)?, month(last)?)?;
    let params = engine::EngineParams::from(&p.engine);
    let related = engine::build(&loans, &params)?;
    let Some(t) = kernels::unordered_totals(&related) else {
        bail!("relations are not symmetric: disable the top-N cut (max_related) to count pairs");
    };
    println!(
        "alsoborrowed relations={} pairs={} support_sum={} cap={}",
        related.pairs.len(),
        t.pairs,
        t.support_sum,
        params.max_titles_per_borrower
    );
    Ok(())
}
