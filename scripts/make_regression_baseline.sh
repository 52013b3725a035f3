#!/usr/bin/env bash
# Writes the baseline of the regression test (UNetSegmentationImageFilter.BundledModelReproducesItsBaselineOnAHeldOutSlice):
# the bundled model's label map (class indices) of held-out ISBI 2012 slice 23 with the command-line module's
# default settings, which are the filter's. Run it when the bundled model is retrained, and commit the result.
#
#   scripts/make_regression_baseline.sh [build dir]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$repo/build}
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000}
"$build/cli-modules/UNetSegmentation" --model "$repo/examples/models/unet_isbi2012.pt" --torchThreads 2 \
  "$repo/../shared/data/isbi2012/image/23.png" "$repo/test/baseline/isbi2012-23-labels.png"
