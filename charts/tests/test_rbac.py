"""RBAC against api_calls.yaml, both ways: every API call of every component is granted to the
ServiceAccount its pod runs as, and every rule (each verb on each resource) serves a call.
Every call of our own binaries names the Rust code that makes it, and that code is there.
Plus: every rule in the templates carries a comment with its reason."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import (
    CHART,
    MODES,
    NAMESPACE,
    REPO,
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
            assert set(call) <= {"apiGroup", "resource", "verbs", "scope", "resourceNames", "when", "why",
                                 "code"}, call
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


# --- each call of our binaries against the Rust code that makes it ----------------------------

# The kube-rs methods (or kubelet request) each verb comes from, whitespace removed.
VERB_METHODS = {
    "get": (".get(", ".get_opt("),
    "list": (".list(", "watcher("),
    "watch": ("watcher(",),
    "create": (".create(",),
    "update": (".replace(",),
    "patch": (".patch(",),
    "delete": (".delete(",),
}
SUBRESOURCE_METHODS = {
    ("pods/log", "get"): (".logs(", ".log_stream("),
    ("nodes/proxy", "get"): ("Request::get(",),
}


def squeeze(s: str) -> str:
    return re.sub(r"\s+", "", s)


def rust_code(path: Path) -> str:
    """The file without `//` comment lines and without its `#[cfg(test)]` module, squeezed."""
    text = path.read_text().split("#[cfg(test)]", 1)[0]
    return squeeze("\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//")))


def binary_crates() -> dict[str, set[Path]]:
    """binary -> the source directories of the crate that builds it and of its path dependencies."""
    ws = tomllib.loads((REPO / "Cargo.toml").read_text())
    out = {}
    for member in ws["workspace"]["members"]:
        manifest = tomllib.loads((REPO / member / "Cargo.toml").read_text())
        dirs = {(REPO / member / "src").resolve()}
        for dep in (manifest.get("dependencies") or {}).values():
            if isinstance(dep, dict) and "path" in dep:
                dirs.add((REPO / member / dep["path"] / "src").resolve())
        for b in manifest.get("bin") or []:
            out[b["name"]] = dirs
    return out


def call_site_problems(binary: str, call: dict, crates: dict[str, set[Path]]) -> list[str]:
    what = f"{binary}: {'/'.join(filter(None, [call['apiGroup'], call['resource']]))} {call['verbs']}"
    code = call.get("code")
    if not code:
        return [f"{what}: no `code` (where is the call made?)"]
    problems = []
    covered = set()
    for ref in code:
        if set(ref) != {"file", "at", "verbs"}:
            problems.append(f"{what}: code entry needs exactly file, at, verbs: {ref}")
            continue
        path = (REPO / ref["file"]).resolve()
        if path.suffix != ".rs" or not path.is_file():
            problems.append(f"{what}: {ref['file']} is not a Rust source file")
            continue
        if not any(path.is_relative_to(d) for d in crates[binary]):
            problems.append(f"{what}: {ref['file']} is not built into {binary}")
            continue
        text = rust_code(path)
        snippets = [ref["at"]] if isinstance(ref["at"], str) else list(ref["at"])
        for s in snippets:
            if not s.strip() or squeeze(s) not in text:
                problems.append(f"{what}: {ref['file']} does not contain {s!r}")
        extra = set(ref["verbs"]) - set(call["verbs"])
        if extra:
            problems.append(f"{what}: code entry claims verbs the call does not list: {sorted(extra)}")
        for v in ref["verbs"]:
            methods = SUBRESOURCE_METHODS.get((call["resource"], v)) or VERB_METHODS.get(v, ())
            if not any(m in squeeze(s) for s in snippets for m in methods):
                problems.append(f"{what}: no snippet at {ref['file']} makes a {v} call ({' or '.join(methods)})")
        covered |= set(ref["verbs"])
    if set(call["verbs"]) - covered:
        problems.append(f"{what}: no code named for {sorted(set(call['verbs']) - covered)}")
    return problems


def test_every_call_of_our_binaries_names_its_code(api_calls):
    crates = binary_crates()
    problems = []
    for comp, d in api_calls["components"].items():
        assert ("binary" in d) != ("image" in d), f"{comp}: one of binary (ours) or image (upstream)"
        if "image" in d:
            assert not any("code" in c for c in d["calls"]), f"{comp} runs upstream code: no `code`"
            continue
        assert d["binary"] in crates, f"{comp}: no workspace crate builds {d['binary']}"
        for call in d["calls"]:
            problems += call_site_problems(d["binary"], call, crates)
    assert not problems, "\n".join(problems)


def test_the_call_site_check_can_fail(api_calls):
    """A missing snippet, a verb left without code, a method that is not the verb's, a file
    outside the binary's crates: each is reported."""
    crates = binary_crates()
    good = next(c for c in api_calls["components"]["csi-node"]["calls"] if c["resource"] == "secrets")
    assert call_site_problems("juicefs-csi", good, crates) == []

    def mutated(**kw):
        c = dict(good)
        c.update(kw)
        return call_site_problems("juicefs-csi", c, crates)

    assert mutated(code=[{**good["code"][0], "at": "api.get_opt(&nowhere)"}] + good["code"][1:])
    assert mutated(code=good["code"][:-1])
    assert mutated(code=[{**good["code"][0], "verbs": ["get", "delete"]}] + good["code"][1:])
    assert mutated(code=[{**good["code"][1], "verbs": ["update"]}, good["code"][0]])
    assert mutated(code=[{**good["code"][0], "file": "webhook/src/secrets.rs"}] + good["code"][1:])
    assert mutated(code=[{**good["code"][0], "file": "csi/src/nothere.rs"}] + good["code"][1:])
    assert mutated(code=None)


def test_comments_and_tests_do_not_count_as_code(tmp_path):
    f = tmp_path / "x.rs"
    f.write_text("fn a() {\n    // nodes.get_opt(&n)\n    pods\n        .list(&lp)\n}\n"
                 "#[cfg(test)]\nmod tests {\n    fn b() { secrets.get_opt(&s) }\n}\n")
    code = rust_code(f)
    assert squeeze("pods.list(&lp)") in code
    assert squeeze("nodes.get_opt(&n)") not in code
    assert squeeze("secrets.get_opt(&s)") not in code


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
