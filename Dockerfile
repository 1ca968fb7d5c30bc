# One image with the three services; compose.yaml picks the binary with `command`.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin command-api --bin projector --bin query-api \
    && mkdir /out && cp target/release/command-api target/release/projector target/release/query-api /out/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 douyin
COPY --from=build /out/ /usr/local/bin/
USER douyin
