//! Raw borrower ids: the only place in the workspace where they exist.
//!
//! A raw id is seen as a [`BorrowerId`] (a canonical view of a field) and
//! kept, once per distinct id, in a [`BorrowerInterner`] until
//! [`BorrowerInterner::pseudonymize`] turns the distinct ids into pseudonyms.
//! Neither type has `Debug`, `Display`, `Clone` or `Serialize`, so an id
//! cannot be printed or copied out, and the interner zeroizes its copies
//! when dropped.

use loans::Pseudonym;
use pseudonym::Pseudonymizer;
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::interner::Interner;

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

/// Distinct canonical borrower ids, numbered in order of first appearance.
pub(crate) struct BorrowerInterner {
    ids: Interner,
    scratch: Zeroizing<Vec<u8>>,
}

impl Default for BorrowerInterner {
    fn default() -> Self {
        BorrowerInterner::with_capacity(0, 0, 0)
    }
}

impl Drop for BorrowerInterner {
    fn drop(&mut self) {
        self.ids.wipe();
    }
}

impl BorrowerInterner {
    /// An empty interner with room for `ids` ids of `bytes` bytes in all,
    /// `numbers` of them of digits only.
    pub(crate) fn with_capacity(ids: usize, numbers: usize, bytes: usize) -> Self {
        BorrowerInterner {
            ids: Interner::secret_with_capacity(ids, numbers, bytes),
            scratch: Zeroizing::default(),
        }
    }

    /// Bytes of all ids.
    pub(crate) fn bytes(&self) -> usize {
        self.ids.bytes()
    }

    /// Number of distinct ids.
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }

    /// Number of distinct ids of digits only.
    pub(crate) fn numbers(&self) -> usize {
        self.ids.numbers()
    }

    /// Index of the borrower of a raw id field, or `None` when the field is
    /// empty after trimming.
    pub(crate) fn intern(&mut self, raw: &str) -> Option<u32> {
        let id = BorrowerId::canonical(raw, &mut self.scratch)?;
        Some(self.ids.intern(id.as_bytes()))
    }

    /// Adds the ids of `other` in their order and returns the index each of
    /// them has here.
    pub(crate) fn absorb(&mut self, other: &BorrowerInterner) -> Vec<u32> {
        self.ids.absorb(&other.ids)
    }

    /// Lends every distinct canonical id to `audit` (for leak checks only);
    /// the interner, and so the ids, are wiped on return.
    pub(crate) fn lend<R>(self, audit: impl FnOnce(&mut dyn Iterator<Item = &[u8]>) -> R) -> R {
        audit(&mut self.ids.iter())
    }

    /// Pseudonymizes every distinct id exactly once, in parallel, and drops
    /// (zeroizing) the raw ids, after lending them to `audit` (a leak check's
    /// forbidden set); element `i` is the pseudonym of index `i`.
    pub(crate) fn pseudonymize(
        self,
        pseudonymizer: &Pseudonymizer,
        audit: &mut dyn FnMut(&mut dyn Iterator<Item = &[u8]>),
    ) -> Vec<Pseudonym> {
        audit(&mut self.ids.iter());
        let ids: Vec<BorrowerId<'_>> = self.ids.iter().map(BorrowerId).collect();
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
    fn interner_numbers_canonical_ids_by_first_appearance() {
        let mut a = BorrowerInterner::default();
        assert_eq!(a.intern(" ab1 "), Some(0));
        assert_eq!(a.intern("X9"), Some(1));
        assert_eq!(a.intern("AB1"), Some(0));
        assert_eq!(a.intern("aB1"), Some(0));
        assert_eq!(a.intern("  "), None);
        assert_eq!(a.len(), 2);

        let mut b = BorrowerInterner::default();
        assert_eq!(b.intern("new"), Some(0));
        assert_eq!(b.intern("x9"), Some(1));

        let mut all = BorrowerInterner::default();
        assert_eq!(all.absorb(&a), [0, 1]);
        assert_eq!(all.absorb(&b), [2, 1]);
        let ids: Vec<&[u8]> = all.ids.iter().collect();
        assert_eq!(ids, [&b"AB1"[..], b"X9", b"NEW"]);
    }
}
