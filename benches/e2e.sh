#!/usr/bin/env bash
# End-to-end `alsoborrowed run` on N generated loans beside DuckDB and SciPy:
# benches/national.sh with those two peers (same measurements, agreement check
# and RESULTS.md section). Usage: benches/e2e.sh N [ROUNDS]   (ROUNDS default 2)
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/national.sh" "${1:-1000000}" "${2:-2}" "duckdb scipy"
