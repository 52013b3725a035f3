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

// The batch runner alone, with an analytic network (shift2d: class 1's probability at p is sigmoid(input at
// p + (2, -3)), border 3): gathered tiles read the image mirrored or constant outside it and normalised, tiles come
// back in the order they were added whatever the batches, each run gives one progress event, an abort stops after a
// batch, and a value that normalisation makes non-finite is refused.

#include "itkUNetTileBatchRunner.h"

#include "itkCastImageFilter.h"

#include "UNetTestHelpers.h"

#include <limits>

namespace
{
using ImageType = itk::Image<float, 2>;
using Runner = itk::unet_detail::TileBatchRunner<ImageType>;
using Size2 = itk::Size<2>;

itk::UNetModel::Pointer
ShiftModel()
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath("shift2d"));
  model->SetImageDimension(2);
  model->Load();
  return model;
}

/** Any process object serves as the runner's owner for progress and abort. */
using OwnerType = itk::CastImageFilter<ImageType, ImageType>;

Runner::GridType
GridOver(const ImageType * image, itk::SizeValueType edge)
{
  return Runner::GridType(
    image->GetLargestPossibleRegion(), Size2{ { edge, edge } }, 0, Size2{ { 1, 1 } }, Size2{ { 3, 3 } });
}
} // namespace

TEST(UNetTileBatchRunner, GatheredTilesAreTheNormalisedImageMirroredOrConstantOutsideIt)
{
  const auto image = UNetTest::MakeRandomImage<ImageType>({ { 9, 7 } }, 3);
  const auto model = ShiftModel();
  const auto grid = GridOver(image, 5);
  const auto owner = OwnerType::New();
  for (const bool mirror : { true, false })
  {
    Runner::Settings settings;
    settings.Normalization = itk::UNetNormalization({ 0.5 }, { 2.0 });
    settings.BoundaryCondition =
      mirror ? Runner::BoundaryConditionEnum::Mirror : Runner::BoundaryConditionEnum::Constant;
    settings.BoundaryConstant = 7.0;
    const Runner                runner(model, model->GetGeometry(), grid, settings, owner, 1);
    const Runner::TileIndexType tile{ { 1, 1 } }; // output [8, 13) x [8, 13) relative to the image's index 3: past it
    Runner::RegionType          input = grid.GetTileRegion(tile);
    input.PadByRadius(grid.GetBorder());
    std::vector<float> gathered(input.GetNumberOfPixels());
    runner.GatherInputTile(image, grid.GetTileRegion(tile), gathered.data());
    const auto & region = image->GetLargestPossibleRegion();
    for (const auto & index : itk::ImageRegionIndexRange<2>(input))
    {
      double value = 7.0;
      if (mirror || region.IsInside(index))
      {
        ImageType::IndexType source;
        for (unsigned int axis = 0; axis < 2; ++axis)
        {
          source[axis] = UNetTest::ReflectIntoRange(index[axis], region.GetIndex(axis), region.GetSize(axis));
        }
        value = image->GetPixel(source);
      }
      ASSERT_NEAR(gathered[itk::unet_detail::OffsetInRegion(input, index)], (value - 0.5) / 2.0, 1e-6) << index;
    }
  }
}

TEST(UNetTileBatchRunner, TilesComeBackInOrderWithTheirProbabilitiesWhateverTheBatches)
{
  const auto image = UNetTest::MakeRandomImage<ImageType>({ { 9, 7 } }, 4);
  const auto model = ShiftModel();
  const auto grid = GridOver(image, 3);
  const auto tiles = itk::ImageRegionIndexRange<2>(Runner::RegionType(grid.GetNumberOfTiles()));
  const auto region = image->GetLargestPossibleRegion();
  for (const unsigned int batch : { 1u, 2u, 4u })
  {
    SCOPED_TRACE("batch " + std::to_string(batch));
    Runner::Settings settings;
    settings.BatchSize = batch;
    const auto   owner = OwnerType::New();
    unsigned int progressEvents = 0;
    owner->AddObserver(itk::ProgressEvent(), [&progressEvents](const itk::EventObject &) { ++progressEvents; });
    Runner                             runner(model, model->GetGeometry(), grid, settings, owner, 12);
    std::vector<Runner::TileIndexType> returned;
    const auto                         done = [&](const Runner::TileIndexType & tile, const float * probabilities) {
      returned.push_back(tile);
      // Class 1 at p: sigmoid(the image at p + (2, -3), mirrored).
      for (const auto & index : itk::ImageRegionIndexRange<2>(grid.GetTileRegion(tile)))
      {
        ImageType::IndexType source{ { index[0] + 2, index[1] - 3 } };
        for (unsigned int axis = 0; axis < 2; ++axis)
        {
          source[axis] = UNetTest::ReflectIntoRange(source[axis], region.GetIndex(axis), region.GetSize(axis));
        }
        const auto voxel = itk::unet_detail::OffsetInRegion(grid.GetTileRegion(tile), index);
        ASSERT_NEAR(probabilities[9 + voxel], UNetTest::Sigmoid(image->GetPixel(source)), 1e-6) << index;
      }
    };
    std::vector<Runner::TileIndexType> added(tiles.begin(), tiles.end());
    for (const auto & tile : added)
    {
      runner.Add(image, tile, done);
    }
    runner.Flush(done);
    EXPECT_EQ(returned, added);
    EXPECT_EQ(progressEvents, added.size());
  }
}

TEST(UNetTileBatchRunner, AbortStopsAfterTheBatch)
{
  const auto       image = UNetTest::MakeRandomImage<ImageType>({ { 9, 7 } }, 5);
  const auto       model = ShiftModel();
  const auto       grid = GridOver(image, 3);
  Runner::Settings settings;
  settings.BatchSize = 2;
  const auto owner = OwnerType::New();
  owner->AbortGenerateDataOn();
  Runner       runner(model, model->GetGeometry(), grid, settings, owner, 12);
  unsigned int done = 0;
  const auto   count = [&done](const Runner::TileIndexType &, const float *) { ++done; };
  runner.Add(image, { { 0, 0 } }, count);
  try
  {
    runner.Add(image, { { 1, 0 } }, count);
    ADD_FAILURE() << "no ProcessAborted";
  }
  catch (const itk::ProcessAborted & aborted)
  {
    EXPECT_NE(std::string(aborted.GetDescription()).find("was aborted after 2 of 12 tiles"), std::string::npos)
      << aborted.GetDescription();
  }
  EXPECT_EQ(done, 2u);
}

TEST(UNetTileBatchRunner, ValuesThatNormaliseToInfinityAreRefused)
{
  const auto image = UNetTest::MakeRandomImage<ImageType>({ { 9, 7 } }, 6);
  image->SetPixel({ { 3 + 4, 3 + 2 } }, 3e38f);
  const auto       model = ShiftModel();
  const auto       grid = GridOver(image, 9);
  Runner::Settings settings;
  settings.Normalization = itk::UNetNormalization({ 0.0 }, { 1e-3 });
  const auto         owner = OwnerType::New();
  const Runner       runner(model, model->GetGeometry(), grid, settings, owner, 1);
  std::vector<float> gathered(15 * 15);
  try
  {
    runner.GatherInputTile(image, grid.GetTileRegion({ { 0, 0 } }), gathered.data());
    ADD_FAILURE() << "no exception";
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find("becomes non-finite (inf) once normalised"), std::string::npos)
      << error.GetDescription();
  }
}
