#!/usr/bin/env bash
# End-to-end `alsoborrowed run` on N generated loans, beside the same counting job
# in DuckDB (SQL self-join) and SciPy (sparse A^T A), alternating runs in one session.
# Reports wall time, CPU time and peak RSS, and checks that the pair counts agree.
# Usage: benches/e2e.sh N [ROUNDS]   (e.g. 1000000 or 10000000; ROUNDS default 2)
set -euo pipefail
n=${1:-1000000}
rounds=${2:-2}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python3 -m pip install --quiet --disable-pip-version-check \
    duckdb==2.0.0 pyarrow==26.0.1 scipy==1.17.1 numpy
[ -n "${BIN:-}" ] || cargo build --release --locked --quiet
bin=${BIN:-$PWD/target/release/alsoborrowed}
mkdir -p benches/data
csv=$PWD/benches/data/loans-$n.csv
[ -f "$csv" ] || "$bin" generate --quiet --loans "$n" --seed 7 --first-month 2024-11 --months 24 --out "$csv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pipeline() { # dir cap max_related
    mkdir -p "$1"
    cat > "$1/pipeline.toml" <<TOML
[library]
id = "bench-library"
[keys]
pseudonym = "$work/keys/pseudonym.key"
transfer = "$work/keys/transfer.key"
create_if_missing = true
[source]
path = "$csv"
[transfer]
outbox = "outbox"
[store]
path = "store"
[engine]
window_end = "2026-10"
window_months = 12
min_support = 5
max_titles_per_borrower = $2
max_related = $3
[export]
path = "published"
TOML
}
row() { # label command...
    local label=$1; shift
    /usr/bin/time -o "$work/time" -f '%e %U %S %M' "$@" > "$work/out"
    read -r wall user sys rss < "$work/time"
    printf '| %s | %s | %s | %s | %.0f |\n' "$label" "$n" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)"
}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
echo "| job | loans | wall s | cpu s | peak RSS MiB |"
echo "|---|---|---|---|---|"
for r in $(seq "$rounds"); do
    rm -rf "$work/run"; pipeline "$work/run" 100 20
    row "alsoborrowed run (cap 100, N 20)" "$bin" run --quiet --today 2026-11-22 --pipeline "$work/run/pipeline.toml"
    row "DuckDB self-join" python3 benches/peers/peers.py duckdb "$csv" 2025-11 2026-10 5
    row "SciPy sparse A^T A" python3 benches/peers/peers.py scipy "$csv" 2025-11 2026-10 5
done
# Agreement: with no cap and no top-N truncation, alsoborrowed's relations are
# exactly twice the peers' unordered pairs.
rm -rf "$work/agree"; pipeline "$work/agree" 100000000 1000000000
"$bin" extract --quiet --today 2026-11-22 --pipeline "$work/agree/pipeline.toml"
"$bin" ingest --quiet --today 2026-11-22 --pipeline "$work/agree/pipeline.toml"
ours=$("$bin" build --today 2026-11-22 --pipeline "$work/agree/pipeline.toml" 2>/dev/null)
echo "alsoborrowed: $ours"
python3 benches/peers/peers.py duckdb "$csv" 2025-11 2026-10 5
