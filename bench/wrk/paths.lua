-- GETs the paths listed one per line in $WRK_PATHS, in turn (each thread from its own
-- start), so a run can spread over users, videos or feed pages.
dofile("bench/wrk/report.lua")

local paths = {}
for line in io.lines(os.getenv("WRK_PATHS")) do
    if line ~= "" then table.insert(paths, line) end
end
local i = 0

function init(args)
    i = thread_index * 7919
end

function request()
    i = i + 1
    return wrk.format("GET", paths[(i % #paths) + 1])
end

if os.getenv("WRK_COUNT") == "1" then
    function response(status, headers, body) count_answer(status, body) end
end

