#!/usr/bin/env python3
"""Checks of the kafka-e2ee Helm chart (run by scripts/test, with the test bed up).

1. Strict lint (Helm's own SDK, no helm binary) for every value set below.
2. values.schema.json refuses bad values with a message naming the key.
3. Renders validate strictly against the Kubernetes schemas (oldest and newest that
   kubernetes-validate ships), and hold what the chart promises (restricted security
   context, replicas, selectors that exclude kube-system and the release namespace, ...).
4. The default render is accepted by the test bed's kube-apiserver (server-side dry run).
5. RBAC: the real operator and webhook binaries, run with the chart's ServiceAccount tokens,
   do their job (RBAC is sufficient) and are refused what they must not do (it is minimal).

Usage: check_chart.py BIN_DIR   (BIN_DIR holds kafka-e2ee-operator and kafka-e2ee-webhook)
"""

import base64
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "kafka-e2ee"
GOOD = {"kafka": {"bootstrapServers": "kafka.kafka.svc:9092"}}
FAILURES = []


def check(ok, what):
    print(("  ok    " if ok else "  FAIL  ") + what)
    if not ok:
        FAILURES.append(what)


def merged(*overrides):
    out = json.loads(json.dumps(GOOD))
    for o in overrides:
        stack = [(out, o)]
        while stack:
            dst, src = stack.pop()
            for k, v in src.items():
                if isinstance(v, dict) and isinstance(dst.get(k), dict):
                    stack.append((dst[k], v))
                else:
                    dst[k] = v
    return out


VALUE_SETS = {
    "defaults": merged(),
    "cert-manager, own CA": merged({"certManager": {"enabled": True}}),
    "cert-manager, ClusterIssuer": merged(
        {"certManager": {"enabled": True, "issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}
    ),
    "TLS + SASL + properties": merged(
        {
            "kafka": {
                "securityProtocol": "sasl-ssl",
                "tlsSecret": "kafka-ca",
                "sasl": {"mechanism": "SCRAM-SHA-512", "username": "kafka-e2ee", "passwordSecret": {"name": "kafka-sasl"}},
                "properties": {"client.id": "kafka-e2ee-operator"},
                "clientProperties": {"security.protocol": "ssl"},
                "keyTopicReplication": 3,
            }
        }
    ),
    "ServiceMonitor + NetworkPolicy, warn, one namespace": merged(
        {
            "metrics": {"serviceMonitor": {"enabled": True}},
            "networkPolicy": {"enabled": True, "metricsNamespaceSelector": {"matchLabels": {"team": "monitoring"}}},
            "webhook": {"onProblem": "warn", "excludeNamespaces": ["legacy"]},
            "operator": {"watchNamespace": "shop"},
        }
    ),
    "cluster KMS connections": merged(
        {
            "clusterKmsConnections": {
                "vault": {"vault": {"address": "https://vault.vault.svc:8200", "auth": {"kubernetes": {"role": "kafka-e2ee-operator", "clientRole": "clients"}}}},
                "aws-eu": {"awsKms": {"region": "eu-west-1"}},
            }
        }
    ),
}

DIGEST = "sha256:" + "ab" * 32
EVERY_OPTION = merged(
    {
        "nameOverride": "e2ee",
        "global": {"imageRegistry": "ignored"},
        "image": {"digests": {"operator": DIGEST, "proxy": DIGEST}},
        "operator": {
            "podLabels": {"team": "platform"},
            "priorityClassName": "system-cluster-critical",
            "extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}],
            "extraVolumes": [{"name": "corp-ca", "configMap": {"name": "corp-ca"}}],
            "extraVolumeMounts": [{"name": "corp-ca", "mountPath": "/etc/corp-ca", "readOnly": True}],
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/kafka-e2ee"}},
            "countCheckInterval": "1m30s",
            "mallocArenaMax": 4,
        },
        "webhook": {
            "podLabels": {"team": "platform"},
            "priorityClassName": "system-cluster-critical",
            "extraEnv": [{"name": "RUST_BACKTRACE", "value": "1"}],
            "extraVolumes": [{"name": "scratch", "emptyDir": {}}],
            "extraVolumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            "injection": {
                # Helm merges maps: the default label goes by setting it to null.
                "namespaceSelector": {"matchLabels": {"kafka-e2ee.io/injection": None, "platform.example/encrypt": "yes"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["legacy"]}]},
                "objectSelector": {"matchExpressions": [{"key": "kafka", "operator": "Exists"}]},
            },
        },
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "grafanaDashboard": {"enabled": True},
    }
)
VALUE_SETS["every option"] = EVERY_OPTION
VALUE_SETS["fullnameOverride, one replica each"] = merged(
    {"fullnameOverride": "e2ee", "operator": {"replicas": 1, "leaderElection": False, "mallocArenaMax": 0}, "webhook": {"replicas": 1}, "rbac": {"aggregateToDefaultRoles": False}}
)

BAD_VALUES = [
    ({"kafka": {"bootstrapServers": ""}}, "/kafka/bootstrapServers"),
    ({"kafka": {"bootstrapServers": "kafka"}}, "/kafka/bootstrapServers"),
    ({"webhook": {"failurePolicy": "Sometimes"}}, "/webhook/failurePolicy"),
    ({"webhook": {"timeoutSeconds": 60}}, "/webhook/timeoutSeconds"),
    ({"webhook": {"onProblem": "maybe"}}, "/webhook/onProblem"),
    ({"webhook": {"certValidity": "90 days"}}, "/webhook/certValidity"),
    ({"operator": {"replicas": 0}}, "/operator/replicas"),
    ({"operator": {"mallocArenaMax": -1}}, "/operator/mallocArenaMax"),
    ({"kafka": {"securityProtocol": "tls"}}, "/kafka/securityProtocol"),
    ({"kafka": {"clientProperties": {"sasl.password": "hunter2"}}}, "sasl.password"),
    ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
    ({"securityContext": {"allowPrivilegeEscalation": True}}, "/securityContext/allowPrivilegeEscalation"),
    ({"operatr": {"replicas": 2}}, "operatr"),
    ({"image": {"digests": {"operator": "latest"}}}, "/image/digests/operator"),
    ({"nameOverride": "Kafka_E2EE"}, "/nameOverride"),
    ({"operator": {"extraVolumeMounts": [{"name": "v"}]}}, "/operator/extraVolumeMounts/0"),
    ({"webhook": {"injection": {"objectSelector": {"matchExpressions": [{"key": "a", "operator": "Maybe"}]}}}}, "/webhook/injection/objectSelector"),
    ({"clusterKmsConnections": {"two": {"awsKms": {}, "keystore": {"secretRef": {"name": "k", "key": "k"}}}}}, "/clusterKmsConnections/two"),
    ({"clusterKmsConnections": {"v": {"vault": {"address": "vault:8200", "auth": {"tokenSecretRef": {"name": "t", "key": "t"}}}}}}, "/clusterKmsConnections/v/vault/address"),
]


def render(values, namespace="kafka-e2ee", name="ke"):
    chart = helm.Chart.load(str(CHART))
    out = chart.render(values, name=name, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def lint_and_schema():
    print("lint (strict) and values.schema.json")
    for label, values in VALUE_SETS.items():
        for kube in ("v1.20.2", "v1.30.0"):
            report = helm.lint(str(CHART), values, strict=True, kube_version=kube)
            problems = report["errors"] + [m["error"] for m in report["messages"] if m["severity"] >= 2]
            check(not problems, f"lint {label} (Kubernetes {kube}): {problems or 'clean'}")
    chart = helm.Chart.load(str(CHART))
    for values, where in BAD_VALUES:
        try:
            chart.validate_schema(merged(values))
            check(False, f"schema refuses {values}")
        except helm.HelmValuesError as e:
            check(where in str(e), f"schema refuses {values}: {str(e).splitlines()[1].strip() if len(str(e).splitlines()) > 1 else e}")


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def renders():
    print("renders: Kubernetes schemas (strict) and the chart's promises")
    builtin_skip = {"ServiceMonitor", "Certificate", "Issuer", "ClusterKmsConnection", "PrometheusRule"}
    for label, values in VALUE_SETS.items():
        docs = render(values)
        for version in ("1.25.0", kubernetes_validate.latest_version()):
            errors = []
            for d in docs:
                if d["kind"] in builtin_skip:
                    continue
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    errors.append(f"{d['kind']}/{d['metadata']['name']}: {e.message}")
            check(not errors, f"{label}: valid Kubernetes {version} (strict){': ' + '; '.join(errors) if errors else ''}")
        text = yaml.safe_dump_all(docs)
        check("kind: Secret" not in text, f"{label}: renders no Secret (no key material in the chart)")
    docs = render(VALUE_SETS["defaults"])
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    check(set(deployments) == {"ke-kafka-e2ee-operator", "ke-kafka-e2ee-webhook"}, f"two Deployments: {sorted(deployments)}")
    for name, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        check(d["spec"]["replicas"] == 2, f"{name}: 2 replicas")
        check(spec["securityContext"].get("runAsNonRoot") is True and spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", f"{name}: non-root, RuntimeDefault seccomp")
        for c in spec["containers"]:
            sc = c["securityContext"]
            check(sc == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}, f"{name}/{c['name']}: restricted container securityContext")
            check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", f"{name}/{c['name']}: readiness on /readyz")
    operator_args = deployments["ke-kafka-e2ee-operator"]["spec"]["template"]["spec"]["containers"][0]["args"]
    check("--leader-election=true" in operator_args, "operator: leader election on")
    pdbs = {d["metadata"]["name"]: d for d in by_kind(docs, "PodDisruptionBudget")}
    check(set(pdbs) == {"ke-kafka-e2ee-operator", "ke-kafka-e2ee-webhook"} and all(p["spec"]["minAvailable"] == 1 for p in pdbs.values()), f"PodDisruptionBudgets minAvailable 1, operator and webhook: {sorted(pdbs)}")
    mutating_entries = by_kind(docs, "MutatingWebhookConfiguration")[0]["webhooks"]
    validating = by_kind(docs, "ValidatingWebhookConfiguration")[0]["webhooks"][0]
    for w in mutating_entries + [validating]:
        excluded = [e for e in w["namespaceSelector"]["matchExpressions"] if e["key"] == "kubernetes.io/metadata.name"]
        check(excluded and excluded[0]["operator"] == "NotIn" and set(excluded[0]["values"]) == {"kube-system", "kafka-e2ee"}, f"{w['name']}: excludes kube-system and the release namespace")
        check(w["timeoutSeconds"] == 5 and w["sideEffects"] == "None", f"{w['name']}: 5 s, no side effects")
    # Fail closed only for pods that require injection; every other pod, and the validating
    # webhook (the operator enforces the same rules), fail open.
    policies = {}
    for w in mutating_entries:
        required = [e for e in w["objectSelector"]["matchExpressions"] if e["key"] == "kafka-e2ee.io/require-injection"]
        check(len(required) == 1 and required[0]["values"] == ["true"], f"{w['name']}: selects on kafka-e2ee.io/require-injection")
        policies[required[0]["operator"] if required else None] = w["failurePolicy"]
        check(w["reinvocationPolicy"] == "IfNeeded", f"{w['name']}: reinvocationPolicy IfNeeded")
        check(w["namespaceSelector"]["matchLabels"] == {"kafka-e2ee.io/injection": "enabled"}, f"{w['name']}: opt-in namespaces only")
        check(w["objectSelector"]["matchExpressions"][0]["values"] == ["kafka-e2ee"], f"{w['name']}: never our own pods")
    check(policies == {"In": "Fail", "NotIn": "Ignore"}, f"mutating: Fail for pods that require injection, Ignore for the rest: {policies}")
    check(validating["failurePolicy"] == "Ignore", "validating: Ignore (never blocks finalizer removal)")
    connections = by_kind(render(VALUE_SETS["cluster KMS connections"]), "ClusterKmsConnection")
    check(sorted(c["metadata"]["name"] for c in connections) == ["aws-eu", "vault"], "clusterKmsConnections: one ClusterKmsConnection each")
    cm = render(VALUE_SETS["cert-manager, own CA"])
    check(len(by_kind(cm, "Certificate")) == 2 and len(by_kind(cm, "Issuer")) == 2, "cert-manager: self-signed root, CA, serving certificate")
    check(all("cert-manager.io/inject-ca-from" in d["metadata"].get("annotations", {}) for d in by_kind(cm, "MutatingWebhookConfiguration") + by_kind(cm, "ValidatingWebhookConfiguration")), "cert-manager: CA injected into both configurations")
    webhook_rbac = [r for d in by_kind(cm, "ClusterRole") if d["metadata"]["name"].endswith("webhook") for r in d["rules"]]
    check(all("secrets" not in r["resources"] and "mutatingwebhookconfigurations" not in r["resources"] for r in webhook_rbac), "cert-manager: the webhook gets no Secret or configuration rights")


def every_option():
    print("every option: what each value renders")
    docs = render(EVERY_OPTION)
    deployments = {d["metadata"]["name"]: d for d in by_kind(docs, "Deployment")}
    check(set(deployments) == {"ke-e2ee-operator", "ke-e2ee-webhook"}, f"nameOverride: names {sorted(deployments)}")
    op, wh = (deployments[f"ke-e2ee-{c}"]["spec"]["template"] for c in ("operator", "webhook"))
    images = {c["name"]: c["image"] for t in (op, wh) for c in t["spec"]["containers"]}
    check(images["operator"] == f"ghcr.io/kafka-e2ee/kafka-e2ee-operator@{DIGEST}", f"image.digests: operator by digest ({images['operator']})")
    check(images["webhook"].endswith(":0.1.0") or ":" in images["webhook"].rsplit("/", 1)[1], f"image.digests: webhook by tag without one ({images['webhook']})")
    proxy_env = {e["name"]: e.get("value") for e in wh["spec"]["containers"][0]["env"]}
    check(proxy_env.get("KAFKA_E2EE_PROXY_IMAGE", "").endswith(f"@{DIGEST}"), "image.digests: the injected proxy by digest")
    for name, t in (("operator", op), ("webhook", wh)):
        spec, container = t["spec"], t["spec"]["containers"][0]
        check(t["metadata"]["labels"].get("team") == "platform" and t["metadata"]["labels"]["app.kubernetes.io/name"] == "e2ee", f"{name}: podLabels beside the chart's")
        check(spec.get("priorityClassName") == "system-cluster-critical", f"{name}: priorityClassName")
        extra_env = EVERY_OPTION[name]["extraEnv"][0]["name"]
        check(any(e["name"] == extra_env for e in container["env"]), f"{name}: extraEnv")
        volume = EVERY_OPTION[name]["extraVolumes"][0]["name"]
        check(any(v["name"] == volume for v in spec["volumes"]) and any(m["name"] == volume for m in container["volumeMounts"]), f"{name}: extraVolumes and extraVolumeMounts")
        selector = deployments[f"ke-e2ee-{name}"]["spec"]["selector"]["matchLabels"]
        check("team" not in selector, f"{name}: podLabels stay out of the (immutable) selector")
    accounts = {d["metadata"]["name"]: d for d in by_kind(docs, "ServiceAccount")}
    check(accounts["ke-e2ee-operator"]["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn", "").startswith("arn:aws:iam::"), "operator serviceAccount.annotations (IRSA)")
    check("--count-check-interval=1m30s" in op["spec"]["containers"][0]["args"], "durations as the CRD and the binaries accept them (1m30s)")
    arenas = lambda t: [e.get("value") for e in t["spec"]["containers"][0]["env"] if e["name"] == "MALLOC_ARENA_MAX"]
    check(arenas(op) == ["4"] and not arenas(wh), "operator.mallocArenaMax: MALLOC_ARENA_MAX for the operator only")
    default_op = next(d for d in by_kind(render(VALUE_SETS["defaults"]), "Deployment") if d["metadata"]["name"].endswith("operator"))
    check(arenas(default_op["spec"]["template"]) == ["2"], "operator.mallocArenaMax: 2 by default")
    pdbs = {d["metadata"]["name"] for d in by_kind(docs, "PodDisruptionBudget")}
    check(pdbs == {"ke-e2ee-operator", "ke-e2ee-webhook"}, f"PodDisruptionBudgets for both: {sorted(pdbs)}")
    single = render(VALUE_SETS["fullnameOverride, one replica each"])
    check(not by_kind(single, "PodDisruptionBudget") or all("operator" not in d["metadata"]["name"] for d in by_kind(single, "PodDisruptionBudget")), "one operator replica: no PodDisruptionBudget blocking drains")
    check({d["metadata"]["name"] for d in by_kind(single, "Deployment")} == {"e2ee-operator", "e2ee-webhook"}, "fullnameOverride: names")
    check(not any(arenas(d["spec"]["template"]) for d in by_kind(single, "Deployment")), "operator.mallocArenaMax 0: glibc's default, no variable")
    check(not [d for d in by_kind(single, "ClusterRole") if d["metadata"]["name"].endswith(("-view", "-edit"))], "rbac.aggregateToDefaultRoles false: no aggregated roles")
    rules = by_kind(docs, "PrometheusRule")
    shipped = yaml.safe_load((CHART / "files" / "prometheus-rules.yaml").read_text())
    check(len(rules) == 1 and rules[0]["spec"] == shipped and rules[0]["metadata"]["labels"].get("release") == "kube-prometheus-stack", "prometheusRule: files/prometheus-rules.yaml as is, with its labels")
    alerts = [r["alert"] for g in shipped["groups"] for r in g["rules"]]
    documented = (ROOT / "docs" / "operations.md").read_text()
    check(alerts and all(f"`{a}`" in documented for a in alerts), f"every shipped alert is documented in docs/operations.md: {alerts}")
    check(any("{{ $labels." in r.get("annotations", {}).get("summary", "") for g in rules[0]["spec"]["groups"] for r in g["rules"]), "prometheusRule: Prometheus's {{ $labels }} reach it untemplated")
    boards = by_kind(docs, "ConfigMap")
    board = [b for b in boards if b["metadata"]["name"] == "ke-e2ee-dashboard"]
    ok = len(board) == 1 and board[0]["metadata"]["labels"].get("grafana_dashboard") == "1"
    check(ok and json.loads(board[0]["data"]["kafka-e2ee.json"]) == json.loads((CHART / "files" / "grafana-dashboard.json").read_text()), "grafanaDashboard: the dashboard JSON in a ConfigMap the Grafana sidecar picks up")
    roles = {d["metadata"]["name"]: d for d in by_kind(docs, "ClusterRole")}
    view, edit = roles.get("ke-e2ee-view"), roles.get("ke-e2ee-edit")
    check(view and view["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-view") == "true" and set(view["rules"][0]["verbs"]) == {"get", "list", "watch"}, "aggregated view role: read only")
    check(edit and edit["metadata"]["labels"].get("rbac.authorization.k8s.io/aggregate-to-edit") == "true" and "clusterkmsconnections" not in edit["rules"][0]["resources"], "aggregated edit role: namespaced kinds only (no ClusterKmsConnections)")
    mutating = by_kind(docs, "MutatingWebhookConfiguration")[0]["webhooks"]
    for w in mutating:
        ns, obj = w["namespaceSelector"], w["objectSelector"]
        check(ns.get("matchLabels") == {"platform.example/encrypt": "yes"} and ns["matchExpressions"][0]["key"] == "kubernetes.io/metadata.name" and ns["matchExpressions"][-1]["key"] == "tier", f"{w['name']}: the configured namespace selector, after the chart's exclusions")
        check(obj["matchExpressions"][0]["values"] == ["e2ee"] and obj["matchExpressions"][-1]["key"] == "kafka", f"{w['name']}: the configured object selector, after the chart's own")
    return docs


def documented_metrics_exist():
    """Every kafka_e2ee_* series the dashboard and the alerts use is one the code registers."""
    import re
    print("the dashboard and the suggested alerts use only metrics the code exports")
    registered = set()
    for source in list(ROOT.glob("*/src/**/*.rs")):
        registered |= set(re.findall(r'"(kafka_e2ee_[a-z0-9_]+)"', source.read_text()))
    def known(name):
        for suffix in ("", "_total", "_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: len(name) - len(suffix)] in registered:
                return True
        return False
    files = ROOT / "charts" / "kafka-e2ee" / "files"
    for doc in (files / "grafana-dashboard.json", files / "prometheus-rules.yaml", ROOT / "docs" / "operations.md"):
        used = set(re.findall(r"kafka_e2ee_[a-z0-9_]+", doc.read_text()))
        unknown = sorted(n for n in used if not known(n))
        check(used and not unknown, f"{doc.name}: {len(used)} series, unknown: {unknown or 'none'}")


def kubectl(*args, stdin=None, token=None, check_ok=True):
    cmd = ["kubectl", *args]
    if token:
        cmd += ["--token", token]
    r = subprocess.run(cmd, input=stdin, text=True, capture_output=True)
    if check_ok and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])}: {r.stdout}{r.stderr}")
    return r


def dry_run_apply():
    print("the chart on the test bed's kube-apiserver: CRDs applied, the rest as a server-side dry run")
    # The chart's CRDs (crds/, what `helm install` applies first), for real; they win over
    # what earlier tests applied on a reused test bed (an older build's descriptions).
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))
    for crd in ("encryptedtopics", "kmsconnections", "clusterkmsconnections"):
        kubectl("wait", "--for", "condition=established", "--timeout=30s", f"crd/{crd}.kafka-e2ee.io")
    check(True, "the chart's CRDs are accepted and Established")
    ns = f"chart-{secrets.token_hex(4)}"
    kubectl("create", "namespace", ns)
    docs = render(VALUE_SETS["cluster KMS connections"], namespace=ns, name=f"dry-{secrets.token_hex(3)}")
    # And every option (no PrometheusRule CRD on the test bed: that one is schema-checked above).
    docs += [d for d in render(EVERY_OPTION, namespace=ns, name=f"all-{secrets.token_hex(3)}") if d["kind"] != "PrometheusRule"]
    for d in docs:
        if d["kind"] == "PodDisruptionBudget":
            # Kubernetes 1.20 serves only policy/v1beta1 (the template picks it on 1.20 clusters;
            # the offline render here assumes a newer one). The spec is the same in both.
            d["apiVersion"] = "policy/v1beta1"
    r = kubectl("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump_all(docs), check_ok=False)
    check(r.returncode == 0, f"{len(docs)} objects accepted: {(r.stdout + r.stderr).strip().splitlines()[-1] if r.returncode else 'all'}")
    return ns


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(what, predicate, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if predicate():
                return True
        except Exception:
            pass
        time.sleep(0.5)
    check(False, f"{what} within {seconds} s")
    return False


def kubeconfig_for(token, directory, name):
    base = yaml.safe_load(Path(os.environ["KUBECONFIG"]).read_text())
    cluster = base["clusters"][0]
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
        "current-context": name,
    }
    path = Path(directory) / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def rbac(bin_dir):
    print("RBAC: the binaries with the chart's ServiceAccount tokens")
    release_ns = f"chart-{secrets.token_hex(4)}"
    work_ns = f"{release_ns}-apps"
    release = f"rbac-{secrets.token_hex(3)}"
    kubectl("create", "namespace", release_ns)
    kubectl("create", "namespace", work_ns)
    # Ignore: the configurations point at a Service the test bed cannot reach.
    docs = render(merged({"webhook": {"failurePolicy": "Ignore"}}), namespace=release_ns, name=release)
    wanted = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"}
    applied = [d for d in docs if d["kind"] in wanted]
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(applied))
    operator_sa = f"{release}-kafka-e2ee-operator"
    webhook_sa = f"{release}-kafka-e2ee-webhook"
    tokens = {sa: kubectl("create", "token", sa, "-n", release_ns, "--duration", "1h").stdout.strip() for sa in (operator_sa, webhook_sa)}
    processes = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            # Minimal: what they must not do.
            for sa, verb, resource, ns in [
                (operator_sa, "delete", "secrets", work_ns),
                (operator_sa, "update", "secrets", work_ns),
                (operator_sa, "create", "secrets", work_ns),
                (operator_sa, "create", "pods", work_ns),
                (operator_sa, "update", "mutatingwebhookconfigurations", None),
                (operator_sa, "create", "leases", "kube-system"),
                (webhook_sa, "get", "secrets", work_ns),
                (webhook_sa, "patch", "encryptedtopics.kafka-e2ee.io", work_ns),
                (webhook_sa, "update", "validatingwebhookconfigurations/someone-elses", None),
            ]:
                args = ["auth", "can-i", verb, resource] + (["-n", ns] if ns else [])
                answer = kubectl(*args, token=tokens[sa], check_ok=False).stdout.strip()
                check(answer == "no", f"{sa.rsplit('-', 1)[1]} may not {verb} {resource}{' in ' + ns if ns else ''}: {answer}")
            # What tenancy needs, and no more: a token for a tenant's ServiceAccount (never
            # the ServiceAccount itself), the namespace labels a ClusterKmsConnection selects
            # on; the webhook sees the connections (the keystore rule).
            for sa, verb, resource, ns, expected in [
                (operator_sa, "create", "serviceaccounts/token", work_ns, "yes"),
                (operator_sa, "get", "namespaces", None, "yes"),
                (operator_sa, "create", "serviceaccounts", work_ns, "no"),
                (operator_sa, "update", "namespaces", None, "no"),
                (webhook_sa, "list", "kmsconnections.kafka-e2ee.io", work_ns, "yes"),
                (webhook_sa, "watch", "clusterkmsconnections.kafka-e2ee.io", None, "yes"),
                (webhook_sa, "create", "serviceaccounts/token", work_ns, "no"),
            ]:
                kind, _, sub = resource.partition("/")
                args = ["auth", "can-i", verb, kind] + (["--subresource", sub] if sub else []) + (["-n", ns] if ns else [])
                answer = kubectl(*args, token=tokens[sa], check_ok=False).stdout.strip()
                check(answer == expected, f"{sa.rsplit('-', 1)[1]} {'may' if expected == 'yes' else 'may not'} {verb} {resource}{' in ' + ns if ns else ''}: {answer}")
            refused = kubectl("get", "secrets", "-n", "kube-system", token=tokens[operator_sa], check_ok=False)
            check(refused.returncode != 0 and "forbidden" in refused.stderr.lower(), "operator: listing kube-system Secrets is forbidden")

            # Sufficient: the operator reconciles a keystore topic with its chart identity.
            keystore = json.dumps({"format": 1, "keys": [{"id": "k1", "material": base64.b64encode(secrets.token_bytes(32)).decode()}], "aliases": {"tek": "k1"}})
            kubectl("create", "secret", "generic", "keystore", "-n", work_ns, f"--from-literal=keystore.json={keystore}")
            topic = f"{work_ns}-orders"
            objects = [
                {"apiVersion": "kafka-e2ee.io/v1alpha1", "kind": "KmsConnection", "metadata": {"name": "keystore", "namespace": work_ns}, "spec": {"keystore": {"secretRef": {"name": "keystore", "key": "keystore.json"}}}},
                {"apiVersion": "kafka-e2ee.io/v1alpha1", "kind": "EncryptedTopic", "metadata": {"name": "orders", "namespace": work_ns}, "spec": {"topicName": topic, "partitions": 2, "tek": "tek", "kmsRef": {"kind": "KmsConnection", "name": "keystore"}}},
            ]
            kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))
            env = dict(os.environ, KUBECONFIG=str(kubeconfig_for(tokens[operator_sa], tmp, "operator")), RUST_LOG="warn,rustify=off,vaultrs=off")
            processes.append(subprocess.Popen([
                str(Path(bin_dir) / "kafka-e2ee-operator"), "run",
                "--bootstrap-servers", os.environ["KE_KAFKA_BOOTSTRAP"],
                "--key-topic", f"{work_ns}-keys", "--namespace", release_ns,
                "--lease-name", operator_sa, "--http-addr", f"127.0.0.1:{free_port()}",
                "--client-config-resync", "1s",
            ], env=env))
            def ready():
                status = json.loads(kubectl("get", "encryptedtopic", "orders", "-n", work_ns, "-o", "json").stdout).get("status", {})
                return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
            if wait("operator: EncryptedTopic Ready with the chart's RBAC", ready):
                check(True, "operator: EncryptedTopic Ready (topic, key topic, status, events, lease)")
            def connected():
                status = json.loads(kubectl("get", "kmsconnection", "keystore", "-n", work_ns, "-o", "json").stdout).get("status", {})
                return any(c["type"] == "Ready" and c["reason"] == "Connected" for c in status.get("conditions", []))
            wait("operator: KmsConnection Ready (Connected) with the chart's RBAC", connected) and check(True, "operator: KmsConnection status written (Ready, Connected)")
            wait("operator: client ConfigMap published", lambda: topic in kubectl("get", "configmap", "kafka-e2ee-client", "-n", work_ns, "-o", "json").stdout) and check(True, "operator: client ConfigMap published")
            signing = kubectl("get", "secret", "kafka-e2ee-signing-keys", "-n", release_ns, "-o", "json", check_ok=False)
            check(signing.returncode == 0, "operator: its signing-key Secret created in the release namespace")
            trusted = kubectl("get", "configmap", "kafka-e2ee-trusted-keys", "-n", release_ns, "-o", "jsonpath={.data.trustedKeys}", check_ok=False).stdout
            profile = kubectl("get", "configmap", "kafka-e2ee-client", "-n", work_ns, "-o", "json").stdout
            check(trusted.startswith("ed25519:") and trusted.strip() in profile, "operator: its public key published, and in the client configuration")

            # Sufficient: the webhook issues its certificate, writes both caBundles, watches ConfigMaps.
            env = dict(os.environ, KUBECONFIG=str(kubeconfig_for(tokens[webhook_sa], tmp, "webhook")), RUST_LOG="warn")
            http = free_port()
            processes.append(subprocess.Popen([
                str(Path(bin_dir) / "kafka-e2ee-webhook"),
                "--self-managed-tls", "--namespace", release_ns,
                "--tls-secret-name", f"{webhook_sa}-tls",
                "--mutating-webhook-configuration", f"{release}-kafka-e2ee",
                "--validating-webhook-configuration", f"{release}-kafka-e2ee",
                "--listen-addr", f"127.0.0.1:{free_port()}", "--http-addr", f"127.0.0.1:{http}",
                "--cert-check-interval", "1s",
            ], env=env))
            def bundles():
                for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
                    conf = json.loads(kubectl("get", kind, f"{release}-kafka-e2ee", "-o", "json").stdout)
                    if not all(w["clientConfig"].get("caBundle") for w in conf["webhooks"]):
                        return False
                return True
            wait("webhook: caBundles written with the chart's RBAC", bundles) and check(True, "webhook: Secret issued and both caBundles written")
            import urllib.request
            wait("webhook: ready (ConfigMaps watched)", lambda: urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz").status == 200) and check(True, "webhook: ready (client ConfigMaps listed and watched)")
        finally:
            for p in processes:
                p.kill()
                p.wait()
            for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
                kubectl("delete", kind, f"{release}-kafka-e2ee", "--ignore-not-found", check_ok=False)
            for kind in ("clusterrolebinding", "clusterrole"):
                for sa in (operator_sa, webhook_sa):
                    kubectl("delete", kind, sa, "--ignore-not-found", check_ok=False)


def main():
    bin_dir = sys.argv[1] if len(sys.argv) > 1 else None
    lint_and_schema()
    renders()
    every_option()
    documented_metrics_exist()
    if os.environ.get("KUBECONFIG"):
        dry_run_apply()
        if bin_dir:
            rbac(bin_dir)
        else:
            check(False, "RBAC checks need BIN_DIR (the built binaries)")
    else:
        check(False, "the test bed is not up (KUBECONFIG unset): scripts/testbed up, eval \"$(scripts/testbed env)\"")
    if FAILURES:
        print(f"{len(FAILURES)} chart check(s) failed")
        sys.exit(1)
    print("chart checks passed")


if __name__ == "__main__":
    main()
