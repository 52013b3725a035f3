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

// The tile layout alone, against brute force over every tile and voxel: how many tiles cover the image, where they
// start, which tiles write a voxel, which tiles a region needs, which voxels a set of tiles completes, and the input a
// set of tiles reads; images that start at negative indices included.

#include "itkUNetTileGrid.h"

#include "itkIndexRange.h"

#include "gtest/gtest.h"

#include <set>
#include <tuple>

namespace
{
using Grid2 = itk::UNetTileGrid<2>;
using Size2 = itk::Size<2>;

/** Grids with edge-to-edge, aligned (overlapping by the remainder, written once) and blended tiles, tiles larger than
 * the image, and images at negative indices. */
std::vector<Grid2>
Grids()
{
  std::vector<Grid2> grids;
  for (const auto & start : { itk::Index<2>{ { 0, 0 } }, itk::Index<2>{ { -7, 3 } } })
  {
    const Grid2::RegionType image(start, Size2{ { 23, 17 } });
    grids.emplace_back(image, Size2{ { 5, 4 } }, 0, Size2{ { 1, 1 } }, Size2{ { 2, 2 } });
    grids.emplace_back(image, Size2{ { 8, 6 } }, 3, Size2{ { 1, 1 } }, Size2{ { 1, 1 } });
    grids.emplace_back(image, Size2{ { 30, 20 } }, 0, Size2{ { 32, 8 } }, Size2{ { 4, 4 } }); // one tile
    grids.emplace_back(image, Size2{ { 7, 17 } }, 2, Size2{ { 1, 1 } }, Size2{ { 0, 3 } });
    // A depth-3 valid network: edges 4 + 8k advance by 8k, x overlaps by 4; y pools by 2.
    grids.emplace_back(image, Size2{ { 12, 6 } }, 0, Size2{ { 8, 2 } }, Size2{ { 44, 8 } });
    grids.emplace_back(image, Size2{ { 20, 5 } }, 0, Size2{ { 8, 2 } }, Size2{ { 44, 8 } });
    // Blended and aligned: strides 4 and 4 for an overlap of at least 3.
    grids.emplace_back(image, Size2{ { 8, 9 } }, 3, Size2{ { 2, 4 } }, Size2{ { 1, 0 } });
  }
  return grids;
}

/** Every tile of the grid, with its output region and the part of it the tile writes. */
struct Tile
{
  Grid2::TileIndexType index;
  Grid2::RegionType    region;
  Grid2::RegionType    written;
};

std::vector<Tile>
AllTiles(const Grid2 & grid)
{
  std::vector<Tile> tiles;
  for (const auto & tile : itk::ZeroBasedIndexRange<2>(grid.GetNumberOfTiles()))
  {
    tiles.push_back({ tile, grid.GetTileRegion(tile), grid.GetWrittenRegion(tile) });
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
    for (const auto & tile : AllTiles(grid))
    {
      EXPECT_EQ(tile.region.GetSize(), grid.GetTileSize());
      EXPECT_TRUE(image.IsInside(tile.region.GetIndex())) << "tile " << tile.index << " starts outside the image";
      for (const auto & index : itk::ImageRegionIndexRange<2>(Intersection(tile.region, image)))
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

TEST(UNetTileGrid, TilesStartOnThePoolingGrid)
{
  // The stride is the largest multiple of the factor that keeps the overlap, so every tile's input starts a multiple
  // of the factor from the first tile's.
  const Grid2::RegionType image({ { -5, 2 } }, Size2{ { 100, 90 } });
  for (itk::SizeValueType factor : { 1, 2, 4, 8, 16 })
  {
    for (itk::SizeValueType edge = 1; edge < 40; ++edge)
    {
      for (itk::SizeValueType overlap = 0; overlap < 6; ++overlap)
      {
        SCOPED_TRACE("factor " + std::to_string(factor) + ", edge " + std::to_string(edge) + ", overlap " +
                     std::to_string(overlap));
        if (edge < overlap + factor)
        {
          EXPECT_THROW(Grid2(image, Size2{ { edge, edge } }, overlap, Size2{ { factor, factor } }, Size2{ { 3, 3 } }),
                       itk::ExceptionObject);
          continue;
        }
        const Grid2 grid(image, Size2{ { edge, edge } }, overlap, Size2{ { factor, factor } }, Size2{ { 3, 3 } });
        const auto  stride = grid.GetStride()[0];
        EXPECT_EQ(stride % factor, 0u);
        EXPECT_GE(edge - stride, overlap);
        EXPECT_LT(edge - stride, overlap + factor);
        for (const auto & tile : AllTiles(grid))
        {
          EXPECT_EQ((tile.region.GetIndex(0) - image.GetIndex(0)) % static_cast<itk::IndexValueType>(factor), 0);
        }
      }
    }
  }
}

TEST(UNetTileGrid, OneTileNeedsNoAlignment)
{
  // A tile that covers the image alone never advances: it needs no stride.
  const Grid2::RegionType image({ { 0, 0 } }, Size2{ { 10, 4 } });
  const Grid2             grid(image, Size2{ { 12, 4 } }, 0, Size2{ { 16, 8 } }, Size2{ { 92, 20 } });
  EXPECT_EQ(grid.GetNumberOfTiles(), (Size2{ { 1, 1 } }));
}

TEST(UNetTileGrid, EachVoxelIsWrittenByOneTileUnlessBlended)
{
  for (const auto & grid : Grids())
  {
    const auto & image = grid.GetImageRegion();
    for (const auto & index : itk::ImageRegionIndexRange<2>(image))
    {
      unsigned int writers = 0;
      unsigned int coverers = 0;
      for (const auto & tile : AllTiles(grid))
      {
        writers += tile.written.IsInside(index) ? 1 : 0;
        coverers += tile.region.IsInside(index) ? 1 : 0;
      }
      ASSERT_EQ(writers, grid.GetBlend() ? coverers : 1u) << "voxel " << index;
    }
  }
}

TEST(UNetTileGrid, NumberOfTilesAlongIsTheFewestThatCover)
{
  for (itk::SizeValueType extent = 1; extent < 60; ++extent)
  {
    for (itk::SizeValueType edge = 1; edge < 20; ++edge)
    {
      for (itk::SizeValueType stride = 1; stride <= edge; ++stride)
      {
        itk::SizeValueType tiles = 1;
        while (edge + (tiles - 1) * stride < extent)
        {
          ++tiles;
        }
        ASSERT_EQ(Grid2::NumberOfTilesAlong(extent, edge, stride), tiles)
          << "extent " << extent << ", edge " << edge << ", stride " << stride;
      }
    }
  }
}

TEST(UNetTileGrid, TilesIntersectingARegionAreThoseThatWriteInIt)
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
        Grid2::RegionType region(first, Size2{ { width, width / 2 + 1 } });
        if (!region.Crop(image))
        {
          continue;
        }
        const auto range = grid.GetTilesIntersecting(region);
        for (const auto & tile : AllTiles(grid))
        {
          Grid2::RegionType written = tile.written;
          const bool        writes = written.Crop(region);
          ASSERT_EQ(range.IsInside(tile.index), writes) << "tile " << tile.index << ", region " << region;
        }
      }
    }
  }
}

TEST(UNetTileGrid, RegionCompletedByTilesIsWhereNoOtherTileWrites)
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
        Grid2::TileRangeType range(firstTile, Size2{ { 1, 1 } });
        range.SetUpperIndex(lastTile);
        const auto completed = grid.GetRegionCompletedBy(range);
        // Brute force: the image voxels written by some tile of the range and by no tile outside it.
        for (const auto & index : itk::ImageRegionIndexRange<2>(image))
        {
          bool byRange = false;
          bool byOther = false;
          for (const auto & tile : tiles)
          {
            if (tile.written.IsInside(index))
            {
              (range.IsInside(tile.index) ? byRange : byOther) = true;
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
    for (const auto & tile : AllTiles(grid))
    {
      auto input = tile.region;
      input.PadByRadius(grid.GetBorder());
      EXPECT_TRUE(span.IsInside(input)) << "tile " << tile.index;
      EXPECT_EQ(input.GetSize(), grid.GetInputTileSize());
    }
    // And no larger: its corners are the first and last tiles' input corners.
    auto first = grid.GetTileRegion(range.GetIndex());
    first.PadByRadius(grid.GetBorder());
    auto last = grid.GetTileRegion(range.GetUpperIndex());
    last.PadByRadius(grid.GetBorder());
    EXPECT_EQ(span.GetIndex(), first.GetIndex());
    EXPECT_EQ(span.GetUpperIndex(), last.GetUpperIndex());
  }
}

TEST(UNetTileGrid, OverlapMustLeaveAStride)
{
  const Grid2::RegionType image({ { 0, 0 } }, Size2{ { 10, 10 } });
  const Size2             one{ { 1, 1 } };
  EXPECT_THROW(Grid2(image, Size2{ { 4, 6 } }, 4, one, one), itk::ExceptionObject);
  EXPECT_NO_THROW(Grid2(image, Size2{ { 5, 6 } }, 4, one, one));
  EXPECT_THROW(Grid2(image, Size2{ { 4, 4 } }, 0, Size2{ { 8, 8 } }, one), itk::ExceptionObject);
  EXPECT_THROW(Grid2(image, Size2{ { 0, 4 } }, 0, one, one), itk::ExceptionObject);
}

TEST(UNetTileGrid, EqualityComparesLayoutNotOrigin)
{
  const Grid2::RegionType image({ { 0, 0 } }, Size2{ { 10, 10 } });
  const Size2             one{ { 1, 1 } };
  const Size2             two{ { 2, 2 } };
  EXPECT_EQ(Grid2(image, Size2{ { 4, 4 } }, 1, one, two), Grid2(image, Size2{ { 4, 4 } }, 1, one, two));
  EXPECT_NE(Grid2(image, Size2{ { 4, 4 } }, 1, one, two), Grid2(image, Size2{ { 4, 4 } }, 0, one, two));
  EXPECT_NE(Grid2(image, Size2{ { 4, 4 } }, 0, one, two), Grid2(image, Size2{ { 4, 4 } }, 0, Size2{ { 3, 3 } }, two));
  EXPECT_NE(Grid2(image, Size2{ { 4, 4 } }, 1, one, two), Grid2(image, Size2{ { 4, 4 } }, 1, one, Size2{ { 3, 2 } }));
  EXPECT_NE(Grid2(image, Size2{ { 4, 4 } }, 1, one, two),
            Grid2(Grid2::RegionType({ { 1, 0 } }, Size2{ { 10, 10 } }), Size2{ { 4, 4 } }, 1, one, two));
}
