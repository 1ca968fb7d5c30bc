-- Writes as the client sends them (POST with the parameters in the query), every request a
-- change: $WRK_WRITE is like, follow, comment or message; $WRK_TOKENS lists "user_id token"
-- lines of the writers, $WRK_VIDEOS "first last" video ids, $WRK_USERS "first last" user ids.
-- Likes and follows are toggled: each thread takes its own writers, and turns each of a
-- writer's targets off and then on again, the two a writer's turn apart (hundreds of requests),
-- so every request changes something and a run leaves the targets as it found them. (Turning
-- 500 targets on, then off, left the first ones of each writer on after a run, and every later
-- run's likes and follows were repeats that recorded no event.)
dofile("bench/wrk/report.lua")

local kind = os.getenv("WRK_WRITE")
local writers = {}
local first_video, last_video = io.open(os.getenv("WRK_VIDEOS")):read("*n", "*n")
local first_user, last_user = io.open(os.getenv("WRK_USERS")):read("*n", "*n")
local threads_total = tonumber(os.getenv("WRK_THREADS") or "2")
local TARGETS = 500
local k = 0
local mine = {}

function init(args)
    local all = {}
    for line in io.lines(os.getenv("WRK_TOKENS")) do
        local id, token = line:match("(%d+) (%S+)")
        if id then table.insert(all, { id = tonumber(id), token = token }) end
    end
    for index, writer in ipairs(all) do
        if index % threads_total == thread_index then table.insert(mine, writer) end
    end
end

-- The n-th video, or user other than the writer, a writer aims at: spread over the set,
-- different for each writer.
local function video_for(writer, n)
    return first_video + (writer.id * 7 + n * 13) % (last_video - first_video + 1)
end
local function user_for(writer, n)
    local users = last_user - first_user + 1
    local user = first_user + (writer.id * 7 + n * 13) % users
    if user == writer.id then user = first_user + (user + 1 - first_user) % users end
    return user
end

function request()
    local writer = mine[(k % #mine) + 1]
    local slot = math.floor(k / #mine)
    k = k + 1
    -- Off (2), then on (1): the state earlier runs left is on.
    local on = (slot % 2 == 0) and 2 or 1
    local target = math.floor(slot / 2) % TARGETS
    local path
    if kind == "like" then
        path = string.format("/douyin/favorite/action/?token=%s&video_id=%d&action_type=%d",
            writer.token, video_for(writer, target), on)
    elseif kind == "follow" then
        path = string.format("/douyin/relation/action/?token=%s&to_user_id=%d&action_type=%d",
            writer.token, user_for(writer, target), on)
    elseif kind == "comment" then
        path = string.format("/douyin/comment/action/?token=%s&video_id=%d&action_type=1&comment_text=bench%%20comment%%20%d",
            writer.token, video_for(writer, k), k)
    elseif kind == "message" then
        path = string.format("/douyin/message/action/?token=%s&to_user_id=%d&action_type=1&content=bench%%20message%%20%d",
            writer.token, user_for(writer, k), k)
    else
        error("WRK_WRITE must be like, follow, comment or message")
    end
    return wrk.format("POST", path, nil, "")
end

function response(status, headers, body) count_answer(status, body) end

