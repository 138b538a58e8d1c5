#!/usr/bin/env bash
# Idempotent setup: Debian packages when missing, then .venv with the project installed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(ffmpeg nginx libnginx-mod-rtmp apertium apertium-eng-spa apertium-eng-cat
              espeak-ng rubberband-cli sox docker-compose prometheus wget)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.livedub-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing Python packages (this takes a few minutes the first time)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".[dev,coqui]" torch==2.13.0
  # PyPI's torchaudio is a CUDA build whose native libs cannot load beside CPU torch; Coqui's
  # inference uses only its Python parts, so the native libs are set aside.
  ta_dir=$(.venv/bin/python -c 'import importlib.util,os;print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))')
  for so in "$ta_dir"/lib/*.so; do [ -e "$so" ] && mv "$so" "$so.disabled"; done
  touch "$stamp"
fi
echo "bootstrap: ready"
