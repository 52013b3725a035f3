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

TEST(UNetTensorMemoryPool, KeepsLibTorchsLargeBlocksWhileAScopeLivesAndHandsThemOutAgain)
{
  using Pool = itk::UNetTensorMemoryPool;
  const auto model = UNetTest::LoadModel("unet2d_paper", 0, 1);
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
    // what was asked for, at most MinimumBlockBytes more.
    EXPECT_GE(first, outside);
    EXPECT_GE(again, outside);
    EXPECT_LE(again, 1.2 * outside);
    // A smaller pass is served by cutting kept blocks: the pool grows no further.
    model->MeasureForwardBytes(1, itk::UNetModel::TileSizeType(2, 188 + 16));
    EXPECT_EQ(Pool::GetKeptBytes(), kept);
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

TEST(UNetTensorMemoryPool, AHoldKeepsWhatScopesLeftTrimmedToWhatTheLastWorkUsed)
{
  using Pool = itk::UNetTensorMemoryPool;
  const auto                         model = UNetTest::LoadModel("unet2d_paper", 0, 1);
  const itk::UNetModel::TileSizeType large(2, 188 + 7 * 16);
  const itk::UNetModel::TileSizeType small(2, 188 + 16);
  std::size_t                        keptForSmall = 0;
  {
    const Pool::Scope scope;
    model->MeasureForwardBytes(1, small);
    keptForSmall = Pool::GetKeptBytes();
  }
  ASSERT_EQ(Pool::GetKeptBytes(), 0u);
  {
    Pool::Hold hold;
    {
      const Pool::Scope scope;
      model->MeasureForwardBytes(1, large);
    }
    const std::size_t keptForLarge = Pool::GetKeptBytes(); // past the last scope's end
    EXPECT_GT(keptForLarge, 2 * keptForSmall);
    model->MeasureForwardBytes(1, large); // between scopes: nothing taken, nothing kept
    EXPECT_EQ(Pool::GetKeptBytes(), keptForLarge);
    {
      const Pool::Scope scope;
      model->MeasureForwardBytes(1, large); // kept blocks only
    }
    hold.FreeIdleBlocks();
    EXPECT_EQ(Pool::GetKeptBytes(), keptForLarge); // all of them used since the hold began
    {
      const Pool::Scope scope;
      model->MeasureForwardBytes(1, small);
    }
    hold.FreeIdleBlocks(); // what the small pass did not use goes
    const std::size_t keptAfterSmall = Pool::GetKeptBytes();
    EXPECT_LT(keptAfterSmall, keptForLarge);
    EXPECT_LE(keptAfterSmall, 2 * keptForSmall);
    {
      const Pool::Scope scope;
      model->MeasureForwardBytes(1, small);
    }
    hold.FreeIdleBlocks();
    EXPECT_EQ(Pool::GetKeptBytes(), keptAfterSmall);
    hold.FreeIdleBlocks(); // nothing used since the last call
    EXPECT_EQ(Pool::GetKeptBytes(), 0u);
    EXPECT_EQ(Pool::GetUsedBytes(), 0u);
  }
  EXPECT_EQ(Pool::GetKeptBytes(), 0u); // the hold's end frees it all
}

namespace
{

using FilterType = itk::UNetSegmentationImageFilter<itk::Image<float, 2>>;

/** The filter on one torch thread, so that its passes ask for blocks in the same order every update. */
FilterType::Pointer
MakeFilter()
{
  auto filter = FilterType::New();
  filter->SetInput(UNetTest::MakeRandomImage<itk::Image<float, 2>>({ { 200, 150 } }, 5));
  filter->SetModelFileName(UNetTest::ModelPath("unet2d_valid"));
  filter->SetTileSize({ { 32, 32 } });
  filter->SetNumberOfTorchThreads(1);
  return filter;
}

/** Updates the filter; returns the most the pool held (kept and used) during the update. */
std::size_t
UpdateWatchingThePool(FilterType * filter)
{
  using Pool = itk::UNetTensorMemoryPool;
  std::size_t most = 0;
  const auto  tag = filter->AddObserver(itk::ProgressEvent(), [&most](const itk::EventObject &) {
    most = std::max(most, Pool::GetKeptBytes() + Pool::GetUsedBytes());
  });
  filter->Modified();
  filter->Update();
  filter->RemoveObserver(tag);
  return most;
}

} // namespace

TEST(UNetTensorMemoryPool, TheFilterKeepsBlocksFromUpdateToUpdateOnlyWhereTheProcessDoesNot)
{
  using Pool = itk::UNetTensorMemoryPool;
  auto filter = MakeFilter();
  EXPECT_TRUE(filter->GetKeepWorkingMemory());
  const std::size_t mostInTheFirst = UpdateWatchingThePool(filter);
  const std::size_t kept = Pool::GetKeptBytes();
  EXPECT_EQ(Pool::GetUsedBytes(), 0u);
  if (itk::UNetProcessHeap::KeepsFreedMemory())
  {
    EXPECT_EQ(mostInTheFirst, 0u); // glibc keeps it all
    EXPECT_EQ(kept, 0u);
    return;
  }
  EXPECT_GT(kept, 0u);
  EXPECT_GE(mostInTheFirst, kept);
  // The next update takes kept blocks only: the pool never holds more than the first left.
  EXPECT_EQ(UpdateWatchingThePool(filter), kept);
  EXPECT_EQ(Pool::GetKeptBytes(), kept);
  // Off frees it at once, without modifying the filter, and an update then keeps nothing past its end.
  const itk::ModifiedTimeType modified = filter->GetMTime();
  filter->KeepWorkingMemoryOff();
  EXPECT_EQ(filter->GetMTime(), modified);
  EXPECT_EQ(Pool::GetKeptBytes(), 0u);
  EXPECT_GT(UpdateWatchingThePool(filter), 0u);
  EXPECT_EQ(Pool::GetKeptBytes(), 0u);
  // On again: kept until the filter is destroyed.
  filter->KeepWorkingMemoryOn();
  UpdateWatchingThePool(filter);
  EXPECT_GT(Pool::GetKeptBytes(), 0u);
  filter = nullptr;
  EXPECT_EQ(Pool::GetKeptBytes(), 0u);
}
