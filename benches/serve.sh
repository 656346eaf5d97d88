#!/usr/bin/env bash
# Load benchmark of `alsoborrowed serve` (issue 13), beside nginx (Debian's
# nginx-light) serving the same static feed, on loopback. Not run in CI.
#
# 1. Generates N loans (seed 7) into benches/data and publishes their feed
#    (layout shards, as a national feed) once; both are reused.
# 2. Builds the title mix: the titles of 200,000 loans spread over the file,
#    so popular titles are asked for as often as they are borrowed (titles
#    without a list included: they get 404, as on a real catalogue).
# 3. Checks that the API answers every title of the feed exactly as
#    `alsoborrowed_feed::Feed::similar` does.
# 4. Measures, each for SECONDS (and at most MAX_REQUESTS requests) with
#    CONNECTIONS keep-alive connections from one client thread:
#    serve's JSON API, serve's static shard files, nginx's static shard files
#    (the same file a page would fetch for each title of the mix).
#
# Usage: benches/serve.sh [N]   (default 10000000)
# Environment: BIN (binary to measure; default a release build), RUN_SECONDS
#   (per measured run, default 10), CONNECTIONS (default 64), MAX_REQUESTS (default 3000000),
#   SERVE_THREADS (default 2), NGINX_WORKERS (default 2).
# Exit status: 0 only if the check found no difference and no request failed.
set -euo pipefail
n=${1:-10000000}
seconds=${RUN_SECONDS:-10}
conns=${CONNECTIONS:-64}
max=${MAX_REQUESTS:-3000000}
threads=${SERVE_THREADS:-2}
workers=${NGINX_WORKERS:-2}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$PWD
source benches/lib.sh
if [ ! -x /usr/sbin/nginx ]; then
    echo "serve.sh: installing nginx-light" >&2
    apt-get update -qq && apt-get install -y -qq nginx-light > /dev/null
fi
bin=$(ab_binary)
cargo build --release --locked --quiet -p serve --example loadgen
loadgen=$repo/target/release/examples/loadgen
csv=$(loans_csv "$n" "$bin")
work=$repo/benches/data/serve-$n
feed=$work/published
if [ ! -e "$feed/current" ]; then
    FEED_LAYOUT=shards write_pipeline "$work/pipeline.toml" "$csv" "$work/keys" 100 20
    echo "serve.sh: publishing the feed of $n loans" >&2
    "$bin" run --quiet --today 2026-11-22 --pipeline "$work/pipeline.toml"
fi
"$loadgen" mix "$csv" "$feed" 200000 "$work/api.txt" "$work/static.txt"

port_serve=18431
port_nginx=18432
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done; wait 2> /dev/null || true; }
trap cleanup EXIT
"$bin" serve --quiet --threads "$threads" --feed "$feed" --listen "127.0.0.1:$port_serve" \
    --max-connections 4096 &
serve_pid=$!
pids+=($serve_pid)
cat > "$work/nginx.conf" <<CONF
daemon off;
user root;
worker_processes $workers;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    open_file_cache max=100000 inactive=60s;
    open_file_cache_valid 60s;
    server {
        listen 127.0.0.1:$port_nginx;
        root $feed;
        location /feed/ {
            default_type application/json;
            etag on;
            add_header Cache-Control "public, max-age=3600";
            add_header Referrer-Policy no-referrer;
            add_header X-Content-Type-Options nosniff;
            add_header Content-Security-Policy "default-src 'none'; frame-ancestors 'none'";
        }
    }
}
CONF
/usr/sbin/nginx -c "$work/nginx.conf" &
pids+=($!)
for port in $port_serve $port_nginx; do
    for _ in $(seq 1 300); do
        (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null && break
        sleep 0.1
    done
done

"$loadgen" check "127.0.0.1:$port_serve" "$feed"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "| server | requests of the mix | connections | result |"
echo "| --- | --- | --- | --- |"
run() {
    local label=$1 port=$2 paths=$3
    "$loadgen" load "127.0.0.1:$port" "$paths" "$conns" "$seconds" "$max" > "$work/out.txt"
    printf '| %s | %s | %s | %s |\n' "$label" "$(basename "$paths")" "$conns" "$(cat "$work/out.txt")"
}
run "serve, JSON API" $port_serve "$work/api.txt"
run "serve, static shard files" $port_serve "$work/static.txt"
run "nginx, static shard files" $port_nginx "$work/static.txt"
echo "serve: peak RSS $(awk '/VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$serve_pid/status"), \
$(nproc) cores, load average before the runs: $load_before"
