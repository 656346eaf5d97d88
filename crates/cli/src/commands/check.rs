//! `alsoborrowed check`: whether a run would work, checked before the first
//! one without writing anything and without taking a lock: the pipeline
//! file, the key files, the directories, the first rows of the input (column
//! mapping, encoding, date format, borrower-id shapes) and an estimate of
//! run time and peak memory. One line per check; exit 0 when a run would
//! work, 1 otherwise.
//!
//! Privacy: the output names files, header names, example titles and
//! dates, never a borrower id: the sample (`extract::sample`) returns only
//! the ids' shapes and how many of them are also title ids.

use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use pipeline::{Format, Pipeline};

use crate::PipelineArgs;
use crate::context::Context;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warning,
    Error,
}

/// The lines of the summary, in order.
#[derive(Default)]
struct Report {
    lines: Vec<(Level, String)>,
}

impl Report {
    fn ok(&mut self, line: impl Into<String>) {
        self.lines.push((Level::Ok, line.into()));
    }
    fn warn(&mut self, line: impl Into<String>) {
        self.lines.push((Level::Warning, line.into()));
    }
    fn error(&mut self, line: impl Into<String>) {
        self.lines.push((Level::Error, line.into()));
    }
    fn count(&self, level: Level) -> usize {
        self.lines.iter().filter(|(l, _)| *l == level).count()
    }
    fn print(&self, ctx: &Context) {
        for (level, line) in &self.lines {
            let tag = match level {
                Level::Ok => "ok     ",
                Level::Warning => "warning",
                Level::Error => "error  ",
            };
            if *level != Level::Ok || !ctx.quiet {
                println!("{tag} {line}");
            }
        }
    }
}

/// `alsoborrowed check --pipeline FILE`.
pub(crate) fn run(ctx: &Context, args: &PipelineArgs) -> Result<()> {
    let mut r = Report::default();
    let p = match Pipeline::load(&args.pipeline) {
        Ok(p) => p,
        Err(e) => {
            let fix = match &e {
                pipeline::PipelineError::Read { .. } => "fix: give the path of the pipeline file",
                _ => "fix: correct that key (docs/configuration.md lists every key of every table)",
            };
            r.error(format!("pipeline file: {e}; {fix}"));
            r.print(ctx);
            anyhow::bail!("the pipeline file cannot be read, so nothing else was checked");
        }
    };
    r.ok(format!(
        "pipeline file {}: library {:?}, purpose {:?}",
        args.pipeline.display(),
        p.library.id,
        p.library.purpose
    ));
    check_keys(&mut r, &p);
    check_dirs(&mut r, &p);
    check_source(&mut r, ctx, &p, args.input.as_deref());
    r.print(ctx);
    let (errors, warnings) = (r.count(Level::Error), r.count(Level::Warning));
    if errors > 0 {
        anyhow::bail!(
            "{errors} check(s) failed and {warnings} warning(s); fix the errors above and run check again"
        );
    }
    ctx.say(format!(
        "a run would work ({warnings} warning(s)); nothing was written"
    ));
    Ok(())
}

/// The identity and fingerprint of a key file, for the separation checks.
struct KeyFile {
    dev_ino: Option<(u64, u64)>,
    fingerprint: Option<String>,
}

/// The effective user id of this process.
fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks one key file: present (or to be created), owner-only, owned by
/// the running user, a valid key.
fn check_key(r: &mut Report, p: &Pipeline, path: &Path, role: &str) -> KeyFile {
    let none = KeyFile {
        dev_ino: None,
        fingerprint: None,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if p.keys.create_if_missing {
                r.ok(format!(
                    "{role} key {}: does not exist yet; the first run creates it (keys.create_if_missing, mode 0600)",
                    path.display()
                ));
            } else {
                r.error(format!(
                    "{role} key {}: missing; fix: alsoborrowed key new {}",
                    path.display(),
                    path.display()
                ));
            }
            return none;
        }
        Err(e) => {
            r.error(format!("{role} key {}: {e}", path.display()));
            return none;
        }
    };
    let mut ok = true;
    if !meta.is_file() {
        r.error(format!("{role} key {}: not a regular file", path.display()));
        return none;
    }
    if meta.uid() != euid() {
        ok = false;
        r.error(format!(
            "{role} key {}: owned by uid {}, not by the user running alsoborrowed (uid {}); fix: chown it to that user",
            path.display(),
            meta.uid(),
            euid()
        ));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        ok = false;
        r.error(format!(
            "{role} key {}: mode {mode:04o}, readable by group or others; fix: chmod 600 {}",
            path.display(),
            path.display()
        ));
    }
    let fingerprint = match keys::load_key_file(path) {
        Ok(k) => Some(k.fingerprint().to_string()),
        Err(e) => {
            if ok {
                r.error(format!("{role} key: {e}"));
            }
            ok = false;
            None
        }
    };
    if ok {
        r.ok(format!(
            "{role} key {}: mode {mode:04o}, yours, fingerprint {}",
            path.display(),
            fingerprint.as_deref().unwrap_or("?")
        ));
    }
    KeyFile {
        dev_ino: Some((meta.dev(), meta.ino())),
        fingerprint,
    }
}

/// `path` made absolute and, as far as it exists, free of symbolic links.
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    out.extend(rest.iter().rev());
    out
}

fn check_keys(r: &mut Report, p: &Pipeline) {
    let pk = check_key(r, p, &p.keys.pseudonym, "pseudonym");
    let tk = check_key(r, p, &p.keys.transfer, "transfer");
    let same_path = resolved(&p.keys.pseudonym) == resolved(&p.keys.transfer);
    let same_file = same_path || (pk.dev_ino.is_some() && pk.dev_ino == tk.dev_ino);
    if same_file {
        r.error(
            "keys: keys.pseudonym and keys.transfer are the same file; the transfer key \
             travels to the mining side, the pseudonym key must not; fix: make a separate \
             transfer key with alsoborrowed key new",
        );
    } else if pk.fingerprint.is_some() && pk.fingerprint == tk.fingerprint {
        r.error(
            "keys: the pseudonym and transfer key files hold the same key; fix: replace the \
             transfer key with a new one (alsoborrowed key new) on both hosts",
        );
    } else {
        r.ok("keys: pseudonym and transfer keys are separate files");
    }
    let key = resolved(&p.keys.pseudonym);
    for (what, dir) in [
        ("store", &p.store.path),
        ("export", &p.export.path),
        ("inbox", &p.transfer.inbox().to_path_buf()),
    ] {
        if key.starts_with(resolved(dir)) {
            r.error(format!(
                "keys: the pseudonym key lies inside the {what} directory {} of the mining side; \
                 fix: keep it outside, on the extractor's host only (e.g. /etc/alsoborrowed)",
                dir.display()
            ));
        }
    }
}

/// Whether this process may write into and traverse `dir`.
fn writable(dir: &Path) -> bool {
    rustix::fs::access(
        dir,
        rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
    )
    .is_ok()
}

/// Checks a directory a run writes to: present and writable, or creatable
/// in its nearest existing ancestor; `owner_only` when the run refuses a
/// directory that group or others may enter (`Some(true)`) or only should
/// not (`Some(false)`: a warning).
fn check_dir(r: &mut Report, what: &str, dir: &Path, create_mode: u32, owner_only: Option<bool>) {
    match std::fs::symlink_metadata(dir) {
        Ok(m) => {
            let meta = if m.file_type().is_symlink() {
                match std::fs::metadata(dir) {
                    Ok(m) => m,
                    Err(e) => {
                        r.error(format!("{what} {}: {e}", dir.display()));
                        return;
                    }
                }
            } else {
                m
            };
            if !meta.is_dir() {
                r.error(format!(
                    "{what} {}: exists but is not a directory; fix: move it away or point the pipeline elsewhere",
                    dir.display()
                ));
                return;
            }
            if !writable(dir) {
                r.error(format!(
                    "{what} {}: not writable by this user; fix: chown it to the user running alsoborrowed",
                    dir.display()
                ));
                return;
            }
            let mode = meta.permissions().mode() & 0o777;
            match owner_only {
                Some(strict) if mode & 0o077 != 0 => {
                    let line = format!(
                        "{what} {}: mode {mode:03o}, group or others may enter it; fix: chmod 700 {}",
                        dir.display(),
                        dir.display()
                    );
                    if strict {
                        r.error(line);
                    } else {
                        r.warn(line);
                    }
                }
                _ => r.ok(format!(
                    "{what} {}: exists, writable, mode {mode:03o}",
                    dir.display()
                )),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut ancestor = dir.parent();
            while let Some(a) = ancestor {
                if a.as_os_str().is_empty() || a.exists() {
                    break;
                }
                ancestor = a.parent();
            }
            let ancestor = match ancestor {
                Some(a) if !a.as_os_str().is_empty() => a,
                _ => Path::new("."),
            };
            if ancestor.is_dir() && writable(ancestor) {
                r.ok(format!(
                    "{what} {}: does not exist yet; the first run creates it (mode {create_mode:04o})",
                    dir.display()
                ));
            } else {
                r.error(format!(
                    "{what} {}: does not exist and {} is not a writable directory; fix: create it (mkdir -m {create_mode:o} -p {})",
                    dir.display(),
                    ancestor.display(),
                    dir.display()
                ));
            }
        }
        Err(e) => r.error(format!("{what} {}: {e}", dir.display())),
    }
}

fn check_dirs(r: &mut Report, p: &Pipeline) {
    use crate::lock::{PRIVATE_DIR, SERVED_DIR};
    check_dir(r, "outbox", &p.transfer.outbox, PRIVATE_DIR, Some(false));
    if p.transfer.inbox() != p.transfer.outbox {
        check_dir(r, "inbox", p.transfer.inbox(), PRIVATE_DIR, Some(false));
    }
    // The store refuses a root (and its loans/tmp) that group or others
    // may enter (store::Store::open).
    check_dir(r, "store", &p.store.path, PRIVATE_DIR, Some(true));
    for sub in ["loans", "tmp"] {
        let d = p.store.path.join(sub);
        if d.exists() {
            check_dir(r, "store", &d, PRIVATE_DIR, Some(true));
        }
    }
    check_dir(r, "export", &p.export.path, SERVED_DIR, None);
}

/// Checks that a file the run reads exists and can be read.
fn check_readable(r: &mut Report, what: &str, path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(f) => match f.metadata() {
            Ok(m) if m.is_file() => {
                r.ok(format!(
                    "{what} {}: readable, {}",
                    path.display(),
                    human_bytes(m.len())
                ));
                true
            }
            Ok(_) => {
                r.error(format!("{what} {}: not a regular file", path.display()));
                false
            }
            Err(e) => {
                r.error(format!("{what} {}: {e}", path.display()));
                false
            }
        },
        Err(e) => {
            let fix = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    "fix: correct the path in the pipeline file (relative paths are relative to it)"
                }
                std::io::ErrorKind::PermissionDenied => {
                    "fix: let the user running alsoborrowed read it"
                }
                _ => "fix: check the file",
            };
            r.error(format!("{what} {}: {e}; {fix}", path.display()));
            false
        }
    }
}

fn check_source(r: &mut Report, ctx: &Context, p: &Pipeline, input: Option<&Path>) {
    if let Some(t) = &p.source.titles {
        check_readable(r, "title map", &t.path);
    }
    if let Some(w) = &p.works
        && w.query.is_none()
    {
        check_readable(r, "works mapping", &w.path);
    }
    if p.source.format.is_database() {
        check_database(r, p);
        return;
    }
    let path = input.unwrap_or(&p.source.path);
    if !check_readable(r, "input", path) {
        return;
    }
    let extract_input = extract::ExtractInput {
        source: &p.source,
        works: p.works.as_ref(),
        input: Some(path),
        today: ctx.today,
    };
    let sample = match extract::sample(&extract_input, extract::SAMPLE_ROWS) {
        Ok(Some(s)) => s,
        Ok(None) => {
            r.ok(format!(
                "input: a {} file is read by column name; its rows are not sampled (extract reports what it rejects)",
                format_name(p.source.format)
            ));
            let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
            // Parquet compresses: about 10 bytes a loan on the benchmark input.
            estimate(r, bytes / 10, None);
            return;
        }
        Err(e) => {
            r.error(format!("input: {e}"));
            return;
        }
    };
    report_sample(r, p, &sample, ctx.today);
}

fn format_name(f: Format) -> &'static str {
    match f {
        Format::Parquet => "parquet",
        Format::Ndjson => "ndjson",
        Format::Postgres => "postgres",
        Format::Mysql => "mysql",
        Format::Tsv => "tsv",
        Format::Semicolon => "semicolon",
        _ => "csv",
    }
}

/// The lines describing the sampled rows.
fn report_sample(r: &mut Report, p: &Pipeline, s: &extract::Sample, today: jiff::civil::Date) {
    let src = &p.source;
    let scope = if s.whole_file {
        format!("all {} rows", s.rows)
    } else {
        format!(
            "the first {} rows (about {} in all)",
            s.rows,
            s.estimated_rows()
        )
    };
    if s.rows > 0 || s.missing.is_empty() {
        r.ok(format!("input sample: {scope}"));
    }
    // Encoding.
    match s.encoding_fix {
        Some(e) => r.error(format!(
            "encoding: the file does not read as source.encoding = {:?}; {}",
            src.encoding.name(),
            extract::EncodingFix(e)
        )),
        None if s.non_ascii => r.ok(format!(
            "encoding: non-ASCII text reads as {}",
            src.encoding.name()
        )),
        None => r.ok("encoding: ASCII only, any encoding reads it"),
    }
    // Columns.
    if !s.missing.is_empty() {
        let found = match &s.header {
            Some(h) => format!("the header has {}", h.join(", ")),
            None => "no configured column is in the first line, so its values are not shown \
                     (is the header missing or the delimiter wrong?)"
                .to_owned(),
        };
        r.error(format!(
            "columns: lacks {}; {found}; fix: name the header's columns in [source.columns]{}",
            s.missing.join(", "),
            if s.encoding_fix.is_some() {
                " or set the encoding above"
            } else {
                ""
            }
        ));
        return;
    }
    let c = &src.columns;
    let position = |name: &str| {
        s.header
            .as_ref()
            .and_then(|h| h.iter().position(|n| n == name.trim()))
            .map_or_else(String::new, |i| format!(" (column {})", i + 1))
    };
    let shapes: Vec<String> = s.id_shapes.iter().map(ToString::to_string).collect();
    r.ok(format!(
        "columns: borrower_id = {:?}{}: {} distinct ids, shaped {} (values never shown)",
        c.borrower_id,
        position(&c.borrower_id),
        s.distinct_borrowers,
        if shapes.is_empty() {
            "-".to_owned()
        } else {
            shapes.join("; ")
        }
    ));
    r.ok(format!(
        "columns: title_id = {:?}{}: {} distinct titles, e.g. {}",
        c.title_id,
        position(&c.title_id),
        s.distinct_titles,
        s.example_titles.join(", ")
    ));
    r.ok(format!(
        "columns: loan_date = {:?}{}: {}",
        c.loan_date,
        position(&c.loan_date),
        if s.example_dates.is_empty() {
            "no field reads as a date, so none is shown".to_owned()
        } else {
            format!("e.g. {}", s.example_dates.join(", "))
        }
    ));
    // Dates.
    if s.dates_total == 0 {
        r.error("dates: no sampled row has a loan date; fix: check source.columns.loan_date");
    } else if s.dates_parsed == s.dates_total {
        r.ok(format!(
            "dates: source.date_format {:?} parses all {} sampled dates",
            src.date_format, s.dates_total
        ));
    } else {
        let hint = extract::DateHint {
            configured: src.date_format.clone(),
            detected: s.date_detection.clone(),
        };
        let line = format!(
            "dates: {} of {} sampled dates parse; {hint}",
            s.dates_parsed, s.dates_total
        );
        // Most dates parse: the rest are rejected rows, not a wrong format.
        if s.dates_parsed * 2 > s.dates_total
            && s.date_detection
                .as_ref()
                .is_none_or(|d| d.parsed <= s.dates_parsed)
        {
            r.warn(line);
        } else {
            r.error(line);
        }
    }
    if s.wrong_width > 0 {
        r.warn(format!(
            "rows: {} of the sampled rows have more or fewer fields than the header (they are rejected); \
             is source.delimiter right?",
            s.wrong_width
        ));
    }
    if s.empty_fields > 0 {
        r.warn(format!(
            "rows: {} of the sampled rows lack a borrower id, title or date (they are rejected)",
            s.empty_fields
        ));
    }
    if s.future_dates > 0 {
        r.warn(format!(
            "dates: {} of the sampled dates are after today ({}) and are rejected; is the \
             clock right, or source.time_zone?",
            s.future_dates, today
        ));
    }
    if s.ids_as_titles > 0 {
        r.warn(format!(
            "ids: {} borrower ids of the sample are also title ids; the publish check will \
             publish them as titles only (not a leak) and note it on every export; fix: map a \
             prefixed borrower column (e.g. 'card:' || borrowernumber in a query, as the ILS \
             presets do; docs/configuration.md)",
            s.ids_as_titles
        ));
    } else {
        r.ok("ids: no borrower id of the sample is also a title id");
    }
    let shape = (s.rows > 0).then(|| {
        let rows = s.rows as f64;
        (
            s.distinct_borrowers as f64 / rows,
            s.distinct_titles as f64 / rows,
        )
    });
    estimate(
        r,
        s.estimated_rows(),
        if s.whole_file { shape } else { None },
    );
}

/// How a database source would be read: no query runs, only a TCP
/// connection to the server with a short timeout.
fn check_database(r: &mut Report, p: &Pipeline) {
    let s = &p.source;
    let host = s.host.as_deref().unwrap_or_default();
    let port = s.port.unwrap_or(match s.format {
        Format::Mysql => 3306,
        _ => 5432,
    });
    r.ok(format!(
        "input: {} query on {host}:{port}, database {:?}, user {:?}, tls {}; check does not run the query",
        format_name(s.format),
        s.database.as_deref().unwrap_or_default(),
        s.user.as_deref().unwrap_or_default(),
        if s.tls == pipeline::Tls::Disable {
            "off"
        } else {
            "required"
        }
    ));
    if let Some(var) = &s.password_env {
        if std::env::var_os(var).is_some() {
            r.ok(format!(
                "database password: environment variable {var} is set"
            ));
        } else {
            r.error(format!(
                "database password: environment variable {var} is not set; fix: set it in the cron job or systemd unit"
            ));
        }
    }
    if let Some(f) = &s.password_file {
        match std::fs::metadata(f) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => r.error(format!(
                "database password file {}: readable by group or others; fix: chmod 600 {}",
                f.display(),
                f.display()
            )),
            Ok(_) => r.ok(format!(
                "database password file {}: owner-only",
                f.display()
            )),
            Err(e) => r.error(format!("database password file {}: {e}", f.display())),
        }
    }
    use std::net::ToSocketAddrs as _;
    let addrs: Vec<_> = match (host, port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            r.error(format!(
                "database server {host}:{port}: cannot resolve the name ({e}); fix: check source.host"
            ));
            return;
        }
    };
    let reached = addrs
        .iter()
        .any(|a| std::net::TcpStream::connect_timeout(a, Duration::from_secs(3)).is_ok());
    if reached {
        r.ok(format!(
            "database server {host}:{port}: accepts connections (login and query not tried)"
        ));
    } else {
        r.error(format!(
            "database server {host}:{port}: no connection within 3 s; fix: check source.host, source.port and the firewall"
        ));
    }
    r.ok("estimate: the size of a query's result is not known before it runs");
}

/// Bytes as B, KiB, MiB or GiB with one decimal.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The run estimate line. `shape` is (borrowers, titles) per loan when the
/// sample is the whole file; otherwise the benchmark inputs' shape.
fn estimate(r: &mut Report, loans: u64, shape: Option<(f64, f64)>) {
    let e = Estimate::for_loans(loans, shape);
    let time = if e.seconds.1 < 2.0 {
        "under 2 s".to_owned()
    } else {
        format!("about {:.0}-{:.0} s", e.seconds.0, e.seconds.1)
    };
    r.ok(format!(
        "estimate: about {loans} loans; run takes {time} on 2 cores and peaks near {} \
         (docs/design.md, \"Estimating a run\")",
        human_bytes(e.peak_bytes)
    ));
}

/// Run time and peak memory of `run` from the number of loans: the
/// formulas of docs/design.md ("Peak memory of run", "Estimating a run"),
/// kept here only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Estimate {
    /// Peak resident memory in bytes.
    pub peak_bytes: u64,
    /// Wall time in seconds on 2 cores, low and high.
    pub seconds: (f64, f64),
}

/// Distinct borrowers per loan when the sample cannot tell (the benchmark
/// inputs: 39k borrowers per 0.98M loans).
const BORROWERS_PER_LOAN: f64 = 1.0 / 25.0;
/// Distinct titles per loan when the sample cannot tell (25k per 0.98M).
const TITLES_PER_LOAN: f64 = 1.0 / 40.0;

impl Estimate {
    /// The peak of 31L + 150D + 80T + 190 MiB bytes.
    pub fn peak(loans: u64, borrowers: u64, titles: u64) -> u64 {
        31 * loans + 150 * borrowers + 80 * titles + (190 << 20)
    }

    /// Wall seconds of `run` on 2 cores: 0.45 to 0.8 s per million loans,
    /// plus 0.2 s.
    pub fn seconds(loans: u64) -> (f64, f64) {
        let m = loans as f64 / 1e6;
        (0.2 + 0.45 * m, 0.2 + 0.8 * m)
    }

    /// The estimate for `loans`, with borrowers and titles per loan from
    /// `shape` or the benchmark inputs.
    pub fn for_loans(loans: u64, shape: Option<(f64, f64)>) -> Estimate {
        let (b, t) = shape.unwrap_or((BORROWERS_PER_LOAN, TITLES_PER_LOAN));
        let l = loans as f64;
        Estimate {
            peak_bytes: Self::peak(loans, (l * b) as u64, (l * t) as u64),
            seconds: Self::seconds(loans),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DESIGN: &str = include_str!("../../../../docs/design.md");

    const MIB: f64 = (1u64 << 20) as f64;

    #[test]
    fn the_peak_formula_gives_the_figures_of_the_design_document() {
        assert!(DESIGN.contains("**31L + 150D + 80T + 190 MiB**"));
        // (L, D, T) of the measured runs, and the formula's figure the
        // document gives for each.
        let mib = |l, d, t| (Estimate::peak(l, d, t) as f64 / MIB).round();
        assert_eq!(mib(995_000, 39_000, 25_000), 227.0);
        assert!(DESIGN.contains("1M loans 183 MiB\n(formula 227 MiB)"));
        assert_eq!(mib(9_930_000, 391_000, 250_000), 559.0);
        assert!(DESIGN.contains("10M 531-572 MiB (formula 559 MiB)"));
        assert_eq!(mib(99_554_918, 3_913_472, 1_999_625), 3846.0);
        assert!(DESIGN.contains("(formula 3,846 MiB)"));
    }

    #[test]
    fn the_time_formula_brackets_the_measured_runs_of_the_design_document() {
        assert!(DESIGN.contains("0.45 to 0.8 s per million loans, plus 0.2 s"));
        for (loans, measured) in [(1_000_000, 0.45), (10_000_000, 4.38), (100_000_000, 76.6)] {
            let (lo, hi) = Estimate::seconds(loans);
            assert!(
                lo * 0.5 <= measured && measured <= hi * 1.1,
                "{loans}: {lo}-{hi} vs {measured}"
            );
        }
        // Without a shape, the benchmark's borrowers and titles per loan.
        let e = Estimate::for_loans(980_000, None);
        assert_eq!((e.peak_bytes as f64 / MIB).round(), 226.0);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(141 << 20), "141.0 MiB");
    }
}
