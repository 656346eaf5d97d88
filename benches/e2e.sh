#!/usr/bin/env bash
# End-to-end `alsoborrowed run` on N generated loans, beside the same counting job
# in DuckDB (SQL self-join) and SciPy (sparse A^T A), alternating runs in one session.
# Reports wall time, CPU time and peak RSS, and checks that the pair counts agree.
# Usage: benches/e2e.sh N [ROUNDS]   (e.g. 1000000 or 10000000; ROUNDS default 2)
set -euo pipefail
n=${1:-1000000}
rounds=${2:-2}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
python3 -m pip install --quiet --disable-pip-version-check \
    duckdb==2.0.0 pyarrow==26.0.1 scipy==1.17.1 numpy
bin=$(ab_binary)
csv=$(loans_csv "$n" "$bin")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
echo "| job | loans | wall s | cpu s | peak RSS MiB |"
echo "|---|---|---|---|---|"
for _ in $(seq "$rounds"); do
    rm -rf "$work/run"
    write_pipeline "$work/run/pipeline.toml" "$csv" "$work/keys" 100 20
    measure "alsoborrowed run (cap 100, N 20)" "$n" "$bin" run --quiet --today 2026-11-22 --pipeline "$work/run/pipeline.toml"
    measure "DuckDB self-join" "$n" python3 benches/peers/peers.py duckdb "$csv" 2025-11 2026-10 5
    measure "SciPy sparse A^T A" "$n" python3 benches/peers/peers.py scipy "$csv" 2025-11 2026-10 5
done
# Agreement: with no cap and no top-N cut, alsoborrowed's directed relations
# are exactly twice the peers' unordered pairs.
write_pipeline "$work/agree/pipeline.toml" "$csv" "$work/keys" 100000000 1000000000
"$bin" extract --quiet --today 2026-11-22 --pipeline "$work/agree/pipeline.toml"
"$bin" ingest --quiet --today 2026-11-22 --pipeline "$work/agree/pipeline.toml"
echo "alsoborrowed: $("$bin" build --today 2026-11-22 --pipeline "$work/agree/pipeline.toml" 2>/dev/null)"
python3 benches/peers/peers.py duckdb "$csv" 2025-11 2026-10 5
