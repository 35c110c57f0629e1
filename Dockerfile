# syntax=docker/dockerfile:1
# One multi-stage build for kafka-e2ee's images: `docker build --target operator .`,
# `--target webhook` and `--target proxy` (the sidecar the webhook injects in proxy mode);
# docs/install.md builds and pushes them. The release build below is --locked to Cargo.lock,
# and scripts/test runs that exact `cargo build` line (no Docker engine runs where the suite
# does, so it builds the binaries and lints this file with hadolint). Dependencies are cached
# across builds in BuildKit cache mounts, so a change to our code rebuilds our crates only.
# Base images are pinned by digest (update both digests together with the tags; a moving tag
# would change what ships without a review). Runtime: distroless, no shell, non-root (65532),
# the binaries only.
ARG RUST_IMAGE=rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f

FROM ${RUST_IMAGE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p kafka-e2ee-operator -p kafka-e2ee-webhook -p kafka-e2ee-proxy \
    && mkdir -p /out \
    && cp target/release/kafka-e2ee-operator target/release/kafka-e2ee-webhook target/release/kafka-e2ee-proxy /out/

FROM ${RUNTIME_IMAGE} AS operator
COPY --from=build /out/kafka-e2ee-operator /usr/local/bin/kafka-e2ee-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kafka-e2ee-operator"]

FROM ${RUNTIME_IMAGE} AS webhook
COPY --from=build /out/kafka-e2ee-webhook /usr/local/bin/kafka-e2ee-webhook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kafka-e2ee-webhook"]

FROM ${RUNTIME_IMAGE} AS proxy
COPY --from=build /out/kafka-e2ee-proxy /usr/local/bin/kafka-e2ee-proxy
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kafka-e2ee-proxy"]
