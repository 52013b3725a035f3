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

/** \class UNetTileGrid
 * \brief The overlap-tile layout: output tiles on a grid anchored at the image's first index, each read with a
 * border of context, each advancing by a multiple of the network's downsampling factor.
 *
 * Tile k along an axis covers output indices [start + k * stride, start + k * stride + tileSize). The stride is the
 * largest multiple of the network's downsampling factor that leaves the requested overlap: every tile's input then
 * starts a multiple of the factor from the same anchor (the image's first index less the border), so every tile sees
 * the image on the pooling grid of one tile over the whole image, and a valid network gives the same values in every
 * tile that covers a voxel. There are as many tiles as cover the image, the last one reaching past its end (its
 * input there is mirrored or constant, never unread memory).
 *
 * Which tiles write a voxel: with an overlap asked for (TileOverlap > 0, for same-padded networks, whose tiles
 * disagree near their edges) every tile covering it, blended; otherwise one tile, the last to start at or before it
 * (tile k writes [start_k, start_k + stride), the last tile its whole extent), and the overlap that alignment leaves
 * between tiles is computed twice and written once.
 *
 * The layout depends only on the image's region and the tile parameters, so any requested region is computed from
 * exactly the tiles, and so the values, a whole-image update uses.
 *
 * \sa UNetSegmentationImageFilter, UNetTilePlan
 * \ingroup UNetSegmentation
 */
template <unsigned int VDimension>
class UNetTileGrid
{
public:
  /** Regions, indices and sizes of image voxels. */
  /** @{ */
  using RegionType = ImageRegion<VDimension>;
  using IndexType = typename RegionType::IndexType;
  using SizeType = typename RegionType::SizeType;
  /** @} */
  /** A tile's position in the grid, (0, 0) the first tile; and a box of such positions. */
  /** @{ */
  using TileIndexType = Index<VDimension>;
  using TileRangeType = ImageRegion<VDimension>;
  /** @} */

  /** An empty grid: no image, no tiles. */
  UNetTileGrid() = default;

  /** Tiles of `tileSize` output voxels over `image`, overlapping by at least `overlap` (blended when positive), each
   * input tile `border` voxels larger on each side, advancing by multiples of `factor` (the network's downsampling
   * factor). Throws where a tile cannot advance by a multiple of the factor and more than one tile is needed. */
  UNetTileGrid(const RegionType & image, const SizeType & tileSize, SizeValueType overlap, const SizeType & factor,
               const SizeType & border)
    : m_Image(image)
    , m_TileSize(tileSize)
    , m_Border(border)
    , m_Blend(overlap > 0)
  {
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      if (tileSize[axis] == 0 || factor[axis] == 0)
      {
        itkGenericExceptionMacro("Tile edges and downsampling factors must be positive; got tile "
                                 << tileSize << " and factor " << factor << '.');
      }
      m_Stride[axis] = AlignedStride(tileSize[axis], overlap, factor[axis]);
      if (m_Stride[axis] == 0 && image.GetSize(axis) > tileSize[axis])
      {
        itkGenericExceptionMacro(
          "Tiles of edge " << tileSize[axis] << " overlapping by at least " << overlap << " cannot advance along axis "
                           << axis << " by a multiple of the network's downsampling factor " << factor[axis] << '.');
      }
      if (m_Stride[axis] == 0)
      {
        m_Stride[axis] = tileSize[axis]; // one tile covers the axis
      }
      m_NumberOfTiles[axis] = NumberOfTilesAlong(image.GetSize(axis), tileSize[axis], m_Stride[axis]);
    }
  }

  /** The stride of tiles of edge `edge` that overlap by at least `overlap` and advance by a multiple of `factor`: 0
   * when there is none (the edge is smaller than the overlap plus one factor). */
  static SizeValueType
  AlignedStride(SizeValueType edge, SizeValueType overlap, SizeValueType factor)
  {
    return edge > overlap ? (edge - overlap) / factor * factor : 0;
  }

  /** How many tiles of edge `edge` at stride `stride` (> 0) cover `extent` voxels. */
  static SizeValueType
  NumberOfTilesAlong(SizeValueType extent, SizeValueType edge, SizeValueType stride)
  {
    return 1 + (extent > edge ? (extent - edge + stride - 1) / stride : 0);
  }

  /** The image's region, where the grid is anchored. */
  const RegionType &
  GetImageRegion() const
  {
    return m_Image;
  }
  /** A tile's output edges. */
  const SizeType &
  GetTileSize() const
  {
    return m_TileSize;
  }
  /** How far apart neighbouring tiles start, per axis. */
  const SizeType &
  GetStride() const
  {
    return m_Stride;
  }
  /** The context an input tile has on each side of its output, per axis. */
  const SizeType &
  GetBorder() const
  {
    return m_Border;
  }
  /** Whether voxels covered by several tiles blend them (an overlap was asked for), rather than take one. */
  bool
  GetBlend() const
  {
    return m_Blend;
  }
  /** How many tiles cover the image along each axis. */
  const SizeType &
  GetNumberOfTiles() const
  {
    return m_NumberOfTiles;
  }
  /** An input tile's edges: the tile size plus twice the border. */
  SizeType
  GetInputTileSize() const
  {
    SizeType size;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      size[axis] = m_TileSize[axis] + 2 * m_Border[axis];
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

  /** The part of tile `tile`'s output region that it writes (see the class description). */
  RegionType
  GetWrittenRegion(const TileIndexType & tile) const
  {
    RegionType region = this->GetTileRegion(tile);
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      region.SetSize(axis, this->WrittenWidth(axis, tile[axis]));
    }
    return region;
  }

  /** The tiles that write a voxel of `region`, as a range of tile indices. */
  TileRangeType
  GetTilesIntersecting(const RegionType & region) const
  {
    TileRangeType range;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      const auto           stride = static_cast<IndexValueType>(m_Stride[axis]);
      const auto           lastOfGrid = static_cast<IndexValueType>(m_NumberOfTiles[axis]) - 1;
      const auto           width = static_cast<IndexValueType>(this->WrittenWidth(axis, 0));
      const IndexValueType first = region.GetIndex(axis) - m_Image.GetIndex(axis);
      const IndexValueType last = first + static_cast<IndexValueType>(region.GetSize(axis)) - 1;
      // The first tile whose written part ends at or after `first` (the last tile writes its whole extent).
      const IndexValueType firstTile =
        std::min(lastOfGrid, std::max<IndexValueType>(0, FloorDivide(first - width, stride) + 1));
      const IndexValueType lastTile = std::min(lastOfGrid, FloorDivide(last, stride));
      range.SetIndex(axis, firstTile);
      range.SetSize(axis, lastTile >= firstTile ? static_cast<SizeValueType>(lastTile - firstTile + 1) : 0);
    }
    return range;
  }

  /** The voxels of the image whose every writing tile lies in `tiles`, so whose values those tiles alone decide: the
   * union of their written parts (cropped to the image), less, for blended tiles, the margins that neighbouring
   * tiles outside `tiles` also write. Computing `tiles` completes this region. */
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
      const IndexValueType first = tiles.GetIndex(axis);
      const IndexValueType last = tiles.GetUpperIndex()[axis];
      const IndexValueType imageBegin = m_Image.GetIndex(axis);
      const IndexValueType imageEnd = m_Image.GetUpperIndex()[axis];
      // Past the written part of tile first - 1, and before the start of tile last + 1.
      const IndexValueType begin = first == 0 ? imageBegin
                                              : imageBegin + (first - 1) * stride +
                                                  static_cast<IndexValueType>(this->WrittenWidth(axis, first - 1));
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

  /** Compare two grids by their layout: image region, tile size, stride, border and blending. */
  /** @{ */
  bool
  operator==(const UNetTileGrid & other) const
  {
    return m_Image == other.m_Image && m_TileSize == other.m_TileSize && m_Stride == other.m_Stride &&
           m_Border == other.m_Border && m_Blend == other.m_Blend;
  }
  bool
  operator!=(const UNetTileGrid & other) const
  {
    return !(*this == other);
  }
  /** @} */

  /** The input region, reaching past the image where the tiles do, that the tiles in `tiles` read: their output
   * regions grown by the border. */
  RegionType
  GetInputSpanOfTiles(const TileRangeType & tiles) const
  {
    RegionType span = this->GetTileRegion(tiles.GetIndex());
    span.SetUpperIndex(this->GetTileRegion(tiles.GetUpperIndex()).GetUpperIndex());
    span.PadByRadius(m_Border);
    return span;
  }

private:
  /** How many voxels along `axis` tile `tile` writes from its start. */
  SizeValueType
  WrittenWidth(unsigned int axis, IndexValueType tile) const
  {
    const bool last = tile + 1 >= static_cast<IndexValueType>(m_NumberOfTiles[axis]);
    return m_Blend || last ? m_TileSize[axis] : m_Stride[axis];
  }

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

  RegionType m_Image{};
  SizeType   m_TileSize{ { 0 } };
  SizeType   m_Stride{ { 1 } };
  SizeType   m_NumberOfTiles{ { 0 } };
  SizeType   m_Border{ { 0 } };
  bool       m_Blend{ false };
};

} // end namespace itk

#endif // itkUNetTileGrid_h
