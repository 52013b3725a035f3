"""Benchmark (not a test): the filter's default batch on the CPU (one forward pass per thread side by side, each of
one network input or, for small tiles, of as many as 32 MiB holds, 64 MiB where the process keeps freed memory)
against a fixed TilesPerBatch (by default twice the threads: two tiles per pass; the threads: one per pass), at a tile
size the user sets, in alternating pairs in one process; labels only, each filter warmed up first. Prints the medians
and the per-pair ratio.

    PYTHONPATH=$ITK_DIR/Wrapping/Generators/Python \
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000:glibc.malloc.arena_max=1 \
    /usr/bin/python3 benchmarks/tiles_per_pass.py MODEL_DIR 2 196 [--pairs 12] [--threads 2] [--tiles-per-batch N]

The 2-D case is the paper-style test U-Net on a 2048 x 2048 image, the 3-D case the depth-2 valid test U-Net on
160 x 160 x 96 (seeded uniform noise). Run it with and without GLIBC_TUNABLES to see what the malloc settings do.
"""
import argparse
import os
import statistics
import sys
import time

import itk
import numpy as np

CASES = {2: ("unet2d_paper.pt", (2048, 2048)), 3: ("unet3d_valid_depth2.pt", (96, 160, 160))}


def noise_image(shape):
    """Seeded uniform noise of `shape` (numpy's order) as an image, and the array it views, which must stay
    referenced."""
    array = np.random.default_rng(1).uniform(-2, 2, shape).astype(np.float32)
    return array, itk.image_view_from_array(array)


def make_filter(image, model, tile, tiles_per_batch, threads):
    """The filter, labels only, warmed up by one update; tile 0 and tiles_per_batch 0: automatic."""
    segmenter = itk.UNetSegmentationImageFilter.New(image, ModelFileName=model, NumberOfTorchThreads=threads,
                                                    GenerateProbabilities=False, TilesPerBatch=tiles_per_batch)
    segmenter.SetTileSize([tile] * image.GetImageDimension())
    segmenter.Update()
    return segmenter


def add_case_arguments(parser, tile_help):
    """The arguments that pick a case and run it, shared with update_faults.py."""
    parser.add_argument("model_dir", help="the directory make_test_models.py wrote (build/test/models)")
    parser.add_argument("dimension", type=int, choices=sorted(CASES))
    parser.add_argument("tile", type=int, help=tile_help)
    parser.add_argument("--threads", type=int, default=2)


def seconds(segmenter):
    segmenter.Modified()
    start = time.perf_counter()
    segmenter.Update()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_case_arguments(parser, "the output tile edge")
    parser.add_argument("--pairs", type=int, default=12)
    parser.add_argument("--tiles-per-batch", type=int, default=0, help="the fixed batch (default: twice the threads)")
    args = parser.parse_args()
    model, shape = CASES[args.dimension]
    array, image = noise_image(shape)
    path = os.path.join(args.model_dir, model)
    default = make_filter(image, path, args.tile, 0, args.threads)
    fixed_batch = args.tiles_per_batch or 2 * args.threads
    fixed = make_filter(image, path, args.tile, fixed_batch, args.threads)
    times = {"default": [], "fixed": []}
    for pair in range(args.pairs):
        order = ("default", "fixed") if pair % 2 == 0 else ("fixed", "default")
        for name in order:
            times[name].append(seconds(default if name == "default" else fixed))
    ratios = [t / d for t, d in zip(times["fixed"], times["default"])]
    print("%d-D, %s, tile %d, %d pairs, GLIBC_TUNABLES=%s: default median %.2f s (%.2f-%.2f), TilesPerBatch %d "
          "median %.2f s (%.2f-%.2f); TilesPerBatch %d / default per pair: median %.3f (%.3f-%.3f)" % (
              args.dimension, model, args.tile, args.pairs, os.environ.get("GLIBC_TUNABLES", "(unset)"),
              statistics.median(times["default"]), min(times["default"]), max(times["default"]), fixed_batch,
              statistics.median(times["fixed"]), min(times["fixed"]), max(times["fixed"]), fixed_batch,
              statistics.median(ratios), min(ratios), max(ratios)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
