//! Raw borrower ids: the only place in the workspace where they exist.
//!
//! A raw id is seen as a [`BorrowerId`] (a canonical view of a field) and
//! put in its chunk's [`BorrowerKeys`], numbered into the extraction's
//! [`Borrowers`] and wiped, until [`Borrowers::pseudonymize`] turns the
//! distinct ids into pseudonyms. None of these types has `Debug`,
//! `Display`, `Clone` or `Serialize`, so an id cannot be printed or copied
//! out, and every copy is zeroized when numbered or dropped.

use loans::Pseudonym;
use pseudonym::Pseudonymizer;
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::keys::{Dictionary, Keys, Order};

/// A canonical raw borrower id: trimmed of Unicode whitespace, ASCII
/// uppercased (card numbers are case-insensitive in ILSs), never empty.
pub(crate) struct BorrowerId<'a>(&'a [u8]);

impl<'a> BorrowerId<'a> {
    /// The canonical id of a raw field, written to `scratch` if it had to be
    /// uppercased; `None` for a field that is empty after trimming.
    pub(crate) fn canonical(raw: &'a str, scratch: &'a mut Vec<u8>) -> Option<BorrowerId<'a>> {
        let trimmed = crate::records::trim(raw);
        if trimmed.is_empty() {
            return None;
        }
        if trimmed.bytes().any(|b| b.is_ascii_lowercase()) {
            scratch.clear();
            if scratch.capacity() < trimmed.len() {
                // So that the previous id is wiped, not freed as it is.
                crate::interner::grow_wiping(scratch, trimmed.len().max(32));
            }
            scratch.extend(trimmed.bytes().map(|b| b.to_ascii_uppercase()));
            Some(BorrowerId(scratch.as_slice()))
        } else {
            Some(BorrowerId(trimmed.as_bytes()))
        }
    }

    /// The bytes that are pseudonymized.
    fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// A chunk's canonical borrower ids, row by row, in hash partitions
/// ([`Keys`], secret: wiped once numbered).
pub(crate) struct BorrowerKeys {
    ids: Keys,
    scratch: Zeroizing<Vec<u8>>,
}

impl Default for BorrowerKeys {
    fn default() -> Self {
        BorrowerKeys {
            ids: Keys::new(true),
            scratch: Zeroizing::default(),
        }
    }
}

impl BorrowerKeys {
    /// Adds the canonical id of a raw field for the chunk's kept row `row`;
    /// `false`, adding nothing, when the field is empty after trimming.
    pub(crate) fn push(&mut self, raw: &str, row: u32) -> bool {
        match BorrowerId::canonical(raw, &mut self.scratch) {
            Some(id) => {
                self.ids.push(id.as_bytes(), row);
                true
            }
            None => false,
        }
    }

    /// The ids, to be numbered.
    pub(crate) fn keys(&mut self) -> &mut Keys {
        &mut self.ids
    }
}

/// The distinct canonical borrower ids of an extraction.
pub(crate) struct Borrowers {
    ids: Dictionary,
}

impl Default for Borrowers {
    fn default() -> Self {
        Borrowers {
            ids: Dictionary::new(true),
        }
    }
}

impl Borrowers {
    /// The ids' dictionary, to number a block's ids.
    pub(crate) fn dictionary(&mut self) -> &mut Dictionary {
        &mut self.ids
    }

    /// The final numbering: by first appearance.
    pub(crate) fn order(&self) -> Order {
        self.ids.order()
    }

    /// Lends every distinct canonical id to `audit` (for leak checks only);
    /// the ids are wiped on return.
    pub(crate) fn lend<R>(self, audit: impl FnOnce(&mut dyn Iterator<Item = &[u8]>) -> R) -> R {
        let order = self.ids.order();
        audit(&mut self.ids.keys(&order))
    }

    /// Pseudonymizes every distinct id exactly once, in parallel, and drops
    /// (zeroizing) the raw ids, after lending them to `audit` (a leak check's
    /// forbidden set); element `i` is the pseudonym of the id numbered `i`
    /// by `order`.
    pub(crate) fn pseudonymize(
        self,
        order: &Order,
        pseudonymizer: &Pseudonymizer,
        audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
    ) -> Vec<Pseudonym> {
        audit(&mut self.ids.keys(order));
        let ids: Vec<BorrowerId<'_>> = self.ids.keys(order).map(BorrowerId).collect();
        ids.par_iter()
            .map(|id| pseudonymizer.pseudonymize(id.as_bytes()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canonical(raw: &str) -> Option<Vec<u8>> {
        let mut scratch = Vec::new();
        BorrowerId::canonical(raw, &mut scratch).map(|id| id.as_bytes().to_vec())
    }

    #[test]
    fn canonicalization_trims_unicode_space_and_uppercases_ascii() {
        assert_eq!(canonical("\u{a0} ab1\t\u{2003}").unwrap(), b"AB1");
        assert_eq!(canonical(" AB1 ").unwrap(), b"AB1");
        // Only ASCII is case-folded: other letters stay as they are.
        assert_eq!(canonical("ä1").unwrap(), "ä1".as_bytes());
        assert_eq!(canonical(" \u{3000}\t"), None);
        assert_eq!(canonical(""), None);
    }

    #[test]
    fn canonical_ids_share_a_number() {
        let mut keys = BorrowerKeys::default();
        for (row, raw) in [" ab1 ", "X9", "AB1", "aB1"].iter().enumerate() {
            assert!(keys.push(raw, row as u32));
        }
        assert!(!keys.push("  ", 4));
        let mut borrowers = Borrowers::default();
        let mut out: Vec<std::sync::atomic::AtomicU32> =
            (0..4).map(|_| Default::default()).collect();
        let mut batches = [crate::keys::Batch {
            keys: keys.keys(),
            first_row: 0,
            out_row: 0,
        }];
        borrowers
            .dictionary()
            .number(&mut batches, Some(&out))
            .unwrap();
        let order = borrowers.order();
        let mut column: Vec<u32> = out.iter_mut().map(|a| *a.get_mut()).collect();
        order.renumber(&mut column);
        assert_eq!(column, [0, 1, 0, 0]);
        let ids = borrowers.lend(|ids| ids.map(<[u8]>::to_vec).collect::<Vec<_>>());
        assert_eq!(ids, [b"AB1".to_vec(), b"X9".to_vec()]);
    }
}
