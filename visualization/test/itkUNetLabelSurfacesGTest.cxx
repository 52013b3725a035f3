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
#include "itkUNetLabelSurfaces.h"

#include "itkUNetVTKImage.h"

#include "UNetVisualizationTestHelpers.h"
#include "gtest/gtest.h"

#include <vtkDataArray.h>
#include <vtkFieldData.h>
#include <vtkFloatArray.h>
#include <vtkMassProperties.h>
#include <vtkOBJReader.h>
#include <vtkPLYReader.h>
#include <vtkPointData.h>
#include <vtkPolyDataReader.h>
#include <vtkSTLReader.h>
#include <vtkStringArray.h>
#include <vtkXMLPolyDataReader.h>

#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>

using namespace UNetVisualizationTest;

namespace
{
constexpr double pi = 3.14159265358979323846;

std::string
OutputPath(const std::string & name)
{
  return std::string(UNET_TEST_OUTPUT_DIR) + "/" + name;
}

/** A ball of radius 10 on a (0.5, 0.7, 0.9) grid turned about two axes, mirrored or not. */
class SphereSurface : public testing::TestWithParam<bool>
{};
} // namespace

TEST_P(SphereSurface, EnclosesTheBallsVolumeAndAreaWithinItsBoundsFacingOut)
{
  const double                radius = 10.0;
  const PointType             centre{ { 12.5, -30.0, 41.0 } };
  LabelImageType::SpacingType spacing;
  spacing[0] = 0.5;
  spacing[1] = 0.7;
  spacing[2] = 0.9;
  const bool reflect = GetParam();
  auto       labels = MakeGridAround(centre, radius + 3.0, spacing, MakeDirection(40.0, 25.0, reflect));
  PaintBall(labels, centre, radius, 1);

  const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()));
  ASSERT_EQ(surfaces.size(), 1u);
  EXPECT_EQ(surfaces[0].Label, 1);
  EXPECT_EQ(surfaces[0].Instance, 0u);
  vtkPolyData * surface = surfaces[0].Surface;

  vtkNew<vtkMassProperties> measure;
  measure->SetInputData(surface);
  measure->Update();
  const double volume = 4.0 / 3.0 * pi * radius * radius * radius;
  const double area = 4.0 * pi * radius * radius;
  std::cout << "volume " << measure->GetVolume() / volume - 1.0 << ", area " << measure->GetSurfaceArea() / area - 1.0
            << " (relative errors)" << std::endl;
  EXPECT_NEAR(measure->GetVolume(), volume, 0.02 * volume);
  EXPECT_NEAR(measure->GetSurfaceArea(), area, 0.02 * area);

  // The voxel boundary lies within half a voxel of the ball's surface, and smoothing moves it less than that.
  double bounds[6];
  surface->GetBounds(bounds);
  const double tolerance = 0.5 * 0.9;
  for (unsigned int axis = 0; axis < 3; ++axis)
  {
    std::cout << "axis " << axis << ": bounds - ball's bounds " << bounds[2 * axis] - (centre[axis] - radius) << ", "
              << bounds[2 * axis + 1] - (centre[axis] + radius) << std::endl;
    EXPECT_NEAR(bounds[2 * axis], centre[axis] - radius, tolerance);
    EXPECT_NEAR(bounds[2 * axis + 1], centre[axis] + radius, tolerance);
  }

  EXPECT_EQ(OpenOrNonManifoldEdges(surface), 0);
  // Triangles face out: the divergence theorem's volume is positive (vtkMassProperties' is positive either way).
  EXPECT_NEAR(SignedVolume(surface), measure->GetVolume(), 1e-6 * volume);
  vtkDataArray * normals = surface->GetPointData()->GetNormals();
  ASSERT_NE(normals, nullptr);
  vtkIdType inward = 0;
  for (vtkIdType p = 0; p < surface->GetNumberOfPoints(); ++p)
  {
    double point[3], normal[3];
    surface->GetPoint(p, point);
    normals->GetTuple(p, normal);
    inward +=
      (point[0] - centre[0]) * normal[0] + (point[1] - centre[1]) * normal[1] + (point[2] - centre[2]) * normal[2] <=
      0.0;
  }
  EXPECT_EQ(inward, 0);
}

INSTANTIATE_TEST_SUITE_P(UNetLabelSurfaces, SphereSurface, testing::Values(false, true), [](const auto & info) {
  return info.param ? std::string("MirroredDirection") : std::string("RotatedDirection");
});

TEST(UNetLabelSurfaces, ObjectCutByTheVolumesEdgeGivesAClosedSurface)
{
  LabelImageType::SpacingType spacing;
  spacing.Fill(1.0);
  const PointType centre{ { 0.0, 0.0, 0.0 } };
  auto            labels = MakeGridAround(centre, 8.0, spacing, MakeDirection(0.0, 0.0, false));
  // A ball centred on a corner of the grid: an eighth of it lies in the volume, cut by three of its faces.
  PointType corner;
  labels->TransformIndexToPhysicalPoint(labels->GetLargestPossibleRegion().GetIndex(), corner);
  PaintBall(labels, corner, 6.0, 3);
  const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()));
  ASSERT_EQ(surfaces.size(), 1u);
  EXPECT_EQ(surfaces[0].Label, 3);
  EXPECT_GT(surfaces[0].Surface->GetNumberOfPolys(), 0);
  EXPECT_EQ(OpenOrNonManifoldEdges(surfaces[0].Surface), 0);
  EXPECT_GT(SignedVolume(surfaces[0].Surface), 0.0);
}

TEST(UNetLabelSurfaces, TwoClassesGiveTwoSurfacesInPlace)
{
  LabelImageType::SpacingType spacing;
  spacing[0] = 0.8;
  spacing[1] = 1.0;
  spacing[2] = 1.2;
  const PointType centre{ { 5.0, 6.0, 7.0 } };
  auto            labels = MakeGridAround(centre, 20.0, spacing, MakeDirection(-20.0, 10.0, false));
  const PointType first{ { -3.0, 6.0, 7.0 } };
  const PointType second{ { 14.0, 3.0, 9.0 } };
  PaintBall(labels, first, 6.0, 1);
  PaintBall(labels, second, 4.0, 2);
  const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()));
  ASSERT_EQ(surfaces.size(), 2u);
  const PointType centres[2] = { first, second };
  const double    radii[2] = { 6.0, 4.0 };
  for (unsigned int s = 0; s < 2; ++s)
  {
    EXPECT_EQ(surfaces[s].Label, static_cast<long long>(s + 1));
    EXPECT_EQ(surfaces[s].Instance, 0u);
    EXPECT_EQ(OpenOrNonManifoldEdges(surfaces[s].Surface), 0);
    // In place and of the right size: the voxel boundary lies within half a voxel's diagonal (0.88) of the ball.
    double bounds[6];
    surfaces[s].Surface->GetBounds(bounds);
    for (unsigned int axis = 0; axis < 3; ++axis)
    {
      EXPECT_NEAR(0.5 * (bounds[2 * axis] + bounds[2 * axis + 1]), centres[s][axis], 0.3);
      EXPECT_NEAR(0.5 * (bounds[2 * axis + 1] - bounds[2 * axis]), radii[s], 0.88);
    }
    EXPECT_EQ(surfaces[s].Surface->GetFieldData()->GetArray("Label")->GetTuple1(0), s + 1);
  }
}

TEST(UNetLabelSurfaces, InstancesAreTheFaceConnectedPiecesNumberedBySize)
{
  LabelImageType::SpacingType spacing;
  spacing.Fill(1.0);
  const PointType centre{ { 0.0, 0.0, 0.0 } };
  auto            labels = MakeGridAround(centre, 20.0, spacing, MakeDirection(0.0, 0.0, false));
  const PointType small{ { -10.0, -10.0, 0.0 } };
  const PointType large{ { 8.0, 8.0, 0.0 } };
  const PointType middle{ { -8.0, 9.0, 5.0 } };
  const PointType other{ { 9.0, -9.0, -5.0 } };
  PaintBall(labels, small, 3.0, 4);
  PaintBall(labels, large, 6.0, 4);
  PaintBall(labels, middle, 4.5, 4);
  PaintBall(labels, other, 5.0, 7);
  itk::UNetLabelSurfaceOptions options;
  options.SeparateInstances = true;
  const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()), options);
  ASSERT_EQ(surfaces.size(), 4u);
  const PointType expectedCentre[4] = { large, middle, small, other };
  const long long expectedLabel[4] = { 4, 4, 4, 7 };
  for (unsigned int s = 0; s < 4; ++s)
  {
    EXPECT_EQ(surfaces[s].Label, expectedLabel[s]);
    EXPECT_EQ(surfaces[s].Instance, s < 3 ? s + 1 : 1u);
    EXPECT_EQ(OpenOrNonManifoldEdges(surfaces[s].Surface), 0);
    double bounds[6];
    surfaces[s].Surface->GetBounds(bounds);
    for (unsigned int axis = 0; axis < 3; ++axis)
    {
      EXPECT_NEAR(0.5 * (bounds[2 * axis] + bounds[2 * axis + 1]), expectedCentre[s][axis], 0.3);
    }
    EXPECT_EQ(surfaces[s].Surface->GetFieldData()->GetArray("Instance")->GetTuple1(0), surfaces[s].Instance);
  }
}

TEST(UNetLabelSurfaces, TwoDimensionalLabelMapGivesClosedContoursInPhysicalSpace)
{
  // A 12 x 7 pixel rectangle on a grid with spacing (0.5, 2) turned by 30 degrees.
  using Labels2D = itk::Image<unsigned short, 2>;
  auto labels = Labels2D::New();
  labels->SetRegions(Labels2D::RegionType({ { -4, 3 } }, { { 30, 20 } }));
  Labels2D::SpacingType spacing;
  spacing[0] = 0.5;
  spacing[1] = 2.0;
  labels->SetSpacing(spacing);
  Labels2D::DirectionType direction;
  direction[0][0] = direction[1][1] = std::cos(pi / 6.0);
  direction[1][0] = std::sin(pi / 6.0);
  direction[0][1] = -direction[1][0];
  labels->SetDirection(direction);
  labels->SetOrigin(itk::Point<double, 2>{ { 4.0, -3.0 } });
  labels->Allocate(true);
  const Labels2D::IndexType first{ { 2, 8 } };
  for (itk::ImageRegionIteratorWithIndex<Labels2D> it(labels, Labels2D::RegionType(first, { { 12, 7 } }));
       !it.IsAtEnd();
       ++it)
  {
    it.Set(300);
  }
  const auto contours = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()));
  ASSERT_EQ(contours.size(), 1u);
  EXPECT_EQ(contours[0].Label, 300);
  vtkPolyData * lines = contours[0].Surface;
  EXPECT_EQ(lines->GetNumberOfPolys(), 0);
  ASSERT_GT(lines->GetNumberOfLines(), 0);

  // The boundary runs through the pixel edges' midpoints and cuts each corner diagonally.
  double                   length = 0.0;
  vtkNew<vtkIdList>        segment;
  vtkIdType                endpoints = 0;
  std::map<vtkIdType, int> uses;
  for (lines->GetLines()->InitTraversal(); lines->GetLines()->GetNextCell(segment);)
  {
    double a[3], b[3];
    lines->GetPoint(segment->GetId(0), a);
    lines->GetPoint(segment->GetId(segment->GetNumberOfIds() - 1), b);
    length += std::hypot(a[0] - b[0], a[1] - b[1]);
    EXPECT_NEAR(a[2], 0.0, 1e-9);
    ++uses[segment->GetId(0)];
    ++uses[segment->GetId(1)];
  }
  for (const auto & use : uses)
  {
    endpoints += use.second != 2; // a closed curve uses each point twice
  }
  EXPECT_EQ(endpoints, 0);
  const double corner = 0.5 * spacing[0] + 0.5 * spacing[1] - std::hypot(0.5 * spacing[0], 0.5 * spacing[1]);
  EXPECT_NEAR(length, 2.0 * (12 * spacing[0] + 7 * spacing[1]) - 4.0 * corner, 1e-4);

  // Its bounds: those of the rectangle's outline in index space (pixels 2..13 x 8..14, corners cut), mapped.
  const auto   vtkLabels = itk::UNetImageToVTK(labels.GetPointer());
  const double outline[8][3] = { { 2.0, 7.5, 0.0 },   { 13.0, 7.5, 0.0 }, { 13.5, 8.0, 0.0 }, { 13.5, 14.0, 0.0 },
                                 { 13.0, 14.5, 0.0 }, { 2.0, 14.5, 0.0 }, { 1.5, 14.0, 0.0 }, { 1.5, 8.0, 0.0 } };
  double       expected[4] = { 1e300, -1e300, 1e300, -1e300 };
  for (const auto & index : outline)
  {
    double point[3];
    vtkLabels->TransformContinuousIndexToPhysicalPoint(index, point);
    expected[0] = std::min(expected[0], point[0]);
    expected[1] = std::max(expected[1], point[0]);
    expected[2] = std::min(expected[2], point[1]);
    expected[3] = std::max(expected[3], point[1]);
  }
  double bounds[6];
  lines->GetBounds(bounds);
  for (int b = 0; b < 4; ++b)
  {
    EXPECT_NEAR(bounds[b], expected[b], 1e-5);
  }
}

TEST(UNetLabelSurfaces, EmptyLabelMapGivesNoSurface)
{
  LabelImageType::SpacingType spacing;
  spacing.Fill(1.0);
  auto labels = MakeGridAround(PointType{ { 0.0, 0.0, 0.0 } }, 3.0, spacing, MakeDirection(0.0, 0.0, false));
  EXPECT_TRUE(itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer())).empty());
}

TEST(UNetLabelSurfaces, RejectsBadInput)
{
  EXPECT_THROW(itk::UNetExtractLabelSurfaces(nullptr), itk::ExceptionObject);

  using FloatLabels = itk::Image<float, 3>;
  auto labels = FloatLabels::New();
  labels->SetRegions(FloatLabels::SizeType{ { 4, 4, 4 } });
  labels->Allocate(true);
  labels->SetPixel({ { 1, 1, 1 } }, 2.0f);
  EXPECT_NO_THROW(itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer())));
  labels->SetPixel({ { 2, 1, 1 } }, 2.5f);
  EXPECT_THROW(itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer())), itk::ExceptionObject);

  labels->FillBuffer(0.0f);
  itk::UNetLabelSurfaceOptions options;
  options.SmoothingIterations = -1;
  EXPECT_THROW(itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()), options), itk::ExceptionObject);
  options.SmoothingIterations = 20;
  options.PassBand = 2.5;
  EXPECT_THROW(itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()), options), itk::ExceptionObject);

  auto                  twoComponents = itk::UNetImageToVTK(labels.GetPointer());
  vtkNew<vtkFloatArray> pairs;
  pairs->SetNumberOfComponents(2);
  pairs->SetNumberOfTuples(twoComponents->GetNumberOfPoints());
  twoComponents->GetPointData()->SetScalars(pairs);
  EXPECT_THROW(itk::UNetExtractLabelSurfaces(twoComponents), itk::ExceptionObject);
}

TEST(UNetLabelSurfaces, WritesEveryFormatSayingLPS)
{
  LabelImageType::SpacingType spacing;
  spacing.Fill(1.0);
  const PointType centre{ { 1.0, 2.0, 3.0 } };
  auto            labels = MakeGridAround(centre, 6.0, spacing, MakeDirection(0.0, 0.0, false));
  PaintBall(labels, centre, 4.0, 5);
  const auto surfaces = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()));
  ASSERT_EQ(surfaces.size(), 1u);
  vtkPolyData *   surface = surfaces[0].Surface;
  const vtkIdType triangles = surface->GetNumberOfPolys();

  itk::UNetWriteSurface(surface, OutputPath("ball.vtp"));
  vtkNew<vtkXMLPolyDataReader> xml;
  xml->SetFileName(OutputPath("ball.vtp").c_str());
  xml->Update();
  EXPECT_EQ(xml->GetOutput()->GetNumberOfPolys(), triangles);
  EXPECT_EQ(xml->GetOutput()->GetNumberOfPoints(), surface->GetNumberOfPoints());
  auto * space = vtkStringArray::SafeDownCast(xml->GetOutput()->GetFieldData()->GetAbstractArray("SPACE"));
  ASSERT_NE(space, nullptr);
  EXPECT_EQ(space->GetValue(0), "LPS");
  EXPECT_EQ(xml->GetOutput()->GetFieldData()->GetArray("Label")->GetTuple1(0), 5.0);
  EXPECT_EQ(surface->GetFieldData()->GetAbstractArray("SPACE"), nullptr); // the caller's surface is unchanged

  itk::UNetWriteSurface(surface, OutputPath("ball.vtk"));
  vtkNew<vtkPolyDataReader> legacy;
  legacy->SetFileName(OutputPath("ball.vtk").c_str());
  legacy->Update();
  EXPECT_EQ(legacy->GetOutput()->GetNumberOfPolys(), triangles);
  EXPECT_NE(std::string(legacy->GetHeader()).find("SPACE=LPS"), std::string::npos);
  EXPECT_EQ(legacy->GetFileMajorVersion(), 4);

  itk::UNetWriteSurface(surface, OutputPath("ball.STL"));
  vtkNew<vtkSTLReader> stl;
  stl->SetFileName(OutputPath("ball.STL").c_str());
  stl->Update();
  EXPECT_EQ(stl->GetOutput()->GetNumberOfPolys(), triangles);
  std::ifstream     stlFile(OutputPath("ball.STL"), std::ios::binary);
  const std::string stlContents{ std::istreambuf_iterator<char>(stlFile), std::istreambuf_iterator<char>() };
  EXPECT_NE(stlContents.substr(0, 80).find("SPACE=LPS"), std::string::npos); // the binary STL header

  itk::UNetWriteSurface(surface, OutputPath("ball.ply"));
  vtkNew<vtkPLYReader> ply;
  ply->SetFileName(OutputPath("ball.ply").c_str());
  ply->Update();
  EXPECT_EQ(ply->GetOutput()->GetNumberOfPolys(), triangles);

  itk::UNetWriteSurface(surface, OutputPath("ball.obj"));
  vtkNew<vtkOBJReader> obj;
  obj->SetFileName(OutputPath("ball.obj").c_str());
  obj->Update();
  EXPECT_EQ(obj->GetOutput()->GetNumberOfPolys(), triangles);
  double written[3], read[3];
  surface->GetPoint(7, written);
  obj->GetOutput()->GetPoint(7, read);
  for (int axis = 0; axis < 3; ++axis)
  {
    EXPECT_NEAR(read[axis], written[axis], 1e-4);
  }

  EXPECT_THROW(itk::UNetWriteSurface(surface, OutputPath("ball.xyz")), itk::ExceptionObject);
  EXPECT_THROW(itk::UNetWriteSurface(surface, OutputPath("no-such-directory/ball.vtp")), itk::ExceptionObject);
  EXPECT_THROW(itk::UNetWriteSurface(surface, OutputPath("no-such-directory/ball.stl")), itk::ExceptionObject);
  EXPECT_THROW(itk::UNetWriteSurface(nullptr, OutputPath("ball.vtp")), itk::ExceptionObject);
}

TEST(UNetLabelSurfaces, ContourLinesGoToVTKFormatsOnly)
{
  using Labels2D = itk::Image<unsigned char, 2>;
  auto labels = Labels2D::New();
  labels->SetRegions(Labels2D::SizeType{ { 8, 8 } });
  labels->Allocate(true);
  labels->SetPixel({ { 3, 3 } }, 1);
  const auto contours = itk::UNetExtractLabelSurfaces(itk::UNetImageToVTK(labels.GetPointer()));
  ASSERT_EQ(contours.size(), 1u);
  EXPECT_NO_THROW(itk::UNetWriteSurface(contours[0].Surface, OutputPath("square.vtp")));
  EXPECT_THROW(itk::UNetWriteSurface(contours[0].Surface, OutputPath("square.stl")), itk::ExceptionObject);
}

TEST(UNetLabelSurfaces, SurfaceFileNamesCarryLabelAndInstance)
{
  EXPECT_EQ(itk::UNetSurfaceFileName("out/liver.vtp", { 2, 0, nullptr }), "out/liver-2.vtp");
  EXPECT_EQ(itk::UNetSurfaceFileName("out/liver.STL", { 2, 3, nullptr }), "out/liver-2-3.STL");
  EXPECT_EQ(itk::UNetSurfaceFileName("run.1/surface", { 12, 0, nullptr }), "run.1/surface-12");
  EXPECT_EQ(itk::UNetSurfaceFileName("a.b.obj", { -1, 0, nullptr }), "a.b--1.obj");
}
