#!/usr/bin/env bash
# The main job: sets up, builds, and segments a held-out ISBI 2012 EM slice with the bundled U-Net trained with flips
# along x (examples/models/unet_isbi2012_flips_x.pt) through the 3D Slicer command-line module (as Slicer would run
# it: progress tags on standard output), streamed in pieces; writes the label map, then (a second, whole run) the
# separated cells, scores both against the slice's ground truth, and draws their outlines over the slice. No option
# names the preprocessing: the model file's card standardises the slice to the training slices' mean and standard
# deviation, averages over flips along x, names the classes and holds the cell thresholds (docs/model-card.md).
#
#   scripts/demo.sh [input output]     (any 2-D image ITK reads; output: the label map, class indices)
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build_dir=$(bash "$repo/scripts/build.sh" | tail -n 1)
segment=$build_dir/cli-modules/UNetSegmentation
model=$repo/examples/models/unet_isbi2012_flips_x.pt
data=$repo/../shared/data/isbi2012
if [ -n "${1:-}" ]; then
  input=$1
  output=${2:?usage: scripts/demo.sh [input output]}
  "$segment" --model "$model" "$input" "$output"
else
  input=$data/image/23.png
  output=$build_dir/demo/isbi2012-23-labels.nrrd
  mkdir -p "$(dirname "$output")"
  # 132-pixel tiles (a valid edge for this model: 4 + 8k): four tile rows, one per stream piece.
  "$segment" --model "$model" --tileSize 132 --streamPieces 4 "$input" "$output"
  # Again for the separated cells (UNetCellSeparationImageFilter), which need the whole probability image, so in one
  # piece; the same tiles, which lie on the network's pooling grid and so give the one-tile result. Its label map is
  # the streamed one, written again.
  cells=${output%-labels.nrrd}-cells.nrrd
  "$segment" --model "$model" --tileSize 132 --cells "$cells" --colorTable "${output%.nrrd}.ctbl" "$input" "$output" |
    grep -v "^<\|^ *$"
  itk_dir=$(sed -n 's/^ITK_DIR:[A-Z]*=//p' "$build_dir/CMakeCache.txt")
  score() {
    PYTHONPATH=$itk_dir/Wrapping/Generators/Python /usr/bin/python3 -m itk_unetsegmentation.scoring "$@"
  }
  echo "the network's decision ($output): $(score "$output" "$data/label/23.png")"
  echo "the separated cells ($cells): $(score --cells "$cells" "$data/label/23.png")"
fi
# Pictures of the result: a label map's outlines over the slice (UNetRenderLabels, VTK offscreen). Debian's VTK
# renders through X only, so without a display it runs under a virtual X server (xvfb-run).
render() {
  local picture=${1%.*}-contours.png
  local command=("$build_dir/examples/UNetRenderLabels" "$1" "$picture" --image "$input")
  if [ -n "${DISPLAY:-}" ]; then
    "${command[@]}" >/dev/null
  else
    xvfb-run -a -s "-screen 0 1280x1024x24" "${command[@]}" >/dev/null
  fi
  echo "picture of $2 (outlines over the slice): $picture"
}
render "$output" "the segmentation"
if [ -z "${1:-}" ]; then
  render "$cells" "the separated cells"
fi
