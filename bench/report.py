#!/usr/bin/env python3
"""Turn the raw measurements of bench/sync.sh into a Markdown report.

Usage: report.py META RESULTS_TSV  (both written by sync.sh)

Exit status: 0 if every run was valid, 2 if any run was invalid (errors,
requests the upstream never saw, or a fixed-rate run that missed its rate).
Invalid runs are shown but left out of the medians.
"""

import csv
import sys

# The helpers shared with the other reports: report_common.py (no __pycache__ left in bench/).
sys.dont_write_bytecode = True
from report_common import fmt, median, read_meta  # noqa: E402

NAMES = {
    "hookrouter": "hookrouter (sync)",
    "nginx": "nginx",
    "haproxy": "HAProxy",
}
SATURATED = 95.0  # % busy of the proxy core below which a throughput run was load-limited
TARGETS = {"nginx": 1.15, "haproxy": 1.0}  # hookrouter req/s >= x * other
RATE_TOLERANCE = 0.95  # a fixed-rate run must achieve >= 95 % of RATE


def read_runs(path, meta):
    clk_tck = int(meta["clk_tck"])
    rate = int(meta["rate"])
    noise_max = float(meta.get("noise_max", "10"))
    runs = []
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            r = {k: (row[k] if k in ("phase", "proxy") else int(row[k])) for k in row}
            r["rps"] = r["requests"] * 1e6 / r["duration_us"] if r["duration_us"] else 0.0
            r["errors"] = sum(
                r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status")
            )
            r["cpu_us_per_req"] = (
                r["cpu_ticks"] * 1e6 / clk_tck / r["requests"] if r["requests"] else float("nan")
            )
            r["proxy_busy_pct"] = 100.0 * r["proxy_busy"] / r["proxy_total"] if r["proxy_total"] else 0.0
            r["load_busy_pct"] = 100.0 * r["load_busy"] / r["load_total"] if r["load_total"] else 0.0
            # CPU time on each core not spent by the processes that belong there
            # (proxy on the proxy core; wrk + upstream on the load core)
            r["noise_pct"] = (
                100.0 * max(0, r["proxy_busy"] - r["cpu_ticks"]) / r["proxy_total"]
                if r["proxy_total"]
                else 0.0
            )
            own_load = r["upstream_ticks"] + r["wrk_cpu_ms"] * clk_tck / 1000.0
            r["load_noise_pct"] = (
                100.0 * max(0.0, r["load_busy"] - own_load) / r["load_total"]
                if r["load_total"]
                else 0.0
            )
            why = []
            if r["requests"] == 0:
                why.append("no requests")
            if r["errors"]:
                why.append(f"{r['errors']} errors")
            if r["upstream_requests"] < r["requests"]:
                why.append(f"upstream saw only {r['upstream_requests']}")
            if r["noise_pct"] > noise_max:
                why.append(f"{r['noise_pct']:.0f} % of the proxy core used by other processes")
            if r["load_noise_pct"] > noise_max:
                why.append(f"{r['load_noise_pct']:.0f} % of the load core used by other processes")
            if r["phase"] == "rate" and r["rps"] < RATE_TOLERANCE * rate:
                why.append(f"rate {r['rps']:.0f} < {RATE_TOLERANCE:.0%} of {rate}")
            r["invalid"] = "; ".join(why)
            runs.append(r)
    return runs


def main():
    meta = read_meta(sys.argv[1])
    runs = read_runs(sys.argv[2], meta)
    proxies = meta["proxies"].split()
    rate = int(meta["rate"])

    summary = {}
    for p in proxies:
        tp = [r for r in runs if r["proxy"] == p and r["phase"] == "throughput"]
        rt = [r for r in runs if r["proxy"] == p and r["phase"] == "rate"]
        tp_ok = [r for r in tp if not r["invalid"]]
        rt_ok = [r for r in rt if not r["invalid"]]
        summary[p] = {
            "rps": median(r["rps"] for r in tp_ok),
            "cpu": median(r["cpu_us_per_req"] for r in tp_ok),
            "proxy_busy": median(r["proxy_busy_pct"] for r in tp_ok),
            "load_busy": median(r["load_busy_pct"] for r in tp_ok),
            "p99": median(r["lat_p99_us"] / 1000 for r in rt_ok),
            "valid": f"{len(tp_ok)}/{len(tp)} + {len(rt_ok)}/{len(rt)}",
        }

    def ratio(p, other):
        a, b = summary[p]["rps"], summary.get(other, {}).get("rps")
        return None if a is None or not b else a / b

    out = []
    w = out.append
    w("## hookrouter sync mode vs nginx vs HAProxy")
    w("")
    w(
        f"{meta['date']} · {meta['cpu']}, {meta['ncpu']} cores, Linux {meta['kernel']} · "
        f"nginx {meta['nginx']}, HAProxy {meta['haproxy']}, wrk {meta['wrk']}"
        + (f", hookrouter {meta['hookrouter']}" if meta.get("hookrouter") else "")
    )
    w("")
    w(
        f"Load generator (wrk, 1 thread) and upstream (nginx, 1 worker) on core {meta['load_cpu']}; "
        f"the proxy under test alone on core {meta['proxy_cpu']}, one worker/thread. "
        f"POST /hook with a {meta['body_bytes']}-byte JSON body. "
        f"Throughput: {meta['rounds']} rounds × {meta['duration']} s, {meta['connections']} connections, "
        f"closed loop, proxies interleaved with the order rotated each round. "
        f"p99: {meta['rate_rounds']} rounds × {meta['rate_duration']} s at {rate} req/s "
        f"({meta['rate_connections']} connections). Medians over valid runs."
    )
    w("")
    w(
        f"Background CPU load just before measuring: core {meta['load_cpu']} {meta['bg_load']} %, "
        f"core {meta['proxy_cpu']} {meta['bg_proxy']} %."
    )
    w("")
    w(
        f"| proxy | median req/s | vs nginx | vs HAProxy | p99 @ {rate} req/s (ms) "
        f"| CPU µs/request | proxy core busy | load core busy | valid runs (tput + rate) |"
    )
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in proxies:
        s = summary[p]
        w(
            f"| {NAMES[p]} | {fmt(s['rps'], ',.0f')} | {fmt(ratio(p, 'nginx'), '.2f', '×')} "
            f"| {fmt(ratio(p, 'haproxy'), '.2f', '×')} | {fmt(s['p99'], '.2f')} | {fmt(s['cpu'], '.1f')} "
            f"| {fmt(s['proxy_busy'], '.0f', ' %')} | {fmt(s['load_busy'], '.0f', ' %')} | {s['valid']} |"
        )
    w("")

    invalid = [r for r in runs if r["invalid"]]
    if invalid:
        w(
            f"**{len(invalid)} run(s) INVALID** (errors, requests the upstream did not see, "
            f"fixed rate not reached, or other processes on the cores): left out of the medians, see the raw tables. "
            f"This result should not be quoted as is."
        )
        w("")

    busy = [NAMES[p] for p in proxies if summary[p]["proxy_busy"] is not None
            and summary[p]["proxy_busy"] < SATURATED]
    if busy:
        w(
            f"**Caution:** the proxy core was below {SATURATED:.0f} % busy for {', '.join(busy)}: "
            f"the load core, not the proxy, limited {'it' if len(busy) == 1 else 'them'}, so "
            f"{'its' if len(busy) == 1 else 'their'} req/s is a lower bound (CPU µs/request still holds)."
        )
        w("")

    if "hookrouter" in proxies:
        lines = []
        for other, target in TARGETS.items():
            if other not in proxies:
                continue
            got = ratio("hookrouter", other)
            verdict = "n/a" if got is None else ("met" if got >= target else "NOT met")
            lines.append(
                f"- hookrouter ≥ {target:.2f}× {NAMES[other]} req/s: "
                f"{fmt(got, '.2f', '×')} — **{verdict}**"
            )
        if lines:
            w("Targets:")
            w("")
            out.extend(lines)
            w("")

    w("### Throughput runs (closed loop)")
    w("")
    w(
        "| round | # | proxy | req/s | CPU µs/req | proxy core busy | load core busy "
        "| others on proxy / load core | p99 (ms) | errors | upstream saw | valid |"
    )
    w("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        if r["phase"] != "throughput":
            continue
        w(
            f"| {r['round']} | {r['slot']} | {NAMES[r['proxy']]} | {r['rps']:,.0f} "
            f"| {r['cpu_us_per_req']:.1f} | {r['proxy_busy_pct']:.0f} % | {r['load_busy_pct']:.0f} % "
            f"| {r['noise_pct']:.0f} % / {r['load_noise_pct']:.0f} % | {r['lat_p99_us'] / 1000:.2f} | {r['errors']} | {r['upstream_requests']:,} "
            f"| {r['invalid'] or 'yes'} |"
        )
    w("")

    rate_runs = [r for r in runs if r["phase"] == "rate"]
    if rate_runs:
        w(f"### Fixed-rate runs ({rate} req/s offered)")
        w("")
        w(
            "| round | # | proxy | achieved req/s | p50 (ms) | p99 (ms) | p99.9 (ms) "
            "| CPU µs/req | proxy core busy | others on proxy / load core | errors | valid |"
        )
        w("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in rate_runs:
            w(
                f"| {r['round']} | {r['slot']} | {NAMES[r['proxy']]} | {r['rps']:,.0f} "
                f"| {r['lat_p50_us'] / 1000:.2f} | {r['lat_p99_us'] / 1000:.2f} "
                f"| {r['lat_p999_us'] / 1000:.2f} | {r['cpu_us_per_req']:.1f} "
                f"| {r['proxy_busy_pct']:.0f} % | {r['noise_pct']:.0f} % / {r['load_noise_pct']:.0f} % "
                f"| {r['errors']} "
                f"| {r['invalid'] or 'yes'} |"
            )
        w("")

    print("\n".join(out))
    return 2 if any(r["invalid"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
