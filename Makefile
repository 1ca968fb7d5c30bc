# The whole stack on :8080, in the foreground (Ctrl-C stops it).
run:
	scripts/stack.sh run

# The same stack in the background; returns once :8080 answers.
up:
	scripts/stack.sh up

down:
	scripts/stack.sh down

# Demo users and a handful of short videos (made with ffmpeg), published through the API.
seed:
	scripts/seed.sh

# Every test, starting the services the tests need. Its databases, Redis keys, topics, media
# and ports are its own (named test-<id>-*), removed at the end: `make run`'s are left alone.
test:
	scripts/test.sh

# Checks that every read model (Postgres and Redis) and the topics agree with the events, by
# a fold of its own; prints each difference and fails if any remain. Safe while `make run` runs;
# VERIFY_ARGS="--skip-topics" skips reading the topics from the beginning.
verify:
	scripts/stack.sh verify $(VERIFY_ARGS)

# Rebuilds every read model (Postgres and Redis) from the event store beside the live ones,
# while `make run` runs, then switches to them; run again after a crash, it takes up where it
# stopped. REBUILD_ARGS="--help" says more.
rebuild:
	scripts/stack.sh projector rebuild $(REBUILD_ARGS)

# The analytics consumer example (docs/consuming-events.md) against the stack `make run`
# started: counts what the topics hold into the douyin_analytics database, then prints the last
# hours as a table. ANALYTICS_ARGS="report --hours 6" (or "--help") runs another command.
analytics:
	scripts/analytics.sh $(ANALYTICS_ARGS)

# Measurements against the release stack: write-to-read lag of registrations and likes.
bench:
	scripts/bench.sh

# Likes under faults: services, the broker and Redis killed and restarted; every read must
# then agree with every answered write.
faults:
	scripts/faults.sh
	scripts/faults-brokers.sh

# Only the brokers' part of `make faults`: three Kafka nodes, one killed, then two.
faults-brokers:
	scripts/faults-brokers.sh

# A property-based fuzz run of the client API, driven by docs/openapi.json, against a stack of
# its own (ports 18080-18083; databases, Redis keys and topics named test-<id>-fuzz*), stopped
# and removed at the end.
fuzz:
	scripts/fuzz.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: run up down seed test verify rebuild analytics bench faults faults-brokers fuzz fmt lint
