#!/usr/bin/env bash
# Fail-over time of two hooklog replicas on one JetStream stream, on a log of N records.
#
# What it measures (the release binaries, the machine's nats-server):
#   1. N signed-looking Twilio SMS records are imported into a new stream (`hooklog-replay
#      import`, as a migration would), and replica A starts on it: the time its consumers
#      (dedup, compliance, outbound, staleness, and dispatch with routes that match none of
#      the records, so that its learning pass and catch-up run without calling anyone) take to
#      read the whole log from 0.
#   2. Replica B starts on the same stream with an empty data directory: a standby.
#   3. A is killed with SIGKILL. Printed: when B took the lease (at most `lease_secs` and one
#      look after A's last renewal) and when every consumer of B had caught up from 0, i.e.
#      the whole fail-over of a standby that never led, on N records.
#
# Usage: benches/failover.sh            (HOOKLOG_FAILOVER_RECORDS=100000, LEASE_SECS=3)
# Needs: nats-server with JetStream on HOOKLOG_FAILOVER_NATS_URL (nats://127.0.0.1:4222),
# python3, jq, curl. Cleans up its stream, its lease entry and its directories.
set -euo pipefail

N=${HOOKLOG_FAILOVER_RECORDS:-100000}
LEASE=${HOOKLOG_FAILOVER_LEASE_SECS:-3}
NATS=${HOOKLOG_FAILOVER_NATS_URL:-nats://127.0.0.1:4222}
# hooklog refuses HOOKLOG_* variables that name no configuration key.
unset HOOKLOG_FAILOVER_RECORDS HOOKLOG_FAILOVER_LEASE_SECS HOOKLOG_FAILOVER_NATS_URL
cd "$(dirname "$0")/.."

cargo build --release --locked --workspace --bin hooklog --bin hooklog-replay >&2
BIN=target/release/hooklog
REPLAY=target/release/hooklog-replay

work=$(mktemp -d)
tag=$(printf '%08x' $((RANDOM * 32768 + RANDOM)))
stream="HOOKLOG_FAILOVER_$tag"
pids=()

nats_api() { # subject payload: one JetStream API request over the raw NATS protocol
    python3 - "$NATS" "$1" "$2" <<'EOF'
import socket, sys, urllib.parse
url = urllib.parse.urlparse(sys.argv[1])
s = socket.create_connection((url.hostname, url.port or 4222), timeout=5)
f = s.makefile("rb")
f.readline()  # INFO
payload = sys.argv[3].encode()
s.sendall(b'CONNECT {"verbose":false}\r\nSUB _INBOX.failover 1\r\n')
s.sendall(b"PUB %s _INBOX.failover %d\r\n%s\r\nPING\r\n" % (sys.argv[2].encode(), len(payload), payload))
while True:
    line = f.readline()
    if line.startswith(b"MSG"):
        print(f.read(int(line.split()[-1]) + 2).decode().strip())
        break
    if not line:
        break
EOF
}

cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    nats_api "\$JS.API.STREAM.DELETE.$stream" "" >/dev/null 2>&1 || true
    nats_api '$JS.API.STREAM.PURGE.KV_HOOKLOG_CONSUMER_LEASES' \
        "{\"filter\":\"\$KV.HOOKLOG_CONSUMER_LEASES.$stream\"}" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# /metrics is on the admin listener, behind the operator token.
ADMIN_TOKEN="failover-bench-operator-token"
for r in a b; do
    eval "${r}_pub=$(free_port) ${r}_admin=$(free_port)"
    pub_var="${r}_pub"; admin_var="${r}_admin"
    cat >"$work/$r.toml" <<EOF
data_dir = "$work/$r"
[server]
listen = ["127.0.0.1:${!pub_var}"]
admin_listen = "127.0.0.1:${!admin_var}"
admin_token = "$ADMIN_TOKEN"
public_urls = ["https://hooks.example.net"]
[twilio]
auth_tokens = ["0f1e2d3c4b5a69788796a5b4c3d2e1f0"]
[log]
backend = "jetstream"
[log.jetstream]
nats_url = "$NATS"
stream = "$stream"
subject = "hooklog.failover.$tag"
lease_secs = $LEASE
[dispatch]
url = "http://127.0.0.1:9/never-called"
token = "failover-bench"
[[dispatch.routes]]
kinds = ["call.ringing"]
agent = "nobody"
EOF
done

echo "generating $N records" >&2
python3 - "$N" >"$work/records.jsonl" <<'EOF'
import json, sys, datetime, urllib.parse
n = int(sys.argv[1])
start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
for i in range(1, n + 1):
    at = start + datetime.timedelta(microseconds=i * 1000)
    body = urllib.parse.urlencode({
        "MessageSid": f"SM{i:032x}", "AccountSid": "AC" + "0" * 32,
        "From": f"+1555{i % 10_000_000:07d}", "To": "+15555550100", "Body": f"message {i}",
    })
    print(json.dumps({
        "seq": i, "received_at": at.isoformat().replace("+00:00", "Z"), "source": "twilio",
        "route": "/sms", "headers": {"content-type": "application/x-www-form-urlencoded",
                                     "x-twilio-signature": "bench"},
        "body": body, "body_encoding": "utf8", "verified": "x-twilio-signature (token 0, url 0)",
    }))
EOF
"$REPLAY" --config "$work/a.toml" import "$work/records.jsonl" >&2

metric() { # admin port, name
    curl -s -H "Authorization: Bearer $ADMIN_TOKEN" "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}
max_lag() { # replica
    "$REPLAY" --config "$work/$1.toml" status --json 2>/dev/null \
        | jq '[.consumers[] | select(.state != "stored") | .lag] | if length >= 5 then max else 1e18 end'
}
wait_for() { # what command...: polls every 50 ms, up to 10 minutes
    local what=$1; shift
    for _ in $(seq 1 12000); do
        if "$@"; then return 0; fi
        sleep 0.05
    done
    echo "timed out: $what" >&2
    exit 1
}
caught_up() { [ "$(max_lag "$1")" = "0" ]; }
leads() { [ "$(metric "$1" hooklog_consumers_leader)" = "1" ]; }
stands_by() { [ "$(metric "$1" hooklog_consumers_leader)" = "0" ]; }

t0=$(now)
RUST_LOG=warn "$BIN" serve --config "$work/a.toml" & pids+=($!); a_pid=$!
wait_for "A leads" leads "$a_admin"
wait_for "A caught up" caught_up a
t1=$(now)
echo "A: first start on $N records, consumers caught up from 0 in $(secs "$t0" "$t1") s" >&2

RUST_LOG=warn "$BIN" serve --config "$work/b.toml" & pids+=($!)
wait_for "B stands by" stands_by "$b_admin"
sleep "$LEASE" # A has renewed its lease at least twice since B started

kill -9 "$a_pid"
k=$(now)
wait_for "B leads" leads "$b_admin"
l=$(now)
wait_for "B caught up" caught_up b
c=$(now)
echo "fail-over on $N records (lease_secs $LEASE): B took the lease $(secs "$k" "$l") s after A's SIGKILL; its consumers had caught up from 0 $(secs "$k" "$c") s after it"
