#!/usr/bin/env bash
# The analytics consumer (analytics/, docs/consuming-events.md) against the local stack that
# `make run` or `make up` started: counts what the stack's topics hold into the
# douyin_analytics database (made if missing), in the consumer group douyin-analytics, then
# prints the last hours as a table. A later run takes up where this one stopped.
#
#   scripts/analytics.sh                       catch up, print the last 24 hours
#   scripts/analytics.sh catch-up --hours 6    the same, over 6 hours
#   scripts/analytics.sh run | report ...      any command of the binary (--help)
#
# PROFILE=release|dev picks the cargo profile (release by default, as `make run` builds);
# ANALYTICS_DATABASE_URL (then made by whoever sets it), ANALYTICS_GROUP, KAFKA_BROKERS and
# KAFKA_TOPIC_PREFIX override the defaults.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

PROFILE=${PROFILE:-release}
export KAFKA_BROKERS=${KAFKA_BROKERS:-127.0.0.1:$KAFKA_PORT}

port_open "$KAFKA_PORT" || die "no broker on :$KAFKA_PORT: start the stack first (make run, or make up)"
if [ -z "${ANALYTICS_DATABASE_URL:-}" ]; then
    create_database douyin_analytics
    export ANALYTICS_DATABASE_URL=$PG_SERVER/douyin_analytics$PG_OPTIONS
fi

dir=${CARGO_TARGET_DIR:-$ROOT/target}
if [ "$PROFILE" = dev ]; then dir=$dir/debug; else dir=$dir/$PROFILE; fi
log "building analytics ($PROFILE)"
(cd "$ROOT" && cargo build --profile "$PROFILE" --bin analytics --quiet)
[ $# -gt 0 ] || set -- catch-up
exec "$dir/analytics" "$@"
