#!/usr/bin/env bash
# Independent recount of the published output with DuckDB over the input CSV:
# every published pair's support >= k and, with the cap out of the way, every
# LLR score equal to a from-scratch computation to 1e-9 relative. Also opens
# pairs.parquet and the store's data files in DuckDB and pyarrow (the store
# holding the input's loans) and validates every feed file against
# docs/feed.schema.json.
# Usage: benches/peers/crosscheck.sh [loans.csv]   (default: the committed demo)
# BIN=path/to/alsoborrowed overrides the binary (default: a debug build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo=$PWD
input=$(realpath "${1:-fixtures/demo/loans.csv}")
source benches/lib.sh
python3 -m pip install --quiet --disable-pip-version-check \
    duckdb==2.0.0 pyarrow==26.0.1 jsonschema==4.26.0
bin=$(ab_binary debug)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
works_table=""
if [ "$input" = "$repo/fixtures/demo/loans.csv" ]; then
    works_table="[works]
path = \"$repo/fixtures/demo/works.csv\""
fi
for variant in uncapped default; do
    cap=100
    [ "$variant" = uncapped ] && cap=1000000
    write_pipeline "$work/$variant/pipeline.toml" "$input" "$work/$variant/keys" "$cap" 20 "$works_table"
    "$bin" run --quiet --today 2026-11-22 --pipeline "$work/$variant/pipeline.toml"
    exact=""
    [ "$variant" = uncapped ] && exact="--exact-llr"
    python3 benches/peers/crosscheck.py --input "$input" \
        --release "$work/$variant/published/current" \
        --first 2025-11 --last 2026-10 --k 5 --schema docs/feed.schema.json $exact \
        --store "$work/$variant/store"
done
