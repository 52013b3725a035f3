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

namespace itk
{

/** Calls `visit(lineStart)` for every line of `region` along x (axis 0), in buffer order (x fastest). The module's
 * inner loops run along these lines, over contiguous memory.
 * \ingroup UNetSegmentation */
template <unsigned int VDimension, typename TVisitor>
void
UNetForEachLine(const ImageRegion<VDimension> & region, TVisitor && visit)
{
  for (unsigned int axis = 0; axis < VDimension; ++axis)
  {
    if (region.GetSize(axis) == 0)
    {
      return;
    }
  }
  Index<VDimension> lineStart = region.GetIndex();
  while (true)
  {
    visit(static_cast<const Index<VDimension> &>(lineStart));
    unsigned int axis = 1;
    for (; axis < VDimension; ++axis)
    {
      if (++lineStart[axis] < region.GetIndex(axis) + static_cast<IndexValueType>(region.GetSize(axis)))
      {
        break;
      }
      lineStart[axis] = region.GetIndex(axis);
    }
    if (axis >= VDimension)
    {
      return;
    }
  }
}

/** The starts of the lines of `region` along `axis`: the region with size 1 on that axis, to be walked with
 * ImageRegionIndexRange (in buffer order). The module's inner loops run along such lines.
 * \ingroup UNetSegmentation */
template <unsigned int VDimension>
ImageRegion<VDimension>
UNetLineStarts(ImageRegion<VDimension> region, unsigned int axis = 0)
{
  if (region.GetSize(axis) > 0)
  {
    region.SetSize(axis, 1);
  }
  return region;
}

/** The offset of `index` in a buffer laid out over `region`, x fastest (as in an image buffered over `region`).
 * \ingroup UNetSegmentation */
template <unsigned int VDimension>
SizeValueType
UNetOffsetInRegion(const ImageRegion<VDimension> & region, const Index<VDimension> & index)
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

} // end namespace itk

#endif // itkUNetRegionLines_h
