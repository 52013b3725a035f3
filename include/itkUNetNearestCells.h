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
#include "itkMultiThreaderBase.h"
#include "itkUNetRegionLines.h"

#include <algorithm>
#include <cmath>
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
    std::size_t                                lastCell = 0;
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
        if (cellLabels.empty() || label != cellLabels[lastCell]) // cells come in runs along x: look up once a run
        {
          const auto found = cellOfLabel.emplace(label, cellLabels.size());
          if (found.second)
          {
            cellLabels.push_back(label);
            boxLow.push_back(index);
            boxHigh.push_back(index);
          }
          lastCell = found.first->second;
        }
        IndexType & low = boxLow[lastCell];
        IndexType & high = boxHigh[lastCell];
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

    // The work units own slabs of the image along its last axis, so that each voxel has one writer. A cell whose
    // widened box crosses slabs is transformed by each of their work units, which offer only their own voxels.
    std::vector<RegionType> cellBoxes(cellLabels.size());
    for (std::size_t cell = 0; cell < cellLabels.size(); ++cell)
    {
      for (unsigned int axis = 0; axis < ImageDimension; ++axis)
      {
        const auto           margin = static_cast<IndexValueType>(std::floor(maximumDistance / spacing[axis]));
        const IndexValueType low = std::max(boxLow[cell][axis] - margin, region.GetIndex(axis));
        const IndexValueType high = std::min(boxHigh[cell][axis] + margin, region.GetUpperIndex()[axis]);
        cellBoxes[cell].SetIndex(axis, low);
        cellBoxes[cell].SetSize(axis, static_cast<SizeValueType>(high - low + 1));
      }
    }
    constexpr unsigned int last = ImageDimension - 1;
    const SizeValueType    slabs = std::max<SizeValueType>(
      1, std::min<SizeValueType>(MultiThreaderBase::GetGlobalDefaultNumberOfThreads(), region.GetSize(last)));
    const double maximumSquared = maximumDistance * maximumDistance;
    const auto   transformSlab = [&](SizeValueType slabNumber) {
      RegionType          slab = region;
      const SizeValueType first = region.GetSize(last) * slabNumber / slabs;
      slab.SetIndex(last, region.GetIndex(last) + static_cast<IndexValueType>(first));
      slab.SetSize(last, region.GetSize(last) * (slabNumber + 1) / slabs - first);
      Scratch scratch;
      for (std::size_t cell = 0; cell < cellLabels.size(); ++cell)
      {
        RegionType offered = cellBoxes[cell];
        if (!offered.Crop(slab))
        {
          continue;
        }
        SquaredDistanceInBox(labels, cellBoxes[cell], cellLabels[cell], spacing, scratch);
        const RegionType & box = cellBoxes[cell];
        UNetForEachLine(offered, [&](const IndexType & lineStart) {
          SizeValueType boxOffset = 0;
          SizeValueType boxStride = 1;
          for (unsigned int axis = 0; axis < ImageDimension; ++axis)
          {
            boxOffset += static_cast<SizeValueType>(lineStart[axis] - box.GetIndex(axis)) * boxStride;
            boxStride *= box.GetSize(axis);
          }
          const SizeValueType imageOffset = static_cast<SizeValueType>(labels->ComputeOffset(lineStart));
          for (SizeValueType i = 0; i < offered.GetSize(0); ++i)
          {
            const double squared = scratch.box[boxOffset + i];
            if (squared > maximumSquared)
            {
              continue;
            }
            const auto          value = static_cast<float>(squared);
            const SizeValueType v = imageOffset + i;
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
          }
        });
      }
    };
    MultiThreaderBase::New()->ParallelizeArray(0, slabs, transformSlab, nullptr);
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
  /** One work unit's scratch space: a box of squared distances and one line's lower envelope. */
  struct Scratch
  {
    std::vector<double>        box;
    std::vector<double>        line;
    std::vector<SizeValueType> apex;
    std::vector<double>        boundary;
  };

  /** Exact squared Euclidean distance to the voxels labelled `label`, for every voxel of `box`, x fastest, into
   * scratch.box: one lower envelope of parabolas per line (Felzenszwalb & Huttenlocher), axis after axis. */
  static void
  SquaredDistanceInBox(const LabelImageType * labels, const RegionType & box, LabelType label, const double * spacing,
                       Scratch & scratch)
  {
    constexpr double      infinity = std::numeric_limits<double>::infinity();
    std::vector<double> & distances = scratch.box;
    distances.resize(box.GetNumberOfPixels());
    const LabelType * buffer = labels->GetBufferPointer();
    double *          out = distances.data();
    UNetForEachLine(box, [&](const IndexType & lineStart) {
      const LabelType * in = buffer + labels->ComputeOffset(lineStart);
      for (SizeValueType i = 0; i < box.GetSize(0); ++i)
      {
        *out++ = in[i] == label ? 0.0 : infinity;
      }
    });

    SizeValueType stride = 1;
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      const SizeValueType          length = box.GetSize(axis);
      const SizeValueType          lines = box.GetNumberOfPixels() / length;
      const double                 weight = spacing[axis] * spacing[axis];
      std::vector<double> &        line = scratch.line;
      std::vector<SizeValueType> & apex = scratch.apex;
      std::vector<double> &        boundary = scratch.boundary;
      line.resize(length);
      apex.resize(length);
      boundary.resize(length);
      for (SizeValueType lineNumber = 0; lineNumber < lines; ++lineNumber)
      {
        // The line's first voxel: lineNumber enumerates the other axes, those below `axis` fastest.
        double * first = distances.data() + (lineNumber / stride) * stride * length + lineNumber % stride;
        long     k = -1;
        for (SizeValueType q = 0; q < length; ++q)
        {
          line[q] = first[q * stride];
          if (line[q] == infinity)
          {
            continue;
          }
          const double fq = line[q] + weight * static_cast<double>(q) * static_cast<double>(q);
          double       s = -infinity;
          while (k >= 0)
          {
            const SizeValueType p = apex[k];
            s = (fq - (line[p] + weight * static_cast<double>(p) * static_cast<double>(p))) /
                (2.0 * weight * static_cast<double>(q - p));
            if (s > boundary[k])
            {
              break;
            }
            --k;
          }
          ++k;
          apex[k] = q;
          boundary[k] = k == 0 ? -infinity : s;
        }
        if (k < 0)
        {
          continue; // no cell voxel on this line yet: it stays infinite
        }
        long j = 0;
        for (SizeValueType q = 0; q < length; ++q)
        {
          while (j < k && boundary[j + 1] < static_cast<double>(q))
          {
            ++j;
          }
          const double d = static_cast<double>(q) - static_cast<double>(apex[j]);
          first[q * stride] = weight * d * d + line[apex[j]];
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
};

} // end namespace itk

#endif // itkUNetNearestCells_h
