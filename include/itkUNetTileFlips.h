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
#ifndef itkUNetTileFlips_h
#define itkUNetTileFlips_h

#include "itkFixedArray.h"
#include "itkImageRegion.h"
#include "itkIndexRange.h"

#include <algorithm>
#include <vector>

namespace itk
{
namespace unet_detail
{

/** \class TileFlips
 * \brief Test-time flip augmentation of a tile: every combination of flips along a chosen set of axes (2^k of them
 * for k axes, the identity first, as nnU-Net mirrors), applied to the input tile with its context and undone on the
 * class probabilities, which are averaged.
 *
 * The average is summed in double, in the order of the combinations, so that it depends on nothing but the tile;
 * when every flip gives the same probabilities, the average is exactly them.
 *
 * \ingroup UNetSegmentation
 */
template <unsigned int VDimension>
class TileFlips
{
public:
  /** One flag per axis: whether to flip along it. */
  using FlipAxesType = FixedArray<bool, VDimension>;
  /** A tile's edges. */
  using SizeType = Size<VDimension>;

  /** No flips: the identity alone. */
  TileFlips() = default;

  /** Every combination of flips along the axes flagged in `axes`, the identity first. */
  explicit TileFlips(const FlipAxesType & axes)
  {
    unsigned int chosen[VDimension];
    unsigned int count = 0;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      if (axes[axis])
      {
        chosen[count++] = axis;
      }
    }
    m_Combinations.clear();
    for (unsigned int mask = 0; mask < (1u << count); ++mask)
    {
      FlipAxesType combination;
      combination.Fill(false);
      for (unsigned int bit = 0; bit < count; ++bit)
      {
        combination[chosen[bit]] = ((mask >> bit) & 1u) != 0;
      }
      m_Combinations.push_back(combination);
    }
  }

  /** The number of network inputs a tile becomes (1 without flips). */
  unsigned int
  GetNumberOfCopies() const
  {
    return static_cast<unsigned int>(m_Combinations.size());
  }

  /** Writes the `copy`-th flipped version of `tile` (`components` images of `size`, one after the other, x fastest).
   * Flips are their own inverse: the same call undoes one. */
  void
  Flip(unsigned int copy, const float * tile, const SizeType & size, unsigned int components, float * flipped) const
  {
    const FlipAxesType &          flip = m_Combinations[copy];
    const ImageRegion<VDimension> region(size);
    const SizeValueType           voxels = region.GetNumberOfPixels();
    SizeValueType                 target = 0;
    for (const auto & index : ImageRegionIndexRange<VDimension>(region))
    {
      SizeValueType source = 0;
      SizeValueType stride = 1;
      for (unsigned int axis = 0; axis < VDimension; ++axis)
      {
        const auto along = static_cast<SizeValueType>(index[axis]);
        source += (flip[axis] ? size[axis] - 1 - along : along) * stride;
        stride *= size[axis];
      }
      for (unsigned int c = 0; c < components; ++c)
      {
        flipped[c * voxels + target] = tile[c * voxels + source];
      }
      ++target;
    }
  }

  /** Averages the probabilities of a tile's copies (`classes` x tile voxels each, one copy after the other, as the
   * network gave them for the flipped inputs) into `average`, undoing each copy's flips. */
  void
  Average(const float * copies, const SizeType & size, unsigned int classes, float * average) const
  {
    const SizeValueType values = ImageRegion<VDimension>(size).GetNumberOfPixels() * classes;
    if (m_Combinations.size() <= 1)
    {
      std::copy_n(copies, values, average);
      return;
    }
    std::vector<double> sums(values, 0.0);
    std::vector<float>  unflipped(values);
    for (unsigned int copy = 0; copy < m_Combinations.size(); ++copy)
    {
      this->Flip(copy, copies + copy * values, size, classes, unflipped.data());
      for (SizeValueType i = 0; i < values; ++i)
      {
        sums[i] += unflipped[i];
      }
    }
    for (SizeValueType i = 0; i < values; ++i)
    {
      average[i] = static_cast<float>(sums[i] / static_cast<double>(m_Combinations.size()));
    }
  }

private:
  std::vector<FlipAxesType> m_Combinations{ FlipAxesType::Filled(false) };
};

} // end namespace unet_detail
} // end namespace itk

#endif // itkUNetTileFlips_h
