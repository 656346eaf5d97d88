# Recipes for people and CI alike. `just --list` shows them.

# Install the `alsoborrowed` binary into ~/.cargo/bin (the README's first command).
install:
    cargo install --locked --path crates/cli

# Run the whole job (extract, ingest, export) on the committed demo data.
demo:
    cargo run --release -- run --pipeline pipelines/demo.toml

# The Debian package (binary, man pages, completions, systemd units, example
# pipelines) in target/debian/. Needs `cargo install cargo-deb --version 3.8.0 --locked`.
deb:
    bash deploy/deb.sh

# Build the package, install it with dpkg (root) and check the installed files and units, as CI does.
deb-check:
    bash deploy/deb-check.sh

# The test suite (the README's test command).
test:
    cargo test --workspace --locked

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Everything CI runs.
ci:
    bash .ci/run

# Regenerate the committed demo fixtures (byte-identical; a test checks they do not drift).
fixtures:
    cargo run --release -- generate --demo --out fixtures/demo/loans.csv --works fixtures/demo/works.csv

# Generate N synthetic loans to benches/data/loans-N.csv.
generate n="1000000":
    mkdir -p benches/data
    cargo run --release -- generate --loans {{n}} --seed 7 --out benches/data/loans-{{n}}.csv

# Extract + ingest throughput (issue 2's benchmark) on N generated loans.
bench-ingest n="1000000":
    bash benches/ingest.sh {{n}}

# Cross-check published pairs against an independent DuckDB recount.
crosscheck:
    bash benches/peers/crosscheck.sh

# End-to-end `run` against DuckDB and SciPy on N generated loans (national.sh with two peers).
bench-e2e n="1000000" rounds="2":
    bash benches/e2e.sh {{n}} {{rounds}}

# National scale (issue 4): `run` beside DuckDB, SciPy, Polars and implicit on N loans,
# with peak memory, timeouts and an exact agreement check; appends to benches/RESULTS.md.
bench-national n="1000000" rounds="1" peers="duckdb scipy polars implicit":
    bash benches/national.sh {{n}} {{rounds}} "{{peers}}"

# Recommendation quality (issue 11): the feed (defaults, k) beside implicit, SAR and
# self-join peers on two public rating data sets turned into loans; HR@10, coverage, McNemar.
bench-quality k="5":
    bash benches/quality.sh {{k}}

# Micro-benchmarks of the hot kernels (divan): pseudonyms, extract, pair counting, LLR, leak scan, feed.
bench-kernels:
    cargo bench --locked -p kernels

# Per-stage floors of N loans on this machine (bytes, HMACs, pair increments, files at measured raw rates).
bench-floor n="1000000":
    bash benches/floor.sh {{n}}

# Fuzz the record parser (streaming paths vs the whole-file csv reader) for S seconds.
# Needs `cargo install cargo-fuzz --version 0.13.2 --locked`; runs on stable via RUSTC_BOOTSTRAP.
fuzz seconds="600":
    cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run records -- -max_total_time={{seconds}} -max_len=4096

# Load benchmark of `alsoborrowed serve` beside nginx on N loans' feed (loopback; needs nginx-light).
bench-serve n="10000000":
    bash benches/serve.sh {{n}}
