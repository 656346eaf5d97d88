//! Integration tests of `extract` through its public API and real files.

mod ils;

use std::path::{Path, PathBuf};

use extract::{ExtractError, ExtractInput, Extraction, RejectReason, WorksProblem, extract};
use jiff::civil::{Date, date};
use keys::SecretKey;
use loans::LoanMonth;
use pipeline::Pipeline;
use proptest::prelude::*;
use pseudonym::Pseudonymizer;

mod formats;

const TODAY: Date = date(2024, 6, 15);

/// A pipeline whose source section is `source` (reading `loans.csv` unless it
/// starts with a path) followed by `works`, with paths relative to `dir`.
fn pipeline(dir: &Path, source: &str, works: &str) -> Pipeline {
    let path = if source.starts_with("path") {
        ""
    } else {
        "path = \"loans.csv\""
    };
    let toml = format!(
        "[library]\nid = \"DK-1\"\n[keys]\npseudonym = \"p.key\"\ntransfer = \"t.key\"\n\
         [source]\n{path}\n{source}\n{works}\n[transfer]\noutbox = \"o\"\n\
         [store]\npath = \"s\"\n[export]\npath = \"e\"\n"
    );
    Pipeline::parse(&toml, Path::new("test.toml"), dir).unwrap()
}

fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(&SecretKey::from_bytes([42; 32]), "DK-1", "also-borrowed")
}

/// A temporary directory holding `loans.csv` (or another name) with `data`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(name: &str, data: &[u8]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(name), data).unwrap();
        Fixture { dir }
    }

    fn write(&self, name: &str, data: &[u8]) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        path
    }

    fn run_with(&self, source: &str, works: &str) -> Result<Extraction, ExtractError> {
        let p = pipeline(self.dir.path(), source, works);
        let input = ExtractInput {
            source: &p.source,
            works: p.works.as_ref(),
            input: None,
            today: TODAY,
        };
        extract(&input, &pseudonymizer())
    }

    fn run(&self) -> Result<Extraction, ExtractError> {
        self.run_with("", "")
    }
}

fn extract_str(data: &str) -> Result<Extraction, ExtractError> {
    Fixture::new("loans.csv", data.as_bytes()).run()
}

fn month(s: &str) -> LoanMonth {
    s.parse().unwrap()
}

/// Titles of the kept rows, in row order.
fn row_titles(e: &Extraction) -> Vec<&str> {
    e.loans
        .titles
        .iter()
        .map(|&t| e.loans.title_ids[t as usize].as_str())
        .collect()
}

const REJECTS: &str = "\
borrower_id,title_id,loan_date,branch
SECRET-CARD-001,t1,2024-01-10,main
SECRET-CARD-002,t2,2024-01-10
 \t ,t1,2024-01-10,main
SECRET-CARD-003,  ,2024-01-10,main
SECRET-CARD-004,t1, ,main
SECRET-CARD-005,t1,10/01/2024,main
SECRET-CARD-006,t1,2024-06-16,main
SECRET-CARD-007,t1,2024-06-15T23:59,main
";

fn assert_rejects(e: &Extraction, utf8_row: Option<u64>) {
    let r = &e.report.rejected;
    let rows = |reason| r.get(&reason).map(|x| (x.count, x.rows.clone()));
    assert_eq!(rows(RejectReason::WrongColumnCount), Some((1, vec![3])));
    assert_eq!(rows(RejectReason::MissingBorrowerId), Some((1, vec![4])));
    assert_eq!(rows(RejectReason::MissingTitle), Some((1, vec![5])));
    assert_eq!(rows(RejectReason::MissingDate), Some((1, vec![6])));
    assert_eq!(rows(RejectReason::UnparseableDate), Some((1, vec![7])));
    assert_eq!(rows(RejectReason::FutureDate), Some((1, vec![8])));
    assert_eq!(
        rows(RejectReason::InvalidUtf8),
        utf8_row.map(|row| (1, vec![row]))
    );
}

#[test]
fn each_reject_reason_is_counted_with_its_row() {
    let mut data = REJECTS.as_bytes().to_vec();
    data.extend_from_slice(b"SECRET-CARD-008,t\xff,2024-01-10,main\n");
    let e = Fixture::new("loans.csv", &data).run().unwrap();
    assert_rejects(&e, Some(10));
    assert_eq!(e.report.rows_read, 9);
    assert_eq!(e.report.rows_kept, 2);
    assert_eq!(e.report.distinct_borrowers, 2);
    assert_eq!(e.report.first_month, Some(month("2024-01")));
    assert_eq!(e.report.last_month, Some(month("2024-06")));
    assert_eq!(row_titles(&e), ["t1", "t1"]);
}

#[test]
fn reject_rows_are_line_numbers_on_the_quoted_csv_path_too() {
    // A quoted field spanning two lines shifts the line numbers of what follows.
    let data = REJECTS.replacen(
        "SECRET-CARD-001,t1,2024-01-10,main\n",
        "SECRET-CARD-001,t1,2024-01-10,\"main\nbranch\"\n",
        1,
    );
    let e = extract_str(&data).unwrap();
    let rows = |reason| e.report.rejected[&reason].rows.clone();
    assert_eq!(rows(RejectReason::WrongColumnCount), [4]);
    assert_eq!(rows(RejectReason::FutureDate), [9]);
}

#[test]
fn no_identifier_reaches_report_or_errors() {
    let e = extract_str(REJECTS).unwrap();
    let texts = [
        format!("{:?}", e.report),
        e.report.to_string(),
        format!("{:?}", e.loans),
    ];
    for text in texts {
        assert!(!text.contains("SECRET"), "{text}");
    }
    let invalid = REJECTS
        .replace(",2024-01-10,", ",2024-99-10,")
        .replace("2024-06-15T", "2025-01-01T");
    let err = extract_str(&invalid).unwrap_err();
    assert!(matches!(err, ExtractError::NoValidRows { .. }), "{err}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("SECRET"), "{text}");
    }
}

#[test]
fn headerless_file_does_not_show_its_first_line() {
    let err =
        extract_str("SECRET-CARD-123,t1,2024-01-01\nSECRET-CARD-124,t2,2024-01-01\n").unwrap_err();
    match &err {
        ExtractError::HeaderMismatch { missing, found, .. } => {
            assert_eq!(missing, &["borrower_id", "title_id", "loan_date"]);
            assert_eq!(found, &None);
        }
        other => panic!("expected a header mismatch, got {other:?}"),
    }
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains("SECRET"), "{text}");
        assert!(text.contains("loan_date"), "{text}");
    }
}

#[test]
fn header_mismatch_names_missing_and_found_columns() {
    let err = extract_str("borrower_id,title,loan_date\nA,t,2024-01-01\n").unwrap_err();
    let msg = err.to_string();
    match err {
        ExtractError::HeaderMismatch { missing, found, .. } => {
            assert_eq!(missing, ["title_id"]);
            assert_eq!(found.unwrap(), ["borrower_id", "title", "loan_date"]);
        }
        other => panic!("expected a header mismatch, got {other:?}"),
    }
    assert!(msg.contains("lacks column(s) title_id"), "{msg}");
    assert!(msg.contains("borrower_id, title, loan_date"), "{msg}");
}

#[test]
fn empty_and_unreadable_files_are_errors() {
    assert!(matches!(
        extract_str(""),
        Err(ExtractError::EmptyFile { .. })
    ));
    assert!(matches!(
        extract_str("borrower_id,title_id,loan_date\r\n"),
        Err(ExtractError::EmptyFile { .. })
    ));
    let f = Fixture::new("other.csv", b"");
    assert!(matches!(f.run(), Err(ExtractError::Io { .. })));
}

#[test]
fn no_valid_row_is_an_error_with_the_report() {
    let err =
        extract_str("borrower_id,title_id,loan_date\nA,t,2030-01-01\nB,,2024-01-01\n").unwrap_err();
    let ExtractError::NoValidRows { report, .. } = &err else {
        panic!("expected no valid rows, got {err:?}");
    };
    assert_eq!(report.rows_read, 2);
    assert_eq!(report.rows_kept, 0);
    assert_eq!(report.rejected[&RejectReason::FutureDate].rows, [2]);
    assert_eq!(report.rejected[&RejectReason::MissingTitle].rows, [3]);
    let msg = err.to_string();
    assert!(msg.contains("none of the 2 data rows is valid"), "{msg}");
    assert!(msg.contains("future date 1 (rows 2)"), "{msg}");
}

#[test]
fn quoted_fields_may_hold_commas_and_newlines() {
    let data = "\u{feff}title_id,\"borrower_id\",loan_date\r\n\
                \"Dune, part 1\",A1,2024-01-02\r\n\
                \"two\r\nlines\",A1,\"2024-02-03\"\r\n\
                \"say \"\"hi\"\"\",B2,2024-03-04\r\n";
    let e = extract_str(data).unwrap();
    assert_eq!(
        row_titles(&e),
        ["Dune, part 1", "two\r\nlines", "say \"hi\""]
    );
    assert_eq!(
        e.loans.months,
        [month("2024-01"), month("2024-02"), month("2024-03")]
    );
    assert_eq!(e.loans.pseudonym(0), e.loans.pseudonym(1));
    assert_ne!(e.loans.pseudonym(0), e.loans.pseudonym(2));
    assert_eq!(e.loans.borrowers, [0, 0, 1]);
    e.loans.validate().unwrap();
}

#[test]
fn tsv_and_delimiter_override() {
    let f = Fixture::new(
        "loans.tsv",
        b"patron\titem\tday\tnote\nA\tt,1\t2024-05-01\tx, y\n",
    );
    let columns =
        "[source.columns]\nborrower_id = \"patron\"\ntitle_id = \"item\"\nloan_date = \"day\"";
    let e = f
        .run_with(
            &format!("path = \"loans.tsv\"\nformat = \"tsv\"\n{columns}"),
            "",
        )
        .unwrap();
    assert_eq!(row_titles(&e), ["t,1"]);
    f.write("loans.ssv", b"patron;item;day\nA;t1;2024-05-01\n");
    let e = f
        .run_with(
            &format!("path = \"loans.ssv\"\ndelimiter = \";\"\n{columns}"),
            "",
        )
        .unwrap();
    assert_eq!(row_titles(&e), ["t1"]);
}

#[test]
fn strptime_date_format() {
    let f = Fixture::new(
        "loans.csv",
        b"borrower_id,title_id,loan_date\nA,t1,05.01.2024\nA,t2,2024-01-05\nA,t3,31.12.2023\n",
    );
    let e = f.run_with("date_format = \"%d.%m.%Y\"", "").unwrap();
    assert_eq!(e.loans.months, [month("2024-01"), month("2023-12")]);
    assert_eq!(e.report.rejected[&RejectReason::UnparseableDate].rows, [3]);
}

#[test]
fn input_overrides_the_configured_path() {
    let f = Fixture::new(
        "loans.csv",
        b"borrower_id,title_id,loan_date\nA,t1,2024-01-01\n",
    );
    let other = f.write(
        "june.csv",
        b"borrower_id,title_id,loan_date\nA,t9,2024-06-01\n",
    );
    let p = pipeline(f.dir.path(), "", "");
    let input = ExtractInput {
        source: &p.source,
        works: None,
        input: Some(&other),
        today: TODAY,
    };
    let e = extract(&input, &pseudonymizer()).unwrap();
    assert_eq!(row_titles(&e), ["t9"]);
    assert_eq!(e.report.path, other);
}

#[test]
fn works_mapping_groups_titles() {
    let f = Fixture::new(
        "loans.csv",
        b"borrower_id,title_id,loan_date\nA,hb-1,2024-01-01\nA,pb-1,2024-01-01\nB,other,2024-01-01\n",
    );
    f.write(
        "works.csv",
        b"work_id,title_id\nw1,hb-1\nw1,pb-1\nw7,not-lent\n",
    );
    let e = f.run_with("", "[works]\npath = \"works.csv\"").unwrap();
    assert_eq!(e.loans.title_ids, ["hb-1", "pb-1", "other"]);
    assert_eq!(e.loans.work_ids, ["w1", "w1", "other"]);
    e.loans.validate().unwrap();

    f.write("works.csv", b"work_id,title_id\nw1,hb-1\nw2,hb-1\n");
    let err = f.run_with("", "[works]\npath = \"works.csv\"").unwrap_err();
    assert!(
        matches!(
            err,
            ExtractError::Works {
                row: 3,
                reason: WorksProblem::ConflictingWork { first_row: 2 },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("row 3"), "{err}");
}

#[test]
fn borrower_ids_are_canonicalized_before_pseudonymizing() {
    let e = extract_str("borrower_id,title_id,loan_date\n ab1 ,t1,2024-01-01\nAB1,t2,2024-01-01\naB1\u{3000},t3,2024-01-01\nab2,t1,2024-01-01\n")
        .unwrap();
    // One month, so the rows come in title order: t1 (ab1, ab2), t2, t3.
    let p: Vec<_> = e.loans.row_pseudonyms().collect();
    let ab1 = pseudonymizer().pseudonymize(b"AB1");
    let ab2 = pseudonymizer().pseudonymize(b"AB2");
    assert_eq!(p, [ab1, ab2, ab1, ab1]);
    assert_eq!(e.report.distinct_borrowers, 2);
}

#[test]
fn titles_are_trimmed_and_kept_once_in_order_of_first_appearance() {
    let e = extract_str(
        "borrower_id,title_id,loan_date\nA, t2 ,2024-01-01\nB,t1,2024-01-01\nC,t2,2024-01-01\n",
    )
    .unwrap();
    assert_eq!(e.loans.title_ids, ["t2", "t1"]);
    // One month, so the rows come in title order (file order within one).
    assert_eq!(e.loans.titles, [0, 0, 1]);
    assert_eq!(e.loans.borrowers, [0, 2, 1]);
    assert_eq!(e.report.distinct_titles, 2);
}

#[test]
fn output_does_not_depend_on_the_thread_count() {
    // Large enough to be split into several pieces, differently per pool size.
    let mut data = String::from("borrower_id,title_id,loan_date\r\n");
    for i in 0u64..20_000 {
        let b = i.wrapping_mul(2_654_435_761) % 3_001;
        let t = i.wrapping_mul(40_503) % 997;
        let m = 1 + i % 12;
        if i % 1_000 == 999 {
            data.push_str("broken row\r\n");
        } else {
            data.push_str(&format!("card{b},title-{t},2023-{m:02}-0{}\r\n", 1 + i % 9));
        }
    }
    let f = Fixture::new("loans.csv", data.as_bytes());
    let run = |threads| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| f.run().unwrap())
    };
    let (one, two) = (run(1), run(2));
    assert_eq!(one.loans, two.loans);
    assert_eq!(one.report, two.report);
    assert_eq!(one.report.rows_kept, 19_980);
    assert_eq!(
        one.report.rejected[&RejectReason::WrongColumnCount].rows[..2],
        [1_001, 2_001]
    );
    assert_eq!(one.report.distinct_borrowers, 3_001);
    one.loans.validate().unwrap();
}

#[test]
fn dictionaries_follow_first_appearance_for_ids_of_every_shape() {
    // Short numbers, leading zeros, ids over 16 bytes, lower case (stored
    // upper case), 17 digits; titles as ISBNs, names and long ids: every
    // path of the partitioned dictionaries, over many pieces.
    let id = |n: u64| match n % 6 {
        0 => format!("{}", n % 701),
        1 => format!("{:07}", n % 503),
        2 => format!("card-{:030}", n % 211),
        3 => format!("ab{}", n % 307),
        4 => format!("{}", 10_000_000_000_000_000 + n % 97),
        _ => format!("9{:012}", n % 401),
    };
    let title = |n: u64| match n % 3 {
        0 => format!("978{:010}", n % 1_009),
        1 => format!("t-{}", n % 313),
        _ => format!("a title id that is long {}", n % 101),
    };
    let mut data = String::from("borrower_id,title_id,loan_date\n");
    let (mut borrowers, mut titles): (Vec<String>, Vec<String>) = (Vec::new(), Vec::new());
    for i in 0u64..60_000 {
        let (b, t) = (
            id(i.wrapping_mul(2_654_435_761) % 100_003),
            title(i.wrapping_mul(40_503) % 7_919),
        );
        data.push_str(&format!("{b},{t},2024-0{}-01\n", 1 + i % 5));
        let canonical = b.to_ascii_uppercase();
        if !borrowers.contains(&canonical) {
            borrowers.push(canonical);
        }
        if !titles.contains(&t) {
            titles.push(t);
        }
    }
    let f = Fixture::new("loans.csv", data.as_bytes());
    let expected: Vec<_> = borrowers
        .iter()
        .map(|b| pseudonymizer().pseudonymize(b.as_bytes()))
        .collect();
    for threads in [1, 2, 3] {
        let e = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| f.run().unwrap());
        assert_eq!(e.loans.title_ids, titles, "{threads} threads");
        assert_eq!(e.loans.borrower_pseudonyms, expected, "{threads} threads");
        e.loans.validate().unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn no_input_id_appears_in_the_output(
        rows in prop::collection::vec(
            ("[0-9a-z]{1,8}", "[0-9a-z -]{0,10}", 0u32..16, any::<bool>()),
            1..40,
        ),
    ) {
        let mut data = String::from("borrower_id,title_id,loan_date\n");
        for (id, title, month, quoted) in &rows {
            let id = format!("SECRET-CARD-{id}");
            let date = format!("2023-{:02}-01", 1 + month % 12);
            if *quoted {
                data.push_str(&format!("\"{id}\",\"{title}\",{date}\n"));
            } else {
                data.push_str(&format!("{id},{title},{date}\n"));
            }
        }
        let texts = match extract_str(&data) {
            Ok(e) => {
                e.loans.validate().unwrap();
                let mut texts = e.loans.title_ids.clone();
                texts.extend(e.loans.work_ids.iter().cloned());
                texts.push(format!("{:?}", e.loans));
                texts.push(format!("{:?}", e.report));
                texts.push(e.report.to_string());
                texts
            }
            Err(err) => vec![err.to_string(), format!("{err:?}")],
        };
        // Every id starts with this prefix, which no title or column name has.
        for text in &texts {
            prop_assert!(!text.contains("SECRET"), "{}", text);
        }
    }
}

#[test]
fn lent_borrower_ids_are_the_distinct_canonical_ids_of_every_row() {
    let f = Fixture::new(
        "loans.csv",
        b"borrower_id,title_id,loan_date\n ab1 ,T1,2024-01-05\nAB1,T2,2024-01-06\nx9,T1,2024-02-01\nREJECTED-7,T1,2099-01-01\n,T3,2024-01-01\n",
    );
    let p = pipeline(f.dir.path(), "", "");
    let input = ExtractInput {
        source: &p.source,
        works: None,
        input: None,
        today: TODAY,
    };
    let mut ids = extract::lend_borrower_ids(&input, |ids| {
        ids.map(|id| String::from_utf8(id.to_vec()).unwrap())
            .collect::<Vec<_>>()
    })
    .unwrap();
    ids.sort();
    // Rejected rows never add a borrower (their ids reach nothing downstream).
    assert_eq!(ids, ["AB1", "X9"]);
}
