-- Shared by the wrk scripts of `make bench`: one RESULT line per run, which scripts/bench.sh
-- reads, and (when a script counts them) the answers that were refusals in the envelope
-- (HTTP 200 with a non-zero status_code). Load with dofile() from the repository root.

local threads = {}
local next_thread = 0

function setup(thread)
    thread:set("thread_index", next_thread)
    next_thread = next_thread + 1
    table.insert(threads, thread)
end

-- Paced runs: $WRK_RATE requests a second in all, each thread its share, each request sent at
-- its slot. The rate is made whatever the latency, as long as a connection is free at each
-- slot; when none is (the server is behind), slots are dropped and the report shows the rate
-- made. (A fixed pause before each request made less than asked: 64 connections pausing
-- 64 ms made 838-950 requests/s of 1,000, the answers' latency adding to each pause.)
local rate = tonumber(os.getenv("WRK_RATE") or "")
if rate then
    local ffi = require("ffi")
    ffi.cdef([[
        typedef struct { long tv_sec; long tv_nsec; } pace_timespec;
        int clock_gettime(int clock, pace_timespec *now);
    ]])
    local clock = ffi.new("pace_timespec")
    local CLOCK_MONOTONIC = 1
    local function now_ms()
        ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
        return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
    end
    local interval = tonumber(os.getenv("WRK_THREADS") or "2") * 1000 / rate
    local slot
    function delay()
        local now = now_ms()
        if slot == nil or slot < now - interval then slot = now end
        slot = slot + interval
        return math.max(0, math.floor(slot - now + 0.5))
    end
end

-- Scripts that look at answers call this from response(): counts refusals by status_code.
refused = 0
busy = 0
function count_answer(status, body)
    if status ~= 200 or body == nil then return end
    local code = body:match('"status_code":(%d+)')
    if code ~= nil and code ~= "0" then
        refused = refused + 1
        if code == "503" then busy = busy + 1 end
    end
end

function done(summary, latency, requests)
    local total_refused, total_busy = 0, 0
    for _, thread in ipairs(threads) do
        total_refused = total_refused + (thread:get("refused") or 0)
        total_busy = total_busy + (thread:get("busy") or 0)
    end
    local seconds = summary.duration / 1e6
    local errors = summary.errors
    io.write(string.format(
        "RESULT requests=%d seconds=%.2f rps=%.1f p50_ms=%.2f p99_ms=%.2f max_ms=%.2f mb_s=%.2f socket_errors=%d non_2xx=%d refused=%d busy=%d\n",
        summary.requests, seconds, summary.requests / seconds,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
        summary.bytes / seconds / 1048576,
        errors.connect + errors.read + errors.write + errors.timeout, errors.status,
        total_refused, total_busy))
end
