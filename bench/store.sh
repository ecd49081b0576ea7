#!/usr/bin/env bash
# Embedded store benchmark for hookrouter's async mode: SQLite vs redb vs
# fjall vs a plain append-only log, behind the same group-commit writer.
# See bench/store/README.md. Markdown report on stdout (and in $OUT if set),
# progress on stderr.
#
#   bench/store.sh                                  # full run, ~4.5 min + first build (~4 min)
#   DURATION=1 RUNS=1 EVENTS=20000 bench/store.sh   # ~30 s smoke run
#   STORES=sqlite,fjall PRODUCERS=16 bench/store.sh
#
# Knobs (env): DURATION (s measured per workload-A point, default 3),
# WARMUP (s, 0.5), RUNS (3), EVENTS (workload B, 100000), PRODUCERS
# (1,16,128), STORES (sqlite,redb,fjall,log; also sqlite-bgckpt), DATA_DIR (parent folder for
# the databases; default /tmp unless /tmp is tmpfs, then bench/store/target),
# OUT (also write the report there), SKIP_BUILD=1.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proj="$here/store"
bin="$proj/target/release/store-bench"

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    echo "building store-bench (release)..." >&2
    cargo build --release --quiet --manifest-path "$proj/Cargo.toml" --target-dir "$proj/target" >&2
fi

# The databases must live on a real disk: fsync on tmpfs is free.
parent="${DATA_DIR:-/tmp}"
if [[ -z "${DATA_DIR:-}" && "$(stat -f -c %T /tmp)" == tmpfs ]]; then
    parent="$proj/target"
fi
mkdir -p "$parent"
fstype="$(stat -f -c %T "$parent")"
if [[ "$fstype" == tmpfs || "$fstype" == ramfs ]]; then
    echo "error: $parent is $fstype; set DATA_DIR to a folder on a real disk" >&2
    exit 1
fi
data="$(mktemp -d "$parent/store-bench.XXXXXX")"
trap 'rm -rf -- "$data"' EXIT

dev="$(df -P "$parent" | awk 'NR==2 {print $1}')"
blk="$(basename "$dev")"
rot="?"
[[ -r "/sys/block/$blk/queue/rotational" ]] && rot="$(cat "/sys/block/$blk/queue/rotational")"
report() {
    echo "## Embedded store benchmark"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%MZ); machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM, Linux $(uname -r)"
    echo "- data: $parent on $dev ($(findmnt -n -o FSTYPE,OPTIONS --target "$parent" 2>/dev/null | awk '{print $1", "$2}'), rotational=$rot)"
    echo "- crates: $(cd "$proj" && awk '/^name = "(rusqlite|libsqlite3-sys|redb|fjall|lsm-tree)"$/ {n=$3; getline; printf "%s %s, ", n, $3}' Cargo.lock | tr -d '"' | sed 's/, $//')"
    echo "- load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    "$bin" --dir "$data" \
        --duration "${DURATION:-3}" --warmup "${WARMUP:-0.5}" --runs "${RUNS:-3}" \
        --events "${EVENTS:-100000}" --producers "${PRODUCERS:-1,16,128}" \
        --stores "${STORES:-sqlite,redb,fjall,log}"
    echo
    echo "Load average after: $(cut -d' ' -f1-3 /proc/loadavg) (2 cores: above ~1 means something else ran too)."
}
if [[ -n "${OUT:-}" ]]; then
    report | tee "$OUT"
else
    report
fi
