#!/usr/bin/env bash
# Load benchmark of the gateway (issue 4). See bench/README.md.
#
#   bash bench/run.sh                      # LATENCY_MS=20 DURATION=10
#   LATENCY_MS=50 DURATION=30 bash bench/run.sh
#
# Environment: LATENCY_MS (fake upstream latency, default 20), DURATION (seconds per measured
# run, default 10), WARMUP (seconds of wrk warm-up before cold runs, default 2), CONNECTIONS
# (default 32), THREADS (wrk threads, default 2, see README), SKIP_BUILD=1 (use
# the existing target/release/protocol-graph), BURST (size of the concurrent burst, default 100).
#
# Everything listens on 127.0.0.1 only. Every process started here is stopped on exit.
set -euo pipefail

LATENCY_MS=${LATENCY_MS:-20}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
BURST=${BURST:-100}
SERIAL=10 # sequential queries of the exact upstream-call checks

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BIN=$ROOT/target/release/protocol-graph
LUA=$BENCH_DIR/graphql.lua
Q_LATEST=$BENCH_DIR/queries/latest.json
Q_FANOUT=$BENCH_DIR/queries/fanout.json
OUT_MD=$BENCH_DIR/last-run.md

for v in LATENCY_MS DURATION WARMUP CONNECTIONS THREADS BURST; do
    [[ ${!v} =~ ^[0-9]+$ ]] || { echo "bench: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
((DURATION > 0 && CONNECTIONS > 0 && THREADS > 0 && THREADS <= CONNECTIONS && BURST > 0)) ||
    { echo "bench: DURATION, CONNECTIONS, THREADS, BURST must be > 0 (THREADS <= CONNECTIONS)" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/protocol-graph-bench.XXXXXX")
PIDS=()

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "FAILED: $*"
    exit 1
}

# Stops one process we started: SIGTERM, up to 5 s of grace, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$? pid
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
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

forget_pid() {
    local pid=$1 p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# ---------------------------------------------------------------------------------------------
# 1. Tools
# ---------------------------------------------------------------------------------------------
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
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

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)

# A loopback port nothing listens on, below the ephemeral range (an outgoing connection may
# hold any port in that range). Checked by connecting; a gateway that still loses the race
# exits, and start_gateway tries another port.
read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range
PORT_LOW=10000 PORT_HIGH=$((EPHEMERAL_LOW - 1))
((PORT_HIGH > PORT_LOW + 1000)) || PORT_LOW=1024
free_port() {
    local p _
    for _ in $(seq 1 200); do
        p=$((PORT_LOW + (RANDOM * 32768 + RANDOM) % (PORT_HIGH - PORT_LOW)))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# CPU ticks (user + system) a process has used so far.
proc_ticks() {
    awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
# Busy and total ticks of the whole machine.
machine_ticks() {
    awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6; exit }' /proc/stat
}
# Peak resident set size of a process, MiB.
peak_rss_mib() {
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status"
}
now_ms() { date +%s%3N; }
# join SEP ITEM...: the items separated by SEP.
join() {
    local sep=$1 out=${2:-} item
    shift 2 || return 0
    for item in "$@"; do out+="$sep$item"; done
    printf '%s' "$out"
}

# protocol_graph_upstream_calls_total on /metrics: one service, or (no label) all upstream
# HTTP calls = mosia + totvs + totvs_token (the three series are disjoint: service="totvs"
# counts resource calls only).
metric() {
    local url=$1 label=${2:-}
    curl -fsS --max-time 5 "$url/metrics" |
        awk -v label="$label" '
            /^protocol_graph_upstream_calls_total\{/ {
                if (label == "" || index($1, "service=\"" label "\"")) s += $2
            }
            END { printf "%d", s }'
}
# Calls for resources (mosia + totvs), token calls left out.
resource_calls() {
    local url=$1
    echo $(($(metric "$url") - $(metric "$url" totvs_token)))
}

# What the fake upstreams served so far, from their side (SIGUSR1 makes them print a line):
# sets SERVED_TOTAL and SERVED[route] (mosia, totvs_token, totvs_protocols, ...).
declare -A SERVED
upstream_served() {
    local before deadline word
    before=$(grep -c '^SANDBOX_CALLS' "$TMP/upstreams.out" || true)
    kill -USR1 "$UP_PID" 2>/dev/null || die "the fake upstreams (pid $UP_PID) are gone: $(tail -n 3 "$TMP/upstreams.err")"
    deadline=$(($(now_ms) + 5000))
    until (($(grep -c '^SANDBOX_CALLS' "$TMP/upstreams.out" || true) > before)); do
        (($(now_ms) < deadline)) || die "the fake upstreams did not report their calls"
        sleep 0.02
    done
    SERVED_TOTAL=0
    for word in $(grep '^SANDBOX_CALLS' "$TMP/upstreams.out" | tail -n 1 | cut -d' ' -f2-); do
        SERVED[${word%%=*}]=${word#*=}
        SERVED_TOTAL=$((SERVED_TOTAL + ${word#*=}))
    done
}
counter() {
    curl -fsS --max-time 5 "$1/metrics" | awk -v name="$2" '$1 == name { printf "%d", $2; f = 1 } END { if (!f) printf "0" }'
}

# One GraphQL POST; checks the answer and prints nothing. $3: expected authorization items.
graphql_check() {
    local url=$1 body=$2 items=$3 answer n
    answer=$(curl -sS --max-time 30 -H 'Content-Type: application/json' --data-binary "@$body" "$url/graphql") ||
        die "POST $url/graphql failed"
    [[ $answer == *'"data":{"beneficiary":{'* && $answer != *'"errors"'* ]] ||
        die "unexpected answer from $url/graphql: ${answer:0:400}"
    if ((items > 0)); then
        n=$( (grep -o '"interactions":{"items":\[{' <<<"$answer" || true) | wc -l)
        ((n == items)) || die "expected $items protocols with interactions, got $n: ${answer:0:400}"
    fi
}

start_upstreams() {
    RUST_LOG=warn "$BIN" upstreams --latency-ms "$LATENCY_MS" >"$TMP/upstreams.out" 2>"$TMP/upstreams.err" &
    UP_PID=$!
    PIDS+=("$UP_PID")
    local deadline=$(($(now_ms) + 10000))
    until grep -q '^TOTVS_BASE_URL=' "$TMP/upstreams.out" 2>/dev/null; do
        kill -0 "$UP_PID" 2>/dev/null || die "upstreams exited: $(cat "$TMP/upstreams.err")"
        (($(now_ms) < deadline)) || die "upstreams did not print their URLs within 10 s"
        sleep 0.05
    done
    MOSIA_BASE_URL=$(sed -n 's/^MOSIA_BASE_URL=//p' "$TMP/upstreams.out")
    TOTVS_BASE_URL=$(sed -n 's/^TOTVS_BASE_URL=//p' "$TMP/upstreams.out")
    log "fake upstreams (pid $UP_PID, ${LATENCY_MS} ms): $MOSIA_BASE_URL $TOTVS_BASE_URL"
}

# start_gateway NAME TOML: starts `protocol-graph serve` the production way; sets GW_PID, GW_URL.
start_gateway() {
    local name=$1 toml=$2 _
    printf '%s\n' "$toml" >"$TMP/$name.toml"
    for _ in 1 2 3 4 5; do
        try_gateway "$name" && return 0
        grep -q 'cannot listen' "$TMP/$name.log" || die "gateway $name exited: $(tail -n 5 "$TMP/$name.log")"
        log "gateway $name: port taken, trying another one"
    done
    die "gateway $name: no free port after 5 attempts"
}

# One start on a fresh port: 0 when serving, 1 when it exited (see its log).
try_gateway() {
    local name=$1 port deadline
    port=$(free_port) || die "no free loopback port"
    LISTEN_ADDR=127.0.0.1:$port \
        MOSIA_BASE_URL=$MOSIA_BASE_URL MOSIA_TOKEN=sandbox-mosia-token \
        TOTVS_BASE_URL=$TOTVS_BASE_URL TOTVS_USERNAME=sandbox TOTVS_PASSWORD=sandbox-password \
        AUTH_DISABLED=true CONFIG_FILE=$TMP/$name.toml RUST_LOG=warn \
        "$BIN" serve >"$TMP/$name.log" 2>&1 &
    GW_PID=$!
    PIDS+=("$GW_PID")
    GW_URL=http://127.0.0.1:$port
    deadline=$(($(now_ms) + 15000))
    until curl -fsS --max-time 1 "$GW_URL/healthz" >/dev/null 2>&1; do
        kill -0 "$GW_PID" 2>/dev/null || break
        (($(now_ms) < deadline)) || die "gateway $name: /healthz did not answer within 15 s"
        sleep 0.05
    done
    sleep 0.2 # a gateway that lost the port race to another server would have exited by now
    if ! kill -0 "$GW_PID" 2>/dev/null; then
        wait "$GW_PID" 2>/dev/null || true
        forget_pid "$GW_PID"
        return 1
    fi
    log "gateway $name (pid $GW_PID) at $GW_URL"
}

stop_gateway() {
    stop_pid "$1"
    forget_pid "$1"
}

# Converts wrk's "1.23ms" / "456.00us" / "1.02s" / "1.50m" to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.2f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
        else printf "nan" }'
}

# run_wrk URL BODY(or "") SECONDS OUTFILE [SCRIPT]: one wrk run, bounded in time; sets WRK_*.
#   BODY: POST it with graphql.lua; "": GET, with SCRIPT when given.
run_wrk() {
    local url=$1 body=$2 secs=$3 out=$4 script=${5:-} pid
    local args=(-t"$THREADS" -c"$CONNECTIONS" -d"${secs}s" --timeout 10s --latency)
    [[ -z $script ]] || args+=(-s "$script")
    if [[ -n $body ]]; then
        BENCH_BODY_FILE=$body timeout $((secs + 60)) wrk "${args[@]}" -s "$LUA" "$url" >"$out" 2>&1 &
    else
        timeout $((secs + 60)) wrk "${args[@]}" "$url" >"$out" 2>&1 &
    fi
    pid=$!
    PIDS+=("$pid")
    wait "$pid" || die "wrk failed: $(cat "$out")"
    forget_pid "$pid"
    WRK_REQUESTS=$(awk '/ requests in / { print $1; exit }' "$out")
    WRK_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2; exit }' "$out")
    WRK_P50=$(to_ms "$(awk '$1 == "50%" { print $2; exit }' "$out")")
    WRK_P99=$(to_ms "$(awk '$1 == "99%" { print $2; exit }' "$out")")
    WRK_BAD=$(awk '/Non-2xx or 3xx responses:/ { n += $NF }
                   /Socket errors:/ { gsub(/,/, ""); n += $4 + $6 + $8 + $10 }
                   END { printf "%d", n }' "$out")
    [[ -n $WRK_REQUESTS && -n $WRK_RPS ]] || die "cannot parse wrk output: $(cat "$out")"
}

# Seconds of CPU time of the waited-for children (bash `times`, second line): wrk's own CPU use.
# `times` must run in this shell (a subshell would see its own children only), hence the file.
children_cpu_s() {
    times >"$TMP/times.txt"
    awk 'NR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
        printf "%.3f", t }' "$TMP/times.txt"
}

# Rows of the table, in order; rows whose call counts disagree between gateway and upstreams.
ROWS=()
BUSY_ROWS=()
MISMATCH=()
CANCELLED=()
CEILING_RPS=

# measure KEY LABEL CACHE URL PID BODY WARMUP ITEMS
#   URL: the gateway's base URL; BODY: a GraphQL JSON body for POST /graphql, or "" for
#   GET /healthz. ITEMS: authorization protocols the answer must hold (0: not checked).
#   WARMUP: none | one (one checked request) | wrk (one checked request, then WARMUP s of wrk)
#   Upstream calls per query = calls between the first snapshot and the last / every request
#   sent in between (warm-up included). WINDOW_CALLS: calls during the measured wrk run only.
measure() {
    local key=$1 label=$2 cache=$3 url=$4 pid=$5 body=$6 warmup=$7 items=$8
    local c0 c1 c2 e0 e1 sent=0 m0 m1 gw0 gw1 up0 up1 cpu0 cpu1 rss cpq vs errs
    log "row: $label"
    c0=$(metric "$url")
    upstream_served
    local s0=$SERVED_TOTAL s2
    e0=$(counter "$url" protocol_graph_upstream_errors_total)
    if [[ $warmup != none ]]; then
        graphql_check "$url" "$body" "$items"
        sent=1
    fi
    if [[ $warmup == wrk ]] && ((WARMUP > 0)); then
        run_wrk "$url/graphql" "$body" "$WARMUP" "$TMP/$key.warmup.txt"
        sent=$((sent + WRK_REQUESTS))
    fi
    c1=$(metric "$url")
    read -r m0 tot0 < <(machine_ticks)
    gw0=$(proc_ticks "$pid")
    up0=$(proc_ticks "$UP_PID")
    children_cpu_s >"$TMP/cpu0.txt"
    cpu0=$(<"$TMP/cpu0.txt")
    if [[ -n $body ]]; then
        run_wrk "$url/graphql" "$body" "$DURATION" "$TMP/$key.txt"
    else
        run_wrk "$url/healthz" "" "$DURATION" "$TMP/$key.txt"
    fi
    read -r m1 tot1 < <(machine_ticks)
    gw1=$(proc_ticks "$pid")
    up1=$(proc_ticks "$UP_PID")
    children_cpu_s >"$TMP/cpu1.txt"
    cpu1=$(<"$TMP/cpu1.txt")
    if [[ -n $body ]]; then
        graphql_check "$url" "$body" "$items" # still correct under load?
        sent=$((sent + 1))
    fi
    c2=$(metric "$url")
    upstream_served
    s2=$SERVED_TOTAL
    # The gateway counts a call when it starts sending; a request wrk abandons at the end of a
    # run may be cancelled before its upstream call arrives. Anything else is a discrepancy.
    local diff=$(((c2 - c0) - (s2 - s0)))
    if ((diff < 0 || diff > CONNECTIONS * 22)); then
        MISMATCH+=("$label: gateway $((c2 - c0)), upstreams $((s2 - s0))")
    elif ((diff > 0)); then
        CANCELLED+=("$label: $diff")
    fi
    e1=$(counter "$url" protocol_graph_upstream_errors_total)
    rss=$(peak_rss_mib "$pid")
    sent=$((sent + WRK_REQUESTS))
    cpq=$(awk -v c=$((c2 - c0)) -v n="$sent" 'BEGIN { printf "%.4f", n ? c / n : 0 }')
    errs=$((WRK_BAD + e1 - e0))
    WINDOW_CALLS=$((c2 - c1))
    # CPU over the measured run, % of one core (2 cores = 200 %).
    local cpu
    cpu=$(awk -v g=$((gw1 - gw0)) -v u=$((up1 - up0)) -v w="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" \
        -v busy=$((m1 - m0)) -v tot=$((tot1 - tot0)) -v hz="$CLK_TCK" -v d="$DURATION" -v n="$(nproc)" \
        'BEGIN {
            g = g / hz / d * 100; u = u / hz / d * 100; w = w / d * 100
            all = tot ? busy / tot * 100 * n : 0; other = all - g - u - w
            printf "%.0f / %.0f / %.0f / %.0f", g, u, w, other < 0 ? 0 : other }')
    local other=${cpu##* / }
    ((other <= 25)) || BUSY_ROWS+=("$label ($other %)")
    ROWS+=("$key|$label|$cache|$WRK_RPS|$WRK_P50|$WRK_P99|$((c2 - c0)) / $sent|$cpq|$rss|$errs|$cpu")
    log "  $WRK_RPS req/s, p50 $WRK_P50 ms, p99 $WRK_P99 ms, $cpq upstream calls/query, peak RSS $rss MiB, errors $errs, CPU gw/up/wrk/other $cpu %"
}

# serial_check URL BODY: resource calls (mosia + totvs, no token) over SERIAL sequential
# queries, as the gateway counts them (SERIAL_GW) and as the fake upstreams served them (SERIAL_UP).
serial_check() {
    local url=$1 body=$2 c0 c1 s0 s1 i
    c0=$(resource_calls "$url")
    upstream_served
    s0=$((SERVED_TOTAL - SERVED[totvs_token]))
    for ((i = 0; i < SERIAL; i++)); do graphql_check "$url" "$body" 20; done
    c1=$(resource_calls "$url")
    upstream_served
    s1=$((SERVED_TOTAL - SERVED[totvs_token]))
    SERIAL_GW=$((c1 - c0)) SERIAL_UP=$((s1 - s0))
}

# ---------------------------------------------------------------------------------------------
# 3-5. Run
# ---------------------------------------------------------------------------------------------
# Is the machine quiet? Other work on 2 cores skews every number below.
read -r q0 qt0 < <(machine_ticks)
sleep 1
read -r q1 qt1 < <(machine_ticks)
BACKGROUND=$(awk -v b=$((q1 - q0)) -v t=$((qt1 - qt0)) -v n="$(nproc)" 'BEGIN { printf "%.0f", t ? b / t * 100 * n : 0 }')
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
((BACKGROUND < 20)) || log "warning: the machine is already ${BACKGROUND} % busy (of $(($(nproc) * 100)) %) before the benchmark"

start_upstreams
L=$LATENCY_MS

# Reference: the fake Mosia alone (what the upstream itself costs at this concurrency).
log "row: fake Mosia alone"
read -r m0 tot0 < <(machine_ticks)
up0=$(proc_ticks "$UP_PID")
run_wrk "$MOSIA_BASE_URL/clientes/ocorrencias/ultimosProtocolos" "" "$DURATION" "$TMP/mosia.txt" "$BENCH_DIR/mosia.lua"
read -r m1 tot1 < <(machine_ticks)
up1=$(proc_ticks "$UP_PID")
REF_CPU=$(awk -v u=$((up1 - up0)) -v busy=$((m1 - m0)) -v tot=$((tot1 - tot0)) -v hz="$CLK_TCK" -v d="$DURATION" -v n="$(nproc)" \
    'BEGIN { u = u / hz / d * 100; o = (tot ? busy / tot * 100 * n : 0) - u; printf "— / %.0f / — / %.0f", u, o < 0 ? 0 : o }')
REF_P50=$WRK_P50
REF_ROW="| (ref) fake Mosia alone, no gateway | — | $WRK_RPS | $WRK_P50 | $WRK_P99 | — | — | $(peak_rss_mib "$UP_PID") (upstreams) | — | $WRK_BAD | $REF_CPU | (reference) |"
log "  $WRK_RPS req/s, p50 $WRK_P50 ms, p99 $WRK_P99 ms"

# Cache on: ceiling, (a) warm, (c) warm.
start_gateway cache-on $'[cache]\nenabled = true'
ON_URL=$GW_URL ON_PID=$GW_PID
measure ceiling "(d) ceiling: GET /healthz" on "$ON_URL" "$ON_PID" "" none 0
CEILING_RPS=$WRK_RPS
measure a "(a) latestProtocols, warm" on "$ON_URL" "$ON_PID" "$Q_LATEST" one 0
A_WINDOW=$WINDOW_CALLS
measure c_warm "(c) fan-out, warm" on "$ON_URL" "$ON_PID" "$Q_FANOUT" one 20
C_WARM_WINDOW=$WINDOW_CALLS
serial_check "$ON_URL" "$Q_FANOUT"
C_WARM_SERIAL=$SERIAL_GW C_WARM_SERIAL_UP=$SERIAL_UP
stop_gateway "$ON_PID"

# Cache off: (b) and (c) cold.
start_gateway cache-off $'[cache]\nenabled = false'
OFF_URL=$GW_URL OFF_PID=$GW_PID
measure b "(b) latestProtocols, cold" off "$OFF_URL" "$OFF_PID" "$Q_LATEST" wrk 0
measure c_cold "(c) fan-out, cold" off "$OFF_URL" "$OFF_PID" "$Q_FANOUT" wrk 20
serial_check "$OFF_URL" "$Q_FANOUT"
C_COLD_SERIAL=$SERIAL_GW C_COLD_SERIAL_UP=$SERIAL_UP
stop_gateway "$OFF_PID"

# Variant: cache off, per-upstream concurrency high enough for all 20 interactions at once.
start_gateway cache-off-mc32 $'[cache]\nenabled = false\n[upstream]\nmax_concurrency = 32'
measure c_cold_mc "(c) fan-out, cold, max_concurrency=32" off "$GW_URL" "$GW_PID" "$Q_FANOUT" wrk 20
stop_gateway "$GW_PID"

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

# ---------------------------------------------------------------------------------------------
# 6. Report
# ---------------------------------------------------------------------------------------------
fcmp() { awk -v a="$1" -v b="$2" "BEGIN { exit !(a $3 b) }"; }

target_of() {
    local key=$1 rps=$2 p50=$3 p99=$4 rss=$5 miss=()
    case $key in
    a)
        fcmp "$rps" 10000 '>=' || miss+=("req/s < 10,000")
        fcmp "$p99" 10 '<' || miss+=("p99 ≥ 10 ms")
        ((A_WINDOW == 0)) || miss+=("$A_WINDOW upstream calls during the run")
        ;;
    b)
        fcmp "$p50" $((L + 2)) '<=' || miss+=("p50 > $((L + 2)) ms (nominal latency + 2)")
        ;;
    c_warm)
        ((C_WARM_WINDOW == 0 && C_WARM_SERIAL == 0 && C_WARM_SERIAL_UP == 0)) ||
            miss+=("upstream calls when warm: $C_WARM_WINDOW in the run, $C_WARM_SERIAL in $SERIAL serial queries")
        ;;
    c_cold | c_cold_mc)
        fcmp "$p50" $((2 * L)) '<' || miss+=("p50 ≥ $((2 * L)) ms")
        if [[ $key == c_cold ]] && ((C_COLD_SERIAL != 22 * SERIAL || C_COLD_SERIAL_UP != 22 * SERIAL)); then
            miss+=("$C_COLD_SERIAL resource calls for $SERIAL serial queries, not $((22 * SERIAL))")
        fi
        ;;
    esac
    fcmp "$rss" 150 '<' || miss+=("peak RSS ≥ 150 MiB")
    local note=
    if [[ $key == b ]]; then
        # The fake upstream itself answers a little after LATENCY_MS (see the (ref) row).
        note=$(awk -v p="$p50" -v r="$REF_P50" 'BEGIN {
            d = p - r
            printf "; gateway overhead over the fake Mosia'"'"'s own p50 (%.2f ms): %+.2f ms (%s against measured upstream latency + 2 ms)", r, d, d <= 2 ? "met" : "missed" }')
    fi
    if [[ $key == c_cold* ]]; then
        # The interactions need the list first: two upstream round trips at least.
        note=$(awk -v p="$p50" -v r="$REF_P50" 'BEGIN {
            printf "; floor of two upstream round trips (2 × the fake Mosia'"'"'s p50) = %.2f ms, p50 is %+.2f ms over it", 2 * r, p - 2 * r }')
    fi
    if ((${#miss[@]})); then
        echo "**missed**: $(join '; ' "${miss[@]}")$note"
    else
        echo "met$note"
    fi
}

cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
git_rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(cd "$ROOT" && git status --porcelain 2>/dev/null | grep -q . && echo " (dirty tree)" || true)
{
    echo "# protocol-graph benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, Linux $(uname -r). Commit $git_rev$git_dirty."
    echo "Fake upstream latency ${L} ms (separate process); wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s" \
        "(cold rows after a ${WARMUP} s wrk warm-up, warm rows after one request); all on loopback."
    echo "Before the run the machine was ${BACKGROUND} % busy (of $(($(nproc) * 100)) %), load average $LOADAVG."
    if ((${#BUSY_ROWS[@]})); then
        echo "**Warning**: other processes used much CPU during: $(join '; ' "${BUSY_ROWS[@]}"); those rows understate the gateway."
    fi
    echo
    echo "| scenario | cache | req/s | p50 ms | p99 ms | upstream calls / requests | calls per query | peak RSS MiB | vs ceiling | errors | CPU % gw / upstreams / wrk / other | target |"
    echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
    for key in a b c_warm c_cold c_cold_mc ceiling; do
        for row in "${ROWS[@]}"; do
            IFS='|' read -r k label cache rps p50 p99 calls cpq rss errs cpu <<<"$row"
            [[ $k == "$key" ]] || continue
            vs=$(awk -v a="$rps" -v b="$CEILING_RPS" 'BEGIN { printf "%.1f %%", b ? a / b * 100 : 0 }')
            if [[ $k == ceiling ]]; then tgt="(reference)"; else tgt=$(target_of "$k" "$rps" "$p50" "$p99" "$rss"); fi
            echo "| $label | $cache | $rps | $p50 | $p99 | $calls | $cpq | $rss | $vs | $errs | $cpu | $tgt |"
        done
    done
    echo "$REF_ROW"
    echo
    if ((u_m == 1 && u_p == 1 && u_i == 20 && u_k <= 1 && b_g - b_k == 22 && burst_ok == BURST &&
        burst_full == BURST && burst_errors == 0)); then
        bv=met
    else
        bv="**missed**"
    fi
    echo "$BURST concurrent identical cold fan-out queries (fresh cache-on gateway): $burst_ok/$BURST HTTP 200," \
        "$burst_full complete, $burst_errors with errors, in $((t1 - t0)) ms. The fake upstreams served" \
        "Mosia $u_m + TOTVS list $u_p + interactions $u_i = $((u_m + u_p + u_i)) (target 22 = 1 + 1 + 20)" \
        "plus $u_k token call(s); the gateway counted $b_g upstream calls ($b_k token);" \
        "$b_co reads coalesced; peak RSS $b_rss MiB: $bv."
    echo
    echo "Exact checks, $SERIAL sequential fan-out queries (resource calls, token calls left out):" \
        "cold $C_COLD_SERIAL by the gateway's counters, $C_COLD_SERIAL_UP served by the fake upstreams" \
        "(target $((22 * SERIAL)) = 22 per query); warm $C_WARM_SERIAL / $C_WARM_SERIAL_UP (target 0)."
    echo
    if ((${#MISMATCH[@]})); then
        echo "Counter cross-check: **the gateway's /metrics and the fake upstreams disagree** on: $(join '; ' "${MISMATCH[@]}")."
    else
        echo -n "Counter cross-check: for every row the gateway's upstream-call counters match the requests the fake upstreams served"
        if ((${#CANCELLED[@]})); then
            echo -n ", except calls counted by the gateway but cancelled before reaching the upstream when wrk closed its connections ($(join '; ' "${CANCELLED[@]}"))"
        fi
        echo "."
    fi
} >"$TMP/report.md"

cp "$TMP/report.md" "$OUT_MD"
echo
cat "$OUT_MD"
echo
log "written to $OUT_MD"
