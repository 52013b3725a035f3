"""This module's filter against MONAI's sliding_window_inference, side by side, in one process.

2-D (--case 2d): the same same-padded U-Net (itk_unetsegmentation.networks: depth 4, 16 base channels, seeded random
weights), the same image (ISBI 2012 slices 0-15 as a 4 x 4 mosaic, 2048 x 2048), 256-pixel tiles overlapping by 64
(MONAI: overlap=0.25, mode="gaussian", sigma_scale=0.125, which is the filter's sigma = edge / 8), 4 tiles a batch.
3-D (--case 3d): a same-padded 3-D U-Net (depth 3, 8 base channels, seeded random weights) on a 256^3 volume (seeded
noise smoothed into blobs), 96^3 tiles overlapping by 24 (a quarter), Gaussian weights as in 2-D, 2 tiles a batch.
Both: 2 threads, probabilities and then labels on both sides. The model is loaded once on each side and both are run
once before timing; then the runs alternate between the two (this machine's speed drifts by more than the
difference), and the median of the pairs' MONAI / filter time ratios is printed, with the share of voxels whose labels
agree.

MONAI comes from ../shared/peers/monai-1.4.0.tar.gz, unpacked into a temporary folder; nothing of it is kept.

    PYTHONPATH=<ITK build>/Wrapping/Generators/Python /usr/bin/python3 benchmarks/monai_comparison.py [--case 2d|3d] [--runs N]
"""
import argparse
import os
import statistics
import sys
import tarfile
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "wrapping", "Python"))
from itk_unetsegmentation.networks import UNet  # noqa: E402


def mosaic(isbi_dir, edge):
    """ISBI slices side by side (512 x 512 each), normalised to mean 0 and standard deviation 1."""
    import itk

    tiles = edge // 512
    rows = []
    for row in range(tiles):
        slices = [itk.array_from_image(itk.imread(os.path.join(isbi_dir, "image", "%d.png" % (row * tiles + column))))
                  for column in range(tiles)]
        rows.append(np.concatenate(slices, axis=1))
    image = np.concatenate(rows, axis=0).astype(np.float32)
    return (image - image.mean()) / image.std()


def blobs(edge):
    """A seeded noise volume smoothed into blobs (mean 0, standard deviation 1): structure at several scales."""
    generator = torch.Generator().manual_seed(0)
    volume = torch.randn(1, 1, edge, edge, edge, generator=generator)
    for _ in range(3):
        volume = torch.nn.functional.avg_pool3d(volume, 5, stride=1, padding=2, count_include_pad=False)
    volume = volume[0, 0].numpy()
    return ((volume - volume.mean()) / volume.std()).astype(np.float32)


def load_monai(archive_path):
    """MONAI's sliding_window_inference, unpacked from the peers' archive into a temporary folder."""
    workdir = tempfile.mkdtemp(prefix="unet-monai-")
    with tarfile.open(archive_path) as archive:
        archive.extractall(workdir)
    sys.path.insert(0, os.path.join(workdir, os.listdir(workdir)[0]))
    from monai.inferers import sliding_window_inference
    return workdir, sliding_window_inference


class Case:
    """One comparison: the image, the network (saved as TorchScript for the filter) and the tiling both sides use."""

    def __init__(self, workdir, image, network, tile, overlap, batch, threads):
        import itk

        self.image, self.network, self.tile, self.overlap, self.batch = image, network, tile, overlap, batch
        model_file = os.path.join(workdir, "unet_same_%dd.pt" % image.ndim)
        torch.jit.save(torch.jit.script(network), model_file)
        dimension = image.ndim
        self.segmenter = itk.UNetSegmentationImageFilter[itk.Image[itk.F, dimension], itk.Image[itk.UC, dimension]].New(
            itk.image_view_from_array(image), ModelFileName=model_file, TileSize=[tile] * dimension,
            TileOverlap=overlap, TilesPerBatch=batch, NumberOfTorchThreads=threads)
        self.tensor = torch.from_numpy(image)[None, None]

    def run_filter(self):
        import itk

        self.segmenter.Modified()
        self.segmenter.Update()
        return itk.array_view_from_image(self.segmenter.GetOutput())

    def run_monai(self, sliding_window_inference, **options):
        """MONAI as its users run it: the network as a PyTorch module, evaluated under inference mode."""
        with torch.inference_mode():
            scores = sliding_window_inference(self.tensor, (self.tile,) * self.image.ndim, self.batch, self.network,
                                              overlap=self.overlap / self.tile, mode="gaussian", sigma_scale=0.125,
                                              **options)
            return torch.softmax(scores, dim=1).argmax(dim=1)[0].numpy()


def alternate(case, sliding_window_inference, runs):
    """Times the two sides in alternating order; returns the filter's and MONAI's times and the last labels."""
    ours = np.array(case.run_filter())
    theirs = case.run_monai(sliding_window_inference)
    filter_seconds, monai_seconds = [], []
    for run in range(runs):
        order = [("filter", case.run_filter), ("monai", lambda: case.run_monai(sliding_window_inference))]
        if run % 2:
            order.reverse()
        seconds = {}
        for name, work in order:
            start = time.perf_counter()
            work()
            seconds[name] = time.perf_counter() - start
        filter_seconds.append(seconds["filter"])
        monai_seconds.append(seconds["monai"])
        print("run %d: filter %.2f s, MONAI %.2f s, MONAI / filter %.3f" % (
            run + 1, seconds["filter"], seconds["monai"], seconds["monai"] / seconds["filter"]), flush=True)
    return filter_seconds, monai_seconds, ours, theirs


def report(case, threads, filter_seconds, monai_seconds, ours, theirs):
    import itk

    ratios = [m / f for f, m in zip(filter_seconds, monai_seconds)]
    margin = case.tile
    inner = tuple(slice(margin, -margin) for _ in range(ours.ndim))
    print("image %s, tiles %d overlapping by %d, %d a batch, %d threads, GLIBC_TUNABLES=%s" % (
        " x ".join(map(str, case.image.shape)), case.tile, case.overlap, case.batch, threads,
        os.environ.get("GLIBC_TUNABLES", "(unset)")))
    print("medians: filter %.2f s, MONAI %.2f s; MONAI / filter: median %.3f (range %.3f to %.3f, %d pairs)" % (
        statistics.median(filter_seconds), statistics.median(monai_seconds), statistics.median(ratios),
        min(ratios), max(ratios), len(ratios)))
    counts = np.bincount(ours.ravel(), minlength=2)
    print("the filter's labels: " + ", ".join("class %d %.1f %%" % (k, 100.0 * c / ours.size) for k, c in
                                                 enumerate(counts)))
    print("labels agree on %.5f of the voxels (%.5f more than %d voxels from the image edge)" % (
        float(np.mean(ours == theirs)), float(np.mean(ours[inner] == theirs[inner])), margin))
    probabilities = np.asarray(itk.array_view_from_image(case.segmenter.GetProbabilityOutput()))
    differ = ours != theirs
    print("labels differing: %d; where they differ the filter's class probabilities lie within %.4f of each other" % (
        differ.sum(), np.abs(probabilities[..., 1] - probabilities[..., 0])[differ].max() if differ.any() else 0.0))


def explain_differences(case, sliding_window_inference, ours):
    """Why labels differ. The two blend differently: MONAI sums the tiles' scores weighted by a Gaussian centred on
    voxel tile // 2, the filter their probabilities under a Gaussian centred on the tile, (tile - 1) / 2; and MONAI
    moves the last tile of a row back inside the image, where the filter's grid lets it overhang (its context
    mirrored). MONAI run again blending probabilities under the filter's Gaussian leaves the last tiles' voxels and
    rounding. `ours`: the filter's labels, from the timed runs."""
    tile, dimension = case.tile, case.image.ndim
    centred = torch.exp(-0.5 * ((torch.arange(tile, dtype=torch.float64) - (tile - 1) / 2.0) / (tile / 8.0)) ** 2)
    weights = centred
    for _ in range(dimension - 1):
        weights = weights[..., None] * centred
    network = case.network
    with torch.inference_mode():
        blended = sliding_window_inference(case.tensor, (tile,) * dimension, case.batch,
                                           lambda x: torch.softmax(network(x), dim=1),
                                           overlap=case.overlap / tile, mode="gaussian", sigma_scale=0.125,
                                           roi_weight_map=weights.float())
    as_filter = blended[0].argmax(dim=0).numpy()
    last = case.image.shape[0] - tile  # where MONAI's last tiles start along every axis of a cube
    differ = ours != as_filter
    in_last = differ.copy()
    interior = tuple(slice(0, last) for _ in range(dimension))
    in_last[interior] = False
    print("against MONAI blending probabilities under the filter's Gaussian: %d differ, %d of them in the last %d "
          "voxels along some axis" % (differ.sum(), in_last.sum(), tile))


# Per case: the same-padded U-Net's arguments, the tile edge, the overlap and the tiles a batch (forward_passes.py
# times these networks' passes).
CASES = {
    "2d": (dict(dim=2, base=16, depth=4), 256, 64, 4),
    "3d": (dict(dim=3, base=8, depth=3), 96, 24, 2),
}


def network_of(name):
    """The case's network, seeded, in evaluation mode."""
    torch.manual_seed(0)
    return UNet(in_channels=1, classes=2, valid=False, **CASES[name][0]).eval()


def make_case(name, workdir, args):
    network = network_of(name)
    tile, overlap, batch = CASES[name][1:]
    if name == "2d":
        return Case(workdir, mosaic(args.isbi, args.edge), network, tile, overlap, batch, args.threads)
    volume = blobs(args.edge3d)
    balance_classes(network, volume)
    return Case(workdir, volume, network, tile, overlap, batch, args.threads)


def balance_classes(network, volume):
    """Shifts the head's bias so that the random network calls half of a central crop of `volume` class 1: a random
    network otherwise tends to call every voxel one class, and labels that agree everywhere would compare nothing."""
    crop = tuple(slice(max(0, n // 2 - 48), n // 2 + 48) for n in volume.shape)
    with torch.inference_mode():
        scores = network(torch.from_numpy(np.ascontiguousarray(volume[crop]))[None, None])[0]
        network.head.bias[1] -= torch.median(scores[1] - scores[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", choices=sorted(CASES), default="2d")
    parser.add_argument("--edge", type=int, default=2048, help="2-D image edge, a multiple of 512 (default 2048)")
    parser.add_argument("--edge3d", type=int, default=256, help="3-D volume edge (default 256)")
    parser.add_argument("--runs", type=int, default=6, help="timed runs on each side (default 6)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--monai", default=os.path.join(HERE, "..", "..", "shared", "peers", "monai-1.4.0.tar.gz"))
    parser.add_argument("--isbi", default=os.path.join(HERE, "..", "..", "shared", "data", "isbi2012"))
    args = parser.parse_args()

    workdir, sliding_window_inference = load_monai(args.monai)
    torch.set_num_threads(args.threads)
    case = make_case(args.case, workdir, args)
    filter_seconds, monai_seconds, ours, theirs = alternate(case, sliding_window_inference, args.runs)
    report(case, args.threads, filter_seconds, monai_seconds, ours, theirs)
    explain_differences(case, sliding_window_inference, ours)


if __name__ == "__main__":
    main()
