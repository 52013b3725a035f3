"""Python companions of ITK's UNetSegmentation module (the filters themselves are wrapped into ``itk``).

- :mod:`itk_unetsegmentation.dask`: exact block-wise segmentation of volumes larger than one machine with
  ``itk.UNetSegmentationImageFilter`` on dask (``dask.distributed`` or any other dask scheduler); needs dask,
  distributed and zarr.
- :mod:`itk_unetsegmentation.training`: trains a U-Net as the paper did, with this module's filters making the
  training inputs (``python3 -m itk_unetsegmentation.training --help``); needs torch.
- :mod:`itk_unetsegmentation.networks`: the U-Net definitions the training tool trains (torch).
- :mod:`itk_unetsegmentation.scoring`: the ISBI 2012 scores of a cell segmentation
  (``python3 -m itk_unetsegmentation.scoring``); needs scikit-image.

Each is imported only when asked for.
"""

__all__ = ["dask", "networks", "scoring", "training"]
