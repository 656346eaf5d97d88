//! File formats, encodings and time zones through the public API.

use std::sync::Arc;

use arrow_array::{
    ArrayRef, Date32Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use arrow_schema::{DataType, Field, Schema, TimeUnit};

use super::*;

fn write_parquet(f: &Fixture, name: &str, columns: Vec<(&str, ArrayRef)>) -> PathBuf {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let path = f.dir.path().join(name);
    let file = std::fs::File::create(&path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    path
}

#[test]
fn parquet_columns_are_read_by_name_with_instants_on_their_local_day() {
    let f = Fixture::new("unused", b"");
    // 2024-05-31T22:30Z is June 1 in Copenhagen.
    let may_31_2230 = 1_717_194_600_000;
    write_parquet(
        &f,
        "loans.parquet",
        vec![
            (
                "branch",
                Arc::new(StringArray::from(vec!["a", "b", "c", "d", "e"])) as ArrayRef,
            ),
            (
                "loan_date",
                Arc::new(
                    TimestampMillisecondArray::from(vec![
                        Some(may_31_2230),
                        Some(may_31_2230 - 3_600_000),
                        None,
                        Some(may_31_2230),
                        Some(may_31_2230 + 86_400_000 * 30),
                    ])
                    .with_timezone("UTC"),
                ),
            ),
            (
                "title_id",
                Arc::new(Int64Array::from(vec![
                    Some(9788700),
                    Some(9788700),
                    Some(1),
                    None,
                    Some(2),
                ])),
            ),
            (
                "borrower_id",
                Arc::new(StringArray::from(vec![
                    Some(" card-1 "),
                    Some("CARD-1"),
                    Some("c2"),
                    Some("c3"),
                    Some("c4"),
                ])),
            ),
        ],
    );
    let e = f
        .run_with(
            "path = \"loans.parquet\"\nformat = \"parquet\"\ntime_zone = \"Europe/Copenhagen\"",
            "",
        )
        .unwrap();
    assert_eq!(e.report.rows_read, 5);
    assert_eq!(e.report.rows_kept, 2);
    assert_eq!(row_titles(&e), ["9788700", "9788700"]);
    assert_eq!(e.loans.months, [month("2024-06"), month("2024-05")]);
    assert_eq!(e.report.newest_day, Some(date(2024, 6, 1)));
    let r = &e.report.rejected;
    assert_eq!(r[&RejectReason::MissingDate].rows, [3]);
    assert_eq!(r[&RejectReason::MissingTitle].rows, [4]);
    assert_eq!(r[&RejectReason::FutureDate].rows, [5]);
}

#[test]
fn parquet_dates_strings_and_missing_columns() {
    let f = Fixture::new("unused", b"");
    write_parquet(
        &f,
        "d.parquet",
        vec![
            (
                "borrower_id",
                Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            ),
            ("title_id", Arc::new(StringArray::from(vec!["t", "t"]))),
            (
                "loan_date",
                Arc::new(Date32Array::from(vec![19_723, 19_754])),
            ),
        ],
    );
    let e = f
        .run_with("path = \"d.parquet\"\nformat = \"parquet\"", "")
        .unwrap();
    assert_eq!(e.loans.months, [month("2024-01"), month("2024-02")]);

    write_parquet(
        &f,
        "s.parquet",
        vec![
            (
                "borrower_id",
                Arc::new(StringArray::from(vec!["a"])) as ArrayRef,
            ),
            ("title_id", Arc::new(StringArray::from(vec!["t"]))),
            ("loan_date", Arc::new(StringArray::from(vec!["03.05.2024"]))),
        ],
    );
    let e = f
        .run_with(
            "path = \"s.parquet\"\nformat = \"parquet\"\ndate_format = \"%d.%m.%Y\"",
            "",
        )
        .unwrap();
    assert_eq!(e.loans.months, [month("2024-05")]);

    write_parquet(
        &f,
        "m.parquet",
        vec![(
            "patron",
            Arc::new(StringArray::from(vec!["SECRET-PQ-1"])) as ArrayRef,
        )],
    );
    let err = f
        .run_with("path = \"m.parquet\"\nformat = \"parquet\"", "")
        .unwrap_err();
    let msg = err.to_string();
    // Schema names are not data, so they are shown.
    assert!(
        msg.contains("lacks column(s) borrower_id, title_id, loan_date"),
        "{msg}"
    );
    assert!(msg.contains("the header has patron"), "{msg}");
    assert!(!msg.contains("SECRET"), "{msg}");

    let csv = f.write("fake.parquet", b"borrower_id,title_id,loan_date\n");
    let err = f
        .run_with(
            &format!("path = {:?}\nformat = \"parquet\"", csv.to_str().unwrap()),
            "",
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("not a readable parquet file"),
        "{err}"
    );
    let _ = DataType::Timestamp(TimeUnit::Second, None);
}

#[test]
fn tsv_semicolon_and_latin1_files() {
    let f = Fixture::new(
        "loans.tsv",
        b"borrower_id\ttitle_id\tloan_date\nb1\tt;1\t2024-01-02\n",
    );
    let e = f
        .run_with("path = \"loans.tsv\"\nformat = \"tsv\"", "")
        .unwrap();
    assert_eq!(row_titles(&e), ["t;1"]);
    f.write(
        "semi.csv",
        b"borrower_id;title_id;loan_date\r\nb1;\"t;1\";2024-01-02\r\n",
    );
    let e = f
        .run_with("path = \"semi.csv\"\nformat = \"semicolon\"", "")
        .unwrap();
    assert_eq!(row_titles(&e), ["t;1"]);
    f.write(
        "latin.csv",
        b"borrower_id,title_id,loan_date\nb\xF8rge,Gr\xE6s,2024-01-02\n",
    );
    let e = f
        .run_with("path = \"latin.csv\"\nencoding = \"windows-1252\"", "")
        .unwrap();
    assert_eq!(row_titles(&e), ["Græs"]);
    // The same bytes declared UTF-8: counted as invalid, never guessed.
    let err = f.run_with("path = \"latin.csv\"", "").unwrap_err();
    assert!(
        err.to_string().contains("invalid utf-8 1 (rows 2)"),
        "{err}"
    );
}

#[test]
fn offsets_count_in_the_configured_zone() {
    let data = "borrower_id,title_id,loan_date\na,t,2024-05-31T23:30:00-01:00\n";
    let f = Fixture::new("loans.csv", data.as_bytes());
    let utc = f.run_with("time_zone = \"UTC\"", "").unwrap();
    assert_eq!(utc.loans.months, [month("2024-06")]);
    let la = f
        .run_with("time_zone = \"America/Los_Angeles\"", "")
        .unwrap();
    assert_eq!(la.loans.months, [month("2024-05")]);
}

#[test]
fn nul_bytes_are_rejected_not_kept() {
    let e = Fixture::new(
        "loans.csv",
        b"borrower_id,title_id,loan_date\nSECRET\0NUL,t,2024-01-02\nb,t\0x,2024-01-02\nb,t,2024-01-02\n",
    )
    .run()
    .unwrap();
    assert_eq!(e.report.rejected[&RejectReason::NulByte].rows, [2, 3]);
    assert_eq!(e.report.rows_kept, 1);
}

#[test]
fn a_large_generated_file_streams_through_many_blocks() {
    // About 40 MB: more than two default blocks, every row distinct.
    let mut data = String::from("borrower_id,title_id,loan_date,pad\n");
    let rows = 400_000u64;
    for i in 0..rows {
        use std::fmt::Write as _;
        let _ = writeln!(
            data,
            "card{},title{},2024-0{}-01,{:060}",
            i % 7919,
            i % 5003,
            1 + i % 5,
            i
        );
    }
    data.push_str("SECRET-LAST,\"quoted, late\",2024-03-01,x\n");
    let e = extract_str(&data).unwrap();
    assert_eq!(e.report.rows_read, rows + 1);
    assert_eq!(e.report.rows_kept + e.report.duplicates, rows + 1);
    assert_eq!(e.report.distinct_borrowers, 7920);
    assert_eq!(
        e.loans.title_ids.last().map(String::as_str),
        Some("quoted, late")
    );
    e.loans.validate().unwrap();
}
