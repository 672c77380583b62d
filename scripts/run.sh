#!/usr/bin/env bash
# The main job on the embedded default, in one step: builds the client, formats a volume
# with SQLite metadata and local-directory storage (once), and mounts it with FUSE in the
# foreground. Ctrl-C unmounts.   Usage: scripts/run.sh [MOUNTPOINT] [DATA-DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
MP="${1:-/tmp/jfs}"
DATA="${2:-/var/lib/jfs-demo}"
command -v fusermount3 >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
}
cargo build --release --locked -p jfs-mount
J=target/release/juicefs
mkdir -p "$DATA" "$MP"
$J format "sqlite3://$DATA/meta.db" myjfs --storage file --bucket "$DATA/data" --no-update
echo "mounting at $MP (Ctrl-C to unmount)"
exec $J mount "sqlite3://$DATA/meta.db" "$MP"
