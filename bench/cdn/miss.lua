-- wrk script for the miss-path run of bench/cdn.sh: every request asks for a URL that no
-- one has asked for before (/miss/<nonce>-<thread>-<n>), so the cache must fetch each one
-- from the origin, which answers any /miss/ path with its 1 KiB object.
-- Usage: wrk ... -s miss.lua http://127.0.0.1:PORT -- NONCE
-- Prints the same WRK_RESULT line as report.lua.

local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

function init(args)
   local nonce = args[1] or tostring(os.time())
   prefix = string.format("/miss/%s-%d-", nonce, tid or 0)
   counter = 0
end

function request()
   counter = counter + 1
   return wrk.format("GET", prefix .. counter)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d duration_us=%d rps=%.2f p50_us=%d p99_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.status, e.timeout))
end
