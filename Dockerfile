# syntax=docker/dockerfile:1
# The vphone image: a builder stage with cargo, and a small Debian runtime holding only the
# binary and the CA certificates (`--api https://...` checks the bank's certificate against
# them). deploy/ runs it as a Kubernetes Indexed Job; see deploy/README.md.
#
#   docker build -t REGISTRY/vphone:TAG . && docker push REGISTRY/vphone:TAG
#
# Not built where vphone is developed: that machine has no container engine and no image
# registry, so this file is written and reviewed, not tested there.

ARG RUST_VERSION=1.95
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN} AS builder
WORKDIR /src
# The whole workspace (see .dockerignore): Cargo.toml names benches, so they must be there.
COPY . .
# aws-lc-rs builds AWS-LC from C with the image's gcc; no cmake or clang needed on x86_64 or
# aarch64. Caches keep crates and build output between image builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin vphone \
    && install -D -m 0755 target/release/vphone /out/vphone

# debian-slim rather than distroless: the merge step runs `sh -c` with a glob, and
# `kubectl cp` needs tar in the container to copy the reports out.
FROM debian:${DEBIAN}-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent vphone
COPY --from=builder /out/vphone /usr/local/bin/vphone
USER 10001:10001
ENTRYPOINT ["vphone"]
CMD ["--help"]
