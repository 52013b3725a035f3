#!/usr/bin/env bash
# Installs the Debian packages the module needs (build, LibTorch, wrapping, tests) and a deb-src entry
# so that ITK's source package can be fetched. Idempotent: installed packages are skipped by apt.
set -euo pipefail

packages=(
  build-essential cmake ninja-build dpkg-dev pkg-config
  libtorch-dev python3-torch
  libgtest-dev libbenchmark-dev
  castxml swig python3-dev python3-numpy
  libpng-dev zlib1g-dev libexpat1-dev libdouble-conversion-dev libeigen3-dev libtiff-dev
  libvtk9-dev python3-vtk9 xvfb xauth
  libgl1-mesa-dri # Mesa's software OpenGL: what VTK renders with under Xvfb
  python3-scipy python3-skimage python3-matplotlib python3-dask python3-distributed python3-zarr
  doxygen # scripts/docs.sh: the API reference
  nlohmann-json3-dev python3-jsonschema # the model card: parsed in C++, its schema checked in the Python tests
  # An optimised BLAS behind libblas.so.3 (Debian's alternatives pick it over the reference BLAS): Debian's LibTorch
  # runs transposed convolutions, a U-Net's up-convolutions, and some small convolutions through the system BLAS.
  libopenblas0-openmp
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# A deb-src entry is a copy of the existing binary entry: no registry host name is written by hand.
src_list=/etc/apt/sources.list.d/debian-src.sources
need_update=0
if [ ! -f "$src_list" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src_list"
  need_update=1
fi

if [ "${#missing[@]}" -gt 0 ] || [ "$need_update" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  if [ "${#missing[@]}" -gt 0 ]; then
    apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
fi
