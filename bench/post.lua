-- wrk script for the hookrouter benchmark (see bench/README.md).
--
-- Usage:  wrk -t1 -c64 -d10s -s post.lua http://127.0.0.1:PORT/hook -- PAYLOAD [RATE]
--
--   PAYLOAD  path of the JSON body to POST (bench/payload.json, 2048 bytes)
--   RATE     optional total request rate (req/s) for the whole wrk process.
--            Without it wrk runs closed-loop (as fast as the server answers).
--            With it every request is paced by delay() (see below).
--
-- done() prints one machine-readable line, prefixed "BENCH ", that sync.sh
-- parses: requests, duration, error counters and latency percentiles.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clk_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

-- init() runs once per wrk thread (sync.sh uses -t1, so once).
function init(args)
  local path = args[1]
  if not path then
    error("post.lua: payload path missing (wrk ... -- PAYLOAD [RATE])")
  end
  local f = assert(io.open(path, "rb"))
  local body = f:read("*a")
  f:close()

  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "Stripe/1.0 (+https://stripe.com/docs/webhooks)"
  -- A Stripe signature over the payload, made by sync.sh; hookrouter verifies it.
  local sig = os.getenv("BENCH_STRIPE_SIGNATURE")
  if sig then
    wrk.headers["Stripe-Signature"] = sig
  end

  local rate = tonumber(args[2] or "")
  if rate and rate > 0 then
    -- Fixed-rate pacing without wrk2. wrk calls delay() before *every*
    -- request of every connection (including the first) and sends the request
    -- when the returned number of milliseconds has passed. We hand out send
    -- slots on one shared schedule spaced 1000/rate ms apart: each call claims
    -- the next free slot and waits until it. With enough idle connections
    -- (connections/rate >> latency) the sends follow the schedule, so the
    -- offered load is ~rate req/s independent of server speed. If the
    -- schedule falls behind (server slower than the rate) it restarts from
    -- "now" instead of bursting to catch up; the achieved rate is reported.
    local interval = 1000.0 / rate
    local next_slot = nil
    delay = function()
      local t = now_ms()
      if next_slot == nil or next_slot < t then
        next_slot = t
      end
      local d = next_slot - t
      next_slot = next_slot + interval
      -- wrk's timer resolution is 1 ms; round to the nearest ms.
      return math.floor(d + 0.5)
    end
  end
end

-- done() runs once, in the main Lua state, after the run.
-- latency values are microseconds (wrk already applied its own
-- coordinated-omission correction to this histogram).
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d " ..
    "err_write=%d err_timeout=%d err_status=%d " ..
    "lat_p50_us=%d lat_p90_us=%d lat_p99_us=%d lat_p999_us=%d lat_max_us=%d\n",
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
