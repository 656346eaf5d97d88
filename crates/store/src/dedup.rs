//! Cross-batch deduplication: the store holds each (pseudonym, title, month)
//! once, however often overlapping exports deliver the same loan.

use std::path::PathBuf;

use hashbrown::{HashMap, HashSet};
use loans::{LoanMonth, Loans, TitleOrder};

use crate::StoreError;
use crate::columns::{self, Local};

/// The batch's titles by string, each mapped to the index of its first
/// dictionary entry (a dictionary should hold each title once; this does not
/// rely on it).
pub(crate) struct CanonicalTitles<'a> {
    index: HashMap<&'a str, u32>,
    canon: Vec<u32>,
    /// Whether every dictionary entry is its own canonical one (no title
    /// twice), as in every batch the extractor writes.
    distinct: bool,
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
        let distinct = index.len() == loans.title_ids.len();
        CanonicalTitles {
            index,
            canon,
            distinct,
        }
    }
}

/// The rows of `rows` (one month of `loans`, in batch order) whose
/// (pseudonym, title) is neither earlier in `rows` nor in any of the `held`
/// data files (path and row count) of the same month: the rows to write,
/// in the order of the file (`Loans::in_title_order`).
///
/// Memory is a set over the batch's rows of the month plus one held file at a
/// time, never the whole month of the store. A month nothing is held for
/// needs no set: in title order a repeat sits in its title's run of rows.
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
    if held.is_empty() && titles.distinct && rows.is_sorted() {
        let mut kept = loans.in_title_order(rows);
        first_of_each_title_run(&mut kept);
        return Ok(NewRows { kept, merged: None });
    }
    let key = |r: u32| {
        let r = r as usize;
        (
            loans.pseudonym(r).as_u128(),
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
        let kept = loans.in_title_order(&kept);
        return Ok(NewRows { kept, merged: None });
    }
    let known = |t: &str| titles.index.get(t).copied();
    let mut any_held = false;
    let mut parts = Vec::with_capacity(held.len());
    for (path, n) in held {
        let part = columns::read_loans(path, *n, &known)?;
        for (p, &t) in part.borrowers.pseudonyms(loans).zip(&part.titles) {
            // Titles the batch does not hold cannot repeat one of its loans.
            // (Parts read from files: a title is `Known` or `New`.)
            if let Some(Local::Known(id) | Local::OfLoans(id)) = part.dict.get(t as usize) {
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
    let kept = loans.in_title_order(&kept);
    Ok(NewRows { kept, merged })
}

/// Keeps the rows of `ordered` (in title order, batch order within a
/// title) whose borrower is not earlier in the run of rows of its title: the
/// first loan of each (pseudonym, title) pair ([`TitleOrder::repeats`]).
/// Borrowers are compared by index: the batch's dictionary holds each
/// pseudonym once (`Loans::validate`, called by ingest).
fn first_of_each_title_run(ordered: &mut TitleOrder) {
    let mut keep = vec![true; ordered.len()];
    ordered.repeats(|i| keep[i] = false);
    let mut keep = keep.into_iter();
    ordered.retain(|_, _, _| keep.next().unwrap_or(true));
}

/// What [`new_rows`] found: the batch's rows to store and, when asked to
/// merge, the month's held rows followed by them as one set of loans.
pub(crate) struct NewRows {
    /// Rows of the batch not held yet, in title order (batch order within a
    /// title), with their titles and borrowers.
    pub kept: TitleOrder,
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
    let held: usize = parts.iter().map(|p| p.borrowers.len()).sum();
    let n = held + kept.len();
    let mut pseudonyms = Vec::with_capacity(n);
    let mut out = Loans {
        titles: Vec::with_capacity(n),
        months: vec![month; n],
        title_ids: loans.title_ids.clone(),
        work_ids: loans.work_ids.clone(),
        ..Loans::default()
    };
    let mut extra: HashMap<String, u32> = HashMap::new();
    for part in parts {
        let ids: Vec<u32> = part
            .dict
            .iter()
            .map(|local| match local {
                // Both are indices into `loans`' dictionary, which `out`'s
                // begins with.
                Local::Known(id) | Local::OfLoans(id) => *id,
                Local::New(title, work) => *extra.entry(title.clone()).or_insert_with(|| {
                    out.title_ids.push(title.clone());
                    out.work_ids.push(work.clone());
                    (out.title_ids.len() - 1) as u32
                }),
            })
            .collect();
        pseudonyms.extend(part.borrowers.pseudonyms(loans));
        out.titles
            .extend(part.titles.iter().map(|&t| ids[t as usize]));
    }
    for &r in kept {
        pseudonyms.push(loans.pseudonym(r as usize));
        out.titles.push(loans.titles[r as usize]);
    }
    // One month, numbered on its own: a merge is rare, and its file holds
    // only these rows.
    out.set_row_pseudonyms(&pseudonyms);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use loans::Pseudonym;
    use proptest::prelude::*;

    proptest! {
        /// Without held files, the rows kept are the first loan of each
        /// (pseudonym, title string) in batch order, in title order, whether
        /// the dictionary holds a title twice (the set) or not (the runs).
        #[test]
        fn a_month_without_held_files_keeps_each_first_loan_in_title_order(
            rows in prop::collection::vec((0u8..6, 0u32..30), 0..400),
            twice in any::<bool>(),
            keep in prop::collection::vec(any::<bool>(), 400),
            spread in 1u32..30,
        ) {
            // Few titles make long runs, which take the set.
            let rows: Vec<(u8, u32)> = rows.into_iter().map(|(p, t)| (p, t % spread)).collect();
            let m = LoanMonth::new(2024, 1).unwrap();
            let n = rows.len();
            // With `twice`, titles 2k and 2k + 1 are one string.
            let name = |t: u32| if twice { format!("t{}", t / 2) } else { format!("t{t}") };
            let loans = Loans::from_rows(
                &rows.iter().map(|&(p, _)| Pseudonym([p; 16])).collect::<Vec<_>>(),
                rows.iter().map(|&(_, t)| t).collect(),
                vec![m; n],
                (0..30).map(name).collect(),
                (0..30).map(|t| format!("w{t}")).collect(),
            );
            let of_month: Vec<u32> = (0..n as u32).filter(|&r| keep[r as usize]).collect();
            let canon = CanonicalTitles::of(&loans);
            let got = new_rows(&loans, &canon, &of_month, &[], false, m).unwrap();
            let mut seen = std::collections::HashSet::new();
            let mut expected: Vec<u32> = of_month
                .iter()
                .copied()
                .filter(|&r| seen.insert((rows[r as usize].0, name(rows[r as usize].1))))
                .collect();
            expected.sort_by_key(|&r| (loans.titles[r as usize], r));
            prop_assert_eq!(&got.kept, &loans.carried(expected));
            prop_assert!(got.merged.is_none());
        }
    }
}
