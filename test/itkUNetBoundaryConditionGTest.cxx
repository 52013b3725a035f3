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

// The boundary condition's two answers against references: the mirrored index against ITK's MirrorPadImageFilter,
// and the input requested region against the set of indices a span actually reads.

#include "itkUNetBoundaryCondition.h"

#include "itkImage.h"
#include "itkIndexRange.h"
#include "itkMirrorPadImageFilter.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <limits>

namespace
{
using Boundary = itk::UNetBoundaryCondition<1>;
using BoundaryEnum = itk::UNetSegmentationImageFilterEnums::BoundaryCondition;
} // namespace

TEST(UNetBoundaryCondition, MirrorIsMirrorPadImageFilters)
{
  // A 1-D image whose values are its indices, padded far past its size by ITK's filter: the padded value at x is the
  // index x mirrors to, whatever the image's start (negative included).
  using ImageType = itk::Image<double, 1>;
  for (const itk::IndexValueType start : { -4, 0, 3 })
  {
    for (const itk::SizeValueType size : { 1, 2, 5 })
    {
      const ImageType::RegionType region({ { start } }, { { size } });
      const auto                  image = ImageType::New();
      image->SetRegions(region);
      image->Allocate();
      for (const auto & index : itk::ImageRegionIndexRange<1>(region))
      {
        image->SetPixel(index, static_cast<double>(index[0]));
      }
      const auto pad = itk::MirrorPadImageFilter<ImageType, ImageType>::New();
      pad->SetInput(image);
      pad->SetPadBound(ImageType::SizeType{ { 13 } });
      pad->Update();
      const Boundary boundary(BoundaryEnum::Mirror, region);
      for (const auto & index : itk::ImageRegionIndexRange<1>(pad->GetOutput()->GetBufferedRegion()))
      {
        itk::IndexValueType mapped = std::numeric_limits<itk::IndexValueType>::min();
        ASSERT_TRUE(boundary.MapIndex(0, index[0], mapped));
        ASSERT_EQ(static_cast<double>(mapped), pad->GetOutput()->GetPixel(index))
          << "start " << start << ", size " << size << ", x " << index[0];
      }
    }
  }
}

TEST(UNetBoundaryCondition, ConstantReadsNothingOutsideTheImage)
{
  const Boundary::RegionType region({ { -2 } }, { { 5 } });
  const Boundary             boundary(BoundaryEnum::Constant, region);
  for (itk::IndexValueType x = -20; x < 20; ++x)
  {
    itk::IndexValueType mapped = 1000;
    const bool          inside = region.IsInside(itk::Index<1>{ { x } });
    EXPECT_EQ(boundary.MapIndex(0, x, mapped), inside) << x;
    if (inside)
    {
      EXPECT_EQ(mapped, x);
    }
  }
}

TEST(UNetBoundaryCondition, RequestedRegionIsTheSmallestHoldingEveryIndexRead)
{
  const itk::UNetBoundaryCondition<2>::RegionType image({ { -3, 2 } }, { { 7, 4 } });
  for (const auto kind : { BoundaryEnum::Mirror, BoundaryEnum::Constant })
  {
    const itk::UNetBoundaryCondition<2> boundary(kind, image);
    // Spans that reach past one side, both sides, or lie wholly outside.
    for (itk::IndexValueType begin = -16; begin < 12; begin += 3)
    {
      for (const itk::SizeValueType length : { 1, 2, 6, 25 })
      {
        const itk::ImageRegion<2> span({ { begin, begin + 4 } }, { { length, length / 2 + 1 } });
        const auto                requested = boundary.GetInputRequestedRegion(span);
        EXPECT_TRUE(image.IsInside(requested)) << span;
        for (unsigned int axis = 0; axis < 2; ++axis)
        {
          itk::IndexValueType low = std::numeric_limits<itk::IndexValueType>::max();
          itk::IndexValueType high = std::numeric_limits<itk::IndexValueType>::min();
          for (itk::IndexValueType x = span.GetIndex(axis); x <= span.GetUpperIndex()[axis]; ++x)
          {
            itk::IndexValueType mapped = 0;
            if (boundary.MapIndex(axis, x, mapped))
            {
              low = std::min(low, mapped);
              high = std::max(high, mapped);
            }
          }
          if (low > high) // a constant span wholly outside reads nothing: one voxel keeps the region valid
          {
            EXPECT_EQ(requested.GetSize(axis), 1u) << span;
            continue;
          }
          EXPECT_EQ(requested.GetIndex(axis), low) << span << " axis " << axis;
          EXPECT_EQ(requested.GetUpperIndex()[axis], high) << span << " axis " << axis;
        }
      }
    }
  }
}
