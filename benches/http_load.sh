#!/bin/sh
# HTTP load benchmark against the real daemon (see benches/README.md, "http_load.rs").
# Builds the release binary and the bench, prints the machine's load before and after,
# and runs it. Settings are environment variables, e.g.:
#   HOOKLOG_LOAD_SECS=20 HOOKLOG_LOAD_RATES=1000,2000 benches/http_load.sh
set -eu
cd "$(dirname "$0")/.."
cargo bench --bench http_load --no-run
echo "nproc $(nproc); load before: $(cut -d' ' -f1-3 /proc/loadavg)"
cargo bench --bench http_load
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
