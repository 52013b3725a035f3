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
#include "itkUNetWeightMapImageFilter.h"

#include "itkConnectedComponentImageFilter.h"
#include "itkUNetCellLabelImageFilter.h"

#include "UNetCellTestHelpers.h"
#include "gtest/gtest.h"

#include <sstream>

namespace
{
using Labels2D = itk::Image<unsigned short, 2>;
using Labels3D = itk::Image<unsigned short, 3>;

/** Brute force: a cell voxel is border when a voxel of another cell lies within `gap`. */
template <typename TLabelImage>
void
ExpectTargetMatchesBruteForce(const TLabelImage * labels, double gap, bool useSpacing, unsigned char borderValue)
{
  constexpr unsigned int D = TLabelImage::ImageDimension;
  auto                   filter = itk::UNetTrainingTargetImageFilter<TLabelImage>::New();
  filter->SetInput(labels);
  filter->SetGap(gap);
  filter->SetUseImageSpacing(useSpacing);
  filter->SetBorderValue(borderValue);
  filter->SetForegroundValue(1);
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
    if (label[v] != 0)
    {
      expected = 1;
      for (size_t w = 0; w < index.size() && expected == 1; ++w)
      {
        if (label[w] == 0 || label[w] == label[v])
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
}

TEST(UNetCellLabelImageFilter, LabelsEachConnectedCell)
{
  // Three blobs in a mask with values 0, 100 and 200; threshold 150 keeps two of them.
  using Mask = itk::Image<unsigned char, 2>;
  auto mask = Mask::New();
  mask->SetRegions(Mask::SizeType{ { 12, 6 } });
  mask->Allocate(true);
  for (itk::ImageRegionIteratorWithIndex<Mask> it(mask, mask->GetLargestPossibleRegion()); !it.IsAtEnd(); ++it)
  {
    const auto i = it.GetIndex();
    if (i[1] >= 1 && i[1] < 5)
    {
      it.Set(i[0] < 3 ? 200 : (i[0] >= 4 && i[0] < 7) ? 100 : i[0] >= 8 ? 255 : 0);
    }
  }
  auto cells = itk::UNetCellLabelImageFilter<Mask>::New();
  cells->SetInput(mask);
  cells->SetForegroundThreshold(150);
  cells->Update();
  EXPECT_EQ(cells->GetNumberOfCells(), 2u);
  EXPECT_EQ(cells->GetOutput()->GetPixel({ { 1, 2 } }), 1u);
  EXPECT_EQ(cells->GetOutput()->GetPixel({ { 5, 2 } }), 0u);
  EXPECT_EQ(cells->GetOutput()->GetPixel({ { 9, 2 } }), 2u);
  EXPECT_EQ(cells->GetOutput()->GetPixel({ { 1, 0 } }), 0u);

  // Straight into the weight map.
  auto weights = itk::UNetWeightMapImageFilter<itk::Image<unsigned long, 2>>::New();
  weights->SetInput(cells->GetOutput());
  weights->Update();
  EXPECT_GT(weights->GetOutput()->GetPixel({ { 7, 2 } }), weights->GetOutput()->GetPixel({ { 7, 0 } }));
}
