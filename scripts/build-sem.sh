#!/usr/bin/env bash
# Builds SlicerExecutionModel (GenerateCLP, ModuleDescriptionParser, TCLAP: what 3D Slicer's own command-line
# modules are built with) from the archive in ../shared/third_party against our ITK build, into the cache directory
# outside the repository, and reuses it when a build with the same settings is already there.
# Prints the SlicerExecutionModel build directory (SlicerExecutionModel_DIR) on its last line.
#
#   scripts/build-sem.sh ITK_DIR
#
# No Debian package has SlicerExecutionModel and the machines cannot clone it, hence the archive.
set -euo pipefail

itk_dir=${1:?usage: build-sem.sh ITK_DIR}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_dir=${UNETSEG_CACHE_DIR:-${HOME:-/root}/.cache/unetsegmentation}
jobs=${UNETSEG_JOBS:-$(nproc)}
archive=${UNETSEG_SEM_ARCHIVE:-$repo/../shared/third_party/SlicerExecutionModel-6e16762.tar.gz}

# Every setting that changes the build is here, so that the stamp below names exactly what was built.
sem_options=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DBUILD_TESTING=OFF
  -DCMAKE_CXX_STANDARD=17
  -DSlicerExecutionModel_USE_JSONCPP=OFF
  -DSlicerExecutionModel_USE_SERIALIZER=OFF
  -DITK_DIR="$itk_dir"
)

# The archive's content and ITK's own stamp (a rebuilt ITK rebuilds this) are part of the settings.
[ -f "$archive" ] || { echo "SlicerExecutionModel archive not found: $archive" >&2; exit 1; }
itk_stamp=$itk_dir/.unetsegmentation-build-complete
[ -f "$itk_stamp" ] || { echo "ITK build in $itk_dir is not complete (no $itk_stamp)" >&2; exit 1; }
stamp_id=$( (sha1sum < "$archive"; cat "$itk_stamp"; printf '%s\n' "${sem_options[@]}") | sha1sum | cut -c1-12)
src_dir=$cache_dir/sem-source
build_dir=$cache_dir/sem-build
stamp=$build_dir/.unetsegmentation-build-complete

mkdir -p "$cache_dir"
# Worktrees and CI jobs share the cache: one build at a time, the others wait and then reuse it.
exec 9> "$cache_dir/sem.lock"
flock 9

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_id" ]; then
  echo "Reusing SlicerExecutionModel build in $build_dir" >&2
  echo "$build_dir"
  exit 0
fi

# The archive holds one top-level folder, SlicerExecutionModel/.
rm -rf "$src_dir"
mkdir -p "$src_dir"
tar -xzf "$archive" -C "$src_dir"
src=$src_dir/SlicerExecutionModel

rm -f "$stamp"
cmake -S "$src" -B "$build_dir" -G Ninja "${sem_options[@]}" >&2
cmake --build "$build_dir" -j "$jobs" >&2
echo "$stamp_id" > "$stamp"
echo "$build_dir"
