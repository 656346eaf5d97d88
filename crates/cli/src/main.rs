//! The `alsoborrowed` command: the cron-friendly front end of every stage.
//!
//! Exit codes (documented in `docs/operations.md`): 0 success, 1 failure, 2 usage
//! error, 3 another run holds the lock, 4 the privacy check refused to publish,
//! 5 some batches were quarantined, 6 nothing published yet (`verify`).
//! Messages never carry a borrower id, a pseudonym or key material: the library
//! crates' errors are built that way and this binary adds only file names and
//! stage names as context.

mod assets;
mod commands;
mod context;
mod fixes;
mod help;
mod links;
mod lock;
mod progress;
mod refusals;
mod report;
mod runlog;

// mimalloc instead of glibc's malloc: `run` on 10M loans took 8.7-9.6 s of
// user CPU instead of 10.5-12.1 s (alternating runs, benches/RESULTS.md),
// mostly in the many small per-chunk allocations of extract and ingest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Borrowers who borrowed this also borrowed: privacy-preserving recommendations for libraries.
#[derive(Parser)]
#[command(
    name = "alsoborrowed",
    version,
    about,
    long_about = help::ABOUT_LONG,
    after_long_help = help::MAIN_EXAMPLES,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Args, Clone)]
pub(crate) struct GlobalArgs {
    /// Print only errors (for cron).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Worker threads (default: one per core).
    #[arg(long, global = true, value_name = "N")]
    threads: Option<usize>,
    /// Date to treat as today, YYYY-MM-DD (reproducible runs and tests; default: the system date).
    #[arg(long, global = true, value_name = "DATE")]
    today: Option<jiff::civil::Date>,
}

#[derive(Subcommand)]
enum Command {
    /// Create or inspect key files.
    #[command(subcommand, long_about = help::KEY_LONG, after_long_help = help::KEY_EXAMPLES)]
    Key(KeyCommand),
    /// Pseudonymize a loans file or ILS database query and write a sealed batch for the mining side.
    #[command(long_about = help::EXTRACT_LONG, after_long_help = help::EXTRACT_EXAMPLES)]
    Extract(PipelineArgs),
    /// Open sealed batches from the inbox and add them to the store.
    #[command(long_about = help::INGEST_LONG, after_long_help = help::INGEST_EXAMPLES)]
    Ingest(PipelineArgs),
    /// Show what the store holds, without any personal data.
    #[command(long_about = help::STATUS_LONG, after_long_help = help::STATUS_EXAMPLES)]
    Status(PipelineArgs),
    /// Compute related titles for the scoring window and print a summary (publishes nothing).
    #[command(long_about = help::BUILD_LONG, after_long_help = help::BUILD_EXAMPLES)]
    Build(PipelineArgs),
    /// Compute related titles, check them and publish the feed atomically.
    #[command(long_about = help::EXPORT_LONG, after_long_help = help::EXPORT_EXAMPLES)]
    Export(PipelineArgs),
    /// Audit the published output against the store and the keys.
    #[command(long_about = help::VERIFY_LONG, after_long_help = help::VERIFY_EXAMPLES)]
    Verify(PipelineArgs),
    /// Extract, ingest and export in one go (for cron).
    #[command(long_about = help::RUN_LONG, after_long_help = help::RUN_EXAMPLES)]
    Run(PipelineArgs),
    /// Check a pipeline before its first run (keys, directories, first rows); writes nothing.
    #[command(long_about = help::CHECK_LONG, after_long_help = help::CHECK_EXAMPLES)]
    Check(PipelineArgs),
    /// Write deterministic synthetic loans (never real data) for demos and benchmarks.
    #[command(long_about = help::GENERATE_LONG, after_long_help = help::GENERATE_EXAMPLES)]
    Generate(commands::generate::GenerateArgs),
    /// Serve the live feed over HTTP(S): a title's list as JSON, the static files, health (no tracking).
    #[command(long_about = help::SERVE_LONG, after_long_help = help::SERVE_EXAMPLES)]
    Serve(commands::serve::ServeArgs),
    /// Write a self-contained HTML report for the data-protection officer: what is held, for how long, what was published and refused (aggregates only).
    #[command(long_about = help::REPORT_LONG, after_long_help = help::REPORT_EXAMPLES)]
    Report(report::ReportArgs),
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Write a new 256-bit key from the OS CSPRNG (mode 0600; never overwrites).
    New {
        /// Where to write the key.
        path: PathBuf,
    },
    /// Print a key's fingerprint (not the key), for audit.
    Fingerprint {
        /// The key file.
        path: PathBuf,
    },
}

/// Arguments of the commands that act on a pipeline.
#[derive(Args, Clone)]
pub(crate) struct PipelineArgs {
    /// The pipeline file (TOML), e.g. pipelines/demo.toml.
    #[arg(long, short, value_name = "FILE")]
    pipeline: PathBuf,
    /// Loans file to read instead of the pipeline's source.path (extract and run; files only).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
}

/// The chain of contexts on one line, outermost first. A cause that the
/// message before it already ends with (errors that print their source, such
/// as an I/O error inside a library error) is not repeated.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|prev| prev.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

fn main() -> ExitCode {
    // Packaging only, outside clap so that neither help nor the completions show it.
    if let Some(code) = assets::main_if_asked() {
        return code;
    }
    // No transparent huge pages for this process: the pipeline fills most of
    // its memory once, so a 2 MiB page is cleared by the kernel where a few
    // KiB would have been touched (mimalloc asks for them on its arenas). At
    // 10M loans `run` spent 1.5 s of system CPU, 0.7 s without, and took
    // 0.3-0.5 s less wall time (benches/RESULTS.md, session 18). Best effort:
    // a kernel without the prctl runs as before.
    let _ = rustix::thread::disable_transparent_huge_pages(true);
    let cli = Cli::parse();
    if let Some(n) = cli.global.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
    {
        eprintln!("error: setting up {n} worker threads: {e}");
        return ExitCode::from(1);
    }
    let mut ctx = context::Context::new(&cli.global);
    // The run log (runlog.rs) of the commands that change or publish data.
    let logged = logged_command(&cli.command);
    if let Some((name, args, _)) = &logged {
        ctx.log = runlog::RunLog::new(name);
        if let Ok(p) = pipeline::Pipeline::load(&args.pipeline) {
            ctx.log.pipeline(&p);
        }
    }
    let side = logged.map(|(_, _, side)| side);
    let result = match cli.command {
        Command::Key(KeyCommand::New { path }) => commands::key::new(&ctx, &path),
        Command::Key(KeyCommand::Fingerprint { path }) => commands::key::fingerprint(&path),
        Command::Extract(a) => commands::extract::run(&ctx, &a),
        Command::Ingest(a) => commands::ingest::run(&ctx, &a),
        Command::Status(a) => commands::status::run(&ctx, &a),
        Command::Build(a) => commands::export::build_only(&ctx, &a),
        Command::Export(a) => commands::export::run(&ctx, &a),
        Command::Verify(a) => commands::verify::run(&ctx, &a),
        Command::Run(a) => commands::run::run(&ctx, &a),
        Command::Check(a) => commands::check::run(&ctx, &a),
        Command::Generate(a) => commands::generate::run(&ctx, &a),
        Command::Serve(a) => commands::serve::run(&ctx, &a, cli.global.threads),
        Command::Report(a) => report::run(&ctx, &a),
    };
    let (code, reason) = match &result {
        Ok(()) => (0, None),
        Err(err) => (context::exit_code(err), Some(one_line(err))),
    };
    if let Some(side) = side {
        ctx.log.finish(ctx.today, side, code, reason.clone());
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let line = reason.unwrap_or_default();
            // One line: what failed, then (for the common mistakes) what to change.
            match fixes::fix(&err).or_else(|| fixes::plain_io_fix(&err)) {
                Some(fix) => eprintln!("error: {line}; fix: {fix}"),
                None => eprintln!("error: {line}"),
            }
            ExitCode::from(code)
        }
    }
}

/// The commands that write the run log: name, arguments, and the side whose
/// log gets their closing record.
fn logged_command(c: &Command) -> Option<(&'static str, PipelineArgs, runlog::Side)> {
    use runlog::Side::{Extractor, Mining};
    let (name, a, side) = match c {
        Command::Extract(a) => ("extract", a, Extractor),
        Command::Ingest(a) => ("ingest", a, Mining),
        Command::Build(a) => ("build", a, Mining),
        Command::Export(a) => ("export", a, Mining),
        Command::Verify(a) => ("verify", a, Mining),
        Command::Run(a) => ("run", a, Mining),
        _ => return None,
    };
    Some((name, a.clone(), side))
}

#[cfg(test)]
mod tests {
    use super::one_line;

    #[test]
    fn a_cause_the_message_already_ends_with_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let io_text = io.to_string();
        let err = anyhow::Error::new(store::StoreError::Io {
            path: "/s/manifest.json".into(),
            source: io,
        })
        .context("opening store /s");
        let line = one_line(&err);
        assert_eq!(line.matches(&io_text).count(), 1, "{line}");
        assert!(line.starts_with("opening store /s: i/o error on /s/manifest.json: "));
        let plain = anyhow::anyhow!("inner").context("outer");
        assert_eq!(one_line(&plain), "outer: inner");
    }
}
