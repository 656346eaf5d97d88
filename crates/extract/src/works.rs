//! The optional title-to-work mapping.

use std::collections::HashMap;
use std::path::Path;

use pipeline::Works;

use crate::parse::{csv_reader, record_line};
use crate::{ExtractError, WorksProblem, strip_bom};

/// Sets `work_ids[i]` for every dictionary title the mapping file names;
/// titles it does not name stay their own work.
///
/// Every row is checked for shape; a title mapped to two different works is
/// an error only for titles that occur in the loans (the mapping may cover a
/// whole catalogue, and only the used part is held in memory).
pub(crate) fn apply(
    works: &Works,
    title_ids: &[String],
    work_ids: &mut [String],
) -> Result<(), ExtractError> {
    let path = works.path.as_path();
    let data = std::fs::read(path).map_err(|source| ExtractError::Io {
        path: path.to_owned(),
        source,
    })?;
    apply_bytes(path, strip_bom(&data), works, title_ids, work_ids)
}

fn apply_bytes(
    path: &Path,
    data: &[u8],
    works: &Works,
    title_ids: &[String],
    work_ids: &mut [String],
) -> Result<(), ExtractError> {
    let fail = |row: u64, reason: WorksProblem| ExtractError::Works {
        path: path.to_owned(),
        row,
        reason,
    };
    let mut reader = csv_reader(data, b',');
    let mut record = csv::ByteRecord::new();
    match reader.read_byte_record(&mut record) {
        Ok(true) => {}
        Ok(false) => return Err(fail(1, WorksProblem::Empty)),
        Err(_) => return Err(fail(1, WorksProblem::Malformed)),
    }
    let header_line = record.position().map_or(1, |p| record_line(data, p));
    let names: Vec<String> = record
        .iter()
        .map(|n| String::from_utf8_lossy(n).trim().to_owned())
        .collect();
    let find = |want: &str| names.iter().position(|n| n == want.trim());
    let (title_col, work_col) = match (find(&works.title_column), find(&works.work_column)) {
        (Some(t), Some(w)) => (t, w),
        (t, w) => {
            let missing = [(t, &works.title_column), (w, &works.work_column)]
                .into_iter()
                .filter(|(found, _)| found.is_none())
                .map(|(_, name)| name.clone())
                .collect();
            // The mapping holds catalogue identifiers only, so its header
            // names can be shown whatever the file contains.
            return Err(fail(
                header_line,
                WorksProblem::MissingColumns {
                    missing,
                    found: names,
                },
            ));
        }
    };

    let mut mapper = Mapper::new(title_ids, work_ids);
    loop {
        let before = record_line(data, reader.position());
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => return Err(fail(before, WorksProblem::Malformed)),
        }
        let row = record.position().map_or(before, |p| record_line(data, p));
        if record.len() != names.len() {
            return Err(fail(row, WorksProblem::WrongColumnCount));
        }
        let field = |c: usize| std::str::from_utf8(record.get(c).unwrap_or(&[])).map(str::trim);
        let (Ok(title), Ok(work)) = (field(title_col), field(work_col)) else {
            return Err(fail(row, WorksProblem::InvalidUtf8));
        };
        mapper
            .add(row, title, work)
            .map_err(|reason| fail(row, reason))?;
    }
    Ok(())
}

/// Maps the titles of the loans to works, one (title, work) row at a time,
/// from a file or a database query alike.
pub(crate) struct Mapper<'a> {
    index: HashMap<&'a str, usize>,
    /// Row that mapped each dictionary title, 0 while unmapped.
    mapped_at: Vec<u64>,
    work_ids: &'a mut [String],
}

impl<'a> Mapper<'a> {
    /// A mapper that sets `work_ids[i]` for the dictionary titles `title_ids`.
    pub(crate) fn new(title_ids: &'a [String], work_ids: &'a mut [String]) -> Self {
        Mapper {
            index: title_ids
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_str(), i))
                .collect(),
            mapped_at: vec![0; title_ids.len()],
            work_ids,
        }
    }

    /// Maps trimmed `title` to `work` as of row `row` (numbered from 1); a
    /// title mapped to two works is an error only if the loans have it.
    pub(crate) fn add(&mut self, row: u64, title: &str, work: &str) -> Result<(), WorksProblem> {
        if title.is_empty() {
            return Err(WorksProblem::MissingTitle);
        }
        if work.is_empty() {
            return Err(WorksProblem::MissingWork);
        }
        let Some(&i) = self.index.get(title) else {
            return Ok(());
        };
        let (Some(at), Some(current)) = (self.mapped_at.get_mut(i), self.work_ids.get_mut(i))
        else {
            return Ok(());
        };
        if *at == 0 {
            *current = work.to_owned();
            *at = row.max(1);
        } else if current != work {
            return Err(WorksProblem::ConflictingWork { first_row: *at });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn works() -> Works {
        let toml = r#"
            [library]
            id = "X"
            [keys]
            pseudonym = "p"
            transfer = "t"
            [source]
            path = "l.csv"
            [works]
            path = "w.csv"
            [transfer]
            outbox = "o"
            [store]
            path = "s"
            [export]
            path = "e"
        "#;
        let p = pipeline::Pipeline::parse(toml, Path::new("t.toml"), Path::new("/")).unwrap();
        p.works.unwrap()
    }

    fn run(data: &str) -> Result<Vec<String>, ExtractError> {
        let titles: Vec<String> = ["t1", "t2", "t3"].map(String::from).to_vec();
        let mut work_ids = titles.clone();
        apply_bytes(
            Path::new("w.csv"),
            data.as_bytes(),
            &works(),
            &titles,
            &mut work_ids,
        )?;
        Ok(work_ids)
    }

    fn problem(data: &str) -> (u64, WorksProblem) {
        match run(data) {
            Err(ExtractError::Works { row, reason, .. }) => (row, reason),
            other => panic!("expected a works error, got {other:?}"),
        }
    }

    #[test]
    fn maps_named_titles_and_leaves_others_alone() {
        let got =
            run("note,work_id,title_id\nx, w1 , t1\ny,w1,t3\nz,w9,unknown\n,w1,t1\n").unwrap();
        assert_eq!(got, ["w1", "t2", "w1"]);
    }

    #[test]
    fn malformed_rows_are_reported_with_row_and_reason() {
        assert_eq!(problem(""), (1, WorksProblem::Empty));
        assert_eq!(
            problem("title_id,work_id\nt1,w1\nt2\n"),
            (3, WorksProblem::WrongColumnCount)
        );
        assert_eq!(
            problem("title_id,work_id\n\nt1, \n"),
            (3, WorksProblem::MissingWork)
        );
        assert_eq!(
            problem("title_id,work_id\n ,w\n"),
            (2, WorksProblem::MissingTitle)
        );
        assert_eq!(
            problem("title_id,work_id\nt1,w1\nt2,w2\nt1,w3\n"),
            (4, WorksProblem::ConflictingWork { first_row: 2 })
        );
        let (row, reason) = problem("title,work_id\nt1,w1\n");
        assert_eq!(row, 1);
        assert_eq!(
            reason,
            WorksProblem::MissingColumns {
                missing: vec!["title_id".into()],
                found: vec!["title".into(), "work_id".into()],
            }
        );
    }

    #[test]
    fn invalid_utf8_is_reported() {
        let titles = vec!["t1".to_owned()];
        let mut work_ids = titles.clone();
        let err = apply_bytes(
            Path::new("w.csv"),
            b"title_id,work_id\nt1,w\xff\n",
            &works(),
            &titles,
            &mut work_ids,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            ExtractError::Works {
                row: 2,
                reason: WorksProblem::InvalidUtf8,
                ..
            }
        ));
    }
}
