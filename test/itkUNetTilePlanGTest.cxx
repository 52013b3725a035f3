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

// Tile planning alone, from geometries written by hand (and, for the brute-force search, probed from the test
// models): which sizes are refused and with what message, the automatic choice against brute force, the memory
// terms against their definitions, the batch that fills the budget.

#include "itkUNetTilePlan.h"

#include "itkUNetModel.h"

#include "UNetTestHelpers.h"

#include <string>

namespace
{
using Plan2 = itk::UNetTilePlan<2>;
using Plan3 = itk::UNetTilePlan<3>;
using Size2 = itk::Size<2>;

/** A valid U-Net's geometry: border b, factor f and smallest input m on every axis; forward bytes a + c * voxels. */
itk::UNetNetworkGeometry
ValidGeometry(unsigned int dimension, itk::SizeValueType border, itk::SizeValueType factor,
              itk::SizeValueType minimumInput, unsigned int classes = 2, unsigned int channels = 1)
{
  itk::UNetNetworkGeometry geometry;
  geometry.Dimension = dimension;
  geometry.InputChannels = channels;
  geometry.Classes = classes;
  geometry.Border.assign(dimension, border);
  geometry.DownsamplingFactor.assign(dimension, factor);
  geometry.MinimumInputSize.assign(dimension, minimumInput);
  geometry.ForwardBytesFixed = 1000.0;
  geometry.ForwardBytesPerInputVoxel = 200.0;
  return geometry;
}

/** The depth-3 network of the bundled ISBI models: border 44, factor 8, valid output edges 4 + 8k. */
itk::UNetNetworkGeometry
Depth3()
{
  return ValidGeometry(2, 44, 8, 92);
}

/** Runs `make`, expecting an ExceptionObject whose description contains `part`. */
template <typename TMake>
void
ExpectThrowsWith(TMake && make, const std::string & part)
{
  try
  {
    make();
    ADD_FAILURE() << "no exception; expected one saying \"" << part << '"';
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find(part), std::string::npos) << error.GetDescription();
  }
}

Plan2::Settings
WithTile(itk::SizeValueType x, itk::SizeValueType y, itk::SizeValueType overlap = 0)
{
  Plan2::Settings settings;
  settings.TileSize = Size2{ { x, y } };
  settings.TileOverlap = overlap;
  return settings;
}
} // namespace

TEST(UNetTilePlan, InvalidTileSizesAreRefusedNamingTheNearestValidOnes)
{
  const Plan2::RegionType image(Size2{ { 100, 100 } });
  ExpectThrowsWith([&]() { Plan2(Depth3(), image, WithTile(14, 12)); },
                   "TileSize[0] = 14 is not valid for the network; the nearest valid tile edges are 12 and 20 (valid "
                   "edges: 4 + k * 8)");
  ExpectThrowsWith([&]() { Plan2(Depth3(), image, WithTile(12, 12, 12)); },
                   "The tile overlap (12) must be smaller than the tile edge (12)");
  ExpectThrowsWith([&]() { Plan2(Depth3(), image, WithTile(12, 4)); },
                   "TileSize[1] = 4 cannot be aligned to the network's pooling grid");
  ExpectThrowsWith([&]() { Plan2(Depth3(), image, WithTile(12, 4)); },
                   "the nearest tile edges that work are 12, or 100 (one tile across the image)");
  ExpectThrowsWith(
    [&]() { Plan2(Depth3(), image, WithTile(20, 12, 5)); },
    "TileSize[1] = 12 cannot be aligned to the network's pooling grid: tiles must advance by a multiple "
    "of its downsampling factor (8) and overlap by at least TileOverlap (5), so an edge must be at least "
    "13; the nearest tile edges that work are 20");
  // One tile across an axis never advances along it.
  EXPECT_NO_THROW(Plan2(Depth3(), Plan2::RegionType(Size2{ { 100, 3 } }), WithTile(12, 4)));
}

TEST(UNetTilePlan, StridesAreMultiplesOfTheFactor)
{
  const Plan2 plan(Depth3(), Plan2::RegionType(Size2{ { 100, 90 } }), WithTile(20, 36, 3));
  EXPECT_EQ(plan.GetGrid().GetStride(), (Size2{ { 16, 32 } }));
  EXPECT_EQ(plan.GetGrid().GetBorder(), (Size2{ { 44, 44 } }));
  EXPECT_TRUE(plan.GetGrid().GetBlend());
  const Plan2 edgeToEdge(Depth3(), Plan2::RegionType(Size2{ { 100, 90 } }), WithTile(20, 36));
  EXPECT_EQ(edgeToEdge.GetGrid().GetStride(), (Size2{ { 16, 32 } }));
  EXPECT_FALSE(edgeToEdge.GetGrid().GetBlend());
}

TEST(UNetTilePlan, MemoryTermsFollowTheirDefinitions)
{
  // 3 channels, 4 classes, tiles of 12 x 20 (input 100 x 108) in batches of 2, flips along 2 axes (4 inputs a tile),
  // overlap 4 (blended), unsigned short labels, float input.
  const itk::UNetNetworkGeometry geometry = ValidGeometry(2, 44, 8, 92, 4, 3);
  Plan2::Settings                settings = WithTile(12, 20, 4);
  settings.TilesPerBatch = 2;
  settings.NetworkInputsPerTile = 4;
  settings.LabelBytes = 2;
  settings.MemoryBudgetMegabytes = 1e6;
  const Plan2::RegionType image(Size2{ { 70, 50 } });
  const auto              memory = Plan2(geometry, image, settings).GetMemoryEstimate();
  const double            inputVoxels = 100.0 * 108.0;
  const double            outputVoxels = 12.0 * 20.0;
  EXPECT_DOUBLE_EQ(memory.Activations, 8 * (1000.0 + 200.0 * inputVoxels));
  EXPECT_DOUBLE_EQ(memory.BatchInputs, 8 * 3 * inputVoxels * 4);
  EXPECT_DOUBLE_EQ(memory.BatchProbabilities, 8 * 4 * outputVoxels * 4);
  EXPECT_DOUBLE_EQ(memory.FlipAveraging, 4 * outputVoxels * (8 + 4 + 4));
  EXPECT_DOUBLE_EQ(memory.BlendingWeights, outputVoxels * 4);
  // A layer of tiles along the last axis (y): 20 rows of the image's 70 columns; its input 108 rows, 3 channels.
  EXPECT_DOUBLE_EQ(memory.PieceOutputs, 3 * 70 * 20 * (2 + 4 * 4 + 4));
  EXPECT_DOUBLE_EQ(memory.PieceInputs, 2 * 70 * 50 * 3 * 4); // the input rows, cropped to the image's 50
  // Tiles across the layer: x 70 at stride 8 (12 - 4) -> 1 + ceil(58 / 8) = 9.
  EXPECT_DOUBLE_EQ(memory.KeptTiles, 2 * 9 * 4 * outputVoxels * 4);
  EXPECT_DOUBLE_EQ(memory.GetBatchBytes(),
                   memory.Activations + memory.BatchInputs + memory.BatchProbabilities + memory.FlipAveraging);
  EXPECT_DOUBLE_EQ(memory.GetTotalBytes(),
                   memory.GetBatchBytes() + memory.BlendingWeights + memory.PieceOutputs + memory.PieceInputs +
                     memory.KeptTiles);
}

TEST(UNetTilePlan, ABatchBeyondTheBudgetIsAMemoryAllocationError)
{
  Plan2::Settings settings = WithTile(388, 388);
  settings.TilesPerBatch = 8;
  settings.MemoryBudgetMegabytes = 10;
  try
  {
    Plan2(Depth3(), Plan2::RegionType(Size2{ { 2000, 2000 } }), settings);
    ADD_FAILURE() << "no MemoryAllocationError";
  }
  catch (const itk::MemoryAllocationError & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find("A batch of 8 tile(s) of [388, 388] output voxels needs about"),
              std::string::npos)
      << error.GetDescription();
  }
}

TEST(UNetTilePlan, AutomaticBatchFillsTheBudgetUpToTheTiles)
{
  Plan2::Settings settings = WithTile(20, 20);
  for (const double budget : { 4.0, 16.0, 64.0, 1e6 })
  {
    settings.MemoryBudgetMegabytes = budget;
    const Plan2 plan(Depth3(), Plan2::RegionType(Size2{ { 100, 100 } }), settings);
    const auto  tiles = plan.GetGrid().GetNumberOfTiles()[0] * plan.GetGrid().GetNumberOfTiles()[1];
    const auto  batch = plan.GetBatchSize();
    EXPECT_LE(batch, std::min<itk::SizeValueType>(64, tiles));
    if (batch > 1)
    {
      EXPECT_LE(plan.GetMemoryEstimate().GetTotalBytes(), budget * 1024 * 1024);
    }
    if (batch < std::min<itk::SizeValueType>(64, tiles))
    {
      EXPECT_GT(plan.EstimateMemory(plan.GetGrid().GetTileSize(), batch + 1).GetTotalBytes(), budget * 1024 * 1024);
    }
  }
}

TEST(UNetTilePlan, AutomaticPassesCapsTheBatchAndSizesTheAutomaticTileForIt)
{
  // A given tile: the automatic batch takes the tiles of AutomaticPasses passes of one network input each where the
  // budget holds them, fewer where not.
  Plan2::Settings settings = WithTile(20, 20);
  settings.AutomaticPasses = 3;
  settings.MemoryBudgetMegabytes = 1e6;
  EXPECT_EQ(Plan2(Depth3(), Plan2::RegionType(Size2{ { 100, 100 } }), settings).GetBatchSize(), 3u);
  settings.AutomaticPasses = 0;
  const Plan2 filled(Depth3(), Plan2::RegionType(Size2{ { 100, 100 } }), settings);
  const auto  tiles = filled.GetGrid().GetNumberOfTiles()[0] * filled.GetGrid().GetNumberOfTiles()[1];
  EXPECT_GT(tiles, 3u);
  EXPECT_EQ(filled.GetBatchSize(), tiles); // every tile: fewer than 64
  settings.AutomaticPasses = 60;
  EXPECT_EQ(Plan2(Depth3(), Plan2::RegionType(Size2{ { 100, 100 } }), settings).GetBatchSize(), tiles);
  settings.TilesPerBatch = 2; // the user's batch wins
  EXPECT_EQ(Plan2(Depth3(), Plan2::RegionType(Size2{ { 100, 100 } }), settings).GetBatchSize(), 2u);

  // An automatic tile: the largest that the budget holds in a batch of one input for each of AutomaticPasses, which is
  // the automatic tile of a plan whose user asked for that many tiles a batch.
  for (const unsigned int tilesPerBatch : { 2u, 4u })
  {
    Plan2::Settings automatic;
    automatic.MemoryBudgetMegabytes = 24.0;
    automatic.AutomaticPasses = tilesPerBatch;
    Plan2::Settings given = automatic;
    given.TilesPerBatch = tilesPerBatch;
    const Plan2 plan(Depth3(), Plan2::RegionType(Size2{ { 1000, 1000 } }), automatic);
    const Plan2 reference(Depth3(), Plan2::RegionType(Size2{ { 1000, 1000 } }), given);
    EXPECT_EQ(plan.GetGrid().GetTileSize(), reference.GetGrid().GetTileSize()) << tilesPerBatch;
    EXPECT_EQ(plan.GetBatchSize(), tilesPerBatch);
    EXPECT_TRUE(plan.IsWithinBudget());
  }

  // A budget that holds no batch of that many tiles at any size: the best tile for one, in batches of what fits.
  Plan2::Settings tight;
  tight.MemoryBudgetMegabytes = 3.0;
  Plan2::Settings one = tight;
  tight.AutomaticPasses = 64;
  one.AutomaticPasses = 1;
  const Plan2 plan(Depth3(), Plan2::RegionType(Size2{ { 300, 300 } }), tight);
  EXPECT_EQ(plan.GetGrid().GetTileSize(),
            Plan2(Depth3(), Plan2::RegionType(Size2{ { 300, 300 } }), one).GetGrid().GetTileSize());
}

TEST(UNetTilePlan, SmallPassesTakeAsManyNetworkInputsAsSmallPassBytesHolds)
{
  // 20 x 20 tiles of Depth3(): an input of 108 x 108 voxels, whose forward pass the geometry estimates at 1000 + 200
  // bytes per voxel.
  const double    inputBytes = 1000.0 + 200.0 * 108 * 108;
  Plan2::Settings settings = WithTile(20, 20);
  settings.MemoryBudgetMegabytes = 1e6;
  settings.AutomaticPasses = 2;
  const auto batchSize = [&settings]() {
    return Plan2(Depth3(), Plan2::RegionType(Size2{ { 200, 200 } }), settings).GetBatchSize();
  };
  EXPECT_EQ(batchSize(), 2u); // SmallPassBytes 0: one input per pass
  settings.SmallPassBytes = 0.5 * inputBytes;
  EXPECT_EQ(batchSize(), 2u); // at least one input per pass
  settings.SmallPassBytes = 3.0 * inputBytes;
  EXPECT_EQ(batchSize(), 6u); // three inputs in each of the two passes
  settings.SmallPassBytes = 2.9 * inputBytes;
  EXPECT_EQ(batchSize(), 4u);
  settings.NetworkInputsPerTile = 2; // flipped copies count as inputs
  EXPECT_EQ(batchSize(), 2u);
  settings.NetworkInputsPerTile = 1;
  settings.SmallPassBytes = 1e12; // at most 64 inputs a pass (the image has 13 x 13 tiles)
  EXPECT_EQ(batchSize(), 128u);
  settings.MemoryBudgetMegabytes = 20.0; // the budget still caps the batch
  const Plan2 capped(Depth3(), Plan2::RegionType(Size2{ { 200, 200 } }), settings);
  EXPECT_LT(capped.GetBatchSize(), 128u);
  const auto fits = [&capped](unsigned int batch) {
    return capped.EstimateMemory(capped.GetGrid().GetTileSize(), batch).GetTotalBytes() <= 20.0 * 1024 * 1024;
  };
  EXPECT_TRUE(fits(capped.GetBatchSize()));
  EXPECT_FALSE(fits(capped.GetBatchSize() + 1));
  settings.AutomaticPasses = 0; // a GPU: SmallPassBytes does not apply
  settings.MemoryBudgetMegabytes = 1e6;
  EXPECT_EQ(batchSize(), 64u);

  // The automatic tile is sized for one input per pass, whatever SmallPassBytes.
  Plan2::Settings automatic;
  automatic.MemoryBudgetMegabytes = 24.0;
  automatic.AutomaticPasses = 2;
  Plan2::Settings grouped = automatic;
  grouped.SmallPassBytes = 1e12;
  EXPECT_EQ(Plan2(Depth3(), Plan2::RegionType(Size2{ { 1000, 1000 } }), automatic).GetGrid().GetTileSize(),
            Plan2(Depth3(), Plan2::RegionType(Size2{ { 1000, 1000 } }), grouped).GetGrid().GetTileSize());
}

TEST(UNetTilePlan, SmallestTilesBeyondTheBudgetAreUsedAndSaidSo)
{
  // A long image: even the thinnest layer of the smallest tiles (12 rows of 20,000 voxels, kept and grown at both ends
  // of a piece) exceeds 3 MB, though one batch fits.
  Plan2::Settings settings;
  settings.MemoryBudgetMegabytes = 3.0;
  const Plan2 plan(Depth3(), Plan2::RegionType(Size2{ { 20000, 100 } }), settings);
  EXPECT_FALSE(plan.IsWithinBudget());
  EXPECT_EQ(plan.GetGrid().GetTileSize(), (Size2{ { 12, 12 } })); // the smallest that can advance by 8
}

TEST(UNetTilePlan, AutomaticTileSizeFollowsTheMemoryBudget)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath("unet2d_valid"));
  model->Load();
  Plan2::Settings settings;
  settings.MemoryBudgetMegabytes = 1.0;
  const Plan2 plan(model->GetGeometry(), Plan2::RegionType(Size2{ { 300, 300 } }), settings);
  const auto  tile = plan.GetGrid().GetTileSize();
  EXPECT_GT(plan.GetMemoryEstimate().GetTotalBytes(), 0.0);
  EXPECT_LE(plan.GetMemoryEstimate().GetTotalBytes(), 1024.0 * 1024.0);
  EXPECT_TRUE(model->IsValidOutputSize(0, tile[0]));
  EXPECT_GT(tile[0], 4u);
  EXPECT_LT(tile[0], 300u);
}

TEST(UNetTilePlan, AutomaticTileSizeNeedsTheFewestInputVoxelsWithinTheBudget)
{
  // Brute force over every pair of valid edges up to the image: none within the budget needs fewer network input
  // voxels than the automatic choice, which stays within the budget. The depth-3 network's aligned tiles overlap by
  // the remainder of their edge (4 + 8k) over a stride of 8k, which the choice counts.
  const Plan2::RegionType image(Size2{ { 150, 97 } });
  const auto              inputVoxels = [](const Plan2 & plan) {
    const auto & grid = plan.GetGrid();
    return static_cast<double>(grid.GetNumberOfTiles()[0] * grid.GetNumberOfTiles()[1] *
                               Plan2::RegionType(grid.GetInputTileSize()).GetNumberOfPixels());
  };
  const std::pair<const char *, std::vector<double>> cases[] = { { "unet2d_valid", { 2.0, 8.0, 1024.0 } },
                                                                 { "unet2d_valid_depth3", { 8.0, 32.0, 1024.0 } } };
  for (const auto & [name, budgets] : cases)
  {
    auto model = itk::UNetModel::New();
    model->SetFileName(UNetTest::ModelPath(name));
    model->Load();
    const itk::UNetNetworkGeometry & geometry = model->GetGeometry();
    for (const double budget : budgets)
    {
      SCOPED_TRACE(std::string(name) + ", budget " + std::to_string(budget));
      Plan2::Settings settings;
      settings.MemoryBudgetMegabytes = budget;
      settings.TilesPerBatch = 2;
      const Plan2 chosen(geometry, image, settings);
      EXPECT_LE(chosen.GetMemoryEstimate().GetTotalBytes(), budget * 1024 * 1024);
      unsigned int fitting = 0;
      for (itk::SizeValueType x = geometry.GetMinimumOutputSize(0); x <= 152; x += geometry.DownsamplingFactor[0])
      {
        for (itk::SizeValueType y = geometry.GetMinimumOutputSize(1); y <= 100; y += geometry.DownsamplingFactor[1])
        {
          Plan2::Settings trial = WithTile(x, y);
          trial.MemoryBudgetMegabytes = 1e6;
          trial.TilesPerBatch = 2;
          if (x < geometry.DownsamplingFactor[0] || y < geometry.DownsamplingFactor[1])
          {
            EXPECT_THROW(Plan2(geometry, image, trial), itk::ExceptionObject); // cannot advance by a factor
            continue;
          }
          const Plan2 plan(geometry, image, trial);
          if (plan.GetMemoryEstimate().GetTotalBytes() <= budget * 1024 * 1024)
          {
            ++fitting;
            EXPECT_GE(inputVoxels(plan), inputVoxels(chosen))
              << x << " x " << y << " beats " << chosen.GetGrid().GetTileSize();
          }
        }
      }
      EXPECT_GT(fitting, 0u);
    }
  }
}

TEST(UNetTilePlan, WithoutABorderTheAutomaticTilesAreTheFewestWithinTheBudget)
{
  // A network without a border (a per-voxel classifier, or a same-padded U-Net) reads the image's voxels once at any
  // tile size, so the input cannot choose; the fewest tiles then do (once the choice was one voxel a tile).
  itk::UNetNetworkGeometry geometry = ValidGeometry(3, 0, 1, 1);
  const Plan3::RegionType  image(itk::Size<3>{ { 96, 80, 40 } });
  const auto               tiles = [](const Plan3 & plan) {
    return Plan3::RegionType(plan.GetGrid().GetNumberOfTiles()).GetNumberOfPixels();
  };
  Plan3::Settings generous;
  generous.MemoryBudgetMegabytes = 1e6;
  EXPECT_EQ(tiles(Plan3(geometry, image, generous)), 1u);
  Plan3::Settings tight;
  tight.MemoryBudgetMegabytes = 16.0;
  tight.TilesPerBatch = 1;
  const Plan3 chosen(geometry, image, tight);
  EXPECT_TRUE(chosen.IsWithinBudget());
  // Brute force over edges along the last axis with the other two whole: none within the budget has fewer tiles.
  for (itk::SizeValueType z = 1; z <= 40; ++z)
  {
    Plan3::Settings trial;
    trial.TileSize = itk::Size<3>{ { 96, 80, z } };
    trial.MemoryBudgetMegabytes = 1e6;
    trial.TilesPerBatch = 1;
    const Plan3 plan(geometry, image, trial);
    if (plan.GetMemoryEstimate().GetTotalBytes() <= 16.0 * 1024 * 1024)
    {
      EXPECT_GE(tiles(plan), tiles(chosen)) << "z = " << z << " beats " << chosen.GetGrid().GetTileSize();
    }
  }
  EXPECT_GT(Plan3::RegionType(chosen.GetGrid().GetTileSize()).GetNumberOfPixels(), 1000u);
}

TEST(UNetTilePlan, AnisotropicGeometryPlansEachAxisOnItsOwn)
{
  // In-plane factor 8 and border 44, across slices factor 2 and border 8 (make_test_models.py's AnisotropicUNet).
  itk::UNetNetworkGeometry geometry = ValidGeometry(3, 44, 8, 92);
  geometry.Border[2] = 8;
  geometry.DownsamplingFactor[2] = 2;
  geometry.MinimumInputSize[2] = 18;
  Plan3::Settings settings;
  settings.TileSize = itk::Size<3>{ { 20, 12, 4 } };
  const Plan3 plan(geometry, Plan3::RegionType(itk::Size<3>{ { 50, 40, 9 } }), settings);
  EXPECT_EQ(plan.GetGrid().GetStride(), (itk::Size<3>{ { 16, 8, 4 } }));
  EXPECT_EQ(plan.GetGrid().GetInputTileSize(), (itk::Size<3>{ { 108, 100, 20 } }));
  ExpectThrowsWith(
    [&]() {
      Plan3::Settings bad = settings;
      bad.TileSize[2] = 3;
      Plan3(geometry, Plan3::RegionType(itk::Size<3>{ { 50, 40, 9 } }), bad);
    },
    "TileSize[2] = 3 is not valid for the network; the nearest valid tile edges are 2 and 4");
}
