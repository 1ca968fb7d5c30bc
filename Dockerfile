# One image with every binary (the three services and the operator commands: verify,
# analytics, remove-test-run); compose.yaml picks one with `command`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin command-api --bin projector --bin query-api \
        --bin verify --bin analytics --bin remove-test-run \
    && mkdir /out && cp target/release/command-api target/release/projector target/release/query-api \
        target/release/verify target/release/analytics target/release/remove-test-run /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/douyin --create-home douyin
COPY --from=build /out/ /usr/local/bin/
USER douyin
# A folder the service user can write (MEDIA_STORE=local's default `media` is relative to it).
WORKDIR /var/lib/douyin
