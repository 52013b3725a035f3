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

// What aligning tiles to the network's pooling grid costs: at a given tile edge, or at the filter's automatic tile size
// (default MemoryBudget) for an image of the given size, the tiles and network input voxels of the aligned grid (tiles
// advance by a multiple of the downsampling factor) against an unaligned grid of the same tiles edge to edge (what
// the filter did before), and the time of the forward passes over each, in alternating pairs (median ratio). The
// filter's own work besides the network is a few percent of its time (UNetSegmentationBenchmark), so the forward
// passes are what alignment changes.
//
//   UNetTileAlignmentBenchmark model.pt pairs tile x y [z]      (tile: the output tile edge; 0: automatic)

#include "itkUNetSegmentationImageFilter.h"

#include "BenchmarkReporter.h"

#include <chrono>
#include <cstdlib>
#include <iostream>
#include <random>

namespace
{
using Clock = std::chrono::steady_clock;

/** Runs `tiles` random tiles through the model in batches of `batchSize` (each split into passes side by side, as the
 * filter runs them); returns the seconds taken. */
double
SecondsOfForwardPasses(const itk::UNetModel * model, const itk::UNetModel::TileSizeType & inputTileSize,
                       itk::SizeValueType tiles, unsigned int batchSize)
{
  itk::SizeValueType inputValues = model->GetNumberOfInputChannels();
  itk::SizeValueType outputValues = model->GetNumberOfClasses();
  for (unsigned int axis = 0; axis < inputTileSize.size(); ++axis)
  {
    inputValues *= inputTileSize[axis];
    outputValues *= inputTileSize[axis] - 2 * model->GetBorder(axis);
  }
  std::vector<float>              input(batchSize * inputValues);
  std::vector<float>              output(batchSize * outputValues);
  std::mt19937                    generator(1);
  std::normal_distribution<float> noise;
  std::generate(input.begin(), input.end(), [&]() { return noise(generator); });
  const auto start = Clock::now();
  for (itk::SizeValueType done = 0; done < tiles; done += batchSize)
  {
    const auto batch = static_cast<unsigned int>(std::min<itk::SizeValueType>(batchSize, tiles - done));
    model->PredictProbabilities(input.data(), batch, inputTileSize, output.data());
  }
  return std::chrono::duration<double>(Clock::now() - start).count();
}

template <unsigned int VDimension>
int
Compare(const std::string & modelFile, const itk::Size<VDimension> & size, itk::SizeValueType tile, unsigned int pairs)
{
  using ImageType = itk::Image<float, VDimension>;
  auto image = ImageType::New();
  image->SetRegions(size); // only its size matters: the tiles' inputs are random
  auto filter = itk::UNetSegmentationImageFilter<ImageType>::New();
  filter->SetInput(image);
  filter->SetModelFileName(modelFile);
  filter->SetTileSize(itk::Size<VDimension>::Filled(tile));
  filter->UpdateOutputInformation();
  const auto &       grid = filter->GetTileGrid();
  const auto *       model = filter->GetModel();
  const unsigned int batchSize = itk::MultiThreaderBase::GetGlobalDefaultNumberOfThreads();

  itk::SizeValueType aligned = 1;
  itk::SizeValueType unaligned = 1;
  for (unsigned int axis = 0; axis < VDimension; ++axis)
  {
    aligned *= grid.GetNumberOfTiles()[axis];
    unaligned *=
      itk::UNetTileGrid<VDimension>::NumberOfTilesAlong(size[axis], grid.GetTileSize()[axis], grid.GetTileSize()[axis]);
  }
  const auto inputTile = grid.GetInputTileSize();
  const auto inputTileVoxels = static_cast<double>(itk::ImageRegion<VDimension>(inputTile).GetNumberOfPixels());
  std::cout << modelFile << ", image " << size << ": " << (tile == 0 ? "automatic " : "") << "tiles "
            << grid.GetTileSize() << " (input " << inputTile << "), downsampling factor";
  for (unsigned int axis = 0; axis < VDimension; ++axis)
  {
    std::cout << ' ' << model->GetDownsamplingFactor(axis);
  }
  std::cout << "\naligned: stride " << grid.GetStride() << ", " << aligned << " tiles, "
            << aligned * inputTileVoxels / 1e6 << " M network input voxels\nunaligned (edge to edge): " << unaligned
            << " tiles, " << unaligned * inputTileVoxels / 1e6 << " M network input voxels\naligned / unaligned input "
            << static_cast<double>(aligned) / static_cast<double>(unaligned) << std::endl;

  if (pairs == 0 || aligned == unaligned)
  {
    std::cout << "(no timing: " << (pairs == 0 ? "no pairs asked for" : "the same tiles") << ')' << std::endl;
    return EXIT_SUCCESS;
  }
  const itk::UNetModel::TileSizeType modelTile(inputTile.begin(), inputTile.end());
  SecondsOfForwardPasses(model, modelTile, batchSize, batchSize); // warm-up: first calls optimise the network
  std::vector<double> ratios;
  std::vector<double> alignedSeconds;
  for (unsigned int pair = 0; pair < pairs; ++pair)
  {
    // Alternating which goes first spreads the machine's drift over both.
    const bool   alignedFirst = pair % 2 == 0;
    const double first = SecondsOfForwardPasses(model, modelTile, alignedFirst ? aligned : unaligned, batchSize);
    const double second = SecondsOfForwardPasses(model, modelTile, alignedFirst ? unaligned : aligned, batchSize);
    alignedSeconds.push_back(alignedFirst ? first : second);
    ratios.push_back(alignedFirst ? first / second : second / first);
    std::cout << "pair " << pair + 1 << ": aligned " << (alignedFirst ? first : second) << " s, unaligned "
              << (alignedFirst ? second : first) << " s" << std::endl;
  }
  std::cout << "aligned / unaligned time, median of " << pairs << " pairs = " << Median(ratios) << " (range "
            << *std::min_element(ratios.begin(), ratios.end()) << " to "
            << *std::max_element(ratios.begin(), ratios.end()) << "); aligned median " << Median(alignedSeconds)
            << " s, " << batchSize << " tiles a batch, GLIBC_TUNABLES="
            << (std::getenv("GLIBC_TUNABLES") ? std::getenv("GLIBC_TUNABLES") : "(unset)") << std::endl;
  return EXIT_SUCCESS;
}
} // namespace

int
main(int argc, char * argv[])
{
  if (argc != 6 && argc != 7)
  {
    std::cerr << "usage: " << argv[0] << " model.pt pairs tile x y [z]" << std::endl;
    return EXIT_FAILURE;
  }
  try
  {
    const auto pairs = static_cast<unsigned int>(std::stoul(argv[2]));
    const auto tile = static_cast<itk::SizeValueType>(std::stoul(argv[3]));
    if (argc == 7)
    {
      return Compare<3>(argv[1], { { std::stoul(argv[4]), std::stoul(argv[5]), std::stoul(argv[6]) } }, tile, pairs);
    }
    return Compare<2>(argv[1], { { std::stoul(argv[4]), std::stoul(argv[5]) } }, tile, pairs);
  }
  catch (const std::exception & error)
  {
    std::cerr << error.what() << std::endl;
    return EXIT_FAILURE;
  }
}
