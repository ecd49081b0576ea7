#!/usr/bin/env python3
"""Turn the raw measurements of bench/async.sh into a Markdown report.

Usage: report.py META TPUT_TSV RATE_TSV FANOUT_TSV  (all written by async.sh)

Exit status: 0 if every run was valid, 2 if any run was invalid (errors, a non-202 answer from
hookrouter, accepted events that never reached the target, or other processes on the cores).
Invalid runs are shown but left out of the medians.
"""

import json
import os
import sys

# The helpers shared with the other reports: bench/report_common.py (no __pycache__ left in bench/).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from report_common import fmt, median, ms, noise_why, pct, read_meta, read_tsv  # noqa: E402

NAMES = {"hookrouter": "hookrouter (async)", "webhook": "adnanh/webhook"}
INGEST_TARGET = 2.5  # hookrouter req/s >= 2.5 x webhook
P99_TARGET_MS = 5.0  # ack p99 at RATE
RATE_TOLERANCE = 0.95
SATURATED = 95.0  # % busy of the server core below which a closed-loop run was load-limited


def threads_split(s):
    """'hookrouter=120,queue-writer=80' -> 'hookrouter 60 %, queue-writer 40 %'"""
    if not s or s == "-":
        return "-"
    parts = dict((k, int(v)) for k, v in (p.split("=") for p in s.split(",")))
    total = sum(parts.values())
    return ", ".join(f"{k} {pct(v, total):.0f} %" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]))


def noise(r, clk_tck, gen_cpu_ms):
    """% of each core used by processes other than the ones that belong there: the core's
    user + nice + system time minus our processes' (interrupts, softirq and steal are left out:
    loopback networking is mostly softirq and belongs to no process)."""
    server_total, load_total = int(r["server_total"]), int(r["load_total"])
    srv = pct(max(0, int(r["server_task"]) - int(r["server_ticks"])), server_total)
    own_load = int(r["sink_ticks"]) + gen_cpu_ms * clk_tck / 1000.0
    load = pct(max(0.0, int(r["load_task"]) - own_load), load_total)
    return srv, load


def main():
    meta = read_meta(sys.argv[1])
    tput = read_tsv(sys.argv[2])
    rate_rows = read_tsv(sys.argv[3])
    fan_rows = read_tsv(sys.argv[4])
    clk = int(meta["clk_tck"])
    noise_max = float(meta["noise_max"])
    peers = meta["peers"].split()
    rate = int(meta["rate"])
    any_invalid = False
    out = []
    w = out.append

    # ------------------------------------------------------------ phase 1
    for r in tput:
        for k in list(r):
            if k not in ("peer", "threads"):
                r[k] = int(r[k])
        dur = r["duration_us"] / 1e6
        r["rps"] = r["requests"] / dur if dur else 0.0
        r["cpu_us"] = r["server_ticks"] * 1e6 / clk / r["requests"] if r["requests"] else None
        r["server_busy_pct"] = pct(r["server_busy"], r["server_total"])
        r["load_busy_pct"] = pct(r["load_busy"], r["load_total"])
        r["noise_server"], r["noise_load"] = noise(r, clk, r["gen_cpu_ms"])
        r["flushes_s"] = r["disk_flushes"] / dur if dur else 0.0
        r["writes_s"] = r["disk_writes"] / dur if dur else 0.0
        r["mb_s"] = r["disk_sectors"] * 512 / 1e6 / dur if dur else 0.0
        why = []
        errs = sum(r[k] for k in ("err_connect", "err_read", "err_write", "err_timeout", "err_status"))
        if r["requests"] == 0:
            why.append("no requests")
        if errs:
            why.append(f"{errs} errors/non-2xx")
        if r["peer"] == "hookrouter" and r["delivered_after"] < r["requests"]:
            why.append(f"only {r['delivered_after']} of {r['requests']} accepted events delivered")
        why.extend(noise_why(r, noise_max))
        r["invalid"] = "; ".join(why)
        any_invalid |= bool(why)

    summary = {}
    for p in peers:
        runs = [r for r in tput if r["peer"] == p]
        ok = [r for r in runs if not r["invalid"]]
        summary[p] = {
            "rps": median(r["rps"] for r in ok),
            "cpu": median(r["cpu_us"] for r in ok),
            "server_busy": median(r["server_busy_pct"] for r in ok),
            "load_busy": median(r["load_busy_pct"] for r in ok),
            "valid": f"{len(ok)}/{len(runs)}",
            "ok": ok,
        }
    hr = summary.get("hookrouter", {})
    wh = summary.get("webhook", {})
    ratio = hr["rps"] / wh["rps"] if hr.get("rps") and wh.get("rps") else None

    # ------------------------------------------------------------ phase 2
    for r in rate_rows:
        res = json.loads(r["result"])
        r["res"] = res
        for k in ("server_ticks", "sink_ticks", "gen_cpu_ms", "load_busy", "load_total", "server_busy",
                  "server_total", "disk_writes", "disk_sectors", "disk_flushes", "delivered_after",
                  "load_task", "server_task"):
            r[k] = int(r[k])
        r["noise_server"], r["noise_load"] = noise(r, clk, r["gen_cpu_ms"])
        done = res.get("completed", 0)
        secs = float(meta["rate_duration"])
        r["cpu_us"] = r["server_ticks"] * 1e6 / clk / done if done else None
        r["flushes_s"] = r["disk_flushes"] / secs
        why = []
        # a timeout (no answer within 2 s) is a result here, not a broken run: shown, not invalid
        errs = sum(res.get(k, 0) for k in ("err_connect", "err_io"))
        # oha abandons its in-flight requests when -z is up ("aborted due to deadline"): not errors
        if isinstance(res.get("errors"), dict):
            errs += sum(v for k, v in res["errors"].items() if "deadline" not in k)
        non202 = sum(v for k, v in res.get("statuses", {}).items() if k != "202")
        if done == 0:
            why.append("no requests")
        if errs:
            why.append(f"{errs} errors")
        if non202:
            why.append(f"{non202} answers other than 202")
        if r["delivered_after"] < res.get("ok", 0):
            why.append(f"only {r['delivered_after']} of {res.get('ok', 0)} accepted events delivered")
        why.extend(noise_why(r, noise_max))
        r["invalid"] = "; ".join(why)
        r["missed"] = res.get("achieved_rate", 0) < RATE_TOLERANCE * rate
        any_invalid |= bool(why)
    lg_ok = [r for r in rate_rows if r["tool"] == "loadgen" and not r["invalid"]]
    lat = {k: median(r["res"][k] / 1000 for r in lg_ok) for k in ("lat_p50_us", "lat_p99_us", "lat_p999_us", "lat_max_us")}
    lat_ach = median(r["res"]["achieved_rate"] for r in lg_ok)

    # ------------------------------------------------------------ phase 3
    fan_summaries = []
    for r in fan_rows:
        res = json.loads(r["result"])
        for k in ("server_ticks", "sink_ticks", "gen_cpu_ms", "load_busy", "load_total", "server_busy",
                  "server_total", "disk_writes", "disk_sectors", "disk_flushes", "load_task", "server_task"):
            r[k] = int(r[k])
        r["noise_server"], r["noise_load"] = noise(r, clk, r["gen_cpu_ms"])
        samples = read_tsv(r["samples"])
        ports = [k[5:] for k in samples[0] if k.startswith("recv_")] if samples else []
        rows = [{k: float(v) for k, v in s.items()} for s in samples]
        done_rows = [s for s in rows if s["loadgen_done"] == 1]
        t_end = done_rows[0]["t"] if done_rows else None
        during = [s for s in rows if s["loadgen_done"] == 0]
        last_during = during[-1] if during else None
        per_target_load = []
        for p in ports:
            if last_during and last_during["t"] > 0 and last_during[f"recv_{p}"] >= 0:
                per_target_load.append(last_during[f"recv_{p}"] / last_during["t"])
        use_pending = any(s["pending"] >= 0 for s in rows)
        # computed backlog: the accepted count is read from the load generator up to 0.1 s late,
        # so it can dip below zero while hookrouter keeps up; shown as 0
        for s in rows:
            s["backlog"] = max(0.0, s["backlog"])
        # backlog: the queue's pending deliveries when the admin API answers (-1: no answer that
        # second), else computed; "back to 0": every accepted event has reached every target
        backlogs = [s["pending"] if use_pending else s["backlog"] for s in rows]
        backlogs = [b for b in backlogs if b >= 0]
        max_backlog = max(backlogs) if backlogs else None
        backlog_at_end = (done_rows[0]["pending"] if use_pending else done_rows[0]["backlog"]) if done_rows else None
        if backlog_at_end is not None and backlog_at_end < 0:
            backlog_at_end = None
        zero = [s for s in done_rows if s["backlog"] <= 0 and min(s[f"recv_{p}"] for p in ports) >= 0]
        left = rows[-1]["pending"] if use_pending and rows and rows[-1]["pending"] >= 0 else None
        drain = (zero[0]["t"] - t_end) if zero and t_end is not None else None
        final = rows[-1] if rows else None
        total_ok = res.get("ok", 0)
        delivered_all = final is not None and all(final[f"recv_{p}"] >= total_ok for p in ports)
        t_all = zero[0]["t"] if zero else None
        e2e = json.loads(r["e2e"]) if r["e2e"] else {"targets": []}
        e2e_t = [t for t in e2e["targets"] if str(t["port"]) in ports]
        dup = sum(t["requests"] - t["unique"] for t in e2e_t)
        why = []
        errs = sum(res.get(k, 0) for k in ("err_connect", "err_io"))
        non202 = sum(v for k, v in res.get("statuses", {}).items() if k != "202")
        if errs:
            why.append(f"{errs} errors")
        if non202:
            why.append(f"{non202} answers other than 202")
        why.extend(noise_why(r, noise_max))
        invalid = "; ".join(why)
        any_invalid |= bool(why)
        fan_summaries.append({
            "round": r["round"], "res": res, "ports": ports, "rows": rows, "per_target_load": per_target_load,
            "max_backlog": max_backlog, "backlog_at_end": backlog_at_end, "drain": drain,
            "delivered_all": delivered_all, "t_all": t_all, "use_pending": use_pending, "e2e": e2e_t,
            "dup": dup, "invalid": invalid, "threads": r["threads"], "left": left,
            "cpu_us": r["server_ticks"] * 1e6 / clk / total_ok if total_ok else None,
            "server_busy_pct": pct(r["server_busy"], r["server_total"]),
            "flushes_s": r["disk_flushes"] / float(meta["fanout_duration"]),
        })
    fan_ok = [f for f in fan_summaries if not f["invalid"]]

    # ------------------------------------------------------------ summary
    w("## hookrouter async mode")
    w("")
    w(
        f"{meta['date']} · {meta['cpu']}, {meta['ncpu']} cores, Linux {meta['kernel']} · hookrouter {meta['hookrouter']}, "
        f"webhook {meta['webhook']}, wrk {meta['wrk']}" + (f", oha {meta['oha']}" if meta.get("oha") else "")
    )
    w("")
    fs_n, fs_p50, fs_p99 = (meta.get("fsync", "0 0 0").split() + ["?", "?", "?"])[:3]
    w(
        f"Queue on {meta['queue_dev']} ({meta['queue_fs']}, rotational={meta['rotational']}, "
        f"write cache: {meta['write_cache']}); 4 KiB write + fdatasync there: p50 {fs_p50} ms, p99 {fs_p99} ms "
        f"({fs_n} samples). "
        f"Load generator and targets on core {meta['load_cpu']}, the server under test alone on core "
        f"{meta['server_cpu']}. Background load before measuring: core {meta['load_cpu']} {meta['bg_load']} %, "
        f"core {meta['server_cpu']} {meta['bg_server']} %."
    )
    w("")
    sizes = [x.split(":") for x in meta.get("queue_sizes", "").split(",") if x]
    if sizes:
        w(
            "Queue size " + "; ".join(
                f"{ph}: {int(b) / 1e9:.2f} GB" + (f", {int(ev):,} events" if int(ev) >= 0 else "") for ph, b, ev in sizes)
            + (" (phases 2 and 3 each start hookrouter on an empty queue)." if meta.get("fresh_queue") == "1" else
               " (one queue for the whole session).")
        )
        w("")
    rows = []
    if ratio is not None:
        rows.append((
            "1. ingest, req/s (closed loop)",
            f"hookrouter {fmt(hr['rps'], ',.0f')} / webhook {fmt(wh['rps'], ',.0f')} = **{ratio:.2f}×**",
            f"≥ {INGEST_TARGET}×", "met" if ratio >= INGEST_TARGET else "**not met**"))
    elif hr.get("rps"):
        rows.append(("1. ingest, req/s (closed loop)", f"hookrouter {fmt(hr['rps'], ',.0f')}", f"≥ {INGEST_TARGET}× webhook", "n/a"))
    if lat["lat_p99_us"] is not None:
        rows.append((
            f"2. ack latency at {rate:,} req/s",
            f"p50 {ms(lat['lat_p50_us'] * 1000)} ms, **p99 {ms(lat['lat_p99_us'] * 1000)} ms**, "
            f"p99.9 {ms(lat['lat_p999_us'] * 1000)} ms ({lat_ach:,.0f} req/s achieved; best run: p99 "
            f"{ms(min(r['res']['lat_p99_us'] for r in lg_ok))} ms)",
            f"p99 ≤ {P99_TARGET_MS:g} ms", "met" if lat["lat_p99_us"] <= P99_TARGET_MS else "**not met**"))
    if fan_ok:
        per = median(median(f["per_target_load"]) for f in fan_ok if f["per_target_load"])
        mb = median(f["max_backlog"] for f in fan_ok)
        drains = [f["drain"] for f in fan_ok]
        dmed = median(drains) if all(d is not None for d in drains) else None
        ok_drain = all(d is not None and d <= int(meta["drain_target"]) for d in drains)
        ach = median(f["res"].get("achieved_rate", 0) for f in fan_ok)
        ack99 = median(f["res"]["lat_p99_us"] for f in fan_ok)
        rows.append((
            f"3. fan-out to 3 targets at {int(meta['fanout_rate']):,} events/s",
            f"accepted {fmt(ach, ',.0f')} events/s (ack p99 {ms(ack99)} ms); delivered {fmt(per, ',.0f')} events/s "
            f"per target during the load; max backlog {fmt(mb, ',.0f')} deliveries; all delivered "
            + (f"{dmed:.0f} s after the load stopped" if dmed is not None else f"not within {meta['drain_max']} s"),
            f"{int(meta['fanout_rate']):,}/s per target, backlog 0 within {meta['drain_target']} s",
            "met" if per is not None and per >= RATE_TOLERANCE * int(meta["fanout_rate"]) and ok_drain else "**not met**"))
    w("| | result (medians) | target | |")
    w("|---|---|---|---|")
    for row in rows:
        w("| " + " | ".join(row) + " |")
    w("")

    # ------------------------------------------------------------ 1. ingest
    w("### 1. Ingest: hookrouter async vs adnanh/webhook")
    w("")
    w(
        f"wrk -t1 -c{meta['connections']}, {meta['rounds']} rounds × {meta['duration']} s per server, order rotated "
        f"each round; every request a fresh {meta['body_bytes']}-byte body (new event id) with its own signature "
        f"(Stripe for hookrouter, `X-Hub-Signature-256` for webhook). hookrouter verifies, stores (fsync), answers "
        f"202 and delivers to one target; webhook verifies and answers 200 (hook with no command)."
    )
    w("")
    w("| server | median req/s | vs webhook | CPU µs/request | server core busy | load core busy | valid runs |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    for p in peers:
        s = summary[p]
        rv = s["rps"] / wh["rps"] if s.get("rps") and wh.get("rps") else None
        w(f"| {NAMES[p]} | {fmt(s['rps'], ',.0f')} | {fmt(rv, '.2f', '×')} | {fmt(s['cpu'], '.1f')} "
          f"| {fmt(s['server_busy'], '.0f', ' %')} | {fmt(s['load_busy'], '.0f', ' %')} | {s['valid']} |")
    w("")
    if hr.get("ok"):
        ok = hr["ok"]
        w(
            "hookrouter during those runs (medians): "
            f"{median(pct(r['delivered_in_run'], r['requests']) for r in ok):.0f} % of the accepted events were "
            f"delivered before the run ended, the rest within {median(r['drain_ms'] for r in ok) / 1000:.1f} s after; "
            f"disk: {median(r['flushes_s'] for r in ok):,.0f} flushes/s, {median(r['writes_s'] for r in ok):,.0f} "
            f"writes/s, {median(r['mb_s'] for r in ok):.1f} MB/s; CPU by thread: "
            f"{threads_split(ok[len(ok) // 2]['threads'])}."
        )
        w("")
    load_limited = [p for p in peers if summary[p]["server_busy"] is not None and summary[p]["server_busy"] < SATURATED]
    if load_limited:
        w(
            f"Server core below {SATURATED:.0f} % busy for {', '.join(load_limited)}: not CPU-bound there (waiting on "
            f"the disk or limited by the load core), so req/s is what it sustains here, not a CPU limit."
        )
        w("")

    # ------------------------------------------------------------ 2. latency
    if rate_rows:
        w(f"### 2. Ack latency at {rate:,} req/s")
        w("")
        w(
            f"bench/async's loadgen: {meta['rate_rounds']} runs × {meta['rate_duration']} s, {meta['rate_connections']} "
            f"connections, request i scheduled at i/{rate} s, latency from the scheduled time to the end of the "
            f"answer (no coordinated omission), fresh signed body per request, all answers must be 202. "
            f"Medians over runs; `oha` (if present) is a cross-check with a fixed body on a route without "
            f"deduplication."
        )
        w("")
        w("| run | tool | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | service p99 ms | timeouts (2 s) | CPU µs/req | disk flushes/s | answers | valid |")
        w("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
        for r in rate_rows:
            res = r["res"]
            sv = res.get("service_p99_us")
            w(
                f"| {r['round']} | {r['tool']} | {res.get('achieved_rate', 0):,.0f}{' (rate missed)' if r['missed'] else ''} "
                f"| {ms(res['lat_p50_us'])} | {ms(res.get('lat_p90_us', 0))} | {ms(res['lat_p99_us'])} "
                f"| {ms(res['lat_p999_us'])} | {ms(res['lat_max_us'])} "
                f"| {ms(sv) if sv is not None else 'n/a'} | {res.get('err_timeout', '-')} "
                f"| {fmt(r['cpu_us'], '.1f')} | {r['flushes_s']:,.0f} "
                f"| {json.dumps(res.get('statuses', {}), separators=(',', ':'))} | {r['invalid'] or 'yes'} |"
            )
        w("")
        if lg_ok:
            w(f"CPU by thread (median run): {threads_split(lg_ok[len(lg_ok) // 2]['threads'])}.")
            w("")

    # ------------------------------------------------------------ 3. fan-out
    if fan_summaries:
        w(f"### 3. End to end: one route, 3 targets, {int(meta['fanout_rate']):,} events/s for {meta['fanout_duration']} s")
        w("")
        src = "`pending` from `GET /api/v1/queue`" if any(f["use_pending"] for f in fan_summaries) else \
            "3 × events accepted − distinct events received by the targets (no admin API in this build)"
        w(
            f"Sampled once a second: distinct events received by each target and the backlog ({src}). "
            f"Delivered/s per target is over the load window; 'back to 0' is measured from the first sample after "
            f"the load generator finished (1 s resolution). End-to-end latency: from the event's scheduled send "
            f"to its arrival at the target."
        )
        w("")
        w("| run | accepted (202) | offered → achieved events/s | ack p50 / p99 ms | timeouts (2 s) | delivered/s per target (during load) | max backlog | backlog at load end | all delivered after | e2e p50 / p99 ms (per target) | dup deliveries | CPU µs/event | server busy | valid |")
        w("|---|---:|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|---|")
        for f in fan_summaries:
            parts = [f"{ms(t['e2e_p50_us'])} / {ms(t['e2e_p99_us'])}" for t in f["e2e"]]
            e2e = (parts[0] + " (all 3)" if len(set(parts)) == 1 else ", ".join(parts)) if parts else "n/a"
            drain = f"{f['drain']:.0f} s" if f["drain"] is not None else f"> {meta['drain_max']} s"
            res = f["res"]
            w(
                f"| {f['round']} | {res.get('ok', 0):,} | {int(meta['fanout_rate']):,} → {res.get('achieved_rate', 0):,.0f} "
                f"| {ms(res['lat_p50_us'])} / {ms(res['lat_p99_us'])} | {res.get('err_timeout', 0)} "
                f"| {' / '.join(format(v, ',.0f') for v in f['per_target_load'])} | {fmt(f['max_backlog'], ',.0f')} "
                f"| {fmt(f['backlog_at_end'], ',.0f')} | {drain} | {e2e} "
                f"| {f['dup']} | {fmt(f['cpu_us'], '.1f')} | {f['server_busy_pct']:.0f} % | {f['invalid'] or 'yes'} |"
            )
        w("")
        lefts = [f["left"] for f in fan_summaries if f["left"]]
        if lefts:
            w(
                f"Pending deliveries left when each run's sampling stopped: {', '.join(str(int(x)) for x in lefts)}. "
                f"They belong to the requests that timed out on the client side (3 deliveries each): hookrouter "
                f"stored those events but this build does not attempt them until it restarts."
            )
            w("")
        pick = sorted(fan_summaries, key=lambda f: f["max_backlog"] or 0)[len(fan_summaries) // 2]
        w(f"CPU by thread (run {pick['round']}): {threads_split(pick['threads'])}; {pick['flushes_s']:,.0f} disk flushes/s.")
        w("")
        w(f"<details><summary>Run {pick['round']}, second by second{' (every 5th second during the load)' if len([x for x in pick['rows'] if not x['loadgen_done']]) > 40 else ''}</summary>")
        w("")
        w("| t (s) | sent (202) | " + " | ".join(f"received :{p}" for p in pick["ports"]) + " | backlog |")
        w("|---:|---:|" + "---:|" * len(pick["ports"]) + "---:|")
        during = [s for s in pick["rows"] if not s["loadgen_done"]]
        after = [s for s in pick["rows"] if s["loadgen_done"]]
        step = 1 if len(during) <= 40 else 5
        shown = during[::step] + after[:6] + (after[-1:] if len(after) > 6 else [])
        for s in shown:
            b = s["pending"] if pick["use_pending"] else s["backlog"]
            w(f"| {s['t']:.0f}{' (load over)' if s['loadgen_done'] else ''} | {s['sent_ok']:,.0f} | "
              + " | ".join(f"{s[f'recv_{p}']:,.0f}" for p in pick["ports"]) + f" | {'–' if b < 0 else format(b, ',.0f')} |")
        w("")
        w("</details>")
        w("")

    # ------------------------------------------------------------ details
    w("### Checks and raw runs")
    w("")
    w(
        f"- Targets alone (sink, one thread on core {meta['load_cpu']}): {float(meta['selftest_achieved']):,.0f} req/s "
        f"achieved of {int(meta['selftest_rate']):,} offered for {meta['selftest_duration']} s, "
        f"{meta['selftest_ok']}/{meta['selftest_done']} answered 200, p99 {int(meta['selftest_p99_us']) / 1000:.2f} ms, "
        f"{meta['selftest_cpu_us']} µs CPU per request ({meta['selftest_busy']} % of its core)."
    )
    if meta.get("admin_api") == "1":
        stuck = int(meta.get("stuck", "0") or 0)
        w(
            f"- Deliveries still pending at the end, not moving: {stuck}"
            + (" (the last events of wrk or oha runs, whose requests the tool abandoned when its time was up: stored, "
               "but not attempted by this build until a restart)." if stuck else ".")
        )
    first, second = (meta.get("dedup", "? ?").split() + ["?", "?"])[:2]
    w(f"- Deduplication: the same signed event sent twice to hookrouter got {first}, then {second}; hence a fresh event id per request.")
    for p in peers:
        if meta.get(f"preflight_{p}"):
            w(f"- Pre-flight before every measured run, {p}: 5 signed requests → {meta[f'preflight_{p}']}.")
    w("")
    w("<details><summary>Phase 1 runs</summary>")
    w("")
    w("| round | slot | server | req/s | CPU µs/req | server busy | load busy | others on server / load core | delivered in run | drain s | flushes/s | valid |")
    w("|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for r in tput:
        w(
            f"| {r['round']} | {r['slot']} | {r['peer']} | {r['rps']:,.0f} | {fmt(r['cpu_us'], '.1f')} | {r['server_busy_pct']:.0f} % "
            f"| {r['load_busy_pct']:.0f} % | {r['noise_server']:.0f} % / {r['noise_load']:.0f} % "
            f"| {r['delivered_in_run'] if r['peer'] == 'hookrouter' else '-'} "
            f"| {format(r['drain_ms'] / 1000, '.1f') if r['peer'] == 'hookrouter' else '-'} | {r['flushes_s']:,.0f} | {r['invalid'] or 'yes'} |"
        )
    w("")
    w("</details>")
    w("")
    if any_invalid:
        out.insert(0, "> **Warning: some runs were invalid (see the tables); do not quote this report.**\n")
    print("\n".join(out))
    return 2 if any_invalid else 0


if __name__ == "__main__":
    sys.exit(main())
