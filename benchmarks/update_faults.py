"""Benchmark (not a test): the filter's first and later updates in one process, with the minor page faults of each,
under whatever malloc settings the process has. Run it with and without GLIBC_TUNABLES, and with PYTHONPATH and
LD_LIBRARY_PATH at an older build to compare libraries (the wrapper finds the module's library by an absolute
RUNPATH, which only LD_LIBRARY_PATH overrides); one process per run, so alternate the runs yourself.

    PYTHONPATH=$ITK_DIR/Wrapping/Generators/Python \
    [GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000:glibc.malloc.arena_max=1] \
    /usr/bin/python3 benchmarks/update_faults.py MODEL_DIR 3 64 [--updates 3] [--threads 2] [--keep-working-memory 0]

The cases are tiles_per_pass.py's; labels only; tile 0 is the automatic tile. The network is loaded and probed
before the first update is timed.
"""
import argparse
import os
import resource
import sys
import time

import itk

from tiles_per_pass import CASES, add_case_arguments, noise_image


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_case_arguments(parser, "the output tile edge (0: automatic)")
    parser.add_argument("--updates", type=int, default=3)
    parser.add_argument("--keep-working-memory", type=int, choices=(0, 1), default=1,
                        help="the filter's KeepWorkingMemory (0: LibTorch's blocks freed after every update)")
    args = parser.parse_args()
    model, shape = CASES[args.dimension]
    array, image = noise_image(shape)
    segmenter = itk.UNetSegmentationImageFilter.New(image, ModelFileName=os.path.join(args.model_dir, model),
                                                    NumberOfTorchThreads=args.threads, GenerateProbabilities=False,
                                                    KeepWorkingMemory=bool(args.keep_working_memory))
    segmenter.SetTileSize([args.tile] * args.dimension)
    segmenter.UpdateOutputInformation()  # loads and probes the network
    seconds, faults = [], []
    for _ in range(args.updates):
        segmenter.Modified()
        faults_before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        segmenter.Update()
        seconds.append(time.perf_counter() - start)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults_before)
    print("%d-D, %s, tile %d, KeepWorkingMemory %d, GLIBC_TUNABLES=%s: seconds %s, minor page faults %s" % (
        args.dimension, model, args.tile, args.keep_working_memory, os.environ.get("GLIBC_TUNABLES", "(unset)"),
        " ".join("%.2f" % s for s in seconds), " ".join(str(f) for f in faults)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
