//! The longer descriptions and examples of `alsoborrowed help <command>`
//! (and of the man pages, which are generated from the same definition).

/// `alsoborrowed --help`.
pub(crate) const ABOUT_LONG: &str = "\
Borrowers who borrowed this also borrowed: privacy-preserving recommendations for libraries.

alsoborrowed reads loan records exported from a circulation system, replaces every borrower id \
with a keyed pseudonym, keeps a pseudonymous store for a limited number of months, and publishes \
only title pairs that at least k distinct borrowers share, as a static JSON feed.

Every command that acts on a pipeline reads one pipeline file (TOML, see \
/usr/share/doc/alsoborrowed/examples or pipelines/ in the source). Exit codes: 0 success, 1 \
failure, 2 usage error, 3 another run holds the lock, 4 the privacy check refused to publish, \
5 some batches were quarantined, 6 nothing published yet (verify).";

/// Examples after `alsoborrowed --help`.
pub(crate) const MAIN_EXAMPLES: &str = "\
Examples:
  alsoborrowed key new /etc/alsoborrowed/keys/pseudonym.key
  alsoborrowed run --pipeline pipelines/demo.toml
  alsoborrowed run --quiet --pipeline /etc/alsoborrowed/library.toml   (nightly, from cron or systemd)
  alsoborrowed help extract";

pub(crate) const KEY_LONG: &str = "\
Create or inspect key files.

A key file holds a 256-bit secret in text form, mode 0600. The pseudonym key turns borrower ids \
into pseudonyms and never leaves the extractor's host; the transfer key seals batches on their \
way to the mining host. They must be two different keys.";
pub(crate) const KEY_EXAMPLES: &str = "\
Examples:
  alsoborrowed key new /etc/alsoborrowed/keys/pseudonym.key
  alsoborrowed key new /etc/alsoborrowed/keys/transfer.key
  alsoborrowed key fingerprint /etc/alsoborrowed/keys/transfer.key   (compare on both hosts)";

pub(crate) const EXTRACT_LONG: &str = "\
Pseudonymize a loans file or ILS database query and write a sealed batch for the mining side.

Reads the pipeline's source (a CSV, TSV, NDJSON or Parquet export, or a database query), \
replaces each borrower id by its HMAC pseudonym under the pseudonym key, and writes one batch, \
encrypted and authenticated under the transfer key, to the outbox. Raw borrower ids go no \
further than this command.";
pub(crate) const EXTRACT_EXAMPLES: &str = "\
Examples:
  alsoborrowed extract --pipeline /etc/alsoborrowed/extract.toml
  alsoborrowed extract --pipeline extract.toml --input /srv/exports/loans-2026-11.csv
  alsoborrowed extract --quiet --pipeline koha-db.toml   (reads the ILS database)";

pub(crate) const INGEST_LONG: &str = "\
Open sealed batches from the inbox and add them to the store.

Deletes loans older than the retention limit first, then adds every batch of the inbox in name \
order and deletes each batch file once the store holds it. A batch that cannot be opened or \
belongs to another pipeline is moved to <inbox>/quarantine/ with the reason beside it (exit \
code 5); the others are ingested all the same.";
pub(crate) const INGEST_EXAMPLES: &str = "\
Examples:
  alsoborrowed ingest --pipeline /etc/alsoborrowed/mining.toml
  alsoborrowed ingest --quiet --pipeline mining.toml && alsoborrowed export --pipeline mining.toml";

pub(crate) const STATUS_LONG: &str = "\
Show what the store holds, without any personal data.

Counts of loans, pseudonyms and batches, the months held, the key fingerprints, the four-week \
deadlines of transferred batches, quarantined batches and the last refusal of the privacy check.";
pub(crate) const STATUS_EXAMPLES: &str = "\
Examples:
  alsoborrowed status --pipeline pipelines/demo.toml
  alsoborrowed status --pipeline /etc/alsoborrowed/library.toml";

pub(crate) const BUILD_LONG: &str = "\
Compute related titles for the scoring window and print a summary (publishes nothing).

A dry run of export: reads the window's loans from the store, counts distinct borrowers per \
title pair and prints how many titles and relations an export would publish.";
pub(crate) const BUILD_EXAMPLES: &str = "\
Examples:
  alsoborrowed build --pipeline pipelines/demo.toml
  alsoborrowed build --threads 2 --pipeline /etc/alsoborrowed/library.toml";

pub(crate) const EXPORT_LONG: &str = "\
Compute related titles, check them and publish the feed atomically.

Builds the related titles of the scoring window, checks every value of the output (no \
pseudonym, key material, borrower id or pair below k) and switches <export>/current to the new \
release in one step. A refused check leaves the previous feed live (exit code 4).";
pub(crate) const EXPORT_EXAMPLES: &str = "\
Examples:
  alsoborrowed export --pipeline pipelines/demo.toml
  alsoborrowed export --quiet --pipeline /etc/alsoborrowed/library.toml";

pub(crate) const VERIFY_LONG: &str = "\
Audit the published output against the store and the keys.

Recounts every published pair over the months the live release covers and scans every \
published file for pseudonyms, key material and borrower ids. Before the first release it says \
\"nothing published yet\" and exits with code 6.";
pub(crate) const VERIFY_EXAMPLES: &str = "\
Examples:
  alsoborrowed verify --pipeline pipelines/demo.toml
  alsoborrowed verify --pipeline /etc/alsoborrowed/library.toml --input /srv/exports/loans.csv";

pub(crate) const RUN_LONG: &str = "\
Extract, ingest and export in one go (for cron).

The whole job on one host: extract the source, ingest the new batch (in memory) and every batch \
of the inbox, and publish. A second run while one is in progress exits at once with code 3.";
pub(crate) const RUN_EXAMPLES: &str = "\
Examples:
  alsoborrowed run --pipeline pipelines/demo.toml
  alsoborrowed run --quiet --pipeline /etc/alsoborrowed/library.toml
  alsoborrowed run --pipeline library.toml --input /srv/exports/loans-2026-11.csv
  systemctl start alsoborrowed-run@library.service   (the Debian package's unit)";

pub(crate) const GENERATE_LONG: &str = "\
Write deterministic synthetic loans (never real data) for demos and benchmarks.

The same seed and parameters give byte-identical files; --demo writes exactly the committed \
demo data set.";
pub(crate) const GENERATE_EXAMPLES: &str = "\
Examples:
  alsoborrowed generate --loans 1000000 --seed 7 --out loans-1M.csv
  alsoborrowed generate --demo --out fixtures/demo/loans.csv --works fixtures/demo/works.csv";

pub(crate) const SERVE_LONG: &str = "\
Serve the live feed over HTTP(S): a title's list as JSON, the static files, health (no tracking).

Follows <export>/current and switches to a new release without a restart. Sets no cookie, logs \
no request and needs no key and no store.";
pub(crate) const SERVE_EXAMPLES: &str = "\
Examples:
  alsoborrowed serve --feed var/demo/published
  alsoborrowed serve --feed /var/www/alsoborrowed --listen 127.0.0.1:8080 --cors-origin https://catalogue.example
  alsoborrowed serve --feed /var/www/alsoborrowed --listen [::]:443 --tls-cert fullchain.pem --tls-key privkey.pem";

pub(crate) const CHECK_LONG: &str = "\
Check a pipeline before its first run (keys, directories, first rows); writes nothing.

Validates the pipeline file, the key files (present or created on first use, owner-only, two \
different keys, the pseudonym key outside the mining side's directories) and the directories, then \
reads the first 1,000 rows of the input: shows the column mapping with example titles and dates \
(borrower ids only by their shape), names the `source.encoding` or `source.date_format` that \
would read the file when the configured one does not, warns when borrower ids are also title ids, \
and estimates the run's time and peak memory. Takes no lock and writes nothing. Exit 0 when a \
run would work, 1 when a check failed (each failure has its fix on its own line).";
pub(crate) const CHECK_EXAMPLES: &str = "\
Examples:
  alsoborrowed check --pipeline pipelines/demo.toml
  alsoborrowed check --pipeline /etc/alsoborrowed/library.toml   (before enabling the timer)
  alsoborrowed check --today 2026-12-01 --pipeline koha-file.toml";

pub(crate) const REPORT_LONG: &str = "\
Write a self-contained HTML report for the data-protection officer: what is held, for how long, \
what was published and refused (aggregates only).

One HTML file (mode 0600) with inline styles and charts and nothing loaded from anywhere: loans \
and distinct borrowers per month in the store and the day each month is deleted, the four-week \
link deadlines and any overdue, key fingerprints and their age, the releases and what they \
published, every refusal and quarantine, and the history of runs from the run logs. It holds \
counts only, never a borrower id, pseudonym or key byte.";
pub(crate) const REPORT_EXAMPLES: &str = "\
Examples:
  alsoborrowed report --pipeline pipelines/demo.toml
  alsoborrowed report --pipeline /etc/alsoborrowed/library.toml --out /srv/dpo/alsoborrowed-2026-12.html";

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    /// Every visible command has a long description and 2-4 examples that
    /// start with the command itself.
    #[test]
    fn every_command_has_examples_of_itself() {
        let mut cmd = crate::Cli::command();
        cmd.build();
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = sub.get_name();
            if name == "help" {
                continue;
            }
            let examples = sub
                .get_after_long_help()
                .unwrap_or_else(|| panic!("{name} has no examples"))
                .to_string();
            let lines: Vec<&str> = examples.lines().skip(1).collect();
            assert!(examples.starts_with("Examples:"), "{name}");
            assert!((2..=4).contains(&lines.len()), "{name}: {}", lines.len());
            let own = format!("alsoborrowed {name}");
            assert!(
                lines.iter().filter(|l| l.contains(&own)).count() >= 2,
                "{name}: {examples}"
            );
            assert!(
                sub.get_long_about().is_some(),
                "{name} has no long description"
            );
        }
    }
}
