# syntax=docker/dockerfile:1
# One multi-stage build for kafka-e2ee's images: `docker build --target operator .`,
# `--target webhook` and `--target proxy` (the sidecar the webhook injects in proxy mode). Like the test suite's builds it is --locked to Cargo.lock
# (the suite builds the same packages in the debug profile; no Docker engine runs where it
# does, so it lints this file with hadolint instead of building it). Runtime: distroless, no
# shell, non-root (65532), the binaries only.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kafka-e2ee-operator -p kafka-e2ee-webhook -p kafka-e2ee-proxy

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /src/target/release/kafka-e2ee-operator /usr/local/bin/kafka-e2ee-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kafka-e2ee-operator"]

FROM gcr.io/distroless/cc-debian12:nonroot AS webhook
COPY --from=build /src/target/release/kafka-e2ee-webhook /usr/local/bin/kafka-e2ee-webhook
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kafka-e2ee-webhook"]

FROM gcr.io/distroless/cc-debian12:nonroot AS proxy
COPY --from=build /src/target/release/kafka-e2ee-proxy /usr/local/bin/kafka-e2ee-proxy
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kafka-e2ee-proxy"]
