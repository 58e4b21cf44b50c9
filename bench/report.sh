# The report of bench/run.sh (sourced; not run on its own): one markdown table with the
# protocol-graph and Tailcall rows side by side, each row's target, and the checks under it.

# The Tailcall row measured beside a protocol-graph row.
twin_of() {
    case $1 in
    a | c_warm | b | c_cold | b1 | c1) echo "${1}_tc" ;;
    *) echo "" ;;
    esac
}

# "pg ÷ Tailcall" of a protocol-graph row: req/s ratio, and p50 difference on 1-client rows.
versus() {
    local key=$1 twin
    twin=$(twin_of "$key")
    [[ -n $twin && -n ${R_RPS[$twin]:-} ]] || { echo "—"; return; }
    case $key in
    b1 | c1)
        awk -v a="${R_P50[$key]}" -v b="${R_P50[$twin]}" 'BEGIN { printf "p50 %+.2f ms", a - b }' ;;
    *)
        awk -v a="${R_RPS[$key]}" -v b="${R_RPS[$twin]}" -v p="${R_P99[$key]}" -v q="${R_P99[$twin]}" \
            'BEGIN { printf "%.2f× req/s; p99 %+.2f ms", b ? a / b : 0, p - q }' ;;
    esac
}

# The target column of a row (issue 11), with its numbers.
target_of() {
    local key=$1 miss=() note= twin
    twin=$(twin_of "$key")
    local rps=${R_RPS[$key]} p50=${R_P50[$key]} p99=${R_P99[$key]} rss=${R_RSS[$key]}
    local have_twin=0
    [[ -n $twin && -n ${R_RPS[$twin]:-} ]] && have_twin=1
    case $key in
    a | c_warm)
        if ((have_twin)); then
            fcmp "$rps" "$(awk -v t="${R_RPS[$twin]}" 'BEGIN { print 1.25 * t }')" '>=' ||
                miss+=("req/s < 1.25 × Tailcall's ${R_RPS[$twin]}")
            fcmp "$p99" "${R_P99[$twin]}" '<=' || miss+=("p99 above Tailcall's ${R_P99[$twin]} ms")
        else
            miss+=("no Tailcall row to compare with")
        fi
        ((R_WINDOW[$key] == 0)) || miss+=("${R_WINDOW[$key]} upstream calls during the run")
        ;;
    a_auth | c_warm_auth)
        local base=${key%_auth}
        # Decided on the paired rounds (run.sh, paired_rounds); the single rows are shown too.
        fcmp "${R_PAIRED[$key]}" 95 '>=' ||
            miss+=("median of the paired rounds < 95 % of the req/s without authentication")
        local alone=${key%_auth}_token
        note="; paired rounds (${R_PAIRS[$key]}): median ${R_PAIRED[$key]} %"
        note+="; the token alone, paired against the same audit lines without it (${R_PAIRS[$alone]}): median ${R_PAIRED[$alone]} %"
        note+=$(awk -v a="$rps" -v b="${R_RPS[$base]}" -v c="${R_RPS[${base}_audit]:-0}" 'BEGIN {
            printf "; this 10 s row is %.1f %% of the row without a token and without audit lines", b ? a / b * 100 : 0
            if (c) printf ", %.1f %% of the row with the same audit lines and no token", a / c * 100 }')
        ;;
    a_audit | c_warm_audit)
        local base=${key%_audit}
        note=$(awk -v a="$rps" -v b="${R_RPS[$base]}" 'BEGIN { printf "%.1f %% of the row without audit lines", b ? a / b * 100 : 0 }')
        echo "(for the row below) $note"
        return
        ;;
    b1)
        fcmp "$p50" "$(awk -v r="$REF1_P50" 'BEGIN { print r + 1 }')" '<=' ||
            miss+=("p50 more than 1 ms over the fake Mosia's own ($REF1_P50 ms)")
        note=$(awk -v p="$p50" -v r="$REF1_P50" 'BEGIN { printf "; %+.2f ms over the fake Mosia'"'"'s own p50 (%.2f ms)", p - r, r }')
        ;;
    c1)
        # Decided on the paired rounds against Tailcall when it ran, on this row otherwise.
        local floor p=$p50
        [[ -z ${R_PAIRED_A[c1]:-} ]] || p=${R_PAIRED_A[c1]}
        floor=$(awk -v r="$REF1_P50" 'BEGIN { printf "%.2f", 2 * r }')
        fcmp "$p" "$(awk -v f="$floor" 'BEGIN { print f + 3 }')" '<=' ||
            miss+=("p50 more than 3 ms over two upstream round trips ($floor ms)")
        if [[ -n ${R_PAIRED[c1]:-} ]]; then
            fcmp "${R_PAIRED[c1]}" 0 '<' || miss+=("median p50 not below Tailcall's in the paired rounds")
            note="; paired rounds against Tailcall (${R_PAIRS[c1]}): median p50 $p ms, median difference $(awk -v d="${R_PAIRED[c1]}" 'BEGIN { printf "%+.2f", d }') ms"
        elif ((have_twin)); then
            fcmp "$p50" "${R_P50[$twin]}" '<' || miss+=("p50 not below Tailcall's ${R_P50[$twin]} ms")
        fi
        note+=$(awk -v p="$p" -v f="$floor" 'BEGIN { printf "; %+.2f ms over two round trips (2 × the fake Mosia'"'"'s p50 = %.2f ms)", p - f, f }')
        ;;
    c_cold)
        ((C_COLD_SERIAL == 22 * SERIAL && C_COLD_SERIAL_UP == 22 * SERIAL)) ||
            miss+=("$C_COLD_SERIAL resource calls for $SERIAL serial queries, not $((22 * SERIAL))")
        ;;
    *_tc) echo "(peer)"; return ;;
    esac
    fcmp "$rss" 150 '<' || miss+=("peak RSS ≥ 150 MiB")
    if ((${#miss[@]})); then
        echo "**missed**: $(join '; ' "${miss[@]}")$note"
    else
        echo "met$note"
    fi
}

write_report() {
    local cpu_model git_rev git_dirty key row k label gw cache conns rps p50 p99 calls cpq cpu_us rss errs cpu name
    cpu_model=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    git_rev=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
    git_dirty=$(cd "$ROOT" && git status --porcelain 2>/dev/null | grep -q . && echo " (dirty tree)" || true)
    echo "# protocol-graph beside Tailcall, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs, ${cpu_model:-unknown CPU}, Linux $(uname -r). Commit $git_rev$git_dirty. $TC_VERSION."
    echo "Fake upstreams at ${LATENCY_MS} ms (one process, shared by both gateways); wrk -t$THREADS, -d${DURATION}s per row" \
        "(cold rows after a ${WARMUP} s wrk warm-up, warm rows after one request); all on loopback, load generator on the same machine."
    echo "Before the run the machine was ${BACKGROUND} % busy (of $(($(nproc) * 100)) %), load average $LOADAVG."
    if ((${#BUSY_ROWS[@]})); then
        echo "**Warning**: other processes used much CPU during: $(join '; ' "${BUSY_ROWS[@]}"); those rows understate the gateway."
    fi
    echo
    echo "| scenario | gateway | cache | conns | req/s | p50 ms | p99 ms | upstream calls / requests | calls per query | CPU µs / request | peak RSS MiB | protocol-graph vs Tailcall | errors | CPU % gw / upstreams / wrk / other | target |"
    echo "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|--:|--:|---|"
    for key in a a_tc c_warm c_warm_tc a_audit a_auth c_warm_audit c_warm_auth b1 b1_tc c1 c1_tc b b_tc c_cold c_cold_tc ceiling; do
        for row in "${ROWS[@]}"; do
            IFS='|' read -r k label gw cache conns rps p50 p99 calls cpq cpu_us rss errs cpu <<<"$row"
            [[ $k == "$key" ]] || continue
            name=protocol-graph
            [[ $gw == tc ]] && name=Tailcall
            if [[ $rps == — ]]; then
                echo "| $label | $name | — | — | — | — | — | — | — | — | — | — | — | — | $cpu |"
                continue
            fi
            local vs=— tgt="(reference)"
            [[ $gw == tc ]] || vs=$(versus "$k")
            [[ $k == ceiling ]] || tgt=$(target_of "$k")
            echo "| $label | $name | $cache | $conns | $rps | $p50 | $p99 | $calls | $cpq | $cpu_us | $rss | $vs | $errs | $cpu | $tgt |"
        done
    done
    echo "$REF_ROW"
    echo "$REF1_ROW"
    echo
    echo "$BURST_LINE"
    echo
    echo "Exact checks, $SERIAL sequential fan-out queries (resource calls, token calls left out):" \
        "cold $C_COLD_SERIAL by the gateway's counters, $C_COLD_SERIAL_UP served by the fake upstreams" \
        "(target $((22 * SERIAL)) = 22 per query); warm $C_WARM_SERIAL / $C_WARM_SERIAL_UP (target 0)."
    echo
    if ((${#MISMATCH[@]})); then
        echo "Counter cross-check: **the gateway's /metrics and the fake upstreams disagree** on: $(join '; ' "${MISMATCH[@]}")."
    else
        echo -n "Counter cross-check: for every protocol-graph row the gateway's upstream-call counters match the requests the fake upstreams served"
        if ((${#CANCELLED[@]})); then
            echo -n ", except calls of requests wrk abandoned at the end of a run, served upstream but never counted by the gateway, which counts a call once answered ($(join '; ' "${CANCELLED[@]}"))"
        fi
        echo "."
    fi
}
