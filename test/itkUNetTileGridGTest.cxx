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

// The tile layout alone, against brute force over every tile and voxel: how many tiles cover the image, which tiles a
// region meets, which voxels a set of tiles completes, and the input a set of tiles reads; images that start at
// negative indices included.

#include "itkUNetTileGrid.h"

#include "itkIndexRange.h"

#include "gtest/gtest.h"

#include <set>
#include <tuple>

namespace
{
using Grid2 = itk::UNetTileGrid<2>;

/** Grids with edge-to-edge and overlapping tiles, tiles larger than the image, and images at negative indices. */
std::vector<Grid2>
Grids()
{
  std::vector<Grid2> grids;
  for (const auto & start : { itk::Index<2>{ { 0, 0 } }, itk::Index<2>{ { -7, 3 } } })
  {
    const Grid2::RegionType image(start, itk::Size<2>{ { 23, 17 } });
    grids.emplace_back(image, itk::Size<2>{ { 5, 4 } }, 0, 2);
    grids.emplace_back(image, itk::Size<2>{ { 8, 6 } }, 3, 1);
    grids.emplace_back(image, itk::Size<2>{ { 30, 20 } }, 0, 4); // one tile, larger than the image
    grids.emplace_back(image, itk::Size<2>{ { 7, 17 } }, 2, 0);
  }
  return grids;
}

/** Every tile of the grid, with its output region. */
std::vector<std::pair<Grid2::TileIndexType, Grid2::RegionType>>
AllTiles(const Grid2 & grid)
{
  std::vector<std::pair<Grid2::TileIndexType, Grid2::RegionType>> tiles;
  for (const auto & tile : itk::ZeroBasedIndexRange<2>(grid.GetNumberOfTiles()))
  {
    tiles.emplace_back(tile, grid.GetTileRegion(tile));
  }
  return tiles;
}

Grid2::RegionType
Intersection(Grid2::RegionType a, const Grid2::RegionType & b)
{
  return a.Crop(b) ? a : Grid2::RegionType{};
}
} // namespace

TEST(UNetTileGrid, TilesCoverTheImageAndTheLastOneStartsInsideIt)
{
  for (const auto & grid : Grids())
  {
    const auto &                                                   image = grid.GetImageRegion();
    std::set<std::tuple<itk::IndexValueType, itk::IndexValueType>> covered;
    for (const auto & [tile, region] : AllTiles(grid))
    {
      EXPECT_EQ(region.GetSize(), grid.GetTileSize());
      EXPECT_TRUE(image.IsInside(region.GetIndex())) << "tile " << tile << " starts outside the image";
      for (const auto & index : itk::ImageRegionIndexRange<2>(Intersection(region, image)))
      {
        covered.emplace(index[0], index[1]);
      }
    }
    EXPECT_EQ(covered.size(), image.GetNumberOfPixels());
    // The fewest: without the last tile along an axis, the tiles before it end inside the image.
    for (unsigned int axis = 0; axis < 2; ++axis)
    {
      if (grid.GetNumberOfTiles()[axis] > 1)
      {
        Grid2::TileIndexType beforeLast{};
        beforeLast[axis] = static_cast<itk::IndexValueType>(grid.GetNumberOfTiles()[axis]) - 2;
        EXPECT_LT(grid.GetTileRegion(beforeLast).GetUpperIndex()[axis], image.GetUpperIndex()[axis]);
      }
    }
  }
}

TEST(UNetTileGrid, NumberOfTilesAlongIsTheFewestThatCover)
{
  for (itk::SizeValueType extent = 1; extent < 60; ++extent)
  {
    for (itk::SizeValueType edge = 1; edge < 20; ++edge)
    {
      for (itk::SizeValueType overlap = 0; overlap < edge; ++overlap)
      {
        itk::SizeValueType tiles = 1;
        while (edge + (tiles - 1) * (edge - overlap) < extent)
        {
          ++tiles;
        }
        ASSERT_EQ(Grid2::NumberOfTilesAlong(extent, edge, overlap), tiles)
          << "extent " << extent << ", edge " << edge << ", overlap " << overlap;
      }
    }
  }
}

TEST(UNetTileGrid, TilesIntersectingARegionAreThoseThatMeetIt)
{
  for (const auto & grid : Grids())
  {
    const auto & image = grid.GetImageRegion();
    // Every region of the image with corners on a coarse lattice, single voxels included.
    for (const auto & first : itk::ImageRegionIndexRange<2>(image))
    {
      if ((first[0] - image.GetIndex(0)) % 3 != 0 || (first[1] - image.GetIndex(1)) % 2 != 0)
      {
        continue;
      }
      for (const itk::SizeValueType width : { 1, 4, 9 })
      {
        Grid2::RegionType region(first, itk::Size<2>{ { width, width / 2 + 1 } });
        if (!region.Crop(image))
        {
          continue;
        }
        const auto range = grid.GetTilesIntersecting(region);
        for (const auto & [tile, tileRegion] : AllTiles(grid))
        {
          Grid2::RegionType overlap = tileRegion;
          const bool        meets = overlap.Crop(region);
          ASSERT_EQ(range.IsInside(tile), meets) << "tile " << tile << ", region " << region;
        }
      }
    }
  }
}

TEST(UNetTileGrid, RegionCompletedByTilesIsWhereNoOtherTileReaches)
{
  for (const auto & grid : Grids())
  {
    const auto & image = grid.GetImageRegion();
    const auto   tiles = AllTiles(grid);
    for (const auto & firstTile : itk::ZeroBasedIndexRange<2>(grid.GetNumberOfTiles()))
    {
      for (const auto & lastTile : itk::ZeroBasedIndexRange<2>(grid.GetNumberOfTiles()))
      {
        if (lastTile[0] < firstTile[0] || lastTile[1] < firstTile[1])
        {
          continue;
        }
        Grid2::TileRangeType range(firstTile, itk::Size<2>{ { 1, 1 } });
        range.SetUpperIndex(lastTile);
        const auto completed = grid.GetRegionCompletedBy(range);
        // Brute force: the image voxels covered by some tile of the range and by no tile outside it.
        for (const auto & index : itk::ImageRegionIndexRange<2>(image))
        {
          bool byRange = false;
          bool byOther = false;
          for (const auto & [tile, region] : tiles)
          {
            if (region.IsInside(index))
            {
              (range.IsInside(tile) ? byRange : byOther) = true;
            }
          }
          ASSERT_EQ(completed.IsInside(index), byRange && !byOther)
            << "voxel " << index << ", tiles " << range << ", completed " << completed;
        }
      }
    }
  }
}

TEST(UNetTileGrid, InputSpanIsTheTilesGrownByTheBorder)
{
  for (const auto & grid : Grids())
  {
    const auto range = grid.GetTilesIntersecting(grid.GetImageRegion());
    const auto span = grid.GetInputSpanOfTiles(range);
    for (const auto & [tile, region] : AllTiles(grid))
    {
      auto input = region;
      input.PadByRadius(static_cast<itk::IndexValueType>(grid.GetBorder()));
      EXPECT_TRUE(span.IsInside(input)) << "tile " << tile;
      EXPECT_EQ(input.GetSize(), grid.GetInputTileSize());
    }
    // And no larger: its corners are the first and last tiles' input corners.
    auto first = grid.GetTileRegion(range.GetIndex());
    first.PadByRadius(static_cast<itk::IndexValueType>(grid.GetBorder()));
    auto last = grid.GetTileRegion(range.GetUpperIndex());
    last.PadByRadius(static_cast<itk::IndexValueType>(grid.GetBorder()));
    EXPECT_EQ(span.GetIndex(), first.GetIndex());
    EXPECT_EQ(span.GetUpperIndex(), last.GetUpperIndex());
  }
}

TEST(UNetTileGrid, OverlapMustBeSmallerThanTheTile)
{
  const Grid2::RegionType image({ { 0, 0 } }, { { 10, 10 } });
  EXPECT_THROW(Grid2(image, { { 4, 6 } }, 4, 0), itk::ExceptionObject);
  EXPECT_NO_THROW(Grid2(image, { { 5, 6 } }, 4, 0));
}

TEST(UNetTileGrid, EqualityComparesLayoutNotOrigin)
{
  const Grid2::RegionType image({ { 0, 0 } }, { { 10, 10 } });
  EXPECT_EQ(Grid2(image, { { 4, 4 } }, 1, 2), Grid2(image, { { 4, 4 } }, 1, 2));
  EXPECT_NE(Grid2(image, { { 4, 4 } }, 1, 2), Grid2(image, { { 4, 4 } }, 0, 2));
  EXPECT_NE(Grid2(image, { { 4, 4 } }, 1, 2), Grid2(image, { { 4, 4 } }, 1, 3));
  EXPECT_NE(Grid2(image, { { 4, 4 } }, 1, 2),
            Grid2(Grid2::RegionType({ { 1, 0 } }, { { 10, 10 } }), { { 4, 4 } }, 1, 2));
}
