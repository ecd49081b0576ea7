#!/usr/bin/env python3
"""Turn the raw measurements of bench/nats.sh into a Markdown report.

Usage: report.py META P1_TSV P2_TSV  (all written by nats.sh)

Exit status: 0 if every run was valid, 2 if any was not (load-tool errors, an answer other
than 202 in the measured window, accepted events not all delivered, the warm-up's events not
delivered, or other processes on the cores). Invalid runs are shown but left out of the
medians (when a configuration has no valid run, its median is over all its runs and marked).
"""

import json
import os
import sys

# The helpers shared with the other reports: bench/report_common.py (no __pycache__ left in bench/).
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from report_common import fmt, median, ms, noise_why, pct, read_meta, read_tsv  # noqa: E402

NAMES = {
    "embedded": "embedded (1 instance)",
    "nats-1": "NATS, 1 instance",
    "nats-2": "NATS, 2 instances",
}
RATE_TOLERANCE = 0.95


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b else "n/a"


def secs(msv):
    return "never" if msv is None or msv < 0 else f"{msv / 1000:.1f} s"


def noise(r, clk):
    """% of each core used by other processes than ours (user+nice+system of the core minus
    our processes'; interrupts, softirq and steal left out)."""
    srv = pct(max(0, r["server_task"] - r["routers_ticks"] - r["nats_ticks"]), r["server_total"])
    own = r["sink_ticks"] + r["gen_cpu_ms"] * clk / 1000.0
    load = pct(max(0.0, r["load_task"] - own), r["load_total"])
    return srv, load


INT_COLS = ("routers_ticks nats_ticks sink_ticks load_busy load_total load_task server_busy "
            "server_total server_task disk_writes disk_sectors disk_flushes gen_cpu_ms "
            "lc_routers_ticks lc_nats_ticks warm_ok").split()


def common(r, clk, noise_max, why):
    for k in INT_COLS:
        r[k] = int(r[k])
    r["noise_server"], r["noise_load"] = noise(r, clk)
    r["server_busy_pct"] = pct(r["server_busy"], r["server_total"])
    r["load_busy_pct"] = pct(r["load_busy"], r["load_total"])
    why.extend(noise_why(r, noise_max))
    if not r["warm_ok"]:
        why.append("the warm-up's events were not all delivered")
    each = [int(x) for x in r["lc_routers_each"].split(",") if x != ""]
    r["balance"] = "/".join(f"{pct(x, sum(each)):.0f}" for x in each) if len(each) > 1 and sum(each) else ""


def cpu_per_event(r, events, clk):
    if not events:
        return None, None
    router = r["lc_routers_ticks"] * 1e6 / clk / events
    nats = r["lc_nats_ticks"] * 1e6 / clk / events
    return router, nats


def varz_per_event(r, events):
    """NATS server traffic per event from the nats_varz column (in/out messages and bytes,
    subscriptions created), or None on the embedded queue."""
    v = [int(x) for x in (r.get("nats_varz") or "0,0,0,0,0").split(",")]
    if not events or not any(v):
        return None
    return [x / events for x in v]


def consumers_note(c):
    """'sink: 0 pending, 0 unacked, 0 redelivered' from the watcher's /jsz read."""
    if not c:
        return "-"
    parts = []
    for name, v in sorted(c.items()):
        if name.startswith("_"):
            continue
        parts.append(f"{name}: {v['pending']}+{v['ack_pending']} left, {v['redelivered']} redelivered")
    return "; ".join(parts) or "-"


def main():
    meta = read_meta(sys.argv[1])
    p1 = read_tsv(sys.argv[2])
    p2 = read_tsv(sys.argv[3])
    clk = int(meta["clk_tck"])
    noise_max = float(meta["noise_max"])
    configs = meta["configs"].split()
    any_invalid = False
    out = []
    w = out.append

    # ------------------------------------------------------------ phase 1
    for r in p1:
        why = []
        common(r, clk, noise_max, why)
        for k in ("req_a", "dur_a_us", "req_b", "dur_b_us", "errors_a", "errors_b", "non2xx",
                  "lat_p50_us", "lat_p99_us", "accepted", "stored", "delivered_in_run", "drain_ms", "backlog_at_end"):
            r[k] = int(r[k])
        r["rps"] = (r["req_a"] * 1e6 / r["dur_a_us"] if r["dur_a_us"] else 0) + \
                   (r["req_b"] * 1e6 / r["dur_b_us"] if r["dur_b_us"] else 0)
        r["dur_s"] = max(r["dur_a_us"], r["dur_b_us"]) / 1e6
        outc = json.loads(r["outcomes"] or "{}")
        other = {k: v for k, v in outc.items() if k != "accepted"}
        recv = json.loads(r["delivered"])
        reqs = json.loads(r["delivery_requests"])
        r["dups"] = sum(reqs) - sum(recv)
        r["other"] = other
        r["consumers_j"] = json.loads(r["consumers"] or "{}")
        errs = r["errors_a"] + r["errors_b"] + r["non2xx"]
        if r["req_a"] + r["req_b"] == 0:
            why.append("no requests")
        if errs:
            why.append(f"{errs} wrk errors/non-2xx")
        if other:
            why.append("answers other than 202: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items())))
        expected = r["stored"] if r["stored"] >= 0 else r["accepted"]
        if r["drain_ms"] < 0 or recv[0] < expected:
            why.append(f"only {recv[0]} of {expected} stored events delivered within {meta['drain_max']} s")
        r["events"] = recv[0]  # distinct events delivered: each one stored, answered, delivered
        r["uncounted"] = recv[0] - r["accepted"]
        r["router_us"], r["nats_us"] = cpu_per_event(r, r["events"], clk)
        r["deliv_rate"] = r["delivered_in_run"] / r["dur_s"] if r["dur_s"] else 0
        r["deliv_pct"] = pct(r["delivered_in_run"], r["events"])
        r["through"] = r["events"] / (r["dur_s"] + max(0, r["drain_ms"]) / 1000) if r["dur_s"] else 0
        r["varz"] = varz_per_event(r, r["events"])
        r["streams"] = {}
        r["flushes_s"] = r["disk_flushes"] / r["dur_s"] if r["dur_s"] else 0
        r["mb_s"] = r["disk_sectors"] * 512 / 1e6 / r["dur_s"] if r["dur_s"] else 0
        r["invalid"] = "; ".join(why)
        any_invalid |= bool(why)

    def pick(rows, cfg):
        runs = [r for r in rows if r["config"] == cfg]
        valid = [r for r in runs if not r["invalid"]]
        return runs, (valid if valid else runs), bool(valid)

    s1 = {}
    for c in configs:
        runs, use, ok = pick(p1, c)
        if not runs:
            continue
        s1[c] = {
            "rps": median([r["rps"] for r in use]),
            "router_us": median([r["router_us"] for r in use]),
            "nats_us": median([r["nats_us"] for r in use]),
            "server_busy": median([r["server_busy_pct"] for r in use]),
            "load_busy": median([r["load_busy_pct"] for r in use]),
            "deliv_pct": median([r["deliv_pct"] for r in use]),
            "deliv_rate": median([r["deliv_rate"] for r in use]),
            "through": median([r["through"] for r in use]),
            "drain": median([r["drain_ms"] for r in use]),
            "p99": median([r["lat_p99_us"] for r in use]),
            "flushes": median([r["flushes_s"] for r in use]),
            "mb_s": median([r["mb_s"] for r in use]),
            "valid": f"{sum(1 for r in runs if not r['invalid'])}/{len(runs)}",
            "ok": ok,
        }

    # ------------------------------------------------------------ phase 2
    for r in p2:
        why = []
        common(r, clk, noise_max, why)
        r["targets"] = int(r["targets"])
        r["rate"] = int(r["rate"])
        r["delivered_in_load"] = int(r["delivered_in_load"])
        lg = json.loads(r["loadgen"])
        wt = json.loads(r["watch"])
        r["lg"], r["wt"] = lg, wt
        statuses = lg.get("statuses", {})
        errs = lg.get("err_connect", 0) + lg.get("err_io", 0) + lg.get("err_timeout", 0)
        non202 = sum(v for k, v in statuses.items() if k != "202")
        other = {k: v for k, v in json.loads(r["outcomes"] or "{}").items() if k != "accepted"}
        r["other"] = other
        if errs:
            why.append(f"{errs} load-generator errors")
        if non202:
            why.append(f"{non202} answers other than 202")
        if other and not non202:
            why.append("answers other than 202 at the routers: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items())))
        expected = wt["stored"] if wt.get("stored", -1) >= 0 else wt["accepted"]
        if wt["drain_ms"] < 0 or min(wt["received"]) < expected:
            why.append(f"only {min(wt['received'])} of {expected} stored events delivered (to every target) within {meta['drain_max']} s")
        acc = min(wt["received"])
        r["elapsed"] = lg.get("elapsed_s", 0) or 0
        r["achieved"] = lg.get("achieved_rate", 0)
        r["accepted_rate"] = lg.get("ok", 0) / r["elapsed"] if r["elapsed"] else 0
        r["deliv_rate"] = r["delivered_in_load"] / r["targets"] / r["elapsed"] if r["elapsed"] else 0
        r["dups"] = sum(wt["requests"]) - sum(wt["received"])
        r["varz"] = varz_per_event(r, min(wt["received"]))
        r["streams"] = wt.get("streams", {})
        r["router_us"], r["nats_us"] = cpu_per_event(r, acc, clk)
        sink = json.loads(r["e2e"] or "{}").get("targets", [])
        r["e2e_p50"] = median([t.get("e2e_p50_us") for t in sink if t.get("e2e_n")])
        r["e2e_p99"] = max([t.get("e2e_p99_us", 0) for t in sink if t.get("e2e_n")] or [0])
        r["missed"] = r["achieved"] < RATE_TOLERANCE * r["rate"]
        r["invalid"] = "; ".join(why)
        any_invalid |= bool(why)

    s2 = {}
    for tg in sorted({r["targets"] for r in p2}):
        for c in configs:
            runs = [r for r in p2 if r["config"] == c and r["targets"] == tg]
            if not runs:
                continue
            valid = [r for r in runs if not r["invalid"]]
            use = valid or runs
            s2[(tg, c)] = {
                "rate": runs[0]["rate"],
                "achieved": median([r["achieved"] for r in use]),
                "deliv_rate": median([r["deliv_rate"] for r in use]),
                "max_backlog": median([r["wt"]["max_backlog"] for r in use]),
                "at_end": median([r["wt"]["backlog_at_load_end"] for r in use]),
                "drain": median([r["wt"]["drain_ms"] for r in use]),
                "ack_p50": median([r["lg"].get("lat_p50_us") for r in use]),
                "ack_p99": median([r["lg"].get("lat_p99_us") for r in use]),
                "e2e_p50": median([r["e2e_p50"] for r in use]),
                "e2e_p99": median([r["e2e_p99"] for r in use]),
                "router_us": median([r["router_us"] for r in use]),
                "nats_us": median([r["nats_us"] for r in use]),
                "dups": sum(r["dups"] for r in use),
                "server_busy": median([r["server_busy_pct"] for r in use]),
                "missed": sum(1 for r in use if r["missed"]),
                "valid": f"{len(valid)}/{len(runs)}",
                "ok": bool(valid),
            }

    # ------------------------------------------------------------ report
    w("## hookrouter with the NATS queue: one and two instances")
    w("")
    w(f"{meta['date']} · {meta['cpu']}, {meta['ncpu']} cores, Linux {meta['kernel']} · "
      f"hookrouter {meta['hookrouter']}, nats-server {meta['nats_server']}, wrk {meta['wrk']}"
      + (" · **SMOKE run: short runs, one round; not a result**" if meta.get("smoke") == "1" else ""))
    w("")
    fs = meta["fsync"].split()
    w(f"Load generator, sink and watcher on core {meta['load_cpu']}; **every hookrouter instance "
      f"and nats-server share core {meta['server_cpu']}** (one tokio worker thread per instance, "
      f"`GOMAXPROCS=1` for nats-server). Queues and the NATS store on {meta['data_dev']} "
      f"({meta['data_fs']}, write cache: {meta['write_cache']}); 4 KiB write + fdatasync there: "
      f"p50 {fs[1] if len(fs) > 1 else '?'} ms, p99 {fs[2] if len(fs) > 2 else '?'} ms. Each run starts on "
      f"a fresh queue (embedded: a new folder; NATS: a new nats-server with an empty store). "
      f"Background load before measuring: core {meta['load_cpu']} {meta['bg_load']} %, "
      f"core {meta['server_cpu']} {meta['bg_server']} %.")
    w("")
    w("> **Caveat (2 cores).** The two instances, nats-server, the load generator and the sink "
      "share two cores, and the server side always has exactly one core. So `nats-2` against "
      "`nats-1` measures what splitting the same core between two instances costs (contention), "
      "**not** scale-out. What predicts scale-out on a bigger machine is the CPU per event of "
      "the routers and of nats-server (below): each instance needs its share of router CPU, "
      "the one stream needs nats-server's.")
    w("")

    # summary
    e, n1, n2 = (s1.get(c, {}).get("rps") for c in ("embedded", "nats-1", "nats-2"))
    w("| measure | result |")
    w("|---|---|")
    if s1:
        parts = [f"{NAMES[c]} {s1[c]['rps']:,.0f}" for c in configs if c in s1]
        w(f"| 1. ingest req/s, closed loop (medians) | {' · '.join(parts)} |")
        w(f"| ratio nats-1 / embedded | **{ratio(n1, e)}** |")
        w(f"| ratio nats-2 / nats-1 | **{ratio(n2, n1)}** (same core split two ways, see caveat) |")
        te, t1, t2 = (s1.get(c, {}).get("through") for c in ("embedded", "nats-1", "nats-2"))
        parts = [f"{NAMES[c]} {s1[c]['through']:,.0f}" for c in configs if c in s1]
        w(f"| 1. events through, closed loop: delivered ÷ (run + time to deliver the rest) | {' · '.join(parts)} "
          f"(nats-1 / embedded {ratio(t1, te)}, nats-2 / nats-1 {ratio(t2, t1)}) |")
        cpu = []
        for c in configs:
            if c in s1 and s1[c]["router_us"] is not None:
                t = s1[c]["router_us"] + s1[c]["nats_us"]
                cpu.append(f"{c}: {s1[c]['router_us']:.0f} + {s1[c]['nats_us']:.0f} = {t:.0f}")
        w(f"| CPU µs per event, routers + nats-server (ingest and delivery) | {' · '.join(cpu)} |")
    for tg in sorted({k[0] for k in s2}):
        parts = []
        for c in configs:
            v = s2.get((tg, c))
            if v:
                parts.append(f"{c}: {v['deliv_rate']:,.0f}/s, drained {secs(v['drain'])}, e2e p99 {ms(v['e2e_p99'] or 0)} ms")
        rate = next(v["rate"] for k, v in s2.items() if k[0] == tg)
        w(f"| 2. end to end, {tg} target{'s' if tg > 1 else ''}, {rate:,} events/s offered: delivered per target during the load | {' · '.join(parts)} |")
    w("")

    # phase 1 table
    if s1:
        w("### 1. Ingest (closed loop)")
        w("")
        w(f"wrk: two processes with {int(meta['connections']) // 2} connections each "
          f"(nats-2: one per instance; otherwise both to the one instance), {meta['rounds']} "
          f"round(s) × {meta['duration']} s per configuration, order rotated each round, after "
          f"{meta['warmup']} s of warm-up on the fresh instance(s); a fresh signed 2,048-byte "
          f"body per request; route `/hook`: Stripe verification, store, 202, deliver to the sink. "
          f"req/s = the two wrk's rates summed. 'Events through' = distinct events delivered ÷ "
          f"(run + the time it took to deliver the rest after it): req/s alone flatters a "
          f"configuration that leaves its deliveries for later. CPU per event: routers and "
          f"nats-server from the start of the run until every event was delivered, over the "
          f"events delivered (ingest and delivery).")
        w("")
        w("| configuration | median req/s | vs embedded | vs nats-1 | events through /s | wrk p99 ms | router µs/event | nats-server µs/event | server core busy | load core busy | delivered during the run | delivered/s during the run | rest delivered after | disk flushes/s | valid runs |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for c in configs:
            if c not in s1:
                continue
            v = s1[c]
            mark = "" if v["ok"] else " (no valid run: all runs)"
            w(f"| {NAMES[c]}{mark} | {v['rps']:,.0f} | {ratio(v['rps'], e)} | {ratio(v['rps'], n1)} | "
              f"{v['through']:,.0f} | {ms(v['p99'])} | {fmt(v['router_us'], '.1f')} | {fmt(v['nats_us'], '.1f') if c != 'embedded' else '-'} | "
              f"{v['server_busy']:.0f} % | {v['load_busy']:.0f} % | {v['deliv_pct']:.0f} % | {v['deliv_rate']:,.0f} | "
              f"{secs(v['drain'])} | {v['flushes']:,.0f} | {v['valid']} |")
        w("")
        proj = []
        for c in ("nats-1", "nats-2"):
            v = s1.get(c)
            if v and v["router_us"] and v["nats_us"]:
                proj.append(f"{c}: one router core ≈ {1e6 / v['router_us']:,.0f} events/s, "
                            f"nats-server ≈ {1e6 / v['nats_us']:,.0f} events/s per core it gets")
        if proj:
            w("Projection from the CPU per event (an upper bound that ignores contention and "
              "nats-server's serialisation of one stream): " + "; ".join(proj) + ". With the "
              "routers on cores of their own, the instances add router capacity until "
              "nats-server's core is the limit.")
            w("")

    # phase 2 table
    if s2:
        w("### 2. End to end at a fixed rate")
        w("")
        w(f"bench/async's loadgen: {meta['e2e_rounds']} round(s) × {meta['e2e_duration']} s per "
          f"configuration at {meta['e2e_rate']} events/s"
          + (f" ({meta['e2e_share']} % of phase 1's slowest median)" if meta.get("e2e_rate_auto") == "1" else "")
          + f", {meta['e2e_connections']} connections (split over the instances), order rotated; "
          "every answer must be 202. Delivered/s per target: distinct events at the sink during "
          "the load window. Backlog = targets × stored − received (stored: the NATS stream's "
          "message count; embedded: the routers' accepted count, and 'drained' also needs their "
          "queue depth at 0), sampled once a second during the load and every 0.1 s after it; "
          "'drained' is the time from the end of the load until it is 0. Ack latency from each request's "
          "scheduled send (no coordinated omission); end-to-end from the scheduled send to the "
          "arrival at the target.")
        w("")
        w("| targets | configuration | offered → achieved events/s | delivered/s per target during load | max backlog | backlog at load end | drained after | ack p50 / p99 ms | e2e p50 / p99 ms | router µs/event | nats-server µs/event | server core busy | duplicate deliveries | valid runs |")
        w("|---:|---|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|")
        for (tg, c), v in sorted(s2.items(), key=lambda kv: (kv[0][0], configs.index(kv[0][1]))):
            mark = "" if v["ok"] else " (no valid run: all runs)"
            miss = f" (rate missed in {v['missed']})" if v["missed"] else ""
            w(f"| {tg} | {NAMES[c]}{mark} | {v['rate']:,} → {v['achieved']:,.0f}{miss} | {v['deliv_rate']:,.0f} | "
              f"{v['max_backlog']:,.0f} | {v['at_end']:,.0f} | {secs(v['drain'])} | "
              f"{ms(v['ack_p50'] or 0)} / {ms(v['ack_p99'] or 0)} | {ms(v['e2e_p50'] or 0)} / {ms(v['e2e_p99'] or 0)} | "
              f"{fmt(v['router_us'], '.1f')} | {fmt(v['nats_us'], '.1f') if c != 'embedded' else '-'} | "
              f"{v['server_busy']:.0f} % | {v['dups']} | {v['valid']} |")
        w("")
        base = {tg: s2.get((tg, "nats-1")) for tg in {k[0] for k in s2}}
        emb = {tg: s2.get((tg, "embedded")) for tg in {k[0] for k in s2}}
        lines = []
        for tg in sorted(base):
            if base[tg] and emb[tg]:
                lines.append(f"{tg} target(s): delivered/s nats-1 / embedded {ratio(base[tg]['deliv_rate'], emb[tg]['deliv_rate'])}")
            if base[tg] and s2.get((tg, "nats-2")):
                lines.append(f"nats-2 / nats-1 {ratio(s2[(tg, 'nats-2')]['deliv_rate'], base[tg]['deliv_rate'])}")
        if lines:
            w("Ratios: " + "; ".join(lines) + ".")
            w("")

    # NATS traffic per event
    traffic = []
    for phase, rows in (("1. ingest", p1), ("2. end to end", p2)):
        for tg in sorted({int(r.get("targets", 1)) for r in rows}):
            for c in ("nats-1", "nats-2"):
                runs = [r for r in rows if r["config"] == c and int(r.get("targets", 1)) == tg and r["varz"]]
                if not runs:
                    continue
                med = [median([r["varz"][i] for r in runs]) for i in range(5)]
                streams = runs[-1]["streams"] if phase.startswith("2") else {}
                traffic.append((phase, tg, c, med, streams))
    if traffic:
        w("### NATS server traffic per event")
        w("")
        w("From nats-server's /varz and /subsz over each run (start of the load until every event was "
          "delivered), over the events delivered; medians. Per event the server receives the publish, "
          "the attempt record (`HOOKROUTER_ATTEMPTS`, acknowledged too) and the delivery's ack, and "
          "sends the publish ack, the message to a puller and the attempt's publish ack; pulls are "
          "batches (a subscription per batch).")
        w("")
        w("| phase | targets | configuration | msgs in / event | msgs out / event | KB in / event | KB out / event | subscriptions made / event | stream messages at the end (last run) |")
        w("|---|---:|---|---:|---:|---:|---:|---:|---|")
        for phase, tg, c, med, streams in traffic:
            st = ", ".join(f"{k} {v:,}" for k, v in sorted(streams.items())) or "-"
            w(f"| {phase} | {tg} | {c} | {med[0]:.2f} | {med[1]:.2f} | {med[2] / 1024:.1f} | {med[3] / 1024:.1f} | {med[4]:.3f} | {st} |")
        w("")

    # checks
    w("### Checks and raw runs")
    w("")
    st = meta["selftest"].split()
    if len(st) >= 6:
        w(f"- Sink alone (one thread, core {meta['load_cpu']}): {float(st[2]):,.0f} req/s achieved of {int(st[0]):,} offered for {st[1]} s over its 4 ports, {st[3]}/{st[4]} answered 200, p99 {ms(int(st[5]))} ms.")
    w(f"- Pre-flight before every run: {meta['preflight']}.")
    w(f"- Deduplication across instances (once, nats-2): {meta['dup']}.")
    w(f"- Instances registry (once, nats-2): {meta['instances']}.")
    w(f"- `queue.nats`: one nats-server {meta['nats_server']}, `replicas: 1`, `ack_wait: {meta['ack_wait']}`"
      + (f"; {meta['idle_targets']} extra target(s) that no route delivers to (IDLE_TARGETS)" if meta.get("idle_targets", "0") != "0" else "")
      + ". nats-server 2.9 acknowledges a publish before its file store is flushed to disk (the embedded queue fsyncs before each 202): see the README's caveats.")
    w("")
    if p1:
        w("<details><summary>Phase 1 runs</summary>")
        w("")
        w("| round | slot | configuration | req/s | accepted (metric) | stored | delivered | other answers | router µs/ev | nats µs/ev | instance CPU split % | server busy | load busy | others on server / load core | delivered in run | rest after | dup deliveries | consumers at the end (pending+unacked) | valid |")
        w("|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|---|---:|---:|---:|---|---|")
        for r in p1:
            stored = f"{r['stored']:,}" if r["stored"] >= 0 else "-"
            w(f"| {r['round']} | {r['slot']} | {r['config']} | {r['rps']:,.0f} | {r['accepted']:,} | {stored} | {r['events']:,} | "
              f"{', '.join(f'{k} {v}' for k, v in sorted(r['other'].items())) or '-'} | {fmt(r['router_us'], '.1f')} | "
              f"{fmt(r['nats_us'], '.1f') if r['config'] != 'embedded' else '-'} | {r['balance'] or '-'} | "
              f"{r['server_busy_pct']:.0f} % | {r['load_busy_pct']:.0f} % | {r['noise_server']:.0f} % / {r['noise_load']:.0f} % | "
              f"{r['delivered_in_run']:,} | {secs(r['drain_ms'])} | {r['dups']} | {consumers_note(r['consumers_j'])} | "
              f"{'yes' if not r['invalid'] else 'NO: ' + r['invalid']} |")
        w("")
        w("</details>")
        w("")
    if p2:
        w("<details><summary>Phase 2 runs</summary>")
        w("")
        w("| targets | round | slot | configuration | achieved/s | answers | delivered (per target, min) | delivered/s per target | max backlog | at load end | drained after | ack p99 ms | e2e p99 ms | router µs/ev | nats µs/ev | instance CPU split % | others on server / load core | consumers at the end | valid |")
        w("|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|---|")
        for r in p2:
            w(f"| {r['targets']} | {r['round']} | {r['slot']} | {r['config']} | {r['achieved']:,.0f} | "
              f"{json.dumps(r['lg'].get('statuses', {}), separators=(',', ':'))} | {min(r['wt']['received']):,} | {r['deliv_rate']:,.0f} | "
              f"{r['wt']['max_backlog']:,} | {r['wt']['backlog_at_load_end']:,} | {secs(r['wt']['drain_ms'])} | "
              f"{ms(r['lg'].get('lat_p99_us', 0))} | {ms(r['e2e_p99'] or 0)} | {fmt(r['router_us'], '.1f')} | "
              f"{fmt(r['nats_us'], '.1f') if r['config'] != 'embedded' else '-'} | {r['balance'] or '-'} | "
              f"{r['noise_server']:.0f} % / {r['noise_load']:.0f} % | {consumers_note(r['wt'].get('consumers'))} | "
              f"{'yes' if not r['invalid'] else 'NO: ' + r['invalid']} |")
        w("")
        w("</details>")
        w("")
        # one run per configuration, second by second
        for (tg, c) in sorted(s2, key=lambda k: (k[0], configs.index(k[1]))):
            runs = [r for r in p2 if r["config"] == c and r["targets"] == tg]
            if not runs:
                continue
            runs.sort(key=lambda r: r["wt"]["drain_ms"] if r["wt"]["drain_ms"] >= 0 else 1e12)
            r = runs[len(runs) // 2]
            try:
                samples = read_tsv(r["samples"])
            except OSError:
                continue
            w(f"<details><summary>Phase 2, {tg} target(s), {c}, round {r['round']}: backlog second by second</summary>")
            w("")
            w("| t (s) | stored (NATS) or accepted (embedded) | received (min over targets) | backlog |")
            w("|---:|---:|---:|---:|")
            last_t = None
            recv_cols = [k for k in samples[0] if k.startswith("recv_")] if samples else []
            for i, s in enumerate(samples):
                t = float(s["t"])
                final = i == len(samples) - 1
                load_over = s["load_done"] == "1" and (i == 0 or samples[i - 1]["load_done"] == "0")
                if last_t is not None and int(t) == int(last_t) and not final and not load_over:
                    continue
                last_t = t
                note = " (load over)" if load_over else ""
                n = int(s["stored"]) if int(s["stored"]) >= 0 else int(s["accepted"])
                w(f"| {t:.1f}{note} | {n:,} | {min(int(s[k]) for k in recv_cols):,} | {int(s['backlog']):,} |")
            w("")
            w("</details>")
            w("")

    print("\n".join(out))
    return 2 if any_invalid else 0


if __name__ == "__main__":
    sys.exit(main())
