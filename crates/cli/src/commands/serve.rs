//! `alsoborrowed serve`: the live feed over HTTP(S), without tracking.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Args;

use crate::context::Context;

/// Arguments of `serve`.
#[derive(Args)]
pub(crate) struct ServeArgs {
    /// The export directory (its `current` is followed and watched), a release or a feed directory.
    #[arg(long, value_name = "DIR")]
    feed: PathBuf,
    /// Address and port to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// An origin whose pages may read the API and feed (CORS), e.g. https://catalogue.example; repeat for more, `*` for any.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// A directory of pages to serve below / (read once at start).
    #[arg(long, value_name = "DIR")]
    pages: Option<PathBuf>,
    /// Most connections open at once; more get 503.
    #[arg(long, value_name = "N", default_value_t = 1024)]
    max_connections: usize,
    /// Cache-Control max-age of lists and feed files, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    max_age: u32,
    /// How often to check whether `current` moved, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2)]
    poll: u64,
}

pub(crate) fn run(ctx: &Context, a: &ServeArgs, threads: Option<usize>) -> Result<()> {
    let mut config = serve::Config::new(a.feed.clone(), a.listen);
    config.tls = a.tls_cert.clone().zip(a.tls_key.clone());
    config.cors_origins = a.cors_origins.clone();
    config.pages = a.pages.clone();
    config.max_connections = a.max_connections;
    config.max_age_secs = a.max_age;
    config.poll_interval = Duration::from_secs(a.poll.max(1));
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let quiet = ctx.quiet;
    serve::run(config, threads, |server| {
        if !quiet {
            let state = server.state();
            let release = state.release.load();
            eprintln!(
                "serving release {} ({} titles, updated {}) on {scheme}://{}",
                release.id(),
                release.feed().len(),
                release.feed().index().updated,
                server.local_addr()
            );
        }
    })
    .with_context(|| format!("serving {}", a.feed.display()))
}
