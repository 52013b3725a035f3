get_filename_component(MY_CURRENT_DIR "${CMAKE_CURRENT_LIST_FILE}" PATH)
file(READ "${MY_CURRENT_DIR}/README.md" DOCUMENTATION)

itk_module(UNetSegmentation
  ENABLE_SHARED
  DEPENDS
    ITKCommon
    ITKImageFilterBase
    ITKDistanceMap
  TEST_DEPENDS
    ITKImageGrid
    ITKIOImageBase
    ITKIOPNG
    ITKIOMeta
    ITKConnectedComponents
    ITKThresholding
  EXCLUDE_FROM_DEFAULT
  DESCRIPTION
    "${DOCUMENTATION}"
)
