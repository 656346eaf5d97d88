#!/usr/bin/env bash
# Extract + ingest throughput on N generated loans: wall time, CPU time and peak RSS
# of each stage, with the release binary. Usage: benches/ingest.sh [N] (default 1000000).
set -euo pipefail
n=${1:-1000000}
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
measure ingest "$n" "$bin" ingest --quiet --today 2026-11-22 --pipeline "$work/pipeline.toml"
du -sh "$work/store" | awk '{print "store size: " $1}'
