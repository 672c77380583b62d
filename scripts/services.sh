#!/usr/bin/env bash
# Starts the servers the tests use, on loopback only, and prints `export` lines for them:
#   eval "$(scripts/services.sh)"
# PostgreSQL (the Debian cluster, user jfs), Redis on 6379, s3s-fs on 9900.
set -euo pipefail
TOOLS="${JFS_TOOLS:-$HOME/.cache/jfs-tools}"
PATH="$HOME/.cargo/bin:$PATH"

ver=$(pg_lsclusters -h | awk 'NR==1 {print $1}')
pg_ctlcluster "$ver" main start >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  pg_isready -q -h 127.0.0.1 -p 5432 && break
  sleep 0.5
done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname='jfs'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"CREATE ROLE jfs LOGIN SUPERUSER PASSWORD 'jfs'\"" >/dev/null

redis-cli -p 6379 ping >/dev/null 2>&1 || redis-server --daemonize yes --port 6379 --bind 127.0.0.1 --save '' --dir /tmp >/dev/null

S3_DIR="${JFS_S3_DIR:-/tmp/jfs-s3}"
mkdir -p "$S3_DIR"
if ! (exec 3<>/dev/tcp/127.0.0.1/9900) 2>/dev/null; then
  # Started from its own directory: s3s-fs resolves paths against its working directory,
  # so a server started from a clone that is later deleted answers every request with 500.
  (cd "$S3_DIR" && nohup s3s-fs --host 127.0.0.1 --port 9900 --access-key jfstest \
    --secret-key jfstestsecret "$S3_DIR" >/tmp/jfs-s3.log 2>&1 &)
  for _ in $(seq 1 40); do
    (exec 3<>/dev/tcp/127.0.0.1/9900) 2>/dev/null && break
    sleep 0.25
  done
fi

cat <<ENV
export JFS_TEST_PG='host=127.0.0.1 port=5432 user=jfs password=jfs sslmode=disable'
export JFS_TEST_S3_ENDPOINT='http://127.0.0.1:9900'
export JFS_TEST_S3_DIR='$S3_DIR'
export JFS_TEST_S3_KEYS='jfstest:jfstestsecret'
export JFS_TEST_REDIS='redis://127.0.0.1:6379'
export JUICEFS_REF='$TOOLS/juicefs-ref'
ENV
