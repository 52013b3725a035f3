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

// The region helpers alone: the line starts of a region, in buffer order, and a voxel's offset in a buffer holding a
// region, against ITK's own image offsets.

#include "itkUNetRegionLines.h"

#include "itkImage.h"

#include "gtest/gtest.h"

#include <vector>

TEST(UNetRegionLines, LineStartsAreEachLinesFirstIndexInBufferOrder)
{
  const itk::ImageRegion<3> region({ { -2, 5, 1 } }, itk::Size<3>{ { 4, 3, 2 } });
  for (unsigned int axis = 0; axis < 3; ++axis)
  {
    std::vector<itk::Index<3>> starts;
    for (const auto & start : itk::unet_detail::LineStarts(region, axis))
    {
      starts.push_back(start);
    }
    EXPECT_EQ(starts.size(), region.GetNumberOfPixels() / region.GetSize(axis)) << "axis " << axis;
    for (const auto & start : starts)
    {
      EXPECT_EQ(start[axis], region.GetIndex(axis));
      EXPECT_TRUE(region.IsInside(start));
    }
    for (size_t i = 1; i < starts.size(); ++i)
    {
      EXPECT_LT(itk::unet_detail::OffsetInRegion(region, starts[i - 1]),
                itk::unet_detail::OffsetInRegion(region, starts[i]));
    }
  }
  EXPECT_EQ(itk::unet_detail::LineStarts(itk::ImageRegion<3>()).begin(),
            itk::unet_detail::LineStarts(itk::ImageRegion<3>()).end());
}

TEST(UNetRegionLines, OffsetInRegionIsTheImageBufferOffset)
{
  using ImageType = itk::Image<float, 3>;
  auto image = ImageType::New();
  image->SetRegions(ImageType::RegionType({ { 3, -1, 7 } }, itk::Size<3>{ { 5, 4, 3 } }));
  for (const auto & index : itk::ImageRegionIndexRange<3>(image->GetBufferedRegion()))
  {
    EXPECT_EQ(static_cast<itk::OffsetValueType>(itk::unet_detail::OffsetInRegion(image->GetBufferedRegion(), index)),
              image->ComputeOffset(index));
  }
}

TEST(UNetRegionLines, CopyBlockBetweenBuffersCopiesEachComponentsVoxelsOfTheBlockOnly)
{
  // Buffers holding two overlapping regions, two components (planes) each; every source value names its component and
  // index, so a value in the wrong place shows.
  const itk::ImageRegion<3> sourceRegion({ { 0, 0, 0 } }, itk::Size<3>{ { 6, 5, 4 } });
  const itk::ImageRegion<3> targetRegion({ { 2, 1, 1 } }, itk::Size<3>{ { 5, 5, 3 } });
  const itk::ImageRegion<3> block({ { 2, 2, 1 } }, itk::Size<3>{ { 3, 2, 2 } });
  const auto                value = [](unsigned int component, const itk::Index<3> & index) {
    return static_cast<float>(1000 * component + 100 * index[2] + 10 * index[1] + index[0]);
  };
  std::vector<float> source(2 * sourceRegion.GetNumberOfPixels());
  for (unsigned int component = 0; component < 2; ++component)
  {
    for (const auto & index : itk::ImageRegionIndexRange<3>(sourceRegion))
    {
      source[component * sourceRegion.GetNumberOfPixels() + itk::unet_detail::OffsetInRegion(sourceRegion, index)] =
        value(component, index);
    }
  }
  std::vector<float> target(2 * targetRegion.GetNumberOfPixels(), -1.0f);
  itk::unet_detail::CopyBlockBetweenBuffers(source.data(), sourceRegion, target.data(), targetRegion, block, 2);
  for (unsigned int component = 0; component < 2; ++component)
  {
    for (const auto & index : itk::ImageRegionIndexRange<3>(targetRegion))
    {
      const float copied =
        target[component * targetRegion.GetNumberOfPixels() + itk::unet_detail::OffsetInRegion(targetRegion, index)];
      EXPECT_EQ(copied, block.IsInside(index) ? value(component, index) : -1.0f) << component << ", " << index;
    }
  }
}
