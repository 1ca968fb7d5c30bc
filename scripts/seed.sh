#!/usr/bin/env bash
# Demo data through the real API on :8080: three demo users, a handful of short videos made
# with ffmpeg, and some follows, likes, comments and messages between the users. Starts the
# stack (in the background) unless it already answers. Safe to run again: users log in
# instead of registering, and each run adds the videos once more.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROXY_PORT=${PROXY_PORT:-8080}
BASE=http://127.0.0.1:$PROXY_PORT
ensure_ffmpeg
port_open "$PROXY_PORT" || "$ROOT/scripts/stack.sh" up

json_field() { python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["status_code"]==0, r; print(r[sys.argv[2]])' "$1" "$2"; }

declare -A TOKEN ID
for name in ava ben cleo; do
    reply=$(curl -fsS -X POST "$BASE/douyin/user/register/" --data-urlencode "username=demo-$name" --data-urlencode "password=demo-$name-pw")
    if ! grep -q '"status_code":0' <<<"$reply"; then
        reply=$(curl -fsS -X POST "$BASE/douyin/user/login/" --data-urlencode "username=demo-$name" --data-urlencode "password=demo-$name-pw")
    fi
    TOKEN[$name]=$(json_field "$reply" token)
    ID[$name]=$(json_field "$reply" user_id)
done
log "demo users: demo-ava, demo-ben, demo-cleo (password demo-<name>-pw)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# author | title | ffmpeg lavfi source
videos=(
    "ava|Test card at dawn|testsrc2=size=540x960:rate=25"
    "ben|Mandelbrot dive|mandelbrot=size=540x960:rate=25"
    "cleo|Colour bars|smptehdbars=size=540x960:rate=25"
    "ava|Sierpinski carpet|sierpinski=size=540x960:rate=25"
    "ben|Cellular rule 110|cellauto=rule=110:size=540x960:rate=25"
    "cleo|Gradient drift|gradients=size=540x960:rate=25:speed=0.05"
)
for entry in "${videos[@]}"; do
    IFS='|' read -r author title source <<<"$entry"
    file="$work/video.mp4"
    ffmpeg -loglevel error -y -f lavfi -i "$source" -t 4 -pix_fmt yuv420p -c:v libx264 \
        -preset veryfast -crf 30 -movflags +faststart "$file"
    reply=$(curl -fsS -X POST "$BASE/douyin/publish/action/" \
        -F "token=${TOKEN[$author]}" -F "title=$title" -F "data=@$file;type=video/mp4")
    grep -q '"status_code":0' <<<"$reply" || die "publishing \"$title\" failed: $reply"
    echo "published \"$title\" by demo-$author"
done

post() { curl -fsS -X POST "$BASE$1" "${@:2}" >/dev/null; }
post /douyin/relation/action/ --data-urlencode "token=${TOKEN[ava]}" -d "to_user_id=${ID[ben]}&action_type=1"
post /douyin/relation/action/ --data-urlencode "token=${TOKEN[ben]}" -d "to_user_id=${ID[ava]}&action_type=1"
post /douyin/relation/action/ --data-urlencode "token=${TOKEN[cleo]}" -d "to_user_id=${ID[ava]}&action_type=1"
post /douyin/message/action/ --data-urlencode "token=${TOKEN[ben]}" -d "to_user_id=${ID[ava]}&action_type=1" --data-urlencode "content=Loved the test card!"
feed=$(curl -fsS "$BASE/douyin/feed/")
for video in $(python3 -c 'import json,sys; print(" ".join(str(v["id"]) for v in json.loads(sys.argv[1])["video_list"][:4]))' "$feed"); do
    post /douyin/favorite/action/ --data-urlencode "token=${TOKEN[cleo]}" -d "video_id=$video&action_type=1"
    post /douyin/comment/action/ --data-urlencode "token=${TOKEN[ben]}" -d "video_id=$video&action_type=1" --data-urlencode "comment_text=Nice one"
done
log "demo data loaded: open the client on $BASE"
