"""Benchmark (not a test): how close the networks get to the CPU's own convolution speed, and where the rest goes.

In one process, on the same threads:
  - the peak: a compute-bound convolution (256 -> 256 channels, 3 x 3, 64 x 64, padded), timed as LibTorch runs it;
  - per network: its convolution FLOPs for one tile, counted from its layers (forward hooks on the eager module:
    2 x output voxels x input channels x kernel voxels per output channel), the bare forward pass of the network frozen
    and optimised as the filter runs it (one tile a pass), and the filter over a whole image (its automatic settings
    for the CPU, the tile size given); each as GFLOP/s and as a share of the peak;
  - per network, LibTorch's profiler over one bare forward pass: the self time per operator type, as shares;
  - per network, the same bare forward pass with each 2 x 2 stride-2 up-convolution written as the equal 1 x 1
    convolution to 2^d times the channels and a shuffle of those channels into 2 x 2 (x 2) voxels (UpAsShuffle), which
    LibTorch runs through oneDNN like the other convolutions: what a user exporting their own network can change.
Rounds alternate between the configurations; medians are printed.

    PYTHONPATH=$ITK_DIR/Wrapping/Generators/Python \
    GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=4000000000:glibc.malloc.arena_max=1 \
    /usr/bin/python3 benchmarks/efficiency.py [--rounds 3] [--threads 2]

The networks are seeded random U-Nets of itk_unetsegmentation.networks; their speed, not their weights, matters.
"""
import argparse
import collections
import copy
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "wrapping", "Python"))
from itk_unetsegmentation.networks import UNet, valid_unet_border  # noqa: E402

# name, network arguments, output tile edge, image shape (z, y, x) for the filter
NETWORKS = [
    ("paper-style 2-D, valid, depth 4, 8 channels", dict(dim=2, base=8, depth=4, valid=True), 388, (2048, 2048)),
    ("same-padded 2-D, depth 4, 16 channels", dict(dim=2, base=16, depth=4, valid=False), 256, (2048, 2048)),
    ("3-D, valid, depth 2, 8 channels", dict(dim=3, base=8, depth=2, valid=True), 64, (96, 160, 160)),
    ("3-D, same-padded, depth 3, 8 channels", dict(dim=3, base=8, depth=3, valid=False), 96, (96, 192, 192)),
]


def convolution_flops(network, tile_input):
    """Multiply-adds x 2 of every convolution and up-convolution of one forward pass over `tile_input`."""
    total = [0]

    def count(module, inputs, output):
        weight = module.weight
        if isinstance(module, (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
            # Each input voxel meets every kernel voxel once per output channel.
            total[0] += 2 * inputs[0].numel() * weight.shape[1] * weight[0, 0].numel()
        else:
            total[0] += 2 * output.numel() * weight.shape[1] * weight[0, 0].numel()

    kinds = (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    hooks = [m.register_forward_hook(count) for m in network.modules() if isinstance(m, kinds)]
    with torch.inference_mode():
        network(tile_input)
    for hook in hooks:
        hook.remove()
    return total[0]


class UpAsShuffle(torch.nn.Module):
    """A ConvTranspose2d/3d with kernel 2 and stride 2 as a 1 x 1 convolution to 2^d x the output channels, whose
    channels (c, kz, ky, kx) are then moved into the 2 x 2 (x 2) block of output voxels each input voxel makes."""

    def __init__(self, up):
        super().__init__()
        self.dim = up.weight.dim() - 2
        cin, cout = up.weight.shape[0], up.weight.shape[1]
        self.cout = cout
        convolution = torch.nn.Conv2d if self.dim == 2 else torch.nn.Conv3d
        self.conv = convolution(cin, cout * 2 ** self.dim, 1)
        with torch.no_grad():
            order = list(range(1, self.dim + 2)) + [0]  # (cout, kernel axes..., cin)
            self.conv.weight.copy_(up.weight.permute(order).reshape(self.conv.weight.shape))
            self.conv.bias.copy_(up.bias.repeat_interleave(2 ** self.dim))

    def forward(self, x):
        y = self.conv(x)
        n = y.shape[0]
        spatial = y.shape[2:]
        if self.dim == 2:
            y = y.reshape(n, self.cout, 2, 2, spatial[0], spatial[1]).permute(0, 1, 4, 2, 5, 3)
            return y.reshape(n, self.cout, 2 * spatial[0], 2 * spatial[1])
        y = y.reshape(n, self.cout, 2, 2, 2, spatial[0], spatial[1], spatial[2]).permute(0, 1, 5, 2, 6, 3, 7, 4)
        return y.reshape(n, self.cout, 2 * spatial[0], 2 * spatial[1], 2 * spatial[2])


def with_up_as_shuffle(network):
    """A copy of `network` whose up-convolutions are UpAsShuffle: the same function."""
    rewritten = copy.deepcopy(network)
    for module in list(rewritten.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, (torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)):
                setattr(module, name, UpAsShuffle(child))
    return rewritten


def peak_convolution():
    """A compute-bound convolution and its FLOPs per call."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 64, 64, generator=generator)
    w = torch.randn(256, 256, 3, 3, generator=generator)
    return (lambda: torch.nn.functional.conv2d(x, w, padding=1)), 2 * 64 * 64 * 256 * 256 * 9


def frozen(network):
    """The network frozen and optimised for inference, as the filter's model loads it."""
    return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(network).eval()))


class Network:
    def __init__(self, workdir, index, name, arguments, edge, shape, threads):
        import itk

        torch.manual_seed(index)
        self.name, self.dim = name, arguments["dim"]
        self.eager = UNet(in_channels=1, classes=2, **arguments).eval()
        border = valid_unet_border(arguments["depth"]) if arguments["valid"] else 0
        self.tile = torch.randn(1, 1, *([edge + 2 * border] * self.dim))
        self.flops = convolution_flops(self.eager, self.tile)
        self.optimised = frozen(self.eager)
        shuffling = with_up_as_shuffle(self.eager)
        with torch.inference_mode():
            self.shuffle_difference = float((shuffling(self.tile) - self.eager(self.tile)).abs().max())
        self.optimised_shuffle = frozen(shuffling)
        model_file = os.path.join(workdir, "network%d.pt" % index)
        torch.jit.save(torch.jit.script(self.eager), model_file)
        # Kept: the filter's input is a view of it.
        self.image = np.random.default_rng(index).standard_normal(shape).astype(np.float32)
        pixel = itk.Image[itk.F, self.dim]
        self.segmenter = itk.UNetSegmentationImageFilter[pixel, itk.Image[itk.UC, self.dim]].New(
            itk.image_view_from_array(self.image), ModelFileName=model_file, TileSize=[edge] * self.dim,
            NumberOfTorchThreads=threads, GenerateProbabilities=False)
        self.segmenter.Update()
        # The tiles on the pooling grid: output edges `edge` every stride, from the image's first voxel.
        strides = list(self.segmenter.GetTileStride())
        sizes = list(reversed(shape))
        self.tiles = int(np.prod([1 + max(0, -(-(n - edge) // stride)) for n, stride in zip(sizes, strides)]))

    def bare(self):
        with torch.inference_mode():
            self.optimised(self.tile)

    def bare_shuffle(self):
        with torch.inference_mode():
            self.optimised_shuffle(self.tile)

    def whole_image(self):
        self.segmenter.Modified()
        self.segmenter.Update()

    def profile(self):
        """Self CPU time per operator type over one bare forward pass, as (name, share) pairs, largest first."""
        return operator_shares(lambda: self.optimised(self.tile), 5)


def operator_shares(forward_pass, count):
    """LibTorch's profiler over one call of `forward_pass`: the `count` largest self CPU times per operator type, as
    (name, share of the total) pairs, largest first. A frozen graph's oneDNN convolutions count as its `forward`."""
    with torch.inference_mode(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as run:
        forward_pass()
    shares = collections.Counter()
    for event in run.key_averages():
        shares[event.key] += event.self_cpu_time_total
    total = sum(shares.values())
    return [(key, value / total) for key, value in shares.most_common(count)]


def timed_rounds(work, rounds):
    """{name: [seconds]} of every callable in `work` (name -> callable), in rotating order per round."""
    names = list(work)
    seconds = {name: [] for name in names}
    for run in range(rounds):
        for name in names[run % len(names):] + names[:run % len(names)]:
            start = time.perf_counter()
            work[name]()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    workdir = tempfile.mkdtemp(prefix="unet-efficiency-")
    networks = [Network(workdir, i, *entry, args.threads) for i, entry in enumerate(NETWORKS)]
    peak, peak_flops = peak_convolution()
    work = {"peak": lambda: [peak() for _ in range(10)]}
    for n in networks:
        n.bare()
        work[n.name + " bare"] = n.bare
        work[n.name + " filter"] = n.whole_image
        work[n.name + " shuffle"] = n.bare_shuffle
    seconds = {name: statistics.median(values) for name, values in timed_rounds(work, args.rounds).items()}
    peak_rate = 10 * peak_flops / seconds["peak"] / 1e9
    print("%d threads, %d rounds, GLIBC_TUNABLES=%s" % (args.threads, args.rounds,
                                                       os.environ.get("GLIBC_TUNABLES", "(unset)")))
    print("compute-bound convolution (256 -> 256, 3 x 3, 64 x 64): %.1f GFLOP/s" % peak_rate)
    for n in networks:
        bare = n.flops / seconds[n.name + " bare"] / 1e9
        whole = n.tiles * n.flops / seconds[n.name + " filter"] / 1e9
        print("%s: %.2f GFLOP a tile of %s input voxels; bare forward %.1f GFLOP/s (%.0f %% of the peak); filter "
              "over %s in %d tiles %.2f s, %.1f GFLOP/s (%.0f %%)" % (
                  n.name, n.flops / 1e9, " x ".join(map(str, n.tile.shape[2:])), bare, 100 * bare / peak_rate,
                  " x ".join(map(str, n.segmenter.GetInput().GetLargestPossibleRegion().GetSize())), n.tiles,
                  seconds[n.name + " filter"], whole, 100 * whole / peak_rate))
        print("  self time by operator: " + ", ".join("%s %.0f %%" % (k, 100 * v) for k, v in n.profile()))
        shuffle = n.flops / seconds[n.name + " shuffle"] / 1e9
        print("  up-convolutions as 1 x 1 convolution and shuffle: bare forward %.1f GFLOP/s (%.0f %%), %.2fx the "
              "bare forward's speed; outputs within %.1e" % (shuffle, 100 * shuffle / peak_rate, shuffle / bare,
                                                            n.shuffle_difference))


if __name__ == "__main__":
    main()
