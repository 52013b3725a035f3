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
#ifndef itkUNetTileGrid_h
#define itkUNetTileGrid_h

#include "itkImageRegion.h"
#include "itkUNetRegionLines.h"

#include <algorithm>
#include <cmath>
#include <ostream>
#include <vector>

namespace itk
{

/** \class UNetSegmentationImageFilterEnums
 * \brief Enums of UNetSegmentationImageFilter, in a class of their own as ITK's wrapping expects.
 * \ingroup UNetSegmentation */
class UNetSegmentationImageFilterEnums
{
public:
  /** What fills a tile's context outside the image. */
  enum class BoundaryCondition : uint8_t
  {
    /** Mirror the image at its edges, repeating the edge voxel (... 1 0 | 0 1 ... n-1 | n-1 n-2 ...), again and
     * again when the context is wider than the image; the convention of ITK's MirrorPadImageFilter. */
    Mirror,
    /** A constant value (0: zero padding). */
    Constant
  };
};

inline std::ostream &
operator<<(std::ostream & os, UNetSegmentationImageFilterEnums::BoundaryCondition value)
{
  return os << (value == UNetSegmentationImageFilterEnums::BoundaryCondition::Mirror ? "Mirror" : "Constant");
}

/** \class UNetTileGrid
 * \brief The overlap-tile layout: output tiles on a grid anchored at the image's first index, each read with a
 * border of context.
 *
 * Tile k along an axis covers output indices [start + k * stride, start + k * stride + tileSize), stride = tileSize
 * - overlap; there are as many tiles as cover the image, the last one reaching past its end (its input there is
 * mirrored or constant, never unread memory). The layout depends only on the image's region and the tile
 * parameters, so any requested region is computed from exactly the tiles, and so the values, a whole-image update
 * uses.
 *
 * \ingroup UNetSegmentation
 */
template <unsigned int VDimension>
class UNetTileGrid
{
public:
  using RegionType = ImageRegion<VDimension>;
  using IndexType = typename RegionType::IndexType;
  using SizeType = typename RegionType::SizeType;
  using TileIndexType = Index<VDimension>;
  using TileRangeType = ImageRegion<VDimension>;

  UNetTileGrid() = default;

  UNetTileGrid(const RegionType & image, const SizeType & tileSize, SizeValueType overlap, SizeValueType border)
    : m_Image(image)
    , m_TileSize(tileSize)
    , m_Border(border)
  {
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      if (overlap >= tileSize[axis])
      {
        itkGenericExceptionMacro("The tile overlap (" << overlap << ") must be smaller than the tile edge ("
                                                      << tileSize[axis] << ").");
      }
      m_Stride[axis] = tileSize[axis] - overlap;
      m_NumberOfTiles[axis] = NumberOfTilesAlong(image.GetSize(axis), tileSize[axis], overlap);
    }
  }

  /** How many tiles of edge `edge` overlapping by `overlap` (< edge) cover `extent` voxels. */
  static SizeValueType
  NumberOfTilesAlong(SizeValueType extent, SizeValueType edge, SizeValueType overlap)
  {
    const SizeValueType stride = edge - overlap;
    return 1 + (extent > edge ? (extent - edge + stride - 1) / stride : 0);
  }

  const RegionType &
  GetImageRegion() const
  {
    return m_Image;
  }
  const SizeType &
  GetTileSize() const
  {
    return m_TileSize;
  }
  SizeValueType
  GetBorder() const
  {
    return m_Border;
  }
  const SizeType &
  GetNumberOfTiles() const
  {
    return m_NumberOfTiles;
  }
  SizeType
  GetInputTileSize() const
  {
    SizeType size;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      size[axis] = m_TileSize[axis] + 2 * m_Border;
    }
    return size;
  }

  /** The output region of tile `tile` (it may reach past the image). */
  RegionType
  GetTileRegion(const TileIndexType & tile) const
  {
    RegionType region;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      region.SetIndex(axis, m_Image.GetIndex(axis) + tile[axis] * static_cast<IndexValueType>(m_Stride[axis]));
      region.SetSize(axis, m_TileSize[axis]);
    }
    return region;
  }

  /** The tiles whose output regions intersect `region`, as a range of tile indices. */
  TileRangeType
  GetTilesIntersecting(const RegionType & region) const
  {
    TileRangeType range;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      const auto           stride = static_cast<IndexValueType>(m_Stride[axis]);
      const IndexValueType first = region.GetIndex(axis) - m_Image.GetIndex(axis);
      const IndexValueType last = first + static_cast<IndexValueType>(region.GetSize(axis)) - 1;
      const IndexValueType firstTile =
        std::max<IndexValueType>(0, FloorDivide(first - static_cast<IndexValueType>(m_TileSize[axis]), stride) + 1);
      const IndexValueType lastTile =
        std::min<IndexValueType>(static_cast<IndexValueType>(m_NumberOfTiles[axis]) - 1, FloorDivide(last, stride));
      range.SetIndex(axis, firstTile);
      range.SetSize(axis, lastTile >= firstTile ? static_cast<SizeValueType>(lastTile - firstTile + 1) : 0);
    }
    return range;
  }

  /** The voxels of the image whose every covering tile lies in `tiles`, so whose values those tiles alone decide:
   * for edge-to-edge tiles their union (cropped to the image); for overlapping tiles that union less the margins
   * that neighbouring tiles outside `tiles` also cover. Computing `tiles` completes this region. */
  RegionType
  GetRegionCompletedBy(const TileRangeType & tiles) const
  {
    RegionType completed;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      if (tiles.GetSize(axis) == 0)
      {
        return RegionType{};
      }
      const auto           stride = static_cast<IndexValueType>(m_Stride[axis]);
      const auto           edge = static_cast<IndexValueType>(m_TileSize[axis]);
      const IndexValueType first = tiles.GetIndex(axis);
      const IndexValueType last = tiles.GetUpperIndex()[axis];
      const IndexValueType imageBegin = m_Image.GetIndex(axis);
      const IndexValueType imageEnd = m_Image.GetUpperIndex()[axis];
      // Past the end of tile first - 1, and before the start of tile last + 1.
      const IndexValueType begin = first == 0 ? imageBegin : imageBegin + (first - 1) * stride + edge;
      const IndexValueType end = last + 1 >= static_cast<IndexValueType>(m_NumberOfTiles[axis])
                                   ? imageEnd
                                   : std::min(imageEnd, imageBegin + (last + 1) * stride - 1);
      if (end < begin)
      {
        return RegionType{};
      }
      completed.SetIndex(axis, begin);
      completed.SetSize(axis, static_cast<SizeValueType>(end - begin + 1));
    }
    return completed;
  }

  bool
  operator==(const UNetTileGrid & other) const
  {
    return m_Image == other.m_Image && m_TileSize == other.m_TileSize && m_Stride == other.m_Stride &&
           m_Border == other.m_Border;
  }
  bool
  operator!=(const UNetTileGrid & other) const
  {
    return !(*this == other);
  }

  /** The image index that input index `x` (possibly outside the image) mirrors to along `axis`. */
  IndexValueType
  MirrorIndex(unsigned int axis, IndexValueType x) const
  {
    return MirrorIndex(x, m_Image.GetIndex(axis), m_Image.GetSize(axis));
  }

  /** Maps `x` into [start, start + size) by mirroring with the edge voxel repeated, periodically (period 2 size). */
  static IndexValueType
  MirrorIndex(IndexValueType x, IndexValueType start, SizeValueType size)
  {
    const auto           period = static_cast<IndexValueType>(2 * size);
    const IndexValueType phase = ((x - start) % period + period) % period;
    return start + (phase < static_cast<IndexValueType>(size) ? phase : period - 1 - phase);
  }

  /** The input region the tiles intersecting `outputRegion` read, given the boundary condition: with Mirror, the
   * image voxels their mirrored context maps to; with Constant, their context cropped to the image. */
  RegionType
  GetRequiredInputRegion(const RegionType &                                  outputRegion,
                         UNetSegmentationImageFilterEnums::BoundaryCondition boundary) const
  {
    return this->GetRequiredInputRegionOfTiles(this->GetTilesIntersecting(outputRegion), boundary);
  }

  /** The input region that the tiles in `tiles` read, given the boundary condition. */
  RegionType
  GetRequiredInputRegionOfTiles(const TileRangeType &                               tiles,
                                UNetSegmentationImageFilterEnums::BoundaryCondition boundary) const
  {
    RegionType required;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      if (tiles.GetSize(axis) == 0)
      {
        return RegionType{};
      }
      TileIndexType        firstTile = tiles.GetIndex();
      TileIndexType        lastTile = tiles.GetUpperIndex();
      const IndexValueType spanBegin =
        this->GetTileRegion(firstTile).GetIndex(axis) - static_cast<IndexValueType>(m_Border);
      const IndexValueType spanEnd =
        this->GetTileRegion(lastTile).GetUpperIndex()[axis] + static_cast<IndexValueType>(m_Border);
      const IndexValueType imageBegin = m_Image.GetIndex(axis);
      const IndexValueType imageEnd = imageBegin + static_cast<IndexValueType>(m_Image.GetSize(axis)) - 1;
      IndexValueType       low = std::max(spanBegin, imageBegin);
      IndexValueType       high = std::min(spanEnd, imageEnd);
      if (boundary == UNetSegmentationImageFilterEnums::BoundaryCondition::Mirror)
      {
        // The span can lie wholly outside the image on one side; its mirror images decide then.
        if (low > high)
        {
          low = imageEnd;
          high = imageBegin;
        }
        for (IndexValueType x = spanBegin; x < imageBegin && x <= spanEnd; ++x)
        {
          const IndexValueType mirrored = this->MirrorIndex(axis, x);
          low = std::min(low, mirrored);
          high = std::max(high, mirrored);
        }
        for (IndexValueType x = std::max(spanBegin, imageEnd + 1); x <= spanEnd; ++x)
        {
          const IndexValueType mirrored = this->MirrorIndex(axis, x);
          low = std::min(low, mirrored);
          high = std::max(high, mirrored);
        }
      }
      else if (low > high)
      {
        // Only constant context: read one voxel so that the region stays a valid, non-empty one.
        low = high = std::min(std::max(spanBegin, imageBegin), imageEnd);
      }
      required.SetIndex(axis, low);
      required.SetSize(axis, static_cast<SizeValueType>(high - low + 1));
    }
    return required;
  }

private:
  static IndexValueType
  FloorDivide(IndexValueType numerator, IndexValueType denominator)
  {
    IndexValueType quotient = numerator / denominator;
    if ((numerator % denominator != 0) && ((numerator < 0) != (denominator < 0)))
    {
      --quotient;
    }
    return quotient;
  }

  RegionType    m_Image{};
  SizeType      m_TileSize{ { 0 } };
  SizeType      m_Stride{ { 1 } };
  SizeType      m_NumberOfTiles{ { 0 } };
  SizeValueType m_Border{ 0 };
};

} // end namespace itk

#endif // itkUNetTileGrid_h
