//! Hand-worked examples and error cases.

use engine::{EngineError, EngineParams, build, count, decay_table, llr};
use loans::{Loans, LoansError, Pseudonym};
use pipeline::{EngineSettings, Measure};

use crate::data::{loans_from, month};
use crate::reference::tie_key;

/// Parameters without time decay, so the worked counts are plain counts.
fn params(measure: Measure, k: u32, cap: u32, n: u32) -> EngineParams {
    EngineParams {
        measure,
        min_support: k,
        max_titles_per_borrower: cap,
        time_decay: 1.0,
        max_related: n,
    }
}

/// Four borrowers; "C" is another edition of "A"; borrower 1 borrows A twice.
///
/// Borrowers per title: A {1,2,3}, B {1,2,3,4}, C {1}, D {3,4}.
/// Supports: AB 3, BD 2, AD 1, BC 1, AC same work.
fn library() -> Loans {
    let mut loans = loans_from(&[
        (1, "A"),
        (1, "B"),
        (1, "C"),
        (1, "A"),
        (2, "A"),
        (2, "B"),
        (3, "D"),
        (3, "A"),
        (3, "B"),
        (4, "B"),
        (4, "D"),
    ]);
    let c = loans.title_ids.iter().position(|t| t == "C").unwrap();
    loans.work_ids[c] = "A".into();
    loans
}

fn triples(r: &engine::Related) -> Vec<(&str, &str, u32)> {
    r.pairs
        .iter()
        .map(|p| {
            (
                r.title_ids[p.a as usize].as_str(),
                r.title_ids[p.b as usize].as_str(),
                p.support,
            )
        })
        .collect()
}

#[test]
fn counts_distinct_borrowers_per_pair_both_ways() {
    let r = build(&library(), &params(Measure::Count, 2, 10, 10)).unwrap();
    assert_eq!(r.borrowers, 4);
    assert_eq!(
        triples(&r),
        [("A", "B", 3), ("B", "A", 3), ("B", "D", 2), ("D", "B", 2)]
    );
    assert!(r.pairs.iter().all(|p| p.score == f64::from(p.support)));
}

#[test]
fn llr_uses_borrower_contingency_table() {
    let r = build(&library(), &params(Measure::Llr, 2, 10, 10)).unwrap();
    // A -> B: k11 = 3, k12 = n_A - 3 = 0, k21 = n_B - 3 = 1, k22 = 4 - 3 - 4 + 3 = 0.
    let ab = r
        .pairs
        .iter()
        .find(|p| r.title_ids[p.a as usize] == "A")
        .unwrap();
    assert_eq!(ab.score, llr(3, 0, 1, 0));
    // B -> D: k11 = 2, k12 = 4 - 2, k21 = 2 - 2, k22 = 4 - 4 - 2 + 2.
    let bd = r
        .pairs
        .iter()
        .find(|p| r.title_ids[p.a as usize] == "B" && r.title_ids[p.b as usize] == "D")
        .unwrap();
    assert_eq!(bd.score, llr(2, 2, 0, 0));
}

#[test]
fn keeps_only_the_best_n_per_title() {
    let r = build(&library(), &params(Measure::Count, 2, 10, 1)).unwrap();
    assert_eq!(triples(&r), [("A", "B", 3), ("B", "A", 3), ("D", "B", 2)]);
}

#[test]
fn ties_fall_to_the_related_title_id() {
    // Borrowers 1 and 2 both borrow X, Y and Z: X's candidates tie on
    // every score, so the related title id decides, in byte order.
    let loans = loans_from(&[(1, "X"), (1, "Z"), (1, "Y"), (2, "Z"), (2, "Y"), (2, "X")]);
    for m in crate::data::MEASURES {
        let r = build(&loans, &params(m, 2, 10, 10)).unwrap();
        assert_eq!(
            triples(&r),
            [
                ("X", "Y", 2),
                ("X", "Z", 2),
                ("Y", "X", 2),
                ("Y", "Z", 2),
                ("Z", "X", 2),
                ("Z", "Y", 2)
            ]
        );
    }
}

#[test]
fn higher_support_wins_a_score_tie() {
    // Lift of a -> b is k11 * N / (n_a * n_b). With N = 8:
    // P -> Q: k11 = 2, n_P = 4, n_Q = 2 -> 2;  P -> R: k11 = 4, n_R = 4 -> 2.
    let loans = loans_from(&[
        (1, "P"),
        (1, "Q"),
        (1, "R"),
        (2, "P"),
        (2, "Q"),
        (2, "R"),
        (3, "P"),
        (3, "R"),
        (4, "P"),
        (4, "R"),
        (5, "S"),
        (6, "S"),
        (7, "S"),
        (8, "S"),
    ]);
    let r = build(&loans, &params(Measure::Lift, 2, 10, 10)).unwrap();
    let p: Vec<_> = triples(&r).into_iter().filter(|t| t.0 == "P").collect();
    assert_eq!(p, [("P", "R", 4), ("P", "Q", 2)]);
    assert_eq!(r.pairs[0].score, r.pairs[1].score);
}

#[test]
fn cap_keeps_the_most_recent_titles_and_breaks_ties_by_title() {
    // Borrower 7 borrowed t1..t6 in months 1..6 and t7, t8 in month 6: with
    // cap 4 the most recent are t6, t7, t8 (month 6) and t5 (month 5).
    // Borrower 8 borrowed all eight in month 1, so each kept pair has support 2.
    let ids = ["t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"];
    let mut loans = loans_from(&ids.iter().map(|&t| (7, t)).collect::<Vec<_>>());
    for (i, m) in loans.months.iter_mut().enumerate() {
        *m = month((i as u32 + 1).min(6));
    }
    loans.append(&loans_from(
        &ids.iter().map(|&t| (8, t)).collect::<Vec<_>>(),
    ));
    let r = build(&loans, &params(Measure::Count, 2, 4, 10)).unwrap();
    let kept7 = ["t5", "t6", "t7", "t8"];
    // Borrower 8's eight titles share one month: the tie key decides.
    let mut by_key: Vec<(u64, &str)> = ids.iter().map(|&t| (tie_key(t), t)).collect();
    by_key.sort();
    let kept8: Vec<&str> = by_key.iter().take(4).map(|&(_, t)| t).collect();
    let mut expected: Vec<(&str, &str, u32)> = Vec::new();
    for &a in &ids {
        for &b in &ids {
            if a != b
                && [&kept7[..], &kept8[..]]
                    .iter()
                    .all(|k| k.contains(&a) && k.contains(&b))
            {
                expected.push((a, b, 2));
            }
        }
    }
    assert!(expected.len() >= 2, "{kept8:?}");
    assert_eq!(triples(&r), expected);
}

#[test]
fn co_borrowing_decays_with_the_months_between_the_loans() {
    // Three borrowers of A and B: in the same month, a month apart, two
    // months apart. With gamma 0.5 the weight is 1 + 0.5 + 0.25 borrowers.
    let mut loans = loans_from(&[(1, "A"), (1, "B"), (2, "A"), (2, "B"), (3, "A"), (3, "B")]);
    loans.months = vec![month(3), month(3), month(3), month(4), month(5), month(3)];
    let mut p = params(Measure::Count, 2, 10, 10);
    p.time_decay = 0.5;
    let table = count(&loans, &p).unwrap();
    assert_eq!(table.pairs.len(), 1);
    assert_eq!(table.pairs[0].support, 3);
    assert_eq!(table.pairs[0].weight, 65536 + 32768 + 16384);
    assert_eq!(table.title_borrowers, [3, 3]);
    let r = build(&loans, &p).unwrap();
    assert_eq!(r.pairs[0].score, 1.75);
    assert_eq!(r.pairs[0].support, 3);
    // Jaccard of the weighted co-borrowing: 1.75 / (3 + 3 - 1.75).
    p.measure = Measure::Jaccard;
    assert_eq!(build(&loans, &p).unwrap().pairs[0].score, 1.75 / 4.25);
}

#[test]
fn decay_table_is_rounded_fixed_point_and_stops_at_zero() {
    assert_eq!(decay_table(1.0, 3), [65536; 4]);
    assert_eq!(decay_table(0.5, 2), [65536, 32768, 16384]);
    // 65536 * 0.1^g: 6553.6, 655.36, 65.536, 6.5536, 0.65536, 0.065536.
    assert_eq!(decay_table(0.1, 100), [65536, 6554, 655, 66, 7, 1]);
}

#[test]
fn a_gap_past_the_decay_table_weighs_nothing_but_still_counts_for_k() {
    let mut loans = loans_from(&[(1, "A"), (1, "B"), (2, "A"), (2, "B")]);
    loans.months = vec![month(1), month(12), month(1), month(12)];
    let mut p = params(Measure::Jaccard, 2, 10, 10);
    p.time_decay = 0.1;
    let table = count(&loans, &p).unwrap();
    assert_eq!((table.pairs[0].support, table.pairs[0].weight), (2, 0));
    let r = build(&loans, &p).unwrap();
    assert_eq!(r.pairs.len(), 2);
    assert!(r.pairs.iter().all(|x| x.score == 0.0 && x.support == 2));
}

#[test]
fn cap_of_one_relates_nothing() {
    let r = build(&library(), &params(Measure::Count, 2, 1, 10)).unwrap();
    assert!(r.pairs.is_empty());
    assert_eq!(r.borrowers, 4);
}

#[test]
fn empty_input_gives_empty_output() {
    let r = build(&Loans::default(), &params(Measure::Llr, 2, 10, 10)).unwrap();
    assert_eq!(r.borrowers, 0);
    assert!(r.pairs.is_empty() && r.title_ids.is_empty());
}

#[test]
fn params_come_from_settings() {
    let mut s = EngineSettings::default();
    s.measure = Measure::Cosine;
    s.min_support = 7;
    s.max_titles_per_borrower = 50;
    s.time_decay = 0.25;
    s.max_related = 3;
    let mut expected = params(Measure::Cosine, 7, 50, 3);
    expected.time_decay = 0.25;
    assert_eq!(EngineParams::from(&s), expected);
}

#[test]
fn bad_params_are_typed_errors() {
    let loans = library();
    let cases = [
        (
            params(Measure::Llr, 1, 10, 10),
            EngineError::MinSupport { got: 1, floor: 2 },
        ),
        (params(Measure::Llr, 2, 0, 10), EngineError::ZeroCap),
        (params(Measure::Llr, 2, 10, 0), EngineError::ZeroMaxRelated),
    ];
    let mut cases = cases.to_vec();
    for gamma in [0.0, -0.5, 1.5, f64::NAN, f64::INFINITY] {
        let mut p = params(Measure::Llr, 2, 10, 10);
        p.time_decay = gamma;
        cases.push((p, EngineError::TimeDecay));
    }
    for (p, expected) in cases {
        let err = build(&loans, &p).unwrap_err();
        assert_eq!(err, expected);
        let msg = err.to_string();
        assert!(
            !msg.ends_with('.') && msg.chars().next().unwrap().is_lowercase(),
            "{msg}"
        );
    }
}

#[test]
fn bad_loans_are_typed_errors() {
    let mut ragged = library();
    ragged.months.push(month(2));
    let err = build(&ragged, &params(Measure::Llr, 2, 10, 10)).unwrap_err();
    assert!(matches!(
        err,
        EngineError::InvalidLoans(LoansError::RaggedColumns { .. })
    ));
    let mut dangling = library();
    dangling.titles[0] = 99;
    let err = build(&dangling, &params(Measure::Llr, 2, 10, 10)).unwrap_err();
    assert!(matches!(
        err,
        EngineError::InvalidLoans(LoansError::TitleOutOfRange { .. })
    ));
    let mut no_borrower = library();
    no_borrower.borrowers[0] = no_borrower.borrower_pseudonyms.len() as u32;
    let err = build(&no_borrower, &params(Measure::Llr, 2, 10, 10)).unwrap_err();
    assert!(matches!(
        err,
        EngineError::InvalidLoans(LoansError::BorrowerOutOfRange { .. })
    ));
    // One borrower under two indices would count twice, past what k promises.
    let mut twice = library();
    let first = twice.borrower_pseudonyms[0];
    twice.borrower_pseudonyms.push(first);
    let err = build(&twice, &params(Measure::Llr, 2, 10, 10)).unwrap_err();
    assert_eq!(
        err,
        EngineError::InvalidLoans(LoansError::DuplicatePseudonym)
    );
}

#[test]
fn support_beyond_16_bits_is_exact() {
    // 70,000 borrowers of X and Y: the kernel's 16-bit counters overflow.
    let n = 70_000u32;
    let mut loans = Loans {
        title_ids: vec!["X".into(), "Y".into(), "Z".into()],
        work_ids: vec!["X".into(), "Y".into(), "Z".into()],
        ..Loans::default()
    };
    for i in 0..n {
        let mut p = [0u8; 16];
        p[..4].copy_from_slice(&i.to_le_bytes());
        // Every third borrower also reads Z.
        let titles: &[u32] = if i % 3 == 0 { &[0, 1, 2] } else { &[1, 0] };
        loans.borrower_pseudonyms.push(Pseudonym(p));
        for &t in titles {
            loans.borrowers.push(i);
            loans.titles.push(t);
            loans.months.push(month(5));
        }
    }
    let r = build(&loans, &params(Measure::Count, 2, 10, 10)).unwrap();
    let z = n.div_ceil(3);
    assert_eq!(
        triples(&r),
        [
            ("X", "Y", n),
            ("X", "Z", z),
            ("Y", "X", n),
            ("Y", "Z", z),
            ("Z", "X", z),
            ("Z", "Y", z)
        ]
    );
}
