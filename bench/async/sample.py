#!/usr/bin/env python3
"""Once-a-second sampler for bench/async.sh's end-to-end (fan-out) runs.

Every second it records how many events the sink's target ports have received (distinct event
ids and requests), how many requests the load generator has had accepted so far (its PROGRESS
lines), and, when hookrouter's admin API is there, the queue's `pending` deliveries
(GET /api/v1/queue with the bearer token). It stops by itself once the load generator has
finished and the backlog is zero (every accepted event received by every target, and no pending
delivery), or DRAIN_MAX seconds after the load generator finished, or at the hard limit.

Usage: sample.py SINK_URL PORTS(comma) LOADGEN_OUT OUT_TSV DRAIN_MAX HARD_LIMIT [ADMIN_URL TOKEN BASE]

BASE is the queue's `pending` before the run (deliveries that were stuck already, see
bench/README.md); it is subtracted.

TSV columns: t (s since start), loadgen_done (0/1), sent_ok, recv_<port>… (distinct ids),
req_<port>… (requests), pending (-1 when the admin API is not available), backlog (computed:
fan-out × sent_ok − Σ distinct received; the accepted count is read from the load generator's
PROGRESS lines, at most 0.1 s old, so it can dip below 0 while hookrouter keeps up).
"""

import json
import sys
import time
import urllib.request


def get_json(url, token=None, timeout=0.8):
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def loadgen_progress(path):
    ok, done = 0, False
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("PROGRESS "):
                    kv = dict(p.split("=", 1) for p in line.split()[1:])
                    ok = int(kv["ok"])
                elif line.startswith("RESULT "):
                    ok = int(json.loads(line[7:])["ok"])
                    done = True
    except FileNotFoundError:
        pass
    return ok, done


def main():
    sink, ports, lg_out, out, drain_max, hard = sys.argv[1:7]
    admin = sys.argv[7] if len(sys.argv) > 7 else ""
    token = sys.argv[8] if len(sys.argv) > 8 else ""
    base = int(sys.argv[9]) if len(sys.argv) > 9 else 0
    ports = [int(p) for p in ports.split(",")]
    drain_max, hard = float(drain_max), float(hard)
    start = time.monotonic()
    done_at = None
    with open(out, "w", encoding="utf-8") as f:
        cols = ["t", "loadgen_done", "sent_ok"]
        cols += [f"recv_{p}" for p in ports] + [f"req_{p}" for p in ports] + ["pending", "backlog"]
        f.write("\t".join(cols) + "\n")
        tick = 0
        history = []
        while True:
            now = time.monotonic() - start
            ok, done = loadgen_progress(lg_out)
            try:
                stats = {t["port"]: t for t in get_json(f"{sink}/stats")["targets"]}
                recv = [stats[p]["unique"] for p in ports]
                reqs = [stats[p]["requests"] for p in ports]
            except Exception:  # noqa: BLE001 - a missed sample is written as -1
                recv = [-1] * len(ports)
                reqs = [-1] * len(ports)
            pending = -1
            if admin:
                try:
                    pending = max(0, int(get_json(f"{admin}/api/v1/queue", token)["pending"]) - base)
                except Exception:  # noqa: BLE001
                    pending = -1
            backlog = len(ports) * ok - sum(recv) if min(recv) >= 0 else -1
            f.write("\t".join(str(v) for v in [f"{now:.2f}", int(done), ok, *recv, *reqs, pending, backlog]) + "\n")
            f.flush()
            if done and done_at is None:
                done_at = now
            # Done when every accepted event has reached every target and the queue's pending
            # count is 0 or has not moved for 3 s (deliveries this build never attempts, see
            # bench/README.md, must not keep the sampler waiting).
            history.append(pending)
            settled = pending <= 0 or (len(history) >= 4 and len(set(history[-4:])) == 1)
            if done and backlog <= 0 and min(recv) >= 0 and settled:
                break
            if done_at is not None and now - done_at > drain_max:
                break
            if now > hard:
                break
            tick += 1
            time.sleep(max(0.0, start + tick - time.monotonic()))


if __name__ == "__main__":
    main()
