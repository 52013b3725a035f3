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

// Test-time flips alone: every combination once, each flip its own inverse and equal to an index-by-index reference,
// and the average of copies that a flip-invariant network would give equal to that network's output.

#include "itkUNetTileFlips.h"

#include "gtest/gtest.h"

#include <numeric>
#include <set>

namespace
{
using Flips3 = itk::unet_detail::TileFlips<3>;
using Size3 = itk::Size<3>;
} // namespace

TEST(UNetTileFlips, EveryCombinationOfTheChosenAxesOnceIdentityFirst)
{
  const Flips3 none(Flips3::FlipAxesType::Filled(false));
  EXPECT_EQ(none.GetNumberOfCopies(), 1u);
  Flips3::FlipAxesType axes = Flips3::FlipAxesType::Filled(false);
  axes[0] = axes[2] = true;
  const Flips3 flips(axes);
  EXPECT_EQ(flips.GetNumberOfCopies(), 4u);
  // The copies of a tile whose values are their indices: 4 different permutations, the first the identity.
  const Size3        size{ { 3, 2, 2 } };
  std::vector<float> tile(12);
  std::iota(tile.begin(), tile.end(), 0.0f);
  std::set<std::vector<float>> copies;
  for (unsigned int copy = 0; copy < 4; ++copy)
  {
    std::vector<float> flipped(12);
    flips.Flip(copy, tile.data(), size, 1, flipped.data());
    if (copy == 0)
    {
      EXPECT_EQ(flipped, tile);
    }
    copies.insert(flipped);
  }
  EXPECT_EQ(copies.size(), 4u);
}

TEST(UNetTileFlips, FlipEqualsIndexReferenceAndUndoesItself)
{
  const Size3        size{ { 4, 3, 2 } };
  const Flips3       flips(Flips3::FlipAxesType::Filled(true));
  std::vector<float> tile(2 * 24); // two components
  std::iota(tile.begin(), tile.end(), 0.0f);
  for (unsigned int copy = 0; copy < flips.GetNumberOfCopies(); ++copy)
  {
    std::vector<float> flipped(tile.size());
    std::vector<float> back(tile.size());
    flips.Flip(copy, tile.data(), size, 2, flipped.data());
    flips.Flip(copy, flipped.data(), size, 2, back.data());
    EXPECT_EQ(back, tile) << "copy " << copy;
    // Copy `copy` flips axis a when bit a of `copy` is set (all axes chosen).
    for (unsigned int z = 0; z < 2; ++z)
      for (unsigned int y = 0; y < 3; ++y)
        for (unsigned int x = 0; x < 4; ++x)
        {
          const unsigned int sx = (copy & 1u) ? 3 - x : x;
          const unsigned int sy = (copy & 2u) ? 2 - y : y;
          const unsigned int sz = (copy & 4u) ? 1 - z : z;
          ASSERT_EQ(flipped[24 + x + 4 * (y + 3 * z)], tile[24 + sx + 4 * (sy + 3 * sz)]) << copy;
        }
  }
}

TEST(UNetTileFlips, AverageOfCopiesOfAFlipInvariantOutputIsThatOutput)
{
  // A network that commutes with flips answers copy c with the flipped output; averaging undoes each flip.
  const Size3          size{ { 5, 4, 3 } };
  Flips3::FlipAxesType axes = Flips3::FlipAxesType::Filled(false);
  axes[1] = true;
  const Flips3       flips(axes);
  std::vector<float> output(2 * 60);
  for (size_t i = 0; i < output.size(); ++i)
  {
    output[i] = static_cast<float>(i % 7) / 7.0f;
  }
  std::vector<float> copies(2 * output.size());
  for (unsigned int copy = 0; copy < 2; ++copy)
  {
    flips.Flip(copy, output.data(), size, 2, copies.data() + copy * output.size());
  }
  std::vector<float> average(output.size());
  flips.Average(copies.data(), size, 2, average.data());
  EXPECT_EQ(average, output);
}
