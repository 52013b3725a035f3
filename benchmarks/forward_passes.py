"""Benchmark (not a test): the forward passes of the MONAI comparison's networks, run the filter's way and MONAI's way.

In one process, on the network of `monai_comparison.py --case 3d` (or `--case 2d`), seeded random weights, rotating
rounds (efficiency.py's timed_rounds) of:
  - the filter's way: the network frozen and optimised (as UNetModel loads it), one tile a pass on one thread (the
    filter runs such passes side by side, one a thread);
  - the frozen network with the comparison's batch over all the threads (one pass, as MONAI would with a frozen net);
  - MONAI's way: the eager network, the batch in one pass over all the threads;
  - the eager network, one tile on one thread.
It prints each median (and the time per tile), then LibTorch's profiler over one pass of the filter's way and one of
MONAI's: the self time per operator, as shares (a frozen graph's oneDNN convolutions count as its `forward`). What
is left of the comparison's whole run once these passes are counted is the tiling, blending and labelling on each
side.

    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000:glibc.malloc.arena_max=1 \
    /usr/bin/python3 benchmarks/forward_passes.py [--case 3d] [--rounds 6] [--threads 2]
"""
import argparse
import statistics

import torch

from efficiency import frozen, operator_shares, timed_rounds
from monai_comparison import CASES, network_of


def ways(case, threads):
    """name -> (threads, module, input) for each way of running the passes."""
    arguments, edge, _, batch = CASES[case]
    eager = network_of(case)
    optimised = frozen(eager)
    tile = torch.randn(1, 1, *([edge] * arguments["dim"]))
    tiles = torch.randn(batch, 1, *([edge] * arguments["dim"]))
    return {
        "filter's way: frozen, 1 tile, 1 thread": (1, optimised, tile),
        "frozen, %d tiles, %d threads" % (batch, threads): (threads, optimised, tiles),
        "MONAI's way: eager, %d tiles, %d threads" % (batch, threads): (threads, eager, tiles),
        "eager, 1 tile, 1 thread": (1, eager, tile),
    }


def run(way):
    threads, module, tiles = way
    torch.set_num_threads(threads)
    module(tiles)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="3d")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    all_ways = ways(args.case, args.threads)
    with torch.inference_mode():
        for way in all_ways.values():
            run(way)
            run(way)
        seconds = timed_rounds({name: lambda way=way: run(way) for name, way in all_ways.items()}, args.rounds)
    for name, way in all_ways.items():
        median = statistics.median(seconds[name])
        print("%-45s median %.3f s a pass, %.3f s a tile (range %.3f to %.3f s)" % (
            name, median, median / way[2].shape[0], min(seconds[name]), max(seconds[name])))
    for name in list(all_ways)[0::2]:  # the filter's way and MONAI's
        torch.set_num_threads(all_ways[name][0])
        shares = operator_shares(lambda: run(all_ways[name]), 8)
        print("%s: %s" % (name, ", ".join("%s %.1f %%" % (key, 100 * share) for key, share in shares
                                           if share > 0.005)))


if __name__ == "__main__":
    main()
