"""Scores a cell segmentation against its ground truth with the metrics of the ISBI 2012 challenge.

    python3 -m itk_unetsegmentation.scoring [--cells] labels.png truth.png [more_labels.png more_truth.png ...]

Both images are read with ITK (any format it reads); cell voxels are those at or above half the image's largest
value (the segmentation filter's label maps as the examples write them, class 1 = 255; ISBI 2012 ground truth,
255 = cell interior, 0 = membrane). With --cells the first image of each pair is a cell label image (the command-line
module's --cells output, UNetCellSeparationImageFilter's): its cell voxels are the non-zero ones. With several pairs
the scores are the means over the pairs.

The metrics, per image (`segmentation_scores`):
- pixel error: the fraction of voxels whose class (cell or not) differs from the ground truth;
- cell Dice: 2 |P & T| / (|P| + |T|) for the cell voxels P predicted and T true;
- adapted Rand error, as ISBI 2012 defines it (Arganda-Carreras et al. 2015, "foreground-restricted" Rand F-score,
  without the challenge's border thinning and at the network's own decision rather than the best of several
  thresholds): the segments are the face-connected components of the cell class (4-connected in 2-D, 6 in 3-D) of
  each image; ground-truth background (membrane) voxels are left out; the predicted background is one more segment;
  the error is 1 - the F-score of the Rand precision and recall over pairs of the remaining voxels
  (`skimage.metrics.adapted_rand_error`, called as is). 0 is perfect.
- adapted Rand error with the borders thinned: the same, after every predicted background voxel has joined its
  nearest segment (`skimage.segmentation.expand_labels`, no distance limit). The challenge's final metric thins the
  proposal's borders before scoring because borders drawn wider than the ground truth's one- or two-pixel membranes
  say nothing about which cells are separated; here they are thinned away entirely, so a predicted membrane counts
  only where it separates cells (or fails to). Merges through a gap in a membrane count as in the plain score.

Needs Debian's python3-skimage; reading files needs ITK's Python wrapping.
"""
import sys

import numpy as np
from skimage.measure import label as connected_components
from skimage.metrics import adapted_rand_error
from skimage.segmentation import expand_labels


def cell_segments(cells):
    """Face-connected components of a boolean cell mask, labelled 1..n; 0 elsewhere."""
    return connected_components(np.asarray(cells, dtype=bool), connectivity=1)


def thinned_segments(segments):
    """`segments` with each background voxel given to its nearest segment (all background stays background)."""
    return expand_labels(segments, distance=np.inf)


def segmentation_scores(predicted_cells, true_segments):
    """Scores one image. `predicted_cells`: boolean array, True for the cell class. `true_segments`: the ground truth
    as an integer array (0 background, each cell its own positive label) or a boolean cell mask (whose face-connected
    components are the cells). Returns a dict with pixel_error, dice, rand_error and rand_error_thinned."""
    predicted_cells = np.asarray(predicted_cells, dtype=bool)
    true_segments = np.asarray(true_segments)
    if true_segments.shape != predicted_cells.shape:
        raise ValueError(f"prediction {predicted_cells.shape} and ground truth {true_segments.shape} differ in size")
    if true_segments.dtype == bool:
        true_segments = cell_segments(true_segments)
    true_cells = true_segments > 0
    both = np.count_nonzero(predicted_cells & true_cells)
    cells = np.count_nonzero(predicted_cells) + np.count_nonzero(true_cells)

    true_segments = true_segments.astype(np.int64)
    segments = cell_segments(predicted_cells).astype(np.int64)

    def rand_error(segments):
        return float(adapted_rand_error(true_segments, segments, ignore_labels=(0,))[0])

    return {
        "pixel_error": float(np.count_nonzero(predicted_cells != true_cells)) / predicted_cells.size,
        "dice": 2.0 * both / cells if cells else 1.0,
        "rand_error": rand_error(segments),
        "rand_error_thinned": rand_error(thinned_segments(segments)),
    }


def mean_scores(scores):
    return {name: float(np.mean([s[name] for s in scores])) for name in scores[0]}


def format_scores(scores):
    return (f"pixel error {scores['pixel_error']:.4f}, cell Dice {scores['dice']:.4f}, "
            f"adapted Rand error {scores['rand_error']:.4f} ({scores['rand_error_thinned']:.4f} with borders thinned)")


def main(files, cell_labels=False):
    import itk

    def cells(file_name, labels=False):
        array = itk.array_from_image(itk.imread(file_name, itk.F))
        if labels:
            return array > 0
        return array >= 0.5 * array.max() if array.max() > 0 else array > 0

    scores = [segmentation_scores(cells(labels, cell_labels), cells(truth))
              for labels, truth in zip(files[::2], files[1::2])]
    print(format_scores(mean_scores(scores)))


if __name__ == "__main__":
    arguments = sys.argv[1:]
    cell_labels = bool(arguments) and arguments[0] == "--cells"
    files = arguments[1:] if cell_labels else arguments
    if len(files) < 2 or len(files) % 2:
        sys.exit(__doc__)
    main(files, cell_labels)
