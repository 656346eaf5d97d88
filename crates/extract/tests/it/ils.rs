//! The Koha, Evergreen and FOLIO presets (`pipelines/<ils>-{db,file}.toml`)
//! against data from `synth::ils`: the file presets always, the database
//! presets against the servers `.ci/databases.sh` starts. Without those
//! servers the database tests print a note and pass, except under CI (`CI`
//! set), where a missing server fails them.

use std::path::{Path, PathBuf};

use extract::{ExtractError, ExtractInput, Extraction, RejectReason, extract};
use jiff::civil::{Date, date};
use keys::SecretKey;
use pipeline::Pipeline;
use pseudonym::Pseudonymizer;
use synth::ils::{Circulation, Ils, ci_params, work_of};

const TODAY: Date = date(2026, 6, 30);

fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(
        &SecretKey::from_bytes([9; 32]),
        "my-library",
        "also-borrowed",
    )
}

/// A committed preset, parsed as `alsoborrowed` would.
fn preset(name: &str) -> Pipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../pipelines")
        .join(format!("{name}.toml"));
    Pipeline::load(&path).unwrap()
}

fn run(p: &Pipeline) -> Result<Extraction, ExtractError> {
    let input = ExtractInput {
        source: &p.source,
        works: p.works.as_ref(),
        input: None,
        today: TODAY,
    };
    extract(&input, &pseudonymizer())
}

/// Fails unless `text` holds none of the system's borrower ids, whatever
/// their case (ids are upper-cased when canonicalized).
fn assert_no_ids(c: &Circulation, ils: Ils, text: &str) {
    let text = text.to_ascii_uppercase();
    for id in c.borrower_ids(ils) {
        assert!(
            !text.contains(&id.to_ascii_uppercase()),
            "a borrower id is in: {text}"
        );
    }
}

/// Checks an extraction against what the generator put in.
fn check(c: &Circulation, ils: Ils, e: &Extraction) {
    check_merged(c, ils, e, true);
}

/// Like [`check`]; `by_title` says repeats are merged by the title the
/// generator knows (not by an item mapped to it later), so their number is
/// exactly the generator's.
fn check_merged(c: &Circulation, ils: Ils, e: &Extraction, by_title: bool) {
    let want = c.expected(ils);
    let r = &e.report;
    assert_eq!(r.rows_kept + r.duplicates, want.kept, "{r}");
    if by_title {
        assert_eq!(r.duplicates, want.repeated, "{r}");
    } else {
        assert!(r.duplicates <= want.repeated, "{r}");
    }
    assert_eq!(r.rows_read, want.kept + want.missing_borrower, "{r}");
    assert_eq!(r.distinct_borrowers, want.borrowers, "{r}");
    assert_eq!(r.distinct_titles, want.titles, "{r}");
    let missing = r
        .rejected
        .get(&RejectReason::MissingBorrowerId)
        .map_or(0, |x| x.count);
    assert_eq!(missing, want.missing_borrower, "{r}");
    assert_eq!(r.rejected.len(), usize::from(missing > 0), "{r}");
    let months: std::collections::BTreeSet<_> = e.loans.months.iter().copied().collect();
    assert_eq!(months, want.months);
    assert_eq!(r.first_month, want.months.first().copied());
    assert_eq!(r.last_month, want.months.last().copied());
    e.loans.validate().unwrap();
    assert_no_ids(c, ils, &r.to_string());
}

/// Checks that Evergreen's metarecords became the works.
fn check_works(e: &Extraction) {
    let mut grouped = 0;
    for (title, work) in e.loans.title_ids.iter().zip(&e.loans.work_ids) {
        let b: u32 = title.parse::<u32>().unwrap() - 1;
        assert_eq!(*work, (work_of(b) + 1).to_string(), "title {title}");
        grouped += usize::from(work != title);
    }
    assert!(grouped > 0, "no title was grouped with another edition");
}

fn file_preset(ils: Ils) {
    let c = Circulation::generate(&ci_params());
    let dir = tempfile::tempdir().unwrap();
    c.write(ils, dir.path()).unwrap();
    let mut p = preset(&format!("{}-file", ils.name()));
    let name = if ils == Ils::Folio {
        "loans.ndjson"
    } else {
        "loans.csv"
    };
    p.source.path = dir.path().join(name);
    if let Some(w) = &mut p.works {
        w.path = dir.path().join("works.csv");
    }
    let e = run(&p).unwrap();
    check(&c, ils, &e);
    if ils == Ils::Evergreen {
        check_works(&e);
    }
}

#[test]
fn koha_file_preset_reads_the_report_export() {
    file_preset(Ils::Koha);
}

#[test]
fn evergreen_file_preset_reads_the_copy_export_and_metarecords() {
    file_preset(Ils::Evergreen);
}

#[test]
fn folio_file_preset_reads_api_loan_records() {
    file_preset(Ils::Folio);
}

#[test]
fn folio_loan_storage_records_reach_instances_through_a_title_map() {
    let c = Circulation::generate(&ci_params());
    let dir = tempfile::tempdir().unwrap();
    c.write(Ils::Folio, dir.path()).unwrap();
    // The alternative the folio-file preset's comment describes.
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines/folio-file.toml"),
    )
    .unwrap()
    .replace("title_id = \"item.instanceId\"", "title_id = \"itemId\"")
    .replace("loans.ndjson\"", "loan-storage.ndjson\"")
    .replace(
        "[transfer]",
        "[source.titles]\npath = \"items.csv\"\n\n[transfer]",
    );
    let text = text.replace("/var/lib/alsoborrowed/export/folio-", "");
    let p = Pipeline::parse(&text, Path::new("folio.toml"), dir.path()).unwrap();
    assert!(p.source.titles.is_some());
    let e = run(&p).unwrap();
    // Repeats are merged by item here, before items are mapped to titles.
    check_merged(&c, Ils::Folio, &e, false);

    // Without the map the same records count items, not instances.
    let mut p = p;
    p.source.titles = None;
    let by_item = run(&p).unwrap();
    assert!(by_item.report.distinct_titles > e.report.distinct_titles);
}

/// Where `.ci/databases.sh` put the servers.
#[allow(dead_code)]
struct Servers {
    host: String,
    pg_port: u16,
    mysql_port: u16,
    user: String,
    password_file: PathBuf,
    ca: PathBuf,
}

/// The servers, or `None` (with a note) when they are not set up here; under
/// CI their absence is a failure.
#[allow(dead_code)]
fn servers() -> Option<Servers> {
    let var = |name: &str| std::env::var(name).ok();
    let got = (|| {
        Some(Servers {
            host: var("ALSOBORROWED_TEST_DB_HOST")?,
            pg_port: var("ALSOBORROWED_TEST_PG_PORT")?.parse().ok()?,
            mysql_port: var("ALSOBORROWED_TEST_MYSQL_PORT")?.parse().ok()?,
            user: var("ALSOBORROWED_TEST_DB_USER")?,
            password_file: var("ALSOBORROWED_TEST_DB_PASSWORD_FILE")?.into(),
            ca: var("ALSOBORROWED_TEST_DB_CA")?.into(),
        })
    })();
    if got.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the ALSOBORROWED_TEST_DB_* variables are not: run .ci/databases.sh"
        );
        eprintln!("note: no test database servers (run .ci/databases.sh); skipped");
    }
    got
}

/// A database preset pointed at the test servers.
#[allow(dead_code)]
fn db_preset(ils: Ils, s: &Servers) -> Pipeline {
    let mut p = preset(&format!("{}-db", ils.name()));
    p.source.host = Some(s.host.clone());
    p.source.port = Some(if ils == Ils::Koha {
        s.mysql_port
    } else {
        s.pg_port
    });
    p.source.database = Some(ils.name().to_owned());
    p.source.user = Some(s.user.clone());
    p.source.password_file = Some(s.password_file.clone());
    p.source.tls_ca_file = Some(s.ca.clone());
    p
}

#[allow(dead_code)]
fn db_test(ils: Ils) {
    let Some(s) = servers() else { return };
    let c = Circulation::generate(&ci_params());
    let p = db_preset(ils, &s);
    let e = run(&p).unwrap_or_else(|e| panic!("{e}"));
    check(&c, ils, &e);
    if ils == Ils::Evergreen {
        check_works(&e);
    }
}

/// The message of a failed extraction, checked to hold no secret and no id.
#[allow(dead_code)]
fn failure(ils: Ils, p: &Pipeline, s: &Servers) -> String {
    let err = run(p).expect_err("extraction should fail").to_string();
    let password = std::fs::read_to_string(&s.password_file).unwrap();
    assert!(!err.contains(password.trim()), "{err}");
    assert_no_ids(&Circulation::generate(&ci_params()), ils, &err);
    err
}

#[cfg(feature = "mysql")]
#[test]
fn koha_db_preset_reads_mariadb() {
    db_test(Ils::Koha);
}

#[cfg(feature = "mysql")]
#[test]
fn koha_statistics_table_gives_the_same_loans() {
    let Some(s) = servers() else { return };
    let mut p = db_preset(Ils::Koha, &s);
    // The alternative the koha-db preset's comment gives.
    p.source.query = Some(
        "SELECT CONCAT('koha:', x.borrowernumber) AS borrower_id, i.biblionumber AS title_id, \
         x.issuedate AS loan_date \
         FROM (SELECT borrowernumber, itemnumber, datetime AS issuedate \
               FROM statistics WHERE type = 'issue') AS x \
         JOIN items AS i ON i.itemnumber = x.itemnumber"
            .into(),
    );
    let c = Circulation::generate(&ci_params());
    check(&c, Ils::Koha, &run(&p).unwrap_or_else(|e| panic!("{e}")));
}

#[cfg(feature = "postgres")]
#[test]
fn evergreen_db_preset_reads_postgres_with_metarecords() {
    db_test(Ils::Evergreen);
}

#[cfg(feature = "postgres")]
#[test]
fn folio_db_preset_reads_jsonb_loans() {
    db_test(Ils::Folio);
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_refuses_writing_queries_and_bad_credentials_without_telling_secrets() {
    let Some(s) = servers() else { return };
    let mut p = db_preset(Ils::Evergreen, &s);
    p.source.query = Some("DELETE FROM action.circulation".into());
    let err = failure(Ils::Evergreen, &p, &s);
    assert!(err.contains("must start with SELECT"), "{err}");
    p.source.query = Some("SELECT 1; DELETE FROM action.circulation".into());
    assert!(failure(Ils::Evergreen, &p, &s).contains("single statement"));

    // The read-only user may read, but the column must exist.
    p.source.query = Some("SELECT usr AS borrower_id FROM action.circulation".into());
    let err = failure(Ils::Evergreen, &p, &s);
    assert!(err.contains("lacks column(s) title_id, loan_date"), "{err}");
    // A failed cast quotes the value: such server messages are withheld.
    p.source.query = Some(
        "SELECT ('eg:' || usr)::int AS borrower_id, 1 AS title_id, now() AS loan_date \
         FROM action.circulation"
            .into(),
    );
    let err = failure(Ils::Evergreen, &p, &s);
    assert!(err.contains("22P02") && err.contains("not shown"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password-4711\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut p = db_preset(Ils::Evergreen, &s);
    p.source.password_file = Some(wrong.clone());
    let err = failure(Ils::Evergreen, &p, &s);
    assert!(!err.contains("not-the-password-4711"), "{err}");
    assert!(err.contains("28P01"), "{err}");

    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = failure(Ils::Evergreen, &p, &s);
    assert!(err.contains("readable by group or others"), "{err}");
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_tls_is_verified_against_the_configured_ca() {
    let Some(s) = servers() else { return };
    // The evergreen and folio tests connect with TLS and the CI CA; without
    // that CA the server's certificate has an unknown issuer.
    let mut p = db_preset(Ils::Folio, &s);
    p.source.tls_ca_file = None;
    let err = failure(Ils::Folio, &p, &s);
    assert!(
        err.contains("connecting") && err.contains("certificate"),
        "{err}"
    );
    // Without TLS the same data comes back.
    let mut p = db_preset(Ils::Folio, &s);
    p.source.tls = pipeline::Tls::Disable;
    let c = Circulation::generate(&ci_params());
    check(&c, Ils::Folio, &run(&p).unwrap());
}

#[cfg(feature = "mysql")]
#[test]
fn mariadb_refuses_writing_queries_and_bad_credentials_without_telling_secrets() {
    let Some(s) = servers() else { return };
    let mut p = db_preset(Ils::Koha, &s);
    p.source.query = Some("SELECT 1 INTO OUTFILE '/tmp/loans'".into());
    assert!(failure(Ils::Koha, &p, &s).contains("word INTO"));
    p.source.query = Some("SELECT 1; DROP TABLE issues".into());
    assert!(failure(Ils::Koha, &p, &s).contains("single statement"));

    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password-4711").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut p = db_preset(Ils::Koha, &s);
    p.source.password_file = Some(wrong);
    let err = failure(Ils::Koha, &p, &s);
    assert!(err.contains("28000"), "{err}");
    assert!(!err.contains("not-the-password-4711"), "{err}");
}

#[cfg(feature = "postgres")]
#[test]
fn a_database_source_fails_cleanly_when_nothing_listens() {
    let mut p = preset("folio-db");
    p.source.host = Some("127.0.0.1".into());
    p.source.port = Some(1);
    p.source.password_file = None;
    p.source.tls = pipeline::Tls::Disable;
    let err = run(&p).unwrap_err().to_string();
    assert!(err.starts_with("postgres://127.0.0.1:1/folio: "), "{err}");
}

#[test]
fn every_preset_parses_and_reads_what_its_name_says() {
    for ils in Ils::ALL {
        let db = preset(&format!("{}-db", ils.name()));
        assert!(db.source.format.is_database(), "{}", ils.name());
        assert_eq!(db.source.tls, pipeline::Tls::Require);
        assert!(db.source.password_file.is_some());
        let file = preset(&format!("{}-file", ils.name()));
        assert!(!file.source.format.is_database(), "{}", ils.name());
    }
}
