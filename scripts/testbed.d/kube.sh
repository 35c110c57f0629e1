# shellcheck shell=bash
# etcd + kube-apiserver v1.20.2, built from Debian's own kubernetes source package.
# No kubelet, scheduler or controller-manager: objects are admitted and stored, never run.

kube_install() {
  apt_install etcd-server openssl
  [[ -x "$KE_KUBE_APISERVER" ]] && return 0
  log "building kube-apiserver $KE_K8S_VERSION from Debian source (about 10 minutes, once)"
  apt_install golang-go golang-github-modern-go-reflect2-dev jq rsync make dpkg-dev

  # A private apt config with a deb-src entry, so the system's sources stay untouched.
  local apt_dir="$KE_CACHE/apt-src" src_dir="$KE_CACHE/src"
  mkdir -p "$apt_dir/sources.list.d" "$apt_dir/lists/partial" "$src_dir"
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
    > "$apt_dir/sources.list.d/debian-src.sources"
  local apt_opts=(-o "Dir::Etc::SourceParts=$apt_dir/sources.list.d" -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$src_dir" && apt-get "${apt_opts[@]}" source --download-only "kubernetes=$KE_K8S_DEB_VERSION")

  local orig tree="$src_dir/kubernetes-$KE_K8S_VERSION"
  orig=$(find "$src_dir" -maxdepth 1 -name 'kubernetes_*.orig.tar.*' | head -n 1)
  [[ -n "$orig" ]] || die "kubernetes orig tarball not found in $src_dir"
  rm -rf "$tree" && mkdir -p "$tree"
  tar -xf "$orig" -C "$tree" --strip-components=1

  # Vendored modern-go/reflect2 v1.0.1 crashes on Go >= 1.18; Debian's packaged copy works.
  local vendored="$tree/vendor/github.com/modern-go/reflect2" debian_copy
  debian_copy=$(dirname "$(dpkg -L golang-github-modern-go-reflect2-dev | grep '/reflect2/reflect2.go$' | head -n 1)")
  [[ -d "$debian_copy" ]] || die "Debian's reflect2 sources not found"
  find "$vendored" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) -delete
  find "$debian_copy" -maxdepth 1 \( -name '*.go' -o -name '*.s' \) ! -name '*_test.go' -exec cp {} "$vendored/" \;

  (cd "$tree" && CGO_ENABLED=0 KUBE_GIT_VERSION="$KE_K8S_VERSION" KUBE_GIT_TREE_STATE=clean \
    KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 make WHAT=cmd/kube-apiserver GOLDFLAGS="-s -w")
  mkdir -p "$KE_BIN"
  install -m 0755 "$tree/_output/bin/kube-apiserver" "$KE_KUBE_APISERVER"
  rm -rf "$tree" # 1+ GB of sources and build output; the binary is all we keep
}

# A CA, a serving cert for 127.0.0.1/localhost, service-account keys, a static admin token.
kube_pki() {
  local pki="$KE_RUN/pki"
  [[ -f "$pki/admin.token" ]] && return 0
  mkdir -p "$pki"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=kafka-e2ee-testbed-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\n' > "$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
    -CAcreateserial -days 30 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  openssl rand -hex 24 > "$pki/admin.token"
  printf '%s,admin,admin,system:masters\n' "$(cat "$pki/admin.token")" > "$pki/tokens.csv"
  chmod 600 "$pki"/*.key "$pki/admin.token" "$pki/tokens.csv"
}

kube_write_kubeconfig() {
  local pki="$KE_RUN/pki"
  cat > "$KE_RUN/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: testbed
  cluster:
    server: https://$KE_HOST:$KE_APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: admin
  user:
    token: $(cat "$pki/admin.token")
contexts:
- name: testbed
  context: {cluster: testbed, user: admin, namespace: default}
current-context: testbed
EOF
  chmod 600 "$KE_RUN/kubeconfig"
}

etcd_start() {
  mkdir -p "$KE_RUN/etcd"
  spawn etcd etcd --name testbed --data-dir "$KE_RUN/etcd" --unsafe-no-fsync \
    --listen-client-urls "http://$KE_HOST:$KE_ETCD_PORT" --advertise-client-urls "http://$KE_HOST:$KE_ETCD_PORT" \
    --listen-peer-urls "http://$KE_HOST:$KE_ETCD_PEER_PORT" --initial-advertise-peer-urls "http://$KE_HOST:$KE_ETCD_PEER_PORT" \
    --initial-cluster "testbed=http://$KE_HOST:$KE_ETCD_PEER_PORT" --log-level warn
  wait_until etcd 30 curl -fsS "http://$KE_HOST:$KE_ETCD_PORT/health"
}

apiserver_start() {
  kube_pki
  local pki="$KE_RUN/pki"
  spawn apiserver "$KE_KUBE_APISERVER" \
    --etcd-servers "http://$KE_HOST:$KE_ETCD_PORT" \
    --bind-address "$KE_HOST" --secure-port "$KE_APISERVER_PORT" --insecure-port 0 \
    --advertise-address "$KE_HOST" \
    --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --enable-admission-plugins NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook \
    --disable-admission-plugins ServiceAccount \
    --allow-privileged=true --v 1
  kube_write_kubeconfig
  wait_until apiserver 90 curl -fsS --cacert "$pki/ca.crt" \
    -H "Authorization: Bearer $(cat "$pki/admin.token")" "https://$KE_HOST:$KE_APISERVER_PORT/readyz"
}
