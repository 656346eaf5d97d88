//! `dictionaries LOANS.csv [COLUMN...]`: times three ways of numbering the
//! values of a column of a loans export by first appearance, the job of
//! extract's dictionaries, on one thread, and checks that all three give
//! every row the same number:
//!
//! - `pieces`: a table per piece of 72,000 rows, each merged in file order
//!   into the global one (extract's way until issue 15's session 16);
//! - `one table`: every row looked up in the global table;
//! - `partitioned`: every value hashed and copied (up to 16 bytes, with its
//!   row) into one of 2^bits partitions by the top bits of its hash, each
//!   partition numbered with a table small enough for the cache, then the
//!   partitions' numbers renumbered by first row (the whole column at
//!   once; extract's `keys` numbers block by block, partitions in parallel).
//!
//! Only the named columns are read, one at a time (fields split at commas,
//! no quoting): a research tool for generated exports (`benches/RESULTS.md`,
//! issue 15), not a CSV reader.

use std::hash::BuildHasher as _;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use hashbrown::{DefaultHashBuilder, HashTable};

/// Rows a piece of extract's fast path holds at 10M loans (16 MiB blocks,
/// four pieces each, 58 bytes a line).
const PIECE_ROWS: usize = 72_000;
/// Longest value the partitioned way copies inline.
const INLINE: usize = 16;

/// Values numbered by first appearance, kept as slices of the file.
struct Table<'a> {
    index: HashTable<u32>,
    keys: Vec<&'a [u8]>,
    hasher: DefaultHashBuilder,
}

impl<'a> Table<'a> {
    fn new(capacity: usize, hasher: &DefaultHashBuilder) -> Self {
        Table {
            index: HashTable::with_capacity(capacity),
            keys: Vec::with_capacity(capacity),
            hasher: hasher.clone(),
        }
    }

    fn number(&mut self, key: &'a [u8]) -> u32 {
        let hash = self.hasher.hash_one(key);
        let keys = &self.keys;
        if let Some(&i) = self.index.find(hash, |&i| keys[i as usize] == key) {
            return i;
        }
        let i = self.keys.len() as u32;
        self.keys.push(key);
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.index
            .insert_unique(hash, i, |&j| hasher.hash_one(keys[j as usize]));
        i
    }
}

fn pieces(col: &[&[u8]], hasher: &DefaultHashBuilder) -> Vec<u32> {
    let mut global = Table::new(0, hasher);
    let mut out = Vec::with_capacity(col.len());
    for piece in col.chunks(PIECE_ROWS) {
        let mut local = Table::new(PIECE_ROWS, hasher);
        let rows: Vec<u32> = piece.iter().map(|k| local.number(k)).collect();
        let map: Vec<u32> = local.keys.iter().map(|k| global.number(k)).collect();
        out.extend(rows.iter().map(|&l| map[l as usize]));
    }
    out
}

fn one_table(col: &[&[u8]], hasher: &DefaultHashBuilder) -> Vec<u32> {
    let mut table = Table::new(0, hasher);
    col.iter().map(|k| table.number(k)).collect()
}

/// A value copied into its partition.
#[derive(Clone, Copy, Default)]
struct Entry {
    hash: u64,
    key: [u8; INLINE],
    row: u32,
    len: u32,
}

/// Numbers `col` in partitions, copying into `entries` (resized to the
/// rows); also returns the time of each phase (hash, copy into partitions,
/// number, renumber).
fn partitioned(
    col: &[&[u8]],
    hasher: &DefaultHashBuilder,
    bits: u32,
    entries: &mut Vec<Entry>,
) -> Option<(Vec<u32>, [Duration; 4])> {
    let mut phases = [Duration::ZERO; 4];
    let mut clock = Instant::now();
    let mut lap = |i: usize| {
        phases[i] = clock.elapsed();
        clock = Instant::now();
    };
    let parts = 1usize << bits;
    let part = |hash: u64| (hash >> (64 - bits)) as usize;
    let hashes: Vec<u64> = col.iter().map(|k| hasher.hash_one(k)).collect();
    lap(0);
    let mut starts = vec![0usize; parts + 1];
    for &h in &hashes {
        starts[part(h) + 1] += 1;
    }
    for i in 0..parts {
        starts[i + 1] += starts[i];
    }
    let mut cursor = starts.clone();
    entries.resize(col.len(), Entry::default());
    for (row, (k, &hash)) in col.iter().zip(&hashes).enumerate() {
        if k.len() > INLINE {
            return None;
        }
        let mut key = [0u8; INLINE];
        key[..k.len()].copy_from_slice(k);
        let c = &mut cursor[part(hash)];
        entries[*c] = Entry {
            hash,
            key,
            row: row as u32,
            len: k.len() as u32,
        };
        *c += 1;
    }
    drop(hashes);
    lap(1);
    // Numbers by partition, then (first row, that number) of each value.
    let mut provisional = vec![0u32; col.len()];
    let mut firsts: Vec<(u32, u32)> = Vec::new();
    let mut base = 0u32;
    for p in 0..parts {
        let slice = &entries[starts[p]..starts[p + 1]];
        let mut index: HashTable<u32> = HashTable::new();
        let mut first: Vec<u32> = Vec::new();
        for (j, e) in slice.iter().enumerate() {
            let same = |&i: &u32| {
                let f = &slice[first[i as usize] as usize];
                f.len == e.len && f.key == e.key
            };
            let id = match index.find(e.hash, same) {
                Some(&i) => i,
                None => {
                    let i = first.len() as u32;
                    first.push(j as u32);
                    index.insert_unique(e.hash, i, |&i| slice[first[i as usize] as usize].hash);
                    firsts.push((e.row, base + i));
                    i
                }
            };
            provisional[e.row as usize] = base + id;
        }
        base += first.len() as u32;
    }
    lap(2);
    firsts.sort_unstable();
    let mut renumber = vec![0u32; base as usize];
    for (n, &(_, p)) in firsts.iter().enumerate() {
        renumber[p as usize] = n as u32;
    }
    let out = provisional.iter().map(|&p| renumber[p as usize]).collect();
    lap(3);
    Some((out, phases))
}

fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let started = Instant::now();
    let out = f();
    (out, started.elapsed())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((path, names)) = args.split_first() else {
        bail!("usage: dictionaries LOANS.csv [COLUMN...] (default: borrower_id title_id)");
    };
    let names: Vec<&str> = if names.is_empty() {
        vec!["borrower_id", "title_id"]
    } else {
        names.iter().map(String::as_str).collect()
    };
    let data = std::fs::read(path).with_context(|| format!("reading {path}"))?;
    let lines = || data.split(|&b| b == b'\n').filter(|l| !l.is_empty());
    let header: Vec<&[u8]> = lines()
        .next()
        .context("empty file")?
        .split(|&b| b == b',')
        .collect();
    let hasher = DefaultHashBuilder::default();
    for name in names {
        let at = header
            .iter()
            .position(|h| *h == name.as_bytes())
            .with_context(|| format!("no column {name}"))?;
        // One column at a time: a 100M-line export's fields would not fit.
        let col: Vec<&[u8]> = lines()
            .skip(1)
            .map(|l| l.split(|&b| b == b',').nth(at).unwrap_or(b""))
            .collect();
        let (expected, t_pieces) = timed(|| pieces(&col, &hasher));
        let distinct = expected.iter().max().map_or(0, |&m| m as usize + 1);
        let (one, t_one) = timed(|| one_table(&col, &hasher));
        if one != expected {
            bail!("one table numbered {name} differently");
        }
        println!(
            "{name}: {} rows, {distinct} distinct; pieces {t_pieces:.2?}, one table {t_one:.2?}",
            col.len()
        );
        // The second run of each copies into memory the first one faulted
        // in, as a parse filling reused buffers would.
        let mut entries = Vec::new();
        for (bits, run) in [(6, "new"), (6, "reused"), (8, "reused"), (10, "reused")] {
            match timed(|| partitioned(&col, &hasher, bits, &mut entries)) {
                (Some((out, [h, c, n, r])), t) if out == expected => println!(
                    "{name}: partitioned, {} partitions, {run} buffer {t:.2?} (hash {h:.2?}, copy {c:.2?}, number {n:.2?}, renumber {r:.2?})",
                    1 << bits
                ),
                (Some(_), _) => bail!("partitioned numbered {name} differently"),
                (None, _) => println!("{name}: partitioned skipped: values over {INLINE} bytes"),
            }
        }
    }
    Ok(())
}
