#!/usr/bin/env bash
# Streaming memory and time: float MetaImage volumes of 256 MiB and 2 GiB, made in DIR (outside the repository),
# streamed through ImageFileReader -> UNetSegmentationImageFilter -> ImageFileWriter (MetaImage, uncompressed, so
# both ends stream), MemoryBudget 512 MB, 2 torch threads, labels only, each case in its own process:
#   256 MiB in one piece; 256 MiB in 16 pieces; 2 GiB in 128 pieces (the same 16 slices a piece).
# The network is the small valid 3-D U-Net of the tests (depth 2, 8 base channels).
#
#   benchmarks/streaming_benchmark.sh DIR [build dir]
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=${1:?usage: streaming_benchmark.sh DIR [build dir]}
build=${2:-$repo/build}
program=$build/benchmarks/UNetStreamingBenchmark
model=$build/test/models/unet3d_valid_depth2.pt
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000}
mkdir -p "$dir"
[ -f "$dir/volume-256MiB.mha" ] || "$program" generate "$dir/volume-256MiB.mha" 512 512 256
[ -f "$dir/volume-2GiB.mha" ] || "$program" generate "$dir/volume-2GiB.mha" 512 512 2048
echo "== 256 MiB, one piece"
"$program" segment "$model" "$dir/volume-256MiB.mha" "$dir/labels-256MiB-1.mha" 1 512 2
echo "== 256 MiB, 16 pieces"
"$program" segment "$model" "$dir/volume-256MiB.mha" "$dir/labels-256MiB-16.mha" 16 512 2
cmp "$dir/labels-256MiB-1.mha" "$dir/labels-256MiB-16.mha" && echo "streamed labels == one-shot labels"
echo "== 2 GiB, 128 pieces"
"$program" segment "$model" "$dir/volume-2GiB.mha" "$dir/labels-2GiB-128.mha" 128 512 2
