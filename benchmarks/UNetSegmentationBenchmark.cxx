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

// The filter's end-to-end time against the bare forward passes of the same network, frozen as the filter freezes it,
// over the same tiles, for a 2048 x 2048 image and a paper-style valid U-Net (572 -> 388 tiles, 8 base channels).
// Prints bare / filter: the share of the filter's time that is the network's (1 means no overhead).
//
//   UNetSegmentationBenchmark [model.pt] [image edge] [google benchmark options]

#include "itkUNetSegmentationImageFilter.h"

#include "BenchmarkReporter.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>

namespace
{
using ImageType = itk::Image<float, 2>;
using FilterType = itk::UNetSegmentationImageFilter<ImageType>;
constexpr unsigned int tilesPerBatch = 4;
} // namespace

int
main(int argc, char * argv[])
{
  benchmark::Initialize(&argc, argv);
  const std::string        modelFile = argc > 1 ? argv[1] : UNET_BENCHMARK_MODEL;
  const itk::SizeValueType edge = argc > 2 ? std::stoul(argv[2]) : 2048;

  auto image = ImageType::New();
  image->SetRegions(ImageType::SizeType{ { edge, edge } });
  image->Allocate();
  std::mt19937                    generator(1);
  std::normal_distribution<float> noise;
  for (itk::SizeValueType i = 0; i < edge * edge; ++i)
  {
    image->GetBufferPointer()[i] = noise(generator);
  }

  auto filter = FilterType::New();
  filter->SetInput(image);
  filter->SetModelFileName(modelFile);
  filter->SetTileSize({ { 388, 388 } });
  filter->SetTilesPerBatch(tilesPerBatch);
  // One untimed run each, below, so that neither side's timing includes TorchScript's profiling and optimising
  // first calls or first-touch allocations.
  filter->Update();
  const auto & grid = filter->GetTileGrid();
  const auto   tiles = grid.GetNumberOfTiles()[0] * grid.GetNumberOfTiles()[1];
  const auto   inputEdge = static_cast<int64_t>(grid.GetInputTileSize()[0]);
  std::cout << "image " << edge << " x " << edge << ", " << tiles << " tiles of " << inputEdge << " -> "
            << grid.GetTileSize()[0] << ", " << tilesPerBatch << " per batch, "
            << itk::MultiThreaderBase::GetGlobalDefaultNumberOfThreads() << " threads, GLIBC_TUNABLES="
            << (std::getenv("GLIBC_TUNABLES") ? std::getenv("GLIBC_TUNABLES") : "(unset)") << std::endl;

  // The same network, frozen as the filter freezes it, with the same threads and batches, on random tiles: what the
  // filter cannot go below.
  torch::jit::Module module = torch::jit::load(modelFile);
  module.eval();
  torch::jit::Module frozen = torch::jit::freeze(module);
  module = torch::jit::optimize_for_inference(frozen);
  std::vector<torch::Tensor> batches;
  for (itk::SizeValueType done = 0; done < tiles; done += tilesPerBatch)
  {
    const auto batch = static_cast<int64_t>(std::min<itk::SizeValueType>(tilesPerBatch, tiles - done));
    batches.push_back(torch::randn({ batch, 1, inputEdge, inputEdge }));
  }
  const std::function<void()> forwardAll = [&module, &batches]() {
    at::set_num_threads(static_cast<int>(itk::MultiThreaderBase::GetGlobalDefaultNumberOfThreads()));
    c10::InferenceMode inferenceMode;
    for (const torch::Tensor & input : batches)
    {
      benchmark::DoNotOptimize(module.forward({ input }).toTensor());
    }
  };
  forwardAll();

  // The machine's speed drifts by more than the filter's own work (seen here: +-15 % between runs of the same
  // thing), so the two are timed in adjacent pairs, alternating which goes first, and compared pair by pair.
  using Clock = std::chrono::steady_clock;
  const auto secondsOf = [](const std::function<void()> & work) {
    const auto start = Clock::now();
    work();
    return std::chrono::duration<double>(Clock::now() - start).count();
  };
  const std::function<void()> runFilter = [&filter]() {
    filter->Modified();
    filter->Update();
  };
  std::vector<double> filterSeconds, bareSeconds, ratios;
  benchmark::RegisterBenchmark("filter end to end + bare forward, paired",
                               [&](benchmark::State & state) {
                                 for (auto _ : state)
                                 {
                                   const bool   filterFirst = ratios.size() % 2 == 0;
                                   const double first = secondsOf(filterFirst ? runFilter : forwardAll);
                                   const double second = secondsOf(filterFirst ? forwardAll : runFilter);
                                   filterSeconds.push_back(filterFirst ? first : second);
                                   bareSeconds.push_back(filterFirst ? second : first);
                                   ratios.push_back(bareSeconds.back() / filterSeconds.back());
                                   state.SetIterationTime(first + second);
                                 }
                               })
    ->Unit(benchmark::kSecond)
    ->UseManualTime()
    ->Iterations(8);

  benchmark::RunSpecifiedBenchmarks();
  if (!ratios.empty())
  {
    std::cout << "medians over " << ratios.size() << " pairs: filter end to end " << Median(filterSeconds)
              << " s, bare forward " << Median(bareSeconds) << " s\n"
              << "bare forward / filter end to end, median of the pairs = " << Median(ratios) << " (range "
              << *std::min_element(ratios.begin(), ratios.end()) << " to "
              << *std::max_element(ratios.begin(), ratios.end()) << "; target >= 0.95)" << std::endl;
  }
  return EXIT_SUCCESS;
}
