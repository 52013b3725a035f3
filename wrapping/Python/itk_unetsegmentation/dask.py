"""Exact block-wise segmentation of volumes larger than one machine, with ``itk.UNetSegmentationImageFilter`` on dask.

The volume is a dask array (from zarr, from a MetaImage or NRRD file read block by block with ITK's streaming
reader, or from anything else dask reads). Every block of it is segmented by the filter on a dask worker, with the
block grown by the context its tiles read (``dask.array.map_overlap``), so a volume of any size streams through
workers of bounded memory; on ``dask.distributed`` the same code runs on a laptop's ``LocalCluster`` or on a
cluster of hundreds of machines (dask-jobqueue, SSH, Kubernetes: only the ``Client`` changes).

**Exact.** Each block is handed to the filter as an image whose largest possible region is the *whole volume* and
whose buffered region is the grown block, and the filter is asked for the block only. The filter anchors its tile
grid at the largest possible region's first index and mirrors (or pads) at its edges, so every block is computed
from exactly the tiles, the context and the mirroring of one pass over the whole volume. Without a tile overlap
every voxel is written by one tile; with blended tiles (``tile_overlap``, for same-padded networks) a block
computes every tile that reaches into it and blends them in the same order as the whole-volume pass. The result is
the whole-volume pass bit for bit, for valid and same-padded networks alike, provided the network sees each tile
alone: LibTorch's CPU convolutions round differently for different batch sizes (by about 1e-7), so ``segment`` runs
one tile per forward pass (``tiles_per_batch=1``) and equals a whole-volume pass of the filter with
``TilesPerBatch`` 1. With larger batches the two agree to float rounding.

**Aligned blocks.** Blocks whose edges are multiples of the tile stride (the filter's ``GetTileStride()``: the
largest multiple of the network's downsampling factor that keeps the overlap), on a grid anchored at the volume's
first voxel, contain whole tiles: no tile is computed twice. Chunks that do not
align are re-chunked to aligned ones with a :class:`ChunkAlignmentWarning` saying what changed
(``misaligned_chunks="rechunk"``, the default), or rejected with a ``ValueError`` that suggests aligned chunks
(``misaligned_chunks="raise"``). The same holds for chunks smaller than the context the tiles read, and for a last
chunk so short that its last tile, mirrored at the volume's end, reads further back than the others: it is merged
into its neighbour.

**Memory per worker.** One filter (and so one loaded model) per worker process, kept between tasks; its working
memory stays within ``memory_budget`` (megabytes, the filter's ``MemoryBudget``: forward passes, gathered tiles,
blending; ``segment`` refuses, with a ``ValueError``, tiles whose working memory the filter estimates above it).
Beside that a worker holds the block grown by the context (input voxels) and its output (one byte per voxel, plus
4 bytes per class and voxel with ``probabilities``). Run one
thread per worker process and give it ``number_of_torch_threads`` cores.

Arrays are in numpy's axis order (z, y, x); ``tile_size`` and the physical metadata (``origin``, ``spacing``,
``direction``) are in ITK's order (x, y, z), as the filter and ``itk.dict_from_image`` have them.
"""
import math
import operator
import os
import threading
import warnings

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.core import flatten
from dask.highlevelgraph import HighLevelGraph

__all__ = [
    "ChunkAlignmentWarning",
    "segment",
    "read_image",
    "read_zarr",
    "write_zarr",
    "metadata_from_image",
]


class ChunkAlignmentWarning(UserWarning):
    """The volume was re-chunked so that its blocks hold whole tiles of the filter's grid."""


_itk_lock = threading.Lock()
_itk_loaded = False


def _itk():
    """The itk module with the wrapped types this module uses loaded. ITK 5.2 loads its Python modules lazily, on
    first use, and not safely from several threads at once (a dask worker may run several)."""
    global _itk_loaded
    import itk

    with _itk_lock:
        if not _itk_loaded:
            for name in ("Image", "ImageRegion", "Size", "PyBuffer", "ImageFileReader", "ImageIOFactory",
                         "UNetSegmentationImageFilter", "UNetModel"):
                getattr(itk, name)
            _itk_loaded = True
    return itk


def metadata_from_image(image):
    """The physical metadata of an ITK image (or image information): ``origin``, ``spacing`` and ``direction``,
    in ITK's (x, y, z) order, as plain lists (what ``write_zarr`` stores as zarr attributes)."""
    itk = _itk()

    return {
        "origin": [float(v) for v in image.GetOrigin()],
        "spacing": [float(v) for v in image.GetSpacing()],
        "direction": itk.array_from_matrix(image.GetDirection()).tolist(),
    }


def _default_metadata(ndim):
    return {"origin": [0.0] * ndim, "spacing": [1.0] * ndim, "direction": np.eye(ndim).tolist()}


# ----------------------------------------------------------------------------------------------------------------
# The filter, its settings and the region arithmetic (ITK order is numpy order reversed).


def _input_dtype(dtype):
    """The wrapped input pixel types are unsigned char and float: other types are segmented as float32, which holds
    every integer of up to 24 bits exactly."""
    return np.dtype(np.uint8) if np.dtype(dtype) == np.uint8 else np.dtype(np.float32)


def _region(start, size):
    """An itk.ImageRegion from numpy-ordered start and size."""
    itk = _itk()

    region = itk.ImageRegion[len(size)]()
    region.SetIndex([int(v) for v in reversed(start)])
    region.SetSize([int(v) for v in reversed(size)])
    return region


def _region_bounds(region):
    """Numpy-ordered (start, stop) pairs of an itk.ImageRegion."""
    index, size = region.GetIndex(), region.GetSize()
    dimension = len(size)
    return [(int(index[dimension - 1 - a]), int(index[dimension - 1 - a]) + int(size[dimension - 1 - a]))
            for a in range(dimension)]


def _camel_case(name):
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def _make_filter(settings, dimension, dtype):
    """A UNetSegmentationImageFilter for `dimension`-D images of `dtype`, configured with `settings`: a tuple of
    (snake_case name, value) pairs, each applied with the filter's Set<Name> method."""
    itk = _itk()

    pixel = itk.UC if np.dtype(dtype) == np.uint8 else itk.F
    segmenter = itk.UNetSegmentationImageFilter[itk.Image[pixel, dimension], itk.Image[itk.UC, dimension]].New()
    for name, value in settings:
        setter = getattr(segmenter, "Set" + _camel_case(name), None)
        if setter is None:
            raise TypeError(f"UNetSegmentationImageFilter has no setting {name!r} (Set{_camel_case(name)}).")
        if name == "tile_size":
            size = itk.Size[dimension]()
            for axis, edge in enumerate(value):
                size[axis] = int(edge)
            value = size
        setter(value)
    return segmenter


class _BlockPlan:
    """What every block task needs: the filter's settings, the volume's shape and the overlap depth per axis."""

    def __init__(self, settings, shape, dtype, depth, probabilities, classes):
        self.settings = settings
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.depth = tuple(depth)
        self.probabilities = probabilities
        self.classes = classes


class _Planner:
    """The filter on the client, run on a header-only image of the whole volume: it loads the model (raising the
    filter's own errors for a bad model file or tile size) and answers which input each output region needs, so
    that the overlap between blocks comes from the filter's own tile grid rather than from a copy of its rules."""

    def __init__(self, settings, shape, dtype):
        itk = _itk()

        self.shape = tuple(shape)
        dimension = len(shape)
        self.segmenter = _make_filter(settings, dimension, dtype)
        pixel = itk.UC if np.dtype(dtype) == np.uint8 else itk.F
        self.whole = _region((0,) * dimension, shape)
        self.header = itk.Image[pixel, dimension].New()
        self.header.SetRegions(self.whole)  # never allocated
        self.segmenter.SetInput(self.header)
        self.segmenter.UpdateOutputInformation()
        self.model = self.segmenter.GetModel()
        tile = self.segmenter.GetTileSize()
        stride = self.segmenter.GetTileStride()
        self.tile_size = tuple(int(tile[dimension - 1 - a]) for a in range(dimension))
        # The filter's grid: tiles advance by a multiple of the network's downsampling factor.
        self.stride = tuple(int(stride[dimension - 1 - a]) for a in range(dimension))

    def required_input(self, start, stop):
        """Numpy-ordered (start, stop) of the input the filter reads for the output [start, stop)."""
        output = self.segmenter.GetOutput()
        output.SetRequestedRegion(_region(start, [b - a for a, b in zip(start, stop)]))
        output.PropagateRequestedRegion()
        return _region_bounds(self.header.GetRequestedRegion())

    def reach(self, axis, start, stop):
        """How far, before and after, the input read for output [start, stop) along `axis` reaches beyond it."""
        starts = [0] * len(self.shape)
        stops = list(self.shape)
        starts[axis], stops[axis] = start, stop
        low, high = self.required_input(starts, stops)[axis]
        return max(0, start - low), max(0, high - stop)


def _bounds(chunks):
    stops = np.cumsum(chunks)
    return list(zip([0] + stops[:-1].tolist(), stops.tolist()))


def _regular_chunks(extent, edge):
    return (edge,) * (extent // edge) + ((extent % edge,) if extent % edge else ())


def _plan_axis(planner, axis, chunks):
    """Aligned chunks along `axis` and the overlap depth they need, with notes on every change made."""
    extent, stride = planner.shape[axis], planner.stride[axis]
    notes = []
    if any(c % stride for c in chunks[:-1]):
        edge = max(stride, int(round(chunks[0] / stride)) * stride)
        notes.append(f"axis {axis}: chunk edges {sorted(set(chunks))} are not all multiples of the tile stride "
                     f"{stride}; re-chunked to {edge}")
        chunks = _regular_chunks(extent, edge)
    while len(chunks) > 1:
        reaches = [max(planner.reach(axis, start, stop)) for start, stop in _bounds(chunks)]
        depth = max(reaches[:-1])
        if reaches[-1] > depth or chunks[-1] < depth:
            # The last tile reaches past the volume's end, and its mirrored context reaches back further than the
            # others' (or the chunk is thinner than the overlap): one chunk with its neighbour costs less overlap.
            why = (f"needs {reaches[-1]} voxels of context where the others need {depth}" if reaches[-1] > depth
                   else f"is thinner than the {depth} voxels of context the others need")
            notes.append(f"axis {axis}: the last chunk ({chunks[-1]} voxels) {why}; merged it into its neighbour")
            chunks = chunks[:-2] + (chunks[-2] + chunks[-1],)
            continue
        if min(chunks[:-1]) < depth:
            edge = int(math.ceil(depth / stride)) * stride
            notes.append(f"axis {axis}: chunks of {min(chunks[:-1])} voxels are thinner than the {depth} voxels of "
                         f"context the tiles read; re-chunked to {edge}")
            chunks = _regular_chunks(extent, max(edge, stride))
            continue
        return tuple(chunks), depth, notes
    return tuple(chunks), 0, notes


def _plan_chunks(planner, chunks, misaligned_chunks):
    planned = [_plan_axis(planner, axis, tuple(axis_chunks)) for axis, axis_chunks in enumerate(chunks)]
    new_chunks = tuple(p[0] for p in planned)
    depth = tuple(p[1] for p in planned)
    notes = [note for p in planned for note in p[2]]
    if notes:
        message = ("The volume's chunks do not hold whole tiles of the filter's grid (tile stride "
                   f"{planner.stride} in numpy order): " + "; ".join(notes) + ".")
        if misaligned_chunks == "raise":
            raise ValueError(message + f" Aligned chunks: {new_chunks}.")
        warnings.warn(message, ChunkAlignmentWarning, stacklevel=3)
    return new_chunks, depth


# ----------------------------------------------------------------------------------------------------------------
# Worker side: one filter per worker process and settings, kept between tasks.

_worker_filters = {}
_worker_filters_lock = threading.Lock()


def _worker_filter(plan):
    key = (plan.settings, len(plan.shape), plan.dtype.str)
    with _worker_filters_lock:
        if key not in _worker_filters:
            _worker_filters[key] = (_make_filter(plan.settings, len(plan.shape), plan.dtype), threading.Lock())
        return _worker_filters[key]


def _segment_block(grown, block_info=None, plan=None):
    """Segments one block: `grown` is the block with the context map_overlap added (none beyond the volume).
    Returns the block's labels, or with plan.probabilities the pair (labels, probabilities)."""
    itk = _itk()

    location = block_info[None]["array-location"][:len(plan.shape)]  # less the probabilities' class axis
    block_start = [start for start, _ in location]
    block_size = [stop - start for start, stop in location]
    grown_start = [max(0, start - d) for (start, _), d in zip(location, plan.depth)]
    grown_stop = [min(n, stop + d) for (_, stop), n, d in zip(location, plan.shape, plan.depth)]
    if list(grown.shape) != [b - a for a, b in zip(grown_start, grown_stop)]:
        raise RuntimeError(f"Block at {location} came with shape {grown.shape}; expected the block grown by "
                           f"{plan.depth} voxels within the volume.")
    grown = np.ascontiguousarray(grown, dtype=plan.dtype)
    segmenter, lock = _worker_filter(plan)
    with lock:
        if hasattr(segmenter, "SetGenerateProbabilities"):
            segmenter.SetGenerateProbabilities(plan.probabilities)
        # The block as an image whose largest possible region is the whole volume. Without a source, an image with
        # pixels would take its buffer as its largest possible region when the filter updates its information; an
        # empty buffered region keeps the volume's until the requested regions are settled, then the block's
        # pixels are put in place.
        block_image = itk.image_view_from_array(grown)
        grown_region = _region(grown_start, grown.shape)
        block_image.SetLargestPossibleRegion(_region((0,) * grown.ndim, plan.shape))
        block_image.SetBufferedRegion(_region((0,) * grown.ndim, (0,) * grown.ndim))
        block_image.SetRequestedRegion(grown_region)
        segmenter.SetInput(block_image)
        segmenter.Modified()
        segmenter.UpdateOutputInformation()
        labels = segmenter.GetOutput()
        labels.SetRequestedRegion(_region(block_start, block_size))
        labels.PropagateRequestedRegion()
        if not grown_region.IsInside(block_image.GetRequestedRegion()):
            raise RuntimeError(f"The filter reads {block_image.GetRequestedRegion()} for the block at {location}, "
                               f"beyond the {plan.depth} voxels of context it was given.")
        block_image.SetBufferedRegion(grown_region)
        labels.UpdateOutputData()
        probability_map = segmenter.GetProbabilityOutput()  # None unless plan.probabilities
        # The outputs leave the filter with their pixels (it makes new ones for the next block).
        labels.DisconnectPipeline()
        if probability_map is not None:
            probability_map.DisconnectPipeline()
    if plan.probabilities:
        return (_buffered_array(labels, block_start, block_size),
                _buffered_array(probability_map, block_start, block_size))
    return _buffered_array(labels, block_start, block_size)


def _buffered_array(image, start, size):
    """A numpy copy of the voxels [start, start + size) (numpy order) of a pipeline-free image's buffer. ITK's array
    views size the array by the largest possible region (and update the image), so that is made the buffer's."""
    itk = _itk()

    image.SetLargestPossibleRegion(image.GetBufferedRegion())
    buffered = _region_bounds(image.GetBufferedRegion())
    block = tuple(slice(a - first, a - first + n) for a, n, (first, _) in zip(start, size, buffered))
    return np.array(itk.array_view_from_image(image)[block])


# ----------------------------------------------------------------------------------------------------------------
# Public functions.


def segment(volume, model_file_name, tile_size, *, probabilities=False, misaligned_chunks="rechunk",
            number_of_torch_threads=1, tiles_per_batch=1, memory_budget=1024.0, **filter_parameters):
    """Segments a 2-D or 3-D dask array block by block with ``itk.UNetSegmentationImageFilter``, lazily.

    Parameters
    ----------
    volume : dask.array.Array (or anything ``dask.array.asarray`` takes)
        The image, numpy axis order (z, y, x). ``uint8`` is segmented as unsigned char, every other type as
        float32.
    model_file_name : str
        The TorchScript network (made absolute here: every worker must see the file at that path).
    tile_size : int or sequence of int
        The filter's ``TileSize``, in ITK's order (x, y, z); one int for all axes. Every edge must be valid for the
        network (the filter's error names the nearest valid ones). Blocks are aligned to multiples of the tile stride
        (see the module's documentation).
    probabilities : bool
        False: return the label map. True: return ``(labels, probabilities)``, the probabilities with the classes
        as a last axis; the labels are the filter's, its most probable class (the lowest on ties), from the same run.
    misaligned_chunks : "rechunk" or "raise"
        What to do with chunks that do not hold whole tiles (see the module's documentation).
    number_of_torch_threads : int
        LibTorch's threads in every worker (the filter's ``NumberOfTorchThreads``); set it to the cores each worker
        process has.
    tiles_per_batch : int
        Tiles per forward pass (the filter's ``TilesPerBatch``); 1 (default) keeps the result bit for bit that of a
        whole-volume pass with one tile per pass, whatever the blocks.
    memory_budget : float
        Megabytes a forward pass may use (the filter's ``MemoryBudget``); tiles estimated above it are refused.
    **filter_parameters
        Any other setting of the filter, in snake_case: ``normalization_mean=[100.0]``,
        ``normalization_standard_deviation=[25.0]``, ``tile_overlap=8``, ``gaussian_blending=False``,
        ``boundary_constant`` with ``boundary_condition``, ``device="cuda:0"``...

    Returns a dask array of uint8 labels (or labels and float32 probabilities) chunked as the (possibly re-chunked)
    volume. Raises the filter's ``RuntimeError`` for a bad model or tile size right away, on the client.
    """
    if misaligned_chunks not in ("rechunk", "raise"):
        raise ValueError(f"misaligned_chunks must be 'rechunk' or 'raise', not {misaligned_chunks!r}.")
    volume = da.asarray(volume)
    if volume.ndim not in (2, 3):
        raise ValueError(f"The filter segments 2-D and 3-D images; the volume has {volume.ndim} axes.")
    dtype = _input_dtype(volume.dtype)
    if volume.dtype != dtype:
        volume = volume.astype(dtype)
    if np.isscalar(tile_size):
        tile_size = (tile_size,) * volume.ndim
    settings = _filter_settings(volume.ndim, model_file_name, tile_size, number_of_torch_threads, tiles_per_batch,
                                memory_budget, filter_parameters)
    planner = _planner_within_budget(settings, volume.shape, dtype, tile_size, memory_budget)
    chunks, depth = _plan_chunks(planner, volume.chunks, misaligned_chunks)
    if chunks != volume.chunks:
        volume = volume.rechunk(chunks)
    classes = int(planner.model.GetNumberOfClasses())
    return _segment_blocks(volume, _BlockPlan(settings, volume.shape, dtype, depth, probabilities, classes))


def _filter_settings(ndim, model_file_name, tile_size, number_of_torch_threads, tiles_per_batch, memory_budget,
                     filter_parameters):
    """segment's filter settings as a sorted tuple of (snake_case name, value) pairs: hashable, for the workers'
    filters and dask's names."""
    if len(tile_size) != ndim or any(int(edge) <= 0 for edge in tile_size):
        raise ValueError(f"tile_size must give a positive edge for each of the volume's {ndim} axes; got "
                         f"{tuple(tile_size)}.")
    settings = dict(filter_parameters)
    settings.update(model_file_name=os.path.abspath(model_file_name), tile_size=tuple(int(e) for e in tile_size),
                    number_of_torch_threads=int(number_of_torch_threads), tiles_per_batch=int(tiles_per_batch),
                    memory_budget=float(memory_budget))
    return tuple(sorted((name, tuple(value) if isinstance(value, list) else value)
                        for name, value in settings.items()))


def _planner_within_budget(settings, shape, dtype, tile_size, memory_budget):
    try:
        return _Planner(settings, shape, dtype)
    except RuntimeError as error:
        # The filter refuses a tile and batch whose working memory exceeds its MemoryBudget (its own estimate,
        # from the forward memory measured when the model loads): the caller's memory_budget, so a ValueError here.
        if "MemoryBudget" not in str(error):
            raise
        message = str(error).strip().splitlines()[-1]
        raise ValueError(f"The tiles of {tuple(tile_size)} voxels need more than memory_budget = {memory_budget} MB "
                         f"per worker: {message}") from None


def _segment_blocks(volume, plan):
    """The lazy block-wise segmentation of `volume`, already chunked as planned: the labels, or with
    plan.probabilities (labels, probabilities)."""
    common = dict(depth={axis: d for axis, d in enumerate(plan.depth)}, boundary="none", trim=False,
                  allow_rechunk=False, plan=plan)
    model_file = dict(plan.settings)["model_file_name"]
    token = tokenize(volume.name, plan.settings, os.path.getmtime(model_file), os.path.getsize(model_file),
                     plan.depth)
    if not plan.probabilities:
        return da.map_overlap(_segment_block, volume, dtype=np.uint8, meta=np.empty((0,) * volume.ndim, np.uint8),
                              chunks=volume.chunks, name="unet-segment-labels-" + token, **common)
    pairs = da.map_overlap(_segment_block, volume, dtype=object, meta=np.empty((0,) * volume.ndim, object),
                           chunks=volume.chunks, name="unet-segment-" + token, **common)
    return (_pair_part(pairs, 0, "unet-segment-labels-with-probabilities-" + token, np.uint8, volume.chunks),
            _pair_part(pairs, 1, "unet-segment-probabilities-" + token, np.float32,
                       volume.chunks + ((plan.classes,),)))


def _pair_part(pairs, part, name, dtype, chunks):
    """Part `part` of every block of `pairs` (blocks that are tuples) as a dask array: the filter's labels and its
    probabilities come from one run of it per block, as dask.array.apply_gufunc splits a function's outputs. Extra
    axes of `chunks` (the probabilities' classes) are one chunk each."""
    extra = (0,) * (len(chunks) - pairs.ndim)
    layer = {(name,) + key[1:] + extra: (operator.getitem, key, part) for key in flatten(pairs.__dask_keys__())}
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[pairs])
    return da.Array(graph, name, chunks=chunks, dtype=dtype, meta=np.empty((0,) * len(chunks), dtype))


class _StreamedImageFile:
    """An array-like over an image file whose slices are read with ITK's ImageFileReader for just that region:
    MetaImage (uncompressed) reads only the region; file formats whose ITK reader cannot stream (NRRD in ITK 5.2,
    compressed MetaImage) read the whole file for every block and keep the region."""

    def __init__(self, file_name):
        itk = _itk()

        self.file_name = os.path.abspath(file_name)
        io = itk.ImageIOFactory.CreateImageIO(self.file_name, itk.CommonEnums.IOFileMode_ReadMode)
        if io is None:
            raise RuntimeError(f"ITK has no image IO that reads \"{self.file_name}\".")
        io.SetFileName(self.file_name)
        io.ReadImageInformation()
        if io.GetNumberOfComponents() != 1:
            raise ValueError(f"\"{self.file_name}\" has {io.GetNumberOfComponents()} components per pixel; "
                             "read_image reads scalar images.")
        dimension = io.GetNumberOfDimensions()
        self.ndim = dimension
        self.shape = tuple(int(io.GetDimensions(dimension - 1 - a)) for a in range(dimension))
        unsigned_char = io.GetComponentTypeAsString(io.GetComponentType()) == "unsigned_char"
        self.dtype = np.dtype(np.uint8) if unsigned_char else np.dtype(np.float32)
        self.streams = bool(io.CanStreamRead())
        self.metadata = {
            "origin": [float(io.GetOrigin(a)) for a in range(dimension)],
            "spacing": [float(io.GetSpacing(a)) for a in range(dimension)],
            "direction": [[float(io.GetDirection(column)[row]) for column in range(dimension)]
                          for row in range(dimension)],
        }
        self._stamp = (os.path.getmtime(self.file_name), os.path.getsize(self.file_name))

    def __dask_tokenize__(self):
        return (self.file_name, self._stamp, self.dtype.str)

    def __getitem__(self, key):
        itk = _itk()

        key = key if isinstance(key, tuple) else (key,)
        start, size = [], []
        for axis, item in enumerate(key):
            first, stop, step = item.indices(self.shape[axis])
            if step != 1:
                raise IndexError("read_image's arrays are read in contiguous blocks.")
            start.append(first)
            size.append(max(stop - first, 0))
        if 0 in size:
            return np.empty(size, self.dtype)
        pixel = itk.UC if self.dtype == np.uint8 else itk.F
        reader = itk.ImageFileReader[itk.Image[pixel, self.ndim]].New(FileName=self.file_name)
        reader.UpdateOutputInformation()
        image = reader.GetOutput()
        image.SetRequestedRegion(_region(start, size))
        image.Update()
        image.DisconnectPipeline()
        return _buffered_array(image, start, size)


def read_image(file_name, chunks=None):
    """A 2-D or 3-D scalar image file as a dask array whose blocks are read lazily, each by ITK's ImageFileReader
    asked for that block only, and the image's physical metadata.

    Uncompressed MetaImage (.mha, .mhd) files stream: a block reads only its voxels. ITK 5.2's NRRD reader (and a
    compressed MetaImage) cannot stream, so each block reads the whole file: convert such volumes to MetaImage or
    zarr first when they are large. ``uint8`` files give uint8 arrays, all others float32 (ITK converts on reading).

    Returns ``(array, metadata)``; ``chunks`` as dask takes them (numpy order), by default 128 voxels along each
    axis.
    """
    source = _StreamedImageFile(file_name)
    chunks = chunks or (128,) * source.ndim
    if not source.streams:
        warnings.warn(f"ITK cannot stream reads of \"{source.file_name}\": every block reads the whole file.",
                      stacklevel=2)
    array = da.from_array(source, chunks=chunks, asarray=False, fancy=False,
                          meta=np.empty((0,) * source.ndim, source.dtype), name="itk-read-" + tokenize(source))
    return array, source.metadata


def read_zarr(url, component=None, chunks=None):
    """A zarr array as a dask array, and the physical metadata in its attributes (``origin``, ``spacing``,
    ``direction``, as ``write_zarr`` writes them; the identity geometry where they are absent)."""
    import zarr

    stored = zarr.open(url, mode="r", path=component) if component else zarr.open(url, mode="r")
    if not isinstance(stored, zarr.Array):
        raise ValueError(f"{url} is a zarr group; name the array in it with component=.")
    metadata = _default_metadata(stored.ndim)
    metadata.update({key: stored.attrs[key] for key in metadata if key in stored.attrs})
    return da.from_zarr(stored, chunks=chunks), metadata


def _zarr_chunks(array):
    """Chunks for a zarr array into which every dask block writes whole zarr chunks of its own (dask blocks may be
    irregular, e.g. a merged last chunk; zarr chunks are regular): along each axis the greatest common divisor of
    the block edges."""
    return tuple(math.gcd(*axis_chunks[:-1]) if len(axis_chunks) > 1 else axis_chunks[0]
                 for axis_chunks in array.chunks)


def write_zarr(url, labels, probabilities=None, metadata=None, compute=True, overwrite=False):
    """Writes the label map (and the probabilities) as the arrays ``labels`` (and ``probabilities``) of a zarr
    group at ``url``, with the physical ``metadata`` as each array's attributes, computing on the current dask
    scheduler (the ``dask.distributed`` Client, when there is one).

    The store must be reachable from every worker (a shared file system or an object store). Each dask block writes
    whole zarr chunks that no other block touches, so the writes need no lock, and a task that is run again (a
    worker lost) rewrites the same chunks. With ``compute=False`` returns the dask ``Delayed`` that writes.
    """
    import zarr

    group = zarr.open_group(url, mode="w" if overwrite else "w-")
    metadata = metadata or _default_metadata(labels.ndim)
    sources, targets = [], []
    for name, array in (("labels", labels), ("probabilities", probabilities)):
        if array is None:
            continue
        target = group.create_dataset(name, shape=array.shape, chunks=_zarr_chunks(array), dtype=array.dtype)
        target.attrs.update(metadata)
        sources.append(array)
        targets.append(target)
    return da.store(sources, targets, lock=False, compute=compute)
