#!/usr/bin/env bash
# Per-stage floors of `alsoborrowed run` on N generated loans on this machine
# (benches/peers/floor.py): the work no implementation can skip, at this
# machine's raw one-thread rates. Appends a "Floors" section to benches/RESULTS.md
# ($RESULTS; /dev/null to skip). Usage: benches/floor.sh [N] [--files F]
# Needs a C compiler and OpenSSL's headers (installed from apt when missing).
set -euo pipefail
n=${1:-1000000}
shift || true
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source benches/lib.sh
results=${RESULTS:-$PWD/benches/RESULTS.md}
if ! command -v cc > /dev/null || [ ! -f /usr/include/openssl/sha.h ]; then
    apt-get update -qq && apt-get install -y -qq gcc libssl-dev > /dev/null
fi
py=$(peers_venv)
bin=$(ab_binary)
csv=$(loans_csv "$n" "$bin")
table=$("$py" benches/peers/floor.py "$csv" 2025-11 2026-10 5 100 "$@")
echo "$table"
{
    echo
    echo "### Floors: $n loans, $(date -u '+%F %H:%M') UTC"
    echo
    echo "Machine: $(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -n 1)), load average $(cut -d' ' -f1-3 /proc/loadavg)."
    echo "Command: \`bash benches/floor.sh $n${*:+ $*}\`"
    echo
    echo "$table"
} >> "$results"
