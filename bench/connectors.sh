#!/usr/bin/env bash
# Outgoing connections: the same operations from a plain Rust client (lapin, sqlx), through
# shoal-connectors' gRPC API, and from a Python service (self.out), one at a time:
#   - an AMQP publish of 100 bytes, waiting for the broker's confirm (RabbitMQ on 5672);
#   - a parameterised SQL query round trip (`select :i::int4 + 1`, PostgreSQL on 5432).
#
#   bench/connectors.sh [N]      # N of each (default 5000)
#   bench/connectors.sh --smoke  # CI: debug build, 100 of each, figures meaningless
#
# Builds release binaries, starts `shoal up` on spare ports in a temporary folder, and
# prints one table with the ratios to the plain client.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shoal-target}"
if [ "${1:-}" = "--smoke" ]; then
  N=100
  cargo build -q --bins
  BIN="$CARGO_TARGET_DIR/debug"
else
  N="${1:-5000}"
  cargo build --release -q --bins
  BIN="$CARGO_TARGET_DIR/release"
fi
DIR=$(mktemp -d)
mkdir -p "$DIR/services"
cp bench/services/connbench.py "$DIR/services/"
QUEUE="shoal-bench-$$"
cat >"$DIR/shoal.yaml" <<YAML
outgoing:
  - {name: bench-rabbit, type: amqp, url: "amqp://guest:guest@127.0.0.1:5672/%2f", routing_key: "$QUEUE"}
  - {name: bench-pg, type: sql, url: "postgres://postgres@127.0.0.1:5432/test", pool_size: 1}
YAML
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
"$BIN/shoal" up --dir "$DIR" \
  --store-listen "127.0.0.1:$P_STORE" --http-listen "127.0.0.1:$P_HTTP" \
  --grpc-listen "127.0.0.1:$P_GRPC" --admin-listen "$ADMIN" \
  --gateway-ops-listen "127.0.0.1:$P_OPS" >"$DIR/up.log" 2>&1 &
UP=$!
trap 'kill $UP 2>/dev/null; wait $UP 2>/dev/null; rm -rf "$DIR"' EXIT
cleanup_queue() { "$BIN/shoal-bench-connectors" --cleanup --queue "$QUEUE" --connectors - \
  --amqp-connection - --sql-connection - >/dev/null 2>&1 || true; }
export SHOAL_ADMIN_URL="http://$ADMIN"
ARGS="{\"amqp\": \"bench-rabbit\", \"sql\": \"bench-pg\""
ready=0
for _ in $(seq 1 150); do
  if "$BIN/shoal" invoke bench.connectors --data "$ARGS, \"n\": 2}" >/dev/null 2>&1; then ready=1; break; fi
  sleep 0.2
done
if [ "$ready" != 1 ]; then
  echo "shoal up did not serve the benchmark service within 30 s; its log:" >&2
  tail -40 "$DIR/up.log" >&2
  exit 1
fi
CONNECTORS=$(curl -s -u "admin:$SHOAL_ADMIN_PASSWORD" "$SHOAL_ADMIN_URL/api/v1/cluster" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["members"]["connectors"][0]["grpc_addr"])')
rust_out=$("$BIN/shoal-bench-connectors" --connectors "$CONNECTORS" --tls-dir "$DIR/.shoal/tls" --amqp-connection bench-rabbit \
  --sql-connection bench-pg --queue "$QUEUE" --n "$N")
"$BIN/shoal" invoke bench.connectors --data "$ARGS, \"n\": $((N / 10 + 1))}" >/dev/null   # warm up
py_out=$("$BIN/shoal" invoke bench.connectors --data "$ARGS, \"n\": $N}")
python3 - "$rust_out" "$py_out" "$N" <<'PY'
import json, sys
r, p, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
print(f"Outgoing connections, {n} of each, one at a time")
print(f"{'operation':<24}{'plain Rust client':>19}{'via connectors':>16}{'ratio':>7}{'from Python':>13}{'ratio':>7}")
for op, d, c, py in (('AMQP publish + confirm', r['amqp_direct'], r['amqp_connector'], p['amqp_per_s']),
                     ('SQL query round trip', r['sql_direct'], r['sql_connector'], p['sql_per_s'])):
    print(f"{op:<24}{d:>13,.0f} op/s{c:>11,.0f} op/s{c / d:>7.2f}{py:>8,.0f} op/s{py / d:>7.2f}")
PY
cleanup_queue
