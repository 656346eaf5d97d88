#!/usr/bin/env bash
# Issue 15: where `alsoborrowed run` spends its time. Runs `run` ROUNDS times
# on N generated loans with the default pipeline settings (the [engine]
# names only the window end, as in benches/national.sh), each in a new
# directory with new keys, and prints one Markdown row per run: wall, user +
# sys CPU and peak RSS (GNU time), then the wall and process CPU seconds of
# each stage that `run` reports (`<stage>: done in X s (cpu Y s)`). Compare
# CPU seconds on a shared machine. BIN runs another binary; a second binary
# in BIN2 alternates with the first (A B A B ...), for before/after tables.
#
# Usage: benches/stages.sh [N] [ROUNDS]   (defaults 10000000 and 3)
set -euo pipefail
n=${1:-10000000}
rounds=${2:-3}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
bin=$(ab_binary)
csv=$(loans_csv "$n" "$bin")
bins=("$bin")
[ -z "${BIN2:-}" ] || bins+=("$BIN2")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat "$csv" > /dev/null
stages=(extract ingest "read store" "build + leak check set-up" export)
printf '| binary | wall s | cpu s (user + sys) | peak RSS MiB |'
printf ' %s (wall / cpu s) |' "${stages[@]}"
echo
printf '|---|---|---|---|'
printf -- '---|%.0s' "${stages[@]}"
echo
i=0
for r in $(seq 1 "$rounds"); do
    for b in "${bins[@]}"; do
        i=$((i + 1))
        write_pipeline "$work/$i/pipeline.toml" "$csv" "$work/$i/keys" defaults 20
        t=$work/$i/time.txt
        /usr/bin/time -o "$t" -f '%e %U %S %M' "$b" run --today 2026-11-22 \
            --pipeline "$work/$i/pipeline.toml" > /dev/null 2> "$work/$i/err.txt"
        read -r wall user sys rss < "$t"
        row=$(printf '| %s | %s | %.2f (%s + %s) | %.0f |' "$b" \
            "$wall" "$(echo "$user + $sys" | bc)" "$user" "$sys" "$(echo "$rss / 1024" | bc -l)")
        for s in "${stages[@]}"; do
            lines=$(grep -F "$s: done in" "$work/$i/err.txt" || true)
            v=$(sed -n "s/.*done in \([0-9.]*\) s.*/\1/p" <<< "$lines" | paste -sd+ - | bc 2> /dev/null || true)
            c=$(sed -n "s/.*(cpu \([0-9.]*\) s).*/\1/p" <<< "$lines" | paste -sd+ - | bc 2> /dev/null || true)
            row+=" ${v:--} / ${c:--} |"
        done
        echo "$row"
    done
done
echo
echo "Command: \`BIN=$bin${BIN2:+ BIN2=$BIN2} bash benches/stages.sh $n $rounds\` ($(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end)."
