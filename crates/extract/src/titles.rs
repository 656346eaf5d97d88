//! The optional title map (`[source.titles]`): loans that name an item
//! (FOLIO's loan-storage records carry only an `itemId`) become loans of the
//! title the item belongs to, by a CSV, TSV or NDJSON file mapping one to
//! the other.
//!
//! It runs on the extracted dictionary, before the works mapping: every lent
//! id must be in the map (an id left unmapped would be published as if it
//! were a title), and ids of one title merge into one dictionary entry, in
//! order of first appearance.

use std::collections::HashMap;
use std::path::Path;

use loans::Loans;
use pipeline::{Format, TitleMap};
use serde_json::Value;

use crate::parse::{csv_reader, record_line};
use crate::{ExtractError, TitleMapProblem, strip_bom};

/// Replaces the titles of `loans` by those `map` names for them.
pub(crate) fn apply(map: &TitleMap, loans: &mut Loans) -> Result<(), ExtractError> {
    let path = map.path.as_path();
    let data = std::fs::read(path).map_err(|source| ExtractError::Io {
        path: path.to_owned(),
        source,
    })?;
    apply_bytes(path, strip_bom(&data), map, loans)
}

/// Collects the target of each dictionary title, row by row.
struct Targets<'a> {
    index: HashMap<&'a str, usize>,
    /// Per dictionary title: its title and the row that mapped it.
    to: Vec<Option<(String, u64)>>,
}

impl Targets<'_> {
    fn add(&mut self, row: u64, from: &str, to: &str) -> Result<(), TitleMapProblem> {
        if from.is_empty() {
            return Err(TitleMapProblem::MissingId);
        }
        if to.is_empty() {
            return Err(TitleMapProblem::MissingTitle);
        }
        let Some(slot) = self.index.get(from).and_then(|&i| self.to.get_mut(i)) else {
            return Ok(());
        };
        match slot {
            None => *slot = Some((to.to_owned(), row)),
            Some((first, first_row)) if first != to => {
                return Err(TitleMapProblem::ConflictingTitle {
                    first_row: *first_row,
                });
            }
            Some(_) => {}
        }
        Ok(())
    }
}

fn apply_bytes(
    path: &Path,
    data: &[u8],
    map: &TitleMap,
    loans: &mut Loans,
) -> Result<(), ExtractError> {
    let fail = |row: u64, reason: TitleMapProblem| ExtractError::TitleMap {
        path: path.to_owned(),
        row,
        reason,
    };
    let ids = std::mem::take(&mut loans.title_ids);
    let mut targets = Targets {
        index: ids
            .iter()
            .enumerate()
            .map(|(i, t)| (t.as_str(), i))
            .collect(),
        to: vec![None; ids.len()],
    };
    match map.format {
        Format::Ndjson => {
            for (n, line) in data.split(|&b| b == b'\n').enumerate() {
                let row = n as u64 + 1;
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let Ok(Value::Object(record)) = serde_json::from_slice::<Value>(line) else {
                    return Err(fail(row, TitleMapProblem::Malformed));
                };
                let record = Value::Object(record);
                let text = |field: &str| match crate::ndjson::lookup(&record, field) {
                    Some(Value::String(s)) => Some(s.trim().to_owned()),
                    Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
                    None | Some(Value::Null) => Some(String::new()),
                    Some(_) => None,
                };
                let (Some(from), Some(to)) = (text(&map.from), text(&map.to)) else {
                    return Err(fail(row, TitleMapProblem::Malformed));
                };
                targets.add(row, &from, &to).map_err(|r| fail(row, r))?;
            }
        }
        _ => {
            let delimiter = if map.format == Format::Tsv {
                b'\t'
            } else {
                b','
            };
            let mut reader = csv_reader(data, delimiter);
            let mut record = csv::ByteRecord::new();
            match reader.read_byte_record(&mut record) {
                Ok(true) => {}
                Ok(false) => return Err(fail(1, TitleMapProblem::Empty)),
                Err(_) => return Err(fail(1, TitleMapProblem::Malformed)),
            }
            let names: Vec<String> = record
                .iter()
                .map(|n| String::from_utf8_lossy(n).trim().to_owned())
                .collect();
            let find = |want: &str| names.iter().position(|n| n == want.trim());
            let (Some(from_col), Some(to_col)) = (find(&map.from), find(&map.to)) else {
                let missing = [&map.from, &map.to]
                    .into_iter()
                    .filter(|w| find(w).is_none())
                    .cloned()
                    .collect();
                // Catalogue identifiers only: the header may be shown.
                return Err(fail(
                    1,
                    TitleMapProblem::MissingColumns {
                        missing,
                        found: names,
                    },
                ));
            };
            loop {
                let before = record_line(data, reader.position());
                match reader.read_byte_record(&mut record) {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(_) => return Err(fail(before, TitleMapProblem::Malformed)),
                }
                let row = record.position().map_or(before, |p| record_line(data, p));
                if record.len() != names.len() {
                    return Err(fail(row, TitleMapProblem::WrongColumnCount));
                }
                let field =
                    |c: usize| std::str::from_utf8(record.get(c).unwrap_or(&[])).map(str::trim);
                let (Ok(from), Ok(to)) = (field(from_col), field(to_col)) else {
                    return Err(fail(row, TitleMapProblem::InvalidUtf8));
                };
                targets.add(row, from, to).map_err(|r| fail(row, r))?;
            }
        }
    }
    let unmapped = targets.to.iter().filter(|t| t.is_none()).count();
    if unmapped > 0 {
        return Err(ExtractError::UnmappedTitles {
            path: path.to_owned(),
            count: unmapped as u64,
        });
    }
    // Old indexes are in order of first appearance, so the first old index
    // of each new title is its first appearance too.
    let mut new_index: HashMap<String, u32> = HashMap::new();
    let mut new_ids: Vec<String> = Vec::new();
    let remap: Vec<u32> = targets
        .to
        .into_iter()
        .map(|t| {
            let title = t.map(|(title, _)| title).unwrap_or_default();
            *new_index.entry(title).or_insert_with_key(|title| {
                new_ids.push(title.clone());
                // Fits: there are no more new titles than old ones.
                (new_ids.len() - 1) as u32
            })
        })
        .collect();
    for t in &mut loans.titles {
        *t = remap.get(*t as usize).copied().unwrap_or(0);
    }
    loans.work_ids = new_ids.clone();
    loans.title_ids = new_ids;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(format: &str, extra: &str) -> TitleMap {
        let toml = format!(
            "[library]\nid = \"X\"\n[keys]\npseudonym = \"p\"\ntransfer = \"t\"\n\
             [source]\npath = \"l\"\n[source.titles]\npath = \"m\"\nformat = \"{format}\"\n{extra}\n\
             [transfer]\noutbox = \"o\"\n[store]\npath = \"s\"\n[export]\npath = \"e\"\n"
        );
        pipeline::Pipeline::parse(&toml, Path::new("t.toml"), Path::new("/"))
            .unwrap()
            .source
            .titles
            .unwrap()
    }

    fn loans() -> Loans {
        let ids: Vec<String> = ["i1", "i2", "i3"].map(String::from).to_vec();
        Loans {
            borrowers: vec![0; 4],
            borrower_pseudonyms: vec![loans::Pseudonym([1; 16])],
            titles: vec![0, 1, 2, 1],
            months: vec!["2024-01".parse().unwrap(); 4],
            work_ids: ids.clone(),
            title_ids: ids,
        }
    }

    fn run(map: &TitleMap, data: &str) -> Result<Loans, ExtractError> {
        let mut l = loans();
        apply_bytes(Path::new("m"), data.as_bytes(), map, &mut l)?;
        Ok(l)
    }

    #[test]
    fn items_of_one_title_merge_in_order_of_first_appearance() {
        let l = run(
            &map("csv", ""),
            "title_id,item_id\nB,i2\nA,i1\nB,i3\nZ,i9\n",
        )
        .unwrap();
        assert_eq!(l.title_ids, ["A", "B"]);
        assert_eq!(l.titles, [0, 1, 1, 1]);
        assert_eq!(l.work_ids, l.title_ids);
        l.validate().unwrap();
        let nd = map("ndjson", "from = \"id\"\nto = \"holdings.instanceId\"");
        let l = run(
            &nd,
            "{\"id\":\"i1\",\"holdings\":{\"instanceId\":\"A\"}}\n\n\
             {\"id\":\"i2\",\"holdings\":{\"instanceId\":\"A\"}}\n\
             {\"id\":\"i3\",\"holdings\":{\"instanceId\":7}}\n",
        )
        .unwrap();
        assert_eq!(l.title_ids, ["A", "7"]);
        assert_eq!(l.titles, [0, 0, 1, 0]);
    }

    #[test]
    fn gaps_conflicts_and_bad_rows_are_errors() {
        let csv = map("csv", "");
        let problem = |data: &str| match run(&csv, data) {
            Err(ExtractError::TitleMap { row, reason, .. }) => (row, reason),
            other => panic!("{:?}", other.map(|l| l.title_ids)),
        };
        assert!(matches!(
            run(&csv, "title_id,item_id\nA,i1\nA,i2\n"),
            Err(ExtractError::UnmappedTitles { count: 1, .. })
        ));
        assert_eq!(
            problem("title_id,item_id\nA,i1\nB,i1\n"),
            (3, TitleMapProblem::ConflictingTitle { first_row: 2 })
        );
        assert_eq!(
            problem("title_id,item_id\n,i1\n"),
            (2, TitleMapProblem::MissingTitle)
        );
        assert_eq!(
            problem("title_id,item_id\nA\n"),
            (2, TitleMapProblem::WrongColumnCount)
        );
        assert_eq!(problem(""), (1, TitleMapProblem::Empty));
        let nd = map("ndjson", "");
        assert!(matches!(
            run(&nd, "[1]\n"),
            Err(ExtractError::TitleMap {
                row: 1,
                reason: TitleMapProblem::Malformed,
                ..
            })
        ));
    }
}
