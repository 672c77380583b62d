"""Shared helpers: render the chart with the real Helm SDK (helm-python-sdk, Helm v4's Go
code) and walk the rendered objects."""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import subprocess
from pathlib import Path

import helm_python as helm
import pytest
import yaml

TESTS = Path(__file__).resolve().parent
CHART = TESTS.parent / "juicefs-csi-driver"
REPO = TESTS.parents[1]
NAMESPACE = "juicefs-system"
RELEASE = "jfs"

# Every mountMode the issue names, and the default (None: values.yaml as is).
MODES = ["sidecar", "serverless", "mountpod", "sidecar|mountpod", None]


def load_yaml(path: Path):
    with open(path) as f:
        return yaml.safe_load(f)


def all_values() -> dict:
    """The values file that sets every key of values.yaml."""
    return load_yaml(TESTS / "values-all.yaml")


@functools.lru_cache(maxsize=None)
def _render(values_json: str, namespace: str) -> tuple:
    values = json.loads(values_json)
    with helm.Chart.load(str(CHART)) as chart:
        out = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    objects = []
    notes = ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("_template", path)
                objects.append(doc)
    return tuple(objects), notes


def render(values: dict | None = None, namespace: str = NAMESPACE) -> list[dict]:
    """Rendered objects (dicts, with the template path under `_template`), NOTES excluded."""
    objs, _ = _render(json.dumps(values or {}, sort_keys=True), namespace)
    return copy.deepcopy(list(objs))


def render_notes(values: dict | None = None, namespace: str = NAMESPACE) -> str:
    return _render(json.dumps(values or {}, sort_keys=True), namespace)[1]


def mode_values(mode: str | None) -> dict:
    return {} if mode is None else {"mountMode": mode}


def merged_values(values: dict | None = None) -> dict:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.merge_values(values or {})


def strip(obj: dict) -> dict:
    """The object as the API server would get it."""
    return {k: v for k, v in obj.items() if not k.startswith("_")}


def kinds(objs, kind):
    return [o for o in objs if o["kind"] == kind]


def one(objs, kind, name):
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod")


def pod_specs(objs):
    """(workload object, pod spec) for every workload."""
    for o in objs:
        if o["kind"] == "Pod":
            yield o, o["spec"]
        elif o["kind"] == "CronJob":
            yield o, o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif o["kind"] in WORKLOADS:
            yield o, o["spec"]["template"]["spec"]


def containers(spec):
    """Every container of a pod spec, init containers included."""
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def label_selector_matches(selector: dict | None, labels: dict) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        have = key in labels
        if op == "In" and not (have and labels[key] in values):
            return False
        if op == "NotIn" and have and labels[key] in values:
            return False
        if op == "Exists" and not have:
            return False
        if op == "DoesNotExist" and have:
            return False
    return True


@pytest.fixture(scope="session")
def api_calls() -> dict:
    return load_yaml(TESTS / "api_calls.yaml")


def built_binary(name: str) -> Path | None:
    """A debug build of one of the workspace's binaries: $CARGO_TARGET_DIR/debug/<name> when
    CARGO_TARGET_DIR is set, else target/debug/<name> of the repository. None when not built."""
    dirs = []
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.append(REPO / os.environ["CARGO_TARGET_DIR"])  # an absolute path replaces REPO
    dirs.append(REPO / "target")
    for d in dirs:
        path = d / "debug" / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


@functools.lru_cache(maxsize=None)
def binary_help(path: Path, *subcommand: str) -> tuple[dict, frozenset]:
    """What `<binary> [subcommand] --help` (clap) says: {long flag: takes a value?} and the
    environment variables the flags are read from (`[env: NAME=]`)."""
    out = subprocess.run([str(path), *subcommand, "--help"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    flags = {}
    for m in re.finditer(r"^\s+(?:-\w, )?--([a-z0-9][a-z0-9-]*)(?: <([^>]+)>)?", out, re.M):
        flags[m.group(1)] = m.group(2) is not None
    return flags, frozenset(re.findall(r"\[env: (\w+)=", out))
