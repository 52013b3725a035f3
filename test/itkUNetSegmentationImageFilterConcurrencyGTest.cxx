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

// UNetSegmentationImageFilter under concurrency: filters sharing one model on two threads, abort from another
// thread, repeated updates.

#include "itkUNetSegmentationImageFilter.h"

#include "UNetTestHelpers.h"

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

namespace
{
using Image2D = itk::Image<float, 2>;
using Filter2D = itk::UNetSegmentationImageFilter<Image2D>;

/** A filter running the seeded random U-Net over `input` in 16 x 24 tiles, two tiles per batch: several forward
 * passes of a real network per update. */
Filter2D::Pointer
MakeUNetFilter(const Image2D * input, itk::UNetModel * model)
{
  auto filter = Filter2D::New();
  filter->SetInput(input);
  filter->SetModel(model);
  filter->SetTileSize({ { 16, 24 } });
  filter->SetTilesPerBatch(2);
  filter->SetNumberOfTorchThreads(2);
  return filter;
}

itk::UNetModel::Pointer
MakeModel(const char * name)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath(name));
  return model;
}

/** The label map and probabilities of `actual` are those of `expected`, bit for bit. */
void
ExpectBitIdentical(const Filter2D * expected, const Filter2D * actual)
{
  const auto * expectedLabels = expected->GetOutput();
  const auto * actualLabels = actual->GetOutput();
  ASSERT_EQ(expectedLabels->GetBufferedRegion(), actualLabels->GetBufferedRegion());
  const size_t voxels = expectedLabels->GetBufferedRegion().GetNumberOfPixels();
  EXPECT_EQ(std::memcmp(expectedLabels->GetBufferPointer(), actualLabels->GetBufferPointer(), voxels), 0);

  const auto * expectedProbabilities = expected->GetProbabilityOutput();
  const auto * actualProbabilities = actual->GetProbabilityOutput();
  ASSERT_EQ(expectedProbabilities->GetNumberOfComponentsPerPixel(),
            actualProbabilities->GetNumberOfComponentsPerPixel());
  const size_t values = voxels * expectedProbabilities->GetNumberOfComponentsPerPixel();
  EXPECT_EQ(std::memcmp(expectedProbabilities->GetBufferPointer(),
                        actualProbabilities->GetBufferPointer(),
                        values * sizeof(float)),
            0);
}

/** Updates each filter on its own thread, all released at once; rethrows the first failure here. */
void
UpdateAtOnce(const std::vector<Filter2D *> & filters)
{
  std::mutex                      mutex;
  std::condition_variable         released;
  bool                            go = false;
  std::vector<std::exception_ptr> failures(filters.size());
  std::vector<std::thread>        threads;
  for (size_t i = 0; i < filters.size(); ++i)
  {
    threads.emplace_back([&, i] {
      {
        std::unique_lock<std::mutex> lock(mutex);
        released.wait(lock, [&] { return go; });
      }
      try
      {
        filters[i]->Update();
      }
      catch (...)
      {
        failures[i] = std::current_exception();
      }
    });
  }
  {
    const std::lock_guard<std::mutex> lock(mutex);
    go = true;
  }
  released.notify_all();
  for (std::thread & thread : threads)
  {
    thread.join();
  }
  for (const std::exception_ptr & failure : failures)
  {
    if (failure)
    {
      std::rethrow_exception(failure);
    }
  }
}
} // namespace

TEST(UNetSegmentationImageFilterConcurrency, FiltersSharingOneModelOnTwoThreadsGiveTheSequentialResults)
{
  const auto first = UNetTest::MakeRandomImage<Image2D>({ { 60, 47 } }, 31);
  const auto second = UNetTest::MakeRandomImage<Image2D>({ { 40, 70 } }, 32);

  // One after the other, each on a model of its own.
  const auto firstAlone = MakeUNetFilter(first, MakeModel("unet2d_valid"));
  const auto secondAlone = MakeUNetFilter(second, MakeModel("unet2d_valid"));
  firstAlone->Update();
  secondAlone->Update();

  // At once, sharing one model that neither has loaded yet (both load it), then again with it loaded; several
  // rounds, for different interleavings of the two threads' forward passes.
  for (int round = 0; round < 2; ++round)
  {
    SCOPED_TRACE("round " + std::to_string(round));
    // Left at ImageDimension 0: each filter sets it to 2 as it updates.
    const auto shared = MakeModel("unet2d_valid");
    const auto firstShared = MakeUNetFilter(first, shared);
    const auto secondShared = MakeUNetFilter(second, shared);
    UpdateAtOnce({ firstShared.GetPointer(), secondShared.GetPointer() });
    ExpectBitIdentical(firstAlone, firstShared);
    ExpectBitIdentical(secondAlone, secondShared);

    firstShared->Modified();
    secondShared->Modified();
    UpdateAtOnce({ firstShared.GetPointer(), secondShared.GetPointer() });
    ExpectBitIdentical(firstAlone, firstShared);
    ExpectBitIdentical(secondAlone, secondShared);
  }
}

TEST(UNetSegmentationImageFilterConcurrency, AbortFromAnotherThreadStopsTheRunAndALaterUpdateCompletes)
{
  // One tile per batch, for the reference too: LibTorch may round a batch of two differently.
  const auto input = UNetTest::MakeRandomImage<Image2D>({ { 64, 61 } }, 33);
  const auto reference = MakeUNetFilter(input, MakeModel("unet2d_valid"));
  reference->SetTilesPerBatch(1);
  reference->Update();

  const auto filter = MakeUNetFilter(input, MakeModel("unet2d_valid"));
  filter->SetTilesPerBatch(1);

  // The first progress event (the first tile done) waits until the other thread has asked for the abort, so that
  // the abort lands mid-run however the threads are scheduled.
  std::mutex              mutex;
  std::condition_variable changed;
  bool                    running = false;
  bool                    abortAsked = false;
  unsigned int            progressEvents = 0;
  const auto              observer = filter->AddObserver(itk::ProgressEvent(), [&](const itk::EventObject &) {
    std::unique_lock<std::mutex> lock(mutex);
    if (++progressEvents == 1)
    {
      running = true;
      changed.notify_all();
      changed.wait_for(lock, std::chrono::seconds(60), [&] { return abortAsked; });
    }
  });
  std::thread             aborter([&] {
    std::unique_lock<std::mutex> lock(mutex);
    if (changed.wait_for(lock, std::chrono::seconds(60), [&] { return running; }))
    {
      filter->AbortGenerateDataOn();
      abortAsked = true;
      changed.notify_all();
    }
  });
  EXPECT_THROW(filter->Update(), itk::ProcessAborted);
  aborter.join();
  EXPECT_TRUE(abortAsked);
  // Stopped after the batch of the first tile, long before the last.
  EXPECT_EQ(progressEvents, 1u);
  EXPECT_GT(filter->GetTileGrid().GetTilesIntersecting(input->GetLargestPossibleRegion()).GetNumberOfPixels(), 10u);

  filter->RemoveObserver(observer);
  filter->Update();
  EXPECT_FALSE(filter->GetAbortGenerateData());
  ExpectBitIdentical(reference, filter);
}

TEST(UNetSegmentationImageFilterConcurrency, RepeatedUpdatesAreBitIdentical)
{
  const auto input = UNetTest::MakeRandomImage<Image2D>({ { 60, 47 } }, 34);
  const auto model = MakeModel("unet2d_valid");
  const auto first = MakeUNetFilter(input, model);
  first->Update();
  // A second filter on the same model, forced to run again and again.
  const auto again = MakeUNetFilter(input, model);
  for (int run = 0; run < 2; ++run)
  {
    SCOPED_TRACE("run " + std::to_string(run));
    again->Modified();
    again->Update();
    ExpectBitIdentical(first, again);
  }
}

TEST(UNetSegmentationImageFilterConcurrency, ReloadsThroughOneFilterWhileAnotherPredictsAreSafe)
{
  const auto predicted = UNetTest::MakeRandomImage<Image2D>({ { 60, 47 } }, 35);
  const auto reloaded = UNetTest::MakeRandomImage<Image2D>({ { 40, 30 } }, 36);
  const auto predictedAlone = MakeUNetFilter(predicted, MakeModel("unet2d_valid"));
  const auto reloadedAlone = MakeUNetFilter(reloaded, MakeModel("unet2d_valid"));
  predictedAlone->Update();
  reloadedAlone->Update();

  // The same network under a second name: each change of name loads it again, probing included.
  const std::string copy = UNetTest::OutputPath("unet2d_valid.pt");
  UNetTest::RewriteFile(UNetTest::ModelPath("unet2d_valid"), copy);
  const auto shared = MakeModel("unet2d_valid"); // ImageDimension 0
  const auto predictor = MakeUNetFilter(predicted, shared);
  const auto reloader = MakeUNetFilter(reloaded, shared);

  constexpr int      rounds = 4;
  std::exception_ptr predictorFailure;
  std::thread        predicting([&]() {
    try
    {
      for (int round = 0; round < rounds; ++round)
      {
        predictor->Modified();
        predictor->Update();
        ExpectBitIdentical(predictedAlone, predictor);
      }
    }
    catch (...)
    {
      predictorFailure = std::current_exception();
    }
  });
  for (int round = 0; round < rounds; ++round)
  {
    reloader->SetModelFileName(round % 2 == 0 ? copy : UNetTest::ModelPath("unet2d_valid"));
    reloader->Update();
    ExpectBitIdentical(reloadedAlone, reloader);
  }
  predicting.join();
  if (predictorFailure)
  {
    std::rethrow_exception(predictorFailure);
  }
}
