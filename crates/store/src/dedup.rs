//! Cross-batch deduplication: the store holds each (pseudonym, title, month)
//! once, however often overlapping exports deliver the same loan.

use std::path::PathBuf;

use hashbrown::{HashMap, HashSet};
use loans::Loans;

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
pub(crate) fn new_rows(
    loans: &Loans,
    titles: &CanonicalTitles<'_>,
    rows: &[u32],
    held: &[(PathBuf, u64)],
) -> Result<Vec<u32>, StoreError> {
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
        return Ok(kept);
    }
    let known = |t: &str| titles.index.get(t).copied();
    let mut any_held = false;
    for (path, n) in held {
        let part = columns::read_loans(path, *n, &known)?;
        for (p, &t) in part.pseudonyms.iter().zip(&part.titles) {
            // Titles the batch does not hold cannot repeat one of its loans.
            if let Some(Local::Known(id)) = part.dict.get(t as usize) {
                any_held |= fresh.remove(&(p.as_u128(), *id));
            }
        }
    }
    if any_held {
        kept.retain(|&r| fresh.contains(&key(r)));
    }
    Ok(kept)
}
