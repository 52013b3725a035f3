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

// The filter's "cuda" device path against its "cpu" path on the same network and image: probabilities and labels
// agree (to float rounding, since cuDNN and oneDNN round differently), streamed equals one-shot on the GPU bit for
// bit, flip averaging runs there too, a device that does not exist is a clear error, and the times of both.
//
//   UNetCudaCheck model2d.pt model3d.pt

#include "itkUNetSegmentationImageFilter.h"

#include "itkImage.h"
#include "itkImageRegionIterator.h"
#include "itkStreamingImageFilter.h"

#include <algorithm>
#include <functional>
#include <numeric>
#include <chrono>
#include <cmath>
#include <iostream>
#include <random>
#include <vector>

namespace
{
template <typename TImage>
typename TImage::Pointer
RandomImage(const typename TImage::SizeType & size)
{
  auto image = TImage::New();
  image->SetRegions(size);
  image->Allocate();
  std::mt19937                     random(7);
  std::normal_distribution<float>  normal(0.0f, 1.0f);
  itk::ImageRegionIterator<TImage> it(image, image->GetBufferedRegion());
  for (; !it.IsAtEnd(); ++it)
  {
    it.Set(normal(random));
  }
  return image;
}

template <typename TImage>
struct Check
{
  using FilterType = itk::UNetSegmentationImageFilter<TImage>;

  static typename FilterType::Pointer
  Make(const TImage * image, const std::string & model, const std::string & device)
  {
    auto filter = FilterType::New();
    filter->SetInput(image);
    filter->SetModelFileName(model);
    filter->SetDevice(device);
    filter->SetNumberOfTorchThreads(16);
    filter->SetMemoryBudget(8192);
    return filter;
  }

  static double
  LargestDifference(const FilterType * expected, const FilterType * actual)
  {
    const auto * p = expected->GetProbabilityOutput();
    const auto * q = actual->GetProbabilityOutput();
    const auto   values = p->GetBufferedRegion().GetNumberOfPixels() * p->GetNumberOfComponentsPerPixel();
    double       largest = 0.0;
    for (size_t i = 0; i < values; ++i)
    {
      largest = std::max(largest, std::abs(double(p->GetBufferPointer()[i]) - double(q->GetBufferPointer()[i])));
    }
    return largest;
  }

  static size_t
  LabelsDiffering(const typename FilterType::OutputImageType * a, const typename FilterType::OutputImageType * b)
  {
    const auto voxels = a->GetBufferedRegion().GetNumberOfPixels();
    return static_cast<size_t>(std::inner_product(a->GetBufferPointer(),
                                                  a->GetBufferPointer() + voxels,
                                                  b->GetBufferPointer(),
                                                  size_t{ 0 },
                                                  std::plus<>(),
                                                  std::not_equal_to<>()));
  }

  static double
  Median(std::vector<double> values)
  {
    std::sort(values.begin(), values.end());
    return values[values.size() / 2];
  }

  static double
  Seconds(FilterType * filter)
  {
    filter->Modified();
    const auto start = std::chrono::steady_clock::now();
    filter->Update();
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  static int
  Run(const std::string & model, const typename TImage::SizeType & size)
  {
    const auto image = RandomImage<TImage>(size);
    const auto cpu = Make(image, model, "cpu");
    const auto gpu = Make(image, model, "cuda");
    for (const auto & filter : { cpu, gpu })
    {
      filter->GetModel()->SetImageDimension(TImage::ImageDimension);
      filter->GetModel()->Load();
      const auto * m = filter->GetModel();
      std::cout << m->GetDevice() << ": border " << m->GetBorder(0) << ", minimum input " << m->GetMinimumInputSize(0)
                << ", downsampling factor " << m->GetDownsamplingFactor(0) << ", classes " << m->GetNumberOfClasses()
                << ", forward MB for one 64-voxel output tile "
                << m->GetEstimatedForwardBytes(
                     1, typename itk::UNetModel::TileSizeType(TImage::ImageDimension, 64 + 2 * m->GetBorder(0))) /
                     (1024.0 * 1024.0)
                << std::endl;
    }
    cpu->Update();
    gpu->Update();
    // Same tiles and batches on both, so that only the device differs (convolutions round differently for other
    // shapes), whatever the memory each device's allocator reports for them.
    gpu->SetMemoryBudget(65536);
    gpu->SetTileSize(cpu->GetTileGrid().GetTileSize());
    gpu->SetTilesPerBatch(cpu->GetTilesPerBatch());
    gpu->Update();

    const double largest = LargestDifference(cpu, gpu);
    const auto   voxels = cpu->GetOutput()->GetBufferedRegion().GetNumberOfPixels();
    const size_t sameLabel = voxels - LabelsDiffering(cpu->GetOutput(), gpu->GetOutput());

    // Streamed on the GPU equals one-shot on the GPU, bit for bit.
    auto streamedFilter = Make(image, model, "cuda");
    streamedFilter->SetMemoryBudget(65536);
    streamedFilter->SetTileSize(gpu->GetTileGrid().GetTileSize());
    streamedFilter->SetTilesPerBatch(gpu->GetTilesPerBatch());
    auto streamer =
      itk::StreamingImageFilter<typename FilterType::OutputImageType, typename FilterType::OutputImageType>::New();
    streamer->SetInput(streamedFilter->GetOutput());
    streamer->SetNumberOfStreamDivisions(5);
    streamer->Update();
    const size_t streamedDiffer = LabelsDiffering(streamer->GetOutput(), gpu->GetOutput());

    // Flip averaging over every axis on the GPU.
    auto flipped = Make(image, model, "cuda");
    flipped->SetMemoryBudget(65536);
    flipped->SetTileSize(gpu->GetTileGrid().GetTileSize());
    flipped->SetTestTimeFlipAxes(FilterType::FlipAxesType::Filled(true));
    flipped->Update();

    // The same tiles in mixed precision.
    std::vector<typename FilterType::Pointer> lowerPrecision;
    for (const auto precision : { FilterType::PrecisionEnum::Float16, FilterType::PrecisionEnum::BFloat16 })
    {
      lowerPrecision.push_back(Make(image, model, "cuda"));
      lowerPrecision.back()->SetPrecision(precision);
      lowerPrecision.back()->SetMemoryBudget(65536);
      lowerPrecision.back()->SetTileSize(gpu->GetTileGrid().GetTileSize());
      lowerPrecision.back()->SetTilesPerBatch(gpu->GetTilesPerBatch());
      lowerPrecision.back()->Update();
    }

    std::vector<double> cpuSeconds, gpuSeconds, flippedSeconds, halfSeconds, bfloatSeconds;
    for (int run = 0; run < 3; ++run)
    {
      cpuSeconds.push_back(Seconds(cpu));
      gpuSeconds.push_back(Seconds(gpu));
      flippedSeconds.push_back(Seconds(flipped));
      halfSeconds.push_back(Seconds(lowerPrecision[0]));
      bfloatSeconds.push_back(Seconds(lowerPrecision[1]));
    }
    std::cout << TImage::ImageDimension << "-D " << model << ", image " << size << ", tile "
              << gpu->GetTileGrid().GetTileSize() << ", batch " << gpu->GetTilesPerBatch() << ", "
              << typename FilterType::RegionType(gpu->GetTileGrid().GetNumberOfTiles()).GetNumberOfPixels()
              << " tiles, frozen on cuda: " << gpu->GetModel()->IsFrozen() << "\n"
              << "  cuda vs cpu: largest probability difference " << largest << ", labels agree on " << sameLabel
              << " of " << voxels << " voxels\n"
              << "  cuda streamed (5 pieces) vs one-shot: " << streamedDiffer << " labels differ\n"
              << "  estimated working memory: cpu " << cpu->GetEstimatedWorkingMemory() << " MB, cuda "
              << gpu->GetEstimatedWorkingMemory() << " MB\n"
              << "  seconds, medians of 3 (16 CPU threads): cpu " << Median(cpuSeconds) << ", cuda "
              << Median(gpuSeconds) << ", cuda with flip averaging over all axes " << Median(flippedSeconds)
              << std::endl;
    const char * names[] = { "float16", "bfloat16" };
    const double seconds[] = { Median(halfSeconds), Median(bfloatSeconds) };
    for (size_t k = 0; k < lowerPrecision.size(); ++k)
    {
      std::cout << "  cuda " << names[k] << " vs float32: " << seconds[k] << " s, largest probability difference "
                << LargestDifference(gpu, lowerPrecision[k]) << ", labels differ on "
                << LabelsDiffering(gpu->GetOutput(), lowerPrecision[k]->GetOutput()) << " of " << voxels << " voxels"
                << std::endl;
    }
    return streamedDiffer == 0 && largest < 1e-3 ? 0 : 1;
  }
};
} // namespace

int
main(int argc, char * argv[])
{
  if (argc != 3)
  {
    std::cerr << "Usage: " << argv[0] << " model2d.pt model3d.pt" << std::endl;
    return 2;
  }
  int failures = 0;
  for (int dimension : { 2, 3 })
  {
    try
    {
      failures += dimension == 2 ? Check<itk::Image<float, 2>>::Run(argv[1], { { 2048, 2048 } })
                                 : Check<itk::Image<float, 3>>::Run(argv[2], { { 192, 192, 192 } });
    }
    catch (const itk::ExceptionObject & error)
    {
      std::cout << "FAILED (" << dimension << "-D): " << error << std::endl;
      ++failures;
    }
  }
  // A device that is not there: an ExceptionObject with LibTorch's reason, not a crash.
  try
  {
    using FilterType = itk::UNetSegmentationImageFilter<itk::Image<float, 2>>;
    auto filter = FilterType::New();
    filter->SetInput(RandomImage<itk::Image<float, 2>>({ { 64, 64 } }));
    filter->SetModelFileName(argv[1]);
    filter->SetDevice("cuda:7");
    filter->Update();
    std::cout << "cuda:7: no error (unexpected)" << std::endl;
    ++failures;
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cout << "cuda:7: " << error.GetDescription() << std::endl;
  }
  std::cout << (failures == 0 ? "CUDA CHECK PASSED" : "CUDA CHECK FAILED") << std::endl;
  return failures == 0 ? 0 : 1;
}
