/*=========================================================================
 *
 *  Copyright NumFOCUS
 *
 *  Licensed under the Apache License, Version 2.0 (the "License");
 *  you may not use this file except in compliance with the License.
 *  You may obtain a copy of the License at
 *
 *         http://www.apache.org/licenses/LICENSE-2.0.txt
 *
 *  Unless required by applicable law or agreed to in writing, software
 *  distributed under the License is distributed on an "AS IS" BASIS,
 *  WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 *  See the License for the specific language governing permissions and
 *  limitations under the License.
 *
 *=========================================================================*/

// From a binary cell mask (e.g. an ISBI 2012 ground truth, 255 = cell), makes the U-Net training inputs: instance
// labels by connected components (UNetCellLabelImageFilter), the separated training target and the touching-cell
// weight map.
//
//   UNetComputeWeightMap mask.png weights.nrrd target.png

#include "itkImageFileReader.h"
#include "itkImageFileWriter.h"
#include "itkUNetCellLabelImageFilter.h"
#include "itkUNetTrainingTargetImageFilter.h"
#include "itkUNetWeightMapImageFilter.h"

#include <iostream>

int
main(int argc, char * argv[])
{
  if (argc < 4)
  {
    std::cerr << "Usage: " << argv[0] << " mask.png weights.nrrd target.png" << std::endl;
    return EXIT_FAILURE;
  }
  using MaskType = itk::Image<unsigned char, 2>;
  using LabelType = itk::Image<unsigned short, 2>;
  try
  {
    auto cells = itk::UNetCellLabelImageFilter<MaskType, LabelType>::New();
    cells->SetInput(itk::ReadImage<MaskType>(argv[1]));
    cells->SetForegroundThreshold(128);

    auto weights = itk::UNetWeightMapImageFilter<LabelType>::New();
    weights->SetInput(cells->GetOutput());
    itk::WriteImage(weights->GetOutput(), argv[2]);

    auto target = itk::UNetTrainingTargetImageFilter<LabelType, MaskType>::New();
    target->SetInput(cells->GetOutput());
    target->SetForegroundValue(255);
    itk::WriteImage(target->GetOutput(), argv[3]);
    std::cout << cells->GetNumberOfCells() << " cells; wrote " << argv[2] << " and " << argv[3] << std::endl;
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cerr << "Error: " << error.GetDescription() << std::endl;
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
