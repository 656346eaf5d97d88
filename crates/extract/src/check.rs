//! The streaming reader checked against the whole-file csv reader (the
//! behaviour before streaming), for the tests and the fuzz target.

use std::path::Path;

use jiff::civil::date;
use loans::Loans;
use pseudonym::Pseudonymizer;

use crate::date::DateParser;
use crate::merge::Assembler;
use crate::read::Blocks;
use crate::{ExtractError, ExtractReport, How, find_layout, finish, parse, read_text, strip_bom};

pub(crate) fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(&keys::SecretKey::from_bytes([7; 32]), "X", "test")
}

/// How a test reads: the whole file in memory with the csv crate (the
/// behaviour before streaming, kept as the reference), or streamed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    Reference,
    Stream(How),
}

pub(crate) fn stream(block: usize, piece: usize) -> Mode {
    Mode::Stream(How {
        block,
        piece: Some(piece),
        ids_only: false,
    })
}

fn reference(
    path: &Path,
    data: &[u8],
    source: &pipeline::Source,
    today: jiff::civil::Date,
) -> Result<Assembler, ExtractError> {
    let data = strip_bom(data);
    let dates = DateParser::new(&source.date_format, source.time_zone());
    // The csv crate drops a byte order mark at the start of its first read;
    // the file's own is gone already, so a one-byte first read keeps a
    // second one as data, as the streaming reader does.
    let (first, rest) = data.split_at(data.len().min(1));
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(source.delimiter())
        .has_headers(false)
        .flexible(true)
        .from_reader(std::io::Read::chain(first, rest));
    let mut record = csv::ByteRecord::new();
    if !reader
        .read_byte_record(&mut record)
        .map_err(|_| ExtractError::Malformed {
            path: path.to_owned(),
            line: 1,
        })?
    {
        return Err(ExtractError::EmptyFile {
            path: path.to_owned(),
        });
    }
    let names: Vec<&[u8]> = record.iter().collect();
    let layout = find_layout(path, source, &names, &dates, today)?;
    let chunk =
        parse::parse_csv(data, &mut reader, &layout).map_err(|line| ExtractError::Malformed {
            path: path.to_owned(),
            line,
        })?;
    let mut asm = Assembler::default();
    asm.absorb(chunk).map_err(|_| ExtractError::TooManyLoans {
        path: path.to_owned(),
    })?;
    Ok(asm)
}

pub(crate) fn run_source(
    data: &[u8],
    source: &pipeline::Source,
    mode: Mode,
) -> Result<(Loans, ExtractReport), ExtractError> {
    let path = Path::new("loans.csv");
    let today = date(2024, 6, 15);
    let asm = match mode {
        Mode::Reference => reference(path, data, source, today)?,
        Mode::Stream(how) => {
            let blocks = Blocks::new(path, Box::new(data), source.encoding, how.block);
            let dates = DateParser::new(&source.date_format, source.time_zone());
            read_text(path, blocks, source, dates, today, how)?
        }
    };
    finish(path, asm, &pseudonymizer(), &mut |_| {})
}

/// A source reading `delimiter`-separated ISO dates, counted in Copenhagen.
#[cfg(feature = "fuzzing")]
fn fuzz_source(delimiter: char) -> pipeline::Source {
    let toml = format!(
        "[library]\nid = \"X\"\n[keys]\npseudonym = \"p\"\ntransfer = \"t\"\n\
         [source]\npath = \"loans.csv\"\ntime_zone = \"Europe/Copenhagen\"\n\
         delimiter = {:?}\n[transfer]\noutbox = \"o\"\n[store]\npath = \"s\"\n\
         [export]\npath = \"e\"\n",
        delimiter.to_string()
    );
    match pipeline::Pipeline::parse(&toml, Path::new("t.toml"), Path::new("/")) {
        Ok(p) => p.source,
        Err(e) => panic!("fuzz pipeline: {e}"),
    }
}

/// Fuzz entry point: the first byte picks the separator, block and piece
/// sizes; the rest is the file. Panics if the streaming (parallel and
/// csv-crate) paths disagree with the whole-file csv reader.
#[cfg(feature = "fuzzing")]
pub fn fuzz_paths_agree(input: &[u8]) {
    let Some((&ctl, data)) = input.split_first() else {
        return;
    };
    let delimiter = [',', ';', '\t', '|'][usize::from(ctl & 3)];
    let block = 1 + usize::from(ctl >> 2) * 3;
    let piece = 1 + usize::from(ctl >> 5) * 11;
    let source = fuzz_source(delimiter);
    let expected = run_source(data, &source, Mode::Reference);
    let streamed = run_source(data, &source, stream(block, piece));
    match (&expected, &streamed) {
        (Ok(a), Ok(b)) => {
            assert!(a == b, "outputs differ: {:?} vs {:?}", a.1, b.1);
            if let Err(e) = a.0.validate() {
                panic!("invalid loans: {e}");
            }
        }
        (
            Err(ExtractError::NoValidRows { report: a, .. }),
            Err(ExtractError::NoValidRows { report: b, .. }),
        ) => assert!(a == b, "reports differ: {a:?} vs {b:?}"),
        (Err(ExtractError::EmptyFile { .. }), Err(ExtractError::EmptyFile { .. })) => {}
        (
            Err(ExtractError::HeaderMismatch {
                missing: m1,
                found: f1,
                ..
            }),
            Err(ExtractError::HeaderMismatch {
                missing: m2,
                found: f2,
                ..
            }),
        ) => assert!(m1 == m2 && f1 == f2, "header errors differ"),
        // Only the streaming reader checks for a UTF-16 byte order mark.
        (_, Err(ExtractError::EncodingMismatch { .. }))
            if data.starts_with(b"\xFF\xFE") || data.starts_with(b"\xFE\xFF") => {}
        (a, b) => panic!(
            "paths differ: {:?} vs {:?}",
            a.as_ref().map(|x| &x.1),
            b.as_ref().map(|x| &x.1)
        ),
    }
}
