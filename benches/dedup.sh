#!/usr/bin/env bash
# Cost of cross-batch deduplication and month merging at N loans (issue 12):
# one batch into an empty store, two overlapping exports (90 % and 95 % of
# the rows: all repeats), then three batches of 1 % new loans in every month
# (the second finds two files in every month and merges them). Usage:
#   BIN=target/release/alsoborrowed bash benches/dedup.sh 10000000
# Writes only under $TMPDIR (the generated loans are never committed).
set -euo pipefail
N=${1:-10000000}
B=$(realpath "${BIN:-target/release/alsoborrowed}")
D=${TMPDIR:-/tmp}/alsoborrowed-dedup-$N
rm -rf "$D"; mkdir -p "$D"; cd "$D"
$B generate --loans "$N" --seed 7 --first-month 2024-11 --months 24 --out loans.csv >/dev/null
cat > p.toml <<P
[library]
id = "bench"
[keys]
pseudonym = "keys/p.key"
transfer = "keys/t.key"
create_if_missing = true
[source]
path = "loans.csv"
[transfer]
outbox = "outbox"
[store]
path = "store"
[export]
path = "published"
P
t() { /usr/bin/time -f "$1: %e s wall, %U+%S s cpu, %M KiB peak" "${@:2}"; }
lines=$(wc -l < loans.csv)
t "extract 1 (all)" $B extract -q --today 2026-11-22 -p p.toml
t "ingest 1 (empty store)" $B ingest -q --today 2026-11-22 -p p.toml
# Overlapping exports: 90 % and 95 % of the same rows (different batches).
for pct in 90 95; do
  keep=$(( (lines - 1) * pct / 100 ))
  { head -1 loans.csv; sed -n "2,$((keep + 1))p" loans.csv; } > part.csv
  t "extract $pct pct" $B extract -q --today 2026-11-22 -p p.toml --input part.csv
  t "ingest $pct pct (all repeats)" $B ingest --today 2026-11-22 -p p.toml | tail -1
done
for k in 0 1 2; do
  { head -1 loans.csv; awk -v k=$k 'NR>1 && NR%100==k' loans.csv | sed "s/^SYN/NEW$k/"; } > new$k.csv
  $B extract -q --today 2026-11-22 -p p.toml --input new$k.csv
  t "ingest new$k (1 pct new in every month)" $B ingest --today 2026-11-22 -p p.toml | tail -1
done
$B status --today 2026-11-22 -p p.toml | grep -E '^(loans|repeated|batches)'
echo "data files: $(find store/loans -name '*.parquet' | wc -l), bytes: $(du -sb store/loans | cut -f1)"
