#!/usr/bin/env bash
# Benchmark: hookrouter sync mode vs nginx and HAProxy as plain reverse proxies.
#
# Method, knobs and caveats: bench/README.md. In short:
#   - one upstream (nginx, 1 worker) and the load generator (wrk, 1 thread)
#     pinned to LOAD_CPU (default core 0);
#   - each proxy pinned to PROXY_CPU (default core 1), one worker/thread;
#   - throughput rounds (closed loop, CONNECTIONS connections, DURATION s),
#     the proxies interleaved and the order rotated every round;
#   - fixed-rate rounds (RATE req/s) for p99 latency;
#   - server CPU per request from /proc/PID/stat (utime+stime).
#
# Usage:  bench/sync.sh                      # full run, ~5 min + release build
#         DURATION=3 ROUNDS=2 RATE_DURATION=3 RATE_ROUNDS=1 bench/sync.sh   # smoke
#         ONLY="nginx haproxy" bench/sync.sh # skip hookrouter
#         OUT=/tmp/results.md bench/sync.sh  # also write the report there
#
# Runs as root (apt-get, nginx as root). Talks to 127.0.0.1 only. Everything it
# starts is stopped on exit; its files live in a mktemp dir that is removed on
# exit (KEEP_TMP=1 keeps it).

set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAG=bench
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh" # sets REPO_ROOT

# ---------------------------------------------------------------- parameters
ONLY=${ONLY:-"hookrouter nginx haproxy"}
ROUNDS=${ROUNDS:-5}                 # throughput rounds
DURATION=${DURATION:-10}            # seconds per throughput run
CONNECTIONS=${CONNECTIONS:-64}      # wrk connections, throughput runs
RATE=${RATE:-5000}                  # req/s offered in the fixed-rate runs
RATE_ROUNDS=${RATE_ROUNDS:-3}       # fixed-rate rounds
RATE_DURATION=${RATE_DURATION:-8}   # seconds per fixed-rate run
RATE_CONNECTIONS=${RATE_CONNECTIONS:-64}
WARMUP=${WARMUP:-2}                 # seconds of unmeasured load per proxy first
PAUSE=${PAUSE:-1}                   # seconds of idle between runs
NOISE_MAX=${NOISE_MAX:-10}          # % of a core used by other processes -> run invalid
IDLE_BUDGET=${IDLE_BUDGET:-120}     # max seconds in all to wait for other load to go away
LOAD_CPU=${LOAD_CPU:-0}             # wrk + upstream
PROXY_CPU=${PROXY_CPU:-1}           # the proxy under test
SERVER_CPU=$PROXY_CPU               # the same core, by the name bench/lib.sh uses
SKIP_BUILD=${SKIP_BUILD:-0}         # 1: use the existing release binary
HOOKROUTER_BIN=${HOOKROUTER_BIN:-$REPO_ROOT/target/release/hookrouter}
OUT=${OUT:-}                        # also write the Markdown report here
KEEP_TMP=${KEEP_TMP:-0}

UPSTREAM_PORT=${UPSTREAM_PORT:-18000}
UPSTREAM_STATUS_PORT=${UPSTREAM_STATUS_PORT:-18001}
HOOKROUTER_PORT=${HOOKROUTER_PORT:-18081}
NGINX_PORT=${NGINX_PORT:-18082}
HAPROXY_PORT=${HAPROXY_PORT:-18083}
HOOKROUTER_ADMIN_PORT=${HOOKROUTER_ADMIN_PORT:-19091}

PAYLOAD=$BENCH_DIR/payload.json
LUA=$BENCH_DIR/post.lua
# hookrouter's route verifies a Stripe signature (bench/hookrouter.yaml); nginx and HAProxy
# ignore the header. One signature, made now, serves the whole session: the route's tolerance
# is 1 h for that reason. post.lua sends it from the environment.
STRIPE_SECRET=whsec_bench_secret
STRIPE_T=$(date +%s)
STRIPE_V1=$(stripe_sig "$PAYLOAD")
export BENCH_STRIPE_SIGNATURE="t=$STRIPE_T,v1=$STRIPE_V1"
HOST=127.0.0.1

# ------------------------------------------------------------------- checks
check_uints ROUNDS DURATION CONNECTIONS RATE RATE_ROUNDS RATE_DURATION \
    RATE_CONNECTIONS WARMUP PAUSE NOISE_MAX IDLE_BUDGET LOAD_CPU PROXY_CPU UPSTREAM_PORT \
    UPSTREAM_STATUS_PORT HOOKROUTER_PORT NGINX_PORT HAPROXY_PORT \
    HOOKROUTER_ADMIN_PORT
((ROUNDS >= 1 && DURATION >= 1 && CONNECTIONS >= 1)) || die "ROUNDS, DURATION and CONNECTIONS must be >= 1"
((RATE_ROUNDS == 0 || (RATE >= 1 && RATE_DURATION >= 1 && RATE_CONNECTIONS >= 1))) ||
    die "RATE, RATE_DURATION and RATE_CONNECTIONS must be >= 1 (or RATE_ROUNDS=0)"
((LOAD_CPU != PROXY_CPU)) || die "LOAD_CPU and PROXY_CPU must differ"

PROXIES=()
parse_list PROXIES ONLY proxy "unknown proxy" "use hookrouter, nginx, haproxy" hookrouter nginx haproxy
has_proxy() { [[ -n ${SEEN[$1]:-} ]]; }

port_of() {
    case $1 in
    hookrouter) echo "$HOOKROUTER_PORT" ;;
    nginx) echo "$NGINX_PORT" ;;
    haproxy) echo "$HAPROXY_PORT" ;;
    esac
}

# ------------------------------------------------------------------- tools
install_tools() {
    local need=()
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
    command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
    install_missing "${need[@]}"
    PATH=$PATH:/usr/sbin:/sbin
    NGINX=$(command -v nginx) || die "nginx not found after install"
    HAPROXY=$(command -v haproxy) || die "haproxy not found after install"
}

[[ $(id -u) == 0 ]] || die "run as root (nginx and haproxy are started as root; tools may need apt-get)"
install_tools
check_cpus

# -------------------------------------------------------- processes, cleanup
start_session hookrouter-bench 50
UPSTREAM_WORKERS="" NGINX_WORKERS=""
PID_upstream="" PID_nginx="" PID_haproxy="" PID_hookrouter="" # set by start_bg
check_ports_free "$UPSTREAM_PORT" "$UPSTREAM_STATUS_PORT" "$HOOKROUTER_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$HOOKROUTER_ADMIN_PORT"

render() { # render TEMPLATE DEST
    fill_template "$1" "$2" UPSTREAM_PORT UPSTREAM_STATUS_PORT HOOKROUTER_PORT HOOKROUTER_ADMIN_PORT \
        NGINX_PORT HAPROXY_PORT
}

# nginx workers are not killed when their master dies, so remember them too.
children() { # children PID -> pids of its child processes
    local -a c=()
    read -r -a c <"/proc/$1/task/$1/children" || true
    echo "${c[*]}"
}
adopt_children() { # adopt_children PID
    local -a c=()
    read -r -a c <<<"$(children "$1")"
    PIDS+=("${c[@]}")
}

# shellcheck disable=SC2317 # called by answers, which wait_until runs
http_code() { # http_code URL [curl args...]
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" 2>/dev/null || true
}

# shellcheck disable=SC2317 # run by wait_until
answers() { [[ $(http_code "$1") != 000 ]]; } # answers URL: any HTTP answer at all
wait_listening() { # wait_listening NAME PID URL
    wait_until "$1" "$2" 150 "$1 did not start listening ($3) within 15 s" answers "$3"
}

upstream_requests() { # total requests the upstream has seen (stub_status)
    curl -sf --max-time 2 "http://$HOST:$UPSTREAM_STATUS_PORT/status" | awk 'NR == 3 { print $3 }'
}

proxy_pids() { # pids whose CPU time counts for a proxy
    case $1 in
    hookrouter) echo "$PID_hookrouter" ;;
    haproxy) echo "$PID_haproxy" ;;
    nginx) echo "$PID_nginx $NGINX_WORKERS" ;;
    upstream) echo "$PID_upstream $UPSTREAM_WORKERS" ;;
    esac
}

# ------------------------------------------------------------- environment
mkdir -p "$TMP/upstream" "$TMP/nginx" "$TMP/runs"
RESULTS=$TMP/results.tsv
META=$TMP/meta.txt
printf 'phase\tround\tslot\tproxy\trequests\tduration_us\terr_connect\terr_read\terr_write\terr_timeout\terr_status\tlat_p50_us\tlat_p99_us\tlat_p999_us\tcpu_ticks\tload_busy\tload_total\tproxy_busy\tproxy_total\tupstream_requests\tupstream_ticks\twrk_cpu_ms\n' >"$RESULTS"

if has_proxy hookrouter; then
    build_release
fi

# ---------------------------------------------------------------- upstream
render "$BENCH_DIR/upstream-nginx.conf" "$TMP/upstream/nginx.conf"
start_bg upstream "$LOAD_CPU" "$NGINX" -p "$TMP/upstream/" -e "$TMP/upstream/error.log" -c "$TMP/upstream/nginx.conf"
wait_listening upstream "$PID_upstream" "http://$HOST:$UPSTREAM_STATUS_PORT/status"
adopt_children "$PID_upstream"
UPSTREAM_WORKERS=$(children "$PID_upstream")
BODY_BYTES=$(wc -c <"$PAYLOAD")
VERIFY_LOG=$TMP/upstream/verify.log
verify_lines() { if [[ -f $VERIFY_LOG ]]; then wc -l <"$VERIFY_LOG"; else echo 0; fi; }
post_verify() { # post_verify PORT BODYFILE -> HTTP status of a POST /hook with the payload
    curl -s -o "$2" -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
        -H 'X-Bench-Verify: 1' -H "Stripe-Signature: $BENCH_STRIPE_SIGNATURE" \
        --data-binary "@$PAYLOAD" "http://$HOST:$1/hook" || true
}
n0=$(verify_lines)
code=$(post_verify "$UPSTREAM_PORT" "$TMP/verify-upstream.body")
[[ $code == 200 ]] || die "upstream answered $code (want 200) to POST /hook"
line=$(tail -n +"$((n0 + 1))" "$VERIFY_LOG" | head -1)
[[ $line == "POST /hook cl=$BODY_BYTES te=-" ]] || die "upstream verify log shows '$line'"
log "upstream nginx ready on $HOST:$UPSTREAM_PORT (core $LOAD_CPU)"

# ---------------------------------------------------------------- proxies
for p in "${PROXIES[@]}"; do
    case $p in
    nginx)
        render "$BENCH_DIR/proxy-nginx.conf" "$TMP/nginx/nginx.conf"
        start_bg nginx "$PROXY_CPU" "$NGINX" -p "$TMP/nginx/" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
        wait_listening nginx "$PID_nginx" "http://$HOST:$NGINX_PORT/"
        adopt_children "$PID_nginx"
        NGINX_WORKERS=$(children "$PID_nginx")
        [[ -n $NGINX_WORKERS ]] || die "nginx proxy has no worker process"
        ;;
    haproxy)
        render "$BENCH_DIR/haproxy.cfg" "$TMP/haproxy.cfg"
        "$HAPROXY" -c -q -f "$TMP/haproxy.cfg" || die "haproxy config check failed"
        start_bg haproxy "$PROXY_CPU" "$HAPROXY" -db -f "$TMP/haproxy.cfg"
        wait_listening haproxy "$PID_haproxy" "http://$HOST:$HAPROXY_PORT/"
        ;;
    hookrouter)
        render "$BENCH_DIR/hookrouter.yaml" "$TMP/hookrouter.yaml"
        # One runtime worker thread: the proxy gets one core, like the others.
        start_bg hookrouter "$PROXY_CPU" env TOKIO_WORKER_THREADS=1 RUST_LOG=warn \
            "$HOOKROUTER_BIN" run -c "$TMP/hookrouter.yaml" --log-level warn
        wait_until hookrouter "$PID_hookrouter" 300 "hookrouter not ready (GET /readyz on $HOOKROUTER_ADMIN_PORT) within 30 s" \
            answers_200 "http://$HOST:$HOOKROUTER_ADMIN_PORT/readyz"
        ;;
    esac
    log "$p ready on $HOST:$(port_of "$p") (core $PROXY_CPU)"
done

# Each proxy must answer 200 to the benchmark request and must have forwarded
# exactly that one request, with its body, to the upstream.
for p in "${PROXIES[@]}"; do
    before=$(upstream_requests)
    n0=$(verify_lines)
    code=$(post_verify "$(port_of "$p")" "$TMP/verify-$p.body")
    after=$(upstream_requests)
    [[ $code == 200 ]] || {
        sed 's/^/    /' "$TMP/verify-$p.body" >&2 || true
        die "$p answered $code (want 200) to POST /hook with the benchmark body"
    }
    # the second stub_status read counts itself, hence the -1
    ((after - before - 1 == 1)) || die "$p answered 200 but the upstream saw $((after - before - 1)) requests (want 1)"
    line=$(tail -n +"$((n0 + 1))" "$VERIFY_LOG" | head -1)
    case $line in
    "POST /hook cl=$BODY_BYTES te=-") how="POST /hook with Content-Length $BODY_BYTES" ;;
    "POST /hook cl=- te=chunked") how="POST /hook with a chunked body" ;;
    "") how="(X-Bench-Verify header not forwarded, so the body could not be checked)" ;;
    *) die "$p forwarded an unexpected request to the upstream: '$line'" ;;
    esac
    log "verified: $p -> 200; upstream got $how"
done

# -------------------------------------------------------------- measurement
# wrk's CPU time: GEN_CPU_MS, from bench/lib.sh's run_load.
RUN_LOG=""
run_wrk() { # run_wrk PROXY DURATION CONNECTIONS RATE(0=closed loop) LOGFILE
    local p=$1 dur=$2 conns=$3 rate=$4
    RUN_LOG=$5
    local args=("$PAYLOAD")
    ((rate > 0)) && args+=("$rate")
    run_load "$RUN_LOG" taskset -c "$LOAD_CPU" timeout -k 5 $((dur + 60)) \
        wrk -t1 -c"$conns" -d"${dur}s" --timeout 2s --latency -s "$LUA" \
        "http://$HOST:$(port_of "$p")/hook" -- "${args[@]}"
    check_wrk "$RUN_LOG" "$p"
}

# measure PHASE ROUND SLOT PROXY DURATION CONNECTIONS RATE
measure() {
    local phase=$1 round=$2 slot=$3 p=$4 dur=$5 conns=$6 rate=$7
    local -a pids
    read -r -a pids <<<"$(proxy_pids "$p")"
    local -a upids
    read -r -a upids <<<"$(proxy_pids upstream)"
    local up0 t0 u0 l0 c0 up1 t1 u1 l1 c1
    up0=$(upstream_requests)
    t0=$(proc_ticks "${pids[@]}")
    u0=$(proc_ticks "${upids[@]}")
    read -r -a l0 <<<"$(cpu_stat "$LOAD_CPU")"
    read -r -a c0 <<<"$(cpu_stat "$PROXY_CPU")"
    run_wrk "$p" "$dur" "$conns" "$rate" "$TMP/runs/$phase-$round-$p.log"
    read -r -a l1 <<<"$(cpu_stat "$LOAD_CPU")"
    read -r -a c1 <<<"$(cpu_stat "$PROXY_CPU")"
    t1=$(proc_ticks "${pids[@]}")
    u1=$(proc_ticks "${upids[@]}")
    up1=$(upstream_requests)
    local -A b=()
    local kv
    for kv in $(grep '^BENCH ' "$RUN_LOG" | head -1 | cut -d' ' -f2-); do
        b[${kv%%=*}]=${kv#*=}
    done
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$phase" "$round" "$slot" "$p" "${b[requests]}" "${b[duration_us]}" \
        "${b[err_connect]}" "${b[err_read]}" "${b[err_write]}" "${b[err_timeout]}" "${b[err_status]}" \
        "${b[lat_p50_us]}" "${b[lat_p99_us]}" "${b[lat_p999_us]}" \
        $((t1 - t0)) $((l1[0] - l0[0])) $((l1[1] - l0[1])) $((c1[0] - c0[0])) $((c1[1] - c0[1])) \
        $((up1 - up0 - 1)) $((u1 - u0)) "$GEN_CPU_MS" >>"$RESULTS"
    local errs=$((b[err_connect] + b[err_read] + b[err_write] + b[err_timeout] + b[err_status]))
    local rps=$((b[requests] * 1000000 / b[duration_us]))
    log "$(printf '%-8s r%-2s %-10s %8s req/s  p99 %6s us  errors %s' "$phase" "$round" "$p" "$rps" "${b[lat_p99_us]}" "$errs")"
}

N=${#PROXIES[@]}

# The machine should be quiet. settle SECONDS: stay idle that long; if other processes keep a
# core busier than NOISE_MAX %, wait on in 1 s steps, at most IDLE_BUDGET s per session
# (bench/lib.sh's wait_idle; a core's busy time counts whole here, interrupts and softirq too:
# BG_FIELD=0). BG_LOAD, BG_SERVER: how busy the load core and the proxy core were, in %.
BG_FIELD=0
settle() { wait_idle "$1"; }

settle 2
log "background load before measuring: core $LOAD_CPU ${BG_LOAD} %, core $PROXY_CPU ${BG_SERVER} %"
if ((BG_LOAD > NOISE_MAX || BG_SERVER > NOISE_MAX)); then
    log "WARNING: the machine is not idle (something else uses the CPUs); results will be disturbed"
fi
BG_LOAD0=$BG_LOAD BG_PROXY0=$BG_SERVER

est=$((N * (WARMUP + PAUSE) + ROUNDS * N * (DURATION + PAUSE) + RATE_ROUNDS * N * (RATE_DURATION + PAUSE)))
log "measuring ${PROXIES[*]}: $ROUNDS x ${DURATION}s throughput, $RATE_ROUNDS x ${RATE_DURATION}s at $RATE req/s (~${est}s, + up to ${IDLE_BUDGET}s waiting out other load)"

if ((WARMUP > 0)); then
    for p in "${PROXIES[@]}"; do
        run_wrk "$p" "$WARMUP" "$CONNECTIONS" 0 "$TMP/runs/warmup-$p.log"
        settle "$PAUSE"
    done
fi

for ((r = 0; r < ROUNDS; r++)); do
    read -r -a order <<<"$(rotated "$r" "${PROXIES[@]}")"
    for ((s = 0; s < N; s++)); do
        measure throughput $((r + 1)) $((s + 1)) "${order[s]}" "$DURATION" "$CONNECTIONS" 0
        settle "$PAUSE"
    done
done

for ((r = 0; r < RATE_ROUNDS; r++)); do
    read -r -a order <<<"$(rotated "$r" "${PROXIES[@]}")"
    for ((s = 0; s < N; s++)); do
        measure rate $((r + 1)) $((s + 1)) "${order[s]}" "$RATE_DURATION" "$RATE_CONNECTIONS" "$RATE"
        settle "$PAUSE"
    done
done

# ------------------------------------------------------------------ report
hookrouter_rev=""
if has_proxy hookrouter; then
    hookrouter_rev=$(hookrouter_rev)
fi
{
    meta_machine
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    echo "haproxy=$("$HAPROXY" -v | head -1 | awk '{ print $3 }')"
    echo "hookrouter=$hookrouter_rev"
    echo "proxies=${PROXIES[*]}"
    meta_vars ROUNDS DURATION CONNECTIONS RATE RATE_ROUNDS RATE_DURATION RATE_CONNECTIONS \
        LOAD_CPU PROXY_CPU CLK_TCK NOISE_MAX
    echo "bg_load=$BG_LOAD0"
    echo "bg_proxy=$BG_PROXY0"
    echo "body_bytes=$BODY_BYTES"
} >"$META"

finish "$BENCH_DIR/report.py" "errors, missing forwards, rate not reached or other processes on the cores" \
    "$META" "$RESULTS"
