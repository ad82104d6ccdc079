# The herald image: one binary for every role (`serve --role api|worker|all`,
# `sink`, `publish`, `subscriptions`, `dead`, `check-config`).
#
#   docker build -t herald .
#   docker run --rm -e HERALD__API__TOKEN=... herald serve --role api
#
# Base images are pinned by exact tag, not digest: the digests could not be
# verified where this file was written, and a wrong one fails every build.
# Add `@sha256:...` where builds must be bit-for-bit repeatable.
# The builder's Debian release must be the runtime's (glibc): trixie = 13.

# Rust 1.95.0, the toolchain the tests run on (the crate needs 1.88 or newer).
FROM rust:1.95.0-slim-trixie AS build
WORKDIR /build
# make: tikv-jemalloc-sys builds jemalloc, herald's allocator, with it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# Dependencies first, in a layer of their own, so a change under src/ rebuilds
# herald alone. A stub lib and main are enough: the crate has no build.rs, no
# workspace members and no [[bench]], [[example]] or [[test]] sections.
# rust-toolchain.toml stays out, or rustup would fetch whatever is "stable".
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin herald \
    && rm -rf src target/release/herald* target/release/deps/herald-* \
        target/release/deps/libherald-* target/release/.fingerprint/herald-*

# config/herald.toml is compiled in (include_str!): the defaults are the file.
COPY config ./config
COPY src ./src
RUN cargo build --release --locked --bin herald

FROM debian:13.6-slim AS runtime

# ca-certificates: delivery verifies TLS with the system's roots
# (rustls-platform-verifier). bash (already in the base) runs the compose
# healthcheck over /dev/tcp, as the image has no curl.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 herald \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin herald

COPY --from=build /build/target/release/herald /usr/local/bin/herald
# The documented defaults, for reference or to copy: herald already embeds them,
# so it reads this file only with `--config /etc/herald/herald.toml`.
COPY config/herald.toml /etc/herald/herald.toml

# The default 127.0.0.1 is unreachable from outside a container. Everything
# else is set at run time (HERALD__SECTION__KEY); api.token has no default.
ENV HERALD__API__LISTEN=0.0.0.0:8080

# Fixed numeric ids, so Kubernetes' runAsNonRoot can check them. herald writes
# nothing to disk: the root filesystem can be read-only and needs no /tmp.
USER 10001:10001
EXPOSE 8080
# herald handles SIGTERM itself (drains in-flight attempts): no init needed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["herald"]
CMD ["serve"]

ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="herald" \
      org.opencontainers.image.description="Durable, queue-backed webhook delivery: RabbitMQ in, signed HTTP out" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:13.6-slim"
