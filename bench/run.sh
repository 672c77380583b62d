#!/usr/bin/env bash
# Client benchmark, side by side with the reference client and bindfs; results and this
# command go to docs/BENCHMARKS.md.  Usage: bench/run.sh [--size-mib N] [--files N] [--rounds N]
# [--backends sqlite-file,redis-s3], or bench/run.sh --writeback [--size-mib N] [--rounds N]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
eval "$(scripts/services.sh)"   # Redis and the S3 server for the Redis + S3 table
cargo build --release --locked -p jfs-mount
exec python3 bench/run_bench.py "$@"
