#!/usr/bin/env python3
"""Runs the Argo CD health checks of examples/gitops/argocd-health.yaml with Lua 5.4 (Argo CD
runs gopher-lua, a Lua 5.1 dialect: the scripts use only what both have) against sample
objects shaped as the operator writes them, and checks each verdict. Usage:
check_health.py [LUA] (default lua5.4)."""

import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).parent
LUA = sys.argv[1] if len(sys.argv) > 1 else "lua5.4"
failures = 0


def lua_literal(value):
    """`value` (from JSON/YAML) as a Lua table constructor; null becomes nil."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"
    if isinstance(value, list):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    return "{" + ", ".join(f"[{lua_literal(k)}] = {lua_literal(v)}" for k, v in value.items()) + "}"


def health(script, obj):
    """Argo CD's call: `obj` is global, the script's chunk returns the health table."""
    program = f"obj = {lua_literal(obj)}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, '\\t', hs.message or '')\n"
    run = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True)
    if run.returncode != 0:
        raise RuntimeError(f"lua failed: {run.stderr}")
    status, _, message = run.stdout.partition("\t")
    return status, message


def condition(type_, status, reason, message="m"):
    return {"type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-12-05T00:00:00Z"}


def topic(generation=1, observed=1, *conditions):
    obj = {"apiVersion": "kafka-e2ee.io/v1alpha1", "kind": "EncryptedTopic",
           "metadata": {"name": "orders", "namespace": "shop", "generation": generation},
           "spec": {"partitions": 3}}
    if conditions or observed is not None:
        obj["status"] = {"conditions": list(conditions)}
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
    return obj


def expect(kind, script, obj, wanted, what, needle=None):
    global failures
    status, message = health(script, obj)
    ok = status == wanted and (needle is None or needle in message)
    failures += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {kind}: {what}: {status} ({message})")


def main():
    data = yaml.safe_load((HERE / "argocd-health.yaml").read_text())["data"]
    prefix = "resource.customizations.health.kafka-e2ee.io_"
    et = data[prefix + "EncryptedTopic"]
    ready = condition("Ready", "True", "Ready", "topic shop-orders is encrypted")
    cases = [
        (topic(1, None), "Progressing", "new, no status yet", None),
        (topic(2, 2, ready, condition("KeyRecordsVerified", "True", "Verified")), "Healthy", "ready at its generation", "encrypted"),
        (topic(3, 2, ready), "Progressing", "ready, but for an older generation", "generation 3"),
        (topic(1, 1, condition("Ready", "False", "KmsDenied", "KmsConnection/vault: vault: access denied")), "Degraded", "KMS refused", "KmsConnection/vault"),
        (topic(1, 1, condition("Ready", "False", "InvalidSpec", "spec.partitions must be >= 1")), "Degraded", "invalid spec", "InvalidSpec"),
        (topic(1, 1, condition("Ready", "False", "WaitingForDeletion", "held by an object being deleted")), "Progressing", "waiting for another object's deletion", None),
        (topic(2, 1, condition("Paused", "True", "Paused", "annotated pause"), ready), "Suspended", "paused (spec changed meanwhile)", "pause"),
        (topic(1, None, condition("Ready", "Unknown", "Paused", "paused before it was ever reconciled")), "Suspended", "paused before any reconciliation", None),
        (topic(1, 1, condition("Ready", "Unknown", "Unmanaged", "managed=false")), "Suspended", "unmanaged", None),
        (topic(1, 1, ready, condition("KeyRecordsVerified", "False", "UnverifiedKeyRecords", "2 record(s) for orders refused")), "Degraded", "forged key records refused", "refused"),
    ]
    for obj, wanted, what, needle in cases:
        expect("EncryptedTopic", et, obj, wanted, what, needle)

    for kind in ("KmsConnection", "ClusterKmsConnection"):
        script = data[prefix + kind]
        conn = {"apiVersion": "kafka-e2ee.io/v1alpha1", "kind": kind, "metadata": {"name": "vault", "generation": 1}, "spec": {}}
        expect(kind, script, conn, "Progressing", "not checked yet")
        conn["status"] = {"backend": "vault", "observedGeneration": 1,
                          "conditions": [condition("Ready", "True", "Connected", "vault answered")]}
        expect(kind, script, conn, "Healthy", "connected", "answered")
        conn["status"]["conditions"] = [condition("Ready", "False", "KmsDenied", "login as role x refused")]
        expect(kind, script, conn, "Degraded", "credentials refused", "KmsDenied")

    # Argo CD applies lower sync waves first: every example's connection (and what it needs)
    # before its EncryptedTopics, which Argo would otherwise show Degraded until it exists.
    global failures
    wave = lambda d: int((d["metadata"].get("annotations") or {}).get("argocd.argoproj.io/sync-wave", "0"))
    for example in sorted(p for p in HERE.parent.iterdir() if (p / "kmsconnection.yaml").exists()):
        first = [d for d in yaml.safe_load_all((example / "kmsconnection.yaml").read_text()) if d]
        then = [d for d in yaml.safe_load_all((example / "encryptedtopic.yaml").read_text()) if d]
        ok = max(map(wave, first)) < min(map(wave, then))
        failures += not ok
        print(f"{'ok  ' if ok else 'FAIL'} sync waves: examples/{example.name}: the connection before the topics")
    print(f"{failures} failure(s)")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
