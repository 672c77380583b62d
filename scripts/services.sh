#!/usr/bin/env bash
# Starts the servers the tests use, on loopback only, and prints `export` lines for them:
#   eval "$(scripts/services.sh)"
# PostgreSQL (the Debian cluster, user jfs), Redis on 6379, s3s-fs on 9900
# (JFS_REDIS_PORT and JFS_S3_PORT move them). A server it starts must not keep this
# script's stdout: `$(...)` waits for every holder of that pipe to close it, so a server
# that inherits it makes the caller wait forever (the CI timeout of session 8).
set -euo pipefail
TOOLS="${JFS_TOOLS:-$HOME/.cache/jfs-tools}"
PATH="$HOME/.cargo/bin:$PATH"

ver=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
pg_ctlcluster "$ver" main start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.5
done
# From /: psql as postgres cannot enter a clone under root's private /tmp directory.
(cd / && su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='jfs'\"") | grep -q 1 ||
  (cd / && su postgres -c "psql -qc \"CREATE ROLE jfs LOGIN SUPERUSER PASSWORD 'jfs'\"") >/dev/null

REDIS_PORT="${JFS_REDIS_PORT:-6379}"
redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 ||
  redis-server --daemonize yes --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --dir /tmp \
    >/dev/null 2>&1 </dev/null

# Something accepts connections on loopback port $1.
listening() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }

S3_PORT="${JFS_S3_PORT:-9900}"
S3_DIR="${JFS_S3_DIR:-/tmp/jfs-s3}"
mkdir -p "$S3_DIR"
if ! listening "$S3_PORT"; then
  # Started from its own directory: s3s-fs resolves paths against its working directory,
  # so a server started from a clone that is later deleted answers every request with 500.
  # The redirections cover the whole background subshell, not only s3s-fs (see the top).
  (cd "$S3_DIR" && exec nohup s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key jfstest \
    --secret-key jfstestsecret "$S3_DIR") >"/tmp/jfs-s3-$S3_PORT.log" 2>&1 </dev/null &
  for _ in $(seq 1 40); do
    listening "$S3_PORT" && break
    sleep 0.25
  done
  listening "$S3_PORT" ||
    { echo "services: s3s-fs did not start on port $S3_PORT (see /tmp/jfs-s3-$S3_PORT.log)" >&2; exit 1; }
fi

cat <<ENV
export JFS_TEST_PG='host=127.0.0.1 port=5432 user=jfs password=jfs sslmode=disable'
export JFS_TEST_S3_ENDPOINT='http://127.0.0.1:$S3_PORT'
export JFS_TEST_S3_DIR='$S3_DIR'
export JFS_TEST_S3_KEYS='jfstest:jfstestsecret'
export JFS_TEST_REDIS='redis://127.0.0.1:$REDIS_PORT'
export JUICEFS_REF='$TOOLS/juicefs-ref'
ENV
