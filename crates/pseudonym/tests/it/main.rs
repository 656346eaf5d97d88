//! Property tests of the `pseudonym` crate through its public API.

use std::collections::HashSet;

use keys::{KEY_LEN, SecretKey};
use proptest::prelude::*;
use pseudonym::Pseudonymizer;

fn pseudonymizer(seed: u8) -> Pseudonymizer {
    Pseudonymizer::new(
        &SecretKey::from_bytes([seed; KEY_LEN]),
        "test-library",
        "loans",
    )
}

proptest! {
    #[test]
    fn deterministic(seed in any::<u8>(), id in proptest::collection::vec(any::<u8>(), 0..64)) {
        let a = pseudonymizer(seed);
        let b = pseudonymizer(seed);
        prop_assert_eq!(a.pseudonymize(&id), a.pseudonymize(&id));
        prop_assert_eq!(a.pseudonymize(&id), b.pseudonymize(&id));
    }

    #[test]
    fn injective_on_a_sample(ids in proptest::collection::hash_set("[0-9A-Za-z-]{1,24}", 1..300)) {
        let p = pseudonymizer(1);
        let out: HashSet<_> = ids.iter().map(|id| p.pseudonymize(id.as_bytes())).collect();
        prop_assert_eq!(out.len(), ids.len());
    }

    // Ids of 6 or more bytes: a shorter byte string turns up inside 16 random
    // bytes often enough to make the property false by chance.
    #[test]
    fn output_does_not_contain_the_input(id in proptest::collection::vec(any::<u8>(), 6..40)) {
        let p = pseudonymizer(2).pseudonymize(&id);
        let out = p.as_bytes();
        prop_assert_ne!(&out[..], &id[..]);
        prop_assert!(!out.windows(id.len()).any(|w| w == &id[..]));
        prop_assert!(!id.windows(out.len()).any(|w| w == &out[..]));
    }
}
