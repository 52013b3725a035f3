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
// Prints bare / filter: the share of the filter's time that is the network's (1 means no overhead). The bare passes
// run as the filter's model runs a batch on the CPU (split into passes side by side, each on its share of the
// threads); the same bare passes with each batch as one pass over all the threads are timed too, for what the split
// buys.
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
#include <thread>

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
  const auto                  threads = static_cast<int64_t>(itk::MultiThreaderBase::GetGlobalDefaultNumberOfThreads());
  const std::function<void()> forwardAllOnePass = [&module, &batches, threads]() {
    at::set_num_threads(static_cast<int>(threads));
    c10::InferenceMode inferenceMode;
    for (const torch::Tensor & input : batches)
    {
      benchmark::DoNotOptimize(module.forward({ input }).toTensor());
    }
  };
  // As UNetModel::PredictProbabilities runs a batch on the CPU: up to `threads` passes of its tiles side by side.
  const std::function<void()> forwardAll = [&module, &batches, threads]() {
    for (const torch::Tensor & input : batches)
    {
      const int64_t            passes = std::min(threads, input.size(0));
      std::vector<std::thread> helpers;
      int64_t                  first = 0;
      for (int64_t pass = 0; pass < passes; ++pass)
      {
        const int64_t tiles = input.size(0) / passes + (pass < input.size(0) % passes ? 1 : 0);
        const int     passThreads = static_cast<int>(threads / passes + (pass < threads % passes ? 1 : 0));
        const auto    run = [&module, slice = input.narrow(0, first, tiles), passThreads]() {
          at::set_num_threads(passThreads);
          c10::InferenceMode inferenceMode;
          benchmark::DoNotOptimize(module.forward({ slice }).toTensor());
        };
        if (pass + 1 < passes)
        {
          helpers.emplace_back(run);
        }
        else
        {
          run();
        }
        first += tiles;
      }
      for (std::thread & helper : helpers)
      {
        helper.join();
      }
    }
  };
  forwardAll();
  forwardAllOnePass();

  // A shared machine's speed drifts by more than the filter's own work between runs of the same thing, so the two
  // are timed in adjacent rounds, alternating which goes first, and compared round by round.
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
  std::vector<double> filterSeconds, bareSeconds, onePassSeconds, ratios, splitRatios;
  benchmark::RegisterBenchmark(
    "filter end to end + bare forward + bare forward in one pass a batch, in rounds",
    [&](benchmark::State & state) {
      const std::function<void()> * const works[] = { &runFilter, &forwardAll, &forwardAllOnePass };
      for (auto _ : state)
      {
        // Each round starts with the next of the three, so each goes first as often.
        double             seconds[3] = {};
        const unsigned int start = ratios.size() % 3;
        for (unsigned int k = 0; k < 3; ++k)
        {
          seconds[(start + k) % 3] = secondsOf(*works[(start + k) % 3]);
        }
        filterSeconds.push_back(seconds[0]);
        bareSeconds.push_back(seconds[1]);
        onePassSeconds.push_back(seconds[2]);
        ratios.push_back(seconds[1] / seconds[0]);
        splitRatios.push_back(seconds[2] / seconds[1]);
        state.SetIterationTime(seconds[0] + seconds[1] + seconds[2]);
      }
    })
    ->Unit(benchmark::kSecond)
    ->UseManualTime()
    ->Iterations(9);

  // Test-time flip averaging over both axes (4 network inputs a tile) against plain inference, paired the same way.
  auto flipped = FilterType::New();
  flipped->SetInput(image);
  flipped->SetModel(filter->GetModel());
  flipped->SetTileSize(filter->GetTileSize());
  flipped->SetTilesPerBatch(1); // 4 network inputs a batch, as the plain filter's 4 tiles
  FilterType::FlipAxesType bothAxes;
  bothAxes.Fill(true);
  flipped->SetTestTimeFlipAxes(bothAxes);
  flipped->Update();
  const std::function<void()> runFlipped = [&flipped]() {
    flipped->Modified();
    flipped->Update();
  };
  std::vector<double> flipRatios;
  benchmark::RegisterBenchmark("flip averaging over both axes + plain filter, paired",
                               [&](benchmark::State & state) {
                                 for (auto _ : state)
                                 {
                                   const bool   flippedFirst = flipRatios.size() % 2 == 0;
                                   const double first = secondsOf(flippedFirst ? runFlipped : runFilter);
                                   const double second = secondsOf(flippedFirst ? runFilter : runFlipped);
                                   flipRatios.push_back(flippedFirst ? first / second : second / first);
                                   state.SetIterationTime(first + second);
                                 }
                               })
    ->Unit(benchmark::kSecond)
    ->UseManualTime()
    ->Iterations(4);

  benchmark::RunSpecifiedBenchmarks();
  if (!ratios.empty())
  {
    std::cout << "medians over " << ratios.size() << " rounds: filter end to end " << Median(filterSeconds)
              << " s, bare forward " << Median(bareSeconds) << " s, bare forward in one pass a batch "
              << Median(onePassSeconds) << " s\n"
              << "bare forward / filter end to end, median of the rounds = " << Median(ratios) << " (range "
              << *std::min_element(ratios.begin(), ratios.end()) << " to "
              << *std::max_element(ratios.begin(), ratios.end()) << "; target >= 0.95)\n"
              << "one pass a batch / passes side by side, median of the rounds = " << Median(splitRatios) << " (range "
              << *std::min_element(splitRatios.begin(), splitRatios.end()) << " to "
              << *std::max_element(splitRatios.begin(), splitRatios.end()) << ")" << std::endl;
  }
  if (!flipRatios.empty())
  {
    std::cout << "flip averaging over both axes / plain, median of " << flipRatios.size()
              << " pairs = " << Median(flipRatios) << " (range "
              << *std::min_element(flipRatios.begin(), flipRatios.end()) << " to "
              << *std::max_element(flipRatios.begin(), flipRatios.end()) << "; 4 network inputs a tile)" << std::endl;
  }
  return EXIT_SUCCESS;
}
