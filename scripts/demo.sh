#!/usr/bin/env bash
# The main job: sets up, builds, and segments a held-out ISBI 2012 EM slice with the bundled U-Net, streamed in
# pieces; writes the label map and scores it against the slice's ground truth.
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
else
  "$build_dir/examples/UNetSegmentImage" "$model" "$input" "$output"
fi
# A picture of the result: the label map's outlines over the slice (UNetRenderLabels, VTK offscreen). Debian's VTK
# renders through X only, so without a display it runs under a virtual X server (xvfb-run).
picture=${output%.*}-contours.png
render=("$build_dir/examples/UNetRenderLabels" "$output" "$picture" --image "$input")
if [ -n "${DISPLAY:-}" ]; then
  "${render[@]}" >/dev/null
else
  xvfb-run -a -s "-screen 0 1280x1024x24" "${render[@]}" >/dev/null
fi
echo "picture of the segmentation (outlines over the slice): $picture"
