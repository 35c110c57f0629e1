# syntax=docker/dockerfile:1
# One multi-stage build for kafka-e2ee's images: `docker build --target operator .` and
# `docker build --target webhook .`. The build command is the same `cargo build --release
# --locked` the test suite checks.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kafka-e2ee-operator -p kafka-e2ee-webhook

FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=build /src/target/release/kafka-e2ee-operator /usr/local/bin/kafka-e2ee-operator
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/kafka-e2ee-operator"]

FROM gcr.io/distroless/cc-debian12:nonroot AS webhook
COPY --from=build /src/target/release/kafka-e2ee-webhook /usr/local/bin/kafka-e2ee-webhook
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/kafka-e2ee-webhook"]
