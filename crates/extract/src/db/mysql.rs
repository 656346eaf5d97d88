//! MariaDB and MySQL sources (Koha) through the `mysql` client, TLS by
//! rustls.
//!
//! The query runs in a `START TRANSACTION READ ONLY` over the text
//! protocol, whose result the client reads from the socket row by row as it
//! is iterated (unbuffered), so memory does not grow with the result. Every
//! value arrives as text; `DATE`, `DATETIME` and `TIMESTAMP` columns are read
//! as ISO dates whatever `date_format` says, and the session time zone is
//! UTC, so a `TIMESTAMP` gives its UTC day (a `DATETIME` has no zone and
//! gives its own day).

use std::time::Duration;

use mysql::consts::ColumnType;
use mysql::prelude::Queryable;
use mysql::{AccessMode, Conn, OptsBuilder, SslOpts, TxOpts, Value};

use crate::date::DateParser;
use crate::db::{Dialect, Settings, add_work, check_query, find_columns};
use crate::records::{LoanDate, RecordSink};
use crate::works::Mapper;
use crate::{ExtractError, ExtractInput};

/// MariaDB's and MySQL's usual port.
const DEFAULT_PORT: u16 = 3306;

/// A connection error or a server error, with only what may be shown.
fn message(e: &mysql::Error) -> String {
    match e {
        mysql::Error::MySqlError(server) => super::server_message(&server.state, &server.message),
        // These two hold a value or a row, which their `Display` prints.
        mysql::Error::FromValueError(_) | mysql::Error::FromRowError(_) => {
            "a value could not be converted".to_owned()
        }
        other => other.to_string(),
    }
}

/// Connects with the settings, TLS as configured, session time zone UTC.
fn connect(settings: &mut Settings<'_>) -> Result<Conn, ExtractError> {
    // Taken out of the settings so that it is wiped as soon as the
    // connection is made.
    let password = settings.password.take();
    let mut opts = OptsBuilder::new()
        .ip_or_hostname(Some(settings.host))
        .tcp_port(settings.port)
        .db_name(Some(settings.database))
        .user(Some(settings.user))
        .prefer_socket(false)
        .tcp_connect_timeout(Some(Duration::from_secs(30)))
        .init(vec!["SET time_zone = '+00:00'"]);
    if let Some(password) = &password {
        // The client keeps this copy until the connection closes; its memory
        // is not wiped (see docs/operations.md).
        opts = opts.pass(Some(password.as_str()));
    }
    if settings.tls != pipeline::Tls::Disable {
        let ssl = SslOpts::default()
            .with_root_cert_path(settings.tls_ca_file.map(std::path::Path::to_path_buf));
        opts = opts.ssl_opts(Some(ssl));
    }
    Conn::new(opts).map_err(|e| settings.error(format!("connecting: {}", message(&e))))
}

/// Whether a column's text values are dates in ISO form.
fn is_date_type(t: ColumnType) -> bool {
    matches!(
        t,
        ColumnType::MYSQL_TYPE_DATE
            | ColumnType::MYSQL_TYPE_NEWDATE
            | ColumnType::MYSQL_TYPE_DATETIME
            | ColumnType::MYSQL_TYPE_DATETIME2
            | ColumnType::MYSQL_TYPE_TIMESTAMP
            | ColumnType::MYSQL_TYPE_TIMESTAMP2
    )
}

/// A text-protocol value's bytes; `None` for `NULL` and `Err` for a binary
/// value (which the text protocol never sends).
fn bytes(value: Option<&Value>) -> Result<Option<&[u8]>, ()> {
    match value {
        None | Some(Value::NULL) => Ok(None),
        Some(Value::Bytes(b)) => Ok(Some(b)),
        Some(_) => Err(()),
    }
}

/// Runs the `[source]` query of `input` and streams its rows into a sink.
pub(crate) fn read(input: &ExtractInput<'_>) -> Result<RecordSink, ExtractError> {
    let source = input.source;
    let mut settings = Settings::new(source, "mysql", DEFAULT_PORT)?;
    if input.input.is_some() {
        return Err(settings.error("--input names a file, but this pipeline reads a database"));
    }
    let query = source.query.as_deref().unwrap_or("");
    check_query(query, Dialect::Mysql).map_err(|m| settings.error(m))?;
    let mut conn = connect(&mut settings)?;
    let fail = |what: &str, e: mysql::Error| settings.error(format!("{what}: {}", message(&e)));
    let mut tx = conn
        .start_transaction(TxOpts::default().set_access_mode(Some(AccessMode::ReadOnly)))
        .map_err(|e| fail("starting a read-only transaction", e))?;
    let mut sink = RecordSink::new(
        settings.label.clone().into(),
        DateParser::new(&source.date_format, source.time_zone()),
        input.today,
    );
    {
        let mut result = tx
            .query_iter(query)
            .map_err(|e| fail("running the query", e))?;
        let columns = result.columns();
        let columns = columns.as_ref();
        let names: Vec<String> = columns.iter().map(|c| c.name_str().into_owned()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let c = &source.columns;
        let at = find_columns(
            &names,
            [&c.borrower_id, &c.title_id, &c.loan_date],
            &settings,
        )?;
        let typed_date = columns
            .get(at[2])
            .is_some_and(|col| is_date_type(col.column_type()));
        // The session runs in UTC, so text timestamps are UTC instants.
        let iso = DateParser::new("iso", jiff::tz::TimeZone::UTC);
        for row in result.by_ref() {
            let row = row.map_err(|e| fail("reading rows", e))?;
            if sink.full() {
                return Err(
                    settings.error(format!("more than {} rows", crate::records::MAX_RECORDS))
                );
            }
            let record = sink.records() + 1;
            let fields = at.map(|i| bytes(row.as_ref(i)));
            let [Ok(borrower), Ok(title), Ok(date)] = fields else {
                sink.reject(record, crate::RejectReason::WrongFieldType);
                continue;
            };
            let date = match date {
                None => LoanDate::Missing,
                Some(text) if typed_date => std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| iso.parse(t.trim()))
                    .map_or(LoanDate::Invalid, LoanDate::Day),
                Some(text) => LoanDate::Text(text),
            };
            sink.push(record, borrower.unwrap_or(b""), title.unwrap_or(b""), date);
        }
    }
    tx.commit().map_err(|e| fail("ending the transaction", e))?;
    Ok(sink)
}

/// Runs the `[works]` query and maps the loans' titles to works.
pub(crate) fn works(
    source: &pipeline::Source,
    works: &pipeline::Works,
    title_ids: &[String],
    work_ids: &mut [String],
) -> Result<(), ExtractError> {
    let mut settings = Settings::new(source, "mysql", DEFAULT_PORT)?;
    let query = works.query.as_deref().unwrap_or("");
    check_query(query, Dialect::Mysql).map_err(|m| settings.error(format!("works query: {m}")))?;
    let mut conn = connect(&mut settings)?;
    let fail = |what: &str, e: mysql::Error| {
        settings.error(format!("works query: {what}: {}", message(&e)))
    };
    let mut tx = conn
        .start_transaction(TxOpts::default().set_access_mode(Some(AccessMode::ReadOnly)))
        .map_err(|e| fail("starting a read-only transaction", e))?;
    {
        let mut result = tx.query_iter(query).map_err(|e| fail("running", e))?;
        let columns = result.columns();
        let names: Vec<String> = columns
            .as_ref()
            .iter()
            .map(|c| c.name_str().into_owned())
            .collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let at = super::find_works_columns(&names, works, &settings)?;
        let mut mapper = Mapper::new(title_ids, work_ids);
        let mut row_no = 0u64;
        for row in result.by_ref() {
            let row = row.map_err(|e| fail("reading rows", e))?;
            row_no += 1;
            let [title, work] = at.map(|i| bytes(row.as_ref(i)).ok().flatten());
            add_work(&mut mapper, &settings, row_no, title, work)?;
        }
    }
    tx.commit().map_err(|e| fail("ending the transaction", e))?;
    Ok(())
}
