#!/usr/bin/env bash
# Sets up, builds and runs every test (C++ GoogleTest and Python) with ctest.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=$(bash "$repo/scripts/build.sh" | tail -n 1)
cd "$build_dir"
ctest --output-on-failure -j "${UNETSEG_JOBS:-$(nproc)}" "$@"
