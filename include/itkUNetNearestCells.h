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
#ifndef itkUNetNearestCells_h
#define itkUNetNearestCells_h

#include "itkImage.h"
#include "itkMacro.h"

#include <limits>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace itk
{

/** \class UNetNearestCells
 * \brief For every voxel of an instance label image, the distances to the nearest and the second-nearest cells.
 *
 * A cell is the set of voxels that share one non-zero label (0 is background); its voxels need not be connected.
 * The distance from a voxel to a cell is the Euclidean distance between voxel centres to the cell's nearest voxel
 * (0 inside the cell), in voxels or, with UseImageSpacing, in physical units along the image axes.
 *
 * Naively, one distance transform per cell costs O(voxels x cells). Here each cell's exact squared Euclidean
 * distance transform (separable lower envelopes of parabolas, Felzenszwalb & Huttenlocher 2012) is computed only in
 * its bounding box widened by MaximumDistance, so the cost is O(sum of those boxes); each voxel keeps the two
 * smallest distances it is offered, which come from two different cells since each cell offers one. Distances larger
 * than MaximumDistance are not computed and read as infinity: every distance up to it is exact.
 *
 * The label image must be buffered over its largest possible region.
 *
 * \ingroup UNetSegmentation
 */
template <typename TLabelImage>
class UNetNearestCells
{
public:
  using LabelImageType = TLabelImage;
  using LabelType = typename LabelImageType::PixelType;
  using RegionType = typename LabelImageType::RegionType;
  using IndexType = typename LabelImageType::IndexType;
  static constexpr unsigned int ImageDimension = LabelImageType::ImageDimension;

  static_assert(std::is_integral<LabelType>::value, "Instance labels must have an integer pixel type.");

  /** Computes the distances; throws an ExceptionObject for negative labels. */
  void
  Compute(const LabelImageType * labels, double maximumDistance, bool useImageSpacing)
  {
    const RegionType region = labels->GetLargestPossibleRegion();
    if (labels->GetBufferedRegion() != region)
    {
      itkGenericExceptionMacro("UNetNearestCells needs the label image buffered over its largest possible region.");
    }
    const SizeValueType voxels = region.GetNumberOfPixels();
    const LabelType *   buffer = labels->GetBufferPointer();
    constexpr float     infinity = std::numeric_limits<float>::infinity();
    m_NearestSquared.assign(voxels, infinity);
    m_SecondSquared.assign(voxels, infinity);
    m_NearestLabel.assign(voxels, LabelType{});

    double spacing[ImageDimension];
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      spacing[axis] = useImageSpacing ? labels->GetSpacing()[axis] : 1.0;
    }

    // Bounding boxes of the cells, in buffer order of first appearance.
    std::vector<LabelType>                     cellLabels;
    std::vector<IndexType>                     boxLow;
    std::vector<IndexType>                     boxHigh;
    std::unordered_map<LabelType, std::size_t> cellOfLabel;
    m_NumberOfCellVoxels = 0;
    IndexType index = region.GetIndex();
    for (SizeValueType v = 0; v < voxels; ++v)
    {
      const LabelType label = buffer[v];
      if constexpr (std::is_signed<LabelType>::value)
      {
        if (label < 0)
        {
          itkGenericExceptionMacro("Instance labels must not be negative; found " << static_cast<long long>(label)
                                                                                  << " at index " << index << '.');
        }
      }
      if (label != 0)
      {
        ++m_NumberOfCellVoxels;
        const auto found = cellOfLabel.emplace(label, cellLabels.size());
        if (found.second)
        {
          cellLabels.push_back(label);
          boxLow.push_back(index);
          boxHigh.push_back(index);
        }
        IndexType & low = boxLow[found.first->second];
        IndexType & high = boxHigh[found.first->second];
        for (unsigned int axis = 0; axis < ImageDimension; ++axis)
        {
          low[axis] = std::min(low[axis], index[axis]);
          high[axis] = std::max(high[axis], index[axis]);
        }
      }
      for (unsigned int axis = 0; axis < ImageDimension; ++axis)
      {
        if (++index[axis] < region.GetIndex(axis) + static_cast<IndexValueType>(region.GetSize(axis)))
        {
          break;
        }
        index[axis] = region.GetIndex(axis);
      }
    }
    m_NumberOfCells = cellLabels.size();

    const double maximumSquared = maximumDistance * maximumDistance;
    const auto & strides = labels->GetOffsetTable();
    std::vector<double> box;
    for (std::size_t cell = 0; cell < cellLabels.size(); ++cell)
    {
      RegionType cellBox;
      for (unsigned int axis = 0; axis < ImageDimension; ++axis)
      {
        const auto margin = static_cast<IndexValueType>(std::floor(maximumDistance / spacing[axis]));
        const IndexValueType low = std::max(boxLow[cell][axis] - margin, region.GetIndex(axis));
        const IndexValueType high = std::min(boxHigh[cell][axis] + margin, region.GetUpperIndex()[axis]);
        cellBox.SetIndex(axis, low);
        cellBox.SetSize(axis, static_cast<SizeValueType>(high - low + 1));
      }
      this->SquaredDistanceInBox(buffer, strides, region, cellBox, cellLabels[cell], spacing, box);

      // Offer each voxel of the box its distance to this cell.
      SizeValueType boxVoxel = 0;
      ForEachVoxel(cellBox, region, strides, [&](SizeValueType v) {
        const double squared = box[boxVoxel++];
        if (squared > maximumSquared)
        {
          return;
        }
        const auto value = static_cast<float>(squared);
        if (value < m_NearestSquared[v])
        {
          m_SecondSquared[v] = m_NearestSquared[v];
          m_NearestSquared[v] = value;
          m_NearestLabel[v] = cellLabels[cell];
        }
        else if (value < m_SecondSquared[v])
        {
          m_SecondSquared[v] = value;
        }
      });
    }
  }

  /** Squared distance to the nearest cell, per voxel in buffer order (infinity beyond MaximumDistance). */
  const std::vector<float> &
  GetNearestSquaredDistances() const
  {
    return m_NearestSquared;
  }
  /** Squared distance to the second-nearest cell, a cell other than the nearest one. */
  const std::vector<float> &
  GetSecondNearestSquaredDistances() const
  {
    return m_SecondSquared;
  }
  /** Label of the nearest cell (0 where no cell is within MaximumDistance). */
  const std::vector<LabelType> &
  GetNearestLabels() const
  {
    return m_NearestLabel;
  }
  SizeValueType
  GetNumberOfCells() const
  {
    return m_NumberOfCells;
  }
  SizeValueType
  GetNumberOfCellVoxels() const
  {
    return m_NumberOfCellVoxels;
  }

private:
  template <typename TOffsetTable, typename TVisitor>
  static void
  ForEachVoxel(const RegionType & box, const RegionType & region, const TOffsetTable & strides, TVisitor && visit)
  {
    IndexType index = box.GetIndex();
    for (SizeValueType n = 0; n < box.GetNumberOfPixels(); ++n)
    {
      SizeValueType offset = 0;
      for (unsigned int axis = 0; axis < ImageDimension; ++axis)
      {
        offset += static_cast<SizeValueType>(index[axis] - region.GetIndex(axis)) * strides[axis];
      }
      visit(offset);
      for (unsigned int axis = 0; axis < ImageDimension; ++axis)
      {
        if (++index[axis] < box.GetIndex(axis) + static_cast<IndexValueType>(box.GetSize(axis)))
        {
          break;
        }
        index[axis] = box.GetIndex(axis);
      }
    }
  }

  /** Exact squared Euclidean distance to the voxels labelled `label`, for every voxel of `box`, box order. */
  template <typename TOffsetTable>
  void
  SquaredDistanceInBox(const LabelType *     buffer,
                       const TOffsetTable &  strides,
                       const RegionType &    region,
                       const RegionType &    box,
                       LabelType             label,
                       const double *        spacing,
                       std::vector<double> & distances)
  {
    constexpr double infinity = std::numeric_limits<double>::infinity();
    distances.resize(box.GetNumberOfPixels());
    SizeValueType boxVoxel = 0;
    ForEachVoxel(box, region, strides, [&](SizeValueType v) {
      distances[boxVoxel++] = buffer[v] == label ? 0.0 : infinity;
    });

    // One lower envelope of parabolas per line, axis after axis.
    SizeValueType stride = 1;
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      const SizeValueType length = box.GetSize(axis);
      const SizeValueType lines = box.GetNumberOfPixels() / length;
      const double        weight = spacing[axis] * spacing[axis];
      m_Line.resize(length);
      m_Apex.resize(length);
      m_Boundary.resize(length + 1);
      for (SizeValueType line = 0; line < lines; ++line)
      {
        // The line's first voxel: `line` enumerates the other axes, those below `axis` fastest.
        const SizeValueType first = (line / stride) * stride * length + line % stride;
        for (SizeValueType i = 0; i < length; ++i)
        {
          m_Line[i] = distances[first + i * stride];
        }
        long k = -1;
        for (SizeValueType q = 0; q < length; ++q)
        {
          if (m_Line[q] == infinity)
          {
            continue;
          }
          const double fq = m_Line[q] + weight * static_cast<double>(q) * static_cast<double>(q);
          double       s = -infinity;
          while (k >= 0)
          {
            const SizeValueType p = m_Apex[k];
            s = (fq - (m_Line[p] + weight * static_cast<double>(p) * static_cast<double>(p))) /
                (2.0 * weight * static_cast<double>(q - p));
            if (s > m_Boundary[k])
            {
              break;
            }
            --k;
          }
          ++k;
          m_Apex[k] = q;
          m_Boundary[k] = k == 0 ? -infinity : s;
        }
        if (k < 0)
        {
          continue;
        }
        long j = 0;
        for (SizeValueType q = 0; q < length; ++q)
        {
          while (j < k && m_Boundary[j + 1] < static_cast<double>(q))
          {
            ++j;
          }
          const double d = static_cast<double>(q) - static_cast<double>(m_Apex[j]);
          distances[first + q * stride] = weight * d * d + m_Line[m_Apex[j]];
        }
      }
      stride *= length;
    }
  }

  std::vector<float>     m_NearestSquared{};
  std::vector<float>     m_SecondSquared{};
  std::vector<LabelType> m_NearestLabel{};
  SizeValueType          m_NumberOfCells{ 0 };
  SizeValueType          m_NumberOfCellVoxels{ 0 };

  // Scratch space of one line's lower envelope.
  std::vector<double>        m_Line{};
  std::vector<SizeValueType> m_Apex{};
  std::vector<double>        m_Boundary{};
};

} // end namespace itk

#endif // itkUNetNearestCells_h
