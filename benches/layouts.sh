#!/usr/bin/env bash
# Issue 10: `alsoborrowed run` with the default pipeline settings (nothing in
# [engine] or [export] but the window and the output path) against the same
# pipeline with each feed layout named, on N generated loans, round-robin.
# The default must be within 10 % of the fastest layout. Prints a Markdown
# table (wall, CPU and peak RSS per run, GNU time); compare CPU seconds when
# the machine is shared.
#
# Usage: benches/layouts.sh [N] [ROUNDS]   (defaults 10000000 and 2)
# Environment: BIN (binary to measure; default a release build).
set -euo pipefail
n=${1:-10000000}
rounds=${2:-2}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
bin=$(ab_binary)
csv=$(loans_csv "$n" "$bin")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

pipeline() {
    local dir=$1 layout=$2
    mkdir -p "$dir"
    cat > "$dir/pipeline.toml" <<TOML
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
[export]
path = "published"
${layout:+feed_layout = \"$layout\"}
TOML
}

echo "| layout | loans | wall s | CPU s | peak RSS MiB |"
echo "|---|---|---|---|---|"
for r in $(seq 1 "$rounds"); do
    for layout in "" titles shards; do
        dir=$work/$r-${layout:-default}
        pipeline "$dir" "$layout"
        measure "${layout:-default (shards)}" "$n" "$bin" run --quiet --today 2026-11-22 --pipeline "$dir/pipeline.toml"
    done
done
echo
echo "Command: \`bash benches/layouts.sh $n $rounds\` ($(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)."
