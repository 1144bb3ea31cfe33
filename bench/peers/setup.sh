#!/usr/bin/env bash
# Create (idempotently) the Python venv used by bench/peers/ann_peer.py and
# install the peer ANN libraries into it: numpy, hnswlib, faiss-cpu, usearch, matplotlib.
#
#   bash bench/peers/setup.sh            # venv at ~/.cache/grape-peer-venv
#   GRAPE_PEER_VENV=/some/dir bash bench/peers/setup.sh
#
# Prints the venv's python path as the last line of output.
set -euo pipefail

VENV="${GRAPE_PEER_VENV:-$HOME/.cache/grape-peer-venv}"
PY="$VENV/bin/python"

if [ ! -x "$PY" ]; then
    echo "creating venv at $VENV" >&2
    if ! python3 -m venv "$VENV"; then
        echo "python3 -m venv failed; on Debian install it with: apt-get install -y python3-venv" >&2
        exit 1
    fi
fi

pip_q() { "$PY" -m pip install --quiet --disable-pip-version-check "$@"; }

pip_q --upgrade pip
pip_q numpy faiss-cpu usearch matplotlib

# hnswlib: the upstream package ships only an sdist on some Python versions and
# must compile (needs a C++ compiler and Python headers). Fall back to
# chroma-hnswlib, a fork with prebuilt wheels that also imports as `hnswlib`.
if "$PY" -c 'import hnswlib' 2>/dev/null; then
    :
elif pip_q hnswlib && "$PY" -c 'import hnswlib' 2>/dev/null; then
    :
else
    echo "hnswlib failed to build from source (needs python3-dev and build-essential:" >&2
    echo "  apt-get install -y python3-dev build-essential); trying chroma-hnswlib wheels" >&2
    "$PY" -m pip uninstall --quiet -y hnswlib >/dev/null 2>&1 || true
    pip_q chroma-hnswlib
fi

"$PY" - <<'PYEOF' >&2
import importlib.metadata as md, numpy, faiss, hnswlib, usearch, matplotlib
dists = {d.metadata["Name"].lower(): d.version for d in md.distributions()}
hn = "hnswlib " + dists["hnswlib"] if "hnswlib" in dists else "chroma-hnswlib " + dists.get("chroma-hnswlib", "?")
print(f"ok: numpy {numpy.__version__}, faiss-cpu {faiss.__version__}, {hn}, usearch {usearch.__version__}, matplotlib {matplotlib.__version__}")
PYEOF

echo "$PY"
