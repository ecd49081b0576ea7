#!/usr/bin/env bash
# The quickstart: runs hookrouter on router.example.yaml with the demo receiver as its target,
# sends one sample webhook through it, then keeps both running until Ctrl-C so you can send
# your own:
#   curl -X POST http://127.0.0.1:8080/hooks/demo -H 'content-type: application/json' -d '{"type":"hello"}'
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --quiet --bin hookrouter --example receiver
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT INT TERM

target/debug/examples/receiver 127.0.0.1:7001 &
pids+=($!)
target/debug/hookrouter check -c router.example.yaml
target/debug/hookrouter run -c router.example.yaml &
pids+=($!)

for _ in $(seq 1 100); do
  if python3 -c 'import urllib.request,sys; urllib.request.urlopen("http://127.0.0.1:9090/readyz", timeout=1)' 2>/dev/null; then
    break
  fi
  sleep 0.1
done

echo
echo "demo: sending a sample webhook to http://127.0.0.1:8080/hooks/demo"
python3 - <<'PY'
import json, urllib.request
body = json.dumps({"id": "evt_demo_1", "type": "demo.ping", "data": {"hello": "world"}}).encode()
req = urllib.request.Request("http://127.0.0.1:8080/hooks/demo", data=body,
                             headers={"content-type": "application/json"}, method="POST")
with urllib.request.urlopen(req, timeout=5) as resp:
    print(f"demo: router answered {resp.status}: {resp.read().decode().strip()}")
body = json.dumps({"id": "evt_demo_2", "type": "demo.stored", "data": {"hello": "queue"}}).encode()
req = urllib.request.Request("http://127.0.0.1:8080/hooks/demo-async", data=body,
                             headers={"content-type": "application/json"}, method="POST")
with urllib.request.urlopen(req, timeout=5) as resp:
    print(f"demo: async route answered {resp.status} (stored; event {resp.headers['Hookrouter-Event-Id']}), delivery follows")
PY
echo
echo "demo: running. Send your own with:"
echo "  curl -X POST http://127.0.0.1:8080/hooks/demo -H 'content-type: application/json' -d '{\"type\":\"hello\"}'"
echo "  curl -X POST http://127.0.0.1:8080/hooks/demo-async -H 'content-type: application/json' -d '{\"id\":\"evt_1\",\"type\":\"demo.hello\"}'"
echo "demo: Ctrl-C stops both."
wait
