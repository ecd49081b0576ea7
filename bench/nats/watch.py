#!/usr/bin/env python3
"""Backlog watcher for bench/nats.sh: how far delivery is behind ingest, and how long it takes
to catch up once the load stops.

What was stored, per sample:
- NATS: the event stream's message count (the NATS server's monitoring port, /jsz): exact,
  one message per stored event;
- embedded: the routers' `hookrouter_requests_total{outcome="accepted"}` (from /metrics),
  which misses the events stored for clients that went away before their 202 (a load
  generator's last requests when its time is up), so "done" also needs the routers'
  `hookrouter_queue_depth` (in memory on the embedded queue, exact) to be 0.
What was delivered: the distinct event ids each target port of the sink has received (read
first, so that a backlog <= 0 means everything stored by then was delivered).
backlog = ports x stored - sum(received).

Usage:
  watch.py counts METRICS_URL[,URL] [NATS_MON_URL STREAM]   # "accepted stored" now (stored -1 without NATS)
  watch.py outcomes METRICS_URL[,URL]                       # {outcome: n} summed over the routers
  watch.py varz NATS_MON_URL                                # "in_msgs out_msgs in_bytes out_bytes sub_inserts"
  watch.py --sink URL --ports P[,P] --metrics URL[,URL] --out TSV --drain-max S --hard S
           [--load-out FILE]   # a loadgen output: the load ends when its RESULT line appears
           [--nats-mon URL --stream NAME] [--base-accepted N --base-stored N]

Without --load-out the load is over when the watcher starts (phase 1). It samples once a
second while the load runs (every sample scrapes the routers, which run on the measured core)
and every 0.1 s after it, and stops once two samples in a row (with the same counts) show a
backlog <= 0 (and, embedded, a queue depth of 0), or DRAIN_MAX s after the load ended, or at
the HARD limit (s since start). The --base-* counts are subtracted: the events of the
pre-flight and warm-up, delivered before the sink's counts were reset. Prints one line:
`WATCH {json}` with load_end_s, drain_ms (from the end of the load to the first of those two
samples; -1 if never), max_backlog, backlog_at_load_end, accepted, stored, received and
requests per port, and (with --nats-mon) the consumers' state at the end: pending (not yet
handed out), ack_pending (handed out, not acknowledged), redelivered; and every stream's
message count.
"""

import argparse
import json
import re
import sys
import time
import urllib.request

SAMPLE = re.compile(r'^(hookrouter_requests_total|hookrouter_queue_depth)\{([^}]*)\}\s+([0-9.eE+-]+)\s*$', re.M)


def get(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def scrape(urls):
    """({outcome: count}, queue depth) summed over the routers' /metrics."""
    out, depth = {}, 0
    for u in urls:
        for name, labels, value in SAMPLE.findall(get(u)):
            if name == "hookrouter_queue_depth":
                depth += int(float(value))
                continue
            m = re.search(r'outcome="([^"]*)"', labels)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + int(float(value))
    return out, depth


def jsz(mon, stream, all_streams=None):
    """(event stream messages, {consumer: state} of the targets' consumers on STREAM_DELIVER)
    from the NATS server's /jsz; ALL_STREAMS, a dict, gets {stream: messages} of every stream."""
    d = json.loads(get(f"{mon}/jsz?streams=true&consumers=true", timeout=2.0))
    messages, cons = 0, {}
    for acc in d.get("account_details") or []:
        for s in acc.get("stream_detail") or []:
            if all_streams is not None:
                all_streams[s.get("name")] = s.get("state", {}).get("messages", 0)
            name = s.get("name")
            if name == stream:
                messages = s.get("state", {}).get("messages", 0)
            # The targets' consumers are on the delivery-ticket stream.
            if name != f"{stream}_DELIVER":
                continue
            for c in s.get("consumer_detail") or []:
                cons[c.get("name")] = {
                    "pending": c.get("num_pending", 0),
                    "ack_pending": c.get("num_ack_pending", 0),
                    "redelivered": c.get("num_redelivered", 0),
                }
    return messages, cons


def load_finished(path, pos):
    """(finished, new position): whether a RESULT line appeared after POS."""
    try:
        with open(path, encoding="utf-8") as f:
            f.seek(pos)
            data = f.read()
    except FileNotFoundError:
        return False, pos
    cut = data.rfind("\n") + 1  # whole lines only
    done = any(line.startswith("RESULT ") for line in data[:cut].splitlines())
    return done, pos + len(data[:cut].encode("utf-8"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sink", required=True)
    ap.add_argument("--ports", required=True)
    ap.add_argument("--metrics", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--drain-max", type=float, required=True)
    ap.add_argument("--hard", type=float, required=True)
    ap.add_argument("--load-out")
    ap.add_argument("--nats-mon")
    ap.add_argument("--stream", default="HOOKROUTER")
    ap.add_argument("--base-accepted", type=int, default=0)
    ap.add_argument("--base-stored", type=int, default=0)
    a = ap.parse_args()
    ports = [int(p) for p in a.ports.split(",")]
    murls = a.metrics.split(",")

    start = time.monotonic()
    load_end = None if a.load_out else 0.0
    pos = 0
    max_backlog = 0
    at_load_end = None
    drain_ms = -1
    prev = None
    first_zero = None
    last = {"accepted": 0, "stored": -1, "recv": [0] * len(ports), "reqs": [0] * len(ports)}
    next_sample = start
    with open(a.out, "w", encoding="utf-8") as f:
        f.write("\t".join(["t", "load_done", "accepted", "stored", "depth"] + [f"recv_{p}" for p in ports]
                          + [f"req_{p}" for p in ports] + ["backlog"]) + "\n")
        while True:
            now = time.monotonic() - start
            if load_end is None:
                done, pos = load_finished(a.load_out, pos)
                if done:
                    load_end = now
            if load_end is not None or time.monotonic() >= next_sample:
                try:
                    stats = {t["port"]: t for t in json.loads(get(f"{a.sink}/stats"))["targets"]}
                    recv = [stats[p]["unique"] for p in ports]
                    reqs = [stats[p]["requests"] for p in ports]
                    outc, depth = scrape(murls)
                    acc = outc.get("accepted", 0) - a.base_accepted
                    stored = jsz(a.nats_mon, a.stream)[0] - a.base_stored if a.nats_mon else -1
                except Exception as e:  # noqa: BLE001 - a missed sample is skipped
                    print(f"watch: sample failed: {e}", file=sys.stderr)
                    recv = None
                if recv is not None:
                    last = {"accepted": acc, "stored": stored, "recv": recv, "reqs": reqs}
                    expected = stored if a.nats_mon else acc
                    backlog = len(ports) * expected - sum(recv)
                    max_backlog = max(max_backlog, backlog)
                    if load_end is not None and at_load_end is None:
                        at_load_end = backlog
                    f.write("\t".join(str(v) for v in [f"{now:.2f}", int(load_end is not None), acc, stored,
                                                       depth if not a.nats_mon else -1, *recv, *reqs,
                                                       backlog]) + "\n")
                    f.flush()
                    if load_end is not None:
                        empty = backlog <= 0 and min(recv) >= expected and (a.nats_mon or depth == 0)
                        if empty:
                            if first_zero is None:
                                first_zero = now
                            if prev is not None and prev == (expected, sum(recv)):
                                drain_ms = max(0, int((first_zero - load_end) * 1000))
                                break
                            prev = (expected, sum(recv))
                        else:
                            first_zero, prev = None, None
                next_sample = time.monotonic() + 1.0
            now = time.monotonic() - start
            if load_end is not None and now - load_end > a.drain_max:
                break
            if now > a.hard:
                break
            time.sleep(0.1)
    result = {
        "load_end_s": round(load_end, 2) if load_end is not None else -1,
        "drain_ms": drain_ms,
        "max_backlog": max_backlog,
        "backlog_at_load_end": at_load_end if at_load_end is not None else -1,
        "accepted": last["accepted"],
        "stored": last["stored"],
        "received": last["recv"],
        "requests": last["reqs"],
    }
    if a.nats_mon:
        try:
            streams = {}
            result["consumers"] = jsz(a.nats_mon, a.stream, streams)[1]
            result["streams"] = streams
        except Exception as e:  # noqa: BLE001
            result["consumers_error"] = str(e)
    print("WATCH " + json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    if len(sys.argv) in (3, 5) and sys.argv[1] == "counts":
        outc, _ = scrape(sys.argv[2].split(","))
        stored = jsz(sys.argv[3], sys.argv[4])[0] if len(sys.argv) == 5 else -1
        print(outc.get("accepted", 0), stored)
    elif len(sys.argv) == 3 and sys.argv[1] == "varz":
        # the NATS server's message and subscription counters
        v = json.loads(get(f"{sys.argv[2]}/varz", timeout=2.0))
        sz = json.loads(get(f"{sys.argv[2]}/subsz", timeout=2.0))
        print(v["in_msgs"], v["out_msgs"], v["in_bytes"], v["out_bytes"], sz.get("num_inserts", 0))
    elif len(sys.argv) == 3 and sys.argv[1] == "outcomes":
        print(json.dumps(scrape(sys.argv[2].split(","))[0], sort_keys=True, separators=(",", ":")))
    else:
        main()
