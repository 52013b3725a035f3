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
#include "itkUNetNearestCells.h"
#include "itkUNetWeightMapImageFilter.h"

#include "itkStreamingImageFilter.h"

#include "UNetCellTestHelpers.h"
#include "gtest/gtest.h"

#include <sstream>

namespace
{
using Labels2D = itk::Image<unsigned short, 2>;
using Labels3D = itk::Image<unsigned short, 3>;

/** The weight map from the brute-force distances, with the documented formula. */
template <typename TLabelImage>
std::vector<double>
ReferenceWeights(const TLabelImage * labels, double w0, double sigma, bool useSpacing)
{
  const UNetTest::BruteForceDistances<TLabelImage> distances(labels, useSpacing);
  const double                                     voxels = static_cast<double>(distances.label.size());
  double                                           cellVoxels = 0.0;
  for (const auto label : distances.label)
  {
    cellVoxels += label != 0 ? 1.0 : 0.0;
  }
  const double        classes = (cellVoxels > 0 ? 1.0 : 0.0) + (cellVoxels < voxels ? 1.0 : 0.0);
  std::vector<double> weights;
  for (size_t v = 0; v < distances.label.size(); ++v)
  {
    if (distances.label[v] != 0)
    {
      weights.push_back(voxels / (classes * cellVoxels));
      continue;
    }
    double weight = voxels / (classes * (voxels - cellVoxels));
    if (std::isfinite(distances.second[v]))
    {
      const double sum = distances.nearest[v] + distances.second[v];
      weight += w0 * std::exp(-sum * sum / (2.0 * sigma * sigma));
    }
    weights.push_back(weight);
  }
  return weights;
}

template <typename TLabelImage>
void
ExpectWeightMapMatchesBruteForce(const TLabelImage * labels, double w0, double sigma, bool useSpacing)
{
  using FilterType = itk::UNetWeightMapImageFilter<TLabelImage>;
  auto filter = FilterType::New();
  filter->SetInput(labels);
  filter->SetW0(w0);
  filter->SetSigma(sigma);
  filter->SetUseImageSpacing(useSpacing);
  filter->Update();
  const std::vector<double> expected = ReferenceWeights(labels, w0, sigma, useSpacing);
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

TEST(UNetNearestCells, DistancesMatchBruteForceUpToTheTruncation)
{
  const auto                                    labels = UNetTest::MakeCells<Labels2D>({ { 45, 40 } }, 30, 10, 5.0);
  const UNetTest::BruteForceDistances<Labels2D> reference(labels, false);
  for (const double maximum : { 0.0, 1.0, 4.5, 1000.0 })
  {
    itk::UNetNearestCells<Labels2D> nearest;
    nearest.Compute(labels, maximum, false);
    EXPECT_EQ(nearest.GetNumberOfCells(), reference.cells);
    for (size_t v = 0; v < reference.label.size(); ++v)
    {
      const double expectedNearest = reference.nearest[v] <= maximum ? reference.nearest[v] : INFINITY;
      const double expectedSecond = reference.second[v] <= maximum ? reference.second[v] : INFINITY;
      ASSERT_EQ(std::sqrt(static_cast<double>(nearest.GetNearestSquaredDistances()[v])), expectedNearest)
        << "voxel " << v;
      ASSERT_EQ(std::sqrt(static_cast<double>(nearest.GetSecondNearestSquaredDistances()[v])), expectedSecond)
        << "voxel " << v;
    }
  }
}

TEST(UNetWeightMapImageFilter, PrintSelf)
{
  auto               filter = itk::UNetWeightMapImageFilter<Labels2D>::New();
  std::ostringstream os;
  filter->Print(os);
  EXPECT_NE(os.str().find("W0: 10"), std::string::npos);
  EXPECT_NE(os.str().find("Sigma: 5"), std::string::npos);
}
