#!/usr/bin/env bash
# An S3-compatible server on loopback without Docker, for tests and for machines like CI's:
# moto's server from PyPI, installed once into a virtualenv under ~/.cache.
#
#   minio/s3-server.sh [PORT]          run in the foreground on 127.0.0.1:PORT (default 9000)
#   minio/s3-server.sh --install-only  just install it
#
# It keeps objects in memory and accepts any credentials; create a bucket with
#   curl -X PUT http://127.0.0.1:9000/grape
set -euo pipefail
venv="${GRAPE_S3_VENV:-$HOME/.cache/grape-s3-venv}"
if [ ! -x "$venv/bin/moto_server" ]; then
  mkdir -p "$(dirname "$venv")"
  (
    flock 9
    if [ ! -x "$venv/bin/moto_server" ]; then
      python3 -m venv "$venv" >&2
      "$venv/bin/pip" install -q 'moto[server]>=5.1' >&2
    fi
  ) 9>"$venv.lock"
fi
if [ "${1:-}" = "--install-only" ]; then exit 0; fi
exec "$venv/bin/moto_server" -H 127.0.0.1 -p "${1:-9000}"
