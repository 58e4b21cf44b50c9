# Helpers of bench/run.sh (sourced; not run on its own): processes, ports, /proc readings,
# counters on both sides of the gateway, the gateways under test, wrk, and the measurement of
# one row. Everything here reads the variables run.sh sets (TMP, PIDS, BIN, THREADS, ...).

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

forget_pid() {
    local pid=$1 p keep=()
    for p in "${PIDS[@]}"; do [[ $p == "$pid" ]] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# A loopback port nothing listens on, below the ephemeral range (an outgoing connection may
# hold any port in that range). Checked by connecting; a gateway that still loses the race
# exits, and start_gateway tries another port.
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
    awk '/^VmHWM:/ { printf "%.1f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}
now_ms() { date +%s%3N; }
# join SEP ITEM...: the items separated by SEP.
join() {
    local sep=$1 out=${2:-} item
    shift 2 || return 0
    for item in "$@"; do out+="$sep$item"; done
    printf '%s' "$out"
}
fcmp() { awk -v a="$1" -v b="$2" "BEGIN { exit !(a $3 b) }"; }

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
counter() {
    curl -fsS --max-time 5 "$1/metrics" | awk -v name="$2" '$1 == name { printf "%d", $2; f = 1 } END { if (!f) printf "0" }'
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

# One GraphQL POST (with BENCH_TOKEN as a bearer token when set); checks the answer and prints
# nothing. $3: expected authorization items.
graphql_check() {
    local url=$1 body=$2 items=$3 answer n auth=()
    [[ -z ${BENCH_TOKEN:-} ]] || auth=(-H "Authorization: Bearer $BENCH_TOKEN")
    answer=$(curl -sS --max-time 30 -H 'Content-Type: application/json' "${auth[@]}" \
        --data-binary "@$body" "$url/graphql") || die "POST $url/graphql failed"
    [[ $answer == *'"data":{"beneficiary":{'* && $answer != *'"errors"'* ]] ||
        die "unexpected answer from $url/graphql: ${answer:0:400}"
    if ((items > 0)); then
        n=$( (grep -o '"interactions":{"items":\[{' <<<"$answer" || true) | wc -l)
        ((n == items)) || die "expected $items protocols with interactions, got $n: ${answer:0:400}"
    fi
}

# An HS256 JWT for `sub` with `scope`, valid for an hour, signed with `secret` (openssl).
mint_token() {
    local secret=$1 sub=$2 scope=$3 now header payload signature
    now=$(date +%s)
    b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
    header=$(printf '{"alg":"HS256","typ":"JWT"}' | b64url)
    payload=$(printf '{"sub":"%s","scope":"%s","iat":%d,"exp":%d}' "$sub" "$scope" "$now" $((now + 3600)) | b64url)
    signature=$(printf '%s.%s' "$header" "$payload" | openssl dgst -sha256 -hmac "$secret" -binary | b64url)
    printf '%s.%s.%s' "$header" "$payload" "$signature"
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

# start_gateway NAME TOML [ENV=VALUE...]: starts `protocol-graph serve` the production way
# (AUTH_DISABLED=true unless the extra variables configure authentication); sets GW_PID, GW_URL.
start_gateway() {
    local name=$1 toml=$2 _
    shift 2
    printf '%s\n' "$toml" >"$TMP/$name.toml"
    for _ in 1 2 3 4 5; do
        try_gateway "$name" "$@" && return 0
        grep -q 'cannot listen' "$TMP/$name.log" || die "gateway $name exited: $(tail -n 5 "$TMP/$name.log")"
        log "gateway $name: port taken, trying another one"
    done
    die "gateway $name: no free port after 5 attempts"
}

# One start on a fresh port: 0 when serving, 1 when it exited (see its log).
try_gateway() {
    local name=$1 port deadline
    shift
    port=$(free_port) || die "no free loopback port"
    env LISTEN_ADDR=127.0.0.1:$port \
        MOSIA_BASE_URL=$MOSIA_BASE_URL MOSIA_TOKEN=sandbox-mosia-token \
        TOTVS_BASE_URL=$TOTVS_BASE_URL TOTVS_USERNAME=sandbox TOTVS_PASSWORD=sandbox-password \
        AUTH_DISABLED=true CONFIG_FILE=$TMP/$name.toml RUST_LOG=warn "$@" \
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

# start_tailcall NAME CACHE_MAX_AGE_MS: the Tailcall peer on the same fake upstreams, through
# its own run.sh; sets TC_PID (the Tailcall process, for CPU and memory), TC_RUN (run.sh), TC_URL.
# Returns 1 (with the reason in TC_WHY) when the peer is absent or does not start.
start_tailcall() {
    local name=$1 max_age=$2 port deadline
    TC_WHY=
    [[ -x $TAILCALL_RUN ]] || { TC_WHY="the Tailcall peer is not at $TAILCALL_RUN"; return 1; }
    port=$(free_port) || die "no free loopback port"
    MOSIA_BASE_URL=$MOSIA_BASE_URL MOSIA_TOKEN=sandbox-mosia-token TOTVS_BASE_URL=$TOTVS_BASE_URL \
        TOTVS_USERNAME=sandbox TOTVS_PASSWORD=sandbox-password LISTEN=127.0.0.1:$port \
        CACHE_MAX_AGE_MS=$max_age TAILCALL_LOG_LEVEL=warn \
        "$TAILCALL_RUN" >"$TMP/$name.log" 2>&1 &
    TC_RUN=$!
    PIDS+=("$TC_RUN")
    TC_URL=http://127.0.0.1:$port
    # The first start installs the binary (an npm package and, on an old glibc, Debian's libc).
    deadline=$(($(now_ms) + 600000))
    until curl -fsS --max-time 2 -H 'Content-Type: application/json' \
        --data-binary '{"query":"{ __typename }"}' "$TC_URL/graphql" >/dev/null 2>&1; do
        if ! kill -0 "$TC_RUN" 2>/dev/null || (($(now_ms) >= deadline)); then
            TC_WHY="the Tailcall peer did not start: $(tail -n 2 "$TMP/$name.log" | tr '\n' ' ')"
            stop_tailcall
            return 1
        fi
        sleep 0.1
    done
    TC_PID=$(pgrep -P "$TC_RUN" | head -n 1)
    [[ -n $TC_PID ]] || TC_PID=$TC_RUN
    log "tailcall $name (pid $TC_PID, cache ${max_age} ms) at $TC_URL"
}

stop_tailcall() {
    local child
    for child in $(pgrep -P "$TC_RUN" 2>/dev/null); do kill -TERM "$child" 2>/dev/null || true; done
    stop_pid "$TC_RUN"
    forget_pid "$TC_RUN"
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

# run_wrk URL BODY(or "") SECONDS OUTFILE [SCRIPT]: one wrk run of CONNS connections (default
# CONNECTIONS), bounded in time; sets WRK_*. BODY: POST it with graphql.lua (and BENCH_TOKEN
# when set); "": GET, with SCRIPT when given.
run_wrk() {
    local url=$1 body=$2 secs=$3 out=$4 script=${5:-} pid conns=${CONNS:-$CONNECTIONS}
    local args=(-t"$((THREADS < conns ? THREADS : conns))" -c"$conns" -d"${secs}s" --timeout 10s --latency)
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

# Results of each row by key, for the report: R_RPS, R_P50, R_P99, R_RSS, R_CPU_US, R_CALLS.
declare -A R_RPS R_P50 R_P99 R_RSS R_CPU_US R_CALLS R_WINDOW
ROWS=()
BUSY_ROWS=()
MISMATCH=()
CANCELLED=()

# measure KEY LABEL GATEWAY CACHE URL PID BODY WARMUP ITEMS [CONNS]
#   GATEWAY: pg (protocol-graph: its /metrics are cross-checked) or tc (Tailcall: calls are
#   counted on the fake upstreams only). URL: the gateway's base URL; BODY: a GraphQL JSON body
#   for POST /graphql, or "" for GET /healthz. ITEMS: authorization protocols the answer must
#   hold (0: not checked). WARMUP: none | one (one checked request) | wrk (one checked request,
#   then WARMUP s of wrk). CONNS: wrk connections (default CONNECTIONS).
#   Upstream calls per query = calls between the first snapshot and the last / every request
#   sent in between (warm-up included); R_WINDOW: calls during the measured run only.
measure() {
    local key=$1 label=$2 gateway=$3 cache=$4 url=$5 pid=$6 body=$7 warmup=$8 items=$9
    local CONNS=${10:-$CONNECTIONS}
    local c0=0 c2=0 e0=0 e1=0 sent=0 m0 m1 tot0 tot1 gw0 gw1 up0 up1 cpu0 cpu1 s0 s1 s2
    log "row: $label"
    [[ $gateway == tc ]] || { c0=$(metric "$url"); e0=$(counter "$url" protocol_graph_upstream_errors_total); }
    upstream_served
    s0=$SERVED_TOTAL
    if [[ $warmup != none ]]; then
        graphql_check "$url" "$body" "$items"
        sent=1
    fi
    if [[ $warmup == wrk ]] && ((WARMUP > 0)); then
        run_wrk "$url/graphql" "$body" "$WARMUP" "$TMP/$key.warmup.txt"
        sent=$((sent + WRK_REQUESTS))
    fi
    upstream_served
    s1=$SERVED_TOTAL
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
    upstream_served
    s2=$SERVED_TOTAL
    local calls=$((s2 - s0))
    if [[ $gateway != tc ]]; then
        c2=$(metric "$url")
        e1=$(counter "$url" protocol_graph_upstream_errors_total)
        calls=$((c2 - c0))
        # The gateway counts a call once it is answered; a request wrk abandons at the end of
        # a run (the warm-up's included: the window spans both) may have reached the upstream
        # and never be counted (at most 22 calls per connection and run). Anything else is a
        # discrepancy.
        local diff=$(((s2 - s0) - (c2 - c0))) runs=1
        [[ $warmup != wrk ]] || ((WARMUP == 0)) || runs=2
        if ((diff < 0 || diff > runs * CONNS * 22)); then
            MISMATCH+=("$label: gateway $((c2 - c0)), upstreams $((s2 - s0))")
        elif ((diff > 0)); then
            CANCELLED+=("$label: $diff")
        fi
    fi
    local rss cpq errs cpu cpu_us other
    rss=$(peak_rss_mib "$pid")
    sent=$((sent + WRK_REQUESTS))
    cpq=$(awk -v c="$calls" -v n="$sent" 'BEGIN { printf "%.4f", n ? c / n : 0 }')
    errs=$((WRK_BAD + e1 - e0))
    # The gateway's CPU time per request of the measured run, from its /proc ticks.
    cpu_us=$(awk -v g=$((gw1 - gw0)) -v hz="$CLK_TCK" -v n="$WRK_REQUESTS" 'BEGIN { printf "%.0f", n ? g / hz * 1e6 / n : 0 }')
    # CPU over the measured run, % of one core (2 cores = 200 %).
    cpu=$(awk -v g=$((gw1 - gw0)) -v u=$((up1 - up0)) -v w="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { print b - a }')" \
        -v busy=$((m1 - m0)) -v tot=$((tot1 - tot0)) -v hz="$CLK_TCK" -v d="$DURATION" -v n="$(nproc)" \
        'BEGIN {
            g = g / hz / d * 100; u = u / hz / d * 100; w = w / d * 100
            all = tot ? busy / tot * 100 * n : 0; other = all - g - u - w
            printf "%.0f / %.0f / %.0f / %.0f", g, u, w, other < 0 ? 0 : other }')
    other=${cpu##* / }
    ((other <= 25)) || BUSY_ROWS+=("$label ($other %)")
    R_RPS[$key]=$WRK_RPS R_P50[$key]=$WRK_P50 R_P99[$key]=$WRK_P99 R_RSS[$key]=$rss
    R_CPU_US[$key]=$cpu_us R_CALLS[$key]=$calls R_WINDOW[$key]=$((s2 - s1))
    ROWS+=("$key|$label|$gateway|$cache|$CONNS|$WRK_RPS|$WRK_P50|$WRK_P99|$calls / $sent|$cpq|$cpu_us|$rss|$errs|$cpu")
    log "  $WRK_RPS req/s, p50 $WRK_P50 ms, p99 $WRK_P99 ms, $cpq upstream calls/query, $cpu_us µs CPU/request, peak RSS $rss MiB, errors $errs, CPU gw/up/wrk/other $cpu %"
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

# A row that could not be measured (Tailcall absent): its label and the reason, in the table.
skip_row() {
    local key=$1 label=$2 why=$3
    ROWS+=("$key|$label|tc|—|—|—|—|—|—|—|—|—|—|$why")
}
