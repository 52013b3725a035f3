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

// UNetWeightMapImageFilter against the naive approach, one whole-image distance transform per cell (ITK's
// SignedMaurerDistanceMapImageFilter), on a 1024 x 1024 image of 300 touching cells. Prints the speed-up and the
// largest difference between the two weight maps, and the cost of Falk et al.'s settings (W0 50, Sigma 6, class
// weights 1 and 0.1 with a transition over ClassWeightSigma 10, Gap 1.5) relative to the paper's.
//
//   UNetWeightMapBenchmark [edge] [cells] [google benchmark options]

#include "itkBinaryThresholdImageFilter.h"
#include "itkSignedMaurerDistanceMapImageFilter.h"
#include "itkUNetWeightMapImageFilter.h"

#include "BenchmarkReporter.h"

#include <iostream>
#include <limits>
#include <random>
#include <set>

namespace
{
using LabelImage = itk::Image<unsigned short, 2>;
using WeightImage = itk::Image<float, 2>;

/** Voronoi cells of random seeds, cut to a disk around each seed: neighbours touch along their shared edges, and
 * background fills the gaps far from every seed. */
LabelImage::Pointer
MakeTouchingCells(itk::SizeValueType edge, unsigned int cells)
{
  auto labels = LabelImage::New();
  labels->SetRegions(LabelImage::SizeType{ { edge, edge } });
  labels->Allocate(true);
  std::mt19937                           generator(3);
  std::uniform_real_distribution<>       position(0.0, static_cast<double>(edge));
  std::vector<std::pair<double, double>> seeds(cells);
  for (auto & seed : seeds)
  {
    seed = { position(generator), position(generator) };
  }
  const double radius = 0.6 * edge / std::sqrt(static_cast<double>(cells));
  for (itk::SizeValueType y = 0; y < edge; ++y)
  {
    for (itk::SizeValueType x = 0; x < edge; ++x)
    {
      double       best = std::numeric_limits<double>::infinity();
      unsigned int label = 0;
      for (unsigned int k = 0; k < cells; ++k)
      {
        const double dx = x - seeds[k].first, dy = y - seeds[k].second;
        const double squared = dx * dx + dy * dy;
        if (squared < best)
        {
          best = squared;
          label = k + 1;
        }
      }
      labels->GetBufferPointer()[y * edge + x] = best <= radius * radius ? static_cast<unsigned short>(label) : 0;
    }
  }
  return labels;
}

/** The naive weight map: one whole-image Maurer distance transform per cell, two smallest distances kept. */
std::vector<float>
NaiveWeightMap(const LabelImage * labels, double w0, double sigma)
{
  const itk::SizeValueType voxels = labels->GetBufferedRegion().GetNumberOfPixels();
  const unsigned short *   label = labels->GetBufferPointer();
  std::set<unsigned short> cells(label, label + voxels);
  cells.erase(0);
  std::vector<double> nearest(voxels, std::numeric_limits<double>::infinity());
  std::vector<double> second(voxels, std::numeric_limits<double>::infinity());
  for (const unsigned short cell : cells)
  {
    auto mask = itk::BinaryThresholdImageFilter<LabelImage, itk::Image<unsigned char, 2>>::New();
    mask->SetInput(labels);
    mask->SetLowerThreshold(cell);
    mask->SetUpperThreshold(cell);
    auto distance = itk::SignedMaurerDistanceMapImageFilter<itk::Image<unsigned char, 2>, WeightImage>::New();
    distance->SetInput(mask->GetOutput());
    distance->SetUseImageSpacing(false);
    distance->SetSquaredDistance(false);
    distance->SetInsideIsPositive(false);
    distance->Update();
    const float * d = distance->GetOutput()->GetBufferPointer();
    for (itk::SizeValueType v = 0; v < voxels; ++v)
    {
      const double value = std::max(0.0f, d[v]);
      if (value < nearest[v])
      {
        second[v] = nearest[v];
        nearest[v] = value;
      }
      else if (value < second[v])
      {
        second[v] = value;
      }
    }
  }
  double cellVoxels = 0;
  for (itk::SizeValueType v = 0; v < voxels; ++v)
  {
    cellVoxels += label[v] != 0;
  }
  std::vector<float> weights(voxels);
  for (itk::SizeValueType v = 0; v < voxels; ++v)
  {
    if (label[v] != 0)
    {
      weights[v] = static_cast<float>(voxels / (2.0 * cellVoxels));
      continue;
    }
    double weight = voxels / (2.0 * (voxels - cellVoxels));
    if (std::isfinite(second[v]))
    {
      const double sum = nearest[v] + second[v];
      weight += w0 * std::exp(-sum * sum / (2.0 * sigma * sigma));
    }
    weights[v] = static_cast<float>(weight);
  }
  return weights;
}

using FilterType = itk::UNetWeightMapImageFilter<LabelImage, WeightImage>;

/** Registers 3 repetitions of 5 updates of `timed`. */
void
TimeUpdates(const char * name, FilterType * timed)
{
  benchmark::RegisterBenchmark(name,
                               [timed](benchmark::State & state) {
                                 for (auto _ : state)
                                 {
                                   timed->Modified();
                                   timed->Update();
                                 }
                               })
    ->Unit(benchmark::kMillisecond)
    ->Iterations(5)
    ->Repetitions(3);
}

/** The filter with Falk et al.'s (2019) settings: w0 50, sigma 6, fixed class weights, a transition and a gap. */
FilterType::Pointer
FalkSettings(const LabelImage * labels)
{
  auto falk = FilterType::New();
  falk->SetInput(labels);
  falk->SetW0(50.0);
  falk->SetSigma(6.0);
  falk->BalanceClassesOff();
  falk->SetBackgroundWeight(0.1);
  falk->SetClassWeightSigma(10.0);
  falk->SetGap(1.5);
  return falk;
}

/** The speed-up over one distance transform per cell, the largest difference between the two weight maps, and
 * Falk et al.'s settings against the paper's. */
void
Report(const RecordingReporter & reporter, const FilterType * filter, const std::vector<float> & naive)
{
  const double ours = reporter.MedianSeconds("UNetWeightMapImageFilter");
  const double naiveSeconds = reporter.MedianSeconds("one Maurer transform per cell");
  if (ours > 0.0 && naiveSeconds > 0.0 && !naive.empty())
  {
    double largest = 0.0;
    for (itk::SizeValueType v = 0; v < naive.size(); ++v)
    {
      largest = std::max(largest, std::abs(static_cast<double>(naive[v]) - filter->GetOutput()->GetBufferPointer()[v]));
    }
    std::cout << "speed-up over one distance transform per cell (medians of 3): " << naiveSeconds / ours
              << "x (target >= 100x)\n"
              << "largest difference between the weight maps: " << largest << " (truncation tolerance "
              << filter->GetTolerance() << ", plus float rounding)" << std::endl;
  }
  const double falkSeconds = reporter.MedianSeconds("UNetWeightMapImageFilter, Falk et al.'s settings");
  if (ours > 0.0 && falkSeconds > 0.0)
  {
    std::cout << "Falk et al.'s settings / the paper's (medians of 3): " << falkSeconds / ours << std::endl;
  }
}
} // namespace

int
main(int argc, char * argv[])
{
  std::vector<char *> arguments = ArgumentsWithInterleaving(argc, argv);
  argc = static_cast<int>(arguments.size()) - 1;
  argv = arguments.data();
  benchmark::Initialize(&argc, argv);
  const itk::SizeValueType edge = argc > 1 ? std::stoul(argv[1]) : 1024;
  const unsigned int       cells = argc > 2 ? std::stoul(argv[2]) : 300;
  const auto               labels = MakeTouchingCells(edge, cells);
  std::cout << edge << " x " << edge << " image, " << cells << " touching cells, "
            << itk::MultiThreaderBase::GetGlobalDefaultNumberOfThreads() << " threads" << std::endl;

  auto filter = FilterType::New();
  filter->SetInput(labels);
  TimeUpdates("UNetWeightMapImageFilter", filter);
  const auto falk = FalkSettings(labels);
  TimeUpdates("UNetWeightMapImageFilter, Falk et al.'s settings", falk);
  std::vector<float> naive;
  benchmark::RegisterBenchmark("one Maurer transform per cell",
                               [&](benchmark::State & state) {
                                 for (auto _ : state)
                                 {
                                   naive = NaiveWeightMap(labels, filter->GetW0(), filter->GetSigma());
                                 }
                               })
    ->Unit(benchmark::kMillisecond)
    ->Iterations(1)
    ->Repetitions(3);

  RecordingReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  Report(reporter, filter, naive);
  return EXIT_SUCCESS;
}
