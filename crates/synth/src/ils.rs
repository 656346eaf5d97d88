//! Synthetic circulation databases and exports of three real ILSs (Koha,
//! Evergreen, FOLIO), for the presets' integration tests.
//!
//! One seeded [`Circulation`] (patrons, bib records with one to three
//! copies, loans with renewals and anonymized returns) is written as each
//! system stores it: SQL inserts for the schema subsets in
//! `fixtures/ils/<ils>/schema.sql`, and the file exports the `-file`
//! presets read. [`Circulation::expected`] says what an extraction must
//! find, so tests compare against the generator rather than hard-coded
//! numbers. Nothing here is committed output: CI generates it.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use loans::LoanMonth;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The three systems.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ils {
    /// Koha (MariaDB or MySQL).
    Koha,
    /// Evergreen (PostgreSQL).
    Evergreen,
    /// FOLIO (PostgreSQL, JSONB records).
    Folio,
}

impl Ils {
    /// Every system.
    pub const ALL: [Ils; 3] = [Ils::Koha, Ils::Evergreen, Ils::Folio];

    /// Lower-case name, as in the preset and fixture names.
    pub fn name(self) -> &'static str {
        match self {
            Ils::Koha => "koha",
            Ils::Evergreen => "evergreen",
            Ils::Folio => "folio",
        }
    }
}

/// The shape of a synthetic circulation database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IlsParams {
    /// Seed of every random choice.
    pub seed: u64,
    /// Registered patrons.
    pub patrons: u32,
    /// Bib records (titles).
    pub bibs: u32,
    /// Loans, renewals not counted.
    pub loans: u32,
    /// Month of the first loans.
    pub first_month: LoanMonth,
    /// Months covered.
    pub months: u32,
}

/// The data CI loads into its database servers.
pub fn ci_params() -> IlsParams {
    IlsParams {
        seed: 2026,
        patrons: 300,
        bibs: 240,
        loans: 3000,
        first_month: LoanMonth::new(2024, 1).expect("2024-01 is a month"),
        months: 18,
    }
}

/// One loan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loan {
    /// Patron index.
    pub patron: u32,
    /// Item (copy) index.
    pub item: u32,
    /// Month of the loan.
    pub month: LoanMonth,
    /// Day of the month (1 to 28).
    pub day: u8,
    /// Second of the day (UTC).
    pub second: u32,
    /// Renewals of the loan.
    pub renewals: u8,
    /// Returned and anonymized: the patron is no longer recorded (Koha,
    /// FOLIO); Evergreen moves such loans out of `action.circulation`.
    pub anonymized: bool,
    /// Still on loan (Koha's `issues` rather than `old_issues`).
    pub current: bool,
}

/// A generated circulation database.
#[derive(Debug, Clone)]
pub struct Circulation {
    /// The parameters.
    pub params: IlsParams,
    /// Bib index of each item.
    pub item_bib: Vec<u32>,
    /// The loans in time order.
    pub loans: Vec<Loan>,
}

/// What an extraction of one system's data must find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Loans with a borrower (valid records, repeats included).
    pub kept: u64,
    /// Valid records that repeat an earlier one's patron, bib record and
    /// month, which extraction merges.
    pub repeated: u64,
    /// Loans rejected for having no borrower (anonymized).
    pub missing_borrower: u64,
    /// Distinct patrons among kept loans.
    pub borrowers: u64,
    /// Distinct bib records among kept loans.
    pub titles: u64,
    /// Distinct months among kept loans.
    pub months: BTreeSet<LoanMonth>,
}

/// The work of bib `b`: every tenth bib is a second edition of the one
/// before it.
pub fn work_of(b: u32) -> u32 {
    if b % 10 == 1 { b - 1 } else { b }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Circulation {
    /// Generates the database for `params`; the same parameters give the
    /// same data.
    pub fn generate(params: &IlsParams) -> Circulation {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        let mut item_bib = Vec::new();
        for b in 0..params.bibs.max(1) {
            for _ in 0..rng.random_range(1..=3u32) {
                item_bib.push(b);
            }
        }
        let items = item_bib.len() as u32;
        let months = params.months.max(1);
        let last = params
            .first_month
            .plus(months as i32 - 1)
            .unwrap_or(params.first_month);
        let mut loans: Vec<Loan> = (0..params.loans)
            .map(|_| {
                let u: f64 = rng.random();
                let v: f64 = rng.random();
                let month = params
                    .first_month
                    .plus(rng.random_range(0..months) as i32)
                    .unwrap_or(params.first_month);
                let renewals = match rng.random_range(0..20u8) {
                    0 => 2,
                    1..=3 => 1,
                    _ => 0,
                };
                Loan {
                    patron: ((u * u * f64::from(params.patrons.max(1))) as u32)
                        .min(params.patrons.max(1) - 1),
                    item: ((v * v * f64::from(items)) as u32).min(items - 1),
                    month,
                    day: rng.random_range(1..=28u8),
                    second: 8 * 3600 + rng.random_range(0..12 * 3600u32),
                    renewals,
                    anonymized: month != last && rng.random_bool(0.05),
                    current: false,
                }
            })
            .collect();
        loans.sort_by_key(|l| (l.month, l.day, l.second));
        let mut on_loan = vec![false; items as usize];
        for loan in loans.iter_mut().rev() {
            if loan.month == last && !loan.anonymized && !on_loan[loan.item as usize] {
                on_loan[loan.item as usize] = true;
                loan.current = true;
            }
        }
        Circulation {
            params: params.clone(),
            item_bib,
            loans,
        }
    }

    /// What extracting `ils`'s database or export must give.
    pub fn expected(&self, ils: Ils) -> Expected {
        let mut e = Expected {
            kept: 0,
            repeated: 0,
            missing_borrower: 0,
            borrowers: 0,
            titles: 0,
            months: BTreeSet::new(),
        };
        let mut patrons = BTreeSet::new();
        let mut bibs = BTreeSet::new();
        let mut seen = BTreeSet::new();
        for l in &self.loans {
            if l.anonymized {
                if ils != Ils::Evergreen {
                    e.missing_borrower += 1;
                }
                continue;
            }
            e.kept += 1;
            if !seen.insert((l.patron, self.item_bib[l.item as usize], l.month)) {
                e.repeated += 1;
            }
            patrons.insert(l.patron);
            bibs.insert(self.item_bib[l.item as usize]);
            e.months.insert(l.month);
        }
        e.borrowers = patrons.len() as u64;
        e.titles = bibs.len() as u64;
        e
    }

    /// The bib record of a loan.
    fn bib(&self, l: &Loan) -> u32 {
        self.item_bib.get(l.item as usize).copied().unwrap_or(0)
    }

    /// A stable UUID (version 4 layout) for object `n` of `kind`.
    fn uuid(&self, kind: u64, n: u32) -> String {
        let a = splitmix(self.params.seed ^ (kind << 40) ^ u64::from(n));
        let b = splitmix(a);
        format!(
            "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 52) & 0xfff,
            b & 0xffff_ffff_ffff
        )
    }

    /// Writes everything for `ils` into `dir`: `data.sql` (inserts for its
    /// schema subset) and its file export(s).
    pub fn write(&self, ils: Ils, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("data.sql"), self.sql(ils))?;
        match ils {
            Ils::Koha => std::fs::write(dir.join("loans.csv"), self.koha_csv())?,
            Ils::Evergreen => {
                std::fs::write(dir.join("loans.csv"), self.evergreen_csv())?;
                std::fs::write(dir.join("works.csv"), self.evergreen_works_csv())?;
            }
            Ils::Folio => {
                std::fs::write(dir.join("loans.ndjson"), self.folio_ndjson())?;
                std::fs::write(dir.join("loan-storage.ndjson"), self.folio_storage_ndjson())?;
                std::fs::write(dir.join("items.csv"), self.folio_items_csv())?;
            }
        }
        Ok(())
    }

    /// Inserts for the schema subset of `ils`.
    pub fn sql(&self, ils: Ils) -> String {
        match ils {
            Ils::Koha => self.koha_sql(),
            Ils::Evergreen => self.evergreen_sql(),
            Ils::Folio => self.folio_sql(),
        }
    }

    fn koha_sql(&self) -> String {
        let p = &self.params;
        let mut s = Inserts::default();
        s.table(
            "borrowers (borrowernumber, cardnumber, surname, firstname, branchcode, categorycode, dateenrolled)",
            (0..p.patrons).map(|i| {
                format!(
                    "({}, '{}', 'Surname{i}', 'Given{i}', 'CPL', 'PT', '2020-01-01')",
                    i + 1,
                    koha_card(i)
                )
            }),
        );
        s.table(
            "biblio (biblionumber, author, title, datecreated)",
            (0..p.bibs).map(|b| format!("({}, 'Author {b}', 'Title {b}', '2019-06-01')", b + 1)),
        );
        s.table(
            "items (itemnumber, biblionumber, barcode, homebranch, itype)",
            self.item_bib
                .iter()
                .enumerate()
                .map(|(i, b)| format!("({}, {}, '3{:012}', 'CPL', 'BK')", i + 1, b + 1, i + 1)),
        );
        let row = |n: usize, l: &Loan| {
            let borrower = if l.anonymized {
                "NULL".to_owned()
            } else {
                (l.patron + 1).to_string()
            };
            format!(
                "({}, {borrower}, {}, '{}', 'CPL', {}, {}, '{}')",
                n + 1,
                l.item + 1,
                stamp(l.month.plus(1).unwrap_or(l.month), l.day, l.second, ' '),
                if l.current {
                    "NULL".to_owned()
                } else {
                    format!("'{}'", stamp(l.month, l.day.min(27) + 1, l.second, ' '))
                },
                l.renewals,
                stamp(l.month, l.day, l.second, ' ')
            )
        };
        let cols = "(issue_id, borrowernumber, itemnumber, date_due, branchcode, returndate, renewals_count, issuedate)";
        let numbered: Vec<(usize, &Loan)> = self.loans.iter().enumerate().collect();
        s.table(
            &format!("issues {cols}"),
            numbered
                .iter()
                .filter(|(_, l)| l.current)
                .map(|(n, l)| row(*n, l)),
        );
        s.table(
            &format!("old_issues {cols}"),
            numbered
                .iter()
                .filter(|(_, l)| !l.current)
                .map(|(n, l)| row(*n, l)),
        );
        s.table(
            "statistics (datetime, branch, type, itemnumber, itemtype, borrowernumber)",
            self.loans.iter().flat_map(|l| {
                let borrower = if l.anonymized {
                    "NULL".to_owned()
                } else {
                    (l.patron + 1).to_string()
                };
                let issue = format!(
                    "('{}', 'CPL', 'issue', {}, 'BK', {borrower})",
                    stamp(l.month, l.day, l.second, ' '),
                    l.item + 1
                );
                let renewals = (0..l.renewals).map(move |r| {
                    format!(
                        "('{}', 'CPL', 'renew', {}, 'BK', {borrower})",
                        stamp(l.month, l.day, l.second + 60 * (u32::from(r) + 1), ' '),
                        l.item + 1
                    )
                });
                std::iter::once(issue).chain(renewals.collect::<Vec<_>>())
            }),
        );
        s.0
    }

    fn evergreen_sql(&self) -> String {
        let p = &self.params;
        let mut s = Inserts::default();
        s.table(
            "actor.usr (id, card, usrname, family_name, first_given_name, home_ou)",
            (0..p.patrons).map(|i| {
                format!(
                    "({}, {}, 'user{i}', 'Family{i}', 'Given{i}', 4)",
                    i + 1,
                    i + 1
                )
            }),
        );
        s.table(
            "actor.card (id, usr, barcode)",
            (0..p.patrons).map(|i| format!("({}, {}, '2{:013}')", i + 1, i + 1, i + 1)),
        );
        s.table(
            "biblio.record_entry (id, marc)",
            (0..p.bibs).map(|b| format!("({}, '<record/>')", b + 1)),
        );
        let works: BTreeSet<u32> = (0..p.bibs).map(work_of).collect();
        s.table(
            "metabib.metarecord (id, fingerprint, master_record)",
            works
                .iter()
                .map(|w| format!("({}, 'fp{w}', {})", w + 1, w + 1)),
        );
        s.table(
            "metabib.metarecord_source_map (id, metarecord, source)",
            (0..p.bibs).map(|b| format!("({}, {}, {})", b + 1, work_of(b) + 1, b + 1)),
        );
        s.table(
            "asset.call_number (id, record, owning_lib, label)",
            (0..p.bibs).map(|b| format!("({}, {}, 4, 'FIC {b}')", b + 1, b + 1)),
        );
        s.table(
            "asset.copy (id, call_number, circ_lib, barcode)",
            self.item_bib
                .iter()
                .enumerate()
                .map(|(i, b)| format!("({}, {}, 4, '3{:012}')", i + 1, b + 1, i + 1)),
        );
        let mut circs = Vec::new();
        let mut id = 0u32;
        for l in self.loans.iter().filter(|l| !l.anonymized) {
            id += 1;
            let first = id;
            let start = stamp(l.month, l.day, l.second, ' ');
            let due = stamp(l.month.plus(1).unwrap_or(l.month), l.day, l.second, ' ');
            circs.push(format!(
                "({id}, {}, '{start}+00', {}, 4, '{due}+00', NULL)",
                l.patron + 1,
                l.item + 1
            ));
            let mut parent = first;
            for r in 0..l.renewals {
                id += 1;
                let renewed = stamp(l.month, l.day, l.second + 600 * (u32::from(r) + 1), ' ');
                circs.push(format!(
                    "({id}, {}, '{renewed}+00', {}, 4, '{due}+00', {parent})",
                    l.patron + 1,
                    l.item + 1
                ));
                parent = id;
            }
        }
        s.table(
            "action.circulation (id, usr, xact_start, target_copy, circ_lib, due_date, parent_circ)",
            circs.into_iter(),
        );
        s.0
    }

    fn folio_sql(&self) -> String {
        let p = &self.params;
        let mut s = Inserts::default();
        s.table(
            "diku_mod_inventory_storage.instance (id, jsonb)",
            (0..p.bibs).map(|b| {
                let id = self.uuid(1, b);
                format!("('{id}', '{{\"id\": \"{id}\", \"title\": \"Title {b}\"}}')")
            }),
        );
        s.table(
            "diku_mod_inventory_storage.holdings_record (id, jsonb, instanceid)",
            (0..p.bibs).map(|b| {
                let (id, instance) = (self.uuid(2, b), self.uuid(1, b));
                format!(
                    "('{id}', '{{\"id\": \"{id}\", \"instanceId\": \"{instance}\"}}', '{instance}')"
                )
            }),
        );
        s.table(
            "diku_mod_inventory_storage.item (id, jsonb, holdingsrecordid)",
            self.item_bib.iter().enumerate().map(|(i, &b)| {
                let (id, holdings) = (self.uuid(3, i as u32), self.uuid(2, b));
                format!(
                    "('{id}', '{{\"id\": \"{id}\", \"holdingsRecordId\": \"{holdings}\", \"barcode\": \"3{:012}\"}}', '{holdings}')",
                    i + 1
                )
            }),
        );
        s.table(
            "diku_mod_circulation_storage.loan (id, jsonb)",
            self.loans.iter().enumerate().map(|(n, l)| {
                let id = self.uuid(4, n as u32);
                format!("('{id}', '{}')", self.folio_loan(n, l, false))
            }),
        );
        s.0
    }

    /// A FOLIO loan record; `embed_item` adds the item summary that the
    /// `/circulation/loans` API includes (with the instance id).
    fn folio_loan(&self, n: usize, l: &Loan, embed_item: bool) -> String {
        let mut j = format!(
            "{{\"id\": \"{}\", \"itemId\": \"{}\"",
            self.uuid(4, n as u32),
            self.uuid(3, l.item)
        );
        if !l.anonymized {
            let _ = write!(j, ", \"userId\": \"{}\"", self.uuid(0, l.patron));
        }
        let (action, status) = if l.current {
            ("checkedout", "Open")
        } else {
            ("checkedin", "Closed")
        };
        let _ = write!(
            j,
            ", \"loanDate\": \"{}.000+00:00\", \"dueDate\": \"{}.000+00:00\", \"action\": \"{action}\", \"status\": {{\"name\": \"{status}\"}}, \"renewalCount\": {}",
            stamp(l.month, l.day, l.second, 'T'),
            stamp(l.month.plus(1).unwrap_or(l.month), l.day, l.second, 'T'),
            l.renewals
        );
        if embed_item {
            let b = self.bib(l);
            let _ = write!(
                j,
                ", \"item\": {{\"id\": \"{}\", \"holdingsRecordId\": \"{}\", \"instanceId\": \"{}\", \"title\": \"Title {b}\", \"barcode\": \"3{:012}\"}}",
                self.uuid(3, l.item),
                self.uuid(2, b),
                self.uuid(1, b),
                l.item + 1
            );
        }
        j.push('}');
        j
    }

    /// The output of the Koha report in the `koha-file` preset, as CSV.
    pub fn koha_csv(&self) -> String {
        let mut s = String::from("borrower_key,biblionumber,issuedate\n");
        for l in &self.loans {
            let key = if l.anonymized {
                String::new()
            } else {
                format!("koha:{}", l.patron + 1)
            };
            let _ = writeln!(
                s,
                "{key},{},{}",
                self.bib(l) + 1,
                stamp(l.month, l.day, l.second, ' ')
            );
        }
        s
    }

    /// The `psql \copy` output of the `evergreen-file` preset's query.
    pub fn evergreen_csv(&self) -> String {
        let mut s = String::from("borrower_key,record,xact_start\n");
        for l in self.loans.iter().filter(|l| !l.anonymized) {
            let _ = writeln!(
                s,
                "eg:{},{},{}+00",
                l.patron + 1,
                self.bib(l) + 1,
                stamp(l.month, l.day, l.second, ' ')
            );
        }
        s
    }

    /// Evergreen's metarecord map as `record,metarecord` CSV.
    pub fn evergreen_works_csv(&self) -> String {
        let mut s = String::from("record,metarecord\n");
        for b in 0..self.params.bibs {
            let _ = writeln!(s, "{},{}", b + 1, work_of(b) + 1);
        }
        s
    }

    /// FOLIO's `/circulation/loans` records, one JSON object per line.
    pub fn folio_ndjson(&self) -> String {
        let mut s = String::new();
        for (n, l) in self.loans.iter().enumerate() {
            s.push_str(&self.folio_loan(n, l, true));
            s.push('\n');
        }
        s
    }

    /// FOLIO's `/loan-storage/loans` records (no embedded item), one per line.
    pub fn folio_storage_ndjson(&self) -> String {
        let mut s = String::new();
        for (n, l) in self.loans.iter().enumerate() {
            s.push_str(&self.folio_loan(n, l, false));
            s.push('\n');
        }
        s
    }

    /// FOLIO's items with their instance, as `item_id,title_id` CSV (the
    /// output of the item-to-instance query in the `folio-file` preset).
    pub fn folio_items_csv(&self) -> String {
        let mut s = String::from("item_id,title_id\n");
        for (i, &b) in self.item_bib.iter().enumerate() {
            let _ = writeln!(s, "{},{}", self.uuid(3, i as u32), self.uuid(1, b));
        }
        s
    }

    /// Every raw borrower id as the presets' queries and exports see it
    /// (the keys they build, card numbers, user UUIDs), for tests that check
    /// no id reaches a message.
    pub fn borrower_ids(&self, ils: Ils) -> Vec<String> {
        (0..self.params.patrons)
            .map(|i| match ils {
                Ils::Koha => format!("koha:{}", i + 1),
                Ils::Evergreen => format!("eg:{}", i + 1),
                Ils::Folio => self.uuid(0, i),
            })
            .collect()
    }
}

/// Koha card number of patron `i`.
fn koha_card(i: u32) -> String {
    format!("2300{:010}", u64::from(i) + 1)
}

/// `YYYY-MM-DD<sep>HH:MM:SS`; seconds past the day wrap within it.
fn stamp(month: LoanMonth, day: u8, second: u32, sep: char) -> String {
    let second = second % 86_400;
    format!(
        "{month}-{day:02}{sep}{:02}:{:02}:{:02}",
        second / 3600,
        second / 60 % 60,
        second % 60
    )
}

/// Multi-row `INSERT` statements.
#[derive(Default)]
struct Inserts(String);

impl Inserts {
    fn table(&mut self, head: &str, rows: impl Iterator<Item = String>) {
        let rows: Vec<String> = rows.collect();
        for batch in rows.chunks(500) {
            let _ = writeln!(self.0, "INSERT INTO {head} VALUES\n{};", batch.join(",\n"));
        }
    }
}

/// Writes every system's data under `dir/<ils>/`.
pub fn write_all(params: &IlsParams, dir: &Path) -> io::Result<()> {
    let c = Circulation::generate(params);
    for ils in Ils::ALL {
        c.write(ils, &dir.join(ils.name()))?;
    }
    let mut out = io::stdout().lock();
    writeln!(out, "{params:?}")?;
    for ils in Ils::ALL {
        writeln!(out, "{}: {:?}", ils.name(), c.expected(ils))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_has_every_case() {
        let p = ci_params();
        let a = Circulation::generate(&p);
        let b = Circulation::generate(&p);
        assert_eq!(a.loans, b.loans);
        assert_eq!(a.sql(Ils::Folio), b.sql(Ils::Folio));
        assert!(a.loans.iter().any(|l| l.anonymized));
        assert!(a.loans.iter().any(|l| l.current));
        assert!(a.loans.iter().any(|l| l.renewals > 0));
        let e = a.expected(Ils::Koha);
        assert_eq!(e.kept + e.missing_borrower, u64::from(p.loans));
        assert_eq!(e.months.len() as u32, p.months);
        let eg = a.expected(Ils::Evergreen);
        assert_eq!((eg.kept, eg.missing_borrower), (e.kept, 0));
        let other = Circulation::generate(&IlsParams { seed: 1, ..p });
        assert_ne!(other.loans, a.loans);
    }

    #[test]
    fn exports_have_one_line_per_loan() {
        let c = Circulation::generate(&ci_params());
        let n = c.loans.len();
        assert_eq!(c.koha_csv().lines().count(), n + 1);
        assert_eq!(c.folio_ndjson().lines().count(), n);
        let eg = c.expected(Ils::Evergreen).kept as usize;
        assert_eq!(c.evergreen_csv().lines().count(), eg + 1);
        let uuid = c.uuid(0, 7);
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.as_bytes()[14], b'4');
    }
}
