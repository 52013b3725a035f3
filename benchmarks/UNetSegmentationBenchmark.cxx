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
#include "itkImageBufferRange.h"

#include <ATen/Parallel.h>
#include <c10/core/InferenceMode.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace
{
using ImageType = itk::Image<float, 2>;
using FilterType = itk::UNetSegmentationImageFilter<ImageType>;
using Clock = std::chrono::steady_clock;
constexpr unsigned int tilesPerBatch = 4;

/** An `edge` x `edge` image of seeded standard normal noise. */
ImageType::Pointer
MakeNoiseImage(itk::SizeValueType edge)
{
  auto image = ImageType::New();
  image->SetRegions(ImageType::SizeType{ { edge, edge } });
  image->Allocate();
  std::mt19937                    generator(1);
  std::normal_distribution<float> noise;
  for (float & value : itk::ImageBufferRange<ImageType>(*image))
  {
    value = noise(generator);
  }
  return image;
}

double
SecondsOf(const std::function<void()> & work)
{
  const auto start = Clock::now();
  work();
  return std::chrono::duration<double>(Clock::now() - start).count();
}

/** The same network, frozen as the filter freezes it, with the same threads and batches, on random tiles: what the
 * filter cannot go below. */
class BareForward
{
public:
  BareForward(const std::string & modelFile, itk::SizeValueType tiles, int64_t inputEdge)
    : m_Threads(static_cast<int64_t>(itk::MultiThreaderBase::GetGlobalDefaultNumberOfThreads()))
  {
    torch::jit::Module module = torch::jit::load(modelFile);
    module.eval();
    torch::jit::Module frozen = torch::jit::freeze(module);
    m_Module = torch::jit::optimize_for_inference(frozen);
    for (itk::SizeValueType done = 0; done < tiles; done += tilesPerBatch)
    {
      const auto batch = static_cast<int64_t>(std::min<itk::SizeValueType>(tilesPerBatch, tiles - done));
      m_Batches.push_back(torch::randn({ batch, 1, inputEdge, inputEdge }));
    }
  }

  /** Each batch as one forward pass over all the threads. */
  void
  OnePassABatch()
  {
    at::set_num_threads(static_cast<int>(m_Threads));
    c10::InferenceMode inferenceMode;
    for (const torch::Tensor & input : m_Batches)
    {
      benchmark::DoNotOptimize(m_Module.forward({ input }).toTensor());
    }
  }

  /** As UNetModel::PredictProbabilities runs a batch on the CPU: up to `threads` passes of its tiles side by side. */
  void
  PassesSideBySide()
  {
    for (const torch::Tensor & input : m_Batches)
    {
      const int64_t            passes = std::min(m_Threads, input.size(0));
      std::vector<std::thread> helpers;
      int64_t                  first = 0;
      for (int64_t pass = 0; pass < passes; ++pass)
      {
        const int64_t tiles = input.size(0) / passes + (pass < input.size(0) % passes ? 1 : 0);
        const int     passThreads = static_cast<int>(m_Threads / passes + (pass < m_Threads % passes ? 1 : 0));
        const auto    run = [this, slice = input.narrow(0, first, tiles), passThreads]() {
          at::set_num_threads(passThreads);
          c10::InferenceMode inferenceMode;
          benchmark::DoNotOptimize(m_Module.forward({ slice }).toTensor());
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
  }

private:
  torch::jit::Module         m_Module;
  std::vector<torch::Tensor> m_Batches;
  int64_t                    m_Threads;
};

/** The median of `values` and their range: "median (range low to high)". */
std::string
MedianAndRange(const std::vector<double> & values)
{
  std::ostringstream text;
  text << Median(values) << " (range " << *std::min_element(values.begin(), values.end()) << " to "
       << *std::max_element(values.begin(), values.end()) << ")";
  return text.str();
}

/** Seconds and ratios of the rounds of filter, bare passes side by side and bare passes one a batch. */
struct Rounds
{
  std::vector<double> Filter, Bare, OnePass, BareOverFilter, OnePassOverBare;
};

/** Times the filter and the two bare forms in adjacent rounds, each round starting with the next of the three, so
 * each goes first as often: a shared machine's speed drifts by more than the filter's own work between runs of the
 * same thing, so they are compared round by round. */
void
RegisterRounds(const std::function<void()> & runFilter, BareForward & bare, Rounds & rounds)
{
  benchmark::RegisterBenchmark("filter end to end + bare forward + bare forward in one pass a batch, in rounds",
                               [&runFilter, &bare, &rounds](benchmark::State & state) {
                                 const std::function<void()> works[] = { runFilter,
                                                                         [&bare]() { bare.PassesSideBySide(); },
                                                                         [&bare]() { bare.OnePassABatch(); } };
                                 for (auto _ : state)
                                 {
                                   double             seconds[3] = {};
                                   const unsigned int start = rounds.Filter.size() % 3;
                                   for (unsigned int k = 0; k < 3; ++k)
                                   {
                                     seconds[(start + k) % 3] = SecondsOf(works[(start + k) % 3]);
                                   }
                                   rounds.Filter.push_back(seconds[0]);
                                   rounds.Bare.push_back(seconds[1]);
                                   rounds.OnePass.push_back(seconds[2]);
                                   rounds.BareOverFilter.push_back(seconds[1] / seconds[0]);
                                   rounds.OnePassOverBare.push_back(seconds[2] / seconds[1]);
                                   state.SetIterationTime(seconds[0] + seconds[1] + seconds[2]);
                                 }
                               })
    ->Unit(benchmark::kSecond)
    ->UseManualTime()
    ->Iterations(9);
}

/** Test-time flip averaging over both axes (4 network inputs a tile) against plain inference, in alternating pairs. */
void
RegisterFlipPairs(const std::function<void()> & runFilter, const std::function<void()> & runFlipped,
                  std::vector<double> & flipRatios)
{
  benchmark::RegisterBenchmark("flip averaging over both axes + plain filter, paired",
                               [&runFilter, &runFlipped, &flipRatios](benchmark::State & state) {
                                 for (auto _ : state)
                                 {
                                   const bool   flippedFirst = flipRatios.size() % 2 == 0;
                                   const double first = SecondsOf(flippedFirst ? runFlipped : runFilter);
                                   const double second = SecondsOf(flippedFirst ? runFilter : runFlipped);
                                   flipRatios.push_back(flippedFirst ? first / second : second / first);
                                   state.SetIterationTime(first + second);
                                 }
                               })
    ->Unit(benchmark::kSecond)
    ->UseManualTime()
    ->Iterations(4);
}

/** A filter over `image` on `model` with `tileSize`, `tiles` a batch and `flips`, updated once untimed, so that no
 * timing includes TorchScript's profiling and optimising first calls or first-touch allocations. */
FilterType::Pointer
MakeFilter(const ImageType * image, itk::UNetModel * model, const std::string & modelFile,
           const FilterType::SizeType & tileSize, unsigned int tiles, const FilterType::FlipAxesType & flips)
{
  auto filter = FilterType::New();
  filter->SetInput(image);
  if (model != nullptr)
  {
    filter->SetModel(model);
  }
  filter->SetModelFileName(modelFile);
  filter->SetTileSize(tileSize);
  filter->SetTilesPerBatch(tiles);
  filter->SetTestTimeFlipAxes(flips);
  filter->Update();
  return filter;
}
} // namespace

int
main(int argc, char * argv[])
{
  benchmark::Initialize(&argc, argv);
  const std::string        modelFile = argc > 1 ? argv[1] : UNET_BENCHMARK_MODEL;
  const itk::SizeValueType edge = argc > 2 ? std::stoul(argv[2]) : 2048;
  const auto               image = MakeNoiseImage(edge);
  const auto               noFlips = FilterType::FlipAxesType::Filled(false);
  const auto               filter = MakeFilter(image, nullptr, modelFile, { { 388, 388 } }, tilesPerBatch, noFlips);
  const auto &             grid = filter->GetTileGrid();
  const auto               tiles = grid.GetNumberOfTiles()[0] * grid.GetNumberOfTiles()[1];
  const auto               inputEdge = static_cast<int64_t>(grid.GetInputTileSize()[0]);
  std::cout << "image " << edge << " x " << edge << ", " << tiles << " tiles of " << inputEdge << " -> "
            << grid.GetTileSize()[0] << ", " << tilesPerBatch << " per batch, "
            << itk::MultiThreaderBase::GetGlobalDefaultNumberOfThreads() << " threads, GLIBC_TUNABLES="
            << (std::getenv("GLIBC_TUNABLES") ? std::getenv("GLIBC_TUNABLES") : "(unset)") << std::endl;
  BareForward bare(modelFile, tiles, inputEdge);
  bare.PassesSideBySide();
  bare.OnePassABatch();
  // 4 network inputs a batch with one tile, as the plain filter's 4 tiles.
  const auto flipped =
    MakeFilter(image, filter->GetModel(), modelFile, filter->GetTileSize(), 1, FilterType::FlipAxesType::Filled(true));
  const std::function<void()> runFilter = [&filter]() {
    filter->Modified();
    filter->Update();
  };
  const std::function<void()> runFlipped = [&flipped]() {
    flipped->Modified();
    flipped->Update();
  };
  Rounds              rounds;
  std::vector<double> flipRatios;
  RegisterRounds(runFilter, bare, rounds);
  RegisterFlipPairs(runFilter, runFlipped, flipRatios);
  benchmark::RunSpecifiedBenchmarks();
  if (!rounds.Filter.empty())
  {
    std::cout << "medians over " << rounds.Filter.size() << " rounds: filter end to end " << Median(rounds.Filter)
              << " s, bare forward " << Median(rounds.Bare) << " s, bare forward in one pass a batch "
              << Median(rounds.OnePass) << " s\n"
              << "bare forward / filter end to end, median of the rounds = " << MedianAndRange(rounds.BareOverFilter)
              << "; target >= 0.95\n"
              << "one pass a batch / passes side by side, median of the rounds = "
              << MedianAndRange(rounds.OnePassOverBare) << std::endl;
  }
  if (!flipRatios.empty())
  {
    std::cout << "flip averaging over both axes / plain, median of " << flipRatios.size()
              << " pairs = " << MedianAndRange(flipRatios) << "; 4 network inputs a tile" << std::endl;
  }
  return EXIT_SUCCESS;
}
