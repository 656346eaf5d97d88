#!/usr/bin/env bash
# National scale (issue 4): `alsoborrowed run` on N generated loans beside the
# same counting job (distinct-borrower title-pair counts with support >= k, same
# window, same CSV) in the tools people use today, alternating runs round-robin.
# Reports wall time, user+sys CPU time and peak RSS of every job (GNU time -v),
# each under a timeout; a job that times out or runs out of memory is reported
# as such and the harness goes on. Then checks, untimed, that the exact peers'
# pair counts and support sums agree with each other and with alsoborrowed's
# (cap and top-N disabled), and that implicit's kept neighbour counts are exact.
# Appends a Markdown section to benches/RESULTS.md ($RESULTS).
#
# Usage: benches/national.sh [N] [ROUNDS] [PEERS]
#   N       loans to generate into benches/data (reused if present), default 1000000
#   ROUNDS  rounds of every job, default 1
#   PEERS   space-separated subset of "duckdb scipy polars implicit"
# Environment: BIN (binary to measure; default a release build),
#   MEASURE_TIMEOUT (seconds per job, default 3600), RESULTS (file to append to;
#   /dev/null to skip), KEEP_WORK=1 (keep the scratch directory), FEED_LAYOUT
#   (`[export] feed_layout` of the measured runs; unset, the pipeline file
#   leaves it out and the default layout applies, see docs/feed.md),
#   SETTINGS (`defaults`, the default: the timed runs' [engine] names only the
#   window, so measure jaccard, time decay 0.1, cap 2000, k 5, N 20 apply;
#   `llr-cap100`: the settings of the figures before 2026-12-06, measure llr,
#   no time decay, cap 100), SETTLE (seconds of quiet before the first timed
#   job, default 60). The agreement check runs separately, untimed,
#   with the cap and the top-N cut disabled, whichever settings were timed.
# Exit status: 0 only if every alsoborrowed job succeeded, at least one exact
# peer finished, and every finished exact peer agrees with alsoborrowed.
set -euo pipefail
n=${1:-1000000}
rounds=${2:-1}
peers=${3:-duckdb scipy polars implicit}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
source benches/lib.sh
limit=${MEASURE_TIMEOUT:-3600}
results=${RESULTS:-$repo/benches/RESULTS.md}
first=2025-11 last=2026-10 k=5 top=20 today=2026-11-22
settings=${SETTINGS:-defaults}
case $settings in
    defaults) cap=defaults settings_label="defaults: jaccard, time decay 0.1, cap 2000, N 20" ;;
    llr-cap100) cap=100 settings_label="llr, no time decay, cap 100, N 20" ;;
    *) echo "national: unknown SETTINGS $settings (known: defaults llr-cap100)" >&2; exit 2 ;;
esac
export FEED_LAYOUT=${FEED_LAYOUT:-}
layout_label=${FEED_LAYOUT:-default layout}

for p in $peers; do
    case $p in duckdb | scipy | polars | implicit) ;; *)
        echo "national: unknown peer $p (known: duckdb scipy polars implicit)" >&2
        exit 2
        ;;
    esac
done
if [ ! -x /usr/bin/time ]; then
    echo "national: installing GNU time" >&2
    apt-get update -qq && apt-get install -y -qq time > /dev/null
fi
py=$(peers_venv)
bin=$(ab_binary)
cargo build --release --locked --quiet -p kernels --bin exact-pairs
exact_pairs=$repo/target/release/exact-pairs
work=$(mktemp -d)
[ "${KEEP_WORK:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
rows=$work/rows.md
: > "$rows"

# measure_job LABEL COMMAND...: one Markdown row, appended to $rows and printed.
# Sets $status (ok, timeout, OOM or "failed (rc N)") and $outcome (the job's last
# stdout line).
measure_job() {
    local label=$1; shift
    local t=$work/time.txt out=$work/out.txt err=$work/err.txt rc=0
    /usr/bin/time -v -o "$t" timeout -k 10 "$limit" "$@" > "$out" 2> "$err" || rc=$?
    case $rc in
        0) status=ok ;;
        124) status="timeout (${limit} s)" ;;
        137) status="killed by SIGKILL (OOM?)" ;;
        *) if grep -qiE 'MemoryError|bad_alloc|out of memory|memory allocation|Cannot allocate' "$err"; then
            status=OOM
        else
            status="failed (rc $rc)"
        fi ;;
    esac
    [ "$status" = ok ] || tail -n 3 "$err" >&2 || true
    outcome=$(tail -n 1 "$out" | tr '|' '/')
    local wall cpu rss
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {
        n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; printf "%.2f", s }' "$t")
    cpu=$(awk -F': ' '/User time/ {u = $2} /System time/ {s = $2} END {printf "%.2f", u + s}' "$t")
    rss=$(awk -F': ' '/Maximum resident set size/ {printf "%.0f", $2 / 1024}' "$t")
    local row
    last_wall=$wall
    row=$(printf '| %s | %s | %s | %s | %s | %s | %s |' "$label" "$n" "${wall:--}" "${cpu:--}" "${rss:--}" "$status" "${outcome:--}")
    echo "$row" | tee -a "$rows"
}

echo "| job | loans | wall s | cpu s | peak RSS MiB | status | result |" | tee -a "$rows"
echo "|---|---|---|---|---|---|---|" | tee -a "$rows"

mkdir -p benches/data
csv=$repo/benches/data/loans-$n.csv
if [ ! -f "$csv" ]; then
    measure_job "alsoborrowed generate" "$bin" generate --loans "$n" --seed 7 \
        --first-month 2024-11 --months 24 --out "$csv.part"
    [ "$status" = ok ] || { echo "national: generation failed: $status" >&2; exit 1; }
    mv "$csv.part" "$csv"
fi
# Every job reads the CSV from the page cache, not the first one from disk.
cat "$csv" > /dev/null
# The first timed job (alsoborrowed in round 1, by the round-robin) should not
# pay for what ran just before the harness: right after a build it took up to
# 1.5 times the CPU of the same binary a round later (sessions 12-14 of issue
# 15), and ext4 without a journal (this machine's disk) skips inodes freed in
# the last 60 s when it allocates new ones, so files deleted just before (a
# previous session's scratch directory) slow every file the job creates.
sleep "${SETTLE:-60}"

declare -A result
# Wall seconds of each finished job by round, for the ratios below.
declare -A walls
job_names=(alsoborrowed $peers)
failed=0
run_job() {
    case $1 in
        alsoborrowed)
            # A new directory per round, all deleted only at exit: ext4
            # without a journal (this machine's disk) skips inodes freed in
            # the last minute or so when it allocates new ones, so creating
            # 80k feed files right after deleting the previous round's costs
            # several times more. A monthly export never follows a mass
            # deletion by seconds (the release it deletes is a month old).
            ab_round=$((${ab_round:-0} + 1))
            write_pipeline "$work/run-$ab_round/pipeline.toml" "$csv" "$work/keys" "$cap" "$top"
            measure_job "alsoborrowed run ($settings_label, $layout_label)" "$bin" run --quiet --today "$today" \
                --pipeline "$work/run-$ab_round/pipeline.toml"
            [ "$status" = ok ] || failed=1
            ;;
        duckdb) measure_job "DuckDB self-join" "$py" benches/peers/peers.py duckdb "$csv" $first $last $k ;;
        scipy) measure_job "SciPy sparse AᵀA" "$py" benches/peers/peers.py scipy "$csv" $first $last $k ;;
        polars) measure_job "Polars self-join + group-by" "$py" benches/peers/peers.py polars "$csv" $first $last $k ;;
        implicit) measure_job "implicit CosineRecommender (K $top)" "$py" benches/peers/peers.py implicit "$csv" $first $last $k $top ;;
    esac
    [ "$status" != ok ] || result[$1]+=$outcome$'\n'
    [ "$status" != ok ] || walls[$r,$1]=$last_wall
}
# Every timed job but the very first follows another job's run; the first
# followed the settle's idle minute, and after a minute idle the same `run`
# took 0.4-0.5 s longer to extract (0.8 s more CPU) than right after another
# run (three alternated pairs, issue 15 session 17). So an untimed run of the
# first job (alsoborrowed) goes first: every timed job then follows a run.
# WARMUP=0 leaves it out.
if [ "${WARMUP:-1}" = 1 ]; then
    write_pipeline "$work/warmup/pipeline.toml" "$csv" "$work/keys" "$cap" "$top"
    "$bin" run --quiet --today "$today" --pipeline "$work/warmup/pipeline.toml" > /dev/null ||
        echo "national: the untimed warm-up run failed" >&2
fi
for r in $(seq 0 $((rounds - 1))); do
    # Round-robin: each round starts one job later, so no job always runs first.
    for i in "${!job_names[@]}"; do
        run_job "${job_names[$(((i + r) % ${#job_names[@]}))]}"
    done
done

# Each peer's wall time over `run`'s in the same round (the issue-15 targets
# are such ratios, and the shared machine's load moves between rounds).
ratios=$work/ratios.md
: > "$ratios"
for r in $(seq 0 $((rounds - 1))); do
    ours=${walls[$r,alsoborrowed]:-}
    [ -n "$ours" ] || continue
    line="- round $((r + 1)): \`run\` $ours s"
    for p in $peers; do
        w=${walls[$r,$p]:-}
        [ -z "$w" ] || line+=$(awk -v p="$p" -v w="$w" -v o="$ours" 'BEGIN { printf "; %s %.2f s (%.2f×)", p, w, w / o }')
    done
    echo "$line" | tee -a "$ratios"
done

# Agreement, untimed. alsoborrowed with no cap and no top-N cut: `build` gives
# the directed relations (twice the unordered pairs), exact-pairs the pairs and
# their support sum from the same store and engine.
agree=$work/agree/pipeline.toml
write_pipeline "$agree" "$csv" "$work/keys" 100000000 1000000000
checks=$work/checks.md
: > "$checks"
note() { echo "- $*" | tee -a "$checks"; }
built="" ours=""
if timeout "$limit" "$bin" extract --quiet --today "$today" --pipeline "$agree" &&
    timeout "$limit" "$bin" ingest --quiet --today "$today" --pipeline "$agree"; then
    built=$(timeout "$limit" "$bin" build --today "$today" --pipeline "$agree" 2> /dev/null) || true
    ours=$(timeout "$limit" "$exact_pairs" "$agree" $first $last) || true
fi
relations=$(sed -n 's/.* \([0-9]*\) published relations.*/\1/p' <<< "$built")
note "alsoborrowed build (cap and top-N disabled): $relations directed relations; exact-pairs: ${ours#alsoborrowed }"
want=$(grep -o 'pairs=[0-9]* support_sum=[0-9]*' <<< "$ours" || true)
want_pairs=$(sed -n 's/^pairs=\([0-9]*\) .*/\1/p' <<< "$want")
if [ -z "$relations" ] || [ -z "$want_pairs" ] || [ $((relations % 2)) != 0 ] || [ "$want_pairs" != $((relations / 2)) ]; then
    note "DISAGREE: build's relations are not twice exact-pairs' pairs"
    failed=1
fi
finished=0
for p in duckdb scipy polars; do
    [[ " $peers " == *" $p "* ]] || continue
    got=${result[$p]:-}
    if [ -z "$got" ]; then
        note "$p: no finished run (see status above); not compared"
        continue
    fi
    finished=$((finished + 1))
    # Every finished round must give alsoborrowed's totals, not just the last.
    said=$(grep -o 'pairs=[0-9]* support_sum=[0-9]*' <<< "$got" | sort -u | paste -sd ';' -)
    if [ -n "$want" ] && [ "$said" = "$want" ]; then
        note "$p agrees: $want"
    else
        note "DISAGREE: $p says '$said', alsoborrowed '$want'"
        failed=1
    fi
done
[[ " $peers " != *" duckdb "* && " $peers " != *" scipy "* && " $peers " != *" polars "* ]] || [ "$finished" -gt 0 ] || {
    note "no exact peer finished: nothing to agree with"
    failed=1
}
if [[ " $peers " == *" implicit "* ]]; then
    rc=0
    check=$(timeout -k 10 "$limit" "$py" benches/peers/peers.py implicit-check "$csv" $first $last $k $top 2>&1) || rc=$?
    if [ "$rc" = 0 ]; then
        note "$(grep implicit-check <<< "$check" | head -n 1) (kept neighbour counts equal the exact counts)"
    elif [ "$rc" = 124 ] || [ "$rc" = 137 ] || grep -q MemoryError <<< "$check"; then
        # implicit is not an exact peer: a check that could not finish is reported, not failed.
        note "implicit-check did not finish (rc $rc: timeout or out of memory); implicit's counts not checked"
    else
        note "implicit-check FAILED: $(tail -n 1 <<< "$check")"
        failed=1
    fi
fi

disk=$(df -PT "$csv" | awk 'NR == 2 {print $1 ", " $2}')
rot=$(lsblk -dno ROTA "$(df -P "$csv" | awk 'NR == 2 {print $1}')" 2> /dev/null | head -n 1 | tr -d ' ' || true)
[ -z "$rot" ] || disk="$disk (lsblk ROTA=$rot)"
# A guest kernel that reports free pages hands memory freed a few seconds
# ago back to the host, and a job touching it again pays a host fault a
# page: a large-memory job is then faster right after another job's large
# free (SciPy 8.4 s against 18.3 s fifteen seconds later, issue 15 session
# 23), so the peers' times depend on the order. Said beside the figures.
reporting=
reported=/sys/module/page_reporting/parameters/reported_kib
if [ -r "$reported" ] && [ "$(cat "$reported")" -gt 0 ]; then
    reporting="(This kernel reports free pages to its hypervisor (page_reporting, order $(cat /sys/module/page_reporting/parameters/page_reporting_order 2> /dev/null || echo '?')): a job right after another job's large free finds memory the host still backs and runs faster than after a small job, so the order of the jobs moves their times; see benches/RESULTS.md, issue 15 session 23.)"
fi
{
    echo
    echo "### National scale: $n loans, $rounds round(s), $(date -u '+%F %H:%M') UTC"
    echo
    echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -n 1)), $(free -m | awk '/Mem:/ {printf "%.1f GiB", $2 / 1024}') memory, disk $disk; load average $(cut -d' ' -f1-3 /proc/loadavg) at the end (the machine is shared)."
    [ -z "$reporting" ] || echo "$reporting"
    echo "Command: \`SETTINGS=$settings FEED_LAYOUT=$FEED_LAYOUT MEASURE_TIMEOUT=$limit BIN=${BIN:-target/release/alsoborrowed} bash benches/national.sh $n $rounds \"$peers\"\`"
    echo "($(basename "$(readlink -f "$py")") in benches/.venv, versions in benches/peers/requirements.txt; window $first..$last, k = $k.)"
    [ "${WARMUP:-1}" != 1 ] || echo "(An untimed alsoborrowed run went before round 1, so that every timed job follows a run.)"
    echo
    cat "$rows"
    echo
    cat "$ratios"
    cat "$checks"
    [ "$failed" = 0 ] && echo "- agreement: ok" || echo "- agreement or a run FAILED"
} >> "$results"
[ "$failed" = 0 ] && echo "national: ok" || echo "national: FAILED" >&2
exit "$failed"
