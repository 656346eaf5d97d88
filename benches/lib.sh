# Shared by the benchmark and cross-check scripts: the binary, cached inputs,
# a pipeline file, and one measured table row. Source it after `cd` to the repo.

# The binary to measure: $BIN, or a fresh build of the given profile (release by default).
ab_binary() {
    local profile=${1:-release}
    if [ -n "${BIN:-}" ]; then
        echo "$BIN"
    elif [ "$profile" = release ]; then
        cargo build --release --locked --quiet -p cli && echo "$PWD/target/release/alsoborrowed"
    else
        cargo build --locked --quiet -p cli && echo "$PWD/target/debug/alsoborrowed"
    fi
}

# Path of N generated loans (seed 7, 2024-11 + 24 months), generated once into benches/data.
loans_csv() {
    local n=$1 bin=$2
    mkdir -p benches/data
    local csv=$PWD/benches/data/loans-$n.csv
    # Via a partial file, so an interrupted 100M generation is never taken for a whole one.
    if [ ! -f "$csv" ]; then
        "$bin" generate --quiet --loans "$n" --seed 7 --first-month 2024-11 --months 24 --out "$csv.part" >&2
        mv "$csv.part" "$csv"
    fi
    echo "$csv"
}

# write_pipeline FILE CSV KEYDIR CAP MAX_RELATED [EXTRA_TOML]: a pipeline whose state lives beside FILE;
# FEED_LAYOUT (titles or shards) sets [export] feed_layout; unset, the pipeline
# file leaves it out and the default layout (shards) applies. TIME_DECAY
# (default 1.0: plain LLR of distinct-borrower counts, which the cross-check
# recomputes and the earlier figures used) sets [engine] time_decay.
# CAP `defaults` writes an [engine] with only the window (the same window end
# and 12 months): measure, k, cap, time decay and N are the defaults.
write_pipeline() {
    local file=$1 csv=$2 keys=$3 cap=$4 max_related=$5 extra=${6:-}
    mkdir -p "$(dirname "$file")"
    local engine
    if [ "$cap" = defaults ]; then
        engine='window_end = "2026-10"'
    else
        engine="window_end = \"2026-10\"
window_months = 12
measure = \"llr\"
min_support = 5
max_titles_per_borrower = $cap
time_decay = ${TIME_DECAY:-1.0}
max_related = $max_related"
    fi
    cat > "$file" <<TOML
[library]
id = "bench-library"
[keys]
pseudonym = "$keys/pseudonym.key"
transfer = "$keys/transfer.key"
create_if_missing = true
[source]
path = "$csv"
$extra
[transfer]
outbox = "outbox"
[store]
path = "store"
[engine]
$engine
[export]
path = "published"
${FEED_LAYOUT:+feed_layout = \"$FEED_LAYOUT\"}
TOML
}

# measure LABEL N COMMAND...: one Markdown row: label, loans, wall s, CPU s, peak RSS MiB.
measure() {
    local label=$1 n=$2; shift 2
    local t; t=$(mktemp)
    /usr/bin/time -o "$t" -f '%e %U %S %M' "$@" > /dev/null
    local wall user sys rss
    read -r wall user sys rss < "$t"
    rm -f "$t"
    printf '| %s | %s | %s | %.2f | %.0f |\n' "$label" "$n" "$wall" "$(echo "$user + $sys" | bc)" "$(echo "$rss / 1024" | bc -l)"
}

# The Python of benches/.venv with the peers of benches/peers/requirements.txt
# installed (pinned, from PyPI); created on first use.
peers_venv() {
    local venv=$PWD/benches/.venv
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r benches/peers/requirements.txt >&2
    echo "$venv/bin/python"
}
