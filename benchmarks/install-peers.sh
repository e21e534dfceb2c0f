#!/usr/bin/env bash
# Install the peer tools the benchmarks compare against (Debian packages): GNU parallel.
set -euo pipefail
if ! command -v parallel >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq parallel >/dev/null
fi
parallel --version | head -1
