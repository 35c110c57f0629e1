# shellcheck shell=bash
# The demo's steps on a test bed that is already up (scripts/demo brings one up around them;
# scripts/test runs them on its own as a test). Sourced after scripts/lib.sh.
#
# What it shows: the operator and the webhook as local processes against the local
# kube-apiserver; the example EncryptedTopic becoming Ready; the validating webhook refusing a
# bad change; a pod that opts in getting its configuration injected; the application running
# with exactly that configuration, reading its plaintext back while the broker holds only
# ciphertext; the key versions in `kubectl get encryptedtopics`.

demo_kubectl() { kubectl "$@" 2>&1 | grep -v 'WARNING: version difference' || true; }

demo_wait_http() { # URL SECONDS WHAT
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  die "$3 not ready at $1 (logs: $DEMO_WORK)"
}

demo_stop() {
  local pid
  for pid in "${DEMO_PIDS[@]:-}"; do [[ -n "$pid" ]] && kill "$pid" 2>/dev/null || true; done
  kubectl delete mutatingwebhookconfiguration,validatingwebhookconfiguration kafka-e2ee-demo \
    --ignore-not-found >/dev/null 2>&1 || true
}

# demo_run BIN_DIR: the steps; fails (non-zero) if any assertion fails.
demo_run() {
  local bin=$1 started=$SECONDS
  DEMO_WORK="$(mktemp -d)"
  DEMO_PIDS=()
  local ns=demo system=kafka-e2ee-system https=18443 webhook_http=18081 operator_http=18080
  local proxy_port=18092 proxy_http=18190

  step "installing the CRDs (kafka-e2ee-operator crds | kubectl apply --server-side)"
  "$bin/kafka-e2ee-operator" crds | demo_kubectl apply --server-side -f -
  demo_kubectl wait --for condition=established --timeout=30s crd/encryptedtopics.kafka-e2ee.io

  step "the operator and the webhook, as local processes against the local kube-apiserver"
  demo_kubectl create namespace "$system"
  RUST_LOG=info,rustify=off,vaultrs=off "$bin/kafka-e2ee-operator" run \
    --bootstrap-servers "$KE_KAFKA_BOOTSTRAP" --namespace "$system" --watch-namespace "$ns" \
    --leader-election false --http-addr "127.0.0.1:$operator_http" --client-config-resync 2s \
    >"$DEMO_WORK/operator.log" 2>&1 &
  DEMO_PIDS+=($!)
  "$bin/kafka-e2ee-webhook" --self-managed-tls --tls-name 127.0.0.1 --namespace "$system" \
    --listen-addr "127.0.0.1:$https" --http-addr "127.0.0.1:$webhook_http" \
    --mutating-webhook-configuration kafka-e2ee-demo --validating-webhook-configuration kafka-e2ee-demo \
    --cert-check-interval 1s --proxy-image kafka-e2ee-proxy:demo >"$DEMO_WORK/webhook.log" 2>&1 &
  DEMO_PIDS+=($!)
  # What the chart registers, with url: instead of a Service (nothing routes Services here).
  sed "s/@PORT@/$https/" "$ROOT/scripts/demo.d/webhooks.yaml" | demo_kubectl apply -f -
  demo_wait_http "http://127.0.0.1:$operator_http/readyz" 60 "the operator"
  demo_wait_http "http://127.0.0.1:$webhook_http/readyz" 60 "the webhook"
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -n "$(kubectl get validatingwebhookconfiguration kafka-e2ee-demo -o jsonpath='{.webhooks[0].clientConfig.caBundle}' 2>/dev/null)" ]] && break
    sleep 0.2
  done
  log "operator ready (log: $DEMO_WORK/operator.log); webhook ready, its CA written into the webhook configurations"

  step "namespace $ns (opted in to injection), a keystore Secret, examples/keystore/*.yaml"
  demo_kubectl create namespace "$ns"
  demo_kubectl label namespace "$ns" kafka-e2ee.io/injection=enabled
  local tek
  tek="$(openssl rand -base64 32)"
  printf '{"format": 1, "keys": [{"id": "orders-1", "material": "%s"}], "aliases": {"orders-tek": "orders-1"}}' "$tek" \
    >"$DEMO_WORK/keystore.json"
  demo_kubectl -n "$ns" create secret generic keystore --from-file=keystore.json="$DEMO_WORK/keystore.json"
  rm -f "$DEMO_WORK/keystore.json"
  demo_kubectl apply --server-side -f "$ROOT/examples/keystore/kmsconnection.yaml" -f "$ROOT/examples/keystore/encryptedtopic.yaml"
  kubectl -n "$ns" wait --for=condition=Ready encryptedtopic/orders --timeout=60s >/dev/null 2>&1 \
    || die "encryptedtopic/orders is not Ready: $(kubectl -n "$ns" get encryptedtopic orders -o jsonpath='{.status.conditions}' 2>/dev/null)"
  demo_kubectl -n "$ns" get encryptedtopics

  step "GitOps: the examples applied again with server-side apply after the operator reconciled: no drift"
  local generation
  generation="$(kubectl -n "$ns" get encryptedtopic orders -o jsonpath='{.metadata.generation}' 2>/dev/null)"
  if ! kubectl diff --server-side -f "$ROOT/examples/keystore/kmsconnection.yaml" -f "$ROOT/examples/keystore/encryptedtopic.yaml" >"$DEMO_WORK/drift.diff" 2>&1; then
    cat "$DEMO_WORK/drift.diff" >&2
    die "the examples drifted from what the cluster holds"
  fi
  demo_kubectl apply --server-side -f "$ROOT/examples/keystore/kmsconnection.yaml" -f "$ROOT/examples/keystore/encryptedtopic.yaml"
  [[ "$(kubectl -n "$ns" get encryptedtopic orders -o jsonpath='{.metadata.generation}' 2>/dev/null)" == "$generation" ]] \
    || die "re-applying the examples changed the EncryptedTopic's generation"
  log "kubectl diff --server-side: empty; generation still $generation"

  step "the validating webhook refuses a change that would lose data (partitions 3 -> 2)"
  local refused
  if refused="$(kubectl -n "$ns" patch encryptedtopic orders --type merge -p '{"spec":{"partitions":2}}' 2>&1)"; then
    die "shrinking the topic was admitted"
  fi
  grep -v 'WARNING: version difference' <<<"$refused"

  step "a pod that opts in (examples/pod-orders-app.yaml): what the webhook injected"
  for ((i = 0; i < 50; i++)); do
    kubectl get configmap kafka-e2ee-client -n "$ns" -o jsonpath='{.data.index\.yaml}' 2>/dev/null | grep -q 'orders:' && break
    sleep 0.2
  done
  # The apiserver picks up new webhook configurations asynchronously: wait until a dry run of
  # the pod comes back injected.
  for ((i = 0; i < 50; i++)); do
    kubectl apply --dry-run=server -o jsonpath='{.metadata.annotations}' -f "$ROOT/examples/pod-orders-app.yaml" 2>/dev/null \
      | grep -q 'kafka-e2ee.io/injected' && break
    sleep 0.2
  done
  demo_kubectl apply -f "$ROOT/examples/pod-orders-app.yaml"
  kubectl -n "$ns" get pod orders-app -o json 2>/dev/null | python3 -c '
import json, sys
pod = json.load(sys.stdin)
spec = pod["spec"]
print("annotation kafka-e2ee.io/injected:", pod["metadata"]["annotations"]["kafka-e2ee.io/injected"])
print("volume:", json.dumps(spec["volumes"][0]))
for c in spec["containers"]:
    print("container", c["name"] + ": env", json.dumps(c["env"]), "mounts", json.dumps(c["volumeMounts"]))
'

  step "the application with exactly that configuration (the kubelet's part done here: files from the ConfigMap and Secret)"
  local pod_dir="$DEMO_WORK/var/run/kafka-e2ee"
  mkdir -p "$pod_dir"
  local profile
  profile="$(kubectl -n "$ns" get pod orders-app -o jsonpath='{.spec.volumes[0].projected.sources[0].configMap.items[0].key}' 2>/dev/null)"
  kubectl -n "$ns" get configmap kafka-e2ee-client -o json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][sys.argv[1]], end="")' "$profile" >"$pod_dir/client.yaml"
  kubectl -n "$ns" get secret keystore -o jsonpath='{.data.keystore\.json}' 2>/dev/null | base64 -d >"$pod_dir/keystore.json"
  log "client.yaml (from ConfigMap kafka-e2ee-client, key $profile):"
  sed 's/^/    /' "$pod_dir/client.yaml" >&2
  KAFKA_E2EE_CONFIG="$pod_dir/client.yaml" RUST_LOG=warn "$bin/examples/roundtrip" orders

  step "any language: a Python pod in proxy mode (examples/pod-orders-python.yaml): what the webhook injected"
  demo_kubectl apply -f "$ROOT/examples/pod-orders-python.yaml"
  kubectl -n "$ns" get pod orders-python -o json 2>/dev/null | python3 -c '
import json, sys
spec = json.load(sys.stdin)["spec"]
for c in spec.get("initContainers", []) + spec["containers"]:
    print("container", c["name"] + ": image", c["image"], "env", json.dumps(c.get("env", [])),
          "mounts", json.dumps(c.get("volumeMounts", [])), "args", json.dumps(c.get("args", [])))
'
  step "the proxy with that volume (same profile as above), an unchanged kafka-python app through it"
  KAFKA_E2EE_CONFIG="$pod_dir/client.yaml" RUST_LOG=warn "$bin/kafka-e2ee-proxy" \
    --listen "127.0.0.1:$proxy_port" --http-addr "127.0.0.1:$proxy_http" >"$DEMO_WORK/proxy.log" 2>&1 &
  DEMO_PIDS+=($!)
  demo_wait_http "http://127.0.0.1:$proxy_http/readyz" 60 "the proxy"
  "$KE_CLIENTS_PYTHON" - "127.0.0.1:$proxy_port" "$KE_KAFKA_BOOTSTRAP" <<'PY'
import sys
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
proxy, broker = sys.argv[1], sys.argv[2]
# What the Rust application wrote above, read through the proxy: plaintext.
c = KafkaConsumer(bootstrap_servers=proxy, auto_offset_reset="earliest", consumer_timeout_ms=15000)
c.assign([TopicPartition("orders", p) for p in range(3)])
seen = [m for _, m in zip(range(3), c)]
for m in seen:
    print(f"  python via proxy   orders/{m.partition}@{m.offset}: {m.value.decode()}")
assert seen and all(m.value.startswith(b"{") or b"order" in m.value for m in seen), "plaintext expected"
# A record from Python, through the proxy...
p = KafkaProducer(bootstrap_servers=proxy, acks="all")
meta = p.send("orders", key=b"py-1", value=b'{"order": "from python", "qty": 1}', partition=0).get(timeout=20)
p.close()
print(f"  python produced    orders/0@{meta.offset} through the proxy")
# ...and the same record read straight from the broker, no proxy: ciphertext.
raw = KafkaConsumer(bootstrap_servers=broker, consumer_timeout_ms=15000)
raw.assign([TopicPartition("orders", 0)])
raw.seek(TopicPartition("orders", 0), meta.offset)
m = next(iter(raw))
print(f"  broker holds       orders/0@{m.offset}: headers {[h for h, _ in m.headers]}, value {m.value[:24].hex()}... ({len(m.value)} bytes)")
assert b"from python" not in m.value and [h for h, _ in m.headers] == ["encryption_key"], "ciphertext expected"
PY

  step "kubectl get encryptedtopics -o wide: the key versions"
  demo_kubectl -n "$ns" get encryptedtopics -o wide

  step "day 2 (docs/cli.md): kubectl e2ee status, a rollover on request, and verify"
  "$bin/kubectl-e2ee" -n "$ns" status orders
  "$bin/kubectl-e2ee" -n "$ns" rollover orders --timeout 60s
  # Every retained record, opened with the application's own configuration; no value printed.
  "$bin/kubectl-e2ee" -n "$ns" verify orders --config "$pod_dir/client.yaml"
  log "demo steps done in $((SECONDS - started)) s"
}
