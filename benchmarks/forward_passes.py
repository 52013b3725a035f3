"""Benchmark (not a test): the forward passes of the MONAI comparison's networks, run the filter's way and MONAI's way.

In one process, on the network of `monai_comparison.py --case 3d` (or `--case 2d`), seeded random weights, rounds
alternating between:
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
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "wrapping", "Python"))
from itk_unetsegmentation.networks import UNet  # noqa: E402

# The networks, tiles and batches of monai_comparison.py.
CASES = {
    "2d": (dict(dim=2, base=16, depth=4), 256, 4),
    "3d": (dict(dim=3, base=8, depth=3), 96, 2),
}


def ways(case, threads):
    """name -> (threads, module, input) for each way of running the passes."""
    arguments, edge, batch = CASES[case]
    torch.manual_seed(0)
    eager = UNet(in_channels=1, classes=2, valid=False, **arguments).eval()
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(eager).eval()))
    tile = torch.randn(1, 1, *([edge] * arguments["dim"]))
    tiles = torch.randn(batch, 1, *([edge] * arguments["dim"]))
    return {
        "filter's way: frozen, 1 tile, 1 thread": (1, frozen, tile),
        "frozen, %d tiles, %d threads" % (batch, threads): (threads, frozen, tiles),
        "MONAI's way: eager, %d tiles, %d threads" % (batch, threads): (threads, eager, tiles),
        "eager, 1 tile, 1 thread": (1, eager, tile),
    }


def run(way):
    threads, module, tiles = way
    torch.set_num_threads(threads)
    start = time.perf_counter()
    module(tiles)
    return time.perf_counter() - start


def profile(name, way):
    """The self time per operator over one pass, as shares, largest first."""
    from torch.profiler import ProfilerActivity
    torch.set_num_threads(way[0])
    with torch.profiler.profile(activities=[ProfilerActivity.CPU]) as recorded:
        way[1](way[2])
    events = sorted(recorded.key_averages(), key=lambda event: -event.self_cpu_time_total)
    total = sum(event.self_cpu_time_total for event in events)
    shares = ", ".join("%s %.1f %%" % (event.key, 100.0 * event.self_cpu_time_total / total)
                       for event in events[:8] if event.self_cpu_time_total > 0.005 * total)
    print("%s: %s" % (name, shares))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="3d")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    all_ways = ways(args.case, args.threads)
    seconds = {name: [] for name in all_ways}
    with torch.inference_mode():
        for way in all_ways.values():
            run(way)
            run(way)
        for _ in range(args.rounds):
            for name, way in all_ways.items():
                seconds[name].append(run(way))
        for name, way in all_ways.items():
            median = statistics.median(seconds[name])
            print("%-45s median %.3f s a pass, %.3f s a tile (range %.3f to %.3f s)" % (
                name, median, median / way[2].shape[0], min(seconds[name]), max(seconds[name])))
        names = list(all_ways)
        profile(names[0], all_ways[names[0]])
        profile(names[2], all_ways[names[2]])


if __name__ == "__main__":
    main()
