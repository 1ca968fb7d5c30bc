#!/usr/bin/env bash
# Likes under faults (release build, through nginx), with two command APIs (their relays
# competing for the outbox) and two projectors (sharing the partitions): while users toggle
# likes, every few seconds this kills something with SIGKILL and starts it again: a projector,
# a command API, the query API, the broker; Redis, brought back from a snapshot taken a round
# earlier (missing the likes since), with a projector killed as it finds that out; Postgres,
# restarted; Redis again, brought back empty. Then every read must agree with every answered
# write, no write may have been answered "internal error" (system-tests' likes-under-faults),
# and `verify` must find the read models and topics equal to the events. Meanwhile `make
# rebuild` runs over and over (each replaying every event into a new generation and switching
# to it), meeting every fault above, and is itself killed now and then: a run after a crash
# takes up where it stopped. One more runs to the end before `verify`. The stack gets a
# Redis of its own for this, on FAULT_REDIS_PORT (6390), so stop a running stack first
# (make down). Restarting Postgres needs the local cluster's pg_ctlcluster (Debian's), and is
# skipped without it.
#
#   USERS=40 LIKE_SECONDS=70 make faults
set -euo pipefail
source "$(dirname "$0")/lib.sh"
PROXY_PORT=${PROXY_PORT:-8080}
BASE=http://127.0.0.1:$PROXY_PORT
USERS=${USERS:-40}
SECONDS_OF_LIKES=${LIKE_SECONDS:-70}
FAULT_REDIS_PORT=${FAULT_REDIS_PORT:-6390}
export REDIS_URL=redis://127.0.0.1:$FAULT_REDIS_PORT
# Forty users toggling as fast as they can are not people on phones.
export RATE_LIMIT=off

if port_open "$PROXY_PORT"; then
    die "a stack already answers on :$PROXY_PORT: stop it first (make down)"
fi
mkdir -p "$RUN_DIR"

REDIS_DIR=$RUN_DIR/fault-redis
rm -rf "$REDIS_DIR"
mkdir -p "$REDIS_DIR"

# Starts the stack's Redis from its snapshot (dump.rdb), if there is one: it saves only when
# told to (SAVE), so that is the data as of then.
start_redis() {
    redis-server --daemonize yes --bind 127.0.0.1 --port "$FAULT_REDIS_PORT" --save "" --appendonly no \
        --pidfile "$RUN_DIR/fault-redis.pid" --logfile "$RUN_DIR/fault-redis.log" \
        --dir "$REDIS_DIR" --dbfilename dump.rdb
    wait_for_port "$FAULT_REDIS_PORT" "the stack's Redis" 30
}

restart_postgres() {
    local cluster
    cluster=$(pg_lsclusters -h 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2 }')
    if [ -z "$cluster" ]; then
        log "no local Postgres cluster on :$PG_PORT: not restarting Postgres"
        return
    fi
    log "restarting Postgres ($cluster)"
    # shellcheck disable=SC2086 # version and name
    as_root pg_ctlcluster $cluster restart -m fast
}

likes=
rebuilds=
cleanup() {
    if [ -n "$likes" ]; then kill "$likes" 2>/dev/null || true; fi
    touch "$RUN_DIR/rebuilds.stop"
    if [ -n "$rebuilds" ]; then kill "$rebuilds" 2>/dev/null || true; fi
    kill_hard rebuild
    "$ROOT/scripts/stack.sh" down
    kill_hard fault-redis
}
kill_hard() { # name
    local pid
    pid=$(cat "$RUN_DIR/$1.pid" 2>/dev/null) || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    log "killing $1 (SIGKILL)"
    kill -KILL "$pid" 2>/dev/null || true
}
# One `make rebuild`; its pid in rebuild.pid, so that a round can kill it.
rebuild() {
    "$ROOT/scripts/stack.sh" projector rebuild --quiet >>"$RUN_DIR/rebuilds.log" 2>&1 &
    echo $! >"$RUN_DIR/rebuild.pid"
    wait $!
}
# Rebuilds one after another until told to stop; counts those that switched and those that
# did not (killed, or failed on a fault: Postgres restarting, Redis losing the generation).
rebuild_loop() {
    local switched=0 stopped=0
    while [ ! -e "$RUN_DIR/rebuilds.stop" ]; do
        if rebuild; then switched=$((switched + 1)); else stopped=$((stopped + 1)); fi
        sleep 1
    done
    echo "$switched $stopped" >"$RUN_DIR/rebuilds.count"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_redis # the scripts' own tools (redis-server) on a fresh machine
start_redis
"$ROOT/scripts/stack.sh" up
"$ROOT/scripts/stack.sh" extra
(cd "$ROOT" && cargo build --release --quiet -p system-tests --bin likes-under-faults)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/likes-under-faults" "$BASE" "$USERS" "$SECONDS_OF_LIKES" &
likes=$!
rm -f "$RUN_DIR/rebuilds.stop" "$RUN_DIR/rebuilds.count"
: >"$RUN_DIR/rebuilds.log"
rebuild_loop &
rebuilds=$!

round=0
sleep 5
while kill -0 "$likes" 2>/dev/null && [ $round -lt $((SECONDS_OF_LIKES / 6)) ]; do
    case $((round % 6)) in
    0) kill_hard projector ;;
    1)
        log "Redis takes a snapshot"
        redis-cli -p "$FAULT_REDIS_PORT" save >/dev/null
        kill_hard command-api
        ;;
    2)
        kill_hard rebuild
        kill_hard query-api
        kill_hard fault-redis
        sleep 0.5
        log "starting the stack's Redis again, from the snapshot of the last round"
        start_redis
        sleep 0.3
        kill_hard projector-2
        ;;
    3) restart_postgres ;;
    4)
        kill_hard kafka
        kill_hard rebuild
        ;;
    5)
        kill_hard fault-redis
        kill_hard command-api-2
        rm -f "$REDIS_DIR/dump.rdb"
        sleep 0.5
        log "starting the stack's Redis again, empty"
        start_redis
        ;;
    esac
    sleep 1
    "$ROOT/scripts/stack.sh" up >/dev/null
    round=$((round + 1))
    sleep 4
done
wait "$likes"
likes=
touch "$RUN_DIR/rebuilds.stop"
wait "$rebuilds"
rebuilds=
read -r switched stopped <"$RUN_DIR/rebuilds.count"
log "make rebuild during the faults: $switched switched, $stopped killed or stopped by a fault ($RUN_DIR/rebuilds.log)"
log "make rebuild once more, to the end"
rebuild || die "the last rebuild failed: $(tail -5 "$RUN_DIR/rebuilds.log")"
tail -2 "$RUN_DIR/rebuilds.log"
log "verify: the read models and topics against the events"
"$ROOT/scripts/stack.sh" verify --wait 120
