#!/usr/bin/env bash
# Builds every fuzz target and runs each one briefly on its seed corpus: what .ci/run does.
#
#   fuzz/smoke.sh                     # every target, FUZZ_SECONDS (8) each, FUZZ_JOBS (2) at once
#   FUZZ_SECONDS=60 fuzz/smoke.sh     # longer
#   fuzz/smoke.sh verify_stripe path_check
#
# Each target runs on a copy of fuzz/corpus/<target>/ in a temporary folder, so the inputs
# libFuzzer finds never land in the repository (see README.md for keeping one). A crash, a
# panic, an input slower than 10 s or a run over 1 GiB of memory fails the script; the input
# is kept in fuzz/artifacts/<target>/ and the command to replay it is printed.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-8}"
jobs="${FUZZ_JOBS:-2}"
# cargo-fuzz needs nightly compiler features: RUSTC_BOOTSTRAP lets the stable toolchain give them.
export RUSTC_BOOTSTRAP=1

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
# cargo-fuzz's default build: optimised, with debug assertions and overflow checks. (A
# `--dev` build is quicker to make but runs 30 to 90 times fewer inputs per second.)
cargo fuzz build

if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

missing=()
for t in "${targets[@]}"; do
  [ -n "$(ls -A "corpus/$t" 2>/dev/null)" ] || missing+=("$t")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz: no seed corpus for ${missing[*]}: add seeds to fuzz/seeds.py and run it" >&2
  exit 1
fi

run_one() {
  local t=$1
  cp -r "corpus/$t" "$work/$t"
  if cargo fuzz run "$t" "$work/$t" -- \
      -max_total_time="$seconds" -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
      >"$work/$t.log" 2>&1; then
    echo ok >"$work/$t.status"
  else
    echo failed >"$work/$t.status"
  fi
}

started=$SECONDS
running=0
for t in "${targets[@]}"; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait

failed=()
for t in "${targets[@]}"; do
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log" | tail -n 1)
  if [ "$(cat "$work/$t.status" 2>/dev/null)" = ok ]; then
    printf 'fuzz: %-28s ok, %s runs in %ss\n' "$t" "${runs:-?}" "$seconds"
  else
    failed+=("$t")
    echo "fuzz: $t FAILED; its output:" >&2
    # The panic or sanitizer report and how libFuzzer ended, without stack frames.
    grep -v -E '^ *#[0-9]+ 0x|^ +[0-9]+: |^ +at |^INFO: ' "$work/$t.log" | head -n 40 >&2 || true
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$work/$t.log" | tail -n 1)
    if [ -n "$artifact" ]; then
      echo "fuzz: replay with: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run $t $artifact)" >&2
    fi
  fi
done
echo "fuzz: ${#targets[@]} targets in $((SECONDS - started)) s, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
