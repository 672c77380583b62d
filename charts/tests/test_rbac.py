"""RBAC against api_calls.yaml, both ways: every API call of every component is granted to the
ServiceAccount its pod runs as, and every rule (each verb on each resource) serves a call.
Plus: every rule in the templates carries a comment with its reason."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from conftest import (
    CHART,
    MODES,
    NAMESPACE,
    all_values,
    containers,
    kinds,
    merged_values,
    mode_values,
    pod_specs,
    render,
)

CASES = [mode_values(m) for m in MODES] + [
    None,
    {"controller": {"replicas": 1, "leaderElection": {"enabled": False}}},
    {"controller": {"enabled": False}, "mountMode": "sidecar"},
]
IDS = [f"mode={m}" for m in MODES] + ["values-all", "no-leader-election", "webhook-only"]


@dataclass(frozen=True)
class Grant:
    sa: str
    group: str
    resource: str
    verb: str
    namespace: str | None  # None: cluster-wide (ClusterRoleBinding)
    names: tuple | None  # resourceNames, None = all
    where: str


@dataclass(frozen=True)
class Call:
    sa: str
    component: str
    group: str
    resource: str
    verb: str
    scope: str  # cluster | namespace
    names: tuple | None


def lookup(values: dict, dotted: str):
    cur = values
    for part in dotted.split("."):
        cur = cur[part]
    return cur


def grants(objs) -> list[Grant]:
    roles = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
             for o in objs if o["kind"] in ("ClusterRole", "Role")}
    out = []
    for b in objs:
        if b["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        ref = b["roleRef"]
        ns = b["metadata"].get("namespace")
        key = (ref["kind"], ns if ref["kind"] == "Role" else None, ref["name"])
        assert key in roles, f"{b['kind']} {b['metadata']['name']} refers to missing {key}"
        scope_ns = None if b["kind"] == "ClusterRoleBinding" else ns
        for s in b["subjects"]:
            assert s["kind"] == "ServiceAccount" and s["namespace"] == NAMESPACE, s
            for i, r in enumerate(roles[key]["rules"]):
                assert "nonResourceURLs" not in r
                for g in r["apiGroups"]:
                    for res in r["resources"]:
                        for v in r["verbs"]:
                            assert "*" not in (g, res, v), f"wildcard in {key}: {r}"
                            names = tuple(r["resourceNames"]) if r.get("resourceNames") else None
                            out.append(Grant(s["name"], g, res, v, scope_ns, names,
                                             f"{ref['kind']} {ref['name']} rule {i}"))
    return out


def calls(objs, values, api_calls) -> list[Call]:
    by_container = {}
    for comp, d in api_calls["components"].items():
        for c in d["containers"]:
            assert c not in by_container, f"container {c} listed twice"
            by_container[c] = comp
    out = []
    for w, spec in pod_specs(objs):
        sa = spec.get("serviceAccountName")
        assert sa, f"{w['metadata']['name']} has no serviceAccountName"
        for c in containers(spec):
            comp = by_container.get(c["name"])
            assert comp, f"container {c['name']} of {w['metadata']['name']} is not in api_calls.yaml"
            d = api_calls["components"][comp]
            if "image" in d:
                assert c["image"].rsplit(":", 1)[0].endswith(d["image"].split("/", 1)[1]), (c["image"], d["image"])
            for call in d["calls"]:
                if "when" in call and not lookup(values, call["when"]):
                    continue
                for v in call["verbs"]:
                    out.append(Call(sa, comp, call["apiGroup"], call["resource"], v, call["scope"],
                                    tuple(call["resourceNames"]) if call.get("resourceNames") else None))
    return out


def grant_serves(g: Grant, c: Call) -> bool:
    if (g.sa, g.group, g.resource, g.verb) != (c.sa, c.group, c.resource, c.verb):
        return False
    if c.scope == "cluster" and g.namespace is not None:
        return False
    if c.scope == "namespace" and g.namespace not in (None, NAMESPACE):
        return False
    if g.names is not None and (c.names is None or not set(c.names) <= set(g.names)):
        return False
    return True


def test_api_calls_file_is_well_formed(api_calls):
    for comp, d in api_calls["components"].items():
        assert d["containers"], comp
        for call in d["calls"]:
            assert set(call) <= {"apiGroup", "resource", "verbs", "scope", "resourceNames", "when", "why"}, call
            assert call["scope"] in ("cluster", "namespace"), call
            assert call["verbs"] and len(call["why"]) > 10, call
            assert set(call["verbs"]) <= {"get", "list", "watch", "create", "update", "patch", "delete",
                                          "deletecollection"}, call


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_every_call_is_granted(values, api_calls):
    v = all_values() if values is None else values
    objs = render(v)
    gs = grants(objs)
    cs = calls(objs, merged_values(v), api_calls)
    assert cs, "no calls at all?"
    missing = [c for c in cs if not any(grant_serves(g, c) for g in gs)]
    assert not missing, "\n".join(f"{c.component} ({c.sa}) needs {c.verb} {c.group or 'core'}/{c.resource} "
                                  f"[{c.scope}] {c.names or ''}" for c in missing)


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_every_rule_is_used(values, api_calls):
    v = all_values() if values is None else values
    objs = render(v)
    gs = grants(objs)
    cs = calls(objs, merged_values(v), api_calls)
    unused = [g for g in gs if not any(grant_serves(g, c) for c in cs)]
    assert not unused, "\n".join(f"{g.where}: {g.verb} {g.group or 'core'}/{g.resource} for {g.sa} "
                                 f"serves no call in api_calls.yaml" for g in unused)


def test_the_comparison_can_fail(api_calls):
    """Drop a call and add a rule: both directions notice."""
    objs = render()
    v = merged_values({})
    gs = grants(objs)
    cs = calls(objs, v, api_calls)
    dropped = [c for c in cs if not (c.component == "certs" and c.verb == "create")]
    assert [g for g in gs if not any(grant_serves(g, c) for c in dropped)]
    fewer = [g for g in gs if not (g.resource == "mutatingwebhookconfigurations" and g.verb == "update")]
    assert [c for c in cs if not any(grant_serves(g, c) for g in fewer)]
    # A Role in another namespace does not serve a namespaced call here.
    c = next(c for c in cs if c.scope == "namespace")
    g = Grant(c.sa, c.group, c.resource, c.verb, "elsewhere", None, "test")
    assert not grant_serves(g, c)


@pytest.mark.parametrize("values", CASES, ids=IDS)
def test_service_accounts_exist_and_are_bound(values):
    v = all_values() if values is None else values
    objs = render(v)
    sas = {o["metadata"]["name"] for o in kinds(objs, "ServiceAccount")}
    used = {spec["serviceAccountName"] for _, spec in pod_specs(objs)}
    assert used == sas, (used, sas)
    bound = {s["name"] for b in objs if b["kind"].endswith("Binding") for s in b["subjects"]}
    assert bound <= sas
    for _, spec in pod_specs(objs):
        assert spec.get("automountServiceAccountToken") is not False


def test_components_have_their_own_service_accounts():
    objs = render()
    sa = {w["metadata"]["name"]: spec["serviceAccountName"] for w, spec in pod_specs(objs)}
    assert len(set(sa.values())) == len(sa) == 3, sa


def test_leases_only_with_leader_election():
    """The Lease Role serves the sidecars' --leader-election and goes with it."""
    def leases(v):
        return {g.verb for g in grants(render(v)) if g.resource == "leases"}
    assert leases({}) == {"get", "create", "update"}
    assert leases({"controller": {"replicas": 1, "leaderElection": {"enabled": False}}}) == set()


def test_every_rule_in_the_templates_has_a_reason():
    """Each `- apiGroups:` entry under `rules:` is directly preceded by a comment."""
    bad = []
    for path in sorted((CHART / "templates").glob("*.yaml")):
        lines = path.read_text().splitlines()
        in_rules = False
        for i, line in enumerate(lines):
            if re.match(r"^rules:\s*$", line):
                in_rules = True
                continue
            if in_rules and re.match(r"^\S", line):
                in_rules = False
            if in_rules and re.match(r"^\s*- apiGroups:", line):
                j = i - 1
                while j >= 0 and re.match(r"^\s*\{\{-.*\}\}\s*$", lines[j]):
                    j -= 1  # template control lines between the comment and the rule
                if not re.match(r"^\s*#\s*\S", lines[j]):
                    bad.append(f"{path.name}:{i + 1}")
    assert not bad, f"rules without a reason comment: {bad}"
    assert any("rbac" in p.name for p in (CHART / "templates").glob("*.yaml"))
