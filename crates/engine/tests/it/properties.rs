//! Properties of `build` on random small inputs.

use std::collections::HashMap;

use engine::{EngineParams, build};
use loans::{Loans, Pseudonym};
use pipeline::Measure;
use proptest::prelude::*;

use crate::data::{arb_loans, arb_params, month};
use crate::reference::reference;
use crate::{canonical, check_invariants};

fn supports(loans: &Loans, k: u32, cap: u32) -> HashMap<(String, String), u32> {
    let params = EngineParams {
        measure: Measure::Count,
        min_support: k,
        max_titles_per_borrower: cap,
        max_related: u32::MAX,
    };
    let r = build(loans, &params).unwrap();
    r.pairs
        .iter()
        .map(|p| {
            (
                (
                    r.title_ids[p.a as usize].clone(),
                    r.title_ids[p.b as usize].clone(),
                ),
                p.support,
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fast_kernel_equals_naive_reference(loans in arb_loans(), params in arb_params()) {
        let fast = build(&loans, &params).unwrap();
        prop_assert_eq!(&fast, &reference(&loans, &params));
        check_invariants(&loans, &params, &fast);
    }

    #[test]
    fn repeat_loans_change_nothing(loans in arb_loans(), params in arb_params()) {
        let mut doubled = loans.clone();
        doubled.append(&loans);
        prop_assert_eq!(build(&doubled, &params).unwrap(), build(&loans, &params).unwrap());
    }

    #[test]
    fn row_and_dictionary_order_change_nothing(
        loans in arb_loans(),
        params in arb_params(),
        seed in any::<u64>(),
    ) {
        // Reverse-and-rotate the dictionary and permute rows, remapping indices.
        let n = loans.title_ids.len();
        let new_of_old: Vec<usize> = (0..n).map(|t| (n - 1 - t + seed as usize % n) % n).collect();
        let mut permuted = Loans {
            title_ids: vec![String::new(); n],
            work_ids: vec![String::new(); n],
            ..Loans::default()
        };
        for (old, &new) in new_of_old.iter().enumerate() {
            permuted.title_ids[new] = loans.title_ids[old].clone();
            permuted.work_ids[new] = loans.work_ids[old].clone();
        }
        let mut rows: Vec<usize> = (0..loans.len()).collect();
        rows.sort_by_key(|&i| (i as u64).wrapping_mul(seed | 1).rotate_left(17));
        for i in rows {
            permuted.pseudonyms.push(loans.pseudonyms[i]);
            permuted.titles.push(new_of_old[loans.titles[i] as usize] as u32);
            permuted.months.push(loans.months[i]);
        }
        let a = build(&loans, &params).unwrap();
        let b = build(&permuted, &params).unwrap();
        prop_assert_eq!(a.borrowers, b.borrowers);
        prop_assert_eq!(canonical(&a), canonical(&b));
    }

    #[test]
    fn one_heavy_borrower_moves_each_support_by_at_most_one(
        loans in arb_loans(),
        k in 2u32..4,
        cap in prop_oneof![1u32..20, 900u32..1200],
    ) {
        let before = supports(&loans, k, cap);
        let mut heavy = loans.clone();
        let mut extra = Loans::default();
        for i in 0..1000 {
            // The heavy borrower reads every existing title and new ones up to 1,000.
            let id = heavy.title_ids.get(i).cloned().unwrap_or_else(|| format!("new{i}"));
            extra.title_ids.push(id.clone());
            extra.work_ids.push(heavy.work_ids.get(i).cloned().unwrap_or(id));
            extra.pseudonyms.push(Pseudonym([0xee; 16]));
            extra.titles.push(i as u32);
            extra.months.push(month(3));
        }
        heavy.append(&extra);
        let after = supports(&heavy, k, cap);
        for (pair, &s) in &before {
            let t = after.get(pair).copied();
            prop_assert!(t == Some(s) || t == Some(s + 1), "{pair:?}: {s} -> {t:?}");
        }
        for (pair, &t) in &after {
            prop_assert!(before.contains_key(pair) || t == k, "{pair:?} new at {t}");
        }
    }
}
