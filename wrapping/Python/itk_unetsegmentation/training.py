"""Trains a U-Net the way Ronneberger, Fischer and Brox (2015) did, for itk.UNetSegmentationImageFilter.

    python3 -m itk_unetsegmentation.training --images IMAGE... --labels LABEL...
        [--held-out-images IMAGE... --held-out-labels LABEL...] --output DIRECTORY [options]

Images and labels are files in any format ITK reads, paired in the order given (2-D or 3-D, one channel). A label
file is a binary mask (cells at or above --mask-threshold, default half its largest value), which
itk.UNetCellLabelImageFilter turns into cells by face connectivity, or, with --label-type instances, an instance
label image (0 background, each cell its own positive label).

The recipe, as in the paper:
- a valid U-Net (unpadded convolutions, --depth poolings, --width channels at the top level, doubling per level),
  initialised from Gaussians with standard deviation sqrt(2 / incoming nodes), drop-out at the end of the
  contracting path;
- large tiles, --tile output voxels per axis (each tile reads --tile + 2 * border voxels), a batch of one by
  default; context outside the image mirrored with the edge voxel repeated, exactly as the segmentation filter
  mirrors;
- augmentation: elastic deformation (displacements drawn on a coarse 3 x 3 grid from a Gaussian with
  --elastic-sd voxels standard deviation, per-voxel displacements by cubic interpolation; the image resampled
  cubically, the labels by nearest neighbour), random flips and right-angle rotations (--flips x: flips along x
  only, for annotations that draw borders on one side of an edge along y or z, as ISBI 2012's do);
- for each deformed tile, the module's own filters make the training inputs from its cell labels:
  itk.UNetTrainingTargetImageFilter the target (cells 1, background and the borders between touching cells 0) and
  itk.UNetWeightMapImageFilter the weight map w(x) from the cells so separated (--weights map; "separation": w_c = 1,
  only the separation term; "balanced": w_c only; "none": 1);
- the loss: pixel-wise cross-entropy weighted by w(x), averaged over the tile's output voxels.
The optimiser is Adam with an exponentially decaying learning rate (--optimizer sgd: the paper's SGD with momentum
0.99), which trained faster on a CPU here.

--initial-model starts from a network this tool saved (the bundled model included) rather than from the paper's
random initialisation: its architecture and intensity normalisation are kept (fine-tuning).

Every --evaluate-every steps (and at the end) the network is saved as TorchScript with the intensity normalisation
(the training images' mean and standard deviation) inside, segments the held-out images through
itk.UNetSegmentationImageFilter exactly as a user would, and is scored (pixel error, cell Dice, adapted Rand error;
see itk_unetsegmentation.scoring) twice: the network's decision (its most probable class), and the cells that
itk.UNetCellSeparationImageFilter makes from its probabilities (--seed-threshold, --cell-threshold; the filter's
defaults; or, with --choose-thresholds, the pair of a small grid that separates the training images' cells best),
what the command-line module's --cells writes. Written to --output:
    model.pt        the TorchScript network, for UNetSegmentationImageFilter as it is
    checkpoint.pt   weights, optimiser and random states, history: --resume continues from it
    log.csv         loss per step, held-out scores per evaluation
    training.png    the loss and the held-out scores against the steps

Runs with Debian's Python (torch, scipy, skimage, matplotlib) and ITK's Python wrapping with this module on
PYTHONPATH. For speed on a CPU, set GLIBC_TUNABLES as docs/cpp.md says.
"""
import argparse
import copy
import csv
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

import itk

from .networks import (Normalized, UNet, initialize_as_paper, unet_architecture, valid_unet_border,
                       valid_unet_output_edge)
from . import model_card
from .scoring import format_scores, mean_scores, segmentation_scores


# ---------------------------------------------------------------------------------------------------------------
# Reading the data and making the training inputs with the module's filters


def read_image(file_name):
    """The image as float32 (z, y, x) or (y, x), as ITK reads it."""
    return itk.array_from_image(itk.imread(file_name, itk.F)).astype(np.float32)


def read_cells(file_name, label_type="mask", mask_threshold=None):
    """Instance labels (int64, 0 background) from a mask, through itk.UNetCellLabelImageFilter, or read as they are."""
    labels = itk.imread(file_name, itk.F)
    if label_type == "instances":
        array = itk.array_from_image(labels)
        if array.min() < 0 or np.any(array != np.round(array)):
            raise ValueError(f"{file_name}: instance labels must be non-negative integers")
        return array.astype(np.int64)
    threshold = mask_threshold
    if threshold is None:
        largest = float(itk.array_from_image(labels).max())
        threshold = 0.5 * largest if largest > 0 else 1.0
    cells = itk.u_net_cell_label_image_filter(labels, foreground_threshold=threshold)
    return itk.array_from_image(cells).astype(np.int64)


def image_spacing(file_name):
    """The voxel spacing (x, y[, z]) in a file's header; its voxels are not read."""
    io = itk.ImageIOFactory.CreateImageIO(file_name, itk.CommonEnums.IOFileMode_ReadMode)
    if io is None:
        raise ValueError(f"{file_name}: not an image file ITK reads")
    io.SetFileName(file_name)
    io.ReadImageInformation()
    return [float(io.GetSpacing(axis)) for axis in range(io.GetNumberOfDimensions())]


def training_spacing(image_files, dim, spacing=None, unit=None):
    """(values, unit) of the model card's spacing: `spacing` (--spacing) if given, else the training images' own,
    which must agree (to ITK's tolerance, 1e-6 of the spacing). The unit: `unit` (--spacing-unit) if given; else
    "pixel" for images that carry no physical spacing (every axis exactly 1, as a PNG or a TIFF without metadata:
    the network then works on whatever grid it is given), and "mm", ITK's convention, for the others or a --spacing."""
    if spacing is not None:
        if len(spacing) != dim or min(spacing) <= 0:
            raise ValueError(f"--spacing {' '.join(f'{v:g}' for v in spacing)}: needs {dim} positive values, one per "
                             f"axis of the {dim}-D images")
        return [float(v) for v in spacing], unit or "mm"
    values = image_spacing(image_files[0])[:dim]
    for file_name in image_files[1:]:
        other = image_spacing(file_name)[:dim]
        if not np.allclose(other, values, rtol=1e-6, atol=0.0):
            raise ValueError(f"the training images' spacings differ: {image_files[0]} has {values}, {file_name} "
                             f"{other}; resample them to one spacing, or give the one to record with --spacing")
    return values, unit or ("pixel" if all(v == 1.0 for v in values) else "mm")


def _label_image(array):
    """An ITK image of unsigned long labels (the type the module's filters are wrapped for) from an integer array."""
    return itk.image_from_array(np.ascontiguousarray(array, dtype=np.uint64))


def training_target(instances):
    """itk.UNetTrainingTargetImageFilter: 1 for cell voxels, 0 for background and for the voxels of a cell that
    touch another cell (within the filter's default gap, 1.5 voxels)."""
    return itk.array_from_image(itk.u_net_training_target_image_filter(_label_image(instances))).astype(np.int64)


def weight_map(instances, w0=10.0, sigma=5.0, balance_classes=True):
    """itk.UNetWeightMapImageFilter: w(x) = w_c(x) + w0 exp(-(d1 + d2)^2 / (2 sigma^2)) on background voxels; w_c
    balances the classes, or is 1 without `balance_classes`."""
    weights = itk.u_net_weight_map_image_filter(_label_image(instances), w0=w0, sigma=sigma,
                                                balance_classes=balance_classes)
    return itk.array_from_image(weights).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Tiles, mirroring and augmentation (numpy and scipy)


def mirrored_indices(start, length, size):
    """Indices start .. start + length - 1 of an axis of `size` voxels, mirrored at both ends with the edge voxel
    repeated (... 1 0 | 0 1 2 ... n-1 | n-1 n-2 ...), as often as needed: ITK's MirrorPadImageFilter convention,
    which UNetSegmentationImageFilter uses, and numpy's np.pad(mode="symmetric")."""
    period = np.arange(start, start + length) % (2 * size)
    return np.where(period < size, period, 2 * size - 1 - period)


def mirrored_window(array, origin, shape):
    """The block of `shape` voxels at `origin` (may lie partly or wholly outside `array`), mirrored as above."""
    return array[np.ix_(*[mirrored_indices(o, n, s) for o, n, s in zip(origin, shape, array.shape)])]


def elastic_displacement(shape, standard_deviation, rng, grid=3):
    """The paper's smooth deformation: a displacement vector at each node of a coarse grid (grid^dim nodes spanning
    the tile, corner to corner) drawn from a Gaussian with `standard_deviation` voxels, and per-voxel displacements
    by cubic spline interpolation between the nodes (bicubic in 2-D). Returns (dim, *shape) float64."""
    dim = len(shape)
    coarse = rng.normal(0.0, standard_deviation, size=(dim,) + (grid,) * dim)
    # Node k sits at voxel k * (n - 1) / (grid - 1). The spline interpolation is a tensor product, so it is evaluated
    # one axis at a time: column k of an axis's basis is the interpolation of the k-th unit vector on that axis.
    bases = []
    for n in shape:
        positions = np.linspace(0.0, grid - 1.0, n)[None]
        bases.append(np.stack([ndimage.map_coordinates(unit, positions, order=3, mode="mirror")
                               for unit in np.eye(grid)], axis=1))
    field = coarse
    for axis, basis in enumerate(bases):
        field = np.moveaxis(np.tensordot(field, basis, axes=([1 + axis], [1])), -1, 1 + axis)
    return field


def deformed_window(image, labels, origin, shape, displacement):
    """Image (cubic) and labels (nearest neighbour) at origin + voxel + displacement, over the mirrored image."""
    if displacement is None:
        return mirrored_window(image, origin, shape), mirrored_window(labels, origin, shape)
    # Read a mirrored block wide enough for every displaced voxel and for the cubic spline's support, then resample
    # it; its own edge then never matters.
    margin = int(math.ceil(np.abs(displacement).max())) + 8
    block_origin = [o - margin for o in origin]
    block_shape = [n + 2 * margin for n in shape]
    image_block = mirrored_window(image, block_origin, block_shape)
    label_block = mirrored_window(labels, block_origin, block_shape)
    points = np.indices(shape, dtype=np.float64) + margin + displacement
    deformed_image = ndimage.map_coordinates(image_block, points, order=3, mode="reflect").astype(np.float32)
    deformed_labels = ndimage.map_coordinates(label_block, points, order=0, mode="reflect", output=np.int64)
    return deformed_image, deformed_labels


def flip_and_rotate(arrays, rng, which="all"):
    """The same random orientation change of all arrays. `which`: "all", a right-angle rotation (in the last two
    axes) and flips along every axis; "x", a flip along the last axis (x) only, which keeps every other axis's
    direction, so that a network can learn where annotators draw a border relative to an edge along those axes."""
    turns = int(rng.integers(4)) if which == "all" else 0
    axes = range(arrays[0].ndim) if which == "all" else [arrays[0].ndim - 1]
    flips = [axis for axis in axes if rng.integers(2)]
    out = []
    for array in arrays:
        array = np.rot90(array, turns, axes=(-2, -1))
        if flips:
            array = np.flip(array, axis=flips)
        out.append(np.ascontiguousarray(array))
    return out


def centre(array, border):
    return array[tuple(slice(border, array.shape[axis] - border) for axis in range(array.ndim))]


@dataclasses.dataclass
class Sample:
    image: np.ndarray    # the network's input tile (tile + 2 border per axis), float32
    labels: np.ndarray   # its cell labels, touching cells separated (same size)
    target: np.ndarray   # the output tile's classes (int64): 1 cell, 0 background
    weights: np.ndarray  # the output tile's loss weights (float32)


@dataclasses.dataclass
class Recipe:
    tile: int = 388            # output edge of a training tile
    border: int = 92           # voxels the network loses each side
    elastic_sd: float = 10.0   # 0: no elastic deformation
    elastic_grid: int = 3
    flips: str = "all"         # all (rotations and flips), x (flips along x only) or none
    weights: str = "map"       # map, separation, balanced or none
    w0: float = 10.0
    sigma: float = 5.0


def sample_tile(image, instances, recipe, rng):
    """One training tile: at a random place, deformed, flipped and rotated, with its target and weights made by the
    module's filters from the deformed cell labels of the whole input tile (so that cells beyond the output tile
    count in w(x)), then cropped to the output tile. The output tile lies in the image or reaches up to a quarter of
    its edge past the image's edges, where image and labels are mirrored as at inference, so that voxels near the
    edges are trained on too."""
    shape = [recipe.tile + 2 * recipe.border] * image.ndim
    origin = []
    for size in image.shape:
        reach = recipe.tile // 4
        low, high = -reach, size - recipe.tile + reach
        if high < low:  # an image smaller than the tile: centred
            low = high = (size - recipe.tile) // 2
        origin.append(int(rng.integers(low, high + 1)) - recipe.border)
    displacement = None
    if recipe.elastic_sd > 0:
        displacement = elastic_displacement(shape, recipe.elastic_sd, rng, recipe.elastic_grid)
    tile, labels = deformed_window(image, instances, origin, shape, displacement)
    if recipe.flips != "none":
        tile, labels = flip_and_rotate([tile, labels], rng, recipe.flips)
    target = training_target(labels)
    separated = np.where(target == 1, labels, 0)
    if recipe.weights == "none":
        weights = np.ones(target.shape, dtype=np.float32)
    else:
        weights = weight_map(separated, 0.0 if recipe.weights == "balanced" else recipe.w0, recipe.sigma,
                             balance_classes=recipe.weights != "separation")
    return Sample(tile, separated, centre(target, recipe.border), centre(weights, recipe.border))


def weighted_cross_entropy(scores, target, weights):
    """The paper's energy: cross-entropy of the softmax at each voxel's true class, weighted by w(x), averaged."""
    return (F.cross_entropy(scores, target, reduction="none") * weights).mean()


# ---------------------------------------------------------------------------------------------------------------
# Segmenting and scoring through the filter


def run_segmentation(model_file, image, threads):
    """itk.UNetSegmentationImageFilter with the saved network (its own tile choice), updated over `image`."""
    segmenter = itk.UNetSegmentationImageFilter.New(itk.image_from_array(np.ascontiguousarray(image, np.float32)))
    segmenter.SetModelFileName(model_file)
    segmenter.SetNumberOfTorchThreads(threads)
    segmenter.Update()
    return segmenter


SEPARATED = "cells_"  # the prefix of the separated cells' scores among an evaluation's scores


def check_separation_thresholds(seed_threshold, cell_threshold):
    """The separation filter's own check of its thresholds, made before training rather than at the first
    evaluation: its output information for a one-voxel probability image."""
    probabilities = itk.image_from_array(np.full((1, 1, 2), 0.5, np.float32), is_vector=True)
    separation = itk.UNetCellSeparationImageFilter.New(probabilities, SeedThreshold=seed_threshold,
                                                       CellThreshold=cell_threshold)
    try:
        separation.UpdateOutputInformation()
    except RuntimeError as error:
        message = str(error).strip().splitlines()[-1]
        raise ValueError(f"--seed-threshold {seed_threshold:g}, --cell-threshold {cell_threshold:g}: {message}") \
            from None


def held_out_scores(model_file, held_out, threads, seed_threshold, cell_threshold):
    """The mean scores over the held-out (image, cells) pairs of the network's decision and, prefixed SEPARATED, of
    the cells UNetCellSeparationImageFilter makes from the same segmentation's probabilities."""
    decisions, separations = [], []
    for image, cells in held_out:
        segmenter = run_segmentation(model_file, image, threads)
        decisions.append(segmentation_scores(itk.array_from_image(segmenter.GetOutput()) == 1, cells))
        separated = itk.u_net_cell_separation_image_filter(segmenter.GetProbabilityOutput(),
                                                           seed_threshold=seed_threshold,
                                                           cell_threshold=cell_threshold)
        separations.append(segmentation_scores(itk.array_from_image(separated) > 0, cells))
    return {**mean_scores(decisions), **{SEPARATED + k: v for k, v in mean_scores(separations).items()}}


def cell_probability(model_file, image, threads):
    """p(cell) over `image` by the filter with the saved network."""
    return itk.array_from_image(run_segmentation(model_file, image, threads).GetProbabilityOutput())[..., 1]


DECISION_THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)


def decision_threshold(probabilities, cells):
    """Of DECISION_THRESHOLDS, the p(cell) threshold with the fewest misclassified voxels over the images (the
    lowest of equals); `probabilities` p(cell) per image, `cells` their labels (cell voxels > 0)."""
    errors = [sum(np.count_nonzero((p > t) != (c > 0)) for p, c in zip(probabilities, cells))
              for t in DECISION_THRESHOLDS]
    return float(DECISION_THRESHOLDS[int(np.argmin(errors))])


# The (seed, cell) thresholds --choose-thresholds tries: the separation filter needs cell <= seed.
SEPARATION_GRID = [(seed, cell) for seed in (0.5, 0.6, 0.7) for cell in (0.2, 0.3, 0.5) if cell <= seed]
SEPARATION_RULE = ("the lowest mean adapted Rand error of UNetCellSeparationImageFilter's cells over the training "
                   "images, ties broken by pixel error, of seed threshold 0.5, 0.6, 0.7 x cell threshold 0.2, 0.3, "
                   "0.5 (cell <= seed)")


def separated_scores(probabilities, cells, seed_threshold, cell_threshold):
    """The mean scores over the images of the cells UNetCellSeparationImageFilter makes from their probability
    images (ITK vector images, as the segmentation filter's GetProbabilityOutput) at these thresholds."""
    scores = []
    for probability, truth in zip(probabilities, cells):
        separated = itk.u_net_cell_separation_image_filter(probability, seed_threshold=seed_threshold,
                                                           cell_threshold=cell_threshold)
        scores.append(segmentation_scores(itk.array_from_image(separated) > 0, truth))
    return mean_scores(scores)


def choose_separation_thresholds(probabilities, cells):
    """(seed threshold, cell threshold, their scores) of SEPARATION_GRID by SEPARATION_RULE (the first in the grid's
    order of exact equals)."""
    scored = [(seed, cell, separated_scores(probabilities, cells, seed, cell)) for seed, cell in SEPARATION_GRID]
    return min(scored, key=lambda entry: (entry[2]["rand_error"], entry[2]["pixel_error"]))


def choose_thresholds(trainer, model_file, threads):
    """--choose-thresholds: the training images segmented through the filter with the saved network, the separation
    thresholds chosen on them (choose_separation_thresholds) become the settings that the held-out scores and the
    model card use; the card's provenance says how they were chosen."""
    probabilities = [run_segmentation(model_file, image, threads).GetProbabilityOutput() for image in trainer.images]
    seed, cell, scores = choose_separation_thresholds(probabilities, trainer.cells)
    trainer.settings.update(seed_threshold=seed, cell_threshold=cell)
    trainer.settings["thresholds_chosen"] = {
        "chosen": True, "rule": SEPARATION_RULE, "training_images": len(trainer.images), "step": trainer.step,
        "rand_error": scores["rand_error"], "pixel_error": scores["pixel_error"]}
    print(f"step {trainer.step}: cells separated at seeds {seed:g}, cells {cell:g} (on the {len(trainer.images)} "
          f"training images, adapted Rand error {scores['rand_error']:.4f})", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Training


ARCHITECTURE = ("depth", "width", "dropout", "batch_norm")
PAPER_DROPOUT = 0.5  # the paper's drop-out rate; a saved network keeps the layer, not the rate
RECIPE = ("tile", "elastic_sd", "flips", "weights", "w0", "sigma", "batch", "optimizer", "learning_rate",
          "final_learning_rate", "seed", "label_type", "mask_threshold", "initial_model", "calibrate_decision",
          "standardize", "class_names", "spacing", "spacing_unit", "choose_thresholds")
EVALUATION = ("steps", "evaluate_every", "seed_threshold", "cell_threshold")  # a --resume may change these


def separation_defaults():
    """UNetCellSeparationImageFilter's own defaults (their one home is the C++ filter)."""
    probabilities = itk.image_from_array(np.full((1, 1, 2), 0.5, np.float32), is_vector=True)
    separation = itk.UNetCellSeparationImageFilter.New(probabilities)
    return {"seed_threshold": separation.GetSeedThreshold(), "cell_threshold": separation.GetCellThreshold()}


def build_network(dim, depth, width, dropout, mean, standard_deviation, batch_norm=False):
    return Normalized(UNet(dim=dim, in_channels=1, classes=2, base=width, depth=depth, valid=True, dropout=dropout,
                           batch_norm=batch_norm), mean, standard_deviation)


def initial_network(file_name):
    """The architecture (unet_architecture), intensity normalisation and weights of a network this tool saved
    (model.pt, or the bundled model): what --initial-model starts from."""
    try:
        scripted = torch.jit.load(file_name, map_location="cpu")
    except Exception as error:
        raise ValueError(f"--initial-model {file_name}: not a TorchScript file ({error})") from None
    state = scripted.state_dict()
    architecture = unet_architecture(state)
    if architecture is None or not (hasattr(scripted, "mean") and hasattr(scripted, "scale")):
        raise ValueError(f"--initial-model {file_name}: not a U-Net saved by this tool")
    if architecture["in_channels"] != 1 or architecture["classes"] != 2:
        raise ValueError(f"--initial-model {file_name}: {architecture['in_channels']} input channels and "
                         f"{architecture['classes']} classes; this tool trains 1 and 2")
    return architecture, float(scripted.mean), 1.0 / float(scripted.scale), state


def standardized(image, mean, standard_deviation):
    """`image` mapped linearly to `mean` and `standard_deviation` (its own sample standard deviation, as ITK's
    StatisticsImageFilter, with which the segmentation filter standardises)."""
    own = float(image.std(ddof=1)) or 1.0
    return ((image - float(image.mean())) / own * standard_deviation + mean).astype(np.float32)


def standardize_training_images(settings, images):
    """--standardize: each image mapped to the training set's own mean and standard deviation, which the model card
    records (settings["standardized_to"]) so that the segmentation filter does the same to every image it segments."""
    voxels = np.concatenate([i.ravel() for i in images])
    settings["standardized_to"] = [float(voxels.mean()), float(voxels.std()) or 1.0]
    return [standardized(i, *settings["standardized_to"]) for i in images]


def prepare_card_settings(settings, args, images):
    """What the model card needs beyond the options, into `settings` before training: the spacing and unit
    (training_spacing), which separation thresholds were given (the others are the filter's defaults); checks
    --choose-thresholds against given thresholds. Returns the training images, standardised with --standardize."""
    names = ("seed_threshold", "cell_threshold")
    given = {name for name in names if getattr(args, name, None) is not None}
    if settings.get("choose_thresholds") and given:
        raise ValueError("--choose-thresholds chooses the seed and cell thresholds on the training images: give "
                         "it or --seed-threshold / --cell-threshold, not both")
    settings["thresholds_given"] = sorted(given | set(settings.get("thresholds_given", [])))
    settings["spacing"], settings["spacing_unit"] = training_spacing(
        settings["images"], images[0].ndim, settings.get("spacing"), settings.get("spacing_unit"))
    return standardize_training_images(settings, images) if settings.get("standardize") else images


def threshold_provenance(settings):
    """Where the model card's cell-separation thresholds come from: chosen (choose_thresholds), or given / the
    filter's defaults, not chosen."""
    if settings.get("choose_thresholds") and settings.get("thresholds_chosen"):
        return settings["thresholds_chosen"]
    given = settings.get("thresholds_given", [])
    return {"chosen": False, **{name: "given" if name in given else "the separation filter's default"
                                for name in ("seed_threshold", "cell_threshold")}}


def card_for(settings, dim, scores=None):
    """The model card of a network trained with `settings`: what the segmentation filter, the command-line module
    and the cell separation then apply by default (itk_unetsegmentation.model_card)."""
    card = {"schema_version": model_card.SCHEMA_VERSION}
    if settings.get("standardize"):
        # What the training images were mapped to (standardize_training_images); older checkpoints lack it.
        mean, standard_deviation = settings.get("standardized_to") or (settings["mean"], settings["standard_deviation"])
        card["normalization"] = {"kind": "standardize", "mean": mean, "standard_deviation": standard_deviation}
    spacing = settings.get("spacing") or [1.0] * dim
    card["spacing"] = {"values": [float(v) for v in spacing], "unit": settings.get("spacing_unit") or "pixel"}
    names = settings.get("class_names") or ["background", "cell"]
    card["classes"] = [{"name": names[0], "color": [0, 0, 0]}, {"name": names[1], "color": [0, 200, 0]}]
    card["flip_axes"] = {"all": list(range(dim)), "x": [0], "none": []}[settings.get("flips", "all")]
    card["cell_separation"] = {"cell_class": 1, "seed_threshold": settings["seed_threshold"],
                               "cell_threshold": settings["cell_threshold"]}
    recipe = {name: settings.get(name) for name in ARCHITECTURE + RECIPE if settings.get(name) is not None}
    card["provenance"] = {"tool": "itk_unetsegmentation.training",
                          "training_images": [os.path.basename(f) for f in settings.get("images", [])],
                          "held_out_images": [os.path.basename(f) for f in settings.get("held_out_images", [])],
                          "recipe": json.loads(json.dumps(recipe, default=str)),
                          # Not a card normalisation (the filter would apply it a second time): a record of what
                          # the network does to its input itself (Normalized), on top of any card normalisation.
                          "input_normalization": {"inside_network": True, "mean": settings["mean"],
                                                  "standard_deviation": settings["standard_deviation"]},
                          "cell_separation": threshold_provenance(settings)}
    if scores:
        card["provenance"]["held_out_scores"] = scores
    return card


def export(model, file_name, decision_threshold=0.5, card=None):
    """TorchScript of the network in inference mode (drop-out off), written atomically, with `card` as its model
    card. With `decision_threshold` t the cell score of the copy exported is raised by -logit(t), so that its most
    probable class is the cell class exactly where the trained network's p(cell) > t."""
    exported = model
    if decision_threshold != 0.5:
        exported = copy.deepcopy(model)
        with torch.no_grad():
            exported.net.head.bias[1] -= math.log(decision_threshold / (1.0 - decision_threshold))
    exported.eval()
    scripted = torch.jit.script(exported)
    model.train()
    temporary = file_name + ".part"
    extra = {}
    if card is not None:
        model_card.validate(card)
        extra[model_card.ARCHIVE_NAME] = json.dumps(card, indent=2)
    torch.jit.save(scripted, temporary, _extra_files=extra)
    os.replace(temporary, file_name)


def learning_rate(settings, step):
    """Exponential decay from --learning-rate to --final-learning-rate over --steps, constant after."""
    fraction = min(step / max(settings["steps"], 1), 1.0)
    return settings["learning_rate"] * (settings["final_learning_rate"] / settings["learning_rate"]) ** fraction


def plot(history, file_name):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (loss_axes, score_axes) = pyplot.subplots(1, 2, figsize=(11, 4))
    steps = np.array([s for s, _ in history["loss"]])
    losses = np.array([v for _, v in history["loss"]])
    if len(losses):
        loss_axes.plot(steps, losses, color="0.8", linewidth=0.5, label="per step")
        window = max(1, min(50, len(losses) // 5))
        smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
        loss_axes.plot(steps[window - 1:], smooth, color="C0", label=f"mean of {window}")
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("weighted cross-entropy")
    loss_axes.set_yscale("log")
    loss_axes.legend()
    if history["scores"]:
        for name, label, style in (("pixel_error", "pixel error", "C0."), ("rand_error", "adapted Rand error", "C1."),
                                   ("rand_error_thinned", "adapted Rand error, borders thinned", "C2."),
                                   ("dice", "1 - cell Dice", "C3."),
                                   (SEPARATED + "pixel_error", "pixel error, separated cells", "C0x--"),
                                   (SEPARATED + "rand_error", "adapted Rand error, separated cells", "C1x--")):
            # A checkpoint written before a score existed holds none for its earlier evaluations.
            points = [(s, v[name]) for s, v in history["scores"] if name in v]
            if points:
                steps_scored, values = zip(*points)
                score_axes.plot(steps_scored, [1.0 - v for v in values] if name == "dice" else values, style,
                                label=label)
        score_axes.set_yscale("log")
        score_axes.legend()
    score_axes.set_xlabel("step")
    score_axes.set_title("held-out images")
    figure.tight_layout()
    figure.savefig(file_name, dpi=100)
    pyplot.close(figure)


def write_log(history, file_name):
    scores = dict(history["scores"])
    thresholds = dict(history.get("thresholds", []))
    with open(file_name, "w", newline="") as log:
        writer = csv.writer(log)
        names = ("pixel_error", "dice", "rand_error", "rand_error_thinned")
        names += tuple(SEPARATED + name for name in names)
        writer.writerow(["step", "seconds", "loss", "learning_rate", *names, "decision_threshold"])
        for (step, loss), seconds, rate in zip(history["loss"], history["seconds"], history["learning_rate"]):
            s = scores.get(step, {})
            writer.writerow([step, f"{seconds:.1f}", f"{loss:.5f}", f"{rate:.3g}"] +
                            [f"{s[k]:.5f}" if k in s else "" for k in names] +
                            [f"{thresholds[step]:.2f}" if step in thresholds else ""])


class Trainer:
    """The training state: network, optimiser, random generators, history; saved and restored as a checkpoint."""

    def __init__(self, settings, images, cells, checkpoint=None):
        self.settings = settings
        self.images, self.cells = images, cells
        dim = images[0].ndim
        if dim not in (2, 3) or any(i.ndim != dim for i in images):
            raise ValueError("the images must all be 2-D or all 3-D")
        initial = None
        if checkpoint is None and settings.get("initial_model"):
            # Fine-tuning: the architecture and normalisation are the initial network's, whatever the options say.
            architecture, settings["mean"], settings["standard_deviation"], initial = \
                initial_network(settings["initial_model"])
            if architecture["dim"] != dim:
                raise ValueError(f"--initial-model is {architecture['dim']}-D, the images {dim}-D")
            settings.update(depth=architecture["depth"], width=architecture["base"],
                            batch_norm=architecture["batch_norm"])
            if architecture["has_dropout"] != (settings["dropout"] > 0):
                settings["dropout"] = PAPER_DROPOUT if architecture["has_dropout"] else 0.0
        tile = settings["tile"]
        if valid_unet_output_edge(settings["depth"], tile) != tile:
            raise ValueError(f"--tile {tile} is no output edge of a valid U-Net of depth {settings['depth']}: "
                             f"use {valid_unet_output_edge(settings['depth'], tile)} or "
                             f"{valid_unet_output_edge(settings['depth'], tile) - 2 ** settings['depth']}")
        self.recipe = Recipe(tile=tile, border=valid_unet_border(settings["depth"]),
                             elastic_sd=settings["elastic_sd"], weights=settings["weights"], w0=settings["w0"],
                             sigma=settings["sigma"], flips=settings.get("flips", "all"))
        if checkpoint is None and initial is None:
            voxels = np.concatenate([i.ravel() for i in images])
            settings["mean"], settings["standard_deviation"] = float(voxels.mean()), float(voxels.std()) or 1.0
        self.model = build_network(dim, settings["depth"], settings["width"], settings["dropout"],
                                   settings["mean"], settings["standard_deviation"], settings.get("batch_norm", False))
        if settings["optimizer"] == "sgd":
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=settings["learning_rate"], momentum=0.99)
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=settings["learning_rate"])
        self.rng = np.random.default_rng(settings["seed"])
        self.step = 0
        self.history = {"loss": [], "seconds": [], "learning_rate": [], "scores": []}
        if checkpoint is None:
            torch.manual_seed(settings["seed"])
            if initial is None:
                initialize_as_paper(self.model.net)
            else:
                self.model.load_state_dict(initial)
        else:
            self.model.load_state_dict(checkpoint["model"])
            self.optimizer.load_state_dict(checkpoint["optimizer"])
            self.rng.bit_generator.state = checkpoint["numpy_random_state"]
            torch.set_rng_state(checkpoint["torch_random_state"])
            self.step = checkpoint["step"]
            self.history = checkpoint["history"]
        self.model.train()

    def samples(self, count):
        picks = self.rng.integers(len(self.images), size=count)
        return [sample_tile(self.images[i], self.cells[i], self.recipe, self.rng) for i in picks]

    def loss(self, samples):
        inputs = torch.from_numpy(np.stack([s.image for s in samples])[:, None])
        target = torch.from_numpy(np.stack([s.target for s in samples]))
        weights = torch.from_numpy(np.stack([s.weights for s in samples]))
        return weighted_cross_entropy(self.model(inputs), target, weights)

    def train_step(self):
        rate = learning_rate(self.settings, self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = rate
        loss = self.loss(self.samples(self.settings["batch"]))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return loss.item(), rate

    def checkpoint(self):
        return {"settings": self.settings, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "numpy_random_state": self.rng.bit_generator.state,
                "torch_random_state": torch.get_rng_state(), "step": self.step, "history": self.history}


def save_checkpoint(trainer, file_name):
    temporary = file_name + ".part"
    torch.save(trainer.checkpoint(), temporary)
    os.replace(temporary, file_name)


def read_pairs(image_files, label_files, label_type, mask_threshold, what):
    if len(image_files) != len(label_files):
        raise ValueError(f"{len(image_files)} {what} images but {len(label_files)} label files")
    images, cells = [], []
    for image_file, label_file in zip(image_files, label_files):
        image, labels = read_image(image_file), read_cells(label_file, label_type, mask_threshold)
        if image.shape != labels.shape:
            raise ValueError(f"{image_file} {image.shape} and {label_file} {labels.shape} differ in size")
        images.append(image)
        cells.append(labels)
    return images, cells


def evaluate(trainer, held_out, output, threads):
    """Saves the network, segments the held-out images with it through the filter, records and prints the scores.
    With --calibrate-decision the network saved decides at the p(cell) threshold that misclassifies the fewest
    training voxels (decision_threshold, the training images segmented through the filter); with
    --choose-thresholds the cell-separation thresholds are chosen on the training images (choose_thresholds)."""
    model_file = os.path.join(output, "model.pt")
    dim = trainer.images[0].ndim
    threshold = 0.5
    export(trainer.model, model_file, card=card_for(trainer.settings, dim))
    if trainer.settings.get("calibrate_decision"):
        threshold = decision_threshold([cell_probability(model_file, image, threads) for image in trainer.images],
                                       trainer.cells)
        export(trainer.model, model_file, threshold, card_for(trainer.settings, dim))
        trainer.history.setdefault("thresholds", []).append((trainer.step, threshold))
        print(f"step {trainer.step}: decision at p(cell) > {threshold:.2f} (fewest misclassified training voxels)",
              flush=True)
    if trainer.settings.get("choose_thresholds"):
        # On the probabilities of the network as saved (its decision calibrated, the card's flips applied), as a
        # user gets them; the held-out cells are then separated at the thresholds chosen.
        choose_thresholds(trainer, model_file, threads)
        export(trainer.model, model_file, threshold, card_for(trainer.settings, dim))
    if held_out:
        settings = trainer.settings
        scores = held_out_scores(model_file, held_out, threads, settings["seed_threshold"], settings["cell_threshold"])
        trainer.history["scores"].append((trainer.step, scores))
        print(f"step {trainer.step}: held-out {format_scores(scores)}", flush=True)
        separated = {k[len(SEPARATED):]: v for k, v in scores.items() if k.startswith(SEPARATED)}
        print(f"step {trainer.step}: held-out, separated cells (seeds {settings['seed_threshold']:g}, cells "
              f"{settings['cell_threshold']:g}) {format_scores(separated)}", flush=True)
        # The model card carries the scores of the network it describes.
        export(trainer.model, model_file, threshold, card_for(settings, dim, scores))
    save_checkpoint(trainer, os.path.join(output, "checkpoint.pt"))
    write_log(trainer.history, os.path.join(output, "log.csv"))
    plot(trainer.history, os.path.join(output, "training.png"))


def train(args):
    torch.set_num_threads(args.threads)
    itk.MultiThreaderBase.SetGlobalDefaultNumberOfThreads(args.threads)
    os.makedirs(args.output, exist_ok=True)
    checkpoint_file = os.path.join(args.output, "checkpoint.pt")
    checkpoint = None
    if args.resume:
        if not os.path.exists(checkpoint_file):
            raise FileNotFoundError(f"--resume: no {checkpoint_file}")
        checkpoint = torch.load(checkpoint_file)
        settings = checkpoint["settings"]
        settings.update({name: getattr(args, name) for name in EVALUATION if getattr(args, name) is not None})
    else:
        settings = {name: getattr(args, name) for name in ARCHITECTURE + RECIPE + EVALUATION}
        settings.update(images=args.images, labels=args.labels, held_out_images=args.held_out_images or [],
                        held_out_labels=args.held_out_labels or [])
    for name, value in separation_defaults().items():  # given neither now nor in the checkpoint
        if settings.get(name) is None:
            settings[name] = value
    check_separation_thresholds(settings["seed_threshold"], settings["cell_threshold"])
    images, cells = read_pairs(settings["images"], settings["labels"], settings["label_type"],
                               settings["mask_threshold"], "training")
    images = prepare_card_settings(settings, args, images)
    held_out = list(zip(*read_pairs(settings["held_out_images"], settings["held_out_labels"],
                                    settings["label_type"], settings["mask_threshold"], "held-out")))
    trainer = Trainer(settings, images, cells, checkpoint)
    print(f"{len(images)} training and {len(held_out)} held-out images; U-Net depth {settings['depth']}, width "
          f"{settings['width']}, tiles {trainer.recipe.tile + 2 * trainer.recipe.border} -> {trainer.recipe.tile}; "
          f"weights {settings['weights']}, elastic sd {settings['elastic_sd']}, flips {trainer.recipe.flips}; "
          f"from step {trainer.step} to {settings['steps']}", flush=True)

    start = last_print = time.time()
    offset = trainer.history["seconds"][-1] if trainer.history["seconds"] else 0.0
    while trainer.step < settings["steps"] and (args.minutes is None or time.time() - start < 60 * args.minutes):
        loss, rate = trainer.train_step()
        seconds = offset + time.time() - start
        trainer.history["loss"].append((trainer.step, loss))
        trainer.history["seconds"].append(seconds)
        trainer.history["learning_rate"].append(rate)
        if trainer.step % args.print_every == 0:
            recent = [v for _, v in trainer.history["loss"][-args.print_every:]]
            print(f"step {trainer.step}/{settings['steps']}  loss {np.mean(recent):.4f}  learning rate {rate:.2g}  "
                  f"{(time.time() - last_print) / args.print_every:.2f} s/step  {seconds / 60:.1f} min", flush=True)
            last_print = time.time()
        if trainer.step % settings["evaluate_every"] == 0:
            evaluate(trainer, held_out, args.output, args.threads)
            last_print = time.time()
    if not trainer.history["scores"] or trainer.history["scores"][-1][0] != trainer.step:
        evaluate(trainer, held_out, args.output, args.threads)
    print(f"wrote {os.path.join(args.output, 'model.pt')} after {trainer.step} steps", flush=True)
    return trainer


def add_data_arguments(parser):
    """Options for the training and held-out images and labels, and where the results go."""
    parser.add_argument("--images", nargs="+", help="training images")
    parser.add_argument("--labels", nargs="+", help="their labels, in the same order")
    parser.add_argument("--held-out-images", nargs="*", help="images scored during training, never trained on")
    parser.add_argument("--held-out-labels", nargs="*", help="their labels")
    parser.add_argument("--output", required=True, help="directory for model.pt, checkpoint.pt, log.csv, training.png")
    parser.add_argument("--label-type", choices=("mask", "instances"), default="mask")
    parser.add_argument("--mask-threshold", type=float, default=None,
                        help="cell voxels are at or above it (default: half the mask's largest value)")


def add_network_arguments(parser):
    """Options for the U-Net's architecture."""
    parser.add_argument("--depth", type=int, default=4, help="poolings (paper: 4)")
    parser.add_argument("--width", type=int, default=16, help="channels at the top level (paper: 64)")
    parser.add_argument("--dropout", type=float, default=PAPER_DROPOUT, help="at the end of the contracting path")
    parser.add_argument("--batch-norm", action="store_true",
                        help="batch normalisation after each convolution (not in the paper)")


def add_optimization_arguments(parser):
    """Options for tiles, steps and the optimizer's learning rate."""
    parser.add_argument("--tile", type=int, default=388, help="output edge of a training tile (4 + 2^depth k)")
    parser.add_argument("--batch", type=int, default=1, help="tiles per step")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=None, help="stop this run after this long (resumable)")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: 5e-4 (Adam), 0.01 (SGD)")
    parser.add_argument("--final-learning-rate", type=float, default=None, help="at --steps (default: a tenth)")


def add_loss_and_augmentation_arguments(parser):
    """Options for the loss's weights and the training tiles' deformations."""
    parser.add_argument("--weights", choices=("map", "separation", "balanced", "none"), default="map",
                        help="map: the paper's w(x) = w_c + separation term; separation: 1 + separation term; "
                             "balanced: w_c only; none: 1")
    parser.add_argument("--w0", type=float, default=10.0)
    parser.add_argument("--sigma", type=float, default=5.0)
    parser.add_argument("--elastic-sd", type=float, default=10.0, help="voxels; 0 turns elastic deformation off")
    parser.add_argument("--flips", choices=("all", "x", "none"), default="all",
                        help="all: random right-angle rotations and flips along every axis; x: flips along x only "
                             "(for annotations drawn on one side of an edge, consistently along y or z); none")


def add_model_card_arguments(parser):
    """Options for what the saved model applies and records: standardisation, class names, spacing, thresholds."""
    parser.add_argument("--standardize", action="store_true",
                        help="map each training image to the training set's mean and standard deviation, and write "
                             "the same standardisation into the model card (the filters then apply it to every image)")
    parser.add_argument("--class-names", nargs=2, default=None, metavar=("BACKGROUND", "CELL"),
                        help="the two classes' names in the model card (default: background cell)")
    parser.add_argument("--spacing", nargs="+", type=float, default=None,
                        help="the training images' voxel spacing x y [z], for the model card (default: the images' "
                             "own, which must agree)")
    parser.add_argument("--spacing-unit", choices=("mm", "um", "nm", "pixel"), default=None,
                        help="the spacing's unit (default: pixel, the images' own grid, for images whose spacing is 1 "
                             "along every axis, as a PNG's, and no --spacing; else mm)")
    parser.add_argument("--choose-thresholds", action="store_true",
                        help="after each evaluation's save, choose the cell-separation thresholds on the training "
                             "images (seed 0.5, 0.6, 0.7 x cell 0.2, 0.3, 0.5: the lowest adapted Rand error of the "
                             "separated cells, then pixel error) for the held-out scores and the model card")
    parser.add_argument("--calibrate-decision", action="store_true",
                        help="the saved network decides at the p(cell) threshold (0.05 to 0.95) that misclassifies "
                             "the fewest training voxels, rather than at 0.5: undoes the weight map's pull towards "
                             "the background class")
    parser.add_argument("--seed-threshold", type=float, default=None,
                        help="the held-out images are also scored as UNetCellSeparationImageFilter separates their "
                             "cells: seeds where p(cell) >= this (default 0.5, or the checkpoint's on --resume)")
    parser.add_argument("--cell-threshold", type=float, default=None,
                        help="... grown into p(cell) >= this (default 0.2, or the checkpoint's on --resume)")


def add_run_arguments(parser):
    """Options for scoring, printing, threads, the random seed, and where training starts from."""
    parser.add_argument("--evaluate-every", type=int, default=100)
    parser.add_argument("--print-every", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resume", action="store_true", help="continue from --output/checkpoint.pt")
    parser.add_argument("--initial-model", default=None,
                        help="start from this network (a model.pt this tool wrote, or the bundled model) instead of "
                             "random weights: fine-tuning; its depth, width, batch normalisation and intensity "
                             "normalisation are kept")


def parse_arguments(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    add_data_arguments(parser)
    add_network_arguments(parser)
    add_optimization_arguments(parser)
    add_loss_and_augmentation_arguments(parser)
    add_model_card_arguments(parser)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    if not args.resume and not (args.images and args.labels):
        parser.error("--images and --labels are needed (or --resume)")
    if args.learning_rate is None:
        args.learning_rate = 0.01 if args.optimizer == "sgd" else 5e-4
    if args.final_learning_rate is None:
        args.final_learning_rate = args.learning_rate / 10
    return args


if __name__ == "__main__":
    train(parse_arguments())
