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
#ifndef UNetVisualizationTestHelpers_h
#define UNetVisualizationTestHelpers_h

#include "itkImage.h"
#include "itkImageRegionIteratorWithIndex.h"

#include <vtkCellArray.h>
#include <vtkFeatureEdges.h>
#include <vtkIdList.h>
#include <vtkNew.h>
#include <vtkPolyData.h>

#include <cmath>

namespace UNetVisualizationTest
{
using LabelImageType = itk::Image<unsigned char, 3>;
using PointType = LabelImageType::PointType;
using DirectionType = LabelImageType::DirectionType;

/** Rotation about z by `degreesZ` after rotation about x by `degreesX`; `reflect` mirrors z first (determinant -1). */
inline DirectionType
MakeDirection(double degreesZ, double degreesX, bool reflect)
{
  const double  z = degreesZ * 3.14159265358979323846 / 180.0;
  const double  x = degreesX * 3.14159265358979323846 / 180.0;
  DirectionType rz, rx, mirror;
  rz.SetIdentity();
  rz[0][0] = std::cos(z);
  rz[0][1] = -std::sin(z);
  rz[1][0] = std::sin(z);
  rz[1][1] = std::cos(z);
  rx.SetIdentity();
  rx[1][1] = std::cos(x);
  rx[1][2] = -std::sin(x);
  rx[2][1] = std::sin(x);
  rx[2][2] = std::cos(x);
  mirror.SetIdentity();
  mirror[2][2] = reflect ? -1.0 : 1.0;
  return rz * rx * mirror;
}

/** An empty (0) label map whose grid, with the given spacing and direction and a start index other than 0, covers
 * the cube of half width `halfWidth` around `centre` (centre at the grid's middle). */
inline LabelImageType::Pointer
MakeGridAround(const PointType & centre, double halfWidth, const LabelImageType::SpacingType & spacing,
               const DirectionType & direction)
{
  auto                      image = LabelImageType::New();
  LabelImageType::IndexType start = { { 2, -3, 1 } };
  LabelImageType::SizeType  size;
  itk::Vector<double, 3>    middle; // the grid's middle, from the origin, in physical space
  for (unsigned int axis = 0; axis < 3; ++axis)
  {
    size[axis] = static_cast<itk::SizeValueType>(std::ceil(2.0 * halfWidth / spacing[axis])) + 1;
    middle[axis] = spacing[axis] * (start[axis] + 0.5 * (size[axis] - 1.0));
  }
  image->SetRegions(LabelImageType::RegionType(start, size));
  image->SetSpacing(spacing);
  image->SetDirection(direction);
  image->SetOrigin(centre - direction * middle);
  image->Allocate(true);
  return image;
}

/** Sets the voxels whose centres lie within `radius` of `centre` to `label`. */
inline void
PaintBall(LabelImageType * image, const PointType & centre, double radius, unsigned char label)
{
  for (itk::ImageRegionIteratorWithIndex<LabelImageType> it(image, image->GetLargestPossibleRegion()); !it.IsAtEnd();
       ++it)
  {
    PointType point;
    image->TransformIndexToPhysicalPoint(it.GetIndex(), point);
    if (point.EuclideanDistanceTo(centre) <= radius)
    {
      it.Set(label);
    }
  }
}

/** The volume enclosed by a triangle mesh, by the divergence theorem: positive when the triangles face outward. */
inline double
SignedVolume(vtkPolyData * surface)
{
  double               volume = 0.0;
  vtkNew<vtkIdList>    triangle;
  vtkCellArray * const polys = surface->GetPolys();
  for (polys->InitTraversal(); polys->GetNextCell(triangle);)
  {
    double a[3], b[3], c[3];
    surface->GetPoint(triangle->GetId(0), a);
    surface->GetPoint(triangle->GetId(1), b);
    surface->GetPoint(triangle->GetId(2), c);
    volume +=
      (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0]) + a[2] * (b[0] * c[1] - b[1] * c[0])) /
      6.0;
  }
  return volume;
}

/** Edges used by one triangle (a hole) or by more than two: none on a closed manifold surface. */
inline vtkIdType
OpenOrNonManifoldEdges(vtkPolyData * surface)
{
  vtkNew<vtkFeatureEdges> edges;
  edges->SetInputData(surface);
  edges->BoundaryEdgesOn();
  edges->NonManifoldEdgesOn();
  edges->FeatureEdgesOff();
  edges->ManifoldEdgesOff();
  edges->Update();
  return edges->GetOutput()->GetNumberOfCells();
}
} // namespace UNetVisualizationTest

#endif // UNetVisualizationTestHelpers_h
