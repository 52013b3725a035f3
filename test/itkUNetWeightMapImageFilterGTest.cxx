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

#include "itkStreamingImageFilter.h"

#include "UNetCellTestHelpers.h"
#include "gtest/gtest.h"

#include <sstream>

namespace
{
using Labels2D = itk::Image<unsigned short, 2>;
using Labels3D = itk::Image<unsigned short, 3>;

/** The filter's settings; the defaults are the filter's. */
struct WeightSettings
{
  double w0{ 10.0 };
  double sigma{ 5.0 };
  bool   useSpacing{ false };
  bool   balanceClasses{ true };
  double backgroundWeight{ 1.0 };
  double foregroundWeight{ 1.0 };
  double classWeightSigma{ 0.0 };
  double gap{ 0.0 };
  int    ignoreLabel{ 0 };
};

/** The weight map from the brute-force distances, with the documented formula. */
template <typename TLabelImage>
std::vector<double>
ReferenceWeights(const TLabelImage * labels, const WeightSettings & settings)
{
  using LabelType = typename TLabelImage::PixelType;
  const auto                                       ignore = static_cast<LabelType>(settings.ignoreLabel);
  const UNetTest::BruteForceDistances<TLabelImage> distances(labels, settings.useSpacing, ignore);
  const auto ignored = [&](size_t v) { return distances.label[v] != 0 && distances.label[v] == ignore; };
  // Cell voxels within the gap of another cell are background.
  const auto isCell = [&](size_t v) {
    return distances.label[v] != 0 && distances.label[v] != ignore && !(distances.second[v] <= settings.gap);
  };
  double voxels = 0.0;
  double cellVoxels = 0.0;
  for (size_t v = 0; v < distances.label.size(); ++v)
  {
    voxels += ignored(v) ? 0.0 : 1.0;
    cellVoxels += isCell(v) ? 1.0 : 0.0;
  }
  const double classes = (cellVoxels > 0 ? 1.0 : 0.0) + (cellVoxels < voxels ? 1.0 : 0.0);
  const double foreground = settings.balanceClasses ? voxels / (classes * cellVoxels) : settings.foregroundWeight;
  const double background =
    settings.balanceClasses ? voxels / (classes * (voxels - cellVoxels)) : settings.backgroundWeight;
  std::vector<double> weights;
  for (size_t v = 0; v < distances.label.size(); ++v)
  {
    if (ignored(v))
    {
      weights.push_back(0.0);
      continue;
    }
    if (isCell(v))
    {
      weights.push_back(foreground);
      continue;
    }
    double weight = background;
    if (settings.classWeightSigma > 0.0)
    {
      const double d1 = distances.nearest[v];
      weight +=
        (foreground - background) * std::exp(-d1 * d1 / (2.0 * settings.classWeightSigma * settings.classWeightSigma));
    }
    if (std::isfinite(distances.second[v]))
    {
      const double sum = distances.nearest[v] + distances.second[v];
      weight += settings.w0 * std::exp(-sum * sum / (2.0 * settings.sigma * settings.sigma));
    }
    weights.push_back(weight);
  }
  return weights;
}

template <typename TLabelImage>
typename itk::UNetWeightMapImageFilter<TLabelImage>::Pointer
MakeFilter(const TLabelImage * labels, const WeightSettings & settings)
{
  auto filter = itk::UNetWeightMapImageFilter<TLabelImage>::New();
  filter->SetInput(labels);
  filter->SetW0(settings.w0);
  filter->SetSigma(settings.sigma);
  filter->SetUseImageSpacing(settings.useSpacing);
  filter->SetBalanceClasses(settings.balanceClasses);
  filter->SetBackgroundWeight(settings.backgroundWeight);
  filter->SetForegroundWeight(settings.foregroundWeight);
  filter->SetClassWeightSigma(settings.classWeightSigma);
  filter->SetGap(settings.gap);
  filter->SetIgnoreLabel(static_cast<typename TLabelImage::PixelType>(settings.ignoreLabel));
  return filter;
}

template <typename TLabelImage>
void
ExpectWeightMapMatchesBruteForce(const TLabelImage * labels, const WeightSettings & settings)
{
  const auto filter = MakeFilter(labels, settings);
  filter->Update();
  const std::vector<double> expected = ReferenceWeights(labels, settings);
  const float *             actual = filter->GetOutput()->GetBufferPointer();
  // Float output, plus the documented truncation tolerance (1e-6) on the separation term.
  size_t mismatches = 0;
  for (size_t v = 0; v < expected.size(); ++v)
  {
    if (!(std::abs(actual[v] - expected[v]) <= 1e-6 + 2e-7 * expected[v]) && ++mismatches <= 5)
    {
      ADD_FAILURE() << "voxel " << v << ": " << actual[v] << " != " << expected[v];
    }
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_EQ(filter->GetOutput()->GetSpacing(), labels->GetSpacing());
  EXPECT_EQ(filter->GetOutput()->GetOrigin(), labels->GetOrigin());
}

template <typename TLabelImage>
void
ExpectWeightMapMatchesBruteForce(const TLabelImage * labels, double w0, double sigma, bool useSpacing)
{
  WeightSettings settings;
  settings.w0 = w0;
  settings.sigma = sigma;
  settings.useSpacing = useSpacing;
  ExpectWeightMapMatchesBruteForce(labels, settings);
}

/** Falk et al.'s defaults (Unet-Segmentation's ModelDefinition): borderWeightFactor 50, borderWeightSigmaPx 6,
 * foregroundBackgroundRatio 0.1, sigma1Px 10. */
WeightSettings
FalkEtAlSettings()
{
  WeightSettings settings;
  settings.w0 = 50.0;
  settings.sigma = 6.0;
  settings.balanceClasses = false;
  settings.backgroundWeight = 0.1;
  settings.foregroundWeight = 1.0;
  settings.classWeightSigma = 10.0;
  return settings;
}

template <typename TLabelImage>
typename TLabelImage::Pointer
CellsWithUnannotatedBlock(const typename TLabelImage::SizeType & size, unsigned int cells, unsigned int seed,
                          double radius, typename TLabelImage::PixelType ignoreLabel)
{
  auto                             labels = UNetTest::MakeCells<TLabelImage>(size, cells, seed, radius);
  typename TLabelImage::RegionType block = labels->GetLargestPossibleRegion();
  for (unsigned int axis = 0; axis < TLabelImage::ImageDimension; ++axis)
  {
    block.SetIndex(axis, block.GetIndex(axis) + static_cast<itk::IndexValueType>(size[axis] / 3));
    block.SetSize(axis, size[axis] / 3);
  }
  UNetTest::PaintBox(labels.GetPointer(), block, ignoreLabel);
  return labels;
}

/** The output of `filter` for `workUnits` work units, with the progress it reported. */
template <typename TFilter>
std::vector<float>
RunWithWorkUnits(TFilter * filter, itk::ThreadIdType workUnits, std::vector<float> * progress = nullptr)
{
  filter->SetNumberOfWorkUnits(workUnits);
  unsigned long tag = 0;
  if (progress)
  {
    progress->clear();
    tag = filter->AddObserver(itk::ProgressEvent(), [filter, progress](const itk::EventObject &) {
      progress->push_back(filter->GetProgress());
    });
  }
  filter->Modified();
  filter->Update();
  if (progress)
  {
    filter->RemoveObserver(tag);
  }
  const auto * output = filter->GetOutput();
  return std::vector<float>(output->GetBufferPointer(),
                            output->GetBufferPointer() + output->GetBufferedRegion().GetNumberOfPixels());
}
} // namespace

TEST(UNetWeightMapImageFilter, MatchesBruteForce2D)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 48, 37 } }, 25, 1, 6.0);
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), 10.0, 5.0, false);
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), 3.0, 2.0, false);
}

TEST(UNetWeightMapImageFilter, MatchesBruteForce3D)
{
  const auto labels = UNetTest::MakeCells<Labels3D>({ { 17, 14, 11 } }, 18, 2, 4.0);
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), 10.0, 5.0, false);
}

TEST(UNetWeightMapImageFilter, AnisotropicSpacing)
{
  auto labels = UNetTest::MakeCells<Labels3D>({ { 15, 12, 9 } }, 12, 3, 4.0);
  labels->SetSpacing(UNetTest::Spacing3D(0.4, 0.7, 2.5));
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), 10.0, 2.0, true);
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), 10.0, 5.0, false);
}

TEST(UNetWeightMapImageFilter, ManyCellsWithNonConsecutiveLabels)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 60, 50 } }, 120, 4, 4.0, 7, 311);
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), 10.0, 5.0, false);
}

TEST(UNetWeightMapImageFilter, SingleCellHasNoSeparationTerm)
{
  // d2 is undefined with one cell: the separation term is 0 and w = w_c.
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 20, 20 } }, 1, 5, 5.0, 9);
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), 10.0, 5.0, false);
  auto filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  filter->Update();
  float minimum = 1e9f, maximum = 0.0f;
  for (size_t v = 0; v < 400; ++v)
  {
    if (labels->GetBufferPointer()[v] == 0)
    {
      minimum = std::min(minimum, filter->GetOutput()->GetBufferPointer()[v]);
      maximum = std::max(maximum, filter->GetOutput()->GetBufferPointer()[v]);
    }
  }
  EXPECT_EQ(minimum, maximum);
}

TEST(UNetWeightMapImageFilter, NoCellsGivesOnes)
{
  auto labels = Labels2D::New();
  labels->SetRegions(Labels2D::SizeType{ { 9, 8 } });
  labels->Allocate(true);
  auto filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  filter->Update();
  for (size_t v = 0; v < 72; ++v)
  {
    EXPECT_EQ(filter->GetOutput()->GetBufferPointer()[v], 1.0f);
  }
}

TEST(UNetWeightMapImageFilter, UserClassWeights)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 30, 30 } }, 10, 6, 5.0);
  auto       filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  filter->BalanceClassesOff();
  filter->SetBackgroundWeight(0.25);
  filter->SetForegroundWeight(3.0);
  filter->SetW0(0.0);
  filter->Update();
  for (size_t v = 0; v < 900; ++v)
  {
    EXPECT_EQ(filter->GetOutput()->GetBufferPointer()[v], labels->GetBufferPointer()[v] ? 3.0f : 0.25f);
  }
}

TEST(UNetWeightMapImageFilter, StreamedEqualsOneShot)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 40, 33 } }, 20, 7, 5.0);
  auto       oneShot = itk::UNetWeightMapImageFilter<Labels2D>::New();
  oneShot->SetInput(labels);
  oneShot->Update();
  auto filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  using WeightImage = itk::Image<float, 2>;
  auto streamer = itk::StreamingImageFilter<WeightImage, WeightImage>::New();
  streamer->SetInput(filter->GetOutput());
  streamer->SetNumberOfStreamDivisions(4);
  streamer->Update();
  for (size_t v = 0; v < 40 * 33; ++v)
  {
    ASSERT_EQ(streamer->GetOutput()->GetBufferPointer()[v], oneShot->GetOutput()->GetBufferPointer()[v]);
  }
}

TEST(UNetWeightMapImageFilter, BadParametersThrow)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 10, 10 } }, 3, 8, 3.0);
  auto       filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  filter->SetSigma(0.0);
  EXPECT_THROW(filter->Update(), itk::ExceptionObject);
  filter->SetSigma(-1.0);
  EXPECT_THROW(filter->Update(), itk::ExceptionObject);
  filter->SetSigma(5.0);
  filter->SetW0(-1.0);
  EXPECT_THROW(filter->Update(), itk::ExceptionObject);
  filter->SetW0(10.0);
  filter->SetClassWeightSigma(-1.0);
  EXPECT_THROW(filter->Update(), itk::ExceptionObject);
  filter->SetClassWeightSigma(0.0);
  filter->SetGap(-0.5);
  EXPECT_THROW(filter->Update(), itk::ExceptionObject);
  filter->SetGap(0.0);
  EXPECT_NO_THROW(filter->Update());
}

TEST(UNetWeightMapImageFilter, NegativeLabelsThrow)
{
  using SignedLabels = itk::Image<short, 2>;
  auto labels = UNetTest::MakeCells<SignedLabels>({ { 10, 10 } }, 3, 9, 3.0);
  labels->SetPixel({ { 0, 0 } }, -4);
  auto filter = itk::UNetWeightMapImageFilter<SignedLabels>::New();
  filter->SetInput(labels);
  try
  {
    filter->Update();
    ADD_FAILURE() << "negative label accepted";
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(std::string(error.GetDescription()).find("must not be negative"), std::string::npos);
  }
}

TEST(UNetWeightMapImageFilter, IgnoreLabelMatchesBruteForce2D)
{
  // An unannotated block over cells and background: weight 0 there, no part in the balancing or the distances.
  const auto     labels = CellsWithUnannotatedBlock<Labels2D>({ { 48, 37 } }, 25, 11, 6.0, 65535);
  WeightSettings settings;
  settings.ignoreLabel = 65535;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
  settings.w0 = 3.0;
  settings.sigma = 2.0;
  settings.balanceClasses = false;
  settings.backgroundWeight = 0.3;
  settings.foregroundWeight = 2.0;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
}

TEST(UNetWeightMapImageFilter, IgnoreLabelMatchesBruteForce3D)
{
  auto           labels = CellsWithUnannotatedBlock<Labels3D>({ { 17, 14, 11 } }, 18, 12, 4.0, 7);
  WeightSettings settings;
  settings.ignoreLabel = 7; // a label that is also a cell's: that cell is then unannotated
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
  labels->SetSpacing(UNetTest::Spacing3D(0.4, 0.7, 2.5));
  settings.useSpacing = true;
  settings.sigma = 2.0;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
}

TEST(UNetWeightMapImageFilter, NegativeIgnoreLabel)
{
  using SignedLabels = itk::Image<short, 2>;
  const auto     labels = CellsWithUnannotatedBlock<SignedLabels>({ { 30, 26 } }, 12, 13, 5.0, -1);
  WeightSettings settings;
  settings.ignoreLabel = -1;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
}

TEST(UNetWeightMapImageFilter, EverythingIgnoredGivesZeros)
{
  auto labels = Labels2D::New();
  labels->SetRegions(Labels2D::SizeType{ { 9, 8 } });
  labels->Allocate();
  labels->FillBuffer(3);
  auto filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  filter->SetIgnoreLabel(3);
  filter->Update();
  for (size_t v = 0; v < 72; ++v)
  {
    EXPECT_EQ(filter->GetOutput()->GetBufferPointer()[v], 0.0f);
  }
}

TEST(UNetWeightMapImageFilter, AbsentIgnoreLabelChangesNothing)
{
  // The default output stays today's, bit for bit, and an ignore label no voxel has changes nothing.
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 40, 33 } }, 20, 14, 5.0);
  auto       plain = itk::UNetWeightMapImageFilter<Labels2D>::New();
  plain->SetInput(labels);
  const std::vector<float> expected = RunWithWorkUnits(plain.GetPointer(), 1);
  auto                     ignoring = itk::UNetWeightMapImageFilter<Labels2D>::New();
  ignoring->SetInput(labels);
  ignoring->SetIgnoreLabel(60000);
  EXPECT_EQ(RunWithWorkUnits(ignoring.GetPointer(), 1), expected);
}

TEST(UNetWeightMapImageFilter, ClassWeightTransitionMatchesBruteForce2D)
{
  const auto     labels = UNetTest::MakeCells<Labels2D>({ { 48, 37 } }, 25, 15, 6.0);
  WeightSettings settings;
  settings.classWeightSigma = 4.0;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings); // balanced class weights
  settings.balanceClasses = false;
  settings.backgroundWeight = 0.1;
  settings.w0 = 0.0; // the transition alone
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
  // Far from every cell (farther than the separation term's truncation) the transition is still exact.
  const auto sparse = UNetTest::MakeCells<Labels2D>({ { 90, 70 } }, 3, 16, 3.0);
  settings.w0 = 10.0;
  settings.sigma = 1.0;
  settings.classWeightSigma = 30.0;
  ExpectWeightMapMatchesBruteForce(sparse.GetPointer(), settings);
}

TEST(UNetWeightMapImageFilter, ClassWeightTransitionMatchesBruteForce3D)
{
  auto           labels = UNetTest::MakeCells<Labels3D>({ { 17, 14, 11 } }, 18, 17, 4.0);
  WeightSettings settings;
  settings.classWeightSigma = 3.0;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
  labels->SetSpacing(UNetTest::Spacing3D(0.4, 0.7, 2.5));
  settings.useSpacing = true;
  settings.sigma = 2.0;
  settings.classWeightSigma = 1.5;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
}

TEST(UNetWeightMapImageFilter, GapMatchesBruteForce)
{
  // The voxels that split touching cells are background, with the separation term (d1 = 0).
  const auto     labels = CellsWithUnannotatedBlock<Labels2D>({ { 48, 37 } }, 30, 27, 6.0, 500);
  WeightSettings settings;
  settings.gap = 1.5;
  settings.ignoreLabel = 500;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
  settings.classWeightSigma = 5.0;
  settings.gap = 3.0;
  ExpectWeightMapMatchesBruteForce(labels.GetPointer(), settings);
  auto labels3D = UNetTest::MakeCells<Labels3D>({ { 17, 14, 11 } }, 18, 28, 4.0);
  labels3D->SetSpacing(UNetTest::Spacing3D(0.4, 0.7, 1.1));
  settings = WeightSettings();
  settings.useSpacing = true;
  settings.sigma = 2.0;
  settings.gap = 1.2;
  ExpectWeightMapMatchesBruteForce(labels3D.GetPointer(), settings);
}

TEST(UNetWeightMapImageFilter, GapAgreesWithTheTrainingTarget)
{
  // With the same Gap, the voxels weighted as background are the target's background, ignored voxels aside.
  auto labels = CellsWithUnannotatedBlock<Labels3D>({ { 19, 16, 13 } }, 25, 29, 4.0, 77);
  labels->SetSpacing(UNetTest::Spacing3D(0.5, 0.5, 1.0));
  for (const double gap : { 1.0, 1.5, 2.2 })
  {
    auto weights = itk::UNetWeightMapImageFilter<Labels3D>::New();
    weights->SetInput(labels);
    weights->BalanceClassesOff();
    weights->SetBackgroundWeight(0.5);
    weights->SetW0(0.0);
    weights->SetGap(gap);
    weights->SetUseImageSpacing(true);
    weights->SetIgnoreLabel(77);
    weights->Update();
    auto target = itk::UNetTrainingTargetImageFilter<Labels3D>::New();
    target->SetInput(labels);
    target->SetGap(gap);
    target->SetUseImageSpacing(true);
    target->SetIgnoreLabel(77);
    target->Update();
    size_t splitting = 0;
    for (size_t v = 0; v < 19 * 16 * 13; ++v)
    {
      const unsigned char t = target->GetOutput()->GetBufferPointer()[v];
      const float         w = weights->GetOutput()->GetBufferPointer()[v];
      ASSERT_EQ(w, t == 255 ? 0.0f : t == 1 ? 1.0f : 0.5f) << "voxel " << v << ", gap " << gap;
      splitting += t == 0 && labels->GetBufferPointer()[v] != 0;
    }
    EXPECT_GT(splitting, 0u);
  }
}

TEST(UNetWeightMapImageFilter, FalkEtAlWeightsMatchTheirFormula)
{
  // Falk et al.'s tool (TrainingSample.addLabelsAndWeightsToBlobs): cells 1, ignored 0, background
  // r + (1 - r) exp(-d1^2 / (2 sigma1^2)) + lambda exp(-(d1 + d2)^2 / (2 sigma_b^2)), written out here on its own.
  for (const bool threeD : { false, true })
  {
    std::vector<double> expected;
    std::vector<float>  actual;
    const auto          check = [&](const auto * labels) {
      using LabelImage = std::remove_cv_t<std::remove_pointer_t<decltype(labels)>>;
      const UNetTest::BruteForceDistances<LabelImage> distances(labels, true, 9);
      for (size_t v = 0; v < distances.label.size(); ++v)
      {
        const double d1 = distances.nearest[v];
        const double d2 = distances.second[v];
        expected.push_back(distances.label[v] == 9 ? 0.0
                           : distances.label[v] != 0
                             ? 1.0
                             : 0.1 + 0.9 * std::exp(-d1 * d1 / 200.0) +
                                 (std::isfinite(d2) ? 50.0 * std::exp(-(d1 + d2) * (d1 + d2) / 72.0) : 0.0));
      }
      WeightSettings settings = FalkEtAlSettings();
      settings.ignoreLabel = 9;
      settings.useSpacing = true;
      const auto filter = MakeFilter(labels, settings);
      filter->Update();
      actual.assign(filter->GetOutput()->GetBufferPointer(), filter->GetOutput()->GetBufferPointer() + expected.size());
    };
    if (threeD)
    {
      auto labels = CellsWithUnannotatedBlock<Labels3D>({ { 16, 13, 10 } }, 16, 18, 4.0, 9);
      labels->SetSpacing(UNetTest::Spacing3D(1.0, 1.0, 2.0)); // element size: distances in its units
      check(labels.GetPointer());
    }
    else
    {
      const auto labels = CellsWithUnannotatedBlock<Labels2D>({ { 60, 45 } }, 30, 19, 7.0, 9);
      check(labels.GetPointer());
    }
    ASSERT_EQ(actual.size(), expected.size());
    for (size_t v = 0; v < expected.size(); ++v)
    {
      ASSERT_NEAR(actual[v], expected[v], 1e-6 + 2e-7 * expected[v]) << "voxel " << v << (threeD ? " (3-D)" : "");
    }
  }
}

TEST(UNetWeightMapImageFilter, SameOutputForAnyNumberOfWorkUnits)
{
  const auto labels = CellsWithUnannotatedBlock<Labels3D>({ { 19, 16, 23 } }, 25, 20, 4.0, 1000);
  for (const double classWeightSigma : { 0.0, 3.0 })
  {
    auto filter = itk::UNetWeightMapImageFilter<Labels3D>::New();
    filter->SetInput(labels);
    filter->SetIgnoreLabel(1000);
    filter->SetClassWeightSigma(classWeightSigma);
    const std::vector<float> oneUnit = RunWithWorkUnits(filter.GetPointer(), 1);
    for (const itk::ThreadIdType workUnits : { 2, 3, 8, 23, 40 })
    {
      EXPECT_EQ(RunWithWorkUnits(filter.GetPointer(), workUnits), oneUnit) << workUnits << " work units";
    }
  }
}

TEST(UNetWeightMapImageFilter, ProgressAdvancesToOne)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 64, 64 } }, 30, 21, 6.0);
  auto       filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  filter->SetClassWeightSigma(5.0);
  std::vector<float> progress;
  RunWithWorkUnits(filter.GetPointer(), 4, &progress);
  EXPECT_GE(progress.size(), 8u); // every work unit of each stage
  EXPECT_TRUE(std::is_sorted(progress.begin(), progress.end()));
  EXPECT_GT(std::count_if(progress.begin(), progress.end(), [](float p) { return p > 0.0f && p < 1.0f; }), 4);
  EXPECT_EQ(progress.back(), 1.0f);
}

TEST(UNetWeightMapImageFilter, AbortStopsTheUpdate)
{
  const auto labels = UNetTest::MakeCells<Labels2D>({ { 64, 64 } }, 30, 22, 6.0);
  auto       filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  filter->SetInput(labels);
  filter->SetNumberOfWorkUnits(4);
  filter->AddObserver(itk::ProgressEvent(), [&filter](const itk::EventObject &) {
    if (filter->GetProgress() > 0.0f)
    {
      filter->AbortGenerateDataOn();
    }
  });
  EXPECT_THROW(filter->Update(), itk::ProcessAborted);
}

TEST(UNetWeightMapImageFilter, PrintSelf)
{
  auto               filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  std::ostringstream os;
  filter->Print(os);
  EXPECT_NE(os.str().find("W0: 10"), std::string::npos);
  EXPECT_NE(os.str().find("Sigma: 5"), std::string::npos);
  EXPECT_NE(os.str().find("ClassWeightSigma: 0"), std::string::npos);
  EXPECT_NE(os.str().find("Gap: 0"), std::string::npos);
  EXPECT_NE(os.str().find("IgnoreLabel: 0"), std::string::npos);
  filter->SetIgnoreLabel(255);
  std::ostringstream withIgnore;
  filter->Print(withIgnore);
  EXPECT_NE(withIgnore.str().find("IgnoreLabel: 255"), std::string::npos);
}
