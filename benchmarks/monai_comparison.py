"""This module's filter against MONAI's sliding_window_inference, side by side, in one process.

The same same-padded U-Net (itk_unetsegmentation.networks: depth 4, 16 base channels, seeded random weights), the same
image (ISBI 2012 slices 0-15 as a 4 x 4 mosaic, 2048 x 2048), 256-pixel tiles overlapping by 64 (MONAI:
overlap=0.25, mode="gaussian", sigma_scale=0.125, which is the filter's sigma = edge / 8), 4 tiles a batch,
2 threads, probabilities and then labels on both sides. The model is loaded once on each side and both are run once
before timing; then the runs alternate between the two (this machine's speed drifts by more than the difference),
and the median of the pairs' MONAI / filter time ratios is printed, with the share of pixels whose labels agree.

MONAI comes from ../shared/peers/monai-1.4.0.tar.gz, unpacked into a temporary folder; nothing of it is kept.

    PYTHONPATH=<ITK build>/Wrapping/Generators/Python /usr/bin/python3 benchmarks/monai_comparison.py [--runs N]
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edge", type=int, default=2048, help="image edge, a multiple of 512 (default 2048)")
    parser.add_argument("--runs", type=int, default=6, help="timed runs on each side (default 6)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--monai", default=os.path.join(HERE, "..", "..", "shared", "peers", "monai-1.4.0.tar.gz"))
    parser.add_argument("--isbi", default=os.path.join(HERE, "..", "..", "shared", "data", "isbi2012"))
    args = parser.parse_args()

    import itk

    workdir = tempfile.mkdtemp(prefix="unet-monai-")
    with tarfile.open(args.monai) as archive:
        archive.extractall(workdir)
    sys.path.insert(0, os.path.join(workdir, os.listdir(workdir)[0]))
    from monai.inferers import sliding_window_inference

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = UNet(dim=2, in_channels=1, classes=2, base=16, depth=4, valid=False).eval()
    model_file = os.path.join(workdir, "unet_same.pt")
    torch.jit.save(torch.jit.script(network), model_file)

    image = mosaic(args.isbi, args.edge)
    tile, overlap, batch = 256, 64, 4

    itk_image = itk.image_view_from_array(image)
    segmenter = itk.UNetSegmentationImageFilter[itk.Image[itk.F, 2], itk.Image[itk.UC, 2]].New(
        itk_image, ModelFileName=model_file, TileSize=[tile, tile], TileOverlap=overlap, TilesPerBatch=batch,
        NumberOfTorchThreads=args.threads)

    def run_filter():
        segmenter.Modified()
        segmenter.Update()
        return itk.array_view_from_image(segmenter.GetOutput())

    # MONAI as its users run it: the network as a PyTorch module, evaluated under inference mode.
    tensor = torch.from_numpy(image)[None, None]

    def run_monai():
        with torch.inference_mode():
            scores = sliding_window_inference(tensor, (tile, tile), batch, network, overlap=overlap / tile,
                                              mode="gaussian", sigma_scale=0.125)
            probabilities = torch.softmax(scores, dim=1)
            return probabilities.argmax(dim=1)[0].numpy()

    ours = np.array(run_filter())
    theirs = run_monai()
    filter_seconds, monai_seconds, ratios = [], [], []
    for run in range(args.runs):
        order = [("filter", run_filter), ("monai", run_monai)]
        if run % 2:
            order.reverse()
        seconds = {}
        for name, work in order:
            start = time.perf_counter()
            work()
            seconds[name] = time.perf_counter() - start
        filter_seconds.append(seconds["filter"])
        monai_seconds.append(seconds["monai"])
        ratios.append(seconds["monai"] / seconds["filter"])
        print("run %d: filter %.2f s, MONAI %.2f s, MONAI / filter %.3f" % (
            run + 1, seconds["filter"], seconds["monai"], ratios[-1]), flush=True)

    agree = float(np.mean(ours == theirs))
    margin = tile
    inner = float(np.mean(ours[margin:-margin, margin:-margin] == theirs[margin:-margin, margin:-margin]))
    print("image %d x %d, tiles %d overlapping by %d, %d a batch, %d threads, GLIBC_TUNABLES=%s" % (
        args.edge, args.edge, tile, overlap, batch, args.threads, os.environ.get("GLIBC_TUNABLES", "(unset)")))
    print("medians: filter %.2f s, MONAI %.2f s; MONAI / filter: median %.3f (range %.3f to %.3f, %d pairs)" % (
        statistics.median(filter_seconds), statistics.median(monai_seconds), statistics.median(ratios),
        min(ratios), max(ratios), len(ratios)))
    print("labels agree on %.4f of the pixels (%.4f more than %d pixels from the image edge)" % (
        agree, inner, margin))

    # Why labels differ. The two blend differently: MONAI sums the tiles' scores weighted by a Gaussian centred on
    # voxel tile // 2, the filter their probabilities under a Gaussian centred on the tile, (tile - 1) / 2; and
    # MONAI moves the last tile of a row back inside the image, where the filter's grid lets it overhang (its
    # context mirrored). MONAI run again blending probabilities under the filter's Gaussian leaves the last tiles'
    # voxels and rounding.
    probabilities = itk.array_view_from_image(segmenter.GetProbabilityOutput())
    centred = torch.exp(-0.5 * ((torch.arange(tile, dtype=torch.float64) - (tile - 1) / 2.0) / (tile / 8.0)) ** 2)
    with torch.inference_mode():
        blended = sliding_window_inference(tensor, (tile, tile), batch, lambda x: torch.softmax(network(x), dim=1),
                                           overlap=overlap / tile, mode="gaussian", sigma_scale=0.125,
                                           roi_weight_map=(centred[:, None] * centred[None, :]).float())
    as_filter = blended[0].argmax(dim=0).numpy()
    last = args.edge - tile  # where MONAI's last tiles start
    differ = ours != theirs
    print("labels differing: %d; where they differ the filter's class probabilities lie within %.4f of each other" % (
        differ.sum(), np.abs(probabilities[..., 1] - probabilities[..., 0])[differ].max() if differ.any() else 0.0))
    differ = ours != as_filter
    print("against MONAI blending probabilities under the filter's Gaussian: %d differ, %d of them in the last %d "
          "rows or columns" % (differ.sum(), differ[last:, :].sum() + differ[:last, last:].sum(), tile))


if __name__ == "__main__":
    main()
