//! Integration tests of the synthetic loan generator, through its public API.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::path::PathBuf;

use loans::LoanMonth;
use proptest::prelude::*;
use synth::{
    LOANS_HEADER, SynthError, SynthParams, SynthStats, borrower_id, demo_params, title_id,
    write_loans_csv, write_works_csv,
};

fn generate(p: &SynthParams) -> (Vec<u8>, SynthStats) {
    let mut out = Vec::new();
    let stats = write_loans_csv(p, &mut out).unwrap();
    (out, stats)
}

fn on_threads(n: usize, p: &SynthParams) -> (Vec<u8>, SynthStats) {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(|| generate(p))
}

/// One loans CSV row.
struct Row<'a> {
    borrower: &'a str,
    title: &'a str,
    date: &'a str,
    branch: &'a str,
    due: &'a str,
}

fn rows(csv: &str) -> Vec<Row<'_>> {
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(LOANS_HEADER));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 5, "{l}");
            Row {
                borrower: f[0],
                title: f[1],
                date: f[2],
                branch: f[3],
                due: f[4],
            }
        })
        .collect()
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/demo")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Several chunks over three months, so that threads really interleave.
fn multi_chunk_params() -> SynthParams {
    SynthParams::for_loans(120_000, 77, LoanMonth::new(2025, 12).unwrap(), 3)
}

#[test]
fn output_is_identical_on_one_and_two_threads() {
    let p = multi_chunk_params();
    let (one, s1) = on_threads(1, &p);
    let (two, s2) = on_threads(2, &p);
    assert_eq!(s1, s2);
    assert!(one == two, "outputs differ between 1 and 2 threads");
    let (other_seed, _) = on_threads(2, &SynthParams { seed: 78, ..p });
    assert_ne!(one, other_seed);
}

#[test]
fn params_are_respected() {
    let p = multi_chunk_params();
    let (out, stats) = generate(&p);
    let text = std::str::from_utf8(&out).unwrap();
    let rows = rows(text);
    assert_eq!(rows.len() as u64, p.loans);
    assert_eq!(stats.loans, p.loans);
    assert_eq!(stats.bytes, out.len() as u64);
    let borrowers: HashSet<&str> = rows.iter().map(|r| r.borrower).collect();
    let titles: HashSet<&str> = rows.iter().map(|r| r.title).collect();
    assert_eq!(stats.borrowers_used, borrowers.len() as u64);
    assert_eq!(stats.titles_used, titles.len() as u64);
    assert!(stats.borrowers_used <= u64::from(p.borrowers));
    assert!(stats.titles_used <= u64::from(p.titles));

    let months: HashSet<&str> = rows.iter().map(|r| &r.date[..7]).collect();
    let expected: HashSet<String> = (0..3)
        .map(|m| p.first_month.plus(m).unwrap().to_string())
        .collect();
    assert_eq!(months, expected.iter().map(String::as_str).collect());
    for r in &rows {
        assert_eq!(r.date.len(), 10);
        assert!(r.date <= "2026-02-28", "{} after the last month", r.date);
        assert!(
            r.due > r.date && r.due <= "2026-03-28",
            "{} due {}",
            r.date,
            r.due
        );
        assert!(!r.branch.is_empty() && r.branch.bytes().all(|b| b.is_ascii_lowercase()));
    }
    // Loans come month by month.
    assert!(rows.windows(2).all(|w| w[0].date[..7] <= w[1].date[..7]));
}

#[test]
fn every_id_is_the_id_of_a_valid_index() {
    let p = demo_params();
    let (out, _) = generate(&p);
    let text = String::from_utf8(out).unwrap();
    let known_b: HashSet<String> = (0..p.borrowers).map(|i| borrower_id(&p, i)).collect();
    let known_t: HashSet<String> = (0..p.titles).map(|j| title_id(&p, j)).collect();
    assert_eq!(known_b.len(), p.borrowers as usize);
    assert_eq!(known_t.len(), p.titles as usize);
    for r in rows(&text) {
        assert!(known_b.contains(r.borrower), "{}", r.borrower);
        assert!(known_t.contains(r.title), "{}", r.title);
    }
}

#[test]
fn zero_loans_give_just_the_header() {
    let p = SynthParams {
        loans: 0,
        ..demo_params()
    };
    let (out, stats) = generate(&p);
    assert_eq!(out, format!("{LOANS_HEADER}\n").into_bytes());
    assert_eq!(
        (stats.loans, stats.borrowers_used, stats.titles_used),
        (0, 0, 0)
    );
}

#[test]
fn months_up_to_the_end_of_the_calendar() {
    let p = SynthParams {
        loans: 500,
        first_month: LoanMonth::new(9999, 10).unwrap(),
        months: 2,
        ..demo_params()
    };
    let (out, _) = generate(&p);
    let text = String::from_utf8(out).unwrap();
    assert!(rows(&text).iter().all(|r| r.date.starts_with("9999-1")));
}

#[test]
fn a_failing_writer_gives_a_write_error() {
    struct Broken;
    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let p = demo_params();
    let err = write_loans_csv(&p, Broken).unwrap_err();
    assert!(matches!(err, SynthError::Write(_)));
    assert_eq!(err.to_string(), "cannot write synthetic data");
    assert!(matches!(
        write_works_csv(&p, Broken),
        Err(SynthError::Write(_))
    ));
}

#[test]
fn demo_distribution_is_heavy_tailed() {
    let (out, _) = generate(&demo_params());
    let text = String::from_utf8(out).unwrap();
    let rows = rows(&text);
    let share_of_top = |counts: HashMap<&str, u64>, fraction: f64| {
        let mut c: Vec<u64> = counts.into_values().collect();
        c.sort_unstable_by(|a, b| b.cmp(a));
        let top = ((c.len() as f64 * fraction).ceil() as usize).max(1);
        c[..top].iter().sum::<u64>() as f64 / rows.len() as f64
    };
    let mut by_borrower: HashMap<&str, u64> = HashMap::new();
    let mut by_title: HashMap<&str, u64> = HashMap::new();
    for r in &rows {
        *by_borrower.entry(r.borrower).or_default() += 1;
        *by_title.entry(r.title).or_default() += 1;
    }
    let most = *by_borrower.values().max().unwrap();
    let mut sorted: Vec<u64> = by_borrower.values().copied().collect();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    assert!(
        (200..1_000).contains(&most),
        "busiest borrower has {most} loans"
    );
    assert!(
        (3..=20).contains(&median),
        "median borrower has {median} loans"
    );
    let top_borrowers = share_of_top(by_borrower, 0.01);
    let top_titles = share_of_top(by_title, 0.10);
    assert!(
        top_borrowers >= 0.10,
        "top 1% of borrowers: {top_borrowers:.3}"
    );
    assert!(top_titles >= 0.40, "top 10% of titles: {top_titles:.3}");
    let distinct: HashSet<(&str, &str)> = rows.iter().map(|r| (r.borrower, r.title)).collect();
    assert!(distinct.len() < rows.len(), "some loans must be repeats");
}

/// Work pairs borrowed by at least `k` distinct borrowers in the demo's last
/// 12 months, each borrower contributing at most `cap` works (as the engine
/// does by default).
#[test]
fn demo_has_co_borrowing_structure() {
    let p = demo_params();
    let works_csv = String::from_utf8(fixture("works.csv")).unwrap();
    let work: HashMap<&str, &str> = works_csv
        .lines()
        .skip(1)
        .map(|l| l.split_once(',').unwrap())
        .collect();
    let (out, _) = generate(&p);
    let text = String::from_utf8(out).unwrap();
    let from = p.last_month().unwrap().plus(-11).unwrap().to_string();
    let mut sets: HashMap<&str, HashSet<&str>> = HashMap::new();
    for r in rows(&text) {
        if r.date[..7] >= *from {
            sets.entry(r.borrower).or_default().insert(work[r.title]);
        }
    }
    let (k, cap) = (5, 100);
    let mut pairs: HashMap<(&str, &str), u32> = HashMap::new();
    for set in sets.values() {
        let mut ws: Vec<&str> = set.iter().copied().collect();
        ws.sort_unstable();
        // A deterministic stand-in for the engine's hashed cap.
        ws.truncate(cap);
        for (a, x) in ws.iter().enumerate() {
            for y in &ws[a + 1..] {
                *pairs.entry((x, y)).or_default() += 1;
            }
        }
    }
    let qualifying = pairs.values().filter(|&&n| n >= k).count();
    assert!(qualifying >= 300, "{qualifying} pairs reach k = {k}");
}

#[test]
fn committed_demo_fixtures_are_up_to_date() {
    let p = demo_params();
    let (loans, _) = generate(&p);
    let mut works = Vec::new();
    write_works_csv(&p, &mut works).unwrap();
    // Plain asserts would print megabytes on failure.
    assert!(
        loans == fixture("loans.csv"),
        "fixtures/demo/loans.csv is stale: run `cargo run -p synth --example write_demo`"
    );
    assert!(
        works == fixture("works.csv"),
        "fixtures/demo/works.csv is stale: run `cargo run -p synth --example write_demo`"
    );
}

proptest! {
    #[test]
    fn ids_are_unique_per_index(seed: u64, i in 0..synth::MAX_ID_INDEX, j in 0..synth::MAX_ID_INDEX) {
        let p = SynthParams { seed, ..demo_params() };
        let (bi, bj) = (borrower_id(&p, i), borrower_id(&p, j));
        let (ti, tj) = (title_id(&p, i), title_id(&p, j));
        prop_assert_eq!(bi == bj, i == j);
        prop_assert_eq!(ti == tj, i == j);
        prop_assert!(bi.len() == 12 && bi.starts_with("SYN") && bi[3..].bytes().all(|b| b.is_ascii_digit()));
        prop_assert!(ti.len() == 13 && ti.starts_with("978") && ti.bytes().all(|b| b.is_ascii_digit()));
        let check: u32 = ti.bytes().enumerate().map(|(k, d)| u32::from(d - b'0') * if k % 2 == 0 { 1 } else { 3 }).sum();
        prop_assert_eq!(check % 10, 0);
    }

    #[test]
    fn neighbouring_borrowers_do_not_get_neighbouring_ids(seed: u64, i in 0u32..1_000_000) {
        let p = SynthParams { seed, ..demo_params() };
        let a: i64 = borrower_id(&p, i)[3..].parse().unwrap();
        let b: i64 = borrower_id(&p, i + 1)[3..].parse().unwrap();
        // Sequential ids would reveal registration order.
        prop_assert!((a - b).abs() > 1);
    }
}
