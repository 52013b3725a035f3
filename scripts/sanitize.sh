#!/usr/bin/env bash
# Builds the module and its C++ tests with AddressSanitizer and UndefinedBehaviorSanitizer into their own build
# directory and runs the C++ test suite (GoogleTest, through ctest) there. Any sanitizer report fails the run.
#
#   scripts/sanitize.sh [ctest arguments]          AddressSanitizer + UBSan, every GoogleTest suite and the fuzz tests
#   scripts/sanitize.sh thread [ctest arguments]   ThreadSanitizer, the tests that run threads at once (concurrency,
#                                                   the model's batches side by side and reloads)
#
# Only this module's code (its library, its headers' templates compiled into the tests, the tests) is instrumented:
# ITK and LibTorch are the usual uninstrumented builds. The sanitizers still watch every heap allocation, so reports
# whose stack lies wholly inside ITK or LibTorch are possible; the suppression files in scripts/sanitizers/ list the
# ones seen, each with the reason. Python wrapping, examples and benchmarks are left out of this build (an
# instrumented library cannot be loaded by an uninstrumented Python, and the wrapping is generated into ITK's shared
# build tree, which this build must not touch).
#
# ThreadSanitizer sees the synchronisation of instrumented code only: LibTorch's OpenMP and ITK's thread pool are
# uninstrumented, so races reported with a frame inside them are suppressed (scripts/sanitizers/tsan.supp, with the
# reason); races between this module's own threads and data (its model state, loads, batches side by side) are not.
#
# Environment: UNETSEG_SANITIZE_BUILD_DIR (default: build-sanitize/ or build-tsan/ in the repository),
# UNETSEG_CACHE_DIR and UNETSEG_JOBS as for scripts/build.sh. Extra arguments go to ctest (e.g. -R Concurrency).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mode=address
if [ "${1:-}" = thread ]; then
  mode=thread
  shift
fi
default_dir=$repo/build-sanitize
[ "$mode" = thread ] && default_dir=$repo/build-tsan
build_dir=${UNETSEG_SANITIZE_BUILD_DIR:-$default_dir}
jobs=${UNETSEG_JOBS:-$(nproc)}

# Debian packages, ITK and SlicerExecutionModel; sets python, itk_dir and sem_dir.
source "$repo/scripts/dependencies.sh"

sanitize="-fsanitize=address,undefined -fno-omit-frame-pointer"
[ "$mode" = thread ] && sanitize="-fsanitize=thread -fno-omit-frame-pointer"
# -O1 -g: the optimisation AddressSanitizer's documentation advises, with line numbers in the reports. NDEBUG as in
# ITK's Release build, so that no header compiles differently from the libraries it is linked with.
cmake -S "$repo" -B "$build_dir" -G Ninja \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g -DNDEBUG" \
  -DCMAKE_CXX_FLAGS="$sanitize" \
  -DCMAKE_EXE_LINKER_FLAGS="$sanitize" \
  -DCMAKE_SHARED_LINKER_FLAGS="$sanitize" \
  -DCMAKE_LIBRARY_OUTPUT_DIRECTORY="$build_dir/lib" \
  -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$build_dir/bin" \
  -DUNetSegmentation_WRAP_PYTHON=OFF \
  -DUNetSegmentation_BUILD_EXAMPLES=OFF \
  -DUNetSegmentation_BUILD_VISUALIZATION=OFF \
  -DUNetSegmentation_BUILD_BENCHMARKS=OFF \
  -DITK_DIR="$itk_dir" \
  -DSlicerExecutionModel_DIR="$sem_dir" \
  -DPython3_EXECUTABLE="$python" \
  -DBUILD_TESTING=ON >&2
# The thread mode runs only GoogleTest cases of UNetSegmentationGTests.
targets=(UNetSegmentationGTests UNetSegmentationTestModels)
[ "$mode" = address ] && targets+=(UNetSegmentationCLI UNetSegmentationCLIGTests UNetFuzzCaseRunner)
cmake --build "$build_dir" -j "$jobs" --target "${targets[@]}" >&2

suppressions=$repo/scripts/sanitizers
# detect_leaks: LeakSanitizer runs at exit; leaks it finds in ITK or LibTorch only are suppressed (lsan.supp).
# halt_on_error / abort: the first report ends the test program, so that ctest counts it as failed.
# allocator_may_return_null: an allocation that cannot be made fails as glibc's malloc fails it (null, so
# std::bad_alloc or LibTorch's error), instead of ASan aborting: the out-of-memory tests ask for too much on purpose.
# UBSan's checks recover by default (so that suppressions can apply to them); halt_on_error makes a report fatal.
# abort_on_error: a report ends the program with SIGABRT, which the fuzz supervisor counts as a crash of that case.
# max_allocation_size_mb: the fuzz runner goes without its address-space limit under AddressSanitizer (which reserves
# terabytes of it), so a mutated size beyond 4 GB fails as an allocation error instead of taking the machine's memory.
export ASAN_OPTIONS="allocator_may_return_null=1:abort_on_error=1:max_allocation_size_mb=4096:detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:suppressions=$suppressions/asan.supp"
export LSAN_OPTIONS="suppressions=$suppressions/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$suppressions/ubsan.supp"

# ignore_noninstrumented_modules: memory accesses that LibTorch and libgomp make through intercepted functions (memcpy
# in every convolution's OpenMP workers) are not checked, only their synchronisation is seen; otherwise each is a race
# report that tsan.supp then suppresses, slowly.
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$suppressions/tsan.supp"

cd "$build_dir"
if [ "$mode" = thread ]; then
  # One test at a time: each runs threads of its own. -R picks the tests that run threads at once (by default).
  # setarch -R: this GCC's ThreadSanitizer cannot map its shadow memory under the address randomisation of newer
  # kernels (more than 28 bits); without randomisation it can.
  if [ $# -eq 0 ]; then
    set -- -R 'Concurrency|BatchSplitBetweenThreads|AFileRewritten|ANetworkLoadedForEither|PredictionPlanned|Abort'
  fi
  setarch "$(uname -m)" -R ctest --output-on-failure -LE 'Python|Fuzz' "$@"
  exit
fi
# The GoogleTest suites and the fuzz tests (their runner instrumented, so that heap damage inside LibTorch is caught
# where it happens rather than in a later case); the Python tests need the uninstrumented wrapping.
UNET_FUZZ_MEMORY_LIMIT_MB=0 ctest --output-on-failure -j "$jobs" -LE 'Python' "$@"
