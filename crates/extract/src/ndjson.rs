//! Newline-delimited JSON input (`format = "ndjson"`), as ILS APIs export
//! loan records (FOLIO's `/circulation/loans` records, one per line).
//!
//! The file is streamed line by line in bounded memory, each line parsed as
//! one JSON object, and the three configured fields looked up by dotted
//! path (`item.instanceId`). Every line goes through the record sink; a line
//! that is not a JSON object, or is longer than [`MAX_LINE`], is a counted
//! `malformed record`, never an error that names its content.

use std::fs::File;
use std::io::{BufRead, BufReader};

use serde_json::Value;
use zeroize::Zeroizing;

use crate::date::DateParser;
use crate::records::{LoanDate, RecordSink};
use crate::{ExtractError, ExtractInput, RejectReason};

/// Longest NDJSON line read (1 MiB); a loan record is a few hundred bytes,
/// so a longer line is not one.
pub const MAX_LINE: usize = 1 << 20;

/// One line of the file, read into a caller's buffer.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// The buffer holds a whole line (without its line break).
    Read,
    /// The line was longer than the limit and was skipped.
    TooLong,
    /// No more input.
    End,
}

/// Reads the next line into `buf` (cleared first), skipping the rest of a
/// line longer than `max` bytes without holding it.
fn next_line(reader: &mut impl BufRead, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Line> {
    buf.clear();
    let mut seen_any = false;
    let mut too_long = false;
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Ok(match (seen_any, too_long) {
                (false, _) => Line::End,
                (true, true) => Line::TooLong,
                (true, false) => Line::Read,
            });
        }
        seen_any = true;
        let (part, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if !too_long {
            if buf.len() + part.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(part);
            }
        }
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(if too_long { Line::TooLong } else { Line::Read });
        }
    }
}

/// The value at a dotted path: a key with the whole path first (JSON keys
/// may contain dots), then one object level per segment.
pub(crate) fn lookup<'v>(record: &'v Value, path: &str) -> Option<&'v Value> {
    if let Some(v) = record.get(path) {
        return Some(v);
    }
    path.split('.').try_fold(record, |v, key| v.get(key))
}

/// An id field's bytes: strings as they are, integers in decimal (written
/// to `scratch`), nothing for null or absent; `Err` for other types.
fn id_bytes<'v>(value: Option<&'v Value>, scratch: &'v mut String) -> Result<&'v [u8], ()> {
    match value {
        None | Some(Value::Null) => Ok(b""),
        Some(Value::String(s)) => Ok(s.as_bytes()),
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => {
            scratch.clear();
            use std::fmt::Write as _;
            let _ = write!(scratch, "{n}");
            Ok(scratch.as_bytes())
        }
        Some(_) => Err(()),
    }
}

/// Streams the NDJSON loans file of `input` into a record sink.
pub(crate) fn read(input: &ExtractInput<'_>) -> Result<RecordSink, ExtractError> {
    let path = input.input.unwrap_or(&input.source.path);
    let io = |source| ExtractError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let dates = DateParser::new(&input.source.date_format, input.source.time_zone());
    let mut sink = RecordSink::new(path.to_owned(), dates, input.today);
    read_lines(
        &mut BufReader::with_capacity(64 << 10, file),
        &mut sink,
        &input.source.columns,
    )
    .map_err(io)?;
    Ok(sink)
}

/// Feeds every non-blank line of `reader` to `sink`, numbered from 1.
fn read_lines(
    reader: &mut impl BufRead,
    sink: &mut RecordSink,
    columns: &pipeline::Columns,
) -> std::io::Result<()> {
    // Both hold borrower ids between lines.
    let mut buf = Zeroizing::new(Vec::new());
    let mut borrower_scratch = Zeroizing::new(String::new());
    let mut title_scratch = String::new();
    let mut line_no = 0u64;
    loop {
        let line = next_line(reader, &mut buf, MAX_LINE)?;
        line_no += 1;
        let text = match line {
            Line::End => return Ok(()),
            Line::TooLong => {
                sink.reject(line_no, RejectReason::MalformedRecord);
                continue;
            }
            Line::Read => buf.strip_suffix(b"\r").unwrap_or(&buf),
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if sink.full() {
            return Err(std::io::Error::other(format!(
                "more than {} records",
                crate::records::MAX_RECORDS
            )));
        }
        if std::str::from_utf8(text).is_err() {
            sink.reject(line_no, RejectReason::InvalidUtf8);
            continue;
        }
        let record: Value = match serde_json::from_slice(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                sink.reject(line_no, RejectReason::MalformedRecord);
                continue;
            }
        };
        let borrower = id_bytes(lookup(&record, &columns.borrower_id), &mut borrower_scratch);
        let title = id_bytes(lookup(&record, &columns.title_id), &mut title_scratch);
        let date = match lookup(&record, &columns.loan_date) {
            None | Some(Value::Null) => Ok(LoanDate::Missing),
            Some(Value::String(s)) => Ok(LoanDate::Text(s.as_bytes())),
            Some(_) => Err(()),
        };
        match (borrower, title, date) {
            (Ok(b), Ok(t), Ok(d)) => sink.push(line_no, b, t, d),
            _ => sink.reject(line_no, RejectReason::WrongFieldType),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn columns(b: &str, t: &str, d: &str) -> pipeline::Columns {
        let mut c = crate::tests::source("").columns;
        c.borrower_id = b.into();
        c.title_id = t.into();
        c.loan_date = d.into();
        c
    }

    fn run(data: &[u8]) -> crate::ExtractReport {
        let mut sink = RecordSink::new("l.ndjson".into(), RecordSink::utc_iso(), date(2024, 6, 15));
        let c = columns("userId", "item.instanceId", "loanDate");
        read_lines(&mut &data[..], &mut sink, &c).unwrap();
        let p = pseudonym::Pseudonymizer::new(&keys::SecretKey::from_bytes([1; 32]), "X", "t");
        sink.finish(&p, &mut |_| {}).unwrap().1
    }

    #[test]
    fn lines_are_limited_and_numbered() {
        let long = vec![b'x'; 10];
        let mut data = b"ab\r\n".to_vec();
        data.extend_from_slice(&long);
        data.extend_from_slice(b"\nc");
        let mut reader = BufReader::with_capacity(3, &data[..]);
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            let line = next_line(&mut reader, &mut buf, 5).unwrap();
            if line == Line::End {
                break;
            }
            got.push((line, String::from_utf8(buf.clone()).unwrap()));
        }
        assert_eq!(
            got,
            [
                (Line::Read, "ab\r".to_owned()),
                (Line::TooLong, String::new()),
                (Line::Read, "c".to_owned())
            ]
        );
    }

    #[test]
    fn nested_fields_and_every_kind_of_bad_line() {
        let data = br#"{"userId":"u1","item":{"instanceId":"i1"},"loanDate":"2024-03-05T10:15:00.000+00:00"}

{"userId":17,"item":{"instanceId":"i1"},"loanDate":"2024-04-01T00:00:00Z"}
{"userId":"u1","item":{"instanceId":"i2"}}
{"userId":["u1"],"item":{"instanceId":"i2"},"loanDate":"2024-04-01"}
{"userId":1.5,"item":{"instanceId":"i2"},"loanDate":"2024-04-01"}
not json
["an","array"]
{"userId":"u2","item.instanceId":"i3","loanDate":"2024-05-01"}
{"userId":"u\xff","item":{"instanceId":"i2"},"loanDate":"2024-04-01"}
{"userId":"u3","item":{"instanceId":"i2"},"loanDate":"2024-07-01"}
"#;
        let data = String::from_utf8_lossy(data)
            .replace("u\\xff", "u@")
            .into_bytes();
        let data: Vec<u8> = data
            .into_iter()
            .map(|b| if b == b'@' { 0xff } else { b })
            .collect();
        let r = run(&data);
        assert_eq!(r.rows_read, 10);
        assert_eq!(r.rows_kept, 3);
        assert_eq!(r.distinct_borrowers, 3);
        assert_eq!(r.distinct_titles, 2);
        assert_eq!(r.rejected[&RejectReason::MissingDate].rows, [4]);
        assert_eq!(r.rejected[&RejectReason::WrongFieldType].rows, [5, 6]);
        assert_eq!(r.rejected[&RejectReason::MalformedRecord].rows, [7, 8]);
        assert_eq!(r.rejected[&RejectReason::InvalidUtf8].rows, [10]);
        assert_eq!(r.rejected[&RejectReason::FutureDate].rows, [11]);
        let shown = r.to_string();
        for id in ["u1", "u2", "u3", "i1", "i2", "17"] {
            assert!(!shown.contains(id), "{shown}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_counted_line_by_line_without_a_panic(
            lines in proptest::collection::vec(
                proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40),
                0..30,
            ),
            good in 0usize..5,
        ) {
            let mut data = Vec::new();
            let mut non_blank = 0u64;
            for line in &lines {
                let line: Vec<u8> = line.iter().copied().filter(|&b| b != b'\n').collect();
                non_blank += u64::from(!line.iter().all(u8::is_ascii_whitespace));
                data.extend_from_slice(&line);
                data.push(b'\n');
            }
            for i in 0..good {
                data.extend_from_slice(
                    format!("{{\"userId\":\"u{i}\",\"item\":{{\"instanceId\":\"t\"}},\"loanDate\":\"2024-01-01\"}}\n").as_bytes(),
                );
            }
            let mut sink = RecordSink::new("l".into(), RecordSink::utc_iso(), date(2024, 6, 15));
            let c = columns("userId", "item.instanceId", "loanDate");
            read_lines(&mut &data[..], &mut sink, &c).unwrap();
            proptest::prop_assert_eq!(sink.records(), non_blank + good as u64);
        }
    }

    #[test]
    fn deeply_nested_or_huge_lines_are_rejected_not_fatal() {
        let mut data = "[".repeat(10_000).into_bytes();
        data.push(b'\n');
        data.extend(vec![b' '; MAX_LINE + 1]);
        data.extend_from_slice(
            b"x\n{\"userId\":\"u\",\"item\":{\"instanceId\":\"t\"},\"loanDate\":\"2024-01-01\"}\n",
        );
        let r = run(&data);
        assert_eq!(r.rows_kept, 1);
        assert_eq!(r.rejected[&RejectReason::MalformedRecord].rows, [1, 2]);
    }
}
