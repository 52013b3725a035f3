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

// Whether the filter's automatic TilesPerBatch is as fast as the best batch size: for a 2-D and a 3-D network, at the
// automatic and at user-set tile sizes, the filter runs with TilesPerBatch automatic, 1, 2 and 4, labels only,
// every configuration warmed up once and then timed in rounds, each in a new random order. Prints the medians and, per
// dimension and tile size, the best median over the default's (target >= 0.95) and each fixed batch's time over the
// default's per round.
//
//   UNetBatchSweepBenchmark [rounds] [2-D model.pt] [3-D model.pt]
//
// The process's malloc settings are the environment's (GLIBC_TUNABLES, LD_PRELOAD): run it under each to compare.

#include "itkUNetSegmentationImageFilter.h"

#include "BenchmarkReporter.h"
#include "itkImageBufferRange.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <iomanip>
#include <iostream>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace
{
constexpr unsigned int          numberOfThreads = 2;
const std::vector<unsigned int> batchSizes{ 0, 1, 2, 4 };

/** An image of seeded uniform noise in [-2, 2]. */
template <typename TImage>
typename TImage::Pointer
MakeNoiseImage(const typename TImage::SizeType & size)
{
  auto image = TImage::New();
  image->SetRegions(size);
  image->Allocate();
  std::mt19937                          generator(1);
  std::uniform_real_distribution<float> noise(-2.0f, 2.0f);
  for (float & value : itk::ImageBufferRange<TImage>(*image))
  {
    value = noise(generator);
  }
  return image;
}

/** One configuration: a filter kept for the whole run, so that every timed update is a warm one. */
struct Configuration
{
  std::string                 group; // dimension and tile size
  unsigned int                tilesPerBatch{ 0 };
  itk::ProcessObject::Pointer filter;
  std::string                 used; // the batch and tile the plan chose
  std::vector<double>         seconds;
};

template <unsigned int VDimension>
void
AddConfigurations(const std::string & model, const itk::Size<VDimension> & imageSize, itk::SizeValueType tileEdge,
                  std::vector<Configuration> & configurations)
{
  using ImageType = itk::Image<float, VDimension>;
  using FilterType = itk::UNetSegmentationImageFilter<ImageType>;
  const typename ImageType::Pointer image = MakeNoiseImage<ImageType>(imageSize);
  for (const unsigned int batch : batchSizes)
  {
    auto filter = FilterType::New();
    filter->SetInput(image);
    filter->SetModelFileName(model);
    filter->SetNumberOfTorchThreads(numberOfThreads);
    filter->SetGenerateProbabilities(false);
    typename FilterType::SizeType tile;
    tile.Fill(tileEdge);
    filter->SetTileSize(tile);
    filter->SetTilesPerBatch(batch);
    try
    {
      filter->Update();
    }
    catch (const itk::MemoryAllocationError &)
    {
      std::cout << "skipped: " << VDimension << "-D, tile " << tileEdge << ", TilesPerBatch " << batch
                << " exceeds the default MemoryBudget" << std::endl;
      continue;
    }
    std::ostringstream used;
    // A batch larger than the image's tiles runs them all at once: the same work as a batch of all of them.
    const auto tiles = typename FilterType::RegionType(filter->GetTileGrid().GetNumberOfTiles()).GetNumberOfPixels();
    used << std::min<itk::SizeValueType>(filter->GetTilePlan().GetBatchSize(), tiles) << " x "
         << filter->GetTileGrid().GetTileSize() << " tiles of " << filter->GetTileGrid().GetNumberOfTiles();
    std::ostringstream group;
    group << VDimension << "-D, tile " << (tileEdge == 0 ? std::string("automatic") : std::to_string(tileEdge));
    configurations.push_back({ group.str(), batch, filter.GetPointer(), used.str(), {} });
  }
}

/** Best over the default's median where configurations that ran the same batch of the same tiles (the default and a
 * fixed TilesPerBatch that the plan resolved alike) are one configuration, their rounds pooled: the same work timed
 * twice differs only by the machine's noise, which must not count as the default's loss. */
void
PrintPooledRatio(const std::string & group, const std::vector<const Configuration *> & configurations)
{
  std::map<std::string, std::vector<double>> secondsOfWork;
  std::string                                automaticWork;
  for (const Configuration * configuration : configurations)
  {
    auto & pooled = secondsOfWork[configuration->used];
    pooled.insert(pooled.end(), configuration->seconds.begin(), configuration->seconds.end());
    automaticWork = configuration->tilesPerBatch == 0 ? configuration->used : automaticWork;
  }
  double best = Median(secondsOfWork[automaticWork]);
  for (const auto & work : secondsOfWork)
  {
    best = std::min(best, Median(work.second));
  }
  std::cout << group << ": best / automatic, the same work pooled " << std::setprecision(3)
            << best / Median(secondsOfWork[automaticWork]) << std::setprecision(2) << std::endl;
}

/** Each fixed TilesPerBatch's time over the default's, per round (the two ran in the same round, so that the
 * machine's slow phases hit both): the median and range of those ratios, below 1 where the fixed batch is faster. */
void
PrintRatiosPerRound(const std::string & group, const std::vector<const Configuration *> & configurations)
{
  const auto automatic = std::find_if(configurations.begin(), configurations.end(), [](const Configuration * c) {
    return c->tilesPerBatch == 0;
  });
  if (automatic == configurations.end())
  {
    return;
  }
  for (const Configuration * configuration : configurations)
  {
    if (configuration == *automatic)
    {
      continue;
    }
    std::vector<double> ratios;
    for (size_t round = 0; round < configuration->seconds.size(); ++round)
    {
      ratios.push_back(configuration->seconds[round] / (*automatic)->seconds[round]);
    }
    std::cout << group << ": TilesPerBatch " << configuration->tilesPerBatch
              << " / automatic, per round: median " << std::setprecision(3) << Median(ratios) << ", range "
              << *std::min_element(ratios.begin(), ratios.end()) << " to "
              << *std::max_element(ratios.begin(), ratios.end()) << std::setprecision(2) << std::endl;
  }
}

void
PrintSummary(const std::vector<Configuration> & configurations)
{
  std::map<std::string, std::vector<const Configuration *>> groups;
  for (const Configuration & configuration : configurations)
  {
    groups[configuration.group].push_back(&configuration);
  }
  std::cout << std::fixed << std::setprecision(2);
  for (const auto & group : groups)
  {
    double best = 0.0;
    double automatic = 0.0;
    for (const Configuration * configuration : group.second)
    {
      const double median = Median(configuration->seconds);
      best = best == 0.0 ? median : std::min(best, median);
      automatic = configuration->tilesPerBatch == 0 ? median : automatic;
      std::cout << group.first << ", TilesPerBatch "
                << (configuration->tilesPerBatch == 0 ? std::string("automatic")
                                                      : std::to_string(configuration->tilesPerBatch))
                << " (used: " << configuration->used << "): median " << median << " s, range "
                << *std::min_element(configuration->seconds.begin(), configuration->seconds.end()) << " to "
                << *std::max_element(configuration->seconds.begin(), configuration->seconds.end()) << " s" << std::endl;
    }
    std::cout << group.first << ": best / automatic " << std::setprecision(3) << best / automatic
              << std::setprecision(2) << std::endl;
    PrintPooledRatio(group.first, group.second);
    PrintRatiosPerRound(group.first, group.second);
  }
}

} // namespace

int
main(int argc, char * argv[])
{
  const int         rounds = argc > 1 ? std::atoi(argv[1]) : 3;
  const std::string model2D = argc > 2 ? argv[2] : UNET_BENCHMARK_MODEL_DIR "/unet2d_paper.pt";
  const std::string model3D = argc > 3 ? argv[3] : UNET_BENCHMARK_MODEL_DIR "/unet3d_valid_depth2.pt";
  std::cout << "UNetBatchSweepBenchmark: " << rounds << " rounds, " << numberOfThreads
            << " torch threads, GLIBC_TUNABLES="
            << (std::getenv("GLIBC_TUNABLES") ? std::getenv("GLIBC_TUNABLES") : "(unset)")
            << ", LD_PRELOAD=" << (std::getenv("LD_PRELOAD") ? std::getenv("LD_PRELOAD") : "(unset)") << std::endl;
  try
  {
    std::vector<Configuration> configurations;
    // The paper-style network (572 -> 388) on a 2048 x 2048 image (a 1024 x 1024 one ran in well under a second, too
    // short against the machine's noise); a depth-2 valid 3-D U-Net on 96 x 160 x 160.
    AddConfigurations<2>(model2D, itk::Size<2>{ { 2048, 2048 } }, 0, configurations);
    AddConfigurations<2>(model2D, itk::Size<2>{ { 2048, 2048 } }, 196, configurations);
    AddConfigurations<2>(model2D, itk::Size<2>{ { 2048, 2048 } }, 100, configurations); // an input 8x its output
    AddConfigurations<3>(model3D, itk::Size<3>{ { 160, 160, 96 } }, 0, configurations);
    AddConfigurations<3>(model3D, itk::Size<3>{ { 160, 160, 96 } }, 64, configurations);
    std::vector<size_t> order(configurations.size());
    std::iota(order.begin(), order.end(), size_t{ 0 });
    std::mt19937 shuffler(7);
    for (int round = 0; round < rounds; ++round)
    {
      // A new order each round spreads the machine's slow phases over all configurations, and gives each a new
      // predecessor: what one configuration leaves behind (its heap, the caches) must not always fall on the same one.
      std::shuffle(order.begin(), order.end(), shuffler);
      for (const size_t k : order)
      {
        Configuration & configuration = configurations[k];
        configuration.filter->Modified();
        const auto start = std::chrono::steady_clock::now();
        configuration.filter->Update();
        configuration.seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      }
    }
    PrintSummary(configurations);
  }
  catch (const itk::ExceptionObject & error)
  {
    std::cerr << error << std::endl;
    return EXIT_FAILURE;
  }
  return EXIT_SUCCESS;
}
