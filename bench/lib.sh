# shellcheck shell=bash
# Shared by bench/sync.sh, bench/async.sh and bench/nats.sh, which source it right after setting
# BENCH_DIR: logging, checking the knobs, installing the tools, building, pinning to two cores,
# the session's processes and their cleanup, the idle check, the data disk, the load generators'
# CPU, bench/async's sink and loadgen, and the report's common lines.
#
# It sets REPO_ROOT, the repository's top folder. The scripts set what these functions read:
# LOG_TAG (the log prefix), HOST, LOAD_CPU (the load generator's core) and SERVER_CPU (the core
# of the server under test), NOISE_MAX, IDLE_BUDGET, KEEP_TMP, OUT, HOOKROUTER_BIN, SKIP_BUILD;
# for bench/async's helpers also ASYNC_DIR, TOOLS, PAYLOAD, STRIPE_SECRET, STRIPE_T,
# SINK_CONTROL_PORT and SINK_PORT_0..3; for the data disk DATA_DIR.
# shellcheck disable=SC2034 # what these functions set is read by the scripts

REPO_ROOT=$(cd "$BENCH_DIR/.." && pwd)

# ------------------------------------------------------------------- helpers
log() { printf '[%s %s] %s\n' "$LOG_TAG" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }

check_uints() { # check_uints VAR...: each knob VAR must be a non-negative integer
    local v
    for v in "$@"; do
        is_uint "${!v}" || die "$v must be a non-negative integer (got '${!v}')"
    done
}

# parse_list ARRAY KNOB NOUN UNKNOWN HINT CHOICE...: the words of the knob KNOB (e.g. ONLY) into
# ARRAY, each one of the CHOICEs and listed once; SEEN[word]=1 for each. The errors read
# "KNOB lists no NOUN", "KNOB: UNKNOWN 'word' (HINT)" and "KNOB: 'word' listed twice".
parse_list() {
    local -n _list=$1
    local knob=$2 noun=$3 unknown=$4 hint=$5 w c ok
    shift 5
    read -r -a _list <<<"${!knob}"
    ((${#_list[@]} >= 1)) || die "$knob lists no $noun"
    declare -gA SEEN=()
    for w in "${_list[@]}"; do
        ok=0
        for c in "$@"; do [[ $w != "$c" ]] || ok=1; done
        ((ok)) || die "$knob: $unknown '$w' ($hint)"
        [[ -z ${SEEN[$w]:-} ]] || die "$knob: '$w' listed twice"
        SEEN[$w]=1
    done
}

# fill_template TEMPLATE DEST VAR...: TEMPLATE with each @VAR@ replaced by $VAR (or, for a
# NAME=VALUE, each @NAME@ by VALUE) into DEST
fill_template() {
    local v
    local -a subst=()
    for v in "${@:3}"; do
        if [[ $v == *=* ]]; then
            subst+=(-e "s#@${v%%=*}@#${v#*=}#g")
        else
            subst+=(-e "s#@$v@#${!v}#g")
        fi
    done
    sed "${subst[@]}" "$1" >"$2"
}

rotated() { # rotated ROUND ITEM... -> the items in this round's order (rotated by ROUND)
    local r=$1 i
    shift
    local -a items=("$@") turned=()
    for ((i = 0; i < ${#items[@]}; i++)); do turned+=("${items[(i + r) % ${#items[@]}]}"); done
    echo "${turned[@]}"
}

# ------------------------------------------------------------------- tools
# install_missing [--findmnt] PKG...: wrk, curl, taskset, python3 and getconf (and findmnt) from
# Debian when they are missing, together with the script's own missing packages PKG.
install_missing() {
    local findmnt=0
    [[ ${1:-} != --findmnt ]] || {
        findmnt=1
        shift
    }
    local need=()
    command -v wrk >/dev/null 2>&1 || need+=(wrk)
    need+=("$@")
    command -v curl >/dev/null 2>&1 || need+=(curl)
    command -v taskset >/dev/null 2>&1 || need+=(util-linux)
    ((!findmnt)) || command -v findmnt >/dev/null 2>&1 || need+=(util-linux)
    command -v python3 >/dev/null 2>&1 || need+=(python3)
    command -v getconf >/dev/null 2>&1 || need+=(libc-bin)
    if ((${#need[@]})); then
        [[ $(id -u) == 0 ]] || die "missing ${need[*]} and not root: install them or rerun as root"
        log "installing ${need[*]} from Debian"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y "${need[@]}"
    fi
}

# check_cpus: LOAD_CPU and SERVER_CPU must exist and be ours to pin to; NCPU, CLK_TCK.
check_cpus() {
    NCPU=$(nproc --all)
    ((LOAD_CPU < NCPU && SERVER_CPU < NCPU)) || die "need CPUs $LOAD_CPU and $SERVER_CPU; this machine has $NCPU"
    taskset -c "$LOAD_CPU,$SERVER_CPU" true || die "cannot pin to CPUs $LOAD_CPU,$SERVER_CPU (cgroup cpuset?)"
    CLK_TCK=$(getconf CLK_TCK)
}

# build_release [--helpers]: hookrouter at the repo root (cargo build --release), and with
# --helpers bench/async's loadgen and sink too; SKIP_BUILD=1 uses the binaries as they are.
# shellcheck disable=SC2120 # --helpers is optional
build_release() {
    local helpers=0
    [[ ${1:-} != --helpers ]] || helpers=1
    if ((SKIP_BUILD)); then
        if ((helpers)); then
            log "SKIP_BUILD=1: using $HOOKROUTER_BIN and $TOOLS as they are"
        else
            log "SKIP_BUILD=1: using $HOOKROUTER_BIN as is"
        fi
    else
        log "building hookrouter (cargo build --release) in $REPO_ROOT"
        (cd "$REPO_ROOT" && cargo build --release) || die "cargo build --release failed"
        if ((helpers)); then
            log "building the helpers (cargo build --release) in $ASYNC_DIR"
            cargo build --release --manifest-path "$ASYNC_DIR/Cargo.toml" || die "building bench/async failed"
        fi
    fi
    [[ -x $HOOKROUTER_BIN ]] || die "no hookrouter binary at $HOOKROUTER_BIN"
    ((!helpers)) || [[ -x $TOOLS/loadgen && -x $TOOLS/sink ]] || die "no loadgen/sink in $TOOLS (build bench/async)"
}

# -------------------------------------------------------- processes, cleanup
# start_session NAME [STOP_TENTHS]: TMP, a new folder NAME.XXXXXX under TMPDIR, and the traps.
# On exit, cleanup stops the loads (LOAD_PIDS, WATCH_PID), then every server in PIDS in reverse
# order: SIGTERM, SIGKILL after STOP_TENTHS tenths of a second (default 100); then it removes TMP
# and DATA_PARENT (see data_disk) unless KEEP_TMP=1.
start_session() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    STOP_TENTHS=${2:-100}
    DATA_PARENT=""
    PIDS=()      # every server we started, stopped in reverse order on exit
    LOAD_PIDS=() # the load generator(s) running now
    WATCH_PID="" # a sampler or watcher running beside them
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local i pid
    for pid in "${LOAD_PIDS[@]}" $WATCH_PID; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill -TERM "${PIDS[i]}" 2>/dev/null || true
    done
    for _ in $(seq "$STOP_TENTHS"); do
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
        log "kept $TMP${DATA_PARENT:+ and $DATA_PARENT}"
    else
        rm -rf "$TMP"
        [[ -z $DATA_PARENT ]] || rm -rf "$DATA_PARENT"
    fi
    exit "$rc"
}

port_free() { ! (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }
check_ports_free() { # check_ports_free PORT...: nothing may listen on them yet
    local port
    for port in "$@"; do
        port_free "$port" || die "port $port on $HOST is already in use"
    done
}

start_bg() { # start_bg NAME CPU CMD... : start CMD pinned to CPU, pid in PID_<NAME>
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$TMP/$name.out" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    printf -v "PID_$name" '%s' "$pid"
}

forget_pid() { # forget_pid PID: no longer ours to stop on exit
    local i
    for i in "${!PIDS[@]}"; do
        [[ ${PIDS[i]} != "$1" ]] || unset 'PIDS[i]'
    done
    PIDS=("${PIDS[@]}")
}

stop_pid() { # stop_pid PID: SIGTERM, up to 30 s, then SIGKILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "WARNING: process $pid did not stop within 30 s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# wait_until NAME PID TRIES FAILURE CMD...: run CMD every 0.1 s until it succeeds, at most TRIES
# times; if NAME's process (PID) exits first, or CMD never succeeds, show its output and die.
wait_until() {
    local name=$1 pid=$2 tries=$3 failure=$4
    shift 4
    for _ in $(seq "$tries"); do
        kill -0 "$pid" 2>/dev/null || {
            sed 's/^/    /' "$TMP/$name.out" >&2 || true
            die "$name exited during start-up (output above)"
        }
        "$@" && return 0
        sleep 0.1
    done
    sed 's/^/    /' "$TMP/$name.out" >&2 || true
    die "$failure"
}
answers_200() { curl -sf --max-time 1 -o /dev/null "$1"; }
wait_http() { # wait_http NAME PID URL : until URL answers 200 (30 s at most)
    wait_until "$1" "$2" 300 "$1 did not answer $3 within 30 s" answers_200 "$3"
}

# ----------------------------------------------------------------- CPU time
proc_ticks() { # utime+stime (clock ticks) summed over PIDs (none: 0)
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

cpu_stat() { # cpu_stat N -> "busy total tasks" jiffies of core N from /proc/stat
    # busy: everything but idle and iowait; tasks: user + nice + system only, i.e. without
    # interrupt and softirq time (loopback networking is largely softirq, which is charged to no
    # process) and steal (the hypervisor): the part comparable with processes' own CPU time.
    awk -v cpu="cpu$1" '$1 == cpu {
        total = $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9
        print total - $5 - $6, total, $2 + $3 + $4
    }' /proc/stat
}

# ------------------------------------------------------- idle check, settling
# The machine should be quiet. sample_bg SECONDS measures how busy both cores are (in %) while
# we are idle -> BG_LOAD (LOAD_CPU), BG_SERVER (SERVER_CPU). BG_FIELD is what counts: 2, the
# tasks' time (the default), or 0, all busy time (interrupts and softirq too).
BG_LOAD=0 BG_SERVER=0 BG_FIELD=2
sample_bg() {
    local -a a0 b0 a1 b1
    read -r -a a0 <<<"$(cpu_stat "$LOAD_CPU")"
    read -r -a b0 <<<"$(cpu_stat "$SERVER_CPU")"
    sleep "$1"
    read -r -a a1 <<<"$(cpu_stat "$LOAD_CPU")"
    read -r -a b1 <<<"$(cpu_stat "$SERVER_CPU")"
    BG_LOAD=$(((a1[BG_FIELD] - a0[BG_FIELD]) * 100 / (a1[1] - a0[1] > 0 ? a1[1] - a0[1] : 1)))
    BG_SERVER=$(((b1[BG_FIELD] - b0[BG_FIELD]) * 100 / (b1[1] - b0[1] > 0 ? b1[1] - b0[1] : 1)))
}
# wait_idle SECONDS: stay idle that long; if other processes keep a core busier than NOISE_MAX %,
# wait on in 1 s steps, at most IDLE_BUDGET s per session.
wait_idle() {
    local said=0
    sample_bg "$1"
    while ((BG_LOAD > NOISE_MAX || BG_SERVER > NOISE_MAX)); do
        if ((IDLE_BUDGET <= 0)); then
            ((said)) && log "WARNING: still busy (core $LOAD_CPU ${BG_LOAD} %, core $SERVER_CPU ${BG_SERVER} %); going on"
            return 0
        fi
        ((said)) || log "other processes are using the CPUs (core $LOAD_CPU ${BG_LOAD} %, core $SERVER_CPU ${BG_SERVER} %): waiting (budget ${IDLE_BUDGET} s)"
        said=1
        sample_bg 1
        IDLE_BUDGET=$((IDLE_BUDGET - 1))
    done
}

# ------------------------------------------------ the data disk: not tmpfs
# data_disk NAME [WHY]: DATA_PARENT, a new folder NAME.XXXXXX in DATA_DIR, which must be on a real
# disk (WHY, in the error, says why); MOUNT_SRC, MOUNT_FS and MOUNT_OPTS of its file system; DISK,
# the whole disk behind the mount (for disk_stat), and its ROTATIONAL and WRITE_CACHE ("?").
data_disk() {
    local fstype d
    mkdir -p "$DATA_DIR"
    fstype=$(stat -f -c %T "$DATA_DIR")
    case $fstype in tmpfs | ramfs) die "DATA_DIR $DATA_DIR is $fstype: ${2:-}set DATA_DIR to a folder on a real disk" ;; esac
    DATA_PARENT=$(mktemp -d "$DATA_DIR/$1.XXXXXX")
    MOUNT_SRC=$(findmnt -n -o SOURCE --target "$DATA_PARENT" | head -1)
    MOUNT_FS=$(findmnt -n -o FSTYPE --target "$DATA_PARENT" | head -1)
    MOUNT_OPTS=$(findmnt -n -o OPTIONS --target "$DATA_PARENT" | head -1)
    [[ $MOUNT_FS != tmpfs && $MOUNT_FS != ramfs ]] || die "$DATA_PARENT is on $MOUNT_FS"
    DISK=""
    if [[ $MOUNT_SRC == /dev/* ]]; then
        d=$(basename "$(readlink -f "$MOUNT_SRC")")
        if [[ -e /sys/class/block/$d/partition ]]; then
            d=$(basename "$(dirname "$(readlink -f "/sys/class/block/$d")")")
        fi
        grep -qw "$d" /proc/diskstats && DISK=$d
    fi
    ROTATIONAL="?" WRITE_CACHE="?"
    if [[ -n $DISK ]]; then
        ROTATIONAL=$(cat "/sys/block/$DISK/queue/rotational" 2>/dev/null || echo "?")
        WRITE_CACHE=$(cat "/sys/block/$DISK/queue/write_cache" 2>/dev/null || echo "?")
    fi
}

disk_stat() { # disk_stat -> "writes sectors_written flushes"
    if [[ -z $DISK ]]; then
        echo "0 0 0"
        return
    fi
    # fields: 8 writes completed, 10 sectors written, 19 flushes completed (kernel >= 5.5)
    awk -v d="$DISK" '$3 == d { print $8, $10, ($19 == "" ? 0 : $19) }' /proc/diskstats
}

# The disk's fsync cost, measured the way the queue pays it: write 4 KiB, fdatasync.
fsync_probe() { # -> "samples p50_ms p99_ms"
    python3 - "$DATA_PARENT/fsync-probe" <<'EOF'
import os, sys, time
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
ts = []
deadline = time.monotonic() + 10
for i in range(200):
    os.pwrite(fd, b"x" * 4096, (i % 64) * 4096)
    t = time.perf_counter()
    os.fdatasync(fd)
    ts.append(time.perf_counter() - t)
    if time.monotonic() > deadline:
        break
os.close(fd)
os.unlink(path)
ts.sort()
n = len(ts)
print(f"{n} {ts[n // 2] * 1e3:.2f} {ts[min(n - 1, int(n * 0.99))] * 1e3:.2f}")
EOF
}

# ------------------------------------------- load generators (CPU via `times`)
# A load generator's CPU time comes from the `times` builtin (CPU of this shell's reaped
# children); it must run in this shell, not in $(...), hence the files.
# times_ms [PREFIX]: CPU of this shell's reaped children between two `times` dumps, in ms (the
# dumps: $TMP/PREFIXtimes0 and $TMP/PREFIXtimes1; run_load's have no PREFIX)
# shellcheck disable=SC2120 # PREFIX is optional
times_ms() {
    awk 'FNR == 2 {
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
        if (FILENAME ~ /times0$/) t = -t
        sum += t
    } END { printf "%d\n", sum * 1000 }' "$TMP/${1:-}times0" "$TMP/${1:-}times1"
}

GEN_CPU_MS=0 LOAD_RC=0
# run_load LOGFILE CMD...: run CMD, its output in LOGFILE, in the background + wait (so that a
# signal stops the run at once). LOAD_RC: its exit status; GEN_CPU_MS: its CPU time in ms.
run_load() {
    local logf=$1
    shift
    times >"$TMP/times0"
    "$@" >"$logf" 2>&1 &
    LOAD_PIDS=($!)
    LOAD_RC=0
    wait "${LOAD_PIDS[0]}" || LOAD_RC=$?
    LOAD_PIDS=()
    times >"$TMP/times1"
    GEN_CPU_MS=$(times_ms)
}

check_wrk() { # check_wrk LOGFILE NAME: the wrk that run_load ran against NAME worked
    ((LOAD_RC == 0)) || {
        cat "$1" >&2
        die "wrk failed against $2 (exit $LOAD_RC)"
    }
    grep -q '^BENCH ' "$1" || {
        cat "$1" >&2
        die "wrk printed no BENCH line against $2"
    }
}
wrk_field() { grep '^BENCH ' "$1" | head -1 | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }

TAGN=0 TAG=""
next_tag() { # next_tag w|l -> TAG: 3 characters, unique in this session (not in $(...): it counts)
    local a=0123456789abcdefghijklmnopqrstuvwxyz
    TAGN=$((TAGN + 1))
    ((TAGN < 1296)) || die "too many runs in one session"
    TAG="$1${a:TAGN / 36:1}${a:TAGN % 36:1}"
}

run_loadgen() { # run_loadgen CPU LOGFILE ARGS...: bench/async's loadgen (foreground, bounded)
    local cpu=$1 logf=$2
    shift 2
    next_tag l
    run_load "$logf" taskset -c "$cpu" timeout -k 5 300 "$TOOLS/loadgen" --payload "$PAYLOAD" \
        --stripe-t "$STRIPE_T" --tag "$TAG" "$@"
    if ((LOAD_RC != 0)) || ! grep -q '^RESULT ' "$logf"; then
        cat "$logf" >&2
        die "loadgen failed (exit $LOAD_RC)"
    fi
}

jget() { # jget FILE PREFIX KEY... -> values from the last "PREFIX {json}" line of FILE
    python3 - "$@" <<'EOF'
import json, sys
path, prefix, keys = sys.argv[1], sys.argv[2] + " ", sys.argv[3:]
r = None
for line in open(path, encoding="utf-8"):
    if line.startswith(prefix):
        r = json.loads(line[len(prefix):])
if r is None:
    sys.exit(f"no {prefix.strip()} line in {path}")
out = []
for k in keys:
    v = r.get(k, "")
    out.append(json.dumps(v, separators=(",", ":")) if isinstance(v, (dict, list)) else str(v))
print(" ".join(out))
EOF
}

stripe_sig() { # stripe_sig FILE -> the Stripe v1 signature of FILE's bytes (STRIPE_SECRET, STRIPE_T)
    python3 -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode() + b"." + open(sys.argv[3],"rb").read(), hashlib.sha256).hexdigest())' "$STRIPE_SECRET" "$STRIPE_T" "$1"
}

# Deduplication: dup_event writes one signed event with a fixed id (DUP_BODY, DUP_SIG); dup_post
# PORT sends it to POST /hook there -> the status.
dup_event() {
    DUP_BODY=$TMP/dup.json
    sed 's/"id": "evt_[^"]*"/"id": "evt_dupcheck00000000000000000"/' "$PAYLOAD" >"$DUP_BODY"
    DUP_SIG=$(stripe_sig "$DUP_BODY")
}
dup_post() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X POST -H 'Content-Type: application/json' \
        -H "Stripe-Signature: t=$STRIPE_T,v1=$DUP_SIG" --data-binary "@$DUP_BODY" "http://$HOST:$1/hook" || true
}

# ------------------------------------------------------------------- the sink
# start_sink: bench/async's sink, the targets, on LOAD_CPU: SINK_PORT_0..3 and its control port.
start_sink() {
    PID_sink=""
    start_bg sink "$LOAD_CPU" "$TOOLS/sink" --control "$HOST:$SINK_CONTROL_PORT" \
        --listen "$HOST:$SINK_PORT_0" --listen "$HOST:$SINK_PORT_1" \
        --listen "$HOST:$SINK_PORT_2" --listen "$HOST:$SINK_PORT_3"
    wait_http sink "$PID_sink" "http://$HOST:$SINK_CONTROL_PORT/stats"
    log "sink (targets) ready on $HOST:$SINK_PORT_0..$SINK_PORT_3 (core $LOAD_CPU)"
}
sink_json() { curl -sf --max-time 2 "http://$HOST:$SINK_CONTROL_PORT/stats$1"; }
sink_unique() { # sink_unique PORT -> distinct event ids received on that port
    sink_json "" | python3 -c 'import json,sys; p=int(sys.argv[1]); print(next(t["unique"] for t in json.load(sys.stdin)["targets"] if t["port"]==p))' "$1"
}
sink_reset() { curl -sf --max-time 2 -X POST -o /dev/null "http://$HOST:$SINK_CONTROL_PORT/reset"; }

# ------------------------------------------------------------------ report
# hookrouter_rev [--untracked]: git HEAD of the repo, +dirty if src, Cargo.toml or Cargo.lock
# differ from it (with --untracked also if src has files git does not track yet).
# shellcheck disable=SC2120 # --untracked is optional
hookrouter_rev() {
    local rev
    rev=$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    if ! git -C "$REPO_ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
        [[ ${1:-} == --untracked && -n $(git -C "$REPO_ROOT" ls-files --others --exclude-standard -- src 2>/dev/null) ]]; then
        rev="$rev+dirty"
    fi
    echo "$rev"
}

meta_machine() { # the report's first lines: date, CPU model, number of CPUs, kernel, wrk version
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "ncpu=$NCPU"
    echo "kernel=$(uname -r)"
    echo "wrk=$(wrk -v 2>&1 | head -1 | awk '{ print $2 }')"
}

meta_vars() { # meta_vars VAR...: a report line "var=value" for each variable (in lower case)
    local v
    for v in "$@"; do echo "${v,,}=${!v}"; done
}

# finish REPORT_PY INVALID ARGS...: REPORT_PY ARGS... writes the Markdown report, shown on stdout
# and copied to OUT if set; exit with its status (2: some runs were INVALID, logged as INVALID).
finish() {
    local py=$1 invalid=$2 status=0
    shift 2
    python3 "$py" "$@" >"$TMP/report.md" || status=$?
    cat "$TMP/report.md"
    if [[ -n $OUT ]]; then
        cp "$TMP/report.md" "$OUT"
        log "report written to $OUT"
    fi
    case $status in
    0) ;;
    2) log "some runs were INVALID ($invalid): see the report" ;;
    *) die "$(basename "$py") failed ($status)" ;;
    esac
    exit "$status"
}
