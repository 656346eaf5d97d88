//! PostgreSQL sources (Evergreen, FOLIO) through the synchronous
//! `postgres` client, TLS by rustls.
//!
//! The query is prepared first, so a missing column or an unusable column
//! type is reported before any row is read; it then runs in a `READ ONLY`
//! transaction through a portal fetched [`BATCH_ROWS`] rows at a time, so
//! memory does not grow with the result. Values are read in the binary
//! format by [`Raw`], which accepts every type without converting it, so no
//! conversion error can quote a value.

use std::time::Duration;

use jiff::civil::Date;
use postgres::types::{FromSql, Type};
use postgres::{Client, Config, NoTls};
use zeroize::Zeroizing;

use crate::date::DateParser;
use crate::db::{BATCH_ROWS, Dialect, Settings, add_work, check_query, find_columns};
use crate::records::{LoanDate, RecordSink};
use crate::works::Mapper;
use crate::{ExtractError, ExtractInput};

/// PostgreSQL's usual port.
const DEFAULT_PORT: u16 = 5432;

/// Microseconds per day.
const DAY_MICROS: i64 = 86_400_000_000;

/// A field as the server sent it: binary bytes, `None` for `NULL`.
struct Raw<'a>(Option<&'a [u8]>);

impl<'a> FromSql<'a> for Raw<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(Some(raw)))
    }

    fn from_sql_null(_: &Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// How a result column's binary values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// UTF-8 text (`text`, `varchar`, `char`, `name`, `citext`).
    Text,
    /// A big-endian integer of 2, 4 or 8 bytes, read as its decimal text.
    Int,
    /// 16 bytes, read as the hyphenated lower-case text form.
    Uuid,
    /// Days since 2000-01-01 (`date`).
    Date,
    /// Microseconds since 2000-01-01 00:00 UTC (`timestamp`, `timestamptz`).
    Timestamp,
}

impl Kind {
    fn of(ty: &Type) -> Option<Kind> {
        Some(match *ty {
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => Kind::Text,
            Type::INT2 | Type::INT4 | Type::INT8 => Kind::Int,
            Type::UUID => Kind::Uuid,
            Type::DATE => Kind::Date,
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Kind::Timestamp,
            _ if ty.name() == "citext" => Kind::Text,
            _ => return None,
        })
    }
}

/// Writes the text form of an id field to `out`; `None` if the bytes do
/// not fit the kind (the server never sends such, but the input decides).
fn id_text<'a>(kind: Kind, raw: &'a [u8], out: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    use std::io::Write as _;
    out.clear();
    match kind {
        Kind::Text => return Some(raw),
        Kind::Int => {
            let n = match raw.len() {
                2 => i64::from(i16::from_be_bytes(raw.try_into().ok()?)),
                4 => i64::from(i32::from_be_bytes(raw.try_into().ok()?)),
                8 => i64::from_be_bytes(raw.try_into().ok()?),
                _ => return None,
            };
            write!(out, "{n}").ok()?;
        }
        Kind::Uuid => {
            let b: &[u8; 16] = raw.try_into().ok()?;
            for (i, byte) in b.iter().enumerate() {
                if matches!(i, 4 | 6 | 8 | 10) {
                    out.push(b'-');
                }
                write!(out, "{byte:02x}").ok()?;
            }
        }
        Kind::Date | Kind::Timestamp => return None,
    }
    Some(out)
}

/// The day of a binary `date` or `timestamp[tz]` (UTC); `None` for
/// infinity and days outside jiff's range.
fn day_of(kind: Kind, raw: &[u8]) -> Option<Date> {
    let days = match kind {
        Kind::Date => i64::from(i32::from_be_bytes(raw.try_into().ok()?)),
        Kind::Timestamp => i64::from_be_bytes(raw.try_into().ok()?).div_euclid(DAY_MICROS),
        _ => return None,
    };
    if days == i64::from(i32::MAX) || days == i64::from(i32::MIN) {
        return None;
    }
    jiff::civil::date(2000, 1, 1)
        .checked_add(jiff::Span::new().try_days(days).ok()?)
        .ok()
}

/// A connection error or a server error, with only what may be shown.
fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => super::server_message(db.code().code(), db.message()),
        // The client's errors name what failed and wrap the cause (a TLS
        // verification error, an I/O error): both are worth showing.
        None => {
            let mut text = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            text
        }
    }
}

/// Connects with the settings, TLS as configured; the password is copied
/// into the client's configuration only for the handshake.
fn connect(settings: &mut Settings<'_>) -> Result<Client, ExtractError> {
    // Taken out of the settings so that it is wiped as soon as the
    // connection is made.
    let password = settings.password.take();
    let mut config = Config::new();
    config
        .host(settings.host)
        .port(settings.port)
        .dbname(settings.database)
        .user(settings.user)
        .application_name("alsoborrowed")
        .connect_timeout(Duration::from_secs(30));
    if let Some(password) = &password {
        config.password(password.as_bytes());
    }
    let client = match settings.tls {
        pipeline::Tls::Disable => {
            config.ssl_mode(postgres::config::SslMode::Disable);
            config.connect(NoTls)
        }
        _ => {
            config.ssl_mode(postgres::config::SslMode::Require);
            let tls = super::tls_config(settings, super::root_store(settings)?)?;
            config.connect(tokio_postgres_rustls::MakeRustlsConnect::new(tls))
        }
    };
    // `Config` keeps its own copy of the password: dropping it now is as
    // soon as it can go (its memory is not wiped; see docs/operations.md).
    drop(config);
    client.map_err(|e| settings.error(format!("connecting: {}", message(&e))))
}

/// Runs the `[source]` query of `input` and streams its rows into a sink.
pub(crate) fn read(input: &ExtractInput<'_>) -> Result<RecordSink, ExtractError> {
    let source = input.source;
    let mut settings = Settings::new(source, "postgres", DEFAULT_PORT)?;
    if input.input.is_some() {
        return Err(settings.error("--input names a file, but this pipeline reads a database"));
    }
    let query = source.query.as_deref().unwrap_or("");
    check_query(query, Dialect::Postgres).map_err(|m| settings.error(m))?;
    let mut client = connect(&mut settings)?;
    let fail = |what: &str, e: postgres::Error| settings.error(format!("{what}: {}", message(&e)));
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .map_err(|e| fail("starting a read-only transaction", e))?;
    let statement = tx
        .prepare(query)
        .map_err(|e| fail("preparing the query", e))?;
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    let c = &source.columns;
    let at = find_columns(
        &names,
        [&c.borrower_id, &c.title_id, &c.loan_date],
        &settings,
    )?;
    let kinds = at.map(|i| statement.columns().get(i).and_then(|c| Kind::of(c.type_())));
    let bad_type = |i: usize, which: &str| {
        let ty = statement.columns().get(i).map_or("?", |c| c.type_().name());
        settings.error(format!(
            "query column {which} has type {ty}; cast it to {} in the query",
            if which == c.loan_date {
                "date, timestamp or text"
            } else {
                "text"
            }
        ))
    };
    let [Some(borrower_kind), Some(title_kind), Some(date_kind)] = kinds else {
        let i = kinds.iter().position(Option::is_none).unwrap_or(0);
        let which = [&c.borrower_id, &c.title_id, &c.loan_date][i];
        return Err(bad_type(at[i], which));
    };
    for (kind, i, which) in [
        (borrower_kind, at[0], &c.borrower_id),
        (title_kind, at[1], &c.title_id),
    ] {
        if matches!(kind, Kind::Date | Kind::Timestamp) {
            return Err(bad_type(i, which));
        }
    }
    if matches!(date_kind, Kind::Int | Kind::Uuid) {
        return Err(bad_type(at[2], &c.loan_date));
    }

    let portal = tx
        .bind(&statement, &[])
        .map_err(|e| fail("running the query", e))?;
    let mut sink = RecordSink::new(
        settings.label.clone().into(),
        DateParser::new(&source.date_format, source.time_zone()),
        input.today,
    );
    let mut borrower_text = Zeroizing::new(Vec::new());
    let mut title_text = Vec::new();
    loop {
        let rows = tx
            .query_portal(&portal, BATCH_ROWS)
            .map_err(|e| fail("reading rows", e))?;
        for row in &rows {
            if sink.full() {
                return Err(
                    settings.error(format!("more than {} rows", crate::records::MAX_RECORDS))
                );
            }
            let record = sink.records() + 1;
            let field = |i: usize| row.try_get::<_, Raw<'_>>(i).ok().and_then(|r| r.0);
            let borrower = field(at[0]).map_or(Some(&b""[..]), |raw| {
                id_text(borrower_kind, raw, &mut borrower_text)
            });
            let title = field(at[1]).map_or(Some(&b""[..]), |raw| {
                id_text(title_kind, raw, &mut title_text)
            });
            let date = match (date_kind, field(at[2])) {
                (_, None) => Some(LoanDate::Missing),
                (Kind::Text, Some(raw)) => Some(LoanDate::Text(raw)),
                (kind, Some(raw)) => {
                    Some(day_of(kind, raw).map_or(LoanDate::Invalid, LoanDate::Day))
                }
            };
            match (borrower, title, date) {
                (Some(b), Some(t), Some(d)) => sink.push(record, b, t, d),
                _ => sink.reject(record, crate::RejectReason::WrongFieldType),
            }
        }
        if rows.len() < BATCH_ROWS as usize {
            break;
        }
    }
    drop(portal);
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
    let mut settings = Settings::new(source, "postgres", DEFAULT_PORT)?;
    let query = works.query.as_deref().unwrap_or("");
    check_query(query, Dialect::Postgres)
        .map_err(|m| settings.error(format!("works query: {m}")))?;
    let mut client = connect(&mut settings)?;
    let fail = |what: &str, e: postgres::Error| {
        settings.error(format!("works query: {what}: {}", message(&e)))
    };
    let mut tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .map_err(|e| fail("starting a read-only transaction", e))?;
    let statement = tx.prepare(query).map_err(|e| fail("preparing", e))?;
    let names: Vec<&str> = statement.columns().iter().map(|c| c.name()).collect();
    let at = super::find_works_columns(&names, works, &settings)?;
    let kinds = at.map(|i| statement.columns().get(i).and_then(|c| Kind::of(c.type_())));
    let [Some(title_kind), Some(work_kind)] = kinds else {
        return Err(settings.error("works query: cast the title and work columns to text"));
    };
    let portal = tx.bind(&statement, &[]).map_err(|e| fail("running", e))?;
    let mut mapper = Mapper::new(title_ids, work_ids);
    let (mut title_text, mut work_text) = (Vec::new(), Vec::new());
    let mut row_no = 0u64;
    loop {
        let rows = tx
            .query_portal(&portal, BATCH_ROWS)
            .map_err(|e| fail("reading rows", e))?;
        for row in &rows {
            row_no += 1;
            let field = |i: usize| row.try_get::<_, Raw<'_>>(i).ok().and_then(|r| r.0);
            let title = field(at[0]).and_then(|raw| id_text(title_kind, raw, &mut title_text));
            let work = field(at[1]).and_then(|raw| id_text(work_kind, raw, &mut work_text));
            add_work(&mut mapper, &settings, row_no, title, work)?;
        }
        if rows.len() < BATCH_ROWS as usize {
            break;
        }
    }
    drop(portal);
    tx.commit().map_err(|e| fail("ending the transaction", e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn binary_values_read_as_text_and_days() {
        let mut out = Vec::new();
        assert_eq!(
            id_text(Kind::Int, &42i32.to_be_bytes(), &mut out),
            Some(&b"42"[..])
        );
        assert_eq!(
            id_text(Kind::Int, &(-7i64).to_be_bytes(), &mut out),
            Some(&b"-7"[..])
        );
        assert_eq!(id_text(Kind::Int, &[1, 2, 3], &mut out), None);
        let uuid = [
            0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab,
            0xcd, 0xef,
        ];
        assert_eq!(
            id_text(Kind::Uuid, &uuid, &mut out),
            Some(&b"12345678-9abc-def0-0123-456789abcdef"[..])
        );
        assert_eq!(
            day_of(Kind::Date, &0i32.to_be_bytes()),
            Some(date(2000, 1, 1))
        );
        assert_eq!(
            day_of(Kind::Date, &(-1i32).to_be_bytes()),
            Some(date(1999, 12, 31))
        );
        assert_eq!(day_of(Kind::Date, &i32::MAX.to_be_bytes()), None);
        let t = (24 * 3600 * 1_000_000i64 * 366 - 1).to_be_bytes();
        assert_eq!(day_of(Kind::Timestamp, &t), Some(date(2000, 12, 31)));
        assert_eq!(
            day_of(Kind::Timestamp, &(-1i64).to_be_bytes()),
            Some(date(1999, 12, 31))
        );
        assert_eq!(day_of(Kind::Timestamp, &i64::MAX.to_be_bytes()), None);
    }
}
