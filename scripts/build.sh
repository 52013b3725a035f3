#!/usr/bin/env bash
# Sets up everything on a fresh Debian 12 machine and builds the module: Debian packages, ITK 5.2.1 with Python
# wrapping and SlicerExecutionModel (both cached outside the repository, built only once), then this module with its
# 3D Slicer command-line module, tests, examples and benchmarks. Prints the module's build directory on its last line.
#
# Environment: UNETSEG_BUILD_DIR (default: build/ in the repository), UNETSEG_CACHE_DIR (the cache of ITK and
# SlicerExecutionModel), UNETSEG_JOBS (parallel jobs, default: all cores), UNETSEG_WRAP_PYTHON (default ON; OFF
# builds the C++ alone and keeps it out of ITK's build tree, where a wrapped module's libraries and Python files go).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=${UNETSEG_BUILD_DIR:-$repo/build}
jobs=${UNETSEG_JOBS:-$(nproc)}

# Debian packages, ITK and SlicerExecutionModel; sets python, itk_dir and sem_dir.
source "$repo/scripts/dependencies.sh"

cmake -S "$repo" -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release \
  -DITK_DIR="$itk_dir" \
  -DSlicerExecutionModel_DIR="$sem_dir" \
  -DPython3_EXECUTABLE="$python" \
  -DBUILD_TESTING=ON \
  -DUNetSegmentation_WRAP_PYTHON="${UNETSEG_WRAP_PYTHON:-ON}" >&2
cmake --build "$build_dir" -j "$jobs" >&2
echo "$build_dir"
