#!/usr/bin/env bash
# The main job: sets up, builds, and segments a held-out ISBI 2012 EM slice with the bundled U-Net through the 3D
# Slicer command-line module (as Slicer would run it: progress tags on standard output), streamed in pieces; writes
# the label map and scores it against the slice's ground truth.
#
#   scripts/demo.sh [input output]     (any 2-D image ITK reads; output: the label map, class indices)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=$(bash "$repo/scripts/build.sh" | tail -n 1)
segment=$build_dir/cli-modules/UNetSegmentation
model=$repo/examples/models/unet_isbi2012.pt
if [ -n "${1:-}" ]; then
  "$segment" --model "$model" "$1" "${2:?usage: scripts/demo.sh [input output]}"
  exit 0
fi

data=$repo/../shared/data/isbi2012
labels=$build_dir/demo/isbi2012-23-labels.nrrd
mkdir -p "$(dirname "$labels")"
# 132-pixel tiles (a valid edge for this model: 4 + 8k): four tile rows, one per stream piece.
"$segment" --model "$model" --tileSize 132 --streamPieces 4 "$data/image/23.png" "$labels"
itk_dir=$(sed -n 's/^ITK_DIR:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
PYTHONPATH=$itk_dir/Wrapping/Generators/Python /usr/bin/python3 "$repo/scripts/score_segmentation.py" \
  "$labels" "$data/label/23.png" "$build_dir/demo/isbi2012-23-labels.png"
