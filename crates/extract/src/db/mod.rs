//! Circulation databases as sources: settings, the query check, the
//! password, TLS roots and the error policy shared by PostgreSQL and
//! MariaDB/MySQL.
//!
//! A database source runs one read-only `SELECT` (or `WITH`) inside a
//! `READ ONLY` transaction and streams the rows into the record sink; the
//! result columns are found by the names of `[source.columns]`. The password
//! comes from an environment variable or an owner-only file, is held in
//! wiped memory and is never part of a message. Server error messages can
//! quote data (a failed cast quotes the value), so only those of classes
//! that describe the connection, the login or the query text are shown.

#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
pub(crate) mod postgres;

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::ExtractError;
use crate::works::Mapper;

/// Rows fetched from the server per round trip: bounds memory whatever the
/// size of the result.
pub(crate) const BATCH_ROWS: i32 = 10_000;

/// Most bytes read from a password file.
const PASSWORD_FILE_LIMIT: u64 = 4096;

/// Words that a loans query never needs and that could make it write or
/// lock: refused anywhere in the text (a read-only transaction and a
/// read-only user are the other two layers).
const FORBIDDEN_WORDS: [&str; 10] = [
    "INTO", "INSERT", "UPDATE", "DELETE", "MERGE", "LOCK", "SHARE", "OUTFILE", "DUMPFILE", "CALL",
];

/// SQLSTATE classes whose server messages name only the connection, the
/// login, the database or the query text (never a row's value), so they are
/// shown: connection, feature, authorization, transaction state, catalog,
/// schema, syntax and access, resources, limits, operator intervention.
const SHOWN_CLASSES: [&str; 10] = ["08", "0A", "25", "28", "3D", "3F", "42", "53", "54", "57"];

/// Which SQL dialect a query is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// PostgreSQL.
    Postgres,
    /// MariaDB and MySQL (`#` comments, executable `/*! */` comments).
    Mysql,
}

/// The connection settings of a database `[source]`, checked.
pub(crate) struct Settings<'a> {
    /// Server host.
    pub(crate) host: &'a str,
    /// Server port.
    pub(crate) port: u16,
    /// Database name.
    pub(crate) database: &'a str,
    /// User name.
    pub(crate) user: &'a str,
    /// The password, if one is configured.
    pub(crate) password: Option<Zeroizing<String>>,
    /// Whether TLS is required.
    pub(crate) tls: pipeline::Tls,
    /// CA file for the server's certificate.
    pub(crate) tls_ca_file: Option<&'a Path>,
    /// How the database is named in reports and errors.
    pub(crate) label: String,
}

impl<'a> Settings<'a> {
    /// Reads and checks the settings of `source`, including the password.
    pub(crate) fn new(
        source: &'a pipeline::Source,
        scheme: &str,
        default_port: u16,
    ) -> Result<Settings<'a>, ExtractError> {
        let host = source.host.as_deref().unwrap_or("");
        let port = source.port.unwrap_or(default_port);
        let database = source.database.as_deref().unwrap_or("");
        let label = format!("{scheme}://{host}:{port}/{database}");
        let password = password(source, &label)?;
        Ok(Settings {
            host,
            port,
            database,
            user: source.user.as_deref().unwrap_or(""),
            password,
            tls: source.tls,
            tls_ca_file: source.tls_ca_file.as_deref(),
            label,
        })
    }

    /// An error about this database.
    pub(crate) fn error(&self, message: impl Into<String>) -> ExtractError {
        ExtractError::Database {
            source_name: self.label.clone(),
            message: message.into(),
        }
    }
}

/// The password of `source`, from its environment variable or its
/// owner-only file, with one trailing line break removed.
fn password(
    source: &pipeline::Source,
    label: &str,
) -> Result<Option<Zeroizing<String>>, ExtractError> {
    let fail = |message: String| ExtractError::Database {
        source_name: label.to_owned(),
        message,
    };
    if let Some(name) = &source.password_env {
        return match std::env::var(name) {
            Ok(value) => Ok(Some(Zeroizing::new(value))),
            Err(std::env::VarError::NotPresent) => {
                Err(fail(format!("the password variable {name} is not set")))
            }
            Err(std::env::VarError::NotUnicode(_)) => Err(fail(format!(
                "the password variable {name} is not valid UTF-8"
            ))),
        };
    }
    let Some(path) = &source.password_file else {
        return Ok(None);
    };
    let shown = path.display();
    let io = |e: std::io::Error| fail(format!("reading password file {shown}: {e}"));
    let file = std::fs::File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(fail(format!(
            "password file {shown} is readable by group or others (mode {mode:04o}); run chmod 600 {shown}"
        )));
    }
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(PASSWORD_FILE_LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > PASSWORD_FILE_LIMIT {
        return Err(fail(format!(
            "password file {shown} is longer than {PASSWORD_FILE_LIMIT} bytes"
        )));
    }
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| fail(format!("password file {shown} is not valid UTF-8")))?;
    let text = text.strip_suffix('\n').unwrap_or(text);
    let text = text.strip_suffix('\r').unwrap_or(text);
    if text.is_empty() {
        return Err(fail(format!("password file {shown} is empty")));
    }
    Ok(Some(Zeroizing::new(text.to_owned())))
}

/// Checks that `query` is one statement that starts with `SELECT` or
/// `WITH` and has none of [`FORBIDDEN_WORDS`]; the reason if not.
///
/// A `;` is accepted only at the very end: without a tokenizer for every
/// string syntax of two dialects, refusing it everywhere else is the only
/// certain way to refuse a second statement, and a loans query needs none.
pub(crate) fn check_query(query: &str, dialect: Dialect) -> Result<(), String> {
    let body = query.trim_end();
    let body = body.strip_suffix(';').unwrap_or(body);
    if body.contains(';') {
        return Err("the query must be a single statement (no ';' except at the end)".into());
    }
    if dialect == Dialect::Mysql && (body.contains("/*!") || body.contains("/*M!")) {
        return Err("the query must not contain executable comments (/*! ... */)".into());
    }
    let first = first_word(body, dialect);
    if !first.eq_ignore_ascii_case("select") && !first.eq_ignore_ascii_case("with") {
        return Err("the query must start with SELECT or WITH".into());
    }
    let words = body
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty());
    for word in words {
        if let Some(bad) = FORBIDDEN_WORDS
            .iter()
            .find(|bad| word.eq_ignore_ascii_case(bad))
        {
            return Err(format!(
                "the query must not contain the word {bad}: it only reads loans"
            ));
        }
    }
    Ok(())
}

/// The first word after leading blanks, comments and opening parentheses.
fn first_word(mut text: &str, dialect: Dialect) -> &str {
    loop {
        text = text.trim_start().trim_start_matches('(');
        let line_comment =
            text.starts_with("--") || (dialect == Dialect::Mysql && text.starts_with('#'));
        if line_comment {
            text = text.find('\n').map_or("", |i| &text[i + 1..]);
        } else if let Some(rest) = text.strip_prefix("/*") {
            text = rest.find("*/").map_or("", |i| &rest[i + 2..]);
        } else if text.starts_with(|c: char| c.is_whitespace() || c == '(') {
            continue;
        } else {
            let end = text
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(text.len());
            return &text[..end];
        }
    }
}

/// A server's error for a message: the server's own words when its SQLSTATE
/// class is one of [`SHOWN_CLASSES`], else only the code.
pub(crate) fn server_message(state: &str, message: &str) -> String {
    let class = state.get(..2).unwrap_or("");
    if SHOWN_CLASSES.contains(&class) {
        format!("server error {state}: {message}")
    } else {
        format!(
            "server error {state} (its message is not shown: errors of this class can quote data)"
        )
    }
}

/// Where each configured column is in a result with these column names.
pub(crate) fn find_columns(
    names: &[&str],
    wanted: [&str; 3],
    settings: &Settings<'_>,
) -> Result<[usize; 3], ExtractError> {
    find(names, &wanted).map_err(|missing| {
        settings.error(format!(
            "the query result lacks column(s) {}; it has {}",
            missing.join(", "),
            names.join(", ")
        ))
    })
}

/// Where the two `[works]` columns are in a result with these names.
pub(crate) fn find_works_columns(
    names: &[&str],
    works: &pipeline::Works,
    settings: &Settings<'_>,
) -> Result<[usize; 2], ExtractError> {
    find(
        names,
        &[works.title_column.as_str(), works.work_column.as_str()],
    )
    .map_err(|missing| {
        settings.error(format!(
            "the works query result lacks column(s) {}; it has {}",
            missing.join(", "),
            names.join(", ")
        ))
    })
}

fn find<const N: usize>(names: &[&str], wanted: &[&str; N]) -> Result<[usize; N], Vec<String>> {
    let found = wanted.map(|w| names.iter().position(|n| n.eq_ignore_ascii_case(w.trim())));
    if found.iter().all(Option::is_some) {
        return Ok(found.map(|f| f.unwrap_or(0)));
    }
    Err(wanted
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(w, _)| (*w).to_owned())
        .collect())
}

/// Adds one `[works]` row (title, work; `None` for SQL `NULL`) to `mapper`.
pub(crate) fn add_work(
    mapper: &mut Mapper<'_>,
    settings: &Settings<'_>,
    row: u64,
    title: Option<&[u8]>,
    work: Option<&[u8]>,
) -> Result<(), ExtractError> {
    let fail = |reason| ExtractError::Works {
        path: PathBuf::from(&settings.label),
        row,
        reason,
    };
    fn text(v: Option<&[u8]>) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(v.unwrap_or(b"")).map(str::trim)
    }
    let (Ok(title), Ok(work)) = (text(title), text(work)) else {
        return Err(fail(crate::WorksProblem::InvalidUtf8));
    };
    mapper.add(row, title, work).map_err(fail)
}

/// The root certificates a TLS connection trusts: those of `tls_ca_file`,
/// else the Mozilla set.
pub(crate) fn root_store(settings: &Settings<'_>) -> Result<rustls::RootCertStore, ExtractError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let Some(path) = settings.tls_ca_file else {
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        return Ok(roots);
    };
    let shown = path.display();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| settings.error(format!("reading tls_ca_file {shown}: {e}")))?;
    if certs.is_empty() {
        return Err(settings.error(format!("tls_ca_file {shown} holds no certificate")));
    }
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| settings.error(format!("tls_ca_file {shown}: {e}")))?;
    }
    Ok(roots)
}

/// A rustls client configuration with the ring provider, trusting `roots`.
pub(crate) fn tls_config(
    settings: &Settings<'_>,
    roots: rustls::RootCertStore,
) -> Result<rustls::ClientConfig, ExtractError> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| settings.error(format!("tls set-up: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_one_reading_statement_passes() {
        let ok = [
            "SELECT a FROM t",
            "  select a from t;  ",
            "WITH x AS (SELECT 1) SELECT * FROM x",
            "-- loans\n/* all */ (SELECT 1)",
            "SELECT 'eg-usr:' || usr AS borrower_id FROM action.circulation",
            "SELECT updated_at, intouch FROM t",
        ];
        for q in ok {
            assert_eq!(check_query(q, Dialect::Postgres), Ok(()), "{q}");
        }
        assert_eq!(check_query("# c\nSELECT 1", Dialect::Mysql), Ok(()));
        let bad = [
            ("DELETE FROM issues", "start with SELECT"),
            ("SELECT 1; DELETE FROM issues", "single statement"),
            ("SELECT ';'", "single statement"),
            ("SELECT 1 INTO OUTFILE '/tmp/x'", "word INTO"),
            ("SELECT * FROM t FOR UPDATE", "word UPDATE"),
            (
                "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
                "word DELETE",
            ),
            ("SELECT * FROM t LOCK IN SHARE MODE", "word LOCK"),
            ("", "start with SELECT"),
            ("/* SELECT */ UPDATE t SET a = 1", "start with SELECT"),
            ("selection", "start with SELECT"),
            ("# c\nSELECT 1", "start with SELECT"),
        ];
        for (q, want) in bad {
            let err = check_query(q, Dialect::Postgres).unwrap_err();
            assert!(err.contains(want), "{q}: {err}");
        }
        let err = check_query("SELECT 1 /*! , sleep(1) */", Dialect::Mysql).unwrap_err();
        assert!(err.contains("executable"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn a_second_statement_never_passes(
            a in "[ -~\n]{0,40}",
            b in "[ -~\n]{0,40}",
        ) {
            let query = format!("SELECT {a};{b}x");
            for dialect in [Dialect::Postgres, Dialect::Mysql] {
                proptest::prop_assert!(check_query(&query, dialect).is_err());
            }
        }
    }

    #[test]
    fn only_safe_server_messages_are_shown() {
        let shown = server_message("28P01", "password authentication failed for user \"ro\"");
        assert!(shown.contains("password authentication failed"), "{shown}");
        let hidden = server_message("22P02", "invalid input syntax for type integer: \"K0042\"");
        assert!(!hidden.contains("K0042"), "{hidden}");
        assert!(hidden.contains("22P02"), "{hidden}");
        assert!(!server_message("", "x 23505").contains("x 23505"));
    }
}
