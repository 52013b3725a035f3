#!/usr/bin/env bash
# Builds ITK 5.2.1 from Debian's source package, with Python wrapping, into a cache directory outside the
# repository, and reuses it when a build with the same settings is already there.
# Prints the ITK build directory (ITK_DIR) on its last line.
#
# Debian's binary ITK has no ITKModuleExternal.cmake and no wrapping, so it cannot build an ITK module.
set -euo pipefail

cache_dir=${UNETSEG_CACHE_DIR:-${HOME:-/root}/.cache/unetsegmentation}
python=${Python3_EXECUTABLE:-/usr/bin/python3}
jobs=${UNETSEG_JOBS:-$(nproc)}

# Every setting that changes the build is here, so that the stamp below names exactly what was built.
itk_options=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DBUILD_TESTING=OFF
  -DBUILD_EXAMPLES=OFF
  -DITK_BUILD_DEFAULT_MODULES=OFF
  # The Core group (on by default) drags in ITKTestKernel, hence GDCM and every IO and mesh module.
  -DITKGroup_Core=OFF
  -DModule_ITKCommon=ON
  -DModule_ITKImageFilterBase=ON
  -DModule_ITKImageGrid=ON
  -DModule_ITKImageIntensity=ON
  -DModule_ITKThresholding=ON
  -DModule_ITKDistanceMap=ON
  -DModule_ITKConnectedComponents=ON
  # UNetCellSeparationImageFilter grows cells from seeds with ITK's MorphologicalWatershedFromMarkersImageFilter.
  -DModule_ITKWatersheds=ON
  -DModule_ITKIOImageBase=ON
  -DModule_ITKIOPNG=ON
  -DModule_ITKIOMeta=ON
  -DModule_ITKIONRRD=ON
  -DModule_ITKIONIFTI=ON
  -DModule_ITKIOTIFF=ON
  # SlicerExecutionModel (the Slicer command-line module) parses its XML descriptions with ITKIOXML.
  -DModule_ITKIOXML=ON
  -DModule_ITKPyBase=ON
  -DModule_ITKBridgeNumPy=ON
  -DITK_WRAP_PYTHON=ON
  # Wrapping costs far more than compiling: wrap only what Python users of this module need (the patch below adds
  # this option); the other modules are built for C++ alone.
  "-DITK_WRAP_ONLY_MODULES=ITKCommon;ITKImageFilterBase;ITKIOImageBase;ITKIOPNG;ITKIOMeta;ITKIONRRD;ITKIONIFTI;ITKIOTIFF;ITKBridgeNumPy"
  -DITK_WRAP_DOC=OFF
  -DITK_USE_SYSTEM_SWIG=ON
  -DITK_USE_SYSTEM_CASTXML=ON
  -DITK_USE_SYSTEM_PNG=ON
  -DITK_USE_SYSTEM_TIFF=ON
  -DITK_USE_SYSTEM_ZLIB=ON
  -DITK_USE_SYSTEM_EXPAT=ON
  -DITK_USE_SYSTEM_DOUBLECONVERSION=ON
  -DITK_USE_SYSTEM_EIGEN=ON
  "-DITK_WRAP_DIMS=2;3"
  -DITK_WRAP_unsigned_char=ON
  -DITK_WRAP_unsigned_short=OFF
  -DITK_WRAP_signed_short=OFF
  -DITK_WRAP_float=ON
  -DITK_WRAP_double=OFF
  -DITK_WRAP_vector_float=ON
  -DITK_WRAP_covariant_vector_float=OFF
  -DITK_WRAP_rgb_unsigned_char=OFF
  -DITK_WRAP_rgba_unsigned_char=OFF
  -DITK_WRAP_complex_float=OFF
  -DITK_WRAP_complex_double=OFF
  -DPython3_EXECUTABLE="$python"
)

# Source patches, applied below; a new one gets a new name here, so that caches built before it are rebuilt.
itk_patches=(numpy-bool wrap-only-modules pybase-no-flat-ios-base)

# The build directory keeps one name so that a change of settings reconfigures it and rebuilds only what changed;
# the stamp records which settings and patches the finished build has.
stamp_id=$(printf '%s\n' 5.2.1 "${itk_options[@]}" "${itk_patches[@]}" | sha1sum | cut -c1-12)
src_parent=$cache_dir/itk-source
build_dir=$cache_dir/itk-5.2.1-build
stamp=$build_dir/.unetsegmentation-build-complete

# A module wrapped by an earlier configuration leaves its index (.mdx) and Python configuration behind; external
# modules pick up every index they find for their dependencies, and itk's lazy loader every configuration: remove
# those of modules no longer wrapped.
remove_stale_indexes() {
  local wrapped file module
  wrapped=$(printf '%s\n' "${itk_options[@]}" | sed -n 's/^-DITK_WRAP_ONLY_MODULES=//p' | tr ';' ' ')
  for file in "$build_dir"/Wrapping/Typedefs/ITK*.mdx "$build_dir"/Wrapping/Generators/Python/itk/Configuration/ITK*Config.py; do
    [ -e "$file" ] || continue
    module=$(basename "$file" .mdx)
    module=${module%Config.py}
    case " $wrapped ITKPyBase ITKPyUtils " in
      *" $module "*) ;;
      *) rm -f "$file" ;;
    esac
  done
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$stamp_id" ]; then
  remove_stale_indexes
  echo "Reusing ITK build in $build_dir" >&2
  echo "$build_dir"
  exit 0
fi

mkdir -p "$cache_dir"
src_dir=$(find "$src_parent" -maxdepth 1 -type d -name 'insighttoolkit5-5.2.1*' 2>/dev/null | head -n1 || true)
if [ -z "$src_dir" ]; then
  rm -rf "$src_parent"
  mkdir -p "$src_parent"
  (cd "$src_parent" && apt-get source -q insighttoolkit5 >&2)
  src_dir=$(find "$src_parent" -maxdepth 1 -type d -name 'insighttoolkit5-5.2.1*' | head -n1)
fi

# Patches, each idempotent.
# numpy >= 1.24 removed the np.bool alias that ITK 5.2's Python support still uses.
sed -i 's/np\.bool\b/np.bool_/g' "$src_dir/Wrapping/Generators/Python/itk/support/types.py"
# ITK_WRAP_ONLY_MODULES: wrap only the listed modules. Wrapping already leaves out dependencies that are not wrapped
# (INTERSECTION with WRAP_ITK_MODULES in itk_wrap_module), so a listed module works when its direct dependencies
# are listed too (ITKConnectedComponents, say, does not: it reaches ITKCommon only through unwrapped modules).
wrap_modules=$src_dir/Wrapping/Modules/CMakeLists.txt
if ! grep -q ITK_WRAP_ONLY_MODULES "$wrap_modules"; then
  sed -i 's|    if(EXISTS "${${m}_SOURCE_DIR}/wrapping/CMakeLists.txt")|    if(EXISTS "${${m}_SOURCE_DIR}/wrapping/CMakeLists.txt" AND (NOT ITK_WRAP_ONLY_MODULES OR m IN_LIST ITK_WRAP_ONLY_MODULES))|' "$wrap_modules"
  grep -q ITK_WRAP_ONLY_MODULES "$wrap_modules"
fi

# SWIG 4.1 (Debian 12's) no longer makes a class's static member functions module-level functions, so ITK 5.2's
# Python configuration names two that do not exist, std::ios_base's sync_with_stdio and xalloc, and every Python
# session that loads ITKPyBase printed four lines saying so. ITK 5.3 drops them too.
pybase=$src_dir/Wrapping/Generators/Python/PyBase/CMakeLists.txt
sed -i 's/^  ADD_PYTHON_CONFIG_TEMPLATE("ios_base_\(sync_with_stdio\|xalloc\)"/#&/' "$pybase"
if grep -q '^  ADD_PYTHON_CONFIG_TEMPLATE("ios_base_\(sync_with_stdio\|xalloc\)"' "$pybase"; then
  echo "build-itk.sh: the ITKPyBase patch did not apply" >&2
  exit 1
fi

cmake -S "$src_dir" -B "$build_dir" -G Ninja "${itk_options[@]}" >&2
cmake --build "$build_dir" -j "$jobs" >&2
remove_stale_indexes
echo "$stamp_id" > "$stamp"
echo "$build_dir"
