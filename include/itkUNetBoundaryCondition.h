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
#ifndef itkUNetBoundaryCondition_h
#define itkUNetBoundaryCondition_h

#include "itkImageRegion.h"
#include "itkUNetSegmentationImageFilterEnums.h"

#include <algorithm>

namespace itk
{

/** \class UNetBoundaryCondition
 * \brief What a tile's context reads outside the image: the image mirrored at its edges, or a constant.
 *
 * Asked two questions, as ITK's pad filters ask their boundary conditions: which image voxels a region that may
 * reach past the image reads (GetInputRequestedRegion), and which image index a position along an axis reads, if
 * any (MapIndex: none means the constant).
 *
 * Mirror repeats the edge voxel (... 1 0 | 0 1 ... n-1 | n-1 n-2 ...), again and again when the context is wider
 * than the image, as ITK's MirrorPadImageFilter does.
 *
 * \sa UNetSegmentationImageFilter, MirrorPadImageFilter
 * \ingroup UNetSegmentation
 */
template <unsigned int VDimension>
class UNetBoundaryCondition
{
public:
  /** The image's region, and the regions asked about. */
  using RegionType = ImageRegion<VDimension>;
  /** Mirror or Constant. */
  using BoundaryConditionEnum = UNetSegmentationImageFilterEnums::BoundaryCondition;

  /** Mirror, over an empty image region: assign a constructed one before use. */
  UNetBoundaryCondition() = default;

  /** The boundary condition `kind` at the edges of the image's largest possible region `image`. */
  UNetBoundaryCondition(BoundaryConditionEnum kind, const RegionType & image)
    : m_Kind(kind)
    , m_Image(image)
  {}

  /** Mirror or Constant. */
  BoundaryConditionEnum
  GetKind() const
  {
    return m_Kind;
  }

  /** The image index that position `x` (possibly outside the image) reads along `axis`, in `mapped`; false when it
   * reads the constant. */
  bool
  MapIndex(unsigned int axis, IndexValueType x, IndexValueType & mapped) const
  {
    const IndexValueType start = m_Image.GetIndex(axis);
    const auto           size = static_cast<IndexValueType>(m_Image.GetSize(axis));
    if (x >= start && x < start + size)
    {
      mapped = x;
      return true;
    }
    if (m_Kind == BoundaryConditionEnum::Constant)
    {
      return false;
    }
    // Periodic with period 2 size, the second half reversed.
    const IndexValueType period = 2 * size;
    const IndexValueType phase = ((x - start) % period + period) % period;
    mapped = start + (phase < size ? phase : period - 1 - phase);
    return true;
  }

  /** The image voxels that `span`, a region that may reach past the image, reads: with Mirror, those its positions
   * mirror to; with Constant, `span` cropped to the image (one voxel when it lies wholly outside, so that the
   * region stays valid). */
  RegionType
  GetInputRequestedRegion(const RegionType & span) const
  {
    RegionType required;
    for (unsigned int axis = 0; axis < VDimension; ++axis)
    {
      const IndexValueType spanBegin = span.GetIndex(axis);
      const IndexValueType spanEnd = span.GetUpperIndex()[axis];
      const IndexValueType imageBegin = m_Image.GetIndex(axis);
      const IndexValueType imageEnd = m_Image.GetUpperIndex()[axis];
      IndexValueType       low = std::max(spanBegin, imageBegin);
      IndexValueType       high = std::min(spanEnd, imageEnd);
      if (m_Kind == BoundaryConditionEnum::Mirror)
      {
        // The span can lie wholly outside the image on one side; its mirror images decide then.
        if (low > high)
        {
          low = imageEnd;
          high = imageBegin;
        }
        IndexValueType mapped = 0;
        for (IndexValueType x = spanBegin; x < imageBegin && x <= spanEnd; ++x)
        {
          this->MapIndex(axis, x, mapped);
          low = std::min(low, mapped);
          high = std::max(high, mapped);
        }
        for (IndexValueType x = std::max(spanBegin, imageEnd + 1); x <= spanEnd; ++x)
        {
          this->MapIndex(axis, x, mapped);
          low = std::min(low, mapped);
          high = std::max(high, mapped);
        }
      }
      else if (low > high)
      {
        low = high = std::min(std::max(spanBegin, imageBegin), imageEnd);
      }
      required.SetIndex(axis, low);
      required.SetSize(axis, static_cast<SizeValueType>(high - low + 1));
    }
    return required;
  }

private:
  BoundaryConditionEnum m_Kind{ BoundaryConditionEnum::Mirror };
  RegionType            m_Image{};
};

} // end namespace itk

#endif // itkUNetBoundaryCondition_h
