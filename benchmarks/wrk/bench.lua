-- One wrk script for every scenario of the harness.
--
--   wrk -s bench.lua URL -- [pipeline=N] [close] [post=BYTES]
--
-- pipeline=N  sends N requests in one write and waits for the N responses
-- close       adds "Connection: close": wrk then opens a connection per request
-- post=BYTES  sends a POST with a body of BYTES bytes
--
-- done() prints one line starting with "WRKJSON " that the harness parses, so
-- it does not depend on wrk's human-readable units.

local depth, close, post = 1, false, nil

function init(args)
    for _, arg in ipairs(args) do
        local key, value = arg:match("^(%w+)=?(.*)$")
        if key == "pipeline" then
            depth = tonumber(value)
        elseif key == "close" then
            close = true
        elseif key == "post" then
            post = tonumber(value)
        end
    end
    if close then
        wrk.headers["Connection"] = "close"
    end
    if post then
        wrk.method = "POST"
        wrk.body = string.rep("x", post)
        wrk.headers["Content-Type"] = "application/octet-stream"
    end
    if depth > 1 then
        -- Defining request() makes wrk count the requests in the string it
        -- returns, and wait for that many responses before the next write.
        local batch = string.rep(wrk.format(), depth)
        request = function()
            return batch
        end
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
        '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
        '"latency_us": {"mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p99": %d, "p999": %d}}\n',
        summary.requests, summary.duration, summary.bytes,
        e.connect, e.read, e.write, e.status, e.timeout,
        latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
        latency:percentile(99), latency:percentile(99.9)))
end
