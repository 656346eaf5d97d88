//! Writes the synthetic Koha, Evergreen and FOLIO data that CI loads into
//! its database servers (`.ci/databases.sh`): `<dir>/<ils>/data.sql` and the
//! file exports, from [`synth::ils::ci_params`].
//!
//! `cargo run -p synth --example ils -- DIR`; nothing it writes is committed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: ils OUTPUT_DIR")?;
    synth::ils::write_all(&synth::ils::ci_params(), &dir)?;
    Ok(())
}
