#!/usr/bin/env bash
# Resilience drill (issue 9): upstreams killed and restarted under load, slow clients, SIGTERM
# under load. Prints what was dropped (target 0) and exits 1 when anything was.
#
#   bash bench/chaos.sh                    # CHAOS_SECONDS=10 CHAOS_WORKERS=16 SLOW=2000
#   SLOW=20000 bash bench/chaos.sh         # the issue's 20,000 slow connections (needs ulimit -n > 20000)
#
# Everything listens on 127.0.0.1 only; every process started is stopped on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/protocol-graph
[[ ${SKIP_BUILD:-0} == 1 ]] || (cd "$ROOT" && cargo build --release --locked --quiet)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/protocol-graph-chaos.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# The slow clients need a descriptor each, on our side too.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
python3 "$ROOT/bench/chaos.py" "$BIN" "$WORK"
