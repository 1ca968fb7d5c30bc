#!/usr/bin/env bash
# Brokers under faults (`make faults-brokers`, also run by `make faults`): a stack of its own
# on three Apache Kafka nodes (KAFKA_NODES=3: topics replicated 3 times, 2 in sync at least,
# the producer waiting for every in-sync replica), while users toggle likes:
#   1. one broker is killed (SIGKILL), and brought back: nothing is refused;
#   2. two are killed at once: writes are still accepted (the outbox holds their events), the
#      relay says why it waits; a broker is brought back, then the other;
# then every read must agree with every answered write (system-tests' likes-under-faults) and
# `verify` must find the read models and topics equal to the events. Its own ports (48080-
# 48083, brokers on FAULT_KAFKA_PORT 19092, 19192, 19292), databases, Redis keys and topics.
#
#   USERS=20 LIKE_SECONDS=80 make faults-brokers
set -euo pipefail
export KAFKA_NODES=3
export KAFKA_PORT=${FAULT_KAFKA_PORT:-19092}
source "$(dirname "$0")/lib.sh"

USERS=${USERS:-20}
SECONDS_OF_LIKES=${LIKE_SECONDS:-80}
own=faults-brokers
export RUN_DIR=$ROOT/.run/$own
export PROXY_PORT=${FAULT_PROXY_PORT:-48080}
export COMMAND_API_ADDR=127.0.0.1:$((PROXY_PORT + 1))
export QUERY_API_ADDR=127.0.0.1:$((PROXY_PORT + 2))
export PROJECTOR_ADDR=127.0.0.1:$((PROXY_PORT + 3))
export PUBLIC_BASE_URL=http://127.0.0.1:$PROXY_PORT
export DATABASE_URL=$PG_SERVER/douyin_$own$PG_OPTIONS
export READ_DATABASE_URL=$PG_SERVER/douyin_${own}_read
export REDIS_KEY_PREFIX=douyin-$own:
export RATE_LIMIT_KEY_PREFIX=douyin-$own-limits:
export KAFKA_TOPIC_PREFIX=douyin-$own.
export PROJECTOR_GROUP=douyin-$own
export MEDIA_DIR=$RUN_DIR/media
# Twenty users toggling as fast as they can are not people on phones.
export RATE_LIMIT=off
BASE=http://127.0.0.1:$PROXY_PORT
kafka_settings

if port_open "$PROXY_PORT"; then die "a stack already answers on :$PROXY_PORT"; fi
likes=
cleanup() {
    if [ -n "$likes" ]; then kill "$likes" 2>/dev/null || true; fi
    "$ROOT/scripts/stack.sh" down
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# A fresh world: the brokers' data, the databases and the Redis keys of the last run go.
RUN_DIR=$RUN_DIR "$ROOT/scripts/stack.sh" down >/dev/null 2>&1 || true
rm -rf "$RUN_DIR"
mkdir -p "$RUN_DIR"
ensure_services
ensure_nginx
for db in "douyin_$own" "douyin_${own}_read"; do
    psql_server -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null
    create_database "$db"
done
redis-cli -p "$REDIS_PORT" --scan --pattern "douyin-$own*" | xargs -r -n 500 redis-cli -p "$REDIS_PORT" unlink >/dev/null


kill_node() { # name
    log "killing the broker $1 (SIGKILL)"
    kill -KILL "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null || true
}
# What the command API says of the outbox: events waiting, and failed relay attempts.
outbox() {
    curl -fsS "http://$COMMAND_API_ADDR/metrics" |
        awk '/^outbox_backlog_events / { backlog = $2 } /^relay_errors_total / { errors = $2 }
             END { printf "outbox backlog %d events, relay errors %d\n", backlog, errors }'
}

"$ROOT/scripts/stack.sh" up
(cd "$ROOT" && cargo build --release --quiet -p system-tests --bin likes-under-faults)
"${CARGO_TARGET_DIR:-$ROOT/target}/release/likes-under-faults" "$BASE" "$USERS" "$SECONDS_OF_LIKES" &
likes=$!

sleep 5
log "1. one broker of three down"
kill_node kafka-2
sleep 10
log "   $(outbox)"
"$ROOT/scripts/stack.sh" up >/dev/null
log "   kafka-2 is back"
sleep 8

log "2. two brokers of three down: fewer in sync than min.insync.replicas"
kill_node kafka-2
kill_node kafka-3
sleep 12
log "   $(outbox)"
log "   the relay says: $(grep -h 'infra::outbox' "$RUN_DIR"/command-api.log | tail -n 1 | sed 's/\x1b\[[0-9;]*m//g' | cut -c28-330)"
start_kafka_node 2
wait_for_port "$(kafka_port 2)" "Apache Kafka (kafka-2)" 120
log "   kafka-2 is back"
sleep 5
log "   $(outbox)"
"$ROOT/scripts/stack.sh" up >/dev/null
log "   kafka-3 is back"

wait "$likes"
likes=
log "   $(outbox)"
log "verify: the read models and topics against the events"
"$ROOT/scripts/stack.sh" verify --wait 120
log "brokers under faults: passed"
