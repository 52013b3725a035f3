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
#include "itkUNetTensorMemoryPool.h"

#include "itkUNetModel.h"
#include "itkUNetProcessHeap.h"
#include "itkUNetSegmentationImageFilter.h"

#include "UNetTestHelpers.h"

#include <gtest/gtest.h>

#include <algorithm>

// The pool's state is the process's: each test leaves it as it found it, with no Scope alive.

namespace
{

itk::UNetModel::Pointer
LoadModel(const std::string & name)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath(name));
  model->SetNumberOfThreads(1);
  model->Load();
  return model;
}

} // namespace

TEST(UNetTensorMemoryPool, KeepsLibTorchsLargeBlocksWhileAScopeLivesAndHandsThemOutAgain)
{
  using Pool = itk::UNetTensorMemoryPool;
  const auto model = LoadModel("unet2d_paper");
  // One forward pass of a 300 x 300 input: activations of 8 channels and more, each far above MinimumBlockBytes.
  const itk::UNetModel::TileSizeType input(2, 188 + 7 * 16);
  const double                       outside = model->MeasureForwardBytes(1, input);
  EXPECT_EQ(Pool::GetKeptBytes(), 0u);
  EXPECT_EQ(Pool::GetUsedBytes(), 0u);
  {
    const Pool::Scope scope;
    const double      first = model->MeasureForwardBytes(1, input);
    const std::size_t kept = Pool::GetKeptBytes();
    EXPECT_GT(kept, std::size_t{ 4 } << 20);
    EXPECT_EQ(Pool::GetUsedBytes(), 0u); // every block came back
    // The next passes take kept blocks only: the pool grows no further.
    model->MeasureForwardBytes(1, input);
    const double again = model->MeasureForwardBytes(1, input);
    EXPECT_EQ(Pool::GetKeptBytes(), kept);
    // LibTorch's memory reporting (what UNetModel measures forward memory with) sees the pool's blocks: each at least
    // what was asked for, at most an eighth and a granule more.
    EXPECT_GE(first, outside);
    EXPECT_GE(again, outside);
    EXPECT_LE(again, 1.2 * outside);
    {
      const Pool::Scope nested;
    }
    EXPECT_EQ(Pool::GetKeptBytes(), kept); // a nested scope's end frees nothing
  }
  EXPECT_EQ(Pool::GetKeptBytes(), 0u); // the last scope's end frees it all
  EXPECT_EQ(model->MeasureForwardBytes(1, input), outside);
  EXPECT_EQ(Pool::GetKeptBytes(), 0u); // nothing kept outside a scope
  EXPECT_EQ(Pool::GetUsedBytes(), 0u);
}

TEST(UNetTensorMemoryPool, TheFilterKeepsBlocksDuringAnUpdateOnlyWhereTheProcessDoesNot)
{
  using Pool = itk::UNetTensorMemoryPool;
  using FilterType = itk::UNetSegmentationImageFilter<itk::Image<float, 2>>;
  auto filter = FilterType::New();
  filter->SetInput(UNetTest::MakeRandomImage<itk::Image<float, 2>>({ { 200, 150 } }, 5));
  filter->SetModelFileName(UNetTest::ModelPath("unet2d_valid"));
  filter->SetTileSize({ { 32, 32 } });
  std::size_t mostKept = 0;
  filter->AddObserver(itk::ProgressEvent(), [&mostKept](const itk::EventObject &) {
    mostKept = std::max(mostKept, Pool::GetKeptBytes() + Pool::GetUsedBytes());
  });
  filter->Update();
  EXPECT_EQ(mostKept > 0, !itk::UNetProcessHeap::KeepsFreedMemory());
  EXPECT_EQ(Pool::GetKeptBytes(), 0u);
  EXPECT_EQ(Pool::GetUsedBytes(), 0u);
}
