set(DOCUMENTATION "Overlap-tile U-Net segmentation of images of any size with a TorchScript network run by LibTorch,
streamed through ITK's requested regions, and the U-Net's training inputs: touching-cell weight maps and separated
training targets. See README.md.")

# LibTorch is found in src/CMakeLists.txt and linked privately: it is no ITK module.
itk_module(UNetSegmentation
  ENABLE_SHARED
  DEPENDS
    ITKCommon
  COMPILE_DEPENDS
    ITKConnectedComponents
    ITKImageFunction
    ITKImageGrid
    ITKImageIntensity
    ITKImageStatistics
    ITKThresholding
    ITKWatersheds
  TEST_DEPENDS
    ITKImageFilterBase
    ITKDistanceMap
    ITKIOImageBase
    ITKIOPNG
    ITKIOMeta
    ITKIONRRD
  EXCLUDE_FROM_DEFAULT
  DESCRIPTION
    "${DOCUMENTATION}"
)
