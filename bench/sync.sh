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
REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)

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
STRIPE_V1=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode() + b"." + open(sys.argv[3],"rb").read(), hashlib.sha256).hexdigest())' "$STRIPE_SECRET" "$STRIPE_T" "$PAYLOAD")
export BENCH_STRIPE_SIGNATURE="t=$STRIPE_T,v1=$STRIPE_V1"
HOST=127.0.0.1

# ------------------------------------------------------------------- helpers
log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

for v in ROUNDS DURATION CONNECTIONS RATE RATE_ROUNDS RATE_DURATION \
    RATE_CONNECTIONS WARMUP PAUSE NOISE_MAX IDLE_BUDGET LOAD_CPU PROXY_CPU UPSTREAM_PORT \
    UPSTREAM_STATUS_PORT HOOKROUTER_PORT NGINX_PORT HAPROXY_PORT \
    HOOKROUTER_ADMIN_PORT; do
    is_uint "${!v}" || die "$v must be a non-negative integer (got '${!v}')"
done
((ROUNDS >= 1 && DURATION >= 1 && CONNECTIONS >= 1)) || die "ROUNDS, DURATION and CONNECTIONS must be >= 1"
((RATE_ROUNDS == 0 || (RATE >= 1 && RATE_DURATION >= 1 && RATE_CONNECTIONS >= 1))) ||
    die "RATE, RATE_DURATION and RATE_CONNECTIONS must be >= 1 (or RATE_ROUNDS=0)"
((LOAD_CPU != PROXY_CPU)) || die "LOAD_CPU and PROXY_CPU must differ"

read -r -a PROXIES <<<"$ONLY"
((${#PROXIES[@]} >= 1)) || die "ONLY lists no proxy"
declare -A SEEN=()
for p in "${PROXIES[@]}"; do
    case $p in hookrouter | nginx | haproxy) ;; *) die "ONLY: unknown proxy '$p' (use hookrouter, nginx, haproxy)" ;; esac
    [[ -z ${SEEN[$p]:-} ]] || die "ONLY: '$p' listed twice"
    SEEN[$p]=1
done
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
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need+=(nginx-light)
    command -v haproxy >/dev/null 2>&1 || [[ -x /usr/sbin/haproxy ]] || need+=(haproxy)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v taskset >/dev/null 2>&1 || need+=(util-linux)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    command -v getconf >/dev/null 2>&1 || need+=(libc-bin)
    if ((${#need[@]})); then
        [[ $(id -u) == 0 ]] || die "missing ${need[*]} and not root: install them or rerun as root"
        log "installing ${need[*]} from Debian"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y "${need[@]}"
    fi
    PATH=$PATH:/usr/sbin:/sbin
    NGINX=$(command -v nginx) || die "nginx not found after install"
    HAPROXY=$(command -v haproxy) || die "haproxy not found after install"
}

[[ $(id -u) == 0 ]] || die "run as root (nginx and haproxy are started as root; tools may need apt-get)"
install_tools

NCPU=$(nproc --all)
((LOAD_CPU < NCPU && PROXY_CPU < NCPU)) || die "need CPUs $LOAD_CPU and $PROXY_CPU; this machine has $NCPU"
taskset -c "$LOAD_CPU,$PROXY_CPU" true || die "cannot pin to CPUs $LOAD_CPU,$PROXY_CPU (cgroup cpuset?)"
CLK_TCK=$(getconf CLK_TCK)

# -------------------------------------------------------- processes, cleanup
TMP=$(mktemp -d "${TMPDIR:-/tmp}/hookrouter-bench.XXXXXX")
PIDS=() # everything we started, stopped in reverse order on exit
UPSTREAM_WORKERS="" NGINX_WORKERS=""
PID_upstream="" PID_nginx="" PID_haproxy="" PID_hookrouter="" # set by start_bg
WRK_PID=""                                                      # the running wrk

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local i pid
    [[ -z $WRK_PID ]] || kill -TERM "$WRK_PID" 2>/dev/null || true
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if ((KEEP_TMP)); then
        log "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

for port in "$UPSTREAM_PORT" "$UPSTREAM_STATUS_PORT" "$HOOKROUTER_PORT" "$NGINX_PORT" "$HAPROXY_PORT" "$HOOKROUTER_ADMIN_PORT"; do
    port_free "$port" || die "port $port on $HOST is already in use"
done

render() { # render TEMPLATE DEST
    sed -e "s/@UPSTREAM_PORT@/$UPSTREAM_PORT/g" \
        -e "s/@UPSTREAM_STATUS_PORT@/$UPSTREAM_STATUS_PORT/g" \
        -e "s/@HOOKROUTER_PORT@/$HOOKROUTER_PORT/g" \
        -e "s/@HOOKROUTER_ADMIN_PORT@/$HOOKROUTER_ADMIN_PORT/g" \
        -e "s/@NGINX_PORT@/$NGINX_PORT/g" \
        -e "s/@HAPROXY_PORT@/$HAPROXY_PORT/g" \
        "$1" >"$2"
}

# start_bg NAME CPU CMD... : start CMD pinned to CPU, remember its pid in PID_<NAME>
start_bg() {
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$TMP/$name.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    printf -v "PID_$name" '%s' "$pid"
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

http_code() { # http_code URL [curl args...]
    local url=$1
    shift
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$@" "$url" 2>/dev/null || true
}

wait_listening() { # wait_listening NAME PID URL
    local name=$1 pid=$2 url=$3 i code
    for i in $(seq 150); do
        kill -0 "$pid" 2>/dev/null || {
            sed 's/^/    /' "$TMP/$name.out" >&2 || true
            die "$name exited during start-up (output above)"
        }
        code=$(http_code "$url")
        [[ $code != 000 ]] && return 0
        sleep 0.1
    done
    sed 's/^/    /' "$TMP/$name.out" >&2 || true
    die "$name did not start listening ($url) within 15 s"
}

upstream_requests() { # total requests the upstream has seen (stub_status)
    curl -sf --max-time 2 "http://$HOST:$UPSTREAM_STATUS_PORT/status" | awk 'NR == 3 { print $3 }'
}

proc_ticks() { # utime+stime (clock ticks) summed over PIDs
    local pid s total=0
    local -a f
    for pid in "$@"; do
        s=$(cat "/proc/$pid/stat") || die "process $pid is gone"
        s=${s##*) }
        read -r -a f <<<"$s"
        total=$((total + f[11] + f[12]))
    done
    echo "$total"
}

cpu_stat() { # cpu_stat N -> "busy total" jiffies of core N from /proc/stat
    awk -v cpu="cpu$1" '$1 == cpu {
        total = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9
        print total - $5 - $6, total
    }' /proc/stat
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
    if ((SKIP_BUILD)); then
        log "SKIP_BUILD=1: using $HOOKROUTER_BIN as is"
    else
        log "building hookrouter (cargo build --release) in $REPO_ROOT"
        (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
    fi
    [[ -x $HOOKROUTER_BIN ]] || die "no hookrouter binary at $HOOKROUTER_BIN"
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
        ok=0
        for _ in $(seq 300); do
            kill -0 "$PID_hookrouter" 2>/dev/null || {
                sed 's/^/    /' "$TMP/hookrouter.out" >&2 || true
                die "hookrouter exited during start-up (output above)"
            }
            if curl -sf --max-time 1 -o /dev/null "http://$HOST:$HOOKROUTER_ADMIN_PORT/readyz"; then
                ok=1
                break
            fi
            sleep 0.1
        done
        ((ok)) || die "hookrouter not ready (GET /readyz on $HOOKROUTER_ADMIN_PORT) within 30 s"
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
# wrk's CPU time comes from the `times` builtin (CPU of this shell's reaped
# children); it must run in this shell, not in $(...), hence the files.
RUN_LOG=""
WRK_CPU_MS=0 # CPU time of the last wrk run
run_wrk() { # run_wrk PROXY DURATION CONNECTIONS RATE(0=closed loop) LOGFILE
    local p=$1 dur=$2 conns=$3 rate=$4
    RUN_LOG=$5
    local args=("$PAYLOAD")
    ((rate > 0)) && args+=("$rate")
    times >"$TMP/times0"
    # In the background + wait, so that a signal stops the run at once.
    taskset -c "$LOAD_CPU" timeout -k 5 $((dur + 60)) \
        wrk -t1 -c"$conns" -d"${dur}s" --timeout 2s --latency -s "$LUA" \
        "http://$HOST:$(port_of "$p")/hook" -- "${args[@]}" >"$RUN_LOG" 2>&1 &
    WRK_PID=$!
    local rc=0
    wait "$WRK_PID" || rc=$?
    times >"$TMP/times1"
    WRK_PID=""
    WRK_CPU_MS=$(awk 'FNR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        if (FILENAME ~ /times0$/) t = -t
        sum += t
    } END { printf "%d\n", sum * 1000 }' "$TMP/times0" "$TMP/times1")
    ((rc == 0)) || {
        cat "$RUN_LOG" >&2
        die "wrk failed against $p (exit $rc)"
    }
    grep -q '^BENCH ' "$RUN_LOG" || {
        cat "$RUN_LOG" >&2
        die "wrk printed no BENCH line against $p"
    }
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
        $((up1 - up0 - 1)) $((u1 - u0)) "$WRK_CPU_MS" >>"$RESULTS"
    local errs=$((b[err_connect] + b[err_read] + b[err_write] + b[err_timeout] + b[err_status]))
    local rps=$((b[requests] * 1000000 / b[duration_us]))
    log "$(printf '%-8s r%-2s %-10s %8s req/s  p99 %6s us  errors %s' "$phase" "$round" "$p" "$rps" "${b[lat_p99_us]}" "$errs")"
}

N=${#PROXIES[@]}
rotated() { # rotated ROUND -> proxies in this round's order
    local r=$1 i out=()
    for ((i = 0; i < N; i++)); do
        out+=("${PROXIES[(i + r) % N]}")
    done
    echo "${out[@]}"
}

# The machine should be quiet. sample_bg SECONDS measures how busy both cores
# are (in %) while we are idle -> BG_LOAD, BG_PROXY.
BG_LOAD=0 BG_PROXY=0
sample_bg() {
    local -a a0 b0 a1 b1
    read -r -a a0 <<<"$(cpu_stat "$LOAD_CPU")"
    read -r -a b0 <<<"$(cpu_stat "$PROXY_CPU")"
    sleep "$1"
    read -r -a a1 <<<"$(cpu_stat "$LOAD_CPU")"
    read -r -a b1 <<<"$(cpu_stat "$PROXY_CPU")"
    BG_LOAD=$(((a1[0] - a0[0]) * 100 / (a1[1] - a0[1] > 0 ? a1[1] - a0[1] : 1)))
    BG_PROXY=$(((b1[0] - b0[0]) * 100 / (b1[1] - b0[1] > 0 ? b1[1] - b0[1] : 1)))
}
# settle SECONDS: stay idle that long; if other processes keep a core busier
# than NOISE_MAX %, wait on in 1 s steps, at most IDLE_BUDGET s per session.
settle() {
    local said=0
    sample_bg "$1"
    while ((BG_LOAD > NOISE_MAX || BG_PROXY > NOISE_MAX)); do
        if ((IDLE_BUDGET <= 0)); then
            ((said)) && log "WARNING: still busy (core $LOAD_CPU ${BG_LOAD} %, core $PROXY_CPU ${BG_PROXY} %); going on"
            return 0
        fi
        ((said)) || log "other processes are using the CPUs (core $LOAD_CPU ${BG_LOAD} %, core $PROXY_CPU ${BG_PROXY} %): waiting (budget ${IDLE_BUDGET} s)"
        said=1
        sample_bg 1
        IDLE_BUDGET=$((IDLE_BUDGET - 1))
    done
}

settle 2
log "background load before measuring: core $LOAD_CPU ${BG_LOAD} %, core $PROXY_CPU ${BG_PROXY} %"
if ((BG_LOAD > NOISE_MAX || BG_PROXY > NOISE_MAX)); then
    log "WARNING: the machine is not idle (something else uses the CPUs); results will be disturbed"
fi
BG_LOAD0=$BG_LOAD BG_PROXY0=$BG_PROXY

est=$((N * (WARMUP + PAUSE) + ROUNDS * N * (DURATION + PAUSE) + RATE_ROUNDS * N * (RATE_DURATION + PAUSE)))
log "measuring ${PROXIES[*]}: $ROUNDS x ${DURATION}s throughput, $RATE_ROUNDS x ${RATE_DURATION}s at $RATE req/s (~${est}s, + up to ${IDLE_BUDGET}s waiting out other load)"

if ((WARMUP > 0)); then
    for p in "${PROXIES[@]}"; do
        run_wrk "$p" "$WARMUP" "$CONNECTIONS" 0 "$TMP/runs/warmup-$p.log"
        settle "$PAUSE"
    done
fi

for ((r = 0; r < ROUNDS; r++)); do
    read -r -a order <<<"$(rotated "$r")"
    for ((s = 0; s < N; s++)); do
        measure throughput $((r + 1)) $((s + 1)) "${order[s]}" "$DURATION" "$CONNECTIONS" 0
        settle "$PAUSE"
    done
done

for ((r = 0; r < RATE_ROUNDS; r++)); do
    read -r -a order <<<"$(rotated "$r")"
    for ((s = 0; s < N; s++)); do
        measure rate $((r + 1)) $((s + 1)) "${order[s]}" "$RATE_DURATION" "$RATE_CONNECTIONS" "$RATE"
        settle "$PAUSE"
    done
done

# ------------------------------------------------------------------ report
hookrouter_rev=""
if has_proxy hookrouter; then
    hookrouter_rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    git -C "$REPO_ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || hookrouter_rev="$hookrouter_rev+dirty"
fi
{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "ncpu=$NCPU"
    echo "kernel=$(uname -r)"
    echo "nginx=$("$NGINX" -v 2>&1 | sed 's/.*nginx\///')"
    echo "haproxy=$("$HAPROXY" -v | head -1 | awk '{ print $3 }')"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
    echo "hookrouter=$hookrouter_rev"
    echo "proxies=${PROXIES[*]}"
    echo "rounds=$ROUNDS"
    echo "duration=$DURATION"
    echo "connections=$CONNECTIONS"
    echo "rate=$RATE"
    echo "rate_rounds=$RATE_ROUNDS"
    echo "rate_duration=$RATE_DURATION"
    echo "rate_connections=$RATE_CONNECTIONS"
    echo "load_cpu=$LOAD_CPU"
    echo "proxy_cpu=$PROXY_CPU"
    echo "clk_tck=$CLK_TCK"
    echo "noise_max=$NOISE_MAX"
    echo "bg_load=$BG_LOAD0"
    echo "bg_proxy=$BG_PROXY0"
    echo "body_bytes=$BODY_BYTES"
} >"$META"

status=0
python3 "$BENCH_DIR/report.py" "$META" "$RESULTS" >"$TMP/report.md" || status=$?
cat "$TMP/report.md"
if [[ -n $OUT ]]; then
    cp "$TMP/report.md" "$OUT"
    log "report written to $OUT"
fi
case $status in
0) ;;
2) log "some runs were INVALID (errors, missing forwards, rate not reached or other processes on the cores): see the report" ;;
*) die "report.py failed ($status)" ;;
esac
exit "$status"
