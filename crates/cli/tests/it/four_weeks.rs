//! The four-week rule: after ingest, `status` tells the circulation system's
//! operators the newest loan day transferred and the day by which its
//! borrower-loan links must be deleted, marked overdue once past.

use std::process::Output;

use crate::{Sandbox, bin, ok, repo, text};

fn status_on(sb: &Sandbox, today: &str) -> String {
    let out: Output = bin()
        .arg("status")
        .arg("--pipeline")
        .arg(sb.pipeline())
        .args(["--today", today])
        .output()
        .unwrap();
    ok(&out);
    text(&out)
}

fn demo() -> std::path::PathBuf {
    repo().join("fixtures/demo/loans.csv")
}

#[test]
fn status_shows_the_delete_by_day_and_marks_it_overdue() {
    let sb = Sandbox::new(&demo(), "");
    ok(&sb.run("extract", &[]));
    let sealed = status_on(&sb, "2026-11-22");
    assert!(
        sealed.contains("not yet acknowledged as ingested"),
        "{sealed}"
    );
    ok(&sb.run("ingest", &[]));
    let s = status_on(&sb, "2026-11-22");
    assert!(
        s.contains("loans up to 2026-10-31, sealed 2026-11-22, ingested 2026-11-22; delete links by 2026-12-20"),
        "{s}"
    );
    assert!(!s.contains("OVERDUE"), "{s}");
    let late = status_on(&sb, "2026-12-21");
    assert!(
        late.contains("delete links by 2026-12-20: OVERDUE"),
        "{late}"
    );
    // The records hold dates and the batch id only.
    for entry in std::fs::read_dir(sb.path("outbox/links")).unwrap() {
        let json = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for key in v.as_object().unwrap().keys() {
            assert!(
                ["batch", "newest_loan_day", "sealed_on", "ingested_on"].contains(&key.as_str()),
                "{json}"
            );
        }
    }
}

#[test]
fn on_two_hosts_the_acknowledgement_comes_back_from_the_inbox() {
    let sb = Sandbox::new(&demo(), "");
    let toml = std::fs::read_to_string(sb.pipeline()).unwrap().replace(
        "outbox = \"outbox\"",
        "outbox = \"outbox\"\ninbox = \"inbox\"\ndelete_links_after_days = 14",
    );
    std::fs::write(sb.pipeline(), toml).unwrap();
    ok(&sb.run("extract", &[]));
    // The transfer tool moves the batch to the mining host's inbox.
    std::fs::create_dir_all(sb.path("inbox")).unwrap();
    for e in std::fs::read_dir(sb.path("outbox")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "batch") {
            std::fs::rename(&p, sb.path("inbox").join(p.file_name().unwrap())).unwrap();
        }
    }
    ok(&sb.run("ingest", &[]));
    assert!(sb.path("inbox/links").read_dir().unwrap().count() == 1);
    // Carried back beside the extractor's record, the two make one duty.
    for e in std::fs::read_dir(sb.path("inbox/links")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, sb.path("outbox/links").join(p.file_name().unwrap())).unwrap();
    }
    std::fs::remove_dir_all(sb.path("inbox/links")).unwrap();
    let s = status_on(&sb, "2026-11-22");
    assert!(
        s.contains("1 batches recorded; delete within 14 days"),
        "{s}"
    );
    assert!(
        s.contains("loans up to 2026-10-31") && s.contains("delete links by 2026-12-06"),
        "{s}"
    );
}
