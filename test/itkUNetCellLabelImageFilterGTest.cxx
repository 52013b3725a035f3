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
#include "itkUNetCellLabelImageFilter.h"
#include "itkUNetWeightMapImageFilter.h"

#include "itkImageRegionIteratorWithIndex.h"
#include "gtest/gtest.h"

#include <algorithm>
#include <sstream>

namespace
{
using Mask = itk::Image<unsigned char, 2>;

/** Three blobs in a mask with values 200, 100 and 255 on a background of 0. */
Mask::Pointer
ThreeBlobs()
{
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
  return mask;
}
} // namespace

TEST(UNetCellLabelImageFilter, LabelsEachConnectedCell)
{
  // Threshold 150 keeps two of the three blobs.
  const auto mask = ThreeBlobs();
  auto       cells = itk::UNetCellLabelImageFilter<Mask>::New();
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

TEST(UNetCellLabelImageFilter, ProgressOfTheMiniPipeline)
{
  // The threshold's progress fills [0, 0.2], the connected components' [0.2, 1]. (ITK 5.2's threshold filter itself
  // reports a non-monotonic progress with several work units: its own reporter and the multithreader's both write
  // it; the components stage is monotonic.)
  auto cells = itk::UNetCellLabelImageFilter<Mask>::New();
  cells->SetInput(ThreeBlobs());
  cells->SetNumberOfWorkUnits(3);
  std::vector<float> progress;
  cells->AddObserver(itk::ProgressEvent(), [&](const itk::EventObject &) { progress.push_back(cells->GetProgress()); });
  cells->Update();
  const auto componentsStage =
    std::find_if(progress.begin(), progress.end(), [](float p) { return p >= 0.2f - 1e-6f; });
  EXPECT_TRUE(std::all_of(progress.begin(), componentsStage, [](float p) { return p >= 0.0f && p < 0.2f; }));
  EXPECT_TRUE(std::is_sorted(componentsStage, progress.end()));
  EXPECT_GT(std::count_if(componentsStage, progress.end(), [](float p) { return p > 0.2f && p < 1.0f; }), 3);
  EXPECT_EQ(progress.back(), 1.0f);
  EXPECT_EQ(cells->GetNumberOfCells(), 3u);
}

TEST(UNetCellLabelImageFilter, FullyConnected)
{
  // Two voxels touching at a corner: one cell with full connectivity, two without.
  auto mask = Mask::New();
  mask->SetRegions(Mask::SizeType{ { 4, 4 } });
  mask->Allocate(true);
  mask->SetPixel({ { 1, 1 } }, 1);
  mask->SetPixel({ { 2, 2 } }, 1);
  auto cells = itk::UNetCellLabelImageFilter<Mask>::New();
  cells->SetInput(mask);
  cells->Update();
  EXPECT_EQ(cells->GetNumberOfCells(), 2u);
  cells->FullyConnectedOn();
  cells->Update();
  EXPECT_EQ(cells->GetNumberOfCells(), 1u);
}

TEST(UNetCellLabelImageFilter, PrintSelf)
{
  auto               cells = itk::UNetCellLabelImageFilter<Mask>::New();
  std::ostringstream os;
  cells->Print(os);
  EXPECT_NE(os.str().find("ForegroundThreshold: 1"), std::string::npos);
  EXPECT_NE(os.str().find("FullyConnected: Off"), std::string::npos);
}
