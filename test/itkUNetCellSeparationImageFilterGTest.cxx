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

#include "itkUNetCellSeparationImageFilter.h"

#include "itkIndexRange.h"
#include "gtest/gtest.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <vector>

namespace
{
template <unsigned int VDimension>
using Probabilities = itk::VectorImage<float, VDimension>;
template <unsigned int VDimension>
using Labels = itk::Image<unsigned long, VDimension>;
template <unsigned int VDimension>
using Separation = itk::UNetCellSeparationImageFilter<Probabilities<VDimension>, Labels<VDimension>>;

/** A two-class probability image (background, cell) with p(cell) = cell(index). */
template <unsigned int VDimension>
typename Probabilities<VDimension>::Pointer
MakeProbabilities(const itk::Size<VDimension> & size, const std::function<float(const itk::Index<VDimension> &)> & cell)
{
  auto image = Probabilities<VDimension>::New();
  image->SetRegions(size);
  image->SetNumberOfComponentsPerPixel(2);
  image->Allocate();
  itk::VariableLengthVector<float> pixel(2);
  for (const auto & index : itk::ImageRegionIndexRange<VDimension>(image->GetLargestPossibleRegion()))
  {
    pixel[1] = cell(index);
    pixel[0] = 1.0f - pixel[1];
    image->SetPixel(index, pixel);
  }
  return image;
}

/** Two cells side by side (cores at x 2..5 and 10..13, p = 0.95) with a membrane at x = 7..8 between them that the
 * network is unsure of: p = 0.35 along it, except for a gap at y = 5 where p = 0.6. The network's own decision
 * (p > 0.5) makes one cell of the two, through the gap; p < 0.2 is the background around them. */
Probabilities<2>::Pointer
TwoCellsWithAGappedMembrane()
{
  return MakeProbabilities<2>({ { 16, 11 } }, [](const itk::Index<2> & i) {
    if (i[1] < 1 || i[1] > 9 || i[0] < 1 || i[0] > 14)
    {
      return 0.05f;
    }
    if (i[0] == 7 || i[0] == 8)
    {
      return i[1] == 5 ? 0.6f : 0.35f;
    }
    return (i[0] == 6 || i[0] == 9) ? 0.8f : 0.95f;
  });
}

/** Face-connected components of the non-zero voxels of a label image, as a label per voxel (0 elsewhere). */
std::map<itk::IndexValueType, unsigned long>
FaceConnectedComponentCount(const Labels<2> * labels, unsigned long * count)
{
  std::map<itk::IndexValueType, unsigned long> component;
  const auto                                   region = labels->GetLargestPossibleRegion();
  const auto                                   key = [&](const itk::Index<2> & i) {
    return i[1] * static_cast<itk::IndexValueType>(region.GetSize(0)) + i[0];
  };
  *count = 0;
  for (const auto & start : itk::ImageRegionIndexRange<2>(region))
  {
    if (labels->GetPixel(start) == 0 || component.count(key(start)))
    {
      continue;
    }
    ++*count;
    std::vector<itk::Index<2>> stack{ start };
    component[key(start)] = *count;
    while (!stack.empty())
    {
      const auto voxel = stack.back();
      stack.pop_back();
      for (unsigned int d = 0; d < 2; ++d)
      {
        for (const int step : { -1, 1 })
        {
          auto next = voxel;
          next[d] += step;
          if (region.IsInside(next) && labels->GetPixel(next) != 0 && !component.count(key(next)))
          {
            component[key(next)] = *count;
            stack.push_back(next);
          }
        }
      }
    }
  }
  return component;
}
} // namespace

TEST(UNetCellSeparationImageFilter, SeparatesCellsTheDecisionMerges)
{
  const auto probabilities = TwoCellsWithAGappedMembrane();
  auto       separation = Separation<2>::New();
  separation->SetInput(probabilities);
  separation->SetSeedThreshold(0.7);
  separation->SetCellThreshold(0.2);
  separation->Update();
  const Labels<2> * cells = separation->GetOutput();

  EXPECT_EQ(separation->GetNumberOfCells(), 2u);
  const auto left = cells->GetPixel({ { 3, 5 } });
  const auto right = cells->GetPixel({ { 12, 5 } });
  EXPECT_NE(left, 0u);
  EXPECT_NE(right, 0u);
  EXPECT_NE(left, right);
  unsigned long components = 0;
  FaceConnectedComponentCount(cells, &components);
  EXPECT_EQ(components, 2u); // the line between them separates them, gap included

  for (const auto & index : itk::ImageRegionIndexRange<2>(cells->GetLargestPossibleRegion()))
  {
    const float p = probabilities->GetPixel(index)[1];
    const auto  label = cells->GetPixel(index);
    if (p < 0.2f)
    {
      EXPECT_EQ(label, 0u) << index; // never grown into voxels below CellThreshold
    }
    else if (index[0] < 7)
    {
      EXPECT_EQ(label, left) << index; // each cell takes its whole side up to the membrane
    }
    else if (index[0] > 8)
    {
      EXPECT_EQ(label, right) << index;
    }
  }
  // The membrane the network drew two voxels wide is one voxel wide in the output (the watershed line), and the
  // cells take the rest of it.
  for (itk::IndexValueType y = 1; y <= 9; ++y)
  {
    const auto a = cells->GetPixel({ { 7, y } });
    const auto b = cells->GetPixel({ { 8, y } });
    EXPECT_TRUE((a == 0) != (b == 0)) << "row " << y << ": " << a << ", " << b;
  }

  // At the network's own decision, SeedThreshold = CellThreshold = 0.5, the gap joins them.
  separation->SetSeedThreshold(0.5);
  separation->SetCellThreshold(0.5);
  separation->Update();
  EXPECT_EQ(separation->GetNumberOfCells(), 1u);
}

namespace
{
/** Twelve Gaussian bumps of random place, height and width on 64 x 48 pixels, clipped to 1: cell probabilities. */
auto
SmoothRandomField()
{
  std::mt19937                          random(2012);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float>                    bumps;
  for (int k = 0; k < 12 * 4; ++k)
  {
    bumps.push_back(uniform(random));
  }
  return MakeProbabilities<2>({ { 64, 48 } }, [bumps](const itk::Index<2> & i) {
    float sum = 0.0f;
    for (int k = 0; k < 12; ++k)
    {
      const float dx = i[0] - 64.0f * bumps[4 * k], dy = i[1] - 48.0f * bumps[4 * k + 1];
      sum +=
        (0.5f + 0.5f * bumps[4 * k + 2]) *
        std::exp(-(dx * dx + dy * dy) / (2.0f * (2.5f + 2.5f * bumps[4 * k + 3]) * (2.5f + 2.5f * bumps[4 * k + 3])));
    }
    return std::min(sum, 1.0f);
  });
}

/** Expects no face neighbour of a cell voxel at `index` to be another cell; returns whether any face neighbour is a
 * cell. */
bool
ExpectNoOtherCellAcrossAFace(const Labels<2> * cells, const itk::Index<2> & index)
{
  const auto region = cells->GetLargestPossibleRegion();
  const auto label = cells->GetPixel(index);
  bool       touchesACell = false;
  for (unsigned int d = 0; d < 2; ++d)
  {
    for (const int step : { -1, 1 })
    {
      auto next = index;
      next[d] += step;
      if (!region.IsInside(next))
      {
        continue;
      }
      const auto neighbour = cells->GetPixel(next);
      touchesACell = touchesACell || neighbour != 0;
      if (label != 0 && neighbour != 0)
      {
        EXPECT_EQ(label, neighbour) << "two cells touch at " << index;
      }
    }
  }
  return touchesACell;
}
} // namespace

TEST(UNetCellSeparationImageFilter, PropertiesOnARandomField)
{
  // A smooth random field: each seed lies in one cell of its own, no two cells touch through a face, and only voxels
  // at or above CellThreshold are cells; the watershed leaves no such voxel unassigned except on its lines, each of
  // which touches a cell.
  const auto probabilities = SmoothRandomField();
  auto       separation = Separation<2>::New();
  separation->SetInput(probabilities);
  separation->SetSeedThreshold(0.6);
  separation->SetCellThreshold(0.25);
  separation->Update();
  const Labels<2> * cells = separation->GetOutput();
  const auto        region = cells->GetLargestPossibleRegion();

  // Seeds: the face-connected components of p >= 0.6, found here independently.
  auto seedMask = Labels<2>::New();
  seedMask->SetRegions(region);
  seedMask->Allocate(true);
  for (const auto & index : itk::ImageRegionIndexRange<2>(region))
  {
    seedMask->SetPixel(index, probabilities->GetPixel(index)[1] >= 0.6f ? 1 : 0);
  }
  unsigned long seedCount = 0;
  const auto    seedOf = FaceConnectedComponentCount(seedMask, &seedCount);
  ASSERT_GE(seedCount, 3u);
  EXPECT_EQ(separation->GetNumberOfCells(), seedCount);

  std::map<unsigned long, unsigned long> labelOfSeed;
  std::set<unsigned long>                labels;
  for (const auto & index : itk::ImageRegionIndexRange<2>(region))
  {
    const float p = probabilities->GetPixel(index)[1];
    const auto  label = cells->GetPixel(index);
    if (label != 0)
    {
      labels.insert(label);
      EXPECT_GE(p, 0.25f) << index;
    }
    const auto seed = seedOf.find(index[1] * 64 + index[0]);
    if (seed != seedOf.end())
    {
      ASSERT_NE(label, 0u) << index;
      const auto known = labelOfSeed.emplace(seed->second, label).first;
      EXPECT_EQ(known->second, label) << "seed " << seed->second << " split at " << index;
    }
    const bool touchesACell = ExpectNoOtherCellAcrossAFace(cells, index);
    if (label == 0 && p >= 0.25f)
    {
      EXPECT_TRUE(touchesACell) << "a cell voxel left out at " << index;
    }
  }
  EXPECT_EQ(labelOfSeed.size(), seedCount);
  EXPECT_EQ(labels.size(), seedCount); // one cell per seed, each seed its own
}

TEST(UNetCellSeparationImageFilter, ThreeDimensionsAndGeometry)
{
  // Two cubes of cell, joined by a bridge of p = 0.4: two cells with SeedThreshold 0.7, the input's geometry kept.
  auto         probabilities = MakeProbabilities<3>({ { 12, 6, 6 } }, [](const itk::Index<3> & i) {
    const bool inside = i[1] >= 1 && i[1] <= 4 && i[2] >= 1 && i[2] <= 4;
    if (!inside || i[0] < 1 || i[0] > 10)
    {
      return 0.0f;
    }
    return (i[0] == 5 || i[0] == 6) ? 0.4f : 0.9f;
  });
  const double spacing[3] = { 0.5, 0.25, 2.0 };
  const double origin[3] = { -3.0, 4.0, 10.0 };
  probabilities->SetSpacing(spacing);
  probabilities->SetOrigin(origin);
  auto direction = probabilities->GetDirection();
  direction(0, 0) = 0.0;
  direction(0, 1) = 1.0;
  direction(1, 0) = 1.0;
  direction(1, 1) = 0.0;
  probabilities->SetDirection(direction);

  auto separation = Separation<3>::New();
  separation->SetInput(probabilities);
  separation->SetSeedThreshold(0.7);
  separation->SetCellThreshold(0.3);
  separation->Update();
  const auto * cells = separation->GetOutput();
  EXPECT_EQ(separation->GetNumberOfCells(), 2u);
  EXPECT_NE(cells->GetPixel({ { 2, 2, 2 } }), cells->GetPixel({ { 9, 2, 2 } }));
  EXPECT_EQ(cells->GetPixel({ { 0, 2, 2 } }), 0u);
  EXPECT_EQ(cells->GetLargestPossibleRegion(), probabilities->GetLargestPossibleRegion());
  EXPECT_EQ(cells->GetSpacing(), probabilities->GetSpacing());
  EXPECT_EQ(cells->GetOrigin(), probabilities->GetOrigin());
  EXPECT_EQ(cells->GetDirection(), probabilities->GetDirection());
}

TEST(UNetCellSeparationImageFilter, CellClassSelectsTheComponent)
{
  // With the classes swapped, CellClass 0 gives the same cells.
  const auto probabilities = TwoCellsWithAGappedMembrane();
  auto       swapped = Probabilities<2>::New();
  swapped->SetRegions(probabilities->GetLargestPossibleRegion());
  swapped->SetNumberOfComponentsPerPixel(2);
  swapped->Allocate();
  for (const auto & index : itk::ImageRegionIndexRange<2>(probabilities->GetLargestPossibleRegion()))
  {
    // (A VectorImage's GetPixel refers to the image's own buffer: swapped here, it would swap the original.)
    const auto                       original = probabilities->GetPixel(index);
    itk::VariableLengthVector<float> pixel(2);
    pixel[0] = original[1];
    pixel[1] = original[0];
    swapped->SetPixel(index, pixel);
  }
  auto expected = Separation<2>::New();
  expected->SetInput(probabilities);
  expected->SetSeedThreshold(0.7);
  expected->Update();
  auto separation = Separation<2>::New();
  separation->SetInput(swapped);
  separation->SetSeedThreshold(0.7);
  separation->SetCellClass(0);
  separation->Update();
  for (const auto & index : itk::ImageRegionIndexRange<2>(probabilities->GetLargestPossibleRegion()))
  {
    EXPECT_EQ(separation->GetOutput()->GetPixel(index), expected->GetOutput()->GetPixel(index)) << index;
  }
}

TEST(UNetCellSeparationImageFilter, BadSettingsRaise)
{
  const auto probabilities = TwoCellsWithAGappedMembrane();
  const auto message = [&](const std::function<void(Separation<2> *)> & configure) -> std::string {
    auto separation = Separation<2>::New();
    separation->SetInput(probabilities);
    configure(separation);
    try
    {
      separation->Update();
    }
    catch (const itk::ExceptionObject & error)
    {
      return error.GetDescription();
    }
    return "no exception";
  };
  EXPECT_NE(message([](Separation<2> * f) {
              f->SetCellThreshold(0.8);
            }).find("CellThreshold must be in (0, SeedThreshold = 0.5]"),
            std::string::npos);
  EXPECT_NE(message([](Separation<2> * f) { f->SetCellThreshold(0.0); }).find("CellThreshold"), std::string::npos);
  EXPECT_NE(message([](Separation<2> * f) { f->SetSeedThreshold(1.5); }).find("SeedThreshold must be a probability"),
            std::string::npos);
  EXPECT_NE(message([](Separation<2> * f) { f->SetSeedThreshold(std::nan("")); }).find("SeedThreshold"),
            std::string::npos);
  EXPECT_NE(message([](Separation<2> * f) {
              f->SetCellClass(2);
            }).find("CellClass 2 is not a class of the input, which has 2 probabilities per voxel."),
            std::string::npos);
  auto separation = Separation<2>::New();
  EXPECT_THROW(separation->Update(), itk::ExceptionObject); // no input
}

TEST(UNetCellSeparationImageFilter, ProgressAndAbort)
{
  auto separation = Separation<2>::New();
  separation->SetInput(TwoCellsWithAGappedMembrane());
  std::vector<float> progress;
  separation->AddObserver(itk::ProgressEvent(),
                          [&](const itk::EventObject &) { progress.push_back(separation->GetProgress()); });
  separation->Update();
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), 1.0f);
  EXPECT_GT(std::count_if(progress.begin(), progress.end(), [](float p) { return p > 0.0f && p < 1.0f; }), 3);

  auto aborting = Separation<2>::New();
  aborting->SetInput(TwoCellsWithAGappedMembrane());
  aborting->AddObserver(itk::ProgressEvent(), [&aborting](const itk::EventObject &) {
    if (aborting->GetProgress() > 0.0f)
    {
      aborting->AbortGenerateDataOn();
    }
  });
  EXPECT_THROW(aborting->Update(), itk::ProcessAborted);
}

TEST(UNetCellSeparationImageFilter, PrintSelf)
{
  auto               separation = Separation<2>::New();
  std::ostringstream os;
  separation->Print(os);
  EXPECT_NE(os.str().find("CellClass: 1"), std::string::npos);
  EXPECT_NE(os.str().find("SeedThreshold: 0.5"), std::string::npos);
  EXPECT_NE(os.str().find("CellThreshold: 0.2"), std::string::npos);
  EXPECT_NE(os.str().find("FullyConnected: Off"), std::string::npos);
  EXPECT_NE(os.str().find("NumberOfCells: 0"), std::string::npos);
}
