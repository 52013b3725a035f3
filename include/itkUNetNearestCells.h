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
#include "itkProcessObject.h"
#include "itkProgressTransformer.h"
#include "itkUNetRegionLines.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <type_traits>
#include <unordered_map>
#include <vector>

namespace itk
{
namespace unet_detail
{

/** \class NearestCells
 * \brief For every voxel of an instance label image, the distances to the nearest and the second-nearest cells.
 *
 * A cell is the set of voxels that share one non-zero label (0 is background; the IgnoreLabel, if not 0, marks
 * unannotated voxels, which belong to no cell); its voxels need not be connected. The distance from a voxel to a
 * cell is the Euclidean distance between voxel centres to the cell's nearest voxel (0 inside the cell), in voxels
 * or, with UseImageSpacing, in physical units along the image axes.
 *
 * Naively, one distance transform per cell costs O(voxels x cells). Here each cell's exact squared Euclidean
 * distance transform (separable lower envelopes of parabolas, Felzenszwalb & Huttenlocher 2012) is computed only in
 * its bounding box widened by MaximumDistance, so the cost is O(sum of those boxes); each voxel keeps the two
 * smallest distances it is offered, which come from two different cells since each cell offers one. Distances larger
 * than MaximumDistance are not computed and read as infinity: every distance up to it is exact. With
 * NearestEverywhere, the distance to the nearest cell is also computed beyond MaximumDistance, exactly, by one more
 * transform of the whole image.
 *
 * The work is split by the filter's multithreader into its NumberOfWorkUnits pieces of the image: each piece's
 * voxels have one writer, and a cell whose widened box crosses pieces is transformed by each of them, only as far as
 * the piece needs (the lines the separable passes read, never the whole box). The result does not depend on the
 * split: every voxel's value comes out of the same arithmetic.
 *
 * The label image must be buffered over its largest possible region.
 *
 * \ingroup UNetSegmentation
 */
template <typename TLabelImage>
class NearestCells
{
public:
  /** Image type aliases of the instance label image. */
  /** @{ */
  using LabelImageType = TLabelImage;
  using LabelType = typename LabelImageType::PixelType;
  using RegionType = typename LabelImageType::RegionType;
  using IndexType = typename LabelImageType::IndexType;
  using SizeType = typename LabelImageType::SizeType;
  /** @} */
  /** Spatial dimension of the label image. */
  static constexpr unsigned int ImageDimension = LabelImageType::ImageDimension;

  static_assert(std::is_integral<LabelType>::value, "Instance labels must have an integer pixel type.");

  /** Distances up to this are computed (default 0: only the cells' own voxels). */
  void
  SetMaximumDistance(double distance)
  {
    m_MaximumDistance = distance;
  }
  /** Distances in physical units along the image axes rather than in voxels (default off). */
  void
  SetUseImageSpacing(bool useImageSpacing)
  {
    m_UseImageSpacing = useImageSpacing;
  }
  /** The label of unannotated voxels, which are no cell (default 0: none, since 0 is the background). It may be
   * negative. */
  void
  SetIgnoreLabel(LabelType ignoreLabel)
  {
    m_IgnoreLabel = ignoreLabel;
  }
  /** Also compute the distance to the nearest cell beyond MaximumDistance, for every voxel (default off). */
  void
  SetNearestEverywhere(bool nearestEverywhere)
  {
    m_NearestEverywhere = nearestEverywhere;
  }

  /** Computes the distances with the multithreader and the NumberOfWorkUnits of `filter` (a default multithreader
   * without one), reports progress to `progress` (e.g. a ProgressTransformer's process object; none if null) and
   * throws ProcessAborted when `filter` is told to abort. Throws an ExceptionObject for negative labels. */
  void
  Compute(const LabelImageType * labels, ProcessObject * filter = nullptr, ProcessObject * progress = nullptr)
  {
    const RegionType region = labels->GetLargestPossibleRegion();
    if (labels->GetBufferedRegion() != region)
    {
      itkGenericExceptionMacro("NearestCells needs the label image buffered over its largest possible region.");
    }
    const MultiThreaderBase::Pointer threader =
      filter ? MultiThreaderBase::Pointer(filter->GetMultiThreader()) : MultiThreaderBase::New();
    if (filter)
    {
      threader->SetNumberOfWorkUnits(filter->GetNumberOfWorkUnits());
    }
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      m_Spacing[axis] = m_UseImageSpacing ? labels->GetSpacing()[axis] : 1.0;
      m_SpacingSquared[axis] = m_Spacing[axis] * m_Spacing[axis];
    }
    constexpr float infinity = std::numeric_limits<float>::infinity();
    m_NearestSquared.assign(region.GetNumberOfPixels(), infinity);
    m_SecondSquared.assign(region.GetNumberOfPixels(), infinity);

    this->FindCells(labels);
    const float boxesEnd = m_NearestEverywhere ? 0.7f : 1.0f;
    {
      const auto boxesProgress = SubProgress(progress, 0.0f, boxesEnd);
      this->OfferDistancesInBoxes(
        labels, threader, filter, boxesProgress ? boxesProgress->GetProcessObject() : nullptr);
    }
    if (m_NearestEverywhere)
    {
      this->NearestInWholeImage(labels, threader, filter, progress, boxesEnd);
    }
  }

  /** Squared distance to the nearest cell, per voxel in buffer order (infinity beyond MaximumDistance unless
   * NearestEverywhere, or where there is no cell). */
  const std::vector<float> &
  GetNearestSquaredDistances() const
  {
    return m_NearestSquared;
  }
  /** Squared distance to the second-nearest cell, a cell other than the nearest one (infinity beyond
   * MaximumDistance). */
  const std::vector<float> &
  GetSecondNearestSquaredDistances() const
  {
    return m_SecondSquared;
  }
  /** Cells (distinct labels other than 0 and the IgnoreLabel) found by the last Compute(). */
  SizeValueType
  GetNumberOfCells() const
  {
    return m_Cells.size();
  }
  /** Voxels of the cells. */
  SizeValueType
  GetNumberOfCellVoxels() const
  {
    return m_NumberOfCellVoxels;
  }
  /** Voxels with the IgnoreLabel. */
  SizeValueType
  GetNumberOfIgnoredVoxels() const
  {
    return m_NumberOfIgnoredVoxels;
  }

private:
  struct Cell
  {
    LabelType  label;
    RegionType box; // the cell's bounding box
  };

  /** One work unit's scratch space: a box of squared distances and one line's lower envelope. */
  struct Scratch
  {
    std::vector<double>        box;
    std::vector<double>        values;
    std::vector<SizeValueType> apex;
    std::vector<double>        boundary;
  };

  bool
  IsCell(LabelType label) const
  {
    return label != 0 && label != m_IgnoreLabel;
  }

  /** The cells' labels and bounding boxes, in buffer order of first appearance, and the voxel counts. */
  void
  FindCells(const LabelImageType * labels)
  {
    const RegionType                           region = labels->GetLargestPossibleRegion();
    const LabelType *                          buffer = labels->GetBufferPointer();
    std::unordered_map<LabelType, std::size_t> cellOfLabel;
    std::size_t                                lastCell = 0;
    m_Cells.clear();
    m_NumberOfCellVoxels = 0;
    m_NumberOfIgnoredVoxels = 0;
    for (const IndexType & lineStart : LineStarts(region))
    {
      const LabelType * line = buffer + labels->ComputeOffset(lineStart);
      for (SizeValueType x = 0; x < region.GetSize(0); ++x)
      {
        const LabelType label = line[x];
        if (label != 0 && label == m_IgnoreLabel)
        {
          ++m_NumberOfIgnoredVoxels;
          continue;
        }
        if constexpr (std::is_signed<LabelType>::value)
        {
          if (label < 0)
          {
            IndexType index = lineStart;
            index[0] += static_cast<IndexValueType>(x);
            itkGenericExceptionMacro("Instance labels must not be negative; found " << static_cast<long long>(label)
                                                                                    << " at index " << index << '.');
          }
        }
        if (label == 0)
        {
          continue;
        }
        ++m_NumberOfCellVoxels;
        IndexType index = lineStart;
        index[0] += static_cast<IndexValueType>(x);
        if (m_Cells.empty() || label != m_Cells[lastCell].label) // cells come in runs along x: look up once a run
        {
          const auto found = cellOfLabel.emplace(label, m_Cells.size());
          if (found.second)
          {
            m_Cells.push_back({ label, RegionType(index, SizeType::Filled(1)) });
          }
          lastCell = found.first->second;
        }
        RegionType & box = m_Cells[lastCell].box;
        for (unsigned int axis = 0; axis < ImageDimension; ++axis)
        {
          const IndexValueType low = std::min(box.GetIndex(axis), index[axis]);
          const IndexValueType high = std::max(box.GetUpperIndex()[axis], index[axis]);
          box.SetIndex(axis, low);
          box.SetSize(axis, static_cast<SizeValueType>(high - low + 1));
        }
      }
    }
  }

  /** Each cell offers its distances, up to MaximumDistance, to the voxels of its widened box; each piece of the
   * split image takes the offers to its own voxels. */
  void
  OfferDistancesInBoxes(const LabelImageType * labels, MultiThreaderBase * threader, ProcessObject * filter,
                        ProcessObject * progress)
  {
    const RegionType        region = labels->GetLargestPossibleRegion();
    std::vector<RegionType> widened(m_Cells.size());
    for (std::size_t cell = 0; cell < m_Cells.size(); ++cell)
    {
      for (unsigned int axis = 0; axis < ImageDimension; ++axis)
      {
        const auto           margin = static_cast<IndexValueType>(std::floor(m_MaximumDistance / m_Spacing[axis]));
        const IndexValueType low = std::max(m_Cells[cell].box.GetIndex(axis) - margin, region.GetIndex(axis));
        const IndexValueType high =
          std::min(m_Cells[cell].box.GetUpperIndex()[axis] + margin, region.GetUpperIndex()[axis]);
        widened[cell].SetIndex(axis, low);
        widened[cell].SetSize(axis, static_cast<SizeValueType>(high - low + 1));
      }
    }
    const double maximumSquared = m_MaximumDistance * m_MaximumDistance;
    const auto   offerToPiece = [&](const RegionType & piece) {
      Scratch scratch;
      for (std::size_t cell = 0; cell < m_Cells.size(); ++cell)
      {
        RegionType wanted = widened[cell];
        if (!wanted.Crop(piece))
        {
          continue;
        }
        if (filter && filter->GetAbortGenerateData())
        {
          return;
        }
        const RegionType computed =
          SquaredDistanceToCell(labels, m_Cells[cell], widened[cell], wanted, m_SpacingSquared, scratch);
        for (const IndexType & lineStart : LineStarts(wanted))
        {
          const double *      line = scratch.box.data() + OffsetInRegion(computed, lineStart);
          const SizeValueType imageOffset = static_cast<SizeValueType>(labels->ComputeOffset(lineStart));
          for (SizeValueType x = 0; x < wanted.GetSize(0); ++x)
          {
            const double squared = line[x];
            if (squared > maximumSquared)
            {
              continue;
            }
            const auto          value = static_cast<float>(squared);
            const SizeValueType v = imageOffset + x;
            if (value < m_NearestSquared[v])
            {
              m_SecondSquared[v] = m_NearestSquared[v];
              m_NearestSquared[v] = value;
            }
            else if (value < m_SecondSquared[v])
            {
              m_SecondSquared[v] = value;
            }
          }
        }
      }
    };
    threader->template ParallelizeImageRegion<ImageDimension>(region, offerToPiece, progress);
    ThrowIfAborted(filter);
  }

  /** The exact squared distance to the nearest cell for every voxel: one transform of the whole image, each axis's
   * pass split into pieces that hold whole lines along it. */
  void
  NearestInWholeImage(const LabelImageType * labels, MultiThreaderBase * threader, ProcessObject * filter,
                      ProcessObject * progress, float progressStart)
  {
    const RegionType  region = labels->GetLargestPossibleRegion();
    const LabelType * buffer = labels->GetBufferPointer();
    float *           distances = m_NearestSquared.data();
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      const SizeValueType length = region.GetSize(axis);
      const SizeValueType stride = static_cast<SizeValueType>(labels->GetOffsetTable()[axis]);
      const auto          passOverPiece = [&](const RegionType & piece) {
        if (filter && filter->GetAbortGenerateData())
        {
          return;
        }
        Scratch scratch;
        for (const IndexType & lineStart : LineStarts(piece, axis))
        {
          const SizeValueType first = static_cast<SizeValueType>(labels->ComputeOffset(lineStart));
          if (axis == 0) // the first pass starts from the cells themselves
          {
            for (SizeValueType x = 0; x < length; ++x)
            {
              distances[first + x] = IsCell(buffer[first + x]) ? 0.0f : std::numeric_limits<float>::infinity();
            }
          }
          LowerEnvelope(distances + first, stride, 0, 0, length, 0, length, m_SpacingSquared[axis], scratch);
        }
      };
      const float passStart = progressStart + (1.0f - progressStart) * axis / ImageDimension;
      const float passEnd = progressStart + (1.0f - progressStart) * (axis + 1) / ImageDimension;
      const auto  passProgress = SubProgress(progress, passStart, passEnd);
      threader->template ParallelizeImageRegionRestrictDirection<ImageDimension>(
        axis, region, passOverPiece, passProgress ? passProgress->GetProcessObject() : nullptr);
      ThrowIfAborted(filter);
    }
  }

  /** Progress from `start` to `end` of `progress` (none without it), for a stage that reports from 0 to 1. */
  static std::unique_ptr<ProgressTransformer>
  SubProgress(ProcessObject * progress, float start, float end)
  {
    return std::unique_ptr<ProgressTransformer>(progress ? new ProgressTransformer(start, end, progress) : nullptr);
  }

  /** Stops with ProcessAborted when `filter` has been told to abort (its pieces stop early: what they left is not
   * to be used). */
  static void
  ThrowIfAborted(const ProcessObject * filter)
  {
    if (filter && filter->GetAbortGenerateData())
    {
      ProcessAborted error(__FILE__, __LINE__);
      error.SetDescription(std::string("Object ") + filter->GetNameOfClass() + ": AbortGenerateDataOn");
      throw error;
    }
  }

  /** The exact squared distance to `cell`, into scratch.box, for the voxels of `wanted` (part of the cell's widened
   * box), computed by separable passes axis after axis as over the whole widened box, but only along the lines
   * those voxels need: before the pass along an axis, the finite values along it lie in the cell's bounding box, so
   * each pass reads that range of its lines and writes the wanted range, over the wanted range of the axes passed
   * and the box's range of the others. Returns the region scratch.box is laid out over. */
  static RegionType
  SquaredDistanceToCell(const LabelImageType * labels, const Cell & cell, const RegionType & widened,
                        const RegionType & wanted, const double * spacingSquared, Scratch & scratch)
  {
    RegionType computed; // wanted and the cell's box
    for (unsigned int axis = 0; axis < ImageDimension; ++axis)
    {
      const IndexValueType low = std::min(wanted.GetIndex(axis), cell.box.GetIndex(axis));
      const IndexValueType high = std::max(wanted.GetUpperIndex()[axis], cell.box.GetUpperIndex()[axis]);
      computed.SetIndex(axis, low);
      computed.SetSize(axis, static_cast<SizeValueType>(high - low + 1));
    }
    scratch.box.resize(computed.GetNumberOfPixels());
    double *          box = scratch.box.data();
    const LabelType * buffer = labels->GetBufferPointer();
    for (const IndexType & lineStart : LineStarts(cell.box))
    {
      const LabelType * in = buffer + labels->ComputeOffset(lineStart);
      double *          out = box + OffsetInRegion(computed, lineStart);
      for (SizeValueType x = 0; x < cell.box.GetSize(0); ++x)
      {
        out[x] = in[x] == cell.label ? 0.0 : std::numeric_limits<double>::infinity();
      }
    }

    SizeValueType strides[ImageDimension];
    strides[0] = 1;
    for (unsigned int axis = 1; axis < ImageDimension; ++axis)
    {
      strides[axis] = strides[axis - 1] * computed.GetSize(axis - 1);
    }
    // The last axis first: the pieces of the image are slabs along it (ITK's splitter cuts the slowest axis), so the
    // voxels a piece wants are cut on that axis first and the later passes run only over the piece's own lines.
    RegionType lines = cell.box; // axes already passed span `wanted`, the others the cell's box
    for (unsigned int pass = 0; pass < ImageDimension; ++pass)
    {
      const unsigned int   axis = ImageDimension - 1 - pass;
      const IndexValueType start = computed.GetIndex(axis);
      for (const IndexType & lineStart : LineStarts(lines, axis))
      {
        IndexType first = lineStart;
        first[axis] = start;
        // Positions along the line count from the widened box's first index, whatever the piece: the same
        // arithmetic for every split.
        LowerEnvelope(box + OffsetInRegion(computed, first),
                      strides[axis],
                      start - widened.GetIndex(axis),
                      static_cast<SizeValueType>(cell.box.GetIndex(axis) - start),
                      static_cast<SizeValueType>(cell.box.GetUpperIndex()[axis] + 1 - start),
                      static_cast<SizeValueType>(wanted.GetIndex(axis) - start),
                      static_cast<SizeValueType>(wanted.GetUpperIndex()[axis] + 1 - start),
                      spacingSquared[axis],
                      scratch);
      }
      lines.SetIndex(axis, wanted.GetIndex(axis));
      lines.SetSize(axis, wanted.GetSize(axis));
    }
    return computed;
  }

  /** One line's pass of the separable transform (Felzenszwalb & Huttenlocher): reads the squared distances at
   * positions [readBegin, readEnd) of the line (elements line[i * stride]; infinity elsewhere), writes the lower
   * envelope of the parabolas weight * (q - p)^2 + f(p) at positions [writeBegin, writeEnd). Parabola positions are
   * i + origin. */
  template <typename TValue>
  static void
  LowerEnvelope(TValue * line, SizeValueType stride, IndexValueType origin, SizeValueType readBegin,
                SizeValueType readEnd, SizeValueType writeBegin, SizeValueType writeEnd, double weight,
                Scratch & scratch)
  {
    constexpr double             infinity = std::numeric_limits<double>::infinity();
    std::vector<double> &        values = scratch.values;
    std::vector<SizeValueType> & apex = scratch.apex;
    std::vector<double> &        boundary = scratch.boundary;
    const SizeValueType          length = std::max(readEnd, writeEnd);
    values.resize(length);
    apex.resize(length);
    boundary.resize(length);
    long k = -1;
    for (SizeValueType i = readBegin; i < readEnd; ++i)
    {
      values[i] = static_cast<double>(line[i * stride]);
      if (values[i] == infinity)
      {
        continue;
      }
      const double q = static_cast<double>(static_cast<IndexValueType>(i) + origin);
      const double fq = values[i] + weight * q * q;
      double       s = -infinity;
      while (k >= 0)
      {
        const SizeValueType p = apex[k];
        const double        pp = static_cast<double>(static_cast<IndexValueType>(p) + origin);
        s = (fq - (values[p] + weight * pp * pp)) / (2.0 * weight * static_cast<double>(i - p));
        if (s > boundary[k])
        {
          break;
        }
        --k;
      }
      ++k;
      apex[k] = i;
      boundary[k] = k == 0 ? -infinity : s;
    }
    long j = 0;
    for (SizeValueType i = writeBegin; i < writeEnd; ++i)
    {
      if (k < 0) // no cell voxel on this line
      {
        line[i * stride] = static_cast<TValue>(infinity);
        continue;
      }
      const double q = static_cast<double>(static_cast<IndexValueType>(i) + origin);
      while (j < k && boundary[j + 1] < q)
      {
        ++j;
      }
      const double d = q - static_cast<double>(static_cast<IndexValueType>(apex[j]) + origin);
      line[i * stride] = static_cast<TValue>(weight * d * d + values[apex[j]]);
    }
  }

  double             m_MaximumDistance{ 0.0 };
  bool               m_UseImageSpacing{ false };
  LabelType          m_IgnoreLabel{ 0 };
  bool               m_NearestEverywhere{ false };
  double             m_Spacing[ImageDimension]{};
  double             m_SpacingSquared[ImageDimension]{};
  std::vector<Cell>  m_Cells{};
  std::vector<float> m_NearestSquared{};
  std::vector<float> m_SecondSquared{};
  SizeValueType      m_NumberOfCellVoxels{ 0 };
  SizeValueType      m_NumberOfIgnoredVoxels{ 0 };
};

} // end namespace unet_detail
} // end namespace itk

#endif // itkUNetNearestCells_h
