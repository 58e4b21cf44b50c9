#!/usr/bin/env bash
# Load benchmark of the gateway beside the Tailcall peer (issues 4 and 11). See bench/README.md.
#
#   bash bench/run.sh                      # LATENCY_MS=20 DURATION=10
#   LATENCY_MS=50 DURATION=30 bash bench/run.sh
#
# Environment: LATENCY_MS (fake upstream latency, default 20), DURATION (seconds per measured
# run, default 10), WARMUP (seconds of wrk warm-up before cold rows, default 2), CONNECTIONS
# (default 32), THREADS (wrk threads, default 1, see README), PAIRS and PAIR_SECONDS (the
# paired rounds that decide the authentication and cold fan-out targets, default 4 × 5 s),
# SKIP_BUILD=1 (use the existing
# target/release/protocol-graph), BURST (size of the concurrent burst, default 100),
# TAILCALL_RUN (the peer's run.sh, default ../shared/peers/tailcall/run.sh next to the repo;
# the Tailcall rows say so when it is absent), NO_TAILCALL=1 (skip them).
#
# Everything listens on 127.0.0.1 only. Every process started here is stopped on exit.
set -euo pipefail

LATENCY_MS=${LATENCY_MS:-20}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
BURST=${BURST:-100}
PAIRS=${PAIRS:-4}
PAIR_SECONDS=${PAIR_SECONDS:-5}
SERIAL=10 # sequential queries of the exact upstream-call checks

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BIN=$ROOT/target/release/protocol-graph
LUA=$BENCH_DIR/graphql.lua
Q_LATEST=$BENCH_DIR/queries/latest.json
Q_FANOUT=$BENCH_DIR/queries/fanout.json
OUT_MD=$BENCH_DIR/last-run.md
TAILCALL_RUN=${TAILCALL_RUN:-$ROOT/../shared/peers/tailcall/run.sh}

# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh"
# shellcheck source=bench/report.sh
source "$BENCH_DIR/report.sh"

for v in LATENCY_MS DURATION WARMUP CONNECTIONS THREADS BURST PAIRS PAIR_SECONDS; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
((DURATION > 0 && CONNECTIONS > 0 && THREADS > 0 && THREADS <= CONNECTIONS && BURST > 0 && PAIRS > 0 && PAIR_SECONDS > 0)) ||
    { echo "bench: DURATION, CONNECTIONS, THREADS, BURST, PAIRS, PAIR_SECONDS must be > 0 (THREADS <= CONNECTIONS)" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/protocol-graph-bench.XXXXXX")
PIDS=()

cleanup() {
    local status=$? pid child
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        # The Tailcall peer's run.sh forwards TERM to Tailcall; its children are stopped too.
        for child in $(pgrep -P "$pid" 2>/dev/null); do kill -TERM "$child" 2>/dev/null || true; done
        stop_pid "$pid"
    done
    if ((status != 0)); then
        log "logs kept in $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
    log "installing ${missing[*]} with apt-get"
    [[ $(id -u) == 0 ]] || die "need root to apt-get install ${missing[*]} (or install them yourself)"
    timeout 600 apt-get update -qq || die "apt-get update"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]}"
fi
command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain >= 1.89 (rustup)"

# ---------------------------------------------------------------------------------------------
# 2. Build
# ---------------------------------------------------------------------------------------------
if [[ ${SKIP_BUILD:-0} != 1 ]]; then
    log "building (cargo build --release --bin protocol-graph)"
    (cd "$ROOT" && timeout 3600 cargo build --release --bin protocol-graph) || die "cargo build"
fi
[[ -x $BIN ]] || die "$BIN is missing"

CLK_TCK=$(getconf CLK_TCK)
read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range
PORT_LOW=10000 PORT_HIGH=$((EPHEMERAL_LOW - 1))
((PORT_HIGH > PORT_LOW + 1000)) || PORT_LOW=1024
[[ ${NO_TAILCALL:-0} != 1 ]] || TAILCALL_RUN=/nonexistent/NO_TAILCALL
TC_VERSION="Tailcall: not run"

# ---------------------------------------------------------------------------------------------
# 3. Run
# ---------------------------------------------------------------------------------------------
# Is the machine quiet? Other work on 2 cores skews every number below.
read -r q0 qt0 < <(machine_ticks)
sleep 1
read -r q1 qt1 < <(machine_ticks)
BACKGROUND=$(awk -v b=$((q1 - q0)) -v t=$((qt1 - qt0)) -v n="$(nproc)" 'BEGIN { printf "%.0f", t ? b / t * 100 * n : 0 }')
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
((BACKGROUND < 20)) || log "warning: the machine is already ${BACKGROUND} % busy (of $(($(nproc) * 100)) %) before the benchmark"

start_upstreams

# reference_row LABEL CONNS: the fake Mosia alone, without a gateway; sets REF_P50, prints the row.
reference_row() {
    local label=$1 CONNS=$2 m0 m1 tot0 tot1 up0 up1 cpu
    log "row: $label"
    read -r m0 tot0 < <(machine_ticks)
    up0=$(proc_ticks "$UP_PID")
    run_wrk "$MOSIA_BASE_URL/clientes/ocorrencias/ultimosProtocolos" "" "$DURATION" "$TMP/mosia-$CONNS.txt" "$BENCH_DIR/mosia.lua"
    read -r m1 tot1 < <(machine_ticks)
    up1=$(proc_ticks "$UP_PID")
    cpu=$(awk -v u=$((up1 - up0)) -v busy=$((m1 - m0)) -v tot=$((tot1 - tot0)) -v hz="$CLK_TCK" -v d="$DURATION" -v n="$(nproc)" \
        'BEGIN { u = u / hz / d * 100; o = (tot ? busy / tot * 100 * n : 0) - u; printf "— / %.0f / — / %.0f", u, o < 0 ? 0 : o }')
    REF_P50=$WRK_P50
    log "  $WRK_RPS req/s, p50 $WRK_P50 ms, p99 $WRK_P99 ms"
    echo "| $label | — | — | $CONNS | $WRK_RPS | $WRK_P50 | $WRK_P99 | — | — | — | $(peak_rss_mib "$UP_PID") (upstreams) | — | $WRK_BAD | $cpu | (reference) |"
}
REF_ROW=$(reference_row "(ref) fake Mosia alone, no gateway" "$CONNECTIONS")
REF1_ROW=$(reference_row "(ref) fake Mosia alone, no gateway, 1 client" 1)
REF1_P50=$(awk -F' [|] ' '{ print $6 }' <<<"$REF1_ROW")

# Warm: protocol-graph with its caches, with and without authentication, and Tailcall with its
# 60 s @cache, all up at once so that each scenario's rows run back to back.
start_gateway cache-on $'[cache]\nenabled = true'
ON_URL=$GW_URL ON_PID=$GW_PID
SECRET=$(openssl rand -hex 32)
start_gateway auth-on $'[cache]\nenabled = true\n[rate_limit]\nper_caller_per_sec = 1000000\nper_caller_burst = 1000000' \
    AUTH_DISABLED=false AUTH_JWT_SECRET="$SECRET" RUST_LOG=warn,audit=info
AUTH_URL=$GW_URL AUTH_PID=$GW_PID
# The same audit lines without a token: what authentication adds on its own.
start_gateway audit-on $'[cache]\nenabled = true' RUST_LOG=warn,audit=info
AUDIT_URL=$GW_URL AUDIT_PID=$GW_PID
TOKEN=$(mint_token "$SECRET" bench-staff protocols:read)
HAVE_TC=0
if start_tailcall tailcall-cache 60000; then
    HAVE_TC=1
    TC_VERSION="Tailcall $("${TAILCALL_HOME:-$HOME/.cache/tailcall-peer}/tailcall" --version 2>/dev/null | awk '{ print $NF }') (60 s @cache on warm rows, none on cold rows)"
else
    log "no Tailcall rows: $TC_WHY"
    TC_VERSION="Tailcall: not run ($TC_WHY)"
fi

measure ceiling "(d) ceiling: GET /healthz" pg on "$ON_URL" "$ON_PID" "" none 0
for scenario in "a|a|latestProtocols|$Q_LATEST|0" "c_warm|c|fan-out|$Q_FANOUT|20"; do
    IFS='|' read -r key letter name body items <<<"$scenario"
    measure "$key" "($letter) $name, warm" pg on "$ON_URL" "$ON_PID" "$body" one "$items"
    if [[ $key == c_warm ]]; then
        # Right after the warm row, within every TTL (Mosia's is 30 s).
        serial_check "$ON_URL" "$Q_FANOUT"
        C_WARM_SERIAL=$SERIAL_GW C_WARM_SERIAL_UP=$SERIAL_UP
    fi
    measure "${key}_audit" "($letter) $name, warm, audit log on, no token" pg on "$AUDIT_URL" "$AUDIT_PID" "$body" one "$items"
    export BENCH_TOKEN=$TOKEN
    measure "${key}_auth" "($letter) $name, warm, a staff token on every request" pg on "$AUTH_URL" "$AUTH_PID" "$body" one "$items"
    unset BENCH_TOKEN
    if ((HAVE_TC)); then
        measure "${key}_tc" "($letter) $name, warm" tc "60 s @cache" "$TC_URL" "$TC_PID" "$body" one "$items"
    else
        skip_row "${key}_tc" "($letter) $name, warm" "$TC_WHY"
    fi
done

# Two targets compare rows less apart than this machine drifts over a minute (bench/README.md):
# authentication's cost (a few percent of warm req/s) and the cold fan-out against Tailcall (a
# few tenths of a millisecond). Each is also measured in PAIRS paired rounds of PAIR_SECONDS:
# A then B, then B then A, and so on, so that a steady drift falls on both alike; the median of
# the rounds decides.
#
# paired_rounds KEY METRIC BODY CONNS A_URL A_TOKEN B_URL B_TOKEN: METRIC rps (R_PAIRED[KEY] is
# the median of B's req/s ÷ A's, %) or p50 (R_PAIRED[KEY] is the median of A's p50 − B's, ms;
# R_PAIRED_A[KEY] the median of A's p50). R_PAIRS[KEY] lists the rounds. A_TOKEN, B_TOKEN: the
# bearer token each side sends ("" for none).
declare -A R_PAIRS R_PAIRED R_PAIRED_A
# median FORMAT: the median of the numbers on stdin, printf-formatted.
median() { sort -g | awk -v f="$1" '{ v[NR] = $1 } END { printf f, NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
paired_rounds() {
    local key=$1 metric=$2 body=$3 conns=$4 i side value a b rounds=() values=() as=()
    local -A url=([A]=$5 [B]=$7) token=([A]=$6 [B]=$8)
    log "paired rounds: $key, $PAIRS × $PAIR_SECONDS s on each side"
    for ((i = 0; i < PAIRS; i++)); do
        for side in $( ((i % 2 == 0)) && echo "A B" || echo "B A"); do
            [[ -z ${token[$side]} ]] || export BENCH_TOKEN=${token[$side]}
            CONNS=$conns run_wrk "${url[$side]}/graphql" "$body" "$PAIR_SECONDS" "$TMP/$key.pair.txt"
            unset BENCH_TOKEN
            ((WRK_BAD == 0)) || die "paired rounds of $key: $WRK_BAD errors"
            if [[ $metric == rps ]]; then value=$WRK_RPS; else value=$WRK_P50; fi
            if [[ $side == A ]]; then a=$value; else b=$value; fi
        done
        if [[ $metric == rps ]]; then
            values+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", a ? b / a * 100 : 0 }')")
            rounds+=("$a vs $b req/s: ${values[-1]} %")
        else
            values+=("$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a - b }')")
            as+=("$a")
            rounds+=("$a vs $b ms")
        fi
        log "  round $((i + 1)): ${rounds[-1]}"
    done
    if [[ $metric == rps ]]; then
        R_PAIRS[$key]=$(join ', ' "${rounds[@]##*: }")
        R_PAIRED[$key]=$(printf '%s\n' "${values[@]}" | median %.1f)
    else
        R_PAIRS[$key]=$(join ', ' "${rounds[@]}")
        R_PAIRED[$key]=$(printf '%s\n' "${values[@]}" | median %.2f)
        R_PAIRED_A[$key]=$(printf '%s\n' "${as[@]}" | median %.2f)
    fi
}
# Without authentication (A) against a token on every request with its audit lines (B): the
# target. Then the token alone: the same audit lines on both sides.
paired_rounds a_auth rps "$Q_LATEST" "$CONNECTIONS" "$ON_URL" "" "$AUTH_URL" "$TOKEN"
paired_rounds c_warm_auth rps "$Q_FANOUT" "$CONNECTIONS" "$ON_URL" "" "$AUTH_URL" "$TOKEN"
paired_rounds a_token rps "$Q_LATEST" "$CONNECTIONS" "$AUDIT_URL" "" "$AUTH_URL" "$TOKEN"
paired_rounds c_warm_token rps "$Q_FANOUT" "$CONNECTIONS" "$AUDIT_URL" "" "$AUTH_URL" "$TOKEN"
AUDIT_LINES=$(grep -c '"target":"audit"' "$TMP/auth-on.log" || true)
stop_gateway "$ON_PID"
stop_gateway "$AUTH_PID"
stop_gateway "$AUDIT_PID"
((HAVE_TC == 0)) || stop_tailcall

# Cold: no cache on either gateway; one client, then CONNECTIONS.
start_gateway cache-off $'[cache]\nenabled = false'
OFF_URL=$GW_URL OFF_PID=$GW_PID
if ((HAVE_TC)) && ! start_tailcall tailcall-nocache 0; then
    HAVE_TC=0
    log "no cold Tailcall rows: $TC_WHY"
fi
for scenario in "b1|b|latestProtocols|$Q_LATEST|0|1" "c1|c|fan-out|$Q_FANOUT|20|1" \
    "b|b|latestProtocols|$Q_LATEST|0|$CONNECTIONS" "c_cold|c|fan-out|$Q_FANOUT|20|$CONNECTIONS"; do
    IFS='|' read -r key letter name body items conns <<<"$scenario"
    label="($letter) $name, cold, $conns client$( ((conns == 1)) || echo s)"
    measure "$key" "$label" pg off "$OFF_URL" "$OFF_PID" "$body" wrk "$items" "$conns"
    if ((HAVE_TC)); then
        measure "${key}_tc" "$label" tc off "$TC_URL" "$TC_PID" "$body" wrk "$items" "$conns"
    else
        skip_row "${key}_tc" "$label" "${TC_WHY:-the Tailcall peer did not run}"
    fi
done
((HAVE_TC == 0)) || paired_rounds c1 p50 "$Q_FANOUT" 1 "$OFF_URL" "" "$TC_URL" ""
serial_check "$OFF_URL" "$Q_FANOUT"
C_COLD_SERIAL=$SERIAL_GW C_COLD_SERIAL_UP=$SERIAL_UP
stop_gateway "$OFF_PID"
((HAVE_TC == 0)) || stop_tailcall

# BURST concurrent identical cold fan-out queries on a fresh cache-on gateway.
start_gateway burst $'[cache]\nenabled = true'
BURST_URL=$GW_URL BURST_PID=$GW_PID
b_g0=$(metric "$BURST_URL") b_k0=$(metric "$BURST_URL" totvs_token)
b_co0=$(counter "$BURST_URL" protocol_graph_cache_coalesced_total)
upstream_served
u_m0=${SERVED[mosia]} u_p0=${SERVED[totvs_protocols]} u_i0=${SERVED[totvs_interactions]} u_k0=${SERVED[totvs_token]}
log "burst: $BURST concurrent identical fan-out queries"
urls=()
for ((i = 0; i < BURST; i++)); do urls+=("$BURST_URL/graphql"); done
t0=$(now_ms)
if curl --help all 2>/dev/null | grep -q -- '--parallel-immediate'; then
    curl -sS --max-time 60 --parallel --parallel-immediate --parallel-max "$BURST" \
        -H 'Content-Type: application/json' --data-binary "@$Q_FANOUT" \
        -w '\n@@status %{http_code}\n' "${urls[@]}" >"$TMP/burst.out" 2>"$TMP/burst.err" || true
else
    seq "$BURST" | timeout 120 xargs -P "$BURST" -I{} curl -sS --max-time 60 \
        -H 'Content-Type: application/json' --data-binary "@$Q_FANOUT" \
        -w '\n@@status %{http_code}\n' "$BURST_URL/graphql" >"$TMP/burst.out" 2>"$TMP/burst.err" || true
fi
t1=$(now_ms)
burst_ok=$(grep -c '^@@status 200$' "$TMP/burst.out" || true)
burst_full=$( (grep -o '"authorizationProtocols":{"items":\[' "$TMP/burst.out" || true) | wc -l)
burst_errors=$( (grep -o '"errors"' "$TMP/burst.out" || true) | wc -l)
b_g=$(($(metric "$BURST_URL") - b_g0))
b_k=$(($(metric "$BURST_URL" totvs_token) - b_k0))
b_co=$(($(counter "$BURST_URL" protocol_graph_cache_coalesced_total) - b_co0))
upstream_served
u_m=$((SERVED[mosia] - u_m0)) u_p=$((SERVED[totvs_protocols] - u_p0))
u_i=$((SERVED[totvs_interactions] - u_i0)) u_k=$((SERVED[totvs_token] - u_k0))
b_rss=$(peak_rss_mib "$BURST_PID")
stop_gateway "$BURST_PID"
if ((u_m == 1 && u_p == 1 && u_i == 20 && u_k <= 1 && b_g - b_k == 22 && burst_ok == BURST &&
    burst_full == BURST && burst_errors == 0)); then
    bv=met
else
    bv="**missed**"
fi
BURST_LINE="$BURST concurrent identical cold fan-out queries (fresh cache-on protocol-graph): $burst_ok/$BURST HTTP 200,"
BURST_LINE+=" $burst_full complete, $burst_errors with errors, in $((t1 - t0)) ms. The fake upstreams served"
BURST_LINE+=" Mosia $u_m + TOTVS list $u_p + interactions $u_i = $((u_m + u_p + u_i)) (target 22 = 1 + 1 + 20)"
BURST_LINE+=" plus $u_k token call(s); the gateway counted $b_g upstream calls ($b_k token);"
BURST_LINE+=" $b_co reads coalesced; peak RSS $b_rss MiB: $bv."
BURST_LINE+=$'\n\n'"Authentication rows: every request carried a staff HS256 token (verified once, then"
BURST_LINE+=" remembered by digest), passed the caller's rate-limit bucket, and wrote its audit line"
BURST_LINE+=" (RUST_LOG=warn,audit=info, the non-blocking writer): $AUDIT_LINES audit lines in the gateway's log."

# ---------------------------------------------------------------------------------------------
# 4. Report
# ---------------------------------------------------------------------------------------------
write_report >"$TMP/report.md"
cp "$TMP/report.md" "$OUT_MD"
echo
cat "$OUT_MD"
echo
log "written to $OUT_MD"
