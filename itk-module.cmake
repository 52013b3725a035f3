get_filename_component(MY_CURRENT_DIR "${CMAKE_CURRENT_LIST_FILE}" PATH)
file(READ "${MY_CURRENT_DIR}/README.md" DOCUMENTATION)

# LibTorch is found in src/CMakeLists.txt and linked privately: it is no ITK module.
itk_module(UNetSegmentation
  ENABLE_SHARED
  DEPENDS
    ITKCommon
  TEST_DEPENDS
    ITKImageFilterBase
    ITKImageGrid
    ITKDistanceMap
    ITKIOImageBase
    ITKIOPNG
    ITKIOMeta
    ITKConnectedComponents
    ITKThresholding
  EXCLUDE_FROM_DEFAULT
  DESCRIPTION
    "${DOCUMENTATION}"
)
