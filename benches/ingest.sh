#!/usr/bin/env bash
# Extract + ingest throughput on N generated loans: wall time, CPU time and peak RSS
# of each stage, with the release binary. Usage: benches/ingest.sh [N] (default 1000000).
set -euo pipefail
n=${1:-1000000}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ -n "${BIN:-}" ] || cargo build --release --locked --quiet
bin=${BIN:-$PWD/target/release/alsoborrowed}
mkdir -p benches/data
csv=$PWD/benches/data/loans-$n.csv
[ -f "$csv" ] || "$bin" generate --quiet --loans "$n" --seed 7 --first-month 2024-11 --months 24 --out "$csv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/pipeline.toml" <<TOML
[library]
id = "bench-library"
[keys]
pseudonym = "keys/pseudonym.key"
transfer = "keys/transfer.key"
create_if_missing = true
[source]
path = "$csv"
[transfer]
outbox = "outbox"
[store]
path = "store"
[engine]
window_end = "2026-10"
[export]
path = "published"
TOML
measure() { # label, command...
    local label=$1; shift
    /usr/bin/time -o "$work/time" -f '%e %U %S %M' "$@" >/dev/null
    read -r wall user sys rss < "$work/time"
    printf '| %s | %s | %s | %s | %.0f MiB |\n' "$label" "$n" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)"
}
echo "| stage | loans | wall s | cpu s | peak RSS |"
echo "|---|---|---|---|---|"
"$bin" --quiet key new "$work/keys/pseudonym.key" >/dev/null 2>&1 || true
measure extract "$bin" extract --quiet --today 2026-11-22 --pipeline "$work/pipeline.toml"
measure ingest "$bin" ingest --quiet --today 2026-11-22 --pipeline "$work/pipeline.toml"
du -sh "$work/store" | awk '{print "store size: " $1}'
