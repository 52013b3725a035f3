"""Python companions of ITK's UNetSegmentation module (the filters themselves are wrapped into ``itk``).

- :mod:`itk_unetsegmentation.dask`: exact block-wise segmentation of volumes larger than one machine with
  ``itk.UNetSegmentationImageFilter`` on dask (``dask.distributed`` or any other dask scheduler); needs dask,
  distributed and zarr, and is imported only when asked for.
"""

__all__ = ["dask"]
