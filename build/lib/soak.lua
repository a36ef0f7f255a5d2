-- wrk script of build/soak. Sends the requests of a mix file (written by
-- build/lib/soak.py: a list of {expected outcome, raw request}) in turn,
-- each thread from its own place in the list, and stops each thread after
-- its share of the requests; when all have, it ends wrk as Ctrl-C does
-- (wrk itself only knows durations). Counts the requests sent per expected
-- outcome and the responses per outcome seen ("status content-coding
-- body-length"); done() prints both, with wrk's errors, for soak.py.
--   wrk -tT -cC -d24h -s soak.lua http://127.0.0.1:PORT/ -- MIX.lua REQUESTS_PER_THREAD DIR T
-- (DIR: where each thread leaves a file when it is done)

local ffi = require("ffi")
ffi.cdef("int kill(int pid, int sig); int getpid(void);")
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  mix = dofile(args[1])
  quota = tonumber(args[2])
  donedir = args[3]
  nthreads = tonumber(args[4])
  pos = (id * 7919) % #mix
  issued, seen, answered = {}, {}, 0
end

function request()
  pos = pos % #mix + 1
  local r = mix[pos]
  issued[r[1]] = (issued[r[1]] or 0) + 1
  return r[2]
end

function response(status, headers, body)
  local ce = headers["Content-Encoding"] or headers["content-encoding"] or "-"
  local k = status .. " " .. ce .. " " .. #body
  seen[k] = (seen[k] or 0) + 1
  answered = answered + 1
  if answered == quota then
    io.open(donedir .. "/done-" .. id, "w"):close()
    wrk.thread:stop()
    for i = 0, nthreads - 1 do
      local f = io.open(donedir .. "/done-" .. i)
      if not f then
        return
      end
      f:close()
    end
    ffi.C.kill(ffi.C.getpid(), 2) -- SIGINT: wrk stops sleeping, joins the threads, reports
  end
end

function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for k, n in pairs(t:get("issued")) do
      io.write("soak\tissued\t", k, "\t", n, "\n")
    end
    for k, n in pairs(t:get("seen")) do
      io.write("soak\tseen\t", k, "\t", n, "\n")
    end
  end
  local e = summary.errors
  io.write(string.format("soak\tsummary\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", summary.requests, summary.duration,
    summary.bytes, e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("soak\tlatency\t%d\t%d\t%d\n", latency:percentile(50), latency:percentile(99), latency.max))
end
