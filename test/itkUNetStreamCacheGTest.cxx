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

// The stream cache alone: what one update keeps is taken by the next for the part of its region that was completed,
// copied out and back in voxel for voxel; nothing is taken once the pipeline or the tile grid changed, or the outputs
// were reallocated; taking empties the cache.

#include "itkUNetStreamCache.h"

#include "itkImage.h"
#include "itkImageRegionIterator.h"
#include "itkVectorImage.h"

#include "gtest/gtest.h"

namespace
{
using LabelImage = itk::Image<unsigned char, 2>;
using ProbabilityImage = itk::VectorImage<float, 2>;
using Cache = itk::unet_detail::StreamCache<LabelImage, ProbabilityImage>;
using Region2 = itk::ImageRegion<2>;
using Size2 = itk::Size<2>;

Cache::GridType
Grid()
{
  return Cache::GridType(Region2(Size2{ { 20, 20 } }), Size2{ { 8, 8 } }, 2, Size2{ { 1, 1 } }, Size2{ { 3, 3 } });
}

/** Outputs buffered over `region`, each voxel's values made from its index. */
std::pair<LabelImage::Pointer, ProbabilityImage::Pointer>
Outputs(const Region2 & region)
{
  auto labels = LabelImage::New();
  labels->SetRegions(region);
  labels->Allocate();
  auto probabilities = ProbabilityImage::New();
  probabilities->SetRegions(region);
  probabilities->SetNumberOfComponentsPerPixel(2);
  probabilities->Allocate();
  for (const auto & index : itk::ImageRegionIndexRange<2>(region))
  {
    labels->SetPixel(index, static_cast<unsigned char>(index[0] + 20 * index[1]));
    itk::VariableLengthVector<float> values(2);
    values[0] = static_cast<float>(index[0]);
    values[1] = static_cast<float>(index[1]);
    probabilities->SetPixel(index, values);
  }
  return { labels, probabilities };
}
} // namespace

TEST(UNetStreamCache, TheNextPieceTakesWhatItsRegionShares)
{
  const Region2 first({ { 0, 0 } }, Size2{ { 20, 12 } });
  const auto [labels, probabilities] = Outputs(first);
  Cache              cache;
  Cache::TileMapType tiles;
  tiles[{ { 1, 1 } }] = { 0.5f };
  cache.Keep(Grid(), first, tiles);
  EXPECT_TRUE(cache.IsValidFor(Grid(), labels, probabilities));
  EXPECT_TRUE(cache.IsTileKept({ { 1, 1 } }));
  EXPECT_FALSE(cache.IsTileKept({ { 0, 1 } }));

  const Region2 second({ { 0, 6 } }, Size2{ { 20, 14 } });
  EXPECT_EQ(cache.GetReusableRegion(second), Region2({ { 0, 6 } }, Size2{ { 20, 6 } }));
  const auto reused = cache.Take(Grid(), second, labels, probabilities);
  EXPECT_EQ(reused.Region, Region2({ { 0, 6 } }, Size2{ { 20, 6 } }));
  EXPECT_EQ(reused.Tiles.size(), 1u);
  EXPECT_FALSE(cache.IsValidFor(Grid(), labels, probabilities)); // taken

  // Into fresh outputs of the second piece: the shared voxels come back, the others stay as they were.
  auto newLabels = LabelImage::New();
  newLabels->SetRegions(second);
  newLabels->Allocate(true);
  auto newProbabilities = ProbabilityImage::New();
  newProbabilities->SetRegions(second);
  newProbabilities->SetNumberOfComponentsPerPixel(2);
  newProbabilities->Allocate(true);
  reused.RestoreInto(newLabels, newProbabilities);
  for (const auto & index : itk::ImageRegionIndexRange<2>(second))
  {
    const bool shared = reused.Region.IsInside(index);
    ASSERT_EQ(newLabels->GetPixel(index), shared ? labels->GetPixel(index) : 0) << index;
    ASSERT_EQ(newProbabilities->GetPixel(index)[1], shared ? static_cast<float>(index[1]) : 0.0f) << index;
  }
}

TEST(UNetStreamCache, NothingIsTakenOnceThePipelineOrTheGridChanged)
{
  const Region2 completed({ { 0, 0 } }, Size2{ { 20, 12 } });
  const auto [labels, probabilities] = Outputs(completed);
  Cache cache;
  cache.Keep(Grid(), completed, {});
  const Cache::GridType other(Region2(Size2{ { 20, 20 } }), Size2{ { 8, 8 } }, 0, Size2{ { 1, 1 } }, Size2{ { 3, 3 } });
  EXPECT_FALSE(cache.IsValidFor(other, labels, probabilities));
  EXPECT_TRUE(cache.IsValidFor(Grid(), labels, nullptr)); // without probabilities
  labels->Modified();
  labels->SetPipelineMTime(labels->GetMTime()); // as an update of a changed pipeline sets it
  EXPECT_FALSE(cache.IsValidFor(Grid(), labels, probabilities));
  EXPECT_EQ(cache.Take(Grid(), completed, labels, probabilities).Region.GetNumberOfPixels(), 0u);

  const auto [otherLabels, otherProbabilities] = Outputs(Region2(Size2{ { 20, 8 } })); // reallocated elsewhere
  cache.Keep(Grid(), completed, {});
  EXPECT_FALSE(cache.IsValidFor(Grid(), otherLabels, otherProbabilities));
}
