//! `alsoborrowed key new|fingerprint`.

use std::path::Path;

use anyhow::{Context as _, Result};

use crate::context::Context;

/// Writes a fresh key; prints only its fingerprint.
pub(crate) fn new(ctx: &Context, path: &Path) -> Result<()> {
    let key = keys::SecretKey::generate().context("generating a key")?;
    keys::write_new_key_file(path, &key)?;
    ctx.say(format!(
        "wrote new key {} (mode 0600), fingerprint {}",
        path.display(),
        key.fingerprint()
    ));
    Ok(())
}

/// Prints a key's fingerprint, which is safe to log and compare.
pub(crate) fn fingerprint(path: &Path) -> Result<()> {
    let key = keys::load_key_file(path)?;
    println!("{}", key.fingerprint());
    Ok(())
}
