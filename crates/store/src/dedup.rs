//! Cross-batch deduplication: the store holds each (pseudonym, title, month)
//! once, however often overlapping exports deliver the same loan.

use std::path::PathBuf;

use hashbrown::{HashMap, HashSet};
use loans::{LoanMonth, Loans};

use crate::StoreError;
use crate::columns::{self, Local};

/// The batch's titles by string, each mapped to the index of its first
/// dictionary entry (a dictionary should hold each title once; this does not
/// rely on it).
pub(crate) struct CanonicalTitles<'a> {
    index: HashMap<&'a str, u32>,
    canon: Vec<u32>,
}

impl<'a> CanonicalTitles<'a> {
    /// Indexes the title dictionary of `loans` (fewer than 2^31 titles).
    pub(crate) fn of(loans: &'a Loans) -> CanonicalTitles<'a> {
        let mut index = HashMap::with_capacity(loans.title_ids.len());
        let canon = loans
            .title_ids
            .iter()
            .enumerate()
            .map(|(i, t)| *index.entry(t.as_str()).or_insert(i as u32))
            .collect();
        CanonicalTitles { index, canon }
    }
}

/// The rows of `rows` (one month of `loans`, in batch order) whose
/// (pseudonym, title) is neither earlier in `rows` nor in any of the `held`
/// data files (path and row count) of the same month: the rows to write.
///
/// Memory is a set over the batch's rows of the month plus one held file at a
/// time, never the whole month of the store.
///
/// With `merge`, the held files' rows are kept as well and returned with the
/// new ones as one month of loans, for a single file that replaces them.
pub(crate) fn new_rows(
    loans: &Loans,
    titles: &CanonicalTitles<'_>,
    rows: &[u32],
    held: &[(PathBuf, u64)],
    merge: bool,
    month: LoanMonth,
) -> Result<NewRows, StoreError> {
    let key = |r: u32| {
        let r = r as usize;
        (
            loans.pseudonyms[r].as_u128(),
            titles.canon[loans.titles[r] as usize],
        )
    };
    let mut fresh: HashSet<(u128, u32)> = HashSet::with_capacity(rows.len());
    let mut kept: Vec<u32> = rows
        .iter()
        .copied()
        .filter(|&r| fresh.insert(key(r)))
        .collect();
    if held.is_empty() {
        return Ok(NewRows { kept, merged: None });
    }
    let known = |t: &str| titles.index.get(t).copied();
    let mut any_held = false;
    let mut parts = Vec::with_capacity(held.len());
    for (path, n) in held {
        let part = columns::read_loans(path, *n, &known)?;
        for (p, &t) in part.pseudonyms.iter().zip(&part.titles) {
            // Titles the batch does not hold cannot repeat one of its loans.
            if let Some(Local::Known(id)) = part.dict.get(t as usize) {
                any_held |= fresh.remove(&(p.as_u128(), *id));
            }
        }
        if merge {
            parts.push(part);
        }
    }
    if any_held {
        kept.retain(|&r| fresh.contains(&key(r)));
    }
    let merged = (merge && !kept.is_empty()).then(|| merged_month(loans, &parts, &kept, month));
    Ok(NewRows { kept, merged })
}

/// What [`new_rows`] found: the batch's rows to store and, when asked to
/// merge, the month's held rows followed by them as one set of loans.
pub(crate) struct NewRows {
    /// Rows of the batch not held yet, in batch order.
    pub kept: Vec<u32>,
    /// The held rows (file by file, in file order) and then `kept`, all of
    /// `month`, under the batch's title dictionary extended by the titles
    /// only the held files have.
    pub merged: Option<Loans>,
}

fn merged_month(
    loans: &Loans,
    parts: &[columns::FilePart],
    kept: &[u32],
    month: LoanMonth,
) -> Loans {
    let held: usize = parts.iter().map(|p| p.pseudonyms.len()).sum();
    let n = held + kept.len();
    let mut out = Loans {
        pseudonyms: Vec::with_capacity(n),
        titles: Vec::with_capacity(n),
        months: vec![month; n],
        title_ids: loans.title_ids.clone(),
        work_ids: loans.work_ids.clone(),
    };
    let mut extra: HashMap<String, u32> = HashMap::new();
    for part in parts {
        let ids: Vec<u32> = part
            .dict
            .iter()
            .map(|local| match local {
                Local::Known(id) => *id,
                Local::New(title, work) => *extra.entry(title.clone()).or_insert_with(|| {
                    out.title_ids.push(title.clone());
                    out.work_ids.push(work.clone());
                    (out.title_ids.len() - 1) as u32
                }),
            })
            .collect();
        out.pseudonyms.extend_from_slice(&part.pseudonyms);
        out.titles
            .extend(part.titles.iter().map(|&t| ids[t as usize]));
    }
    for &r in kept {
        out.pseudonyms.push(loans.pseudonyms[r as usize]);
        out.titles.push(loans.titles[r as usize]);
    }
    out
}
