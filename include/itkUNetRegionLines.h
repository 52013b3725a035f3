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
#ifndef itkUNetRegionLines_h
#define itkUNetRegionLines_h

#include "itkImageRegion.h"
#include "itkIndexRange.h"

#include <algorithm>

namespace itk
{
namespace unet_detail
{

/** The first index of every line of `region` along `axis` (default x, axis 0), in buffer order: a range over the
 * region with its extent on that axis reduced to one voxel (empty when the region is).
 * \ingroup UNetSegmentation */
template <unsigned int VDimension>
ImageRegionIndexRange<VDimension>
LineStarts(ImageRegion<VDimension> region, unsigned int axis = 0)
{
  if (region.GetSize(axis) > 0)
  {
    region.SetSize(axis, 1);
  }
  return ImageRegionIndexRange<VDimension>(region);
}

/** The offset of `index` in a buffer that holds `region`, x fastest.
 * \ingroup UNetSegmentation */
template <unsigned int VDimension>
SizeValueType
OffsetInRegion(const ImageRegion<VDimension> & region, const Index<VDimension> & index)
{
  SizeValueType offset = 0;
  SizeValueType stride = 1;
  for (unsigned int axis = 0; axis < VDimension; ++axis)
  {
    offset += static_cast<SizeValueType>(index[axis] - region.GetIndex(axis)) * stride;
    stride *= region.GetSize(axis);
  }
  return offset;
}

/** Copies `block` (a region inside both) from `source`, a buffer holding `sourceRegion`, to `target`, a buffer holding
 * `targetRegion`: `components` planes each, one after the other (channels first), x fastest.
 * \ingroup UNetSegmentation */
template <unsigned int VDimension>
void
CopyBlockBetweenBuffers(const float * source, const ImageRegion<VDimension> & sourceRegion, float * target,
                        const ImageRegion<VDimension> & targetRegion, const ImageRegion<VDimension> & block,
                        unsigned int components)
{
  const SizeValueType sourcePlane = sourceRegion.GetNumberOfPixels();
  const SizeValueType targetPlane = targetRegion.GetNumberOfPixels();
  for (const Index<VDimension> & lineStart : LineStarts(block))
  {
    const float * from = source + OffsetInRegion(sourceRegion, lineStart);
    float *       to = target + OffsetInRegion(targetRegion, lineStart);
    for (unsigned int component = 0; component < components; ++component)
    {
      std::copy_n(from + component * sourcePlane, block.GetSize(0), to + component * targetPlane);
    }
  }
}

} // end namespace unet_detail
} // end namespace itk

#endif // itkUNetRegionLines_h
