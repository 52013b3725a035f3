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
#include "itkUNetTrainingTargetImageFilter.h"

#include "itkConnectedComponentImageFilter.h"

#include "UNetCellTestHelpers.h"
#include "gtest/gtest.h"

#include <sstream>

namespace
{
using Labels2D = itk::Image<unsigned short, 2>;
using Labels3D = itk::Image<unsigned short, 3>;

/** Brute force: a cell voxel is border when a voxel of another cell lies within `gap`; voxels with the ignore label
 * are written as 255 and are no cell. */
template <typename TLabelImage>
void
ExpectTargetMatchesBruteForce(const TLabelImage * labels, double gap, bool useSpacing, unsigned char borderValue,
                              typename TLabelImage::PixelType ignoreLabel = 0)
{
  constexpr unsigned int D = TLabelImage::ImageDimension;
  auto                   filter = itk::UNetTrainingTargetImageFilter<TLabelImage>::New();
  filter->SetInput(labels);
  filter->SetGap(gap);
  filter->SetUseImageSpacing(useSpacing);
  filter->SetBorderValue(borderValue);
  filter->SetForegroundValue(1);
  filter->SetIgnoreLabel(ignoreLabel);
  filter->Update();

  std::vector<typename TLabelImage::IndexType> index;
  std::vector<typename TLabelImage::PixelType> label;
  for (itk::ImageRegionConstIteratorWithIndex<TLabelImage> it(labels, labels->GetLargestPossibleRegion());
       !it.IsAtEnd();
       ++it)
  {
    index.push_back(it.GetIndex());
    label.push_back(it.Get());
  }
  unsigned int borders = 0;
  for (size_t v = 0; v < index.size(); ++v)
  {
    unsigned char expected = 0;
    if (label[v] != 0 && label[v] == ignoreLabel)
    {
      expected = 255;
    }
    else if (label[v] != 0)
    {
      expected = 1;
      for (size_t w = 0; w < index.size() && expected == 1; ++w)
      {
        if (label[w] == 0 || label[w] == label[v] || label[w] == ignoreLabel)
        {
          continue;
        }
        double squared = 0.0;
        for (unsigned int axis = 0; axis < D; ++axis)
        {
          const double d = (index[v][axis] - index[w][axis]) * (useSpacing ? labels->GetSpacing()[axis] : 1.0);
          squared += d * d;
        }
        if (squared <= gap * gap)
        {
          expected = borderValue;
          ++borders;
        }
      }
    }
    ASSERT_EQ(filter->GetOutput()->GetBufferPointer()[v], expected) << "at " << index[v];
  }
  EXPECT_GT(borders, 0u) << "the test image has no touching cells";
}
} // namespace

TEST(UNetTrainingTargetImageFilter, MatchesBruteForce2D)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 40, 35 } }, 30, 1, 6.0, 5, 13);
  ExpectTargetMatchesBruteForce(labels.GetPointer(), 1.0, false, 0);
  ExpectTargetMatchesBruteForce(labels.GetPointer(), 1.5, false, 2);
  ExpectTargetMatchesBruteForce(labels.GetPointer(), 3.0, false, 2);
}

TEST(UNetTrainingTargetImageFilter, MatchesBruteForce3DWithSpacing)
{
  auto labels = UNetTest::MakeCells<Labels3D>({ { 16, 13, 10 } }, 15, 2, 4.0);
  ExpectTargetMatchesBruteForce(labels.GetPointer(), 1.8, false, 2);
  labels->SetSpacing(UNetTest::Spacing3D(0.5, 0.8, 2.0));
  ExpectTargetMatchesBruteForce(labels.GetPointer(), 1.2, true, 2);
}

TEST(UNetTrainingTargetImageFilter, SplitsTouchingCellsOfABinaryMask)
{
  // Two touching squares in one binary mask: connected components see one object; after the instance labels are
  // separated by the target filter, the foreground falls into two components.
  using Mask = itk::Image<unsigned char, 2>;
  auto labels = Labels2D::New();
  labels->SetRegions(Labels2D::SizeType{ { 20, 10 } });
  labels->Allocate(true);
  for (itk::ImageRegionIteratorWithIndex<Labels2D> it(labels, labels->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    const auto i = it.GetIndex();
    if (i[1] >= 2 && i[1] < 8 && i[0] >= 2 && i[0] < 18)
    {
      it.Set(i[0] < 10 ? 1 : 2);
    }
  }
  auto target = itk::UNetTrainingTargetImageFilter<Labels2D, Mask>::New();
  target->SetInput(labels);
  auto components = itk::ConnectedComponentImageFilter<Mask, Labels2D>::New();
  components->SetInput(target->GetOutput());
  components->Update();
  EXPECT_EQ(components->GetObjectCount(), 2u);
  EXPECT_EQ(target->GetOutput()->GetPixel({ { 9, 4 } }), 0);
  EXPECT_EQ(target->GetOutput()->GetPixel({ { 10, 4 } }), 0);
  EXPECT_EQ(target->GetOutput()->GetPixel({ { 8, 4 } }), 1);
}

TEST(UNetTrainingTargetImageFilter, IgnoreLabelMatchesBruteForce)
{
  // An unannotated block over touching cells: written as the IgnoreValue, and no neighbour to split from.
  auto labels = UNetTest::MakeCells<Labels2D>({ { 40, 35 } }, 30, 4, 6.0, 5, 13);
  UNetTest::PaintBox(labels.GetPointer(), Labels2D::RegionType({ { 10, 8 } }, { { 15, 12 } }), 4000);
  ExpectTargetMatchesBruteForce(labels.GetPointer(), 1.5, false, 2, 4000);
  auto labels3D = UNetTest::MakeCells<Labels3D>({ { 16, 13, 10 } }, 15, 5, 4.0);
  UNetTest::PaintBox(labels3D.GetPointer(), Labels3D::RegionType({ { 4, -2, 3 } }, { { 7, 13, 4 } }), 6);
  labels3D->SetSpacing(UNetTest::Spacing3D(0.5, 0.8, 2.0));
  ExpectTargetMatchesBruteForce(labels3D.GetPointer(), 1.2, true, 2, 6);
}

TEST(UNetTrainingTargetImageFilter, SameTargetForAnyNumberOfWorkUnits)
{
  const auto labels = UNetTest::MakeCells<Labels3D>({ { 19, 16, 23 } }, 25, 6, 4.0);
  auto       filter = itk::UNetTrainingTargetImageFilter<Labels3D>::New();
  filter->SetInput(labels);
  filter->SetBorderValue(2);
  filter->SetNumberOfWorkUnits(1);
  filter->Update();
  const std::vector<unsigned char> oneUnit(filter->GetOutput()->GetBufferPointer(),
                                           filter->GetOutput()->GetBufferPointer() + 19 * 16 * 23);
  std::vector<float>               progress;
  filter->AddObserver(itk::ProgressEvent(),
                      [&](const itk::EventObject &) { progress.push_back(filter->GetProgress()); });
  for (const itk::ThreadIdType workUnits : { 2, 5, 23 })
  {
    progress.clear();
    filter->SetNumberOfWorkUnits(workUnits);
    filter->Update();
    EXPECT_EQ(std::vector<unsigned char>(filter->GetOutput()->GetBufferPointer(),
                                         filter->GetOutput()->GetBufferPointer() + 19 * 16 * 23),
              oneUnit);
    EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
    EXPECT_EQ(progress.back(), 1.0f);
  }
}

TEST(UNetTrainingTargetImageFilter, BadGapThrows)
{
  auto labels = UNetTest::MakeCells<Labels2D>({ { 10, 10 } }, 3, 3, 3.0);
  auto filter = itk::UNetTrainingTargetImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  filter->SetGap(-1.0);
  EXPECT_THROW(filter->Update(), itk::ExceptionObject);
}

TEST(UNetTrainingTargetImageFilter, PrintSelf)
{
  auto               filter = itk::UNetTrainingTargetImageFilter<Labels2D>::New();
  std::ostringstream os;
  filter->Print(os);
  EXPECT_NE(os.str().find("Gap: 1.5"), std::string::npos);
  EXPECT_NE(os.str().find("IgnoreLabel: 0"), std::string::npos);
  EXPECT_NE(os.str().find("IgnoreValue: 255"), std::string::npos);
}
