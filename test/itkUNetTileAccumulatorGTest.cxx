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

// The accumulator alone, against brute force: copied tiles write their written part and nothing else; blended tiles
// give the weighted mean of every tile covering a voxel; labels are the most probable class, the lowest on ties.

#include "itkUNetTileAccumulator.h"

#include "itkIndexRange.h"

#include "gtest/gtest.h"

#include <random>

namespace
{
using Region2 = itk::ImageRegion<2>;
using Size2 = itk::Size<2>;
using Accumulator = itk::unet_detail::TileAccumulator<2, unsigned char>;
constexpr unsigned int classes = 3;

/** Random probabilities of `classes` classes for a tile of `voxels` voxels, class by class. */
std::vector<float>
RandomTile(itk::SizeValueType voxels, unsigned int seed)
{
  std::mt19937                          random(seed);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float>                    tile(classes * voxels);
  for (float & p : tile)
  {
    p = uniform(random);
  }
  return tile;
}

float
ValueAt(const std::vector<float> & tile, const Region2 & region, const itk::Index<2> & index, unsigned int k)
{
  return tile[k * region.GetNumberOfPixels() + itk::unet_detail::OffsetInRegion(region, index)];
}
} // namespace

TEST(UNetTileAccumulator, MostProbableClassTakesTheLowestOnTies)
{
  const float probabilities[] = { 0.2f, 0.4f, 0.4f, 0.0f };
  EXPECT_EQ(itk::unet_detail::MostProbableClass(probabilities, 4), 1u);
  const float strided[] = { 0.5f, -1.0f, 0.1f, -1.0f, 0.5f };
  EXPECT_EQ(itk::unet_detail::MostProbableClass(strided, 3, 2), 0u);
}

TEST(UNetTileAccumulator, CopiedTilesWriteTheirWrittenPartOnly)
{
  const Region2              output({ { 2, 3 } }, Size2{ { 10, 8 } });
  std::vector<unsigned char> labels(output.GetNumberOfPixels(), 255);
  std::vector<float>         probabilities(output.GetNumberOfPixels() * classes, -1.0f);
  Accumulator   accumulator(output, classes, Size2{ { 6, 6 } }, false, true, labels.data(), probabilities.data());
  const Region2 tile({ { 0, 1 } }, Size2{ { 6, 6 } });
  const Region2 written({ { 0, 1 } }, Size2{ { 4, 6 } });
  const std::vector<float> values = RandomTile(tile.GetNumberOfPixels(), 1);
  accumulator.Add(tile, written, values.data());
  accumulator.Finish();
  for (const auto & index : itk::ImageRegionIndexRange<2>(output))
  {
    const auto v = itk::unet_detail::OffsetInRegion(output, index);
    if (!written.IsInside(index))
    {
      ASSERT_EQ(labels[v], 255) << index;
      ASSERT_EQ(probabilities[v * classes], -1.0f) << index;
      continue;
    }
    unsigned int best = 0;
    for (unsigned int k = 0; k < classes; ++k)
    {
      ASSERT_EQ(probabilities[v * classes + k], ValueAt(values, tile, index, k)) << index;
      best = ValueAt(values, tile, index, k) > ValueAt(values, tile, index, best) ? k : best;
    }
    ASSERT_EQ(labels[v], best) << index;
  }
}

TEST(UNetTileAccumulator, BlendedTilesGiveTheWeightedMean)
{
  const Region2 output(Size2{ { 9, 7 } });
  const Size2   tileSize{ { 6, 5 } };
  const Region2 tiles[] = { Region2({ { 0, 0 } }, tileSize),
                            Region2({ { 4, 0 } }, tileSize),
                            Region2({ { 0, 3 } }, tileSize),
                            Region2({ { 4, 3 } }, tileSize) };
  for (const bool gaussian : { true, false })
  {
    SCOPED_TRACE(gaussian ? "Gaussian" : "equal weights");
    std::vector<unsigned char>      labels(output.GetNumberOfPixels());
    Accumulator                     accumulator(output, classes, tileSize, true, gaussian, labels.data(), nullptr);
    std::vector<std::vector<float>> values;
    for (const Region2 & tile : tiles)
    {
      values.push_back(RandomTile(tile.GetNumberOfPixels(), static_cast<unsigned int>(values.size()) + 7));
      accumulator.Add(tile, tile, values.back().data());
    }
    accumulator.Finish();
    const std::vector<float> weights = Accumulator::MakeBlendingWeights(tileSize, gaussian);
    for (const auto & index : itk::ImageRegionIndexRange<2>(output))
    {
      double sums[classes] = {};
      for (size_t t = 0; t < 4; ++t)
      {
        if (!tiles[t].IsInside(index))
        {
          continue;
        }
        const double weight = weights[itk::unet_detail::OffsetInRegion(tiles[t], index)];
        for (unsigned int k = 0; k < classes; ++k)
        {
          sums[k] += weight * ValueAt(values[t], tiles[t], index, k);
        }
      }
      const unsigned int expected = static_cast<unsigned int>(std::max_element(sums, sums + classes) - sums);
      ASSERT_EQ(labels[itk::unet_detail::OffsetInRegion(output, index)], expected) << index;
    }
  }
}

TEST(UNetTileAccumulator, GaussianWeightsPeakAtTheCentreAndStayPositive)
{
  const std::vector<float> weights = Accumulator::MakeBlendingWeights(Size2{ { 8, 5 } }, true);
  // Symmetric about the centre (3.5, 2), largest there, never 0.
  const Region2 tile(Size2{ { 8, 5 } });
  for (const auto & index : itk::ImageRegionIndexRange<2>(tile))
  {
    const itk::Index<2> mirrored{ { 7 - index[0], 4 - index[1] } };
    EXPECT_FLOAT_EQ(weights[itk::unet_detail::OffsetInRegion(tile, index)],
                    weights[itk::unet_detail::OffsetInRegion(tile, mirrored)]);
    EXPECT_GT(weights[itk::unet_detail::OffsetInRegion(tile, index)], 0.0f);
    EXPECT_LE(weights[itk::unet_detail::OffsetInRegion(tile, index)],
              weights[itk::unet_detail::OffsetInRegion(tile, { { 3, 2 } })]);
  }
  const std::vector<float> equal = Accumulator::MakeBlendingWeights(Size2{ { 8, 5 } }, false);
  EXPECT_TRUE(std::all_of(equal.begin(), equal.end(), [](float w) { return w == 1.0f; }));
}
