-- wrk script for the cache-hit runs of bench/cdn.sh: requests stay static (wrk's fast
-- path); at the end it prints one machine-readable line with the exact figures
-- (latencies in microseconds) that the script parses.

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "WRK_RESULT requests=%d duration_us=%d rps=%.2f p50_us=%d p99_us=%d " ..
      "err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
      summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
      latency:percentile(50), latency:percentile(99),
      e.connect, e.read, e.write, e.status, e.timeout))
end
