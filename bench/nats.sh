#!/usr/bin/env bash
# Benchmark: hookrouter on the NATS JetStream queue, one and two instances against one local
# nats-server, side by side with the embedded queue, in one run.
#
# Method, knobs and caveats: bench/README.md ("hookrouter with the NATS queue: one and two
# instances"). In short, three configurations, interleaved per round with the order rotated,
# each run on a fresh queue (a new folder; a new nats-server with an empty store):
#   embedded  one hookrouter, embedded queue (the reference; the same as bench/async.sh)
#   nats-1    one hookrouter on NATS
#   nats-2    two hookrouter instances (two ports) on the same NATS stream, load split evenly
#   1. ingest: closed-loop wrk, a fresh signed 2 KB body per request (bench/async/signed.lua),
#      a route verifying Stripe signatures and delivering to one target (the sink); always two
#      wrk processes with CONNECTIONS/2 each (to the same instance, or one per instance), req/s
#      summed; median over ROUNDS; ratios nats-1/embedded and nats-2/nats-1; every answer in
#      the window must be a 202 (counted by the routers' metrics); delivered during the run
#      and the time until every accepted event was delivered;
#   2. end to end: E2E_RATE events/s (default: a share of phase 1's slowest median) for
#      E2E_DURATION s with bench/async's loadgen (connections split over the instances);
#      delivered/s at the target during the load, backlog, time to deliver everything after
#      the load, ack and end-to-end latency, CPU per event of the routers and of nats-server.
# Pinning: load generator + sink on LOAD_CPU (core 0); hookrouter instance(s) AND nats-server
# on SERVER_CPU (core 1). On this 2-core machine the two-instance number measures sharing one
# core, not scale-out: the CPU per event is what predicts scale-out (see the README section).
#
# Usage:  bench/nats.sh                        # full run, ~10-11 min + release builds
#         SMOKE=1 bench/nats.sh                # ~2 min smoke run (short runs, 1 round each)
#         OUT=/tmp/nats.md bench/nats.sh       # also write the report there
#         CONFIGS="nats-1 nats-2" bench/nats.sh
#         E2E_TARGETS="1 3" bench/nats.sh      # phase 2 also with a route to 3 targets
#
# Runs as root (apt-get). Talks to 127.0.0.1 only. Everything it starts is stopped on exit;
# its files, the queues and the NATS stores live in mktemp dirs removed on exit (KEEP_TMP=1).

set -Eeuo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAG=nats
# shellcheck source=bench/lib.sh
source "$BENCH_DIR/lib.sh" # sets REPO_ROOT
ASYNC_DIR=$BENCH_DIR/async
NATS_DIR=$BENCH_DIR/nats

# ---------------------------------------------------------------- parameters
SMOKE=${SMOKE:-0}
if ((SMOKE)); then
    : "${ROUNDS:=1}" "${DURATION:=4}" "${WARMUP:=1}" "${E2E_ROUNDS:=1}" "${E2E_DURATION:=5}"
    : "${SELFTEST_DURATION:=2}" "${IDLE_BUDGET:=20}" "${DRAIN_MAX:=30}"
fi
CONFIGS=${CONFIGS:-"embedded nats-1 nats-2"} # configurations, in round 1's order
ROUNDS=${ROUNDS:-5}                    # phase 1 rounds
DURATION=${DURATION:-10}               # seconds per phase 1 run
CONNECTIONS=${CONNECTIONS:-64}         # wrk connections in all (two wrk, half each)
WARMUP=${WARMUP:-2}                    # seconds of unmeasured wrk load after each start
E2E_ROUNDS=${E2E_ROUNDS:-3}            # phase 2 rounds (0 skips it)
E2E_DURATION=${E2E_DURATION:-20}       # phase 2: seconds of load per run
E2E_RATE=${E2E_RATE:-auto}             # phase 2: events/s, or auto: E2E_SHARE % of phase 1's slowest median
E2E_SHARE=${E2E_SHARE:-70}
E2E_CONNECTIONS=${E2E_CONNECTIONS:-64}
E2E_TARGETS=${E2E_TARGETS:-1}          # phase 2 routes: "1" (one target), "3", or "1 3"
DRAIN_MAX=${DRAIN_MAX:-60}             # longest wait for the backlog to reach 0 after a load
SETTLE_MAX=${SETTLE_MAX:-60}           # longest wait for the warm-up's deliveries
ACK_WAIT=${ACK_WAIT:-30s}              # queue.nats.ack_wait
IDLE_TARGETS=${IDLE_TARGETS:-0}        # extra targets no route delivers to (NATS: a consumer each)
SELFTEST_RATE=${SELFTEST_RATE:-15000}  # the sink alone must take this many req/s
SELFTEST_DURATION=${SELFTEST_DURATION:-5}
PAUSE=${PAUSE:-1}                      # idle seconds before each measured run
NOISE_MAX=${NOISE_MAX:-10}             # % of a core used by other processes -> run invalid
IDLE_BUDGET=${IDLE_BUDGET:-120}        # max seconds in all to wait for other load to go away
LOAD_CPU=${LOAD_CPU:-0}                # wrk / loadgen + the sink + the watcher
SERVER_CPU=${SERVER_CPU:-1}            # hookrouter instance(s) + nats-server
SKIP_BUILD=${SKIP_BUILD:-0}            # 1: use the existing release binaries
HOOKROUTER_BIN=${HOOKROUTER_BIN:-$REPO_ROOT/target/release/hookrouter}
HOOKROUTER_REV=${HOOKROUTER_REV:-}     # shown in the report (default: git HEAD, +dirty)
NATS_SERVER=${NATS_SERVER:-/usr/sbin/nats-server}
DATA_DIR=${DATA_DIR:-${TMPDIR:-/tmp}}  # parent of the queues and NATS stores: a real disk
OUT=${OUT:-}
KEEP_TMP=${KEEP_TMP:-0}

# Not 4222 (the machine's own NATS) nor bench/async.sh's ports.
HR_PORT_0=${HR_PORT_0:-18281}
HR_PORT_1=${HR_PORT_1:-18282}
HR_ADMIN_PORT_0=${HR_ADMIN_PORT_0:-19281}
HR_ADMIN_PORT_1=${HR_ADMIN_PORT_1:-19282}
NATS_PORT=${NATS_PORT:-14322}
NATS_MON_PORT=${NATS_MON_PORT:-18222}
SINK_CONTROL_PORT=${SINK_CONTROL_PORT:-18200}
SINK_PORT_0=${SINK_PORT_0:-18201} # one-target route
SINK_PORT_1=${SINK_PORT_1:-18202} # three-target route
SINK_PORT_2=${SINK_PORT_2:-18203}
SINK_PORT_3=${SINK_PORT_3:-18204}

PAYLOAD=$BENCH_DIR/payload.json
LUA=$ASYNC_DIR/signed.lua
TOOLS=$ASYNC_DIR/target/release
WATCH=$NATS_DIR/watch.py
STRIPE_SECRET=whsec_bench_secret
ADMIN_TOKEN=bench-admin-token
STREAM=HOOKROUTER
STRIPE_T=$(date +%s) # one Stripe timestamp per session; every body is signed on its own
HOST=127.0.0.1

# ------------------------------------------------------------------- checks
check_uints ROUNDS DURATION CONNECTIONS WARMUP E2E_ROUNDS E2E_DURATION E2E_SHARE E2E_CONNECTIONS \
    DRAIN_MAX SETTLE_MAX IDLE_TARGETS SELFTEST_RATE SELFTEST_DURATION PAUSE NOISE_MAX IDLE_BUDGET \
    LOAD_CPU SERVER_CPU HR_PORT_0 HR_PORT_1 HR_ADMIN_PORT_0 HR_ADMIN_PORT_1 NATS_PORT NATS_MON_PORT \
    SINK_CONTROL_PORT SINK_PORT_0 SINK_PORT_1 SINK_PORT_2 SINK_PORT_3
((ROUNDS >= 1 && DURATION >= 1 && CONNECTIONS >= 2)) || die "ROUNDS, DURATION must be >= 1, CONNECTIONS >= 2"
((CONNECTIONS % 2 == 0)) || die "CONNECTIONS must be even (two wrk processes, half each)"
((E2E_ROUNDS == 0 || (E2E_DURATION >= 1 && E2E_CONNECTIONS >= 2))) || die "bad E2E_* settings"
[[ $E2E_RATE == auto || ($E2E_RATE =~ ^[0-9]+$ && $E2E_RATE -ge 1) ]] || die "E2E_RATE is auto or a number of events/s"
((E2E_SHARE >= 1 && E2E_SHARE <= 100)) || die "E2E_SHARE is a percentage (1-100)"
((LOAD_CPU != SERVER_CPU)) || die "LOAD_CPU and SERVER_CPU must differ"
[[ $ACK_WAIT =~ ^[0-9]+(ms|s|m)$ ]] || die "ACK_WAIT is a duration like 30s"
((NATS_PORT != 4222)) || die "NATS_PORT 4222 is the machine's own NATS: pick another"

CFGS=()
parse_list CFGS CONFIGS configuration unknown "embedded, nats-1, nats-2" embedded nats-1 nats-2
read -r -a E2E_SET <<<"$E2E_TARGETS"
for t in "${E2E_SET[@]}"; do
    [[ $t == 1 || $t == 3 ]] || die "E2E_TARGETS lists 1 and/or 3 (got '$t')"
done
((E2E_ROUNDS == 0 || ${#E2E_SET[@]} >= 1)) || die "E2E_TARGETS is empty"
uses_nats() { [[ -n ${SEEN[nats-1]:-} || -n ${SEEN[nats-2]:-} ]]; }
instances_of() { case $1 in nats-2) echo 2 ;; *) echo 1 ;; esac; }

# ------------------------------------------------------------------- tools
install_tools() {
    local need=()
    if uses_nats && [[ ! -x $NATS_SERVER ]]; then
        [[ $NATS_SERVER == /usr/sbin/nats-server ]] || die "no nats-server at $NATS_SERVER"
        need+=(nats-server)
    fi
    install_missing --findmnt "${need[@]}"
    ! uses_nats || [[ -x $NATS_SERVER ]] || die "nats-server not found after install"
    command -v cargo >/dev/null 2>&1 || die "cargo is needed to build hookrouter and bench/async's helpers"
}

[[ $(id -u) == 0 ]] || die "run as root (tools may need apt-get)"
install_tools
check_cpus

# -------------------------------------------------------------------- builds
# The same builds as bench/async.sh: hookrouter at the repo root, the helpers in bench/async.
build_release --helpers

# -------------------------------------------------------- processes, cleanup
start_session hookrouter-nats
check_ports_free "$HR_PORT_0" "$HR_PORT_1" "$HR_ADMIN_PORT_0" "$HR_ADMIN_PORT_1" "$NATS_PORT" \
    "$NATS_MON_PORT" "$SINK_CONTROL_PORT" "$SINK_PORT_0" "$SINK_PORT_1" "$SINK_PORT_2" "$SINK_PORT_3"

# ---------------------------------------- queues and NATS stores: a real disk
data_disk hookrouter-nats-data
log "queues and NATS stores under $DATA_PARENT ($MOUNT_SRC, $MOUNT_FS, disk ${DISK:-unknown}, cache=$WRITE_CACHE)"

# ------------------------------------------------------------------- the sink
mkdir -p "$TMP/runs"
start_sink

# ------------------------------------------------------- idle check, settling
settle() { # settle SECONDS: idle CPUs before a run (bounded by IDLE_BUDGET over the session)
    local secs=$1
    [[ $secs != 0 ]] || secs=0.5
    wait_idle "$secs"
}

# ------------------------------------------- load generators (CPU via `times`)
# run_wrk_pair DURATION LOGPREFIX PATH: two wrk processes at once, CONNECTIONS/2 each, the
# first to instance 0 and the second to instance 1 when there are two (else both to 0).
# Logs LOGPREFIX-a.log and LOGPREFIX-b.log; GEN_CPU_MS is both wrk's CPU.
run_wrk_pair() {
    local dur=$1 prefix=$2 path=$3 half=$((CONNECTIONS / 2)) i rc port bad=0
    local -a tags=()
    times >"$TMP/times0"
    LOAD_PIDS=()
    for i in 0 1; do
        next_tag w
        tags+=("$TAG")
        port=${INST_PORTS[i % ${#INST_PORTS[@]}]}
        taskset -c "$LOAD_CPU" timeout -k 5 $((dur + 60)) \
            wrk -t1 -c"$half" -d"${dur}s" --timeout 2s --latency -s "$LUA" \
            "http://$HOST:$port$path" -- "$PAYLOAD" stripe "$STRIPE_SECRET" "$TAG" "$STRIPE_T" \
            >"$prefix-$([[ $i == 0 ]] && echo a || echo b).log" 2>&1 &
        LOAD_PIDS+=($!)
    done
    for i in 0 1; do
        rc=0
        wait "${LOAD_PIDS[i]}" || rc=$?
        ((rc == 0)) || bad=$rc
    done
    LOAD_PIDS=()
    times >"$TMP/times1"
    GEN_CPU_MS=$(times_ms)
    for i in a b; do
        if ((bad)) || ! grep -q '^BENCH ' "$prefix-$i.log"; then
            cat "$prefix-$i.log" >&2
            die "wrk failed (exit $bad) or printed no BENCH line ($prefix-$i.log)"
        fi
    done
}

# -------------------------------------------------------- the sink's self-test
FSYNC=$(fsync_probe)
log "fdatasync of 4 KiB on the data disk: $FSYNC (samples, p50 ms, p99 ms)"
selftest() { # the sink must take SELFTEST_RATE req/s over its 4 ports (loadgen on the idle server core)
    sink_reset
    run_loadgen "$SERVER_CPU" "$TMP/runs/selftest.log" --url "http://$HOST:$SINK_PORT_0/s" \
        --url "http://$HOST:$SINK_PORT_1/a" --url "http://$HOST:$SINK_PORT_2/b" --url "http://$HOST:$SINK_PORT_3/c" \
        --rate "$SELFTEST_RATE" --duration "$SELFTEST_DURATION" --connections 96 --scheme none --expect 200
    read -r ST_DONE ST_OK ST_ACH ST_P99 <<<"$(jget "$TMP/runs/selftest.log" RESULT completed ok achieved_rate lat_p99_us)"
    log "sink self-test: $ST_ACH req/s achieved, $ST_OK/$ST_DONE answered 200, p99 ${ST_P99} us"
    sink_reset
    python3 -c "import sys; sys.exit(0 if $ST_OK == $ST_DONE and $ST_ACH >= 0.95 * $SELFTEST_RATE else 1)"
}
settle 1
if ! selftest; then
    log "sink self-test missed its rate; once more after the cores are idle"
    settle 2
    selftest || die "the sink does not keep up with $SELFTEST_RATE req/s: the runs would measure it"
fi

# --------------------------------------------- starting and stopping a config
NATS_VERSION=$({ uses_nats && "$NATS_SERVER" --version 2>/dev/null; } | awk '{ print $2 }' || true)
RUN_N=0 RUN_DIR=""
PID_nats="" CUR_CFG=""
INST_PORTS=() INST_ADMIN=() INST_PIDS=()
render() { # render TEMPLATE DEST QUEUE_FLOW
    fill_template "$1" "$2" ADMIN_TOKEN "QUEUE=$3" SINK_PORT_0 SINK_PORT_1 SINK_PORT_2 SINK_PORT_3 STRIPE_SECRET
    if ((IDLE_TARGETS > 0)); then
        local i lines=""
        for ((i = 1; i <= IDLE_TARGETS; i++)); do
            lines+="  idle-$i: { url: \"http://$HOST:$SINK_PORT_0/idle-$i\", timeout: 5s }\n"
        done
        sed -i "/^targets:\$/a\\
$(printf '%b' "$lines" | sed 's/$/\\/' | sed '$ s/\\$//')" "$2"
    fi
}
# up CONFIG TEMPLATE: a fresh queue (embedded: a new folder; NATS: a new nats-server with an
# empty store), then the instance(s), each pinned to SERVER_CPU with one runtime thread.
up() {
    local cfg=$1 tmpl=$2 n i queue
    n=$(instances_of "$cfg")
    RUN_N=$((RUN_N + 1))
    RUN_DIR=$DATA_PARENT/run-$RUN_N
    mkdir -p "$RUN_DIR"
    CUR_CFG=$cfg
    if [[ $cfg == embedded ]]; then
        queue="{ embedded: { path: \"$RUN_DIR/queue\" } }"
        PID_nats=""
    else
        fill_template "$NATS_DIR/nats-server.conf" "$TMP/nats-server.conf" NATS_PORT NATS_MON_PORT \
            "NATS_STORE=$RUN_DIR/nats"
        # GOMAXPROCS=1: one core for it, like hookrouter's one runtime thread (Go would take
        # it from the affinity mask anyway)
        start_bg nats "$SERVER_CPU" env GOMAXPROCS=1 "$NATS_SERVER" -c "$TMP/nats-server.conf"
        wait_http nats "$PID_nats" "http://$HOST:$NATS_MON_PORT/healthz?js-enabled-only=true"
        queue="{ nats: { url: \"nats://$HOST:$NATS_PORT\", stream: $STREAM, ack_wait: $ACK_WAIT } }"
    fi
    render "$tmpl" "$TMP/hookrouter.yaml" "$queue"
    HR_PORT=$HR_PORT_0 HR_ADMIN_PORT=$HR_ADMIN_PORT_0 "$HOOKROUTER_BIN" check -c "$TMP/hookrouter.yaml" >&2 ||
        die "hookrouter check failed on the benchmark config ($TMP/hookrouter.yaml)"
    local -a lports=("$HR_PORT_0" "$HR_PORT_1") admins=("$HR_ADMIN_PORT_0" "$HR_ADMIN_PORT_1")
    INST_PORTS=() INST_ADMIN=() INST_PIDS=()
    for ((i = 0; i < n; i++)); do
        # one after the other: the first creates the streams and consumers
        start_bg "router$i" "$SERVER_CPU" env HR_PORT="${lports[i]}" HR_ADMIN_PORT="${admins[i]}" \
            TOKIO_WORKER_THREADS=1 RUST_LOG=warn "$HOOKROUTER_BIN" run -c "$TMP/hookrouter.yaml" --log-level warn
        local v="PID_router$i"
        wait_http "router$i" "${!v}" "http://$HOST:${admins[i]}/readyz"
        INST_PORTS+=("${lports[i]}")
        INST_ADMIN+=("${admins[i]}")
        INST_PIDS+=("${!v}")
    done
    BASE_ACC=0 BASE_STORED=0
    sink_reset
}
down() { # stop the instance(s) (graceful), then nats-server; delete the run's queue/store
    local pid
    for pid in "${INST_PIDS[@]}"; do
        stop_pid "$pid"
    done
    [[ -z $PID_nats ]] || stop_pid "$PID_nats"
    PID_nats="" INST_PIDS=() INST_PORTS=() INST_ADMIN=()
    rm -rf "$RUN_DIR"
}
metrics_urls() {
    local p out=""
    for p in "${INST_ADMIN[@]}"; do out+="${out:+,}http://$HOST:$p/metrics"; done
    echo "$out"
}
outcomes() { python3 "$WATCH" outcomes "$(metrics_urls)"; } # {outcome: n} over the instances
counts_now() { # "accepted stored": the routers' accepted count, the NATS stream's messages (-1: embedded)
    if [[ -n $PID_nats ]]; then
        python3 "$WATCH" counts "$(metrics_urls)" "http://$HOST:$NATS_MON_PORT" "$STREAM"
    else
        python3 "$WATCH" counts "$(metrics_urls)"
    fi
}

# preflight PATH: on each instance, 5 signed requests -> 202 each, 5 wrongly signed -> 401.
PREFLIGHT_NOTE=""
preflight() {
    local path=$1 port got bad
    for port in "${INST_PORTS[@]}"; do
        run_loadgen "$LOAD_CPU" "$TMP/preflight.log" --url "http://$HOST:$port$path" \
            --rate 50 --duration 0.1 --connections 2 --scheme stripe --secret "$STRIPE_SECRET"
        got=$(jget "$TMP/preflight.log" RESULT statuses)
        [[ $got == '{"202":5}' ]] || die "pre-flight ($CUR_CFG, :$port$path): signed requests got $got (want 202 x5)"
        run_loadgen "$LOAD_CPU" "$TMP/preflight-bad.log" --url "http://$HOST:$port$path" \
            --rate 50 --duration 0.1 --connections 2 --scheme stripe --secret "wrong-$STRIPE_SECRET"
        bad=$(jget "$TMP/preflight-bad.log" RESULT statuses)
        [[ $bad == '{"401":5}' ]] || die "pre-flight ($CUR_CFG, :$port$path): wrongly signed requests got $bad (want 401 x5)"
    done
    PREFLIGHT_NOTE="5 signed requests per instance -> $got; wrong signature -> $bad"
}

# watch_drain OUTFILE PORTS DRAIN_MAX: run the backlog watcher (pinned to LOAD_CPU) in the
# foreground, with BASE_ACC/BASE_STORED subtracted; its WATCH line goes to OUTFILE.
watch_args() { # the common arguments
    local a=(--sink "http://$HOST:$SINK_CONTROL_PORT" --metrics "$(metrics_urls)" --stream "$STREAM"
        --base-accepted "$BASE_ACC" --base-stored "$BASE_STORED")
    [[ -z $PID_nats ]] || a+=(--nats-mon "http://$HOST:$NATS_MON_PORT")
    printf '%s\n' "${a[@]}"
}
watch_drain() {
    local outf=$1 ports=$2 max=$3
    local -a common
    mapfile -t common < <(watch_args)
    taskset -c "$LOAD_CPU" timeout -k 5 $((max + 330)) python3 "$WATCH" "${common[@]}" --ports "$ports" \
        --out "$outf.tsv" --drain-max "$max" --hard $((max + 300)) >"$outf" 2>"$outf.err" || true
    grep -q '^WATCH ' "$outf" || die "the backlog watcher failed: $(head -c 500 "$outf.err")"
}

# base_and_reset PORTS: wait until everything stored so far is delivered (SETTLE_MAX), then
# BASE_ACC/BASE_STORED = the counts so far, and the sink forgets, so that the measurement
# starts from zero. (up resets the sink and the bases: the instances and the queue are new.)
BASE_ACC=0 BASE_STORED=0 WARM_OK=1
base_and_reset() {
    local ports=$1 drain
    watch_drain "$TMP/runs/settle.out" "$ports" "$SETTLE_MAX"
    drain=$(jget "$TMP/runs/settle.out" WATCH drain_ms)
    WARM_OK=1
    if ((drain < 0)); then
        WARM_OK=0
        log "WARNING: $CUR_CFG: the warm-up's events were not all delivered within ${SETTLE_MAX}s: $(grep '^WATCH ' "$TMP/runs/settle.out" | cut -c7-)"
    fi
    read -r BASE_ACC BASE_STORED <<<"$(counts_now)"
    ((BASE_STORED >= 0)) || BASE_STORED=0
    sink_reset
}

# Once per session: deduplication across instances, and the instances registry.
DUP_NOTE="not checked" INSTANCES_NOTE="not checked"
dup_event
session_checks() { # with the current config up (on /hook)
    local a b last
    [[ $CUR_CFG == nats-2 && $DUP_NOTE == "not checked" ]] || return 0
    a=$(dup_post "${INST_PORTS[0]}")
    b=$(dup_post "${INST_PORTS[1]}")
    DUP_NOTE="the same signed event to instance 1, then to instance 2: $a, then $b"
    [[ $a == 202 && $b == 200 ]] || log "WARNING: deduplication across instances: $a then $b (want 202 then 200)"
    for _ in $(seq 20); do
        last=$(curl -sf --max-time 2 -H "Authorization: Bearer $ADMIN_TOKEN" \
            "http://$HOST:${INST_ADMIN[0]}/api/v1/instances" |
            python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["instances"]), d["config_versions"])' 2>/dev/null || echo "? ?")
        [[ ${last%% *} == 2 ]] && break
        sleep 0.5
    done
    INSTANCES_NOTE="GET /api/v1/instances on instance 1: ${last%% *} instances, config_versions ${last##* }"
    log "nats-2 checks: $DUP_NOTE; $INSTANCES_NOTE"
}

# snapshot NAME: CPU of routers, nats-server, sink; the two cores; the disk; NATS counters
# (VARZ_NAME: in_msgs out_msgs in_bytes out_bytes sub_inserts, zeros on the embedded queue)
snapshot() {
    if [[ -n $PID_nats ]]; then
        printf -v "VARZ_$1" '%s' "$(python3 "$WATCH" varz "http://$HOST:$NATS_MON_PORT" || echo 0 0 0 0 0)"
    else
        printf -v "VARZ_$1" '%s' "0 0 0 0 0"
    fi
    local -a l c d each=()
    local pid
    read -r -a l <<<"$(cpu_stat "$LOAD_CPU")"
    read -r -a c <<<"$(cpu_stat "$SERVER_CPU")"
    read -r -a d <<<"$(disk_stat)"
    for pid in "${INST_PIDS[@]}"; do each+=("$(proc_ticks "$pid")"); done
    local routers=0 t
    for t in "${each[@]}"; do routers=$((routers + t)); done
    local nats=0
    [[ -z $PID_nats ]] || nats=$(proc_ticks "$PID_nats")
    # 0 routers 1 nats 2 sink 3 load_busy 4 load_total 5 load_task 6 srv_busy 7 srv_total
    # 8 srv_task 9 disk_writes 10 disk_sectors 11 disk_flushes 12 routers each (comma)
    printf -v "SNAP_$1" '%s' "$routers $nats $(proc_ticks "$PID_sink") ${l[0]} ${l[1]} ${l[2]} ${c[0]} ${c[1]} ${c[2]} ${d[0]} ${d[1]} ${d[2]} $(
        IFS=,
        echo "${each[*]}"
    )"
}
delta() { # delta A B IDX -> SNAP_B[IDX] - SNAP_A[IDX]
    local -a a b
    local va="SNAP_$1" vb="SNAP_$2"
    read -r -a a <<<"${!va}"
    read -r -a b <<<"${!vb}"
    if (($3 == 12)); then
        python3 -c 'import sys; a, b = sys.argv[1].split(","), sys.argv[2].split(","); print(",".join(str(int(y) - int(x)) for x, y in zip(a, b)))' "${a[12]}" "${b[12]}"
    else
        echo $((b[$3] - a[$3]))
    fi
}
window_cols() { # window_cols A B -> the tab-separated CPU/disk columns of a window
    local i out=""
    for i in 0 1 2 3 4 5 6 7 8 9 10 11 12; do out+="${out:+$'\t'}$(delta "$1" "$2" "$i")"; done
    echo "$out"
}
WINDOW_HEAD="routers_ticks	nats_ticks	sink_ticks	load_busy	load_total	load_task	server_busy	server_total	server_task	disk_writes	disk_sectors	disk_flushes	routers_each"

varz_delta() { # varz_delta A B -> "in_msgs,out_msgs,in_bytes,out_bytes,sub_inserts" deltas
    local -a a b
    local va="VARZ_$1" vb="VARZ_$2" i out=""
    read -r -a a <<<"${!va}"
    read -r -a b <<<"${!vb}"
    for i in 0 1 2 3 4; do out+="${out:+,}$((b[i] - a[i]))"; done
    echo "$out"
}

# ------------------------------------------------------------------ measuring
P1=$TMP/p1.tsv
printf 'round\tslot\tconfig\tinstances\treq_a\tdur_a_us\treq_b\tdur_b_us\terrors_a\terrors_b\tnon2xx\tlat_p50_us\tlat_p99_us\taccepted\tstored\toutcomes\tdelivered_in_run\tdrain_ms\tbacklog_at_end\tdelivered\tdelivery_requests\tconsumers\twarm_ok\tgen_cpu_ms\t%s\tlc_routers_ticks\tlc_nats_ticks\tlc_routers_each\tnats_varz\n' "$WINDOW_HEAD" >"$P1"
P2=$TMP/p2.tsv
printf 'round\tslot\tconfig\tinstances\ttargets\trate\tloadgen\twatch\tdelivered_in_load\te2e\toutcomes\twarm_ok\tgen_cpu_ms\t%s\tlc_routers_ticks\tlc_nats_ticks\tlc_routers_each\tnats_varz\tsamples\n' "$WINDOW_HEAD" >"$P2"

n_cfg=${#CFGS[@]}
per_run=$((WARMUP + PAUSE + DURATION + 8))
est=$((ROUNDS * n_cfg * per_run + E2E_ROUNDS * ${#E2E_SET[@]} * n_cfg * (E2E_DURATION + PAUSE + 10)))
settle 2
BG_LOAD0=$BG_LOAD BG_SERVER0=$BG_SERVER
log "background load before measuring: core $LOAD_CPU ${BG_LOAD} %, core $SERVER_CPU ${BG_SERVER} %"
log "measuring: ~${est}s (+ waiting for deliveries and for other load to go away)"

err_sum() { # err_sum WRKLOG -> connect+read+write+timeout errors
    local k s=0
    for k in err_connect err_read err_write err_timeout; do s=$((s + $(wrk_field "$1" "$k"))); done
    echo "$s"
}

# -------------------------------------------------------- phase 1: ingest
for ((r = 0; r < ROUNDS; r++)); do
    read -r -a order <<<"$(rotated "$r" "${CFGS[@]}")"
    for ((s = 0; s < n_cfg; s++)); do
        cfg=${order[s]}
        up "$cfg" "$NATS_DIR/hookrouter-1.yaml"
        session_checks
        preflight /hook
        if ((WARMUP > 0)); then
            run_wrk_pair "$WARMUP" "$TMP/runs/warmup-$r-$cfg" /hook
        fi
        base_and_reset "$SINK_PORT_0"
        settle "$PAUSE"
        out0=$(outcomes)
        snapshot a
        run_wrk_pair "$DURATION" "$TMP/runs/ingest-$r-$cfg" /hook
        snapshot b
        n1=$(sink_unique "$SINK_PORT_0")
        watch_drain "$TMP/runs/ingest-$r-$cfg.watch" "$SINK_PORT_0" "$DRAIN_MAX"
        snapshot c
        out1=$(outcomes)
        read -r drain at_end accepted stored recv reqs cons <<<"$(jget "$TMP/runs/ingest-$r-$cfg.watch" WATCH drain_ms backlog_at_load_end accepted stored received requests consumers)"
        outc=$(python3 -c 'import json,sys; a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2]); print(json.dumps({k: b[k] - a.get(k, 0) for k in sorted(b) if b[k] - a.get(k, 0)}, separators=(",", ":")))' "$out0" "$out1")
        la=$TMP/runs/ingest-$r-$cfg-a.log lb=$TMP/runs/ingest-$r-$cfg-b.log
        p99=$(($(wrk_field "$la" lat_p99_us) > $(wrk_field "$lb" lat_p99_us) ? $(wrk_field "$la" lat_p99_us) : $(wrk_field "$lb" lat_p99_us)))
        {
            printf '%s\t%s\t%s\t%s' $((r + 1)) $((s + 1)) "$cfg" "$(instances_of "$cfg")"
            printf '\t%s\t%s\t%s\t%s' "$(wrk_field "$la" requests)" "$(wrk_field "$la" duration_us)" "$(wrk_field "$lb" requests)" "$(wrk_field "$lb" duration_us)"
            printf '\t%s\t%s\t%s' "$(err_sum "$la")" "$(err_sum "$lb")" $(($(wrk_field "$la" err_status) + $(wrk_field "$lb" err_status)))
            printf '\t%s\t%s' "$(wrk_field "$la" lat_p50_us)" "$p99"
            printf '\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$accepted" "$stored" "$outc" "$n1" "$drain" "$at_end" "$recv" "$reqs" "${cons:-{\}}" "$WARM_OK"
            printf '\t%s\t%s' "$GEN_CPU_MS" "$(window_cols a b)"
            printf '\t%s\t%s\t%s\t%s\n' "$(delta a c 0)" "$(delta a c 1)" "$(delta a c 12)" "$(varz_delta a c)"
        } >>"$P1"
        rps=$(python3 -c "print(round($(wrk_field "$la" requests) * 1e6 / $(wrk_field "$la" duration_us) + $(wrk_field "$lb" requests) * 1e6 / $(wrk_field "$lb" duration_us)))")
        log "$(printf 'ingest r%-2s %-8s %7s req/s  answers %s  delivered during the run %s of %s, the rest %s ms later' \
            $((r + 1)) "$cfg" "$rps" "$outc" "$n1" "$([[ $stored -ge 0 ]] && echo "$stored stored" || echo "$accepted accepted")" "$drain")"
        down
    done
done

# ---------------------------------------------------- phase 2: end to end
E2E_RATE_AUTO=0
if ((E2E_ROUNDS > 0)) && [[ $E2E_RATE == auto ]]; then
    E2E_RATE_AUTO=1
    E2E_RATE=$(python3 - "$P1" "$E2E_SHARE" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8"), delimiter="\t"))
by = {}
for r in rows:
    rps = int(r["req_a"]) * 1e6 / int(r["dur_a_us"]) + int(r["req_b"]) * 1e6 / int(r["dur_b_us"])
    by.setdefault(r["config"], []).append(rps)
slowest = min(statistics.median(v) for v in by.values())
print(max(100, int(slowest * int(sys.argv[2]) / 100 / 100) * 100))
EOF
    )
    log "phase 2 rate: $E2E_RATE events/s ($E2E_SHARE % of phase 1's slowest median, rounded down to 100)"
fi
for tg in "${E2E_SET[@]}"; do
    if ((tg == 1)); then
        tmpl=$NATS_DIR/hookrouter-1.yaml path=/hook ports=$SINK_PORT_0
    else
        tmpl=$NATS_DIR/hookrouter-3.yaml path=/fanout ports=$SINK_PORT_1,$SINK_PORT_2,$SINK_PORT_3
    fi
    for ((r = 0; r < E2E_ROUNDS; r++)); do
        read -r -a order <<<"$(rotated "$r" "${CFGS[@]}")"
        for ((s = 0; s < n_cfg; s++)); do
            cfg=${order[s]}
            up "$cfg" "$tmpl"
            preflight "$path"
            base_and_reset "$ports"
            settle "$PAUSE"
            out0=$(outcomes)
            urls=()
            for port in "${INST_PORTS[@]}"; do urls+=(--url "http://$HOST:$port$path"); done
            lg=$TMP/runs/e2e-$tg-$r-$cfg.log
            wout=$TMP/runs/e2e-$tg-$r-$cfg.watch
            : >"$lg"
            mapfile -t common < <(watch_args)
            snapshot a
            times >"$TMP/e2e-times0" # the CPU of the watcher and the loadgen
            taskset -c "$LOAD_CPU" timeout -k 5 $((E2E_DURATION + DRAIN_MAX + 400)) python3 "$WATCH" "${common[@]}" \
                --ports "$ports" --out "$wout.tsv" --drain-max "$DRAIN_MAX" --hard $((E2E_DURATION + DRAIN_MAX + 300)) \
                --load-out "$lg" >"$wout" 2>"$wout.err" &
            WATCH_PID=$!
            run_loadgen "$LOAD_CPU" "$lg" "${urls[@]}" --rate "$E2E_RATE" --duration "$E2E_DURATION" \
                --connections "$E2E_CONNECTIONS" --scheme stripe --secret "$STRIPE_SECRET" --expect 202
            snapshot b
            n1=$(sink_json "" | python3 -c 'import json,sys; ps={int(p) for p in sys.argv[1].split(",")}; print(sum(t["unique"] for t in json.load(sys.stdin)["targets"] if t["port"] in ps))' "$ports")
            wait "$WATCH_PID" || true
            WATCH_PID=""
            times >"$TMP/e2e-times1"
            GEN_CPU_MS=$(times_ms e2e-)
            grep -q '^WATCH ' "$wout" || die "the backlog watcher failed: $(head -c 500 "$wout.err")"
            snapshot c
            out1=$(outcomes)
            outc=$(python3 -c 'import json,sys; a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2]); print(json.dumps({k: b[k] - a.get(k, 0) for k in sorted(b) if b[k] - a.get(k, 0)}, separators=(",", ":")))' "$out0" "$out1")
            e2e=$(sink_json "?lat=1" | tr -d '\n')
            {
                printf '%s\t%s\t%s\t%s\t%s\t%s' $((r + 1)) $((s + 1)) "$cfg" "$(instances_of "$cfg")" "$tg" "$E2E_RATE"
                printf '\t%s\t%s\t%s\t%s\t%s\t%s' "$(grep '^RESULT ' "$lg" | tail -1 | cut -c8-)" "$(grep '^WATCH ' "$wout" | cut -c7-)" "$n1" "$e2e" "$outc" "$WARM_OK"
                printf '\t%s\t%s' "$GEN_CPU_MS" "$(window_cols a b)"
                printf '\t%s\t%s\t%s\t%s\t%s\n' "$(delta a c 0)" "$(delta a c 1)" "$(delta a c 12)" "$(varz_delta a c)" "$wout.tsv"
            } >>"$P2"
            read -r ach st <<<"$(jget "$lg" RESULT achieved_rate statuses)"
            read -r drain mb <<<"$(jget "$wout" WATCH drain_ms max_backlog)"
            log "e2e ($tg target$([[ $tg == 1 ]] || echo s)) r$((r + 1)) $cfg: $ach/$E2E_RATE events/s, answers $st, max backlog $mb, all delivered $drain ms after the load"
            down
        done
    done
done

# ------------------------------------------------------------------ report
[[ -n $HOOKROUTER_REV ]] || HOOKROUTER_REV=$(hookrouter_rev --untracked)
META=$TMP/meta.txt
{
    meta_machine
    echo "nats_server=${NATS_VERSION:-n/a}"
    echo "hookrouter=$HOOKROUTER_REV"
    echo "configs=${CFGS[*]}"
    meta_vars ROUNDS DURATION CONNECTIONS WARMUP E2E_ROUNDS E2E_DURATION E2E_RATE E2E_SHARE
    echo "e2e_rate_auto=$E2E_RATE_AUTO"
    echo "e2e_connections=$E2E_CONNECTIONS"
    echo "e2e_targets=${E2E_SET[*]}"
    meta_vars DRAIN_MAX ACK_WAIT IDLE_TARGETS LOAD_CPU SERVER_CPU CLK_TCK NOISE_MAX
    echo "bg_load=$BG_LOAD0"
    echo "bg_server=$BG_SERVER0"
    echo "body_bytes=$(wc -c <"$PAYLOAD")"
    echo "data_fs=$MOUNT_FS"
    echo "data_dev=$MOUNT_SRC"
    meta_vars WRITE_CACHE ROTATIONAL FSYNC
    echo "selftest=$SELFTEST_RATE $SELFTEST_DURATION $ST_ACH $ST_OK $ST_DONE $ST_P99"
    echo "preflight=$PREFLIGHT_NOTE"
    echo "dup=$DUP_NOTE"
    echo "instances=$INSTANCES_NOTE"
    echo "smoke=$SMOKE"
} >"$META"

finish "$NATS_DIR/report.py" "errors, non-202 answers, events not delivered, or other processes on the cores" \
    "$META" "$P1" "$P2"
