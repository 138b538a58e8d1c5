#!/usr/bin/env bash
# Idempotent setup: Debian packages when missing, then .venv with the workspace installed.
set -euo pipefail
cd "$(dirname "$0")/.."

# libsrt1.5-gnutls: srt:// outputs (media_service/media_io/srt_relay.py), as in the image;
# srt-tools: srt-live-transmit, the independent SRT receiver of tests/integration/test_srt_relay.py.
# docker.io, debootstrap, busybox-static: the deployment test (tests/deploy) starts its own engine
# and makes the base images that cannot be pulled here (livedub_testkit.standin_images).
DEB_PACKAGES=(ffmpeg libsrt1.5-gnutls srt-tools nginx libnginx-mod-rtmp apertium apertium-eng-spa apertium-eng-cat
              espeak-ng rubberband-cli sox docker-compose prometheus wget chromium redis-server
              docker.io debootstrap busybox-static)
missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# node and npm (for the npm packages below): the machine's own from any source, else Debian's.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)
# kubectl (its `kustomize` renders deploy/k8s in the manifest test): the machine's own, else Debian's.
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
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
# The four distributions (protocol, media-service, sts-service with its coqui extra, testkit), editable,
# and the workspace's dev tools, at the versions of requirements.lock. Re-installed whenever one of
# these files is newer than the stamp.
MANIFESTS=(pyproject.toml requirements.lock libs/livedub_protocol/pyproject.toml
           apps/media-service/pyproject.toml apps/sts-service/pyproject.toml libs/livedub_testkit/pyproject.toml)
stamp=.venv/.livedub-installed
stale=0
[ -f "$stamp" ] || stale=1
for f in "${MANIFESTS[@]}"; do
  if [ "$f" -nt "$stamp" ]; then stale=1; fi
done
if [ "$stale" -eq 1 ]; then
  echo "bootstrap: installing Python packages (this takes a few minutes the first time)"
  .venv/bin/pip install -q --upgrade pip
  # A .venv made before the split holds `livedub` as one distribution owning both console scripts:
  # remove it first, or replacing it after the services are installed would delete their scripts.
  if .venv/bin/python -c 'import importlib.metadata as m, sys
sys.exit(not any(e.group == "console_scripts" for e in m.distribution("livedub").entry_points))' 2>/dev/null; then
    .venv/bin/pip uninstall -q -y livedub
  fi
  .venv/bin/pip install -q -c requirements.lock \
    -e libs/livedub_protocol -e apps/media-service -e "./apps/sts-service[coqui]" -e libs/livedub_testkit \
    -e ".[dev]" torch==2.13.0
  # PyPI's torchaudio is a CUDA build whose native libs cannot load beside CPU torch; Coqui's
  # inference uses only its Python parts, so the native libs are set aside.
  ta_dir=$(.venv/bin/python -c 'import importlib.util,os;print(os.path.dirname(importlib.util.find_spec("torchaudio").origin))')
  for so in "$ta_dir"/lib/*.so; do [ -e "$so" ] && mv "$so" "$so.disabled"; done
  touch "$stamp"
fi
# From the npm registry into .node/ (gitignored, never committed): hls.js, which media-service
# serves to the dashboard's HLS player (--hls-js), and playwright-core, which drives Debian's
# chromium in the browser test (it downloads no browser of its own).
NODE_PACKAGES=(hls.js@1.7.4 playwright-core@1.65.1)
node_stamp=.node/.livedub-installed
if [ "$(cat "$node_stamp" 2>/dev/null)" != "${NODE_PACKAGES[*]}" ] || [ ! -f .node/node_modules/hls.js/dist/hls.min.js ] \
   || [ ! -f .node/node_modules/playwright-core/package.json ]; then
  echo "bootstrap: installing npm packages into .node: ${NODE_PACKAGES[*]}"
  mkdir -p .node
  npm install --prefix .node --no-audit --no-fund --loglevel=error --save-exact "${NODE_PACKAGES[@]}" >/dev/null
  echo "${NODE_PACKAGES[*]}" > "$node_stamp"
fi
echo "bootstrap: ready"
