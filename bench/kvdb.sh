#!/usr/bin/env bash
# KVDB round trips from a Python service through the KVDB proxy, beside redis-benchmark
# against the same Redis with the same concurrency (one connection, one request at a time).
#
#   bench/kvdb.sh [N]        # N round trips of each kind (default 20000)
#   bench/kvdb.sh --smoke    # CI: debug build, 200 round trips, figures meaningless
#
# Builds release binaries, starts `shoal up --redis redis://127.0.0.1:6379/15` on spare
# ports in a temporary folder, and prints one table. KV_REDIS_ARGS="" runs the proxy on
# memory instead (the gRPC path alone).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
if [ "${1:-}" = "--smoke" ]; then
  N=200
  cargo build -q --bins
  BIN="$CARGO_TARGET_DIR/debug"
else
  N="${1:-20000}"
  cargo build --release -q --bins
  BIN="$CARGO_TARGET_DIR/release"
fi
DIR=$(mktemp -d)
mkdir -p "$DIR/services"
cp bench/services/kvbench.py "$DIR/services/"
export SHOAL_ADMIN_PASSWORD=bench-password
# Five ports the kernel says are free now (a random pick could land on a port a client
# connection holds: the smoke runs follow other benchmarks' thousands of connections).
read -r P_STORE P_HTTP P_GRPC P_ADMIN P_OPS < <(python3 -c '
import socket
ss = [socket.socket() for _ in range(5)]
for s in ss:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in ss))')
ADMIN="127.0.0.1:$P_ADMIN"
"$BIN/shoal" up --dir "$DIR" ${KV_REDIS_ARGS---redis redis://127.0.0.1:6379/15} \
  --store-listen "127.0.0.1:$P_STORE" --http-listen "127.0.0.1:$P_HTTP" \
  --grpc-listen "127.0.0.1:$P_GRPC" --admin-listen "$ADMIN" \
  --gateway-ops-listen "127.0.0.1:$P_OPS" >"$DIR/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DIR"' EXIT
export SHOAL_ADMIN_URL="http://$ADMIN"
ready=0
for _ in $(seq 1 150); do
  if "$BIN/shoal" invoke bench.kvdb --data '{"n": 10}' >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "shoal up did not serve the benchmark service within 30 s; its log:" >&2
  tail -40 "$DIR/up.log" >&2
  exit 1
fi
"$BIN/shoal" invoke bench.kvdb --data "{\"n\": $((N / 10))}" >/dev/null   # warm up
shoal_out=$("$BIN/shoal" invoke bench.kvdb --data "{\"n\": $N}")
rb=$(redis-benchmark -h 127.0.0.1 -p 6379 --dbnum 15 -c 1 -n "$N" -d 100 -t set,get --csv 2>/dev/null)
rb_set=$(echo "$rb" | awk -F'","' '/^"SET"/ {print $2}')
rb_get=$(echo "$rb" | awk -F'","' '/^"GET"/ {print $2}')
python3 - "$shoal_out" "$rb_set" "$rb_get" "$N" <<'PY'
import json, sys
s = json.loads(sys.argv[1]); rb_set, rb_get, n = float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
print(f"KVDB round trips, {n} of each, one at a time, 100-byte values, same Redis")
print(f"{'operation':<10}{'service via proxy':>20}{'redis-benchmark':>18}{'ratio':>8}")
for op, mine, theirs in (('SET', s['set_per_s'], rb_set), ('GET', s['get_per_s'], rb_get)):
    print(f"{op:<10}{mine:>14,.0f} op/s{theirs:>13,.0f} op/s{mine / theirs:>8.2f}")
print(f"(per call from Python: SET {s['set_us']:.1f} us, GET {s['get_us']:.1f} us)")
PY
