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
#ifndef itkUNetTileAccumulator_h
#define itkUNetTileAccumulator_h

#include "itkImageRegion.h"
#include "itkUNetRegionLines.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace itk
{
namespace unet_detail
{

/** The most probable of `classes` probabilities `stride` apart (the lowest class on ties): a voxel's label. */
inline unsigned int
MostProbableClass(const float * probabilities, unsigned int classes, SizeValueType stride = 1)
{
  unsigned int best = 0;
  for (unsigned int k = 1; k < classes; ++k)
  {
    best = probabilities[k * stride] > probabilities[best * stride] ? k : best;
  }
  return best;
}

/** \class TileAccumulator
 * \brief Puts the class probabilities of tiles into an output region: the label map and, optionally, the
 * probabilities, by one of two strategies.
 *
 * Copy (tiles that are not blended write each voxel once): a tile's probabilities over the part it writes are copied
 * and their labels (MostProbableClass) written as the tile arrives. Blend (overlapping tiles, UNetTileGrid::GetBlend):
 * every voxel accumulates weight * probability over the tiles covering it, with the weights of a Gaussian centred on
 * each tile (sigma = edge / 8 along each axis) or equal weights, and Finish() divides by the summed weights and writes
 * the labels. The accumulation runs in the order the tiles are added, so adding them in the same order gives the same
 * bits.
 *
 * \sa UNetSegmentationImageFilter, UNetTileGrid
 * \ingroup UNetSegmentation
 */
template <unsigned int VDimension, typename TLabel>
class TileAccumulator
{
public:
  /** Regions and sizes of output voxels. */
  /** @{ */
  using RegionType = ImageRegion<VDimension>;
  using SizeType = typename RegionType::SizeType;
  /** @} */

  /** `region`: the output voxels; `labels` and `probabilities` (`classes` floats a voxel, or null when they are not
   * wanted) hold it, x fastest. `blend`: tiles overlap and are blended, with Gaussian weights if `gaussian`. */
  TileAccumulator(const RegionType & region, unsigned int classes, const SizeType & tileSize, bool blend, bool gaussian,
                  TLabel * labels, float * probabilities)
    : m_Region(region)
    , m_Classes(classes)
    , m_Blend(blend)
    , m_Labels(labels)
    , m_Probabilities(probabilities)
  {
    if (!m_Blend)
    {
      return;
    }
    const SizeValueType voxels = region.GetNumberOfPixels();
    if (m_Probabilities == nullptr)
    {
      m_OwnSums.resize(voxels * classes);
      m_Probabilities = m_OwnSums.data();
    }
    std::fill_n(m_Probabilities, voxels * classes, 0.0f);
    m_WeightSums.assign(voxels, 0.0f);
    m_TileWeights = MakeBlendingWeights(tileSize, gaussian);
  }

  /** Adds the probabilities of the tile whose output region is `tile` (`classes` x tile voxels, class by class, x
   * fastest) over `written` (the part of the tile it writes) within the region. */
  void
  Add(const RegionType & tile, const RegionType & written, const float * tileProbabilities)
  {
    RegionType covered = written;
    if (!covered.Crop(m_Region))
    {
      return;
    }
    const SizeValueType tileVoxels = tile.GetNumberOfPixels();
    const SizeValueType lineLength = covered.GetSize(0);
    for (const auto & lineStart : LineStarts(covered))
    {
      const float *       source = tileProbabilities + OffsetInRegion(tile, lineStart);
      const SizeValueType outputOffset = OffsetInRegion(m_Region, lineStart);
      if (m_Blend)
      {
        this->BlendLine(
          source, m_TileWeights.data() + OffsetInRegion(tile, lineStart), tileVoxels, outputOffset, lineLength);
      }
      else
      {
        this->CopyLine(source, tileVoxels, outputOffset, lineLength);
      }
    }
  }

  /** Blended tiles: the weighted means and their labels, for every voxel some tile covered. */
  void
  Finish()
  {
    if (!m_Blend)
    {
      return;
    }
    const SizeValueType voxels = m_Region.GetNumberOfPixels();
    for (SizeValueType v = 0; v < voxels; ++v)
    {
      if (m_WeightSums[v] == 0.0f)
      {
        continue;
      }
      float * voxel = m_Probabilities + v * m_Classes;
      for (unsigned int k = 0; k < m_Classes; ++k)
      {
        voxel[k] /= m_WeightSums[v];
      }
      m_Labels[v] = static_cast<TLabel>(MostProbableClass(voxel, m_Classes));
    }
  }

  /** Blending weight of each voxel of a tile, x fastest: a Gaussian centred on the tile (sigma = edge / 8 along each
   * axis), or 1 everywhere when not Gaussian. Clamped away from 0 so that every voxel keeps a weight. */
  static std::vector<float>
  MakeBlendingWeights(const SizeType & tileSize, bool gaussian)
  {
    const RegionType   tile(tileSize);
    std::vector<float> weights(tile.GetNumberOfPixels(), 1.0f);
    if (!gaussian)
    {
      return weights;
    }
    std::vector<std::vector<double>> profiles(VDimension);
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      const double centre = 0.5 * (static_cast<double>(tileSize[axis]) - 1.0);
      const double sigma = std::max(static_cast<double>(tileSize[axis]) / 8.0, 1e-3);
      for (SizeValueType i = 0; i < tileSize[axis]; ++i)
      {
        const double d = (static_cast<double>(i) - centre) / sigma;
        profiles[axis].push_back(std::exp(-0.5 * d * d));
      }
    }
    auto weight = weights.begin();
    for (const auto & index : ImageRegionIndexRange<VDimension>(tile))
    {
      double product = 1.0;
      for (unsigned int axis = 0; axis < VDimension; ++axis)
      {
        product *= profiles[axis][index[axis]];
      }
      *weight++ = static_cast<float>(std::max(product, 1e-6));
    }
    return weights;
  }

private:
  /** Copy: `length` voxels of a tile line (classes `tileVoxels` apart) into the outputs from `outputOffset`. */
  void
  CopyLine(const float * source, SizeValueType tileVoxels, SizeValueType outputOffset, SizeValueType length)
  {
    for (SizeValueType i = 0; i < length; ++i)
    {
      if (m_Probabilities != nullptr)
      {
        float * voxel = m_Probabilities + (outputOffset + i) * m_Classes;
        for (unsigned int k = 0; k < m_Classes; ++k)
        {
          voxel[k] = source[i + k * tileVoxels];
        }
      }
      m_Labels[outputOffset + i] = static_cast<TLabel>(MostProbableClass(source + i, m_Classes, tileVoxels));
    }
  }

  /** Blend: adds `length` voxels of a tile line, weighted, to the sums from `outputOffset`. */
  void
  BlendLine(const float * source, const float * weights, SizeValueType tileVoxels, SizeValueType outputOffset,
            SizeValueType length)
  {
    for (SizeValueType i = 0; i < length; ++i)
    {
      float * sums = m_Probabilities + (outputOffset + i) * m_Classes;
      for (unsigned int k = 0; k < m_Classes; ++k)
      {
        sums[k] += weights[i] * source[i + k * tileVoxels];
      }
      m_WeightSums[outputOffset + i] += weights[i];
    }
  }

  RegionType         m_Region;
  unsigned int       m_Classes;
  bool               m_Blend;
  TLabel *           m_Labels;
  float *            m_Probabilities;
  std::vector<float> m_OwnSums{};
  std::vector<float> m_WeightSums{};
  std::vector<float> m_TileWeights{};
};

} // end namespace unet_detail
} // end namespace itk

#endif // itkUNetTileAccumulator_h
