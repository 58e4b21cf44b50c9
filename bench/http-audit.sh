#!/usr/bin/env bash
# GraphQL-over-HTTP conformance: runs the server audit of the `graphql-http` npm package (1.23)
# against `protocol-graph serve`, as DESIGN.md ("HTTP") asks: AUTH_DISABLED=true,
# server.introspection = true, `apollo-require-preflight: true` on every request. See bench/README.md.
#
#   bash bench/http-audit.sh               # builds the release binary first
#   SKIP_BUILD=1 bash bench/http-audit.sh  # uses the existing target/release/protocol-graph
#
# Needs node >= 18 (global fetch) and npm. graphql-http is installed into a temporary folder, so
# nothing lands in the work tree. Everything listens on 127.0.0.1; every process started here is
# stopped on exit. Exit status: 0 when every audit passed, 1 otherwise.
set -euo pipefail

GRAPHQL_HTTP_VERSION=1.23
GRAPHQL_VERSION=16

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BIN=$ROOT/target/release/protocol-graph

TMP=$(mktemp -d "${TMPDIR:-/tmp}/protocol-graph-http-audit.XXXXXX")
PIDS=()

# stop_pid and the rest of the bench's process helpers; log and die are this script's own
# (its prefix, and exit 2 for a run that could not be made).
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
log() { printf '[http-audit %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 2
}

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        stop_pid "$pid"
    done
    if ((status >= 2)); then
        log "logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

command -v node >/dev/null || die "node not found (need node >= 18)"
command -v npm >/dev/null || die "npm not found"
node -e 'process.exit(typeof fetch === "function" ? 0 : 1)' || die "node has no global fetch: need node >= 18"

if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building (cargo build --release --bin protocol-graph)"
    (cd "$ROOT" && cargo build --release --bin protocol-graph) || die "cargo build"
fi
[[ -x $BIN ]] || die "$BIN is missing (run without SKIP_BUILD=1)"

log "installing graphql-http@$GRAPHQL_HTTP_VERSION into $TMP"
cp "$BENCH_DIR/http-audit.cjs" "$TMP/"
(cd "$TMP" && npm init -y >/dev/null &&
    npm install --no-audit --no-fund --loglevel=error \
        "graphql-http@$GRAPHQL_HTTP_VERSION" "graphql@$GRAPHQL_VERSION" >"$TMP/npm.log" 2>&1) ||
    die "npm install graphql-http@$GRAPHQL_HTTP_VERSION: $(tail -n 5 "$TMP/npm.log")"

# The fake upstreams as their own process, as in production the upstreams are elsewhere.
"$BIN" upstreams >"$TMP/upstreams.out" 2>"$TMP/upstreams.err" &
UP_PID=$!
PIDS+=("$UP_PID")
for _ in $(seq 1 100); do
    grep -q '^TOTVS_BASE_URL=' "$TMP/upstreams.out" 2>/dev/null && break
    kill -0 "$UP_PID" 2>/dev/null || die "the fake upstreams exited: $(tail -n 3 "$TMP/upstreams.err")"
    sleep 0.1
done
MOSIA_BASE_URL=$(sed -n 's/^MOSIA_BASE_URL=//p' "$TMP/upstreams.out")
TOTVS_BASE_URL=$(sed -n 's/^TOTVS_BASE_URL=//p' "$TMP/upstreams.out")
[[ -n $MOSIA_BASE_URL && -n $TOTVS_BASE_URL ]] || die "the fake upstreams printed no URLs"

# Introspection is off by default under `serve`; the audit queries `__type`.
printf '[server]\nintrospection = true\n' >"$TMP/config.toml"

# Port 0: the kernel picks a free port and `serve` logs the address it bound.
LISTEN_ADDR=127.0.0.1:0 \
    MOSIA_BASE_URL=$MOSIA_BASE_URL MOSIA_TOKEN=sandbox-mosia-token \
    TOTVS_BASE_URL=$TOTVS_BASE_URL TOTVS_USERNAME=sandbox TOTVS_PASSWORD=sandbox-password \
    AUTH_DISABLED=true CONFIG_FILE=$TMP/config.toml RUST_LOG=info NO_COLOR=1 \
    "$BIN" serve >"$TMP/gateway.out" 2>"$TMP/gateway.err" &
GW_PID=$!
PIDS+=("$GW_PID")
ADDR=
for _ in $(seq 1 100); do
    # `serve` logs JSON (`"addr":"…"`); readable lines (`addr=…`, maybe coloured) are read too.
    ADDR=$(cat "$TMP/gateway.out" "$TMP/gateway.err" | sed 's/\x1b\[[0-9;]*m//g' |
        grep 'serving the graph at /graphql' |
        sed -n 's/.*"addr":"\([0-9.:]*\)".*/\1/p; s/.*addr=\([0-9.:]*\).*/\1/p' |
        head -n 1 || true)
    [[ -n $ADDR ]] && break
    kill -0 "$GW_PID" 2>/dev/null || die "the gateway exited: $(tail -n 3 "$TMP/gateway.err")"
    sleep 0.1
done
[[ -n $ADDR ]] || die "the gateway did not report its address: $(tail -n 3 "$TMP/gateway.out")"
URL=http://$ADDR/graphql
log "auditing $URL"

status=0
node "$TMP/http-audit.cjs" "$URL" || status=$?
exit "$status"
