#!/usr/bin/env bash
# The main job: sets up, builds, and segments a held-out ISBI 2012 EM slice with the bundled U-Net, streamed in
# pieces; writes the label map and scores it against the slice's ground truth (examples/score_segmentation.py: pixel
# error, cell Dice, adapted Rand error).
#
#   scripts/demo.sh [input.png] [output.png]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=$(bash "$repo/scripts/build.sh" | tail -n 1)
data=$repo/../shared/data/isbi2012
input=${1:-$data/image/23.png}
output=${2:-$build_dir/demo/isbi2012-23-labels.png}
mkdir -p "$(dirname "$output")"
model=$repo/examples/models/unet_isbi2012.pt
# glibc hands LibTorch's large activations back to the kernel after every layer and faults them in again on the
# next; keeping them in the heap made CPU inference about a quarter faster here (README, "Speed on CPU").
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000}
if [ -z "${1:-}" ]; then
  # Four stream pieces; 132-pixel tiles (a valid edge for this model: 4 + 8k), so that the pieces share few tiles.
  "$build_dir/examples/UNetSegmentImage" "$model" "$input" "$output" "$data/label/23.png" 4 132
  itk_dir=$(sed -n 's/^ITK_DIR:PATH=//p' "$build_dir/CMakeCache.txt")
  PYTHONPATH=$itk_dir/Wrapping/Generators/Python /usr/bin/python3 "$repo/examples/score_segmentation.py" \
    "$output" "$data/label/23.png" 2>&1 | grep -v "^ios_base_"
else
  "$build_dir/examples/UNetSegmentImage" "$model" "$input" "$output"
fi
