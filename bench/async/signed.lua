-- wrk script for bench/async.sh: POST the benchmark payload with a fresh event id and a fresh
-- signature on every request (see bench/README.md, "Async mode").
--
-- Usage:  wrk -t1 -c64 -d10s -s signed.lua http://127.0.0.1:PORT/PATH -- PAYLOAD SCHEME SECRET TAG [STRIPE_T]
--
--   PAYLOAD  the JSON body (bench/payload.json, 2048 bytes); its top-level "id" (evt_ + 24
--            characters) is replaced on every request, so every body differs and keeps its size
--   SCHEME   stripe  Stripe-Signature: t=STRIPE_T,v1=hex(HMAC-SHA256(SECRET, "STRIPE_T." + body))
--            hub     X-Hub-Signature-256: sha256=hex(HMAC-SHA256(SECRET, body))   (adnanh/webhook)
--            bad-stripe / bad-hub: the same header with a wrong signature (pre-flight checks only)
--   SECRET   the shared secret
--   TAG      3 characters starting with "w", unique per run: ids are evt_ + TAG + a 21-digit
--            counter (+ the wrk thread number), so no two requests of a session share an id
--   STRIPE_T the Stripe timestamp (Unix seconds; default: now)
--
-- The HMAC is OpenSSL's (libcrypto, which wrk links) through LuaJIT's FFI: ~2 µs per request.
-- done() prints one machine-readable "BENCH ..." line, like bench/post.lua.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct evp_md_st EVP_MD;
  const EVP_MD *EVP_sha256(void);
  unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len,
                      const unsigned char *d, size_t n, unsigned char *md, unsigned int *md_len);
]]

-- wrk is linked against libcrypto, so its symbols are in the global namespace; fall back to
-- loading it by name.
local crypto = ffi.C
if not pcall(function() return crypto.EVP_sha256 end) then
  crypto = ffi.load("libcrypto.so.3")
end

local md = ffi.new("unsigned char[32]")
local md_len = ffi.new("unsigned int[1]")
local HEX = {}
for i = 0, 255 do
  HEX[i] = string.format("%02x", i)
end
local hexbuf = {}

local function hmac_hex(key, data)
  crypto.HMAC(crypto.EVP_sha256(), key, #key, data, #data, md, md_len)
  for i = 0, 31 do
    hexbuf[i + 1] = HEX[md[i]]
  end
  return table.concat(hexbuf, "", 1, 32)
end

-- setup() runs in the main state once per thread: number the threads.
local threads = 0
function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

local before, after, scheme, secret, tag, stripe_t
local counter = 0

function init(args)
  local path = args[1]
  scheme = args[2]
  secret = args[3]
  tag = args[4]
  stripe_t = args[5] or tostring(os.time())
  if not (path and scheme and secret and tag) then
    error("signed.lua: wrk ... -- PAYLOAD SCHEME SECRET TAG [STRIPE_T]")
  end
  if #tag ~= 3 or tag:sub(1, 1) ~= "w" then
    error("signed.lua: TAG is 3 characters starting with w")
  end
  local f = assert(io.open(path, "rb"))
  local body = f:read("*a")
  f:close()
  local s, e = body:find('"id": "evt_', 1, true)
  if not s then
    error("signed.lua: no top-level \"id\": \"evt_...\" in " .. path)
  end
  local id_start = e - 3 -- the "e" of evt_
  local id_end = body:find('"', id_start, true) - 1
  if id_end - id_start + 1 ~= 28 then
    error("signed.lua: the payload's event id must be evt_ + 24 characters")
  end
  before = body:sub(1, id_start - 1)
  after = body:sub(id_end + 1)
  -- the counter starts at thread_no * 10^15 so threads never collide
  counter = (tonumber(thread_no) or 0) * 1000000000000000

  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "hookrouter-bench-wrk"
end

function request()
  counter = counter + 1
  local body = before .. "evt_" .. tag .. string.format("%021d", counter) .. after
  local headers = wrk.headers
  if scheme == "stripe" then
    headers["Stripe-Signature"] = "t=" .. stripe_t .. ",v1=" .. hmac_hex(secret, stripe_t .. "." .. body)
  elseif scheme == "hub" then
    headers["X-Hub-Signature-256"] = "sha256=" .. hmac_hex(secret, body)
  elseif scheme == "bad-stripe" then
    headers["Stripe-Signature"] = "t=" .. stripe_t .. ",v1=" .. hmac_hex(secret .. "-wrong", stripe_t .. "." .. body)
  elseif scheme == "bad-hub" then
    headers["X-Hub-Signature-256"] = "sha256=" .. hmac_hex(secret .. "-wrong", body)
  else
    error("signed.lua: unknown scheme " .. scheme)
  end
  return wrk.format(nil, nil, headers, body)
end

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
