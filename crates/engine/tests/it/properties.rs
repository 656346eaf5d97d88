//! Properties of `build` on random small inputs.

use std::collections::HashMap;

use engine::{EngineParams, WEIGHT_ONE, build, count};
use loans::{Loans, Pseudonym};
use pipeline::Measure;
use proptest::prelude::*;

use crate::data::{DECAYS, arb_loans, arb_params, month};
use crate::reference::{reference, reference_withheld};
use crate::{canonical, check_invariants};

/// Support and weight of every counted pair by title ids (both orders), and
/// the borrowers of every title.
type Stats = (HashMap<(String, String), (u32, u64)>, HashMap<String, u32>);

fn stats(loans: &Loans, k: u32, cap: u32, time_decay: f64) -> Stats {
    let params = EngineParams {
        measure: Measure::Count,
        min_support: k,
        max_titles_per_borrower: cap,
        time_decay,
        max_related: u32::MAX,
    };
    let t = count(loans, &params).unwrap();
    let id = |i: u32| t.title_ids[i as usize].clone();
    let mut pairs = HashMap::new();
    for p in &t.pairs {
        pairs.insert((id(p.a), id(p.b)), (p.support, p.weight));
        pairs.insert((id(p.b), id(p.a)), (p.support, p.weight));
    }
    let totals = t
        .title_ids
        .iter()
        .cloned()
        .zip(t.title_borrowers.iter().copied())
        .collect();
    (pairs, totals)
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
    fn withheld_counts_equal_the_naive_reference_and_change_no_output(
        loans in arb_loans(),
        params in arb_params(),
    ) {
        let (related, w) = engine::build_with_stats(&loans, &params).unwrap();
        prop_assert_eq!(&related, &build(&loans, &params).unwrap());
        prop_assert_eq!(
            (w.capped_borrowers, w.capped_titles, w.titles_below_k, w.pairs_below_k),
            reference_withheld(&loans, &params)
        );
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
        // The borrower dictionary reversed as well.
        let last = loans.borrower_pseudonyms.len().saturating_sub(1);
        permuted.borrower_pseudonyms = loans.borrower_pseudonyms.iter().rev().copied().collect();
        for i in rows {
            permuted.borrowers.push((last - loans.borrowers[i] as usize) as u32);
            permuted.titles.push(new_of_old[loans.titles[i] as usize] as u32);
            permuted.months.push(loans.months[i]);
        }
        let a = build(&loans, &params).unwrap();
        let b = build(&permuted, &params).unwrap();
        prop_assert_eq!(a.borrowers, b.borrowers);
        prop_assert_eq!(canonical(&a), canonical(&b));
    }

    #[test]
    fn output_does_not_depend_on_the_pseudonyms(
        loans in arb_loans(),
        params in arb_params(),
        salt in any::<[u8; 16]>(),
    ) {
        // A fresh key maps every borrower to another pseudonym, one to one:
        // XOR with a constant is such a map.
        let mut rekeyed = loans.clone();
        for p in &mut rekeyed.borrower_pseudonyms {
            for (b, s) in p.0.iter_mut().zip(salt) {
                *b ^= s;
            }
        }
        prop_assert_eq!(build(&rekeyed, &params).unwrap(), build(&loans, &params).unwrap());
    }

    #[test]
    fn borrowers_without_a_loan_in_the_window_change_nothing(
        loans in arb_loans(),
        params in arb_params(),
        extra in prop::collection::vec(any::<[u8; 16]>(), 1..20),
        at_front in any::<bool>(),
    ) {
        // A window made from a batch's loans in memory shares its borrower
        // dictionary, which holds borrowers of other months too: they must
        // not count as borrowers (the LLR's n) or change a list.
        let mut wider = loans.clone();
        let known: std::collections::HashSet<_> = loans.borrower_pseudonyms.iter().copied().collect();
        let mut unused: Vec<Pseudonym> = Vec::new();
        for p in extra.into_iter().map(Pseudonym) {
            if !known.contains(&p) && !unused.contains(&p) {
                unused.push(p);
            }
        }
        if at_front {
            let shift = unused.len() as u32;
            unused.extend_from_slice(&wider.borrower_pseudonyms);
            wider.borrower_pseudonyms = unused;
            for b in &mut wider.borrowers {
                *b += shift;
            }
        } else {
            wider.borrower_pseudonyms.extend(unused);
        }
        let (a, b) = (build(&loans, &params).unwrap(), build(&wider, &params).unwrap());
        prop_assert_eq!(a.borrowers, b.borrowers);
        prop_assert_eq!(a, b);
    }

    #[test]
    fn one_heavy_borrower_moves_each_pair_and_title_by_at_most_one_borrower(
        loans in arb_loans(),
        k in 2u32..4,
        cap in prop_oneof![1u32..20, 900u32..1200],
        d in 0usize..4,
        heavy_month in 1u32..=12,
    ) {
        let gamma = DECAYS[d];
        let (before, n_before) = stats(&loans, k, cap, gamma);
        let mut heavy = loans.clone();
        let mut extra = Loans { borrower_pseudonyms: vec![Pseudonym([0xee; 16])], ..Loans::default() };
        for i in 0..1000 {
            // The heavy borrower reads every existing title and new ones up to 1,000.
            let id = heavy.title_ids.get(i).cloned().unwrap_or_else(|| format!("new{i}"));
            extra.title_ids.push(id.clone());
            extra.work_ids.push(heavy.work_ids.get(i).cloned().unwrap_or(id));
            extra.borrowers.push(0);
            extra.titles.push(i as u32);
            extra.months.push(month(if i % 2 == 0 { heavy_month } else { 3 }));
        }
        heavy.append(&extra);
        let (after, n_after) = stats(&heavy, k, cap, gamma);
        for (pair, &(s, w)) in &before {
            let (t, v) = after.get(pair).copied().unwrap_or((0, 0));
            prop_assert!(t == s || t == s + 1, "{pair:?}: support {s} -> {t}");
            prop_assert!(v >= w && v - w <= WEIGHT_ONE, "{pair:?}: weight {w} -> {v}");
        }
        for (pair, &(t, _)) in &after {
            prop_assert!(before.contains_key(pair) || t == k, "{pair:?} new at {t}");
        }
        for (title, &n) in &n_before {
            let m = n_after[title];
            prop_assert!(m == n || m == n + 1, "{title}: {n} -> {m}");
        }
    }
}
