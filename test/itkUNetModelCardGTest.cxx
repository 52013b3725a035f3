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

// The model card alone and through the filters that use it: parsing and its messages, the round trip through JSON,
// the checks against the network at load; the segmentation filter applying the card's normalisation (fixed,
// per-image standardisation, clipped), flips and overlap unless the caller set them; the cell separation's
// thresholds from the card.

#include "itkUNetModelCard.h"

#include "itkUNetCellSeparationImageFilter.h"
#include "itkUNetModel.h"
#include "itkUNetSegmentationImageFilter.h"

#include "UNetTestHelpers.h"
#include <sstream>

namespace
{
using Image2D = itk::Image<float, 2>;
using Filter2D = itk::UNetSegmentationImageFilter<Image2D>;

void
ExpectLoadFailsWith(const std::string & name, const std::string & part)
{
  auto model = itk::UNetModel::New();
  model->SetFileName(UNetTest::ModelPath(name));
  model->SetImageDimension(2);
  try
  {
    model->Load();
    ADD_FAILURE() << name << " loaded";
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find(part), std::string::npos) << error.GetDescription();
  }
}

/** The probabilities of `model` on `input` with `configure` applied. */
template <typename TConfigure>
Filter2D::Pointer
Segment(const Image2D * input, const std::string & model, TConfigure && configure)
{
  auto filter = Filter2D::New();
  filter->SetInput(input);
  filter->SetModelFileName(UNetTest::ModelPath(model));
  configure(filter.GetPointer());
  filter->Update();
  return filter;
}

void
ExpectSameProbabilities(const Filter2D * expected, const Filter2D * actual, double tolerance = 1e-6)
{
  const auto * a = expected->GetProbabilityOutput();
  const auto * b = actual->GetProbabilityOutput();
  const size_t values = a->GetBufferedRegion().GetNumberOfPixels() * a->GetNumberOfComponentsPerPixel();
  for (size_t i = 0; i < values; ++i)
  {
    ASSERT_NEAR(a->GetBufferPointer()[i], b->GetBufferPointer()[i], tolerance) << "value " << i;
  }
}
} // namespace

TEST(UNetModelCard, ParsedFieldsAndTheirRoundTrip)
{
  const auto model = UNetTest::LoadModel("card_full2d", 2);
  ASSERT_TRUE(model->HasModelCard());
  const itk::UNetModelCard & card = model->GetModelCard();
  EXPECT_EQ(card.SchemaVersion, 1u);
  ASSERT_TRUE(card.Normalization);
  EXPECT_EQ(card.Normalization->GetMean(), std::vector<double>{ 10.0 });
  EXPECT_EQ(card.Normalization->GetStandardDeviation(), std::vector<double>{ 4.0 });
  EXPECT_FALSE(card.StandardizeTo);
  EXPECT_EQ(card.Spacing, (std::vector<double>{ 0.5, 0.5 }));
  EXPECT_EQ(card.SpacingUnit, "mm");
  ASSERT_EQ(card.Classes.size(), 2u);
  EXPECT_EQ(card.Classes[1].Name, "cell interior");
  EXPECT_EQ(*card.Classes[1].Color, (std::array<unsigned int, 3>{ { 0, 200, 0 } }));
  EXPECT_EQ(*card.FlipAxes, std::vector<unsigned int>{ 0 });
  EXPECT_EQ(card.TileSize, (std::vector<itk::SizeValueType>{ 6, 6 }));
  EXPECT_EQ(*card.TileOverlap, 2u);
  EXPECT_EQ(*card.CellClass, 1u);
  EXPECT_EQ(*card.SeedThreshold, 0.6);
  EXPECT_EQ(*card.CellThreshold, 0.3);
  EXPECT_NE(card.ProvenanceJSON.find("analytic test network"), std::string::npos);
  EXPECT_EQ(model->GetTrainedSpacing(), (std::vector<double>{ 0.5, 0.5 }));
  // Written and read again, the same record.
  const itk::UNetModelCard again = itk::UNetModelCard::FromJSON(card.ToJSON());
  EXPECT_EQ(again.ToJSON(), card.ToJSON());
  EXPECT_EQ(model->GetModelCardJSON(), card.ToJSON());

  const auto plain = UNetTest::LoadModel("mean2d", 2);
  EXPECT_FALSE(plain->HasModelCard());
  EXPECT_EQ(plain->GetModelCardJSON(), "");
  EXPECT_TRUE(plain->GetTrainedSpacing().empty());
  EXPECT_THROW(plain->GetModelCard(), itk::ExceptionObject);
  // unit "pixel": the images' own grid
  EXPECT_TRUE(UNetTest::LoadModel("card_pixel2d", 2)->GetTrainedSpacing().empty());
}

TEST(UNetModelCard, BadRecordsFailAtLoadNamingTheField)
{
  ExpectLoadFailsWith("card_bad_json", "has a bad model card: The model card is not valid JSON");
  ExpectLoadFailsWith("card_bad_type", "field \"spacing.values\" must be an array of 2 to 3 values; got \"1 1\"");
  ExpectLoadFailsWith("card_bad_version", "field \"schema_version\" is 7, newer than this release reads (1)");
  ExpectLoadFailsWith("card_bad_field", "field \"colour\" is not a field of the model card");
  ExpectLoadFailsWith("card_bad_classes", "field \"classes\" names 3 classes, but the network has 2");
  ExpectLoadFailsWith("card_bad_spacing", "field \"spacing.values[1]\" must be positive; got 0.0");
  ExpectLoadFailsWith("card_bad_dimension", "field \"spacing.values\" has 3 values, but the network is 2-D");
  ExpectLoadFailsWith("card_bad_deviation", "field \"normalization.standard_deviation[0]\" must be positive");
  ExpectLoadFailsWith("card_bad_channels", "field \"normalization.mean\" has 2 values, but the network takes 1");
  EXPECT_THROW(itk::UNetModelCard::FromJSON("[1, 2]"), itk::ExceptionObject);
  EXPECT_THROW(itk::UNetModelCard::FromJSON("{}"), itk::ExceptionObject); // no schema_version
}

TEST(UNetModelCard, EveryFieldIsCheckedNamingIt)
{
  // Records parsed, then checked against a 2-D network of 1 channel and 2 classes; each must fail naming its field.
  const std::pair<const char *, const char *> bad[] = {
    { R"({"schema_version": 1, "classes": []})", "field \"classes\" must be an array of 2 to" },
    { R"({"schema_version": 1, "classes": [{"name": ""}, {"name": "b"}]})",
      "field \"classes[0].name\" must be a non-empty" },
    { R"({"schema_version": 1, "classes": [{"name": "a", "color": [0, 0]}, {"name": "b"}]})",
      "field \"classes[0].color\"" },
    { R"({"schema_version": 1, "normalization": {"kind": "standardize", "mean": 0, "standard_deviation": 0}})",
      "field \"normalization.standard_deviation\" must be positive" },
    { R"({"schema_version": 1, "normalization": {"kind": "zscore", "mean": 0, "standard_deviation": 1}})",
      "field \"normalization.kind\" must be \"fixed\", \"standardize\" or \"clip\"" },
    { R"({"schema_version": 1, "spacing": {"values": [1, 1], "unit": "inch"}})", "field \"spacing.unit\" must be" },
    { R"({"schema_version": 1, "spacing": {"values": [1, 1], "unit": 1}})", "field \"spacing.unit\" must be" },
    { R"({"schema_version": 1, "flip_axes": [2]})", "field \"flip_axes\" names axis 2, but the network is 2-D" },
    { R"({"schema_version": 1, "tile": {"size": [6, 6, 6]}})",
      "field \"tile.size\" has 3 values, but the network is 2-D" },
    { R"({"schema_version": 1, "cell_separation": {"cell_class": 2}})",
      "field \"cell_separation.cell_class\" is 2, but the network has 2 classes" },
    { R"({"schema_version": 1, "cell_separation": {"seed_threshold": 0.3, "cell_threshold": 0.5}})",
      "field \"cell_separation.cell_threshold\" must not exceed" },
    { R"({"schema_version": 1, "cell_separation": {"seed_threshold": 1.5}})",
      "field \"cell_separation.seed_threshold\" must be in (0, 1]" },
  };
  for (const auto & [json, message] : bad)
  {
    SCOPED_TRACE(json);
    try
    {
      itk::UNetModelCard::FromJSON(json).VerifyAgainst(2, 1, 2);
      ADD_FAILURE() << "accepted";
    }
    catch (const itk::ExceptionObject & error)
    {
      EXPECT_NE(std::string(error.GetDescription()).find(message), std::string::npos) << error.GetDescription();
    }
  }
  EXPECT_NO_THROW(itk::UNetModelCard::FromJSON(R"({"schema_version": 1, "flip_axes": [1], "tile": {"size": [6, 6]}})")
                    .VerifyAgainst(2, 1, 2));
}

TEST(UNetModelCard, TheFilterAppliesTheCardUnlessTheCallerSetsItsOwn)
{
  const auto             input = UNetTest::MakeRandomImage<Image2D>({ { 23, 17 } }, 3, 0.0, 20.0);
  Filter2D::FlipAxesType x = Filter2D::FlipAxesType::Filled(false);
  x[0] = true;
  // The card: normalisation mean 10, standard deviation 4; flips along x; overlap 2.
  const auto carded = Segment(input, "card_full2d", [](Filter2D *) {});
  const auto spelled = Segment(input, "mean2d", [&x](Filter2D * f) {
    f->SetNormalizationMean({ 10.0 });
    f->SetNormalizationStandardDeviation({ 4.0 });
    f->SetTestTimeFlipAxes(x);
    f->SetTileOverlap(2);
  });
  ExpectSameProbabilities(spelled, carded);
  EXPECT_NE(std::string(carded->GetAppliedNormalizationDescription())
              .find("from the model card: mean 10, standard deviation 4"),
            std::string::npos)
    << carded->GetAppliedNormalizationDescription();
  std::ostringstream printed;
  carded->Print(printed);
  EXPECT_NE(printed.str().find("Normalization applied: from the model card"), std::string::npos);
  EXPECT_NE(printed.str().find("TileOverlap applied: 2"), std::string::npos);

  // The caller's settings win, each on its own.
  const auto overridden = Segment(input, "card_full2d", [](Filter2D * f) {
    f->SetNormalizationMean({ 0.0 });
    f->SetTestTimeFlipAxes(Filter2D::FlipAxesType::Filled(false));
  });
  const auto plain = Segment(input, "mean2d", [](Filter2D * f) {
    f->SetNormalizationMean({ 0.0 });
    f->SetTileOverlap(2);
  });
  ExpectSameProbabilities(plain, overridden);
  EXPECT_NE(std::string(overridden->GetAppliedNormalizationDescription()).find("set by the caller"), std::string::npos);
}

TEST(UNetModelCard, StandardisationFromTheCardUsesTheWholeImagesStatistics)
{
  // The card maps each image to mean 5 and standard deviation 2; computed here independently (sample standard
  // deviation, as ITK's StatisticsImageFilter), the same as the normalisation (x - m) / s * 2 + 5.
  const auto input = UNetTest::MakeRandomImage<Image2D>({ { 31, 19 } }, 4, -3.0, 11.0);
  double     sum = 0.0;
  double     squares = 0.0;
  const auto voxels = input->GetBufferedRegion().GetNumberOfPixels();
  for (size_t v = 0; v < voxels; ++v)
  {
    sum += input->GetBufferPointer()[v];
    squares += static_cast<double>(input->GetBufferPointer()[v]) * input->GetBufferPointer()[v];
  }
  const double mean = sum / voxels;
  const double sigma = std::sqrt((squares - sum * mean) / (voxels - 1));
  const auto   carded = Segment(input, "card_standardize2d", [](Filter2D *) {});
  const auto   spelled = Segment(input, "mean2d", [&](Filter2D * f) {
    f->SetNormalizationMean({ mean - 5.0 * sigma / 2.0 });
    f->SetNormalizationStandardDeviation({ sigma / 2.0 });
  });
  ExpectSameProbabilities(spelled, carded, 2e-6);
  const auto asked = Segment(input, "mean2d", [](Filter2D * f) {
    f->StandardizeImageOn();
    f->SetStandardizedMean(5.0);
    f->SetStandardizedStandardDeviation(2.0);
  });
  ExpectSameProbabilities(asked, carded, 0.0);
}

TEST(UNetModelCard, ClippedNormalisation)
{
  // Window [-1, 1], then (x - 0.5) / 0.25: mean2d's class 1 is sigmoid(mean of the 3 x 3 mirrored neighbourhood).
  const auto input = UNetTest::MakeRandomImage<Image2D>({ { 12, 9 } }, 5, -3.0, 3.0);
  const auto filter = Segment(input, "card_clip2d", [](Filter2D *) {});
  const auto region = input->GetLargestPossibleRegion();
  for (const auto & index : itk::ImageRegionIndexRange<2>(region))
  {
    double sum = 0.0;
    for (int dy = -1; dy <= 1; ++dy)
    {
      for (int dx = -1; dx <= 1; ++dx)
      {
        const Image2D::IndexType neighbour{
          { UNetTest::ReflectIntoRange(index[0] + dx, region.GetIndex(0), region.GetSize(0)),
            UNetTest::ReflectIntoRange(index[1] + dy, region.GetIndex(1), region.GetSize(1)) }
        };
        sum += (std::min(std::max(static_cast<double>(input->GetPixel(neighbour)), -1.0), 1.0) - 0.5) / 0.25;
      }
    }
    ASSERT_NEAR(filter->GetProbabilityOutput()->GetPixel(index)[1], UNetTest::Sigmoid(sum / 9.0), 2e-6) << index;
  }
}

TEST(UNetModelCard, CellSeparationTakesTheCardsThresholds)
{
  using Separation = itk::UNetCellSeparationImageFilter<itk::VectorImage<float, 2>>;
  auto separation = Separation::New();
  separation->SetParametersFromModel(UNetTest::LoadModel("card_full2d", 2));
  EXPECT_EQ(separation->GetCellClass(), 1u);
  EXPECT_EQ(separation->GetSeedThreshold(), 0.6);
  EXPECT_EQ(separation->GetCellThreshold(), 0.3);
  auto defaults = Separation::New();
  defaults->SetParametersFromModel(UNetTest::LoadModel("mean2d", 2)); // no card: the filter's own
  EXPECT_EQ(defaults->GetSeedThreshold(), Separation::New()->GetSeedThreshold());

  // The caller's settings win whether they come before or after the card's; PrintSelf says where each came from.
  auto callers = Separation::New();
  callers->SetSeedThreshold(0.7);
  callers->SetParametersFromModel(UNetTest::LoadModel("card_full2d", 2));
  callers->SetCellThreshold(0.25);
  callers->SetParametersFromModel(UNetTest::LoadModel("card_full2d", 2));
  EXPECT_EQ(callers->GetSeedThreshold(), 0.7);
  EXPECT_EQ(callers->GetCellThreshold(), 0.25);
  EXPECT_EQ(callers->GetCellClass(), 1u);
  std::ostringstream printed;
  callers->Print(printed);
  for (const char * line : { "CellClass: 1 (model card)", "SeedThreshold: 0.7 (set)", "CellThreshold: 0.25 (set)" })
  {
    EXPECT_NE(printed.str().find(line), std::string::npos) << printed.str();
  }
  std::ostringstream printedDefaults;
  defaults->Print(printedDefaults);
  EXPECT_NE(printedDefaults.str().find("SeedThreshold: 0.5 (default)"), std::string::npos) << printedDefaults.str();
}
