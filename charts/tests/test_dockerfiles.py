"""The Dockerfiles build and copy binaries that exist in the workspace, under the paths the
chart runs. (No Docker engine here: the files are read, not built.)"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, all_values, containers, pod_specs, render

DOCKER = REPO / "docker"
IMAGES = {"Dockerfile.csi": "juicedata/juicefs-rs-csi", "Dockerfile.mount": "juicedata/juicefs-rs-mount"}


def workspace_bins() -> dict[str, str]:
    """binary name -> package, for every workspace member ([[bin]] names, src/bin/*.rs, or the
    default binary src/main.rs named after the package)."""
    ws = tomllib.loads((REPO / "Cargo.toml").read_text())
    out = {}
    for member in ws["workspace"]["members"]:
        manifest = tomllib.loads((REPO / member / "Cargo.toml").read_text())
        pkg = manifest["package"]["name"]
        bins = manifest.get("bin") or []
        for b in bins:
            out[b["name"]] = pkg
        if (REPO / member / "src/main.rs").exists() and manifest.get("package", {}).get("autobins", True):
            out.setdefault(pkg, pkg)
        for p in (REPO / member / "src/bin").glob("*.rs") if manifest["package"].get("autobins", True) else []:
            out.setdefault(p.stem, pkg)
    return out


def parse(path: Path):
    """Stages: [{name, base, lines: [(instruction, rest)]}], joining continuation lines."""
    text = re.sub(r"\\\n", " ", path.read_text())
    stages = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append({"name": name, "base": parts[0], "lines": []})
        else:
            stages[-1]["lines"].append((instr, rest))
    return stages


def built_packages(stage) -> set[str]:
    pkgs = set()
    for instr, rest in stage["lines"]:
        if instr != "RUN":
            continue
        for cmd in re.split(r"&&|;", rest):
            words = shlex.split(cmd)
            if words[:2] == ["cargo", "build"] or "cargo" in words and "build" in words:
                assert "--release" in words and "--locked" in words, cmd
                for i, w in enumerate(words):
                    if w in ("-p", "--package"):
                        pkgs.add(words[i + 1])
    return pkgs


def copies(stage):
    """(from-stage, [sources], destination) of every COPY/ADD."""
    for instr, rest in stage["lines"]:
        if instr not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        frm = None
        args = []
        for w in words:
            if w.startswith("--from="):
                frm = w.split("=", 1)[1]
            elif not w.startswith("--"):
                args.append(w)
        yield frm, args[:-1], args[-1]


def binaries_in_image(dockerfile: str) -> dict[str, str]:
    """Path in the final image -> workspace binary name, checked against the builder."""
    bins = workspace_bins()
    stages = parse(DOCKER / dockerfile)
    builder = {s["name"]: s for s in stages if s["name"]}
    final = stages[-1]
    out = {}
    for frm, srcs, dest in copies(final):
        if frm is None:
            continue
        assert frm in builder, f"{dockerfile}: COPY --from={frm}: no such stage"
        pkgs = built_packages(builder[frm])
        for src in srcs:
            name = src.rsplit("/", 1)[-1]
            assert name in bins, f"{dockerfile}: copies {name}, which no workspace crate builds ({sorted(bins)})"
            assert bins[name] in pkgs, f"{dockerfile}: {name} is built by {bins[name]}, not built in stage {frm} ({pkgs})"
            # The builder stage copies it out of target/release under the same name.
            staged = any(instr == "RUN" and f"target/release/{name}" in rest for instr, rest in builder[frm]["lines"])
            assert staged, f"{dockerfile}: stage {frm} never takes {name} from target/release"
            target = dest if not dest.endswith("/") else dest + name
            out[target] = name
    return out


def test_workspace_bins_reader():
    bins = workspace_bins()
    assert bins["juicefs"] == "jfs-mount"
    assert bins["juicefs-webhook"] == "jfs-webhook" and bins["juicefs-certs"] == "jfs-certs"
    assert bins["juicefs-csi"] == "jfs-csi"


def test_control_plane_image_contents():
    got = binaries_in_image("Dockerfile.csi")
    want = {"/usr/local/bin/juicefs-webhook": "juicefs-webhook",
            "/usr/local/bin/juicefs-certs": "juicefs-certs",
            "/usr/local/bin/juicefs-csi": "juicefs-csi"}
    assert got == want


def test_mount_image_contents():
    got = binaries_in_image("Dockerfile.mount")
    assert got == {"/usr/local/bin/juicefs": "juicefs"}
    text = (DOCKER / "Dockerfile.mount").read_text()
    assert re.search(r"ln -s /usr/local/bin/juicefs /sbin/mount\.juicefs", text)
    assert re.search(r"apt-get install[^\n]*\bfuse3\b", text)
    assert re.search(r"apt-get install[^\n]*\bca-certificates\b", text)


@pytest.mark.parametrize("dockerfile", sorted(IMAGES))
def test_multi_stage_small_runtime(dockerfile):
    stages = parse(DOCKER / dockerfile)
    assert len(stages) >= 2
    assert stages[0]["base"] == "rust:1-bookworm"
    assert stages[-1]["base"] == "debian:bookworm-slim"
    users = [rest for instr, rest in stages[-1]["lines"] if instr == "USER"]
    if dockerfile == "Dockerfile.csi":
        assert users == ["65532:65532"]
    else:
        assert users == [], "the mount image runs as root (privileged FUSE containers)"
    for instr, rest in stages[-1]["lines"]:
        if instr == "RUN" and "apt-get install" in rest:
            assert "--no-install-recommends" in rest and "rm -rf /var/lib/apt/lists" in rest


def test_the_chart_runs_paths_the_images_have():
    csi = set(binaries_in_image("Dockerfile.csi"))
    objs = render(all_values())
    seen = set()
    for _, spec in pod_specs(objs):
        for c in containers(spec):
            cmd = (c.get("command") or [None])[0]
            if cmd and cmd.startswith("/usr/local/bin/"):
                assert cmd in csi, f"{c['name']} runs {cmd}, which Dockerfile.csi does not install"
                seen.add(cmd)
    assert seen == csi, f"binaries the chart never runs: {csi - seen}"
