#!/usr/bin/env bash
# `make bench`: every hot path of the client API under load, each beside a ceiling measured
# in the same run, printed as one table (docs/performance.md explains the columns and keeps
# the results).
#
# It runs a release stack of its own (ports 28080-28083, databases douyin_bench and
# douyin_bench_read, Redis keys douyin-bench:*, topics douyin-bench-<generation>.*, media in
# .run/bench)
# over a data set at scale made once by `bench-data make` through the domain's commands and
# kept between runs; `make run` never shows it. BENCH_SECONDS (10) is each load's length;
# BENCH_SCALE=small makes a set a hundredth of the size (a quick look, not the benchmark);
# BENCH_REMAKE=1 drops the set and makes it again; BENCH_ONLY runs some parts only (of
# "ceilings reads writes lag restart catch-up chat accounts limits replay redis-memory");
# BENCH_CATCH_UP_EVENTS (1,000,000) is the backlog the catch-up part makes;
# BENCH_WRITE_KINDS and BENCH_WRITE_CONNECTIONS (64) choose the write loads;
# BENCH_PROFILE=1 also records flame graphs of the feed and like paths (perf and inferno)
# into .run/bench/flamegraphs/.
#
# Load comes from wrk (Debian) on the same two cores, its CPU share reported; requests carry
# no Accept-Encoding unless said. Writes run with RATE_LIMIT=off, then again with the limits
# on (the limiter's cost: nearly every write past a user's budget is refused).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$ROOT"

SECONDS_EACH=${BENCH_SECONDS:-10}
# The parts to run, in this order (BENCH_ONLY picks some).
PARTS=${BENCH_ONLY:-ceilings reads writes lag restart catch-up chat accounts limits replay redis-memory}
part() { [[ " $PARTS " == *" $1 "* ]]; }
THREADS=2
ensure_services
ensure_nginx
command -v wrk >/dev/null || apt_install wrk
command -v pgbench >/dev/null || apt_install postgresql-client
command -v redis-benchmark >/dev/null || apt_install redis-tools
if [ "${BENCH_PROFILE:-0}" = 1 ]; then command -v perf >/dev/null || apt_install linux-perf; fi

# The broker ensure_services started (or found) stays where it is: its pid files are not the
# bench stack's (a cluster of KAFKA_NODES=3 is checked against them).
export KAFKA_RUN_DIR=${KAFKA_RUN_DIR:-$RUN_DIR}
export RUN_DIR=$ROOT/.run/bench
mkdir -p "$RUN_DIR"
export PROFILE=release
export PROXY_PORT=${BENCH_PROXY_PORT:-28080}
export COMMAND_API_ADDR=127.0.0.1:${BENCH_COMMAND_PORT:-28081}
export QUERY_API_ADDR=127.0.0.1:${BENCH_QUERY_PORT:-28082}
export PROJECTOR_ADDR=127.0.0.1:${BENCH_PROJECTOR_PORT:-28083}
CEILING_PORT=${BENCH_CEILING_PORT:-28090}
STATIC_ANSWER_ADDR=127.0.0.1:${BENCH_STATIC_PORT:-28091}
export PUBLIC_BASE_URL=http://127.0.0.1:$PROXY_PORT
export DATABASE_URL=$PG_SERVER/douyin_bench$PG_OPTIONS
export READ_DATABASE_URL=$PG_SERVER/douyin_bench_read
export REDIS_KEY_PREFIX=douyin-bench:
export RATE_LIMIT_KEY_PREFIX=douyin-bench-limits:
export KAFKA_TOPIC_PREFIX=douyin-bench.
export PROJECTOR_GROUP=douyin-bench
export MEDIA_DIR=$RUN_DIR/media
export RUST_LOG=${BENCH_RUST_LOG:-warn}
BASE=http://127.0.0.1:$PROXY_PORT
RESULTS=$RUN_DIR/results.jsonl
: >"$RESULTS"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

case ${BENCH_SCALE:-full} in
full) SCALE=() ;;
small) SCALE=(--users 1000 --videos 5000 --likes 10000 --follows 5000 --comments 5000 --messages 5000 --heavy-users 2 --list-len 200) ;;
*) die "BENCH_SCALE is full or small" ;;
esac

wipe_redis() {
    redis-cli -p "$REDIS_PORT" --scan --pattern "$1*" | xargs -r -n 500 redis-cli -p "$REDIS_PORT" unlink >/dev/null
}

stack() { RATE_LIMIT=${RATE_LIMIT:-off} "$ROOT/scripts/stack.sh" "$@"; }
cleanup() {
    stop_pid_file "$RUN_DIR/static-answer.pid"
    if [ -s "$RUN_DIR/ceiling-nginx/nginx.pid" ]; then
        "$(command -v nginx || echo /usr/sbin/nginx)" -p "$RUN_DIR/ceiling-nginx" -c "$RUN_DIR/ceiling-nginx/nginx.conf" -s quit 2>/dev/null || true
    fi
    stack down
}
stop_pid_file() {
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "$pid" 2>/dev/null || true
    rm -f "$1"
}

if [ "${BENCH_REMAKE:-0}" = 1 ]; then
    stack down
    log "dropping the bench data set"
    for db in douyin_bench douyin_bench_read; do
        psql_server -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
    done
    wipe_redis "$REDIS_KEY_PREFIX"
    rm -rf "$MEDIA_DIR"
    # The broker keeps the old set's events: new topics and group for the new set.
    date +%s >"$RUN_DIR/generation"
fi
[ -s "$RUN_DIR/generation" ] || date +%s >"$RUN_DIR/generation"
generation=$(cat "$RUN_DIR/generation")
export KAFKA_TOPIC_PREFIX=douyin-bench-$generation.
export PROJECTOR_GROUP=douyin-bench-$generation
create_database douyin_bench
create_database douyin_bench_read

log "building the services and the bench tools (release)"
cargo build --release --quiet --bins -p command-api -p query-api -p projector -p bench -p system-tests
trap cleanup EXIT
stack down
stack up

log "the data set (made once, then kept)"
# The video every video of the set shares: 10 s of 720p, as a phone would upload.
SAMPLE=$RUN_DIR/sample.mp4
if [ ! -s "$SAMPLE" ]; then
    ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -t 10 -pix_fmt yuv420p \
        -c:v libx264 -preset veryfast -movflags +faststart "$SAMPLE.tmp.mp4"
    mv "$SAMPLE.tmp.mp4" "$SAMPLE"
fi
FIXTURES=$RUN_DIR/fixtures.json
JWT_SECRET=${JWT_SECRET:-$(cat "$RUN_DIR/jwt-secret")} "$BIN/bench-data" make "${SCALE[@]}" \
    --video "$SAMPLE" --cover query-api/assets/cover.jpg --fixtures "$FIXTURES"
"$BIN/bench-data" wait
# What autovacuum would have done after a million and a half inserts (it may be off, as on
# the machine these figures come from): statistics for the planner, dead rows gone.
for db in douyin_bench douyin_bench_read; do
    psql "$PG_SERVER/$db" -qc "VACUUM ANALYZE" 2>/dev/null
done

# Inputs of the wrk scripts, from the fixtures.
INPUTS=$RUN_DIR/inputs
mkdir -p "$INPUTS"
python3 - "$FIXTURES" "$INPUTS" <<'PY'
import json, random, sys
fixtures, out = json.load(open(sys.argv[1])), sys.argv[2]
random.seed(7)
writers = fixtures["writers"]
# The last writer is the write-to-read probe's, left out of the loads.
probe, writers = writers[-1], writers[:-1]
heavy = fixtures["heavy"][0]
first, last = fixtures["first_published_at"], fixtures["last_published_at"]
def write(name, lines):
    with open(f"{out}/{name}", "w") as f:
        f.write("\n".join(lines) + "\n")
write("writers", [f"{w['id']} {w['token']}" for w in writers])
write("probe", [str(probe["id"]), probe["token"]])
write("videos", [f"{fixtures['first_video']} {fixtures['last_video']}"])
users = [w["id"] for w in fixtures["writers"]] + [h["id"] for h in fixtures["heavy"]]
write("users", [f"{min(users)} {max(users)}"])
tokens = [w["token"] for w in writers[:64]]
write("feed-token", [f"/douyin/feed/?token={t}" for t in tokens])
write("feed-anonymous", ["/douyin/feed/"])
write("feed-deep-token", [f"/douyin/feed/?token={random.choice(tokens)}&latest_time={random.randint(first + 1000, last)}" for _ in range(2000)])
write("feed-deep-anonymous", [f"/douyin/feed/?latest_time={random.randint(first + 1000, last)}" for _ in range(2000)])
write("user-info", [f"/douyin/user/?user_id={random.choice(users)}&token={random.choice(tokens)}" for _ in range(2000)])
h, t = heavy["id"], heavy["token"]
write("list-favorite", [f"/douyin/favorite/list/?user_id={h}&token={tokens[0]}"])
write("list-publish", [f"/douyin/publish/list/?user_id={h}&token={tokens[0]}"])
write("list-comment", [f"/douyin/comment/list/?video_id={heavy['commented_video']}&token={tokens[0]}"])
write("list-follow", [f"/douyin/relation/follow/list/?user_id={h}&token={tokens[0]}"])
write("list-follower", [f"/douyin/relation/follower/list/?user_id={h}&token={tokens[0]}"])
write("list-friend", [f"/douyin/relation/friend/list/?user_id={h}&token={t}"])
write("chat", [f"/douyin/message/chat/?to_user_id={heavy['chat_with']}&token={t}&pre_msg_time=0"])
write("chat-idle", [f"/douyin/message/chat/?to_user_id={heavy['id']}&token={w['token']}&pre_msg_time={last}" for w in writers])
PY
probe_id=$(sed -n 1p "$INPUTS/probe")
probe_token=$(sed -n 2p "$INPUTS/probe")
read -r first_video last_video <"$INPUTS/videos"

# CPU seconds (user + system) of a process so far.
cpu_seconds() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
resident_mib() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

# The processes whose memory is reported: the three services, and the broker (Apache Kafka's
# JVM; with KAFKA_NODES=3, each node's, summed).
MEMORY_OF=(command-api query-api projector broker)
pids_of() { # name
    if [ "$1" = broker ]; then
        local i
        for i in $(seq "$KAFKA_NODES"); do
            ss -Hltnp "sport = :$(kafka_port "$i")" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2
        done
    else
        cat "$RUN_DIR/$1.pid" 2>/dev/null
    fi
}
resident_mib_of() { # name: the sum over its processes
    local pid total=0 now
    for pid in $(pids_of "$1"); do
        now=$(resident_mib "$pid" 2>/dev/null) || continue
        total=$((total + ${now:-0}))
    done
    echo "$total"
}

# Peak resident memory of each while the runs go on, sampled twice a second.
watch_memory() {
    local peaks=$RUN_DIR/memory-peaks
    : >"$peaks"
    (
        declare -A peak
        while true; do
            for name in "${MEMORY_OF[@]}"; do
                now=$(resident_mib_of "$name")
                if [ "${now:-0}" -gt "${peak[$name]:-0}" ]; then
                    peak[$name]=$now
                    for n in "${MEMORY_OF[@]}"; do echo "$n ${peak[$n]:-0}"; done >"$peaks.tmp"
                    mv "$peaks.tmp" "$peaks"
                fi
            done
            sleep 0.5
        done
    ) &
    MEMORY_WATCH=$!
}

# wrk_run NAME CONNECTIONS CEILING SCRIPT [wrk arguments]: one load, its RESULT recorded.
# The machine's CPU time so far, busy and in all, in clock ticks (/proc/stat's first line).
cpu_ticks() {
    awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat
}
# How busy the machine was since `cpu_ticks` said $1 $2: "machine 97% busy".
machine_busy() { # busy total
    local busy total
    read -r busy total < <(cpu_ticks)
    awk -v b=$((busy - $1)) -v t=$((total - $2)) 'BEGIN { printf "machine %.0f%% busy", t ? 100 * b / t : 0 }'
}
wrk_run() {
    local name=$1 connections=$2 ceiling=$3 script=$4
    shift 4
    local out wrk_cpu busy_before total_before
    read -r busy_before total_before < <(cpu_ticks)
    out=$( { TIMEFORMAT='WRKCPU %U %S %R'; time wrk -t"$THREADS" -c"$connections" -d"${RUN_SECONDS:-$SECONDS_EACH}s" --timeout 10s -s "bench/wrk/$script" "$@"; } 2>&1) ||
        { echo "$out" >&2; die "wrk failed: $name"; }
    local line
    line=$(grep '^RESULT' <<<"$out") || { echo "$out" >&2; die "no result from wrk: $name"; }
    wrk_cpu=$(awk '/^WRKCPU/ { printf "wrk %.0f%% of the cpus", 100 * ($2 + $3) / $4 / 2 }' <<<"$out")
    wrk_cpu="$wrk_cpu, $(machine_busy "$busy_before" "$total_before")"
    python3 scripts/bench_table.py record "$RESULTS" "$name" "$connections" "$ceiling" "$line" "$wrk_cpu"
    printf '  %-44s %s (%s)\n' "$name" "${line#RESULT }" "$wrk_cpu"
}

reads() {
    WRK_PATHS=$INPUTS/$2 wrk_run "$1" "$3" "$4" paths.lua "${@:5}" "$BASE"
}

watch_memory

if part ceilings; then
log "ceilings"
mkdir -p "$RUN_DIR/ceiling-nginx/root" "$RUN_DIR/ceiling-nginx/tmp"
feed_page=$RUN_DIR/ceiling-nginx/root/feed.json
curl -fsS "$BASE$(head -n1 "$INPUTS/feed-token")" -o "$feed_page"
feed_bytes=$(stat -c %s "$feed_page")
cp "$SAMPLE" "$RUN_DIR/ceiling-nginx/root/clip.mp4"
cat >"$RUN_DIR/ceiling-nginx/nginx.conf" <<CONF
worker_processes auto;
pid $RUN_DIR/ceiling-nginx/nginx.pid;
error_log $RUN_DIR/ceiling-nginx/error.log crit;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $RUN_DIR/ceiling-nginx/tmp/body;
    proxy_temp_path $RUN_DIR/ceiling-nginx/tmp/proxy;
    fastcgi_temp_path $RUN_DIR/ceiling-nginx/tmp/fastcgi;
    uwsgi_temp_path $RUN_DIR/ceiling-nginx/tmp/uwsgi;
    scgi_temp_path $RUN_DIR/ceiling-nginx/tmp/scgi;
    upstream static_answer { server $STATIC_ANSWER_ADDR; keepalive 32; keepalive_timeout 30s; }
    server {
        listen 127.0.0.1:$CEILING_PORT;
        location = /douyin/feed/ { root $RUN_DIR/ceiling-nginx/root; try_files /feed.json =404; default_type application/json; }
        location = /clip.mp4 { root $RUN_DIR/ceiling-nginx/root; }
        location /proxied/ {
            proxy_pass http://static_answer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
"$BIN/static-answer" "$STATIC_ANSWER_ADDR" "$feed_page" >"$RUN_DIR/static-answer.log" 2>&1 &
echo $! >"$RUN_DIR/static-answer.pid"
"$(command -v nginx || echo /usr/sbin/nginx)" -p "$RUN_DIR/ceiling-nginx" -c "$RUN_DIR/ceiling-nginx/nginx.conf"
wait_for_port "${STATIC_ANSWER_ADDR##*:}" "the static answer" 10
wait_for_port "$CEILING_PORT" "the ceiling nginx" 10
echo "/douyin/feed/" >"$INPUTS/ceiling-file"
echo "/proxied/feed" >"$INPUTS/ceiling-proxied"
ceiling_wrk() { # id what connections paths-file [wrk arguments]
    local out line
    out=$(WRK_PATHS=$INPUTS/$4 wrk -t"$THREADS" -c"$3" -d"${SECONDS_EACH}s" -s bench/wrk/paths.lua "${@:5}" "http://127.0.0.1:$CEILING_PORT" 2>&1)
    line=$(grep '^RESULT' <<<"$out") || { echo "$out" >&2; die "no result from wrk: $2"; }
    python3 scripts/bench_table.py ceiling "$RESULTS" "$1" "$2" "$line" "$3"
    printf '  [%s] %-40s %s\n' "$1" "$2" "${line#RESULT }"
}
ceiling_wrk a "nginx sends the feed page ($feed_bytes B) as a file" 64 ceiling-file
ceiling_wrk a1 "the same bytes through nginx from actix-web" 64 ceiling-proxied
ceiling_wrk agz "the file, gzip asked for (gzip off: as sent)" 64 ceiling-file -H "Accept-Encoding: gzip"
echo "/clip.mp4" >"$INPUTS/ceiling-range"
ceiling_wrk r "nginx sends 1 MiB ranges of the video ($(stat -c %s "$SAMPLE") B)" 8 ceiling-range -H "Range: bytes=0-1048575"

psql_server -c "DROP DATABASE IF EXISTS bench_pgbench" >/dev/null
create_database bench_pgbench
psql "$PG_SERVER/bench_pgbench" -qc "CREATE TABLE rows (id bigserial PRIMARY KEY, value bigint NOT NULL)"
echo 'INSERT INTO rows (value) VALUES (1);' >"$RUN_DIR/pgbench-insert.sql"
pg=$(pgbench "$PG_SERVER/bench_pgbench$PG_OPTIONS" -n -c 64 -j 2 -T "$SECONDS_EACH" -f "$RUN_DIR/pgbench-insert.sql" 2>&1)
pg_tps=$(awk '/^tps/ { print $3 }' <<<"$pg")
pg_latency=$(awk '/^latency average/ { print $4 }' <<<"$pg")
python3 scripts/bench_table.py ceiling "$RESULTS" b "pgbench: one single-row INSERT a transaction" "RESULT rps=$pg_tps p50_ms=$pg_latency" 64
printf '  [b] %-40s %s tps, average %s ms\n' "pgbench single-row INSERTs" "$pg_tps" "$pg_latency"
psql_server -c "DROP DATABASE IF EXISTS bench_pgbench" >/dev/null

video_key=${REDIS_KEY_PREFIX}video:$first_video
user_key=${REDIS_KEY_PREFIX}user:$probe_id
redis_ops() { # command...
    local out rps
    out=$(redis-benchmark -p "$REDIS_PORT" -c 64 -n 200000 -q "$@" 2>&1 | tr '\r' '\n' | grep "requests per second" | tail -n1)
    rps=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "requests") print $(i - 1) }' <<<"$out")
    echo "${rps:-0}"
}
r_hgetall=$(redis_ops HGETALL "$video_key")
r_smismember=$(redis_ops SMISMEMBER "${REDIS_KEY_PREFIX}user:$probe_id:likes" $(seq "$first_video" $((first_video + 29))))
r_zrange=$(redis_ops ZREVRANGEBYSCORE "${REDIS_KEY_PREFIX}feed" +inf -inf LIMIT 0 30)
r_pipeline=$(redis_ops -P 32 HGETALL "$user_key")
# A feed page asks for ~62 of these: the page rate Redis alone could serve.
python3 scripts/bench_table.py ceiling "$RESULTS" c "redis: HGETALL $r_hgetall/s, SMISMEMBER(30) $r_smismember/s, ZREVRANGEBYSCORE $r_zrange/s, HGETALL pipelined by 32 $r_pipeline/s" "RESULT rps=$r_pipeline" 64
printf '  [c] redis-benchmark: HGETALL %s/s, SMISMEMBER(30) %s/s, ZREVRANGEBYSCORE %s/s, pipelined HGETALL %s/s\n' \
    "$r_hgetall" "$r_smismember" "$r_zrange" "$r_pipeline"

trip=$("$BIN/broker-round-trip" --messages 300 | grep '^RESULT')
python3 scripts/bench_table.py ceiling "$RESULTS" d "broker: produce then consume one message (rdkafka)" "$trip" 1
printf '  [d] %-40s %s\n' "broker round trip" "${trip#RESULT }"

fi
profile() { # name pid: records $1's stacks for a few seconds while the load runs
    [ "${BENCH_PROFILE:-0}" = 1 ] || return 0
    mkdir -p "$RUN_DIR/flamegraphs"
    (sleep 2 && perf record -F 299 --call-graph dwarf,16384 -p "$2" -o "$RUN_DIR/flamegraphs/$1.perf" -- sleep 5 >/dev/null 2>&1) &
    PERF=$!
}
flamegraph() { # name
    [ "${BENCH_PROFILE:-0}" = 1 ] || return 0
    wait "$PERF"
    ensure_inferno
    perf script -i "$RUN_DIR/flamegraphs/$1.perf" 2>/dev/null | "$CARGO_BIN/inferno-collapse-perf" |
        "$CARGO_BIN/inferno-flamegraph" --title "$1" >"$RUN_DIR/flamegraphs/$1.svg"
    log "flame graph: $RUN_DIR/flamegraphs/$1.svg"
}
ensure_inferno() {
    [ -x "$CARGO_BIN/inferno-flamegraph" ] || cargo install inferno --locked --quiet
}

if part reads; then
log "reads (64 connections unless said)"
profile feed "$(cat "$RUN_DIR/query-api.pid")"
reads "feed, token, first page" feed-token 64 a
flamegraph feed
reads "feed, token, first page, gzip asked for" feed-token 64 agz -H "Accept-Encoding: gzip"
reads "feed, no token, first page" feed-anonymous 64 a
reads "feed, token, deep pages" feed-deep-token 64 a
reads "feed, no token, deep pages" feed-deep-anonymous 64 a
reads "user info" user-info 64 a
for list in favorite publish comment follow follower friend; do
    reads "$list list, 1,000 items" "list-$list" 8 -
done
reads "chat, 1,000 messages" chat 8 -
echo "/media/videos/$first_video.mp4" >"$INPUTS/range"
WRK_PATHS=$INPUTS/range wrk_run "video, 1 MiB ranges" 8 r paths.lua -H "Range: bytes=0-1048575" "$BASE"

fi
# How the command API's waits for read after write ended since it started, by reason
# ("applied 10179 bound 0 ..."): a wait that hit its bound means a write answered "saved; it
# will show shortly", which no bench part should see.
waits_ended() { # label
    local counts
    counts=$(curl -fsS "http://$COMMAND_API_ADDR/metrics" |
        sed -n 's/^read_after_write_waits_total{reached="\([a-z_]*\)"} \([0-9.e+]*\)$/\1 \2/p' | tr '\n' ' ')
    python3 scripts/bench_table.py record "$RESULTS" "$1: how the writes' waits ended" - - "RESULT" "${counts:-none waited}"
    printf '  %-44s %s\n' "$1: how the writes' waits ended" "${counts:-none waited}"
}
writes() { # label suffix
    local kind
    for kind in ${BENCH_WRITE_KINDS:-like comment follow message}; do
        if [ "$kind" = like ]; then profile "like$2" "$(cat "$RUN_DIR/command-api.pid")"; fi
        python3 scripts/cpu_by_process.py snap "$RUN_DIR/cpu-by-process.json"
        local out requests
        out=$(WRK_WRITE=$kind WRK_TOKENS=$INPUTS/writers WRK_VIDEOS=$INPUTS/videos WRK_USERS=$INPUTS/users WRK_THREADS=$THREADS \
            wrk_run "$kind$1" "${BENCH_WRITE_CONNECTIONS:-64}" b writes.lua "$BASE")
        echo "$out"
        requests=$(grep -o 'requests=[0-9]*' <<<"$out" | head -n1 | cut -d= -f2)
        if [ "$kind" = like ]; then flamegraph "like$2"; fi
        # Answered before projected, writes leave the projector a backlog: the time and CPU
        # it takes to apply it belong to the run (none is left with the wait on).
        local busy total busy_before total_before started=$SECONDS
        read -r busy_before total_before < <(cpu_ticks)
        "$BIN/bench-data" wait --timeout 600 >/dev/null
        read -r busy total < <(cpu_ticks)
        python3 scripts/bench_table.py record "$RESULTS" "$kind$1: projected after the run" - - "RESULT" \
            "in $((SECONDS - started)) s, $(( (busy - busy_before) / 100 )) cpu-seconds busy"
        printf '  %-44s %s\n' "$kind$1: projected after the run" "in $((SECONDS - started)) s, $(( (busy - busy_before) / 100 )) cpu-seconds busy"
        # Where the machine's time went, per request, the backlog's projection included.
        local spent
        spent=$(python3 scripts/cpu_by_process.py per "$RUN_DIR/cpu-by-process.json" "${requests:-1}")
        python3 scripts/bench_table.py record "$RESULTS" "$kind$1: CPU per request, by process" - - "RESULT" "$spent"
        printf '  %-44s %s\n' "$kind$1: CPU per request, by process" "$spent"
    done
}
if part writes; then
log "writes, rate limits off, each answered once readable (READ_AFTER_WRITE on, the default)"
writes "" ""
waits_ended "writes, READ_AFTER_WRITE on"
log "writes, rate limits off, answered once committed (READ_AFTER_WRITE=off)"
READ_AFTER_WRITE=off stack down
READ_AFTER_WRITE=off stack up
writes ", no wait" "-no-wait"
stack down
stack up
fi

if part lag; then
log "write to read: one user likes and polls its favorite list while others like at a fixed rate"
"$BIN/bench-data" wait --timeout 600 >/dev/null
probe() { # label
    local out line write
    out=$("$BIN/like-to-list" --base "$BASE" --user-id "$probe_id" --token "$probe_token" \
        --first-video "$first_video" --tries "${BENCH_PROBES:-200}")
    line=$(grep '^RESULT' <<<"$out")
    write=$(grep '^WRITE' <<<"$out")
    python3 scripts/bench_table.py record "$RESULTS" "$1" 1 d "$line"
    python3 scripts/bench_table.py record "$RESULTS" "$1: the like's answer" 1 d "RESULT ${write#WRITE }"
    printf '  %-44s %s\n' "$1" "${line#RESULT }" "$1: the like's answer" "${write#WRITE }"
}
# With the wait, a like is answered once readable: its answer's latency is the measure, and
# the lag after it is nil. Without, the lag is the pipeline's (comparable with earlier runs).
probe "write to read, at rest, READ_AFTER_WRITE on"
# The like's answer with the wait, under likes paced at 500/s (the target: p99 < 100 ms).
WRK_WRITE=like WRK_TOKENS=$INPUTS/writers WRK_VIDEOS=$INPUTS/videos WRK_USERS=$INPUTS/users \
    WRK_THREADS=$THREADS WRK_RATE=500 RUN_SECONDS=$((SECONDS_EACH * 3)) \
    wrk_run "likes paced at 500/s, READ_AFTER_WRITE on (background)" 64 b writes.lua "$BASE" >"$RUN_DIR/paced.log" &
paced=$!
sleep 2
probe "write to read, likes at 500/s, READ_AFTER_WRITE on"
wait "$paced" || true
tail -n1 "$RUN_DIR/paced.log"
waits_ended "write to read, READ_AFTER_WRITE on"
log "write to read, with READ_AFTER_WRITE=off (answers once committed)"
READ_AFTER_WRITE=off stack down
READ_AFTER_WRITE=off stack up
"$BIN/bench-data" wait --timeout 600 >/dev/null
probe "write to read, at rest"
for rate in 500 1000; do
    # 64 connections sending $rate requests a second in all (see bench/wrk/report.lua).
    WRK_WRITE=like WRK_TOKENS=$INPUTS/writers WRK_VIDEOS=$INPUTS/videos WRK_USERS=$INPUTS/users \
        WRK_THREADS=$THREADS WRK_RATE=$rate RUN_SECONDS=$((SECONDS_EACH * 3)) \
        wrk_run "likes paced at $rate/s (background)" 64 b writes.lua "$BASE" >"$RUN_DIR/paced.log" &
    paced=$!
    sleep 2
    probe "write to read, likes at $rate/s"
    wait "$paced" || true
    tail -n1 "$RUN_DIR/paced.log"
done
stack down
stack up
fi

if part restart; then
    # One user likes, each like answered once readable, while the projector is stopped
    # (SIGTERM: it commits and leaves as a static member) and started again: the longest answer
    # is how long consumption paused, the restart included.
    log "restart: the projector stopped and started again while a user likes"
    "$BIN/bench-data" wait --timeout 600 >/dev/null
    "$BIN/like-to-list" --base "$BASE" --user-id "$probe_id" --token "$probe_token" \
        --first-video "$first_video" --tries 1000 >"$RUN_DIR/restart.log" &
    probe=$!
    sleep 5
    pid=$(cat "$RUN_DIR/projector.pid")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    stack up
    wait "$probe" || die "the probe failed: $(cat "$RUN_DIR/restart.log")"
    line=$(grep '^WRITE' "$RUN_DIR/restart.log")
    python3 scripts/bench_table.py record "$RESULTS" "the like's answer while the projector restarts (max: the pause)" 1 - "RESULT ${line#WRITE }"
    printf '  %-44s %s\n' "the like's answer while the projector restarts" "${line#WRITE }"
fi

if part catch-up; then
    # The projector stopped while a burst of likes is written and published, then started: how
    # fast it consumes the backlog with its settings as they are, beside a bare consumer with
    # the same settings reading the same backlog (ceiling e).
    backlog=${BENCH_CATCH_UP_EVENTS:-1000000}
    log "catch-up: the projector stopped while $backlog events are written, then started"
    "$BIN/bench-data" wait --timeout 600 >/dev/null
    pid=$(cat "$RUN_DIR/projector.pid")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    "$BIN/bench-data" backlog --events "$backlog"
    "$BIN/bench-data" wait --published --timeout 1800
    line=$("$BIN/catch-up" ceiling | grep '^RESULT')
    python3 scripts/bench_table.py ceiling "$RESULTS" e "broker: a bare consumer (the projector's settings) reading the backlog" "$line" 1
    printf '  [e] %-40s %s\n' "bare consumer, the backlog" "${line#RESULT }"
    "$BIN/catch-up" watch >"$RUN_DIR/catch-up.log" &
    watcher=$!
    stack up
    profile catch-up "$(cat "$RUN_DIR/projector.pid")"
    wait "$watcher" || die "the projector did not catch up: $(cat "$RUN_DIR/catch-up.log")"
    flamegraph catch-up
    line=$(grep '^RESULT' "$RUN_DIR/catch-up.log")
    python3 scripts/bench_table.py record "$RESULTS" "catch-up: the projector's backlog of $backlog events, events/s" 1 e "$line" \
        "$(grep -o 'seconds=[0-9.]*' <<<"$line") from its start, offsets committed each second"
    printf '  %s\n' "${line#RESULT }"
fi

if part chat; then
log "1,000 idle users polling chat once a second, while likes run at 500/s"
WRK_WRITE=like WRK_TOKENS=$INPUTS/writers WRK_VIDEOS=$INPUTS/videos WRK_USERS=$INPUTS/users \
    WRK_THREADS=$THREADS WRK_RATE=500 RUN_SECONDS=$((SECONDS_EACH + 4)) wrk_run "likes paced at 500/s, beside chat polls" 64 b writes.lua "$BASE" >"$RUN_DIR/paced.log" &
paced=$!
WRK_PATHS=$INPUTS/chat-idle WRK_THREADS=$THREADS WRK_RATE=1000 wrk_run "chat polled by 1,000 idle users" 1000 - paths.lua "$BASE"
wait "$paced" || true
tail -n1 "$RUN_DIR/paced.log"
fi

if part accounts; then
log "register and login"
"$BIN/sign-up-flood" "$BASE" "$(cat "$RUN_DIR/command-api.pid")" "${FLOOD_BURSTS:-64,256}" | tee "$RUN_DIR/sign-up-flood.log"
fi

if part limits; then
log "writes, rate limits on (the defaults)"
RATE_LIMIT=on stack down
RATE_LIMIT=on "$ROOT/scripts/stack.sh" up
writes ", limits on" "-limited"
stack down
stack up
fi

if part replay; then
    log "replay: make rebuild on the live stack (every read model from the event store), a client reading every 50 ms"
    events=$(psql "$DATABASE_URL" -tAc "SELECT count(*) FROM events")
    "$BIN/projector" rebuild --quiet >"$RUN_DIR/rebuild.log" 2>"$RUN_DIR/rebuild.err" &
    rebuilder=$!
    # Redis (the feed, a user's card) and Postgres (a list of 1,000 videos, a comment list).
    python3 scripts/poll_reads.py 0.05 "$rebuilder" "$BASE/douyin/feed/" \
        "$BASE$(cat "$INPUTS/list-favorite")" "$BASE$(cat "$INPUTS/list-comment")" \
        "$BASE$(head -1 "$INPUTS/user-info")" >"$RUN_DIR/rebuild-reads.log" || true
    wait "$rebuilder" || die "the rebuild failed: $(tail -5 "$RUN_DIR/rebuild.err")"
    cat "$RUN_DIR/rebuild.log"
    rate=$(sed -n 's/.*(\([0-9]*\) events\/s).*/\1/p' "$RUN_DIR/rebuild.log")
    python3 scripts/bench_table.py record "$RESULTS" "replay (make rebuild): $events events, events/s" 1 - "RESULT rps=$rate"
    reads=$(head -1 "$RUN_DIR/rebuild-reads.log")
    python3 scripts/bench_table.py record "$RESULTS" "reads every 50 ms during make rebuild" 1 - "$reads" \
        "$(echo "$reads" | grep -o 'polls=.*'); at the switch $(grep -o 'projectors paused [0-9]* ms, readers of Postgres held at most [0-9]* ms' "$RUN_DIR/rebuild.log")"
    printf '  %s\n' "$reads"
fi

if part redis-memory; then
    log "redis memory: a million likes through the projector's plans and Lua, in a Redis of its own"
    port=${BENCH_REDIS_MEMORY_PORT:-28099}
    port_open "$port" && die "port $port is taken"
    mkdir -p "$RUN_DIR/redis-memory"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --dir "$RUN_DIR/redis-memory" --logfile "$RUN_DIR/redis-memory/redis.log"
    wait_for_port "$port" "the memory benchmark's Redis" 30
    line=$("$BIN/redis-memory" --redis-url "redis://127.0.0.1:$port" | grep '^RESULT') || true
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    [ -n "$line" ] || die "no result from redis-memory"
    python3 scripts/bench_table.py record "$RESULTS" "redis: read models per million likes (MiB)" 1 - "$line"
    printf '  %s\n' "${line#RESULT }"
fi

kill "$MEMORY_WATCH" 2>/dev/null || true
log "resident memory (MiB): peak during the runs, and now"
for name in "${MEMORY_OF[@]}"; do
    peak=$(awk -v n="$name" '$1 == n { print $2 }' "$RUN_DIR/memory-peaks")
    printf '  %-12s peak %s (services: since their last start), now %s\n' "$name" "$peak" "$(resident_mib_of "$name")"
    python3 scripts/bench_table.py record "$RESULTS" "resident memory, $name" - - "RESULT" "peak ${peak:-0} MiB"
done

log "results ($(nproc) cores, $(date -u +%F)); kept in $RESULTS"
python3 scripts/bench_table.py print "$RESULTS" | tee "$RUN_DIR/results.md"
