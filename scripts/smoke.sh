#!/usr/bin/env bash
# Starts the stack (scripts/stack.sh up), registers through :8080, reads the user back,
# publishes a video and streams it back by range, all through :8080, and stops what it
# started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BASE=http://127.0.0.1:${PROXY_PORT:-8080}

if port_open "${PROXY_PORT:-8080}"; then
    log "a stack already answers on :${PROXY_PORT:-8080}; testing it and leaving it running"
else
    "$ROOT/scripts/stack.sh" up
    trap '"$ROOT/scripts/stack.sh" down' EXIT
fi

name="smoke-$RANDOM$RANDOM"
reply=$(curl -fsS -X POST "$BASE/douyin/user/register/?username=$name&password=pw-$RANDOM")
echo "register: $reply"
token=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["status_code"]==0, r; print(r["token"])' "$reply")
user_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["user_id"])' "$reply")

readable=
for _ in $(seq 50); do
    user=$(curl -fsS "$BASE/douyin/user/?user_id=$user_id&token=$token")
    if python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(r["status_code"])' "$user"; then
        echo "user: $user"
        python3 - "$user" "$name" <<'PY'
import json, sys, urllib.request
user = json.loads(sys.argv[1])["user"]
assert user["name"] == sys.argv[2], user
with urllib.request.urlopen(user["avatar"]) as image:
    assert image.headers["Content-Type"] == "image/png", image.headers
PY
        readable=1
        break
    fi
    sleep 0.1
done
[ -n "$readable" ] || die "the registered user was not readable through :8080 within 5 s"

# An upload through nginx to the command API, then the video streamed back by range.
reply=$(curl -fsS -X POST "$BASE/douyin/publish/action/" -F "token=$token" -F "title=smoke $name" \
    -F "data=@$ROOT/system-tests/fixtures/clip.mp4;type=video/mp4")
echo "publish: $reply"
grep -q '"status_code":0' <<<"$reply" || die "publishing through :8080 failed"
for _ in $(seq 50); do
    list=$(curl -fsS "$BASE/douyin/publish/list/?user_id=$user_id&token=$token")
    if python3 - "$list" <<'PY'
import json, sys, urllib.request
videos = json.loads(sys.argv[1])["video_list"]
if not videos:
    sys.exit(1)
request = urllib.request.Request(videos[0]["play_url"], headers={"Range": "bytes=0-9"})
with urllib.request.urlopen(request) as video:
    assert video.status == 206 and len(video.read()) == 10, video.status
with urllib.request.urlopen(videos[0]["cover_url"]) as cover:
    assert cover.headers["Content-Type"] == "image/jpeg", cover.headers
PY
    then
        log "smoke test passed"
        exit 0
    fi
    sleep 0.1
done
die "the published video was not listed and playable through :8080 within 5 s"
