#!/usr/bin/env bash
# Extract + ingest throughput on N generated loans: wall time, CPU time and peak RSS
# of each stage, with the release binary.
#
# With ROUNDS, the batch extracted once is then ingested ROUNDS more times, each
# into a new store; a second binary in BIN2 alternates with the first (A B A B
# ...), for before/after tables of ingest alone (issue 15). Both must read the
# batch format of the first binary's extract.
#
# Usage: benches/ingest.sh [N] [ROUNDS]   (defaults 1000000 and 0)
set -euo pipefail
n=${1:-1000000}
rounds=${2:-0}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
bin=$(ab_binary)
csv=$(loans_csv "$n" "$bin")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
write_pipeline "$work/pipeline.toml" "$csv" "$work/keys" 100 20
echo "| stage | loans | wall s | cpu s | peak RSS MiB |"
echo "|---|---|---|---|---|"
measure extract "$n" "$bin" extract --quiet --today 2026-11-22 --pipeline "$work/pipeline.toml"
mkdir "$work/batches"
cp "$work"/outbox/*.batch "$work/batches/"
measure ingest "$n" "$bin" ingest --quiet --today 2026-11-22 --pipeline "$work/pipeline.toml"
du -sh "$work/store" | awk '{print "store size: " $1}'
[ "$rounds" -gt 0 ] || exit 0
bins=("$bin")
[ -z "${BIN2:-}" ] || bins+=("$BIN2")
echo
echo "| binary | loans | wall s | cpu s | peak RSS MiB |"
echo "|---|---|---|---|---|"
i=0
for r in $(seq 1 "$rounds"); do
    for b in "${bins[@]}"; do
        i=$((i + 1))
        # The same keys (the batch is sealed under their transfer key), a new store.
        write_pipeline "$work/$i/pipeline.toml" "$csv" "$work/keys" 100 20
        mkdir -p "$work/$i/outbox"
        cp "$work"/batches/*.batch "$work/$i/outbox/"
        measure "$b" "$n" "$b" ingest --quiet --today 2026-11-22 --pipeline "$work/$i/pipeline.toml"
    done
done
echo
echo "Command: \`BIN=$bin${BIN2:+ BIN2=$BIN2} bash benches/ingest.sh $n $rounds\` ($(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)."
