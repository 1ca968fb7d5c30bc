#!/usr/bin/env bash
# Starts a stack of its own (ports 38080-38082 by default, databases, Redis keys and topics of
# the test run's, beside `make run`'s), registers through nginx, reads the user back,
# publishes a video and streams it back by range, all through nginx; then makes sure no
# password or token reached any log the stack wrote; and stops and removes what it started.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

ensure_services
ensure_nginx
own_test_run
own_stack smoke "${SMOKE_PORT:-38080}"
# As for a phone on the same network (README, "A phone"): nginx on every address, the URLs
# handed out under the machine's first non-loopback address, and everything below asked
# there. On loopback where the machine has no other address.
lan=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+(\.[0-9]+){3}$' | grep -v '^127\.' | head -n 1 || true)
if [ -n "$lan" ]; then
    export PROXY_LISTEN=0.0.0.0:$PROXY_PORT
    export PUBLIC_BASE_URL=http://$lan:$PROXY_PORT
    export no_proxy=$lan${no_proxy:+,$no_proxy} NO_PROXY=$lan${NO_PROXY:+,$NO_PROXY}
fi
at_exit '"$ROOT/scripts/stack.sh" down'
"$ROOT/scripts/stack.sh" up
BASE=$PUBLIC_BASE_URL
log "asking the stack at $BASE"

name="smoke-$RANDOM$RANDOM"
reply=$(curl -fsS -X POST "$BASE/douyin/user/register/?username=$name&password=pw-$RANDOM$RANDOM")
echo "register: $reply"
token=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["status_code"]==0, r; print(r["token"])' "$reply")
user_id=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["user_id"])' "$reply")

readable=
for _ in $(seq 50); do
    user=$(curl -fsS "$BASE/douyin/user/?user_id=$user_id&token=$token")
    if python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(r["status_code"])' "$user"; then
        echo "user: $user"
        python3 - "$user" "$name" "$BASE" <<'PY'
import json, sys, urllib.request
user = json.loads(sys.argv[1])["user"]
assert user["name"] == sys.argv[2], user
assert user["avatar"].startswith(sys.argv[3] + "/"), (user["avatar"], sys.argv[3])
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
        playable=1
        break
    fi
    sleep 0.1
done
[ -n "${playable:-}" ] || die "the published video was not listed and playable through :8080 within 5 s"

# Every answer carries its request id: the client's own if it is harmless, else nginx's.
request_id() { curl -fsS -o /dev/null -D - "$@" "$BASE/douyin/feed/" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "x-request-id" { print $2 }'; }
[ "$(request_id -H 'X-Request-Id: smoke-4f1c2a9e')" = smoke-4f1c2a9e ] || die "a client's request id was not kept"
made=$(request_id -H 'X-Request-Id: not harmless;')
[[ $made =~ ^[0-9a-f]{32}$ ]] || die "a request id that could forge log lines was kept, or none made: '$made'"
[[ $(request_id) =~ ^[0-9a-f]{32}$ ]] || die "no request id was made for a client without one"

# Operators' routes answer on each service's own address, and never through nginx.
for path in /metrics /readyz /healthz /metrics/ //readyz /%6detrics; do
    status=$(curl -sS -o /dev/null -w '%{http_code}' "$BASE$path")
    [ "$status" = 404 ] || die "$path answered $status through nginx, not 404"
done
# (Read whole before grep: `grep -q` stops at the first match, and curl, cut off, would fail.)
for service in "$COMMAND_API_ADDR" "$QUERY_API_ADDR" "$PROJECTOR_ADDR"; do
    readiness=$(curl -fsS "http://$service/readyz")
    grep -q '"ready":true' <<<"$readiness" || die "$service is not ready: $readiness"
    metrics=$(curl -fsS "http://$service/metrics")
    grep -q '^# TYPE ' <<<"$metrics" || die "$service serves no metrics"
done
metrics=$(curl -fsS "http://$COMMAND_API_ADDR/metrics")
grep -q '^http_requests_total{method="POST",route="/douyin/user/register/"' <<<"$metrics" ||
    die "the command API's metrics do not count sign-ups"

# JSON is gzipped for a client that asks, and sent as it is to one that does not.
encoding() { curl -fsS -o /dev/null -D - "$@" "$BASE/douyin/publish/list/?user_id=$user_id&token=$token" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "content-encoding" { print $2 }'; }
[ "$(encoding -H 'Accept-Encoding: gzip')" = gzip ] || die "a list was not gzipped for a client that asked"
[ -z "$(encoding)" ] || die "a list was compressed for a client that did not ask"
curl -fsS --compressed "$BASE/douyin/publish/list/?user_id=$user_id&token=$token" | grep -q '"status_code":0' ||
    die "the gzipped list did not read back"

# Secrets in logs: a sign-up, a login, a wrong password, a refused write and a write that
# fails (the event store locked past the statement timeout), each carrying a known password
# or token in the query string as the client sends them; then no log of the stack (services,
# nginx) may hold either.
smoke_token=$token
password="pw-$RANDOM$RANDOM$RANDOM"
name="secret-$RANDOM$RANDOM"
reply=$(curl -fsS -X POST "$BASE/douyin/user/register/?username=$name&password=$password")
token=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["token"])' "$reply")
curl -fsS -X POST "$BASE/douyin/user/login/?username=$name&password=$password" >/dev/null
curl -fsS -X POST "$BASE/douyin/user/login/?username=$name&password=wrong-$password" >/dev/null
refused=$(curl -fsS -X POST "$BASE/douyin/comment/action/?token=$token&video_id=1&action_type=1&comment_text=%00")
grep -q '"status_code":400' <<<"$refused" || die "a NUL in a comment was not refused: $refused"
# The token in a multipart body too (an empty title is refused).
curl -fsS -X POST "$BASE/douyin/publish/action/" -F "token=$token" -F "title= " \
    -F "data=@$ROOT/system-tests/fixtures/clip.mp4;type=video/mp4" >/dev/null
events_db=$DATABASE_URL
psql "$events_db" -qc \
    "BEGIN; LOCK TABLE events IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(4); COMMIT;" >/dev/null &
locker=$!
for _ in $(seq 100); do
    held=$(psql "$events_db" -qtAc "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                                    WHERE c.relname = 'events' AND l.mode = 'AccessExclusiveLock' AND l.granted")
    [ "$held" = 1 ] && break
    sleep 0.05
done
failed=$(curl -sS -X POST "$BASE/douyin/relation/action/?token=$token&to_user_id=$user_id&action_type=1" || true)
wait "$locker"
grep -q '"status_code":50[03]' <<<"$failed" || die "the write under a locked event store did not fail: $failed"
sleep 0.5
logs=("$RUN_DIR"/*.log)
if grep -lF -e "$password" -e "$token" -e "$smoke_token" "${logs[@]}"; then
    die "a password or token was written to the logs above"
fi
log "no password or token in ${#logs[@]} logs ($(cat "${logs[@]}" | wc -l) lines)"
log "smoke test passed"
