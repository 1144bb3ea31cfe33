#!/usr/bin/env bash
# Installs the official Python qdrant-client (pinned) into a virtualenv under ~/.cache,
# once, for tests/qdrant/conformance.py, and the official Prometheus client, whose text-format
# parser reads /metrics in tests/it/observe.rs. Safe to run concurrently (flock) and repeatedly.
#
#   tests/qdrant/setup.sh        install if needed; prints the venv's python path as the last line
#
# Override the location with GRAPE_QDRANT_VENV.
set -euo pipefail
version="1.20.0"
prometheus_version="0.21.1"
venv="${GRAPE_QDRANT_VENV:-$HOME/.cache/grape-qdrant-venv}"
installed() {
  [ -x "$venv/bin/python" ] &&
    [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("qdrant-client"), m.version("prometheus-client"))' 2>/dev/null)" = "$version $prometheus_version" ]
}
if ! installed; then
  mkdir -p "$(dirname "$venv")"
  (
    flock 9
    if ! installed; then
      [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
      "$venv/bin/pip" install -q "qdrant-client==$version" "prometheus-client==$prometheus_version" >&2
    fi
  ) 9>"$venv.lock"
fi
echo "$venv/bin/python"
