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

// Segmenting at the network's spacing: a sphere of radius 10 mm, imaged at 0.5 x 0.5 x 2 mm and at 1 mm isotropic,
// segmented by an analytic network (a threshold at half the intensity) whose model card says it was trained at 1 mm:
// both label maps, on their own grids, hold the sphere's volume within 2 % of each other and of 4/3 pi r^3. Without a
// spacing (or with the image's own) the filter is exactly UNetSegmentationImageFilter.

#include "itkUNetResamplingSegmentationImageFilter.h"

#include "UNetTestHelpers.h"

#include <cmath>

namespace
{
using Image3D = itk::Image<float, 3>;
using Resampling3D = itk::UNetResamplingSegmentationImageFilter<Image3D>;
constexpr double radius = 10.0;

Image3D::SpacingType
Spacing(double x, double y, double z)
{
  Image3D::SpacingType spacing;
  spacing[0] = x;
  spacing[1] = y;
  spacing[2] = z;
  return spacing;
}

/** A sphere of `radius` mm at the centre of a 32 mm cube, as intensities 1 inside and 0 outside with a linear ramp
 * 2 mm wide across the surface (so that half the intensity lies on the surface), at `spacing`, with an oblique
 * direction and an origin. */
Image3D::Pointer
Sphere(const Image3D::SpacingType & spacing)
{
  auto              image = Image3D::New();
  Image3D::SizeType size;
  for (unsigned int axis = 0; axis < 3; ++axis)
  {
    size[axis] = static_cast<itk::SizeValueType>(std::round(32.0 / spacing[axis]));
  }
  image->SetRegions(size);
  image->SetSpacing(spacing);
  Image3D::DirectionType direction;
  const double           angle = 0.3;
  direction.SetIdentity();
  direction[0][0] = std::cos(angle);
  direction[0][1] = -std::sin(angle);
  direction[1][0] = std::sin(angle);
  direction[1][1] = std::cos(angle);
  image->SetDirection(direction);
  const double origin[] = { -5.0, 7.0, 2.5 };
  image->SetOrigin(origin);
  image->Allocate();
  // The centre: the middle of the physical box.
  itk::ContinuousIndex<double, 3> middle;
  for (unsigned int axis = 0; axis < 3; ++axis)
  {
    middle[axis] = 0.5 * static_cast<double>(size[axis]) - 0.5;
  }
  Image3D::PointType centre;
  image->TransformContinuousIndexToPhysicalPoint(middle, centre);
  for (itk::ImageRegionIteratorWithIndex<Image3D> it(image, image->GetBufferedRegion()); !it.IsAtEnd(); ++it)
  {
    Image3D::PointType point;
    image->TransformIndexToPhysicalPoint(it.GetIndex(), point);
    const double r = point.EuclideanDistanceTo(centre);
    it.Set(static_cast<float>(std::min(1.0, std::max(0.0, 0.5 + (radius - r) / 2.0))));
  }
  return image;
}

double
LabelledVolume(const Resampling3D * filter)
{
  const auto * labels = filter->GetOutput();
  const auto   voxels = labels->GetBufferedRegion().GetNumberOfPixels();
  const auto   inside = std::count(labels->GetBufferPointer(), labels->GetBufferPointer() + voxels, 1);
  const auto & spacing = labels->GetSpacing();
  return static_cast<double>(inside) * spacing[0] * spacing[1] * spacing[2];
}

Resampling3D::Pointer
Segment(const Image3D * image, const std::string & model)
{
  auto filter = Resampling3D::New();
  filter->SetInput(image);
  filter->GetSegmenter()->SetModelFileName(UNetTest::ModelPath(model));
  filter->Update();
  return filter;
}
} // namespace

TEST(UNetResamplingSegmentationImageFilter, TheSphereHasItsVolumeAtEverySpacing)
{
  const double analytic = 4.0 / 3.0 * M_PI * radius * radius * radius;
  const auto   thin = Sphere(Spacing(0.5, 0.5, 2.0));
  const auto   iso = Sphere(Spacing(1.0, 1.0, 1.0));
  const auto   fromThin = Segment(thin, "card_sphere3d");
  const auto   fromIso = Segment(iso, "card_sphere3d");
  EXPECT_TRUE(fromThin->GetResampled());
  EXPECT_FALSE(fromIso->GetResampled()); // already at the card's spacing
  EXPECT_EQ(fromThin->GetAppliedSpacing(), Spacing(1.0, 1.0, 1.0));
  EXPECT_EQ(fromThin->GetSegmenter()->GetInput()->GetSpacing(), Spacing(1.0, 1.0, 1.0));
  UNetTest::ExpectSameMetadata(thin.GetPointer(), fromThin->GetOutput());
  UNetTest::ExpectSameMetadata(thin.GetPointer(), fromThin->GetProbabilityOutput());
  const double volumeThin = LabelledVolume(fromThin);
  const double volumeIso = LabelledVolume(fromIso);
  EXPECT_NEAR(volumeThin / analytic, 1.0, 0.02) << volumeThin << " mm^3 against " << analytic;
  EXPECT_NEAR(volumeIso / analytic, 1.0, 0.02) << volumeIso << " mm^3 against " << analytic;
  EXPECT_NEAR(volumeThin / volumeIso, 1.0, 0.02);
  // The probabilities sum to 1 on the input's grid too (linear interpolation keeps it).
  const auto * p = fromThin->GetProbabilityOutput();
  for (size_t v = 0; v < p->GetBufferedRegion().GetNumberOfPixels(); v += 97)
  {
    ASSERT_NEAR(p->GetBufferPointer()[2 * v] + p->GetBufferPointer()[2 * v + 1], 1.0, 1e-5);
  }
}

TEST(UNetResamplingSegmentationImageFilter, WithoutASpacingItIsTheSegmentationFilter)
{
  const auto image = Sphere(Spacing(0.5, 0.5, 2.0));
  const auto resampled = Segment(image, "threshold3d"); // no model card
  EXPECT_FALSE(resampled->GetResampled());
  auto plain = itk::UNetSegmentationImageFilter<Image3D>::New();
  plain->SetInput(image);
  plain->SetModelFileName(UNetTest::ModelPath("threshold3d"));
  plain->Update();
  const auto voxels = image->GetBufferedRegion().GetNumberOfPixels();
  EXPECT_TRUE(std::equal(plain->GetOutput()->GetBufferPointer(),
                         plain->GetOutput()->GetBufferPointer() + voxels,
                         resampled->GetOutput()->GetBufferPointer()));
  EXPECT_TRUE(std::equal(plain->GetProbabilityOutput()->GetBufferPointer(),
                         plain->GetProbabilityOutput()->GetBufferPointer() + 2 * voxels,
                         resampled->GetProbabilityOutput()->GetBufferPointer()));
}

TEST(UNetResamplingSegmentationImageFilter, AnExplicitSpacingAndBSplines)
{
  const auto image = Sphere(Spacing(0.5, 0.5, 2.0));
  auto       filter = Resampling3D::New();
  filter->SetInput(image);
  filter->GetSegmenter()->SetModelFileName(UNetTest::ModelPath("threshold3d"));
  filter->SetSegmentationSpacing(Spacing(0.8, 0.8, 0.8));
  filter->SetInterpolation(Resampling3D::InterpolationEnum::BSpline);
  filter->Update();
  EXPECT_TRUE(filter->GetResampled());
  EXPECT_NEAR(LabelledVolume(filter) / (4.0 / 3.0 * M_PI * radius * radius * radius), 1.0, 0.02);
  std::ostringstream printed;
  filter->Print(printed);
  EXPECT_NE(printed.str().find("AppliedSpacing: [0.8, 0.8, 0.8] (resampled)"), std::string::npos) << printed.str();
  filter->SetSegmentationSpacing(Spacing(0.8, -1.0, 0.8));
  EXPECT_THROW(filter->Update(), itk::ExceptionObject);
}

TEST(UNetResamplingSegmentationImageFilter, TheCardsSpacingInTheInputsUnit)
{
  // card_sphere3d was trained at 1 mm: 1000 in an image whose spacing is in micrometres, 1 in one in millimetres.
  const auto image = Sphere(Spacing(0.5, 0.5, 2.0));
  auto       filter = Resampling3D::New();
  filter->SetInput(image);
  filter->GetSegmenter()->SetModelFileName(UNetTest::ModelPath("card_sphere3d"));
  EXPECT_EQ(filter->GetInputSpacingUnit(), std::string("mm"));
  filter->UpdateOutputInformation();
  EXPECT_EQ(filter->GetAppliedSpacing(), Spacing(1.0, 1.0, 1.0));
  filter->SetInputSpacingUnit("um");
  filter->UpdateOutputInformation();
  EXPECT_EQ(filter->GetAppliedSpacing(), Spacing(1000.0, 1000.0, 1000.0));
  std::ostringstream printed;
  filter->Print(printed);
  EXPECT_NE(printed.str().find("InputSpacingUnit: um"), std::string::npos) << printed.str();
  filter->SetInputSpacingUnit("inch");
  try
  {
    filter->UpdateOutputInformation();
    ADD_FAILURE() << "an unknown unit was taken";
  }
  catch (const itk::ExceptionObject & error)
  {
    EXPECT_NE(
      std::string(error.GetDescription()).find("InputSpacingUnit must be \"mm\", \"um\" or \"nm\"; got \"inch\""),
      std::string::npos)
      << error.GetDescription();
  }
}
