#!/usr/bin/env bash
# Create .venv from requirements.lock (hash-pinned). Uses uv when it can (seconds), pip otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/sagashop"

python=""
for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
  [ -n "$candidate" ] || continue
  if command -v "$candidate" >/dev/null 2>&1 &&
     "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    python="$(command -v "$candidate")"; break
  fi
done
if [ -z "$python" ]; then
  echo "error: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11 if it is not on PATH)" >&2
  exit 1
fi

uv=""
if command -v uv >/dev/null 2>&1; then
  uv="$(command -v uv)"
elif [ -x "$CACHE/uv-$UV_VERSION/bin/uv" ]; then
  uv="$CACHE/uv-$UV_VERSION/bin/uv"
else
  echo "installing uv $UV_VERSION into $CACHE (once) ..."
  if "$python" -m venv "$CACHE/uv-$UV_VERSION" && "$CACHE/uv-$UV_VERSION/bin/pip" install -q "uv==$UV_VERSION"; then
    uv="$CACHE/uv-$UV_VERSION/bin/uv"
  else
    echo "warning: could not install uv; falling back to pip (slower)" >&2
  fi
fi

if [ -n "$uv" ]; then
  [ -x .venv/bin/python ] || "$uv" venv -q --python "$python" .venv
  "$uv" pip sync -q --python .venv/bin/python requirements.lock
else
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/pip install -q --require-hashes -r requirements.lock
fi
touch .venv/.synced
echo "python environment ready: .venv ($(.venv/bin/python --version))"
