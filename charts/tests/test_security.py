"""Security of the rendered control plane: only the node plugin is privileged; everything else
runs without capabilities on a read-only root file system, our image as non-root; secrets reach
pods only through secretKeyRef or volumes."""

from __future__ import annotations

import json
import re

import pytest

from conftest import MODES, all_values, containers, kinds, mode_values, pod_specs, render

CASES = [mode_values(m) for m in MODES] + [None]
IDS = [f"mode={m}" for m in MODES] + ["values-all"]
PRIVILEGED_OK = {("DaemonSet", "juicefs-csi-node", "csi-node")}
NODE_SIDECARS = {"node-driver-registrar", "liveness-probe"}


def values_of(v):
    return all_values() if v is None else v


def each_container(objs):
    for w, spec in pod_specs(objs):
        for c in containers(spec):
            yield w, spec, c


def effective(spec, c, key):
    """A security setting from the container, else from the pod."""
    sc = c.get("securityContext") or {}
    if key in sc:
        return sc[key]
    return (spec.get("securityContext") or {}).get(key)


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_only_the_node_plugin_is_privileged(values):
    objs = render(values_of(values))
    for w, spec, c in each_container(objs):
        sc = c.get("securityContext") or {}
        key = (w["kind"], w["metadata"]["name"], c["name"])
        if key in PRIVILEGED_OK:
            assert sc.get("privileged") is True and sc.get("runAsUser") == 0, key
            continue
        assert not sc.get("privileged"), key
        assert sc.get("allowPrivilegeEscalation") is False, key
        assert sc.get("capabilities", {}).get("drop") == ["ALL"], key
        assert not sc.get("capabilities", {}).get("add"), key
        assert sc.get("readOnlyRootFilesystem") is True, key
        assert effective(spec, c, "seccompProfile") == {"type": "RuntimeDefault"}, key
        if c["name"] not in NODE_SIDECARS:
            assert effective(spec, c, "runAsNonRoot") is True, key
            assert effective(spec, c, "runAsUser") == 65532, key
    for w, spec in pod_specs(objs):
        if w["kind"] != "DaemonSet":
            assert not (spec.get("hostNetwork") or spec.get("hostPID") or spec.get("hostIPC")), w["metadata"]["name"]
            assert not [v for v in spec.get("volumes") or [] if "hostPath" in v], w["metadata"]["name"]


def test_the_node_plugin_keeps_a_read_only_root():
    objs = render()
    for w, spec, c in each_container(objs):
        if c["name"] == "csi-node":
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"])


def test_the_privilege_check_can_fail():
    objs = render({"mountMode": "mountpod"})
    node = kinds(objs, "DaemonSet")[0]
    node["spec"]["template"]["spec"]["containers"][1]["securityContext"]["privileged"] = True
    with pytest.raises(AssertionError):
        for w, spec, c in each_container([node]):
            key = (w["kind"], w["metadata"]["name"], c["name"])
            if key not in PRIVILEGED_OK:
                assert not (c.get("securityContext") or {}).get("privileged"), key


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_every_container_has_requests_and_a_memory_limit(values):
    for w, _, c in each_container(render(values_of(values))):
        r = c.get("resources") or {}
        assert r.get("requests", {}).get("cpu") and r.get("requests", {}).get("memory"), (w["metadata"]["name"], c["name"])
        assert r.get("limits", {}).get("memory"), (w["metadata"]["name"], c["name"])


SECRETISH = re.compile(r"(KEY|SECRET|TOKEN|PASSWORD|PASSPHRASE|META_?URL|CREDENTIAL)", re.I)


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_secrets_reach_pods_only_through_secret_refs_or_volumes(values):
    objs = render(values_of(values))
    for w, spec, c in each_container(objs):
        for e in c.get("env") or []:
            if SECRETISH.search(e["name"]):
                assert "value" not in e, f"{c['name']}: {e['name']} given inline"
                src = e.get("valueFrom") or {}
                assert "secretKeyRef" in src, f"{c['name']}: {e['name']} not from a Secret"
        for a in (c.get("args") or []) + (c.get("command") or []):
            assert not re.search(r"--(secret-key|access-key|password|token)=", a), a
        assert not c.get("envFrom"), "envFrom would expose whole objects; name keys instead"


def test_storage_class_credentials_appear_only_in_their_secret():
    v = all_values()
    backend = v["storageClasses"][0]["backend"]
    needles = [backend["metaurl"], backend["accessKey"], backend["secretKey"]]
    objs = render(v)
    for o in objs:
        text = json.dumps(o)
        if o["kind"] == "Secret":
            continue
        for n in needles:
            assert n not in text, f"{o['kind']} {o['metadata']['name']} contains a credential"
    secrets = kinds(objs, "Secret")
    assert secrets and all(any(n in json.dumps(s) for n in needles) for s in secrets)


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_no_certificate_material_in_the_release(values):
    """TLS keys are made in the cluster by juicefs-certs, never rendered into the release."""
    for o in render(values_of(values)):
        assert "PRIVATE KEY" not in json.dumps(o)
        assert o["metadata"]["name"] != "juicefs-webhook-certs"


def test_webhook_keeps_its_key_in_memory():
    objs = render()
    dep = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "juicefs-csi-webhook"][0]
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert vols["certs"]["emptyDir"]["medium"] == "Memory"
    web = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "webhook"][0]
    assert [m for m in web["volumeMounts"] if m["name"] == "certs"][0]["readOnly"] is True
