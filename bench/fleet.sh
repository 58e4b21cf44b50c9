#!/usr/bin/env bash
# Fleet row (issue 12): 3 replicas over one Redis beside 1 replica alone, same fake upstreams,
# cold burst (upstream calls per resource) then warm load (req/s). Prints a markdown table.
#
#   bash bench/fleet.sh                    # LATENCY_MS=20 DURATION=10 CONNECTIONS=30 BURST=30
#
# Needs wrk and redis-server (installed here with apt-get when missing). Loopback only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command -v wrk >/dev/null && command -v redis-server >/dev/null ||
    (apt-get update && apt-get install -y wrk redis-server)
[[ ${SKIP_BUILD:-0} == 1 ]] || (cd "$ROOT" && cargo build --release --locked --quiet)
python3 "$ROOT/bench/fleet.py" "$ROOT/target/release/protocol-graph" "$ROOT"
