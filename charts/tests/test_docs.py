"""The install and troubleshooting docs quote what the code really says: every `JuiceFS:` denial
they show matches a message in the webhook or mountspec sources, and every chart value they
name exists."""

from __future__ import annotations

import re

import pytest

from conftest import CHART, REPO, load_yaml

DOCS = [REPO / "docs/install.md", REPO / "docs/troubleshooting.md"]
SOURCES = sorted((REPO / "webhook/src").rglob("*.rs")) + sorted((REPO / "mountspec/src").rglob("*.rs"))


def rust_messages() -> list[re.Pattern]:
    """Regexes from the string literals of the sources; `{...}` placeholders match anything."""
    out = []
    for path in SOURCES:
        for lit in re.findall(r'"((?:[^"\\\n]|\\.)*)"', path.read_text()):
            text = lit.replace('\\"', '"').replace("\\\\", "\\")
            parts = re.split(r"\{[^{}]*\}", text)
            if max((len(p) for p in parts), default=0) < 20:
                continue  # too short to identify a message
            out.append(re.compile(".+?".join(re.escape(p) for p in parts)))
    return out


def quoted_denials(path) -> list[str]:
    """Lines of ```text blocks that carry a JuiceFS denial, from `JuiceFS: ` on."""
    out = []
    for block in re.findall(r"```text\n(.*?)```", path.read_text(), re.S):
        for line in block.splitlines():
            if "JuiceFS: " in line:
                out.append(line.split("JuiceFS: ", 1)[1])
    return out


def test_the_docs_quote_denials():
    assert len(quoted_denials(REPO / "docs/troubleshooting.md")) >= 8


@pytest.mark.parametrize("message", quoted_denials(REPO / "docs/troubleshooting.md"))
def test_quoted_denial_is_a_real_message(message):
    pats = rust_messages()
    assert any(p.search(message) for p in pats), f"no source message matches: {message}"


def test_the_matcher_rejects_made_up_messages():
    pats = rust_messages()
    assert not any(p.search('volume "data": PVC apps/data is not ready; please wait for the moon') for p in pats)


def test_troubleshooting_covers_each_case():
    text = (REPO / "docs/troubleshooting.md").read_text()
    for heading in ("Driver not registered", "Mount Pod pending", "Transport endpoint is not connected",
                    "Bad mount options", "Unbound PVC", "Webhook unavailable"):
        assert re.search(rf"^## .*{re.escape(heading)}", text, re.M), heading


VALUE_PATH = re.compile(r"`((?:mountMode|driverName|kubeletDir|jfsMountDir|image|mountImage|sidecars|"
                        r"serviceAccount|csidriver|controller|node|webhook|globalConfig|storageClasses|"
                        r"metrics)(?:\[\])?(?:\.[A-Za-z][\w]*(?:\[\])?)+)(?::[^`]*)?`")


def test_values_named_in_the_docs_exist():
    values = load_yaml(CHART / "values.yaml")
    missing = []
    for doc in DOCS:
        for path in VALUE_PATH.findall(doc.read_text()):
            if path.startswith("globalConfig.mountPodPatch"):
                # Passed through to config.yaml: checked against mountspec's schema instead.
                patch = (REPO / "mountspec/src/config.rs").read_text()
                field = path.rsplit(".", 1)[1]
                snake = re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), field)
                if f"pub {snake}:" not in patch:
                    missing.append(f"{doc.name}: {path}")
                continue
            cur = values
            for part in path.split("."):
                key = part.removesuffix("[]")
                if isinstance(cur, list):
                    cur = cur[0]
                if not isinstance(cur, dict) or key not in cur:
                    missing.append(f"{doc.name}: {path}")
                    break
                cur = cur[key]
    assert not missing, missing
