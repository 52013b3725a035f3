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

// Runs fuzz cases for test/fuzz_unet_inputs.py, which makes the cases and supervises this program: a case that
// crashes, aborts or hangs takes this process with it, so the supervisor restarts it after that case.
//
//   UNetFuzzCaseRunner models CASE_LIST FIRST
//       each listed file as the model of a UNetModel, loaded by one small segmentation filter update;
//   UNetFuzzCaseRunner images CASE_LIST FIRST MODEL
//       each listed file read by ImageFileReader into a segmentation filter with the (valid) MODEL.
//
// CASE_LIST holds one file per line; cases run from line FIRST (0-based). For each case it prints "BEGIN i", then
// "STAGE i <stage>" as it passes each stage (models: "loaded", after UNetModel::Load; images: "read", after the
// reader's update), then "RAN i" (the update completed), "ITK i <message>" (an itk::ExceptionObject, the expected way
// to fail) or "FOREIGN i <message>" (any other exception: a defect), each line flushed at once.

#include "itkImageBufferRange.h"
#include "itkImageFileReader.h"
#include "itkUNetSegmentationImageFilter.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

namespace
{
using ImageType = itk::Image<float, 2>;
using FilterType = itk::UNetSegmentationImageFilter<ImageType>;
using Image3DType = itk::Image<float, 3>;
using Filter3DType = itk::UNetSegmentationImageFilter<Image3DType>;

std::string
OneLine(std::string text)
{
  for (char & c : text)
  {
    c = (c == '\n' || c == '\r') ? ' ' : c;
  }
  return text.substr(0, 300);
}

/** A small image of `TImage`'s dimension (13 x 11 x 5 voxels, as many axes as it has) with values from -2 to 2. */
template <typename TImage>
typename TImage::Pointer
MakeSmallImage()
{
  auto                      image = TImage::New();
  typename TImage::SizeType size;
  const itk::SizeValueType  edges[] = { 13, 11, 5 };
  std::copy_n(edges, TImage::ImageDimension, size.begin());
  image->SetRegions(size);
  image->Allocate();
  float value = 0.0f;
  for (float & voxel : itk::ImageBufferRange<TImage>(*image))
  {
    voxel = value;
    value = value > 2.0f ? -2.0f : value + 0.37f;
  }
  return image;
}

/** Throws unless every probability of `filter`'s last update is finite and each voxel's sum to one: a case that
 * "ran" must have given a segmentation, not values the filter should have refused. */
template <typename TFilter>
void
CheckProbabilities(const TFilter * filter)
{
  const auto *       probabilities = filter->GetProbabilityOutput();
  const unsigned int classes = probabilities->GetNumberOfComponentsPerPixel();
  const float *      values = probabilities->GetBufferPointer();
  for (itk::SizeValueType voxel = 0; voxel < probabilities->GetBufferedRegion().GetNumberOfPixels(); ++voxel)
  {
    double sum = 0.0;
    for (unsigned int c = 0; c < classes; ++c)
    {
      if (!std::isfinite(values[voxel * classes + c]))
      {
        throw std::runtime_error("non-finite probability at voxel " + std::to_string(voxel));
      }
      sum += values[voxel * classes + c];
    }
    if (std::abs(sum - 1.0) > 1e-3)
    {
      throw std::runtime_error("probabilities summing to " + std::to_string(sum) + " at voxel " +
                               std::to_string(voxel));
    }
  }
}

/** One update of a `TFilter` with `model` on `image`, its probabilities checked. */
template <typename TFilter>
void
SegmentWith(itk::UNetModel * model, const typename TFilter::InputImageType * image)
{
  const auto filter = TFilter::New();
  filter->SetModel(model);
  filter->SetNumberOfTorchThreads(1);
  filter->SetInput(image);
  filter->Update();
  CheckProbabilities(filter.GetPointer());
}

/** Runs one case and says how it ended. */
template <typename TCase>
void
RunCase(size_t index, TCase && runCase)
{
  std::cout << "BEGIN " << index << std::endl;
  try
  {
    runCase();
    std::cout << "RAN " << index << std::endl;
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cout << "ITK " << index << ' ' << OneLine(error.GetDescription()) << std::endl;
  }
  catch (const std::exception & error)
  {
    std::cout << "FOREIGN " << index << ' ' << OneLine(typeid(error).name()) << ": " << OneLine(error.what())
              << std::endl;
  }
  catch (...)
  {
    std::cout << "FOREIGN " << index << " (not a std::exception)" << std::endl;
  }
}
} // namespace

int
main(int argc, char * argv[])
{
  const std::string mode = argc > 1 ? argv[1] : "";
  if (argc < 4 || (mode != "models" && mode != "images") || (mode == "images" && argc < 5))
  {
    std::cerr << "Usage: " << argv[0] << " models CASE_LIST FIRST | images CASE_LIST FIRST MODEL" << std::endl;
    return EXIT_FAILURE;
  }
  std::vector<std::string> cases;
  std::ifstream            list(argv[2]);
  for (std::string line; std::getline(list, line);)
  {
    cases.push_back(line);
  }
  const size_t first = std::stoul(argv[3]);

  // One LibTorch thread: the supervisor runs several of these programs side by side.
  if (mode == "models")
  {
    const ImageType::Pointer   image = MakeSmallImage<ImageType>();
    const Image3DType::Pointer volume = MakeSmallImage<Image3DType>();
    for (size_t i = first; i < cases.size(); ++i)
    {
      RunCase(i, [&] {
        // The model's defaults: the dimension from the network, probing bounded by the filter's MemoryBudget.
        const auto model = itk::UNetModel::New();
        model->SetFileName(cases[i]);
        model->SetNumberOfThreads(1);
        model->Load();
        std::cout << "STAGE " << i << " loaded" << std::endl;
        if (model->GetGeometry().Dimension == 3)
        {
          SegmentWith<Filter3DType>(model, volume);
        }
        else
        {
          SegmentWith<FilterType>(model, image);
        }
      });
    }
    return EXIT_SUCCESS;
  }

  // One model for all image cases: loaded once, shared by every case's filter.
  const auto model = itk::UNetModel::New();
  model->SetFileName(argv[4]);
  model->SetImageDimension(2);
  model->SetNumberOfThreads(1);
  model->Load();
  for (size_t i = first; i < cases.size(); ++i)
  {
    RunCase(i, [&] {
      const auto reader = itk::ImageFileReader<ImageType>::New();
      reader->SetFileName(cases[i]);
      reader->Update();
      std::cout << "STAGE " << i << " read" << std::endl;
      const auto filter = FilterType::New();
      filter->SetModel(model);
      filter->SetInput(reader->GetOutput());
      filter->Update();
      CheckProbabilities(filter.GetPointer());
    });
  }
  return EXIT_SUCCESS;
}
