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
#include "itkUNetNearestCells.h"
#include "itkUNetWeightMapImageFilter.h"

#include "UNetCellTestHelpers.h"
#include "gtest/gtest.h"

namespace
{
using Labels2D = itk::Image<unsigned short, 2>;
using Labels3D = itk::Image<unsigned short, 3>;

template <typename TLabelImage>
itk::unet_detail::NearestCells<TLabelImage>
Compute(const TLabelImage * labels, double maximumDistance, bool useSpacing,
        typename TLabelImage::PixelType ignoreLabel = 0, bool nearestEverywhere = false,
        itk::ProcessObject * filter = nullptr)
{
  itk::unet_detail::NearestCells<TLabelImage> nearest;
  nearest.SetMaximumDistance(maximumDistance);
  nearest.SetUseImageSpacing(useSpacing);
  nearest.SetIgnoreLabel(ignoreLabel);
  nearest.SetNearestEverywhere(nearestEverywhere);
  nearest.Compute(labels, filter);
  return nearest;
}

/** Both distances against the brute force: exactly without spacing (integer squared distances), to float rounding
 * with it; infinity beyond `maximum` (the nearest everywhere with NearestEverywhere). */
template <typename TLabelImage>
void
ExpectDistancesMatchBruteForce(const TLabelImage * labels, double maximum, bool useSpacing,
                               typename TLabelImage::PixelType ignoreLabel, bool nearestEverywhere)
{
  const UNetTest::BruteForceDistances<TLabelImage> reference(labels, useSpacing, ignoreLabel);
  const auto nearest = Compute(labels, maximum, useSpacing, ignoreLabel, nearestEverywhere);
  EXPECT_EQ(nearest.GetNumberOfCells(), reference.cells);
  const auto expect = [useSpacing](double actualSquared, double expected, size_t v) {
    const double actual = std::sqrt(actualSquared);
    if (useSpacing && std::isfinite(expected))
    {
      ASSERT_NEAR(actual, expected, 1e-6 * expected) << "voxel " << v;
    }
    else
    {
      ASSERT_EQ(actual, expected) << "voxel " << v;
    }
  };
  for (size_t v = 0; v < reference.label.size(); ++v)
  {
    const double expectedNearest =
      nearestEverywhere || reference.nearest[v] <= maximum ? reference.nearest[v] : INFINITY;
    const double expectedSecond = reference.second[v] <= maximum ? reference.second[v] : INFINITY;
    expect(nearest.GetNearestSquaredDistances()[v], expectedNearest, v);
    expect(nearest.GetSecondNearestSquaredDistances()[v], expectedSecond, v);
  }
}
} // namespace

TEST(UNetNearestCells, DistancesMatchBruteForceUpToTheTruncation)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 45, 40 } }, 30, 10, 5.0);
  for (const double maximum : { 0.0, 1.0, 4.5, 1000.0 })
  {
    ExpectDistancesMatchBruteForce(labels.GetPointer(), maximum, false, 0, false);
  }
}

TEST(UNetNearestCells, DistancesMatchBruteForce3DWithSpacing)
{
  auto labels = UNetTest::MakeCells<Labels3D>({ { 15, 12, 9 } }, 12, 3, 4.0);
  labels->SetSpacing(UNetTest::Spacing3D(0.4, 0.7, 2.5));
  for (const double maximum : { 1.0, 3.3, 1000.0 })
  {
    ExpectDistancesMatchBruteForce(labels.GetPointer(), maximum, true, 0, false);
  }
}

TEST(UNetNearestCells, IgnoredVoxelsAreNoCell)
{
  auto labels = UNetTest::MakeCells<Labels2D>({ { 45, 40 } }, 30, 23, 5.0);
  UNetTest::PaintBox(labels.GetPointer(), Labels2D::RegionType({ { 8, 5 } }, { { 20, 12 } }), 999);
  for (const double maximum : { 2.0, 6.5, 1000.0 })
  {
    ExpectDistancesMatchBruteForce(labels.GetPointer(), maximum, false, 999, false);
  }
  const auto nearest = Compute(labels.GetPointer(), 3.0, false, 999);
  EXPECT_EQ(nearest.GetNumberOfIgnoredVoxels(), 240u);
  size_t cellVoxels = 0;
  for (size_t v = 0; v < 45 * 40; ++v)
  {
    const auto label = labels->GetBufferPointer()[v];
    cellVoxels += label != 0 && label != 999;
  }
  EXPECT_EQ(nearest.GetNumberOfCellVoxels(), cellVoxels);
}

TEST(UNetNearestCells, NearestEverywhereIsExact)
{
  // Few small cells: most voxels lie beyond the maximum distance, where only the whole-image transform reaches.
  const auto sparse = UNetTest::MakeCells<Labels2D>({ { 70, 50 } }, 4, 24, 3.0);
  ExpectDistancesMatchBruteForce(sparse.GetPointer(), 3.0, false, 0, true);
  auto labels = UNetTest::MakeCells<Labels3D>({ { 16, 13, 12 } }, 5, 25, 3.0);
  UNetTest::PaintBox(labels.GetPointer(), Labels3D::RegionType({ { -2, -2, -2 } }, { { 8, 13, 4 } }), 3);
  labels->SetSpacing(UNetTest::Spacing3D(0.5, 1.5, 2.0));
  ExpectDistancesMatchBruteForce(labels.GetPointer(), 2.0, true, 3, true);
}

TEST(UNetNearestCells, SameDistancesForAnyNumberOfWorkUnits)
{
  // Each piece of the split image transforms the cells crossing it only as far as it needs, with the same
  // arithmetic: the distances agree bit for bit, with spacing too.
  auto labels = UNetTest::MakeCells<Labels3D>({ { 21, 18, 25 } }, 30, 26, 5.0);
  labels->SetSpacing(UNetTest::Spacing3D(0.45, 0.7, 1.3));
  auto filter = itk::UNetWeightMapImageFilter<Labels3D>::New(); // only its multithreader and work units
  filter->SetNumberOfWorkUnits(1);
  const auto oneUnit = Compute(labels.GetPointer(), 4.0, true, 0, true, filter);
  for (const itk::ThreadIdType workUnits : { 2, 3, 7, 25, 64 })
  {
    filter->SetNumberOfWorkUnits(workUnits);
    const auto split = Compute(labels.GetPointer(), 4.0, true, 0, true, filter);
    EXPECT_EQ(split.GetNearestSquaredDistances(), oneUnit.GetNearestSquaredDistances()) << workUnits;
    EXPECT_EQ(split.GetSecondNearestSquaredDistances(), oneUnit.GetSecondNearestSquaredDistances()) << workUnits;
  }
}

TEST(UNetNearestCells, NegativeLabelsThrowUnlessIgnored)
{
  using SignedLabels = itk::Image<short, 2>;
  auto labels = UNetTest::MakeCells<SignedLabels>({ { 10, 10 } }, 3, 9, 3.0);
  labels->SetPixel({ { 4, 7 } }, -2);
  EXPECT_THROW(Compute(labels.GetPointer(), 1.0, false), itk::ExceptionObject);
  EXPECT_NO_THROW(Compute(labels.GetPointer(), 1.0, false, -2));
}
